"""Segmenting a sparse stack at full resolution, by either route.

``image``: restore the missing sections (:func:`vemcell.sparse.reconstruct`) and segment the
full stack as usual. ``shape``: segment only the kept sections (XY, one direction: there is
nothing to reslice) and interpolate the organelle shapes between them
(:func:`vemcell.sparse.shape_interpolate`). Both return labels on the restored grid,
``(n - 1)·K + 1`` sections with the Z step divided by K.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vemcell.cards.card import ModelCard
from vemcell.io.volumes import Volume
from vemcell.progress import Span
from vemcell.sparse.core import check_factor, sparse_voxel_size
from vemcell.sparse.image import reconstruct
from vemcell.sparse.shape import shape_interpolate

ROUTES = ("image", "shape")


def restore_volume(
    volume: Volume,
    factor: int,
    method: str = "flow",
    progress: Any = None,
    model: str | None = None,
) -> Volume:
    """The sparse ``volume`` restored to every section, as a :class:`Volume` whose Z step is
    the input's divided by ``factor`` (what the pipeline segments on the image route)."""
    k = check_factor(factor)
    full = reconstruct(
        volume.array(),
        k,
        method,
        progress=progress,
        model=model,
        voxel_size_nm=volume.voxel_size_nm,
    )
    return Volume(
        data=full,
        voxel_size_nm=sparse_voxel_size(volume.voxel_size_nm, k),
        voxel_size_source=volume.voxel_size_source,
        path=volume.path,
        format=volume.format,
        notes=[*volume.notes, f"restored from every {k}-th section ({method})"],
    )


def image_route(
    volume: Volume,
    card: ModelCard,
    factor: int,
    method: str = "flow",
    progress: Any = None,
    **segment_options: Any,
) -> tuple[np.ndarray, Any]:
    """Restore the missing sections, then segment; returns (restored image, SegmentResult)."""
    from vemcell.segmentation.segment import segment

    restored = restore_volume(volume, factor, method, progress=Span(progress, 0.0, 0.2))
    result = segment(restored, card, progress=Span(progress, 0.2, 1.0), **segment_options)
    return restored.data, result


def shape_route(
    volume: Volume,
    card: ModelCard,
    factor: int,
    progress: Any = None,
    flow: bool = True,
    **segment_options: Any,
) -> tuple[np.ndarray, Any]:
    """Segment the kept sections (XY only), then interpolate the shapes between them (carried
    along the images' optical flow with ``flow``); returns (full-resolution labels,
    SegmentResult of the kept sections)."""
    from vemcell.segmentation.segment import segment

    k = check_factor(factor)
    segment_options = {**segment_options, "directions": 1}
    result = segment(volume, card, progress=Span(progress, 0.0, 0.9), **segment_options)
    labels = shape_interpolate(
        result.labels,
        k,
        card.n_classes,
        progress=Span(progress, 0.9, 1.0),
        images=volume.array() if flow else None,
    )
    return labels, result
