"""The shape route: interpolate organelle shapes between kept sections by signed distance.

Each class's mask in a kept section becomes a signed distance map (negative inside, in pixels);
the maps of the two neighbouring kept sections are blended by distance, and every voxel of a
missing section takes the class it lies deepest inside. Two concentric discs of radius r₀ and
r₁ give discs of radius (1 − t)·r₀ + t·r₁ between them; a class present in only one of the
two sections shrinks away towards the other, vanishing about half-way. Kept sections keep
their labels exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from vemcell.errors import VemcellError
from vemcell.progress import advance
from vemcell.sparse.core import check_factor, check_sections, output_sections


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """2D signed distance (pixels) from a mask's outline: ≤ -0.5 inside, ≥ 0.5 outside."""
    mask = np.asarray(mask, bool)
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    return np.where(mask, 0.5 - inside, outside - 0.5).astype(np.float32)


def _class_distances(section: np.ndarray, classes: list[int]) -> dict[int, np.ndarray | None]:
    return {c: (signed_distance(section == c) if (section == c).any() else None) for c in classes}


def shape_interpolate(
    labels_kept: np.ndarray,
    factor: int,
    n_classes: int | None = None,
    progress: Any = None,
    images: np.ndarray | None = None,
) -> np.ndarray:
    """Full-resolution labels ``((n - 1)·K + 1, Y, X)`` from labels of ``n`` kept sections.

    ``n_classes`` defaults to the largest label + 1. Each missing voxel takes the class whose
    distance-blended signed distance is lowest; a class absent from one of the two sections is
    given, there, a distance equal to its deepest point in the other, so it shrinks away.

    With ``images`` (the kept sections' EM, same shape as the labels) the signed distances are
    first carried along the optical flow between the two sections (as the ``flow`` image method
    carries grey levels), so a shape that moves sideways between kept sections follows the
    motion instead of fading out in one place and in at the other.
    """
    k = check_factor(factor)
    lab = np.asarray(labels_kept)
    if lab.ndim != 3:
        raise VemcellError(f"Shape interpolation needs 3D labels (Z, Y, X), not shape {lab.shape}.")
    if lab.dtype.kind not in "uib":
        raise VemcellError(f"Shape interpolation needs integer labels, not {lab.dtype}.")
    n = lab.shape[0]
    check_sections(n)
    present = np.unique(lab)
    if n_classes is None:
        n_classes = int(present.max()) + 1
    if present.min() < 0 or present.max() >= n_classes:
        raise VemcellError(
            f"The labels hold values up to {int(present.max())}, outside 0..{n_classes - 1}."
        )
    classes = [int(c) for c in present]
    if images is not None:
        images = np.asarray(images)
        if images.shape != lab.shape:
            raise VemcellError(
                f"The images {images.shape} and the labels {lab.shape} must have the same shape."
            )
        from vemcell.sparse.flow import FlowMaker, PairFlow, robust_range

        flow_maker = FlowMaker(*robust_range(images))
    out = np.empty((output_sections(n, k), *lab.shape[1:]), lab.dtype)
    ts = [j / k for j in range(1, k)]
    prev = _class_distances(lab[0], classes)
    for i in range(n - 1):
        nxt = _class_distances(lab[i + 1], classes)
        out[i * k] = lab[i]
        pair = (
            PairFlow(images[i].astype(np.float32), images[i + 1].astype(np.float32), flow_maker)
            if images is not None
            else None
        )
        best = [np.full(lab.shape[1:], np.inf, np.float32) for _ in ts]
        arg = [np.zeros(lab.shape[1:], lab.dtype) for _ in ts]
        for c in classes:
            da, db = prev[c], nxt[c]
            if da is None and db is None:
                continue
            if da is None:
                da = np.full_like(db, max(0.5, -float(db.min())))
            if db is None:
                db = np.full_like(da, max(0.5, -float(da.min())))
            for j, t in enumerate(ts):
                d = pair.blend(da, db, t) if pair is not None else (1.0 - t) * da + t * db
                better = d < best[j]
                best[j][better] = d[better]
                arg[j][better] = c
        for j in range(len(ts)):
            out[i * k + j + 1] = arg[j]
        prev = nxt
        advance(progress, (i + 1) / (n - 1), f"shapes between sections {i + 1}/{n - 1}")
    out[(n - 1) * k] = lab[n - 1]
    return out
