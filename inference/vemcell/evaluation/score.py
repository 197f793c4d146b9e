"""Scoring a model against ground truth: IoU per class and boundary offsets, as users run it.

The prediction goes through :func:`vemcell.segmentation.segment.segment`, the code every user
runs, so the score is the score of the shipped pipeline (resampling, normalisation, tiling,
3-direction fusion and the median filter included).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from vemcell.cards.card import ModelCard
from vemcell.errors import VemcellError
from vemcell.evaluation.metrics import (
    UNLABELLED,
    apply_label_map,
    boundary_offset_sums,
    iou_per_class,
    iou_report,
    offset_from_sums,
    parse_label_map,
)
from vemcell.io.volumes import Volume, read_volume
from vemcell.progress import Progress


def read_pair(
    card: ModelCard,
    image_path: str | Path,
    labels_path: str | Path,
    label_map: str | None = None,
    voxel_size_nm: tuple[float, float, float] | None = None,
) -> tuple[Volume, np.ndarray]:
    """An image volume and its labels as class indices of ``card`` (255 = not labelled)."""
    vol = read_volume(image_path, voxel_size_nm=voxel_size_nm)
    truth_vol = read_volume(labels_path, kind="labels")
    if truth_vol.shape != vol.shape:
        raise VemcellError(
            f"The labels ({' × '.join(map(str, truth_vol.shape))}) and the image "
            f"({' × '.join(map(str, vol.shape))}) differ in shape."
        )
    return vol, apply_label_map(truth_vol.array(), parse_label_map(label_map), card.n_classes)


def offset_sums(
    pred: np.ndarray, truth: np.ndarray, card: ModelCard, voxel_nm: tuple[float, float, float]
) -> dict[str, np.ndarray]:
    """Class name -> :func:`~vemcell.metrics.boundary_offset_sums` of every class."""
    return {
        n: boundary_offset_sums(pred, truth, c, voxel_nm) for c, n in enumerate(card.class_names)
    }


def offsets_report(
    pred: np.ndarray, truth: np.ndarray, card: ModelCard, voxel_nm: tuple[float, float, float]
) -> dict[str, float | None]:
    """Class name -> boundary offset in nm (None where a class has none)."""
    return _offsets(offset_sums(pred, truth, card, voxel_nm))


def _offsets(sums: dict[str, np.ndarray], row: int | None = None) -> dict[str, float | None]:
    """Class name -> offset (nm, 2 decimals; None where none) from per-block sums."""
    out: dict[str, float | None] = {}
    for name, parts in sums.items():
        v = offset_from_sums(parts.sum(0) if row is None else parts[row])
        out[name] = None if np.isnan(v) else round(v, 2)
    return out


def score(
    pred: np.ndarray,
    truth: np.ndarray,
    card: ModelCard,
    voxel_nm: tuple[float, float, float],
    per_slice: bool = False,
    offsets: bool = True,
) -> dict[str, Any]:
    """IoU per class and (with ``offsets``) boundary offsets of ``pred`` against ``truth``;
    with ``per_slice`` the same for every XY slice under ``"per_slice"``."""
    names = card.class_names
    report = iou_report(iou_per_class(pred, truth, card.n_classes), names)
    sums = offset_sums(pred, truth, card, voxel_nm) if offsets else {}
    if offsets:
        report["boundary_offset_nm"] = _offsets(sums)
    if per_slice:
        # serial sections come back with sums per section: each row reuses its own
        per_section = offsets and len(next(iter(sums.values()))) == pred.shape[0]
        rows = []
        for z in range(pred.shape[0]):
            one = (slice(z, z + 1),)
            row = {"z": z, **score(pred[one], truth[one], card, voxel_nm, offsets=False)}
            if per_section:
                row["boundary_offset_nm"] = _offsets(sums, z)
            elif offsets:
                row["boundary_offset_nm"] = offsets_report(pred[one], truth[one], card, voxel_nm)
            rows.append(row)
        report["per_slice"] = rows
    return report


def evaluate(
    card: ModelCard,
    image_path: str | Path,
    labels_path: str | Path,
    *,
    directions: int | str = "auto",
    median: int = 3,
    label_map: str | None = None,
    voxel_size_nm: tuple[float, float, float] | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    segmenter: Any = None,
    tta: bool = False,
    min_size: dict[str, float] | None = None,
    per_slice: bool = False,
    offsets: bool = True,
    precision: str = "auto",
) -> dict[str, Any]:
    """Segment ``image_path`` with ``card``'s model and score it against ``labels_path``.

    ``min_size`` as in :func:`vemcell.segment.segment` (None: the card's); ``per_slice`` also
    scores every XY slice, ``offsets=False`` leaves out the boundary offsets (see :func:`score`;
    for callers that tabulate IoU only: the distance maps take a few seconds a volume).
    """
    from vemcell.segmentation.segment import segment

    vol, truth = read_pair(card, image_path, labels_path, label_map, voxel_size_nm)
    t0 = time.perf_counter()
    result = segment(
        vol,
        card,
        directions=directions,
        median=median,
        threads=threads,
        progress=progress,
        segmenter=segmenter,
        tta=tta,
        min_size=min_size,
        precision=precision,
    )
    seconds = time.perf_counter() - t0
    report = score(result.labels, truth, card, vol.voxel_size_nm, per_slice, offsets)
    report.update(
        {
            "model": card.name,
            "image": str(image_path),
            "labels": str(labels_path),
            "directions": result.directions,
            "median": median,
            "tta": tta,
            "min_size_um3": result.min_size_um3,
            "precision": result.precision,
            "seconds": round(seconds, 2),
            "voxels": int(np.prod(vol.shape)),
            "unlabelled_voxels": int(np.count_nonzero(truth == UNLABELLED)),
        }
    )
    return report
