"""``vemcell evaluate``: per-class IoU of an ONNX model on a labelled volume.

The prediction goes through :func:`vemcell.segment.segment`, the code every user runs, so the
score is the score of the shipped pipeline (resampling, normalisation, tiling, 3-direction
fusion and the median filter included).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from vemcell.commands.info import add_directions_argument, add_min_size_argument, add_tta_argument
from vemcell.errors import VemcellError
from vemcell.io import Volume, atomic_path, read_volume
from vemcell.metrics import (
    UNLABELLED,
    apply_label_map,
    boundary_offset_sums,
    iou_per_class,
    iou_report,
    offset_from_sums,
    parse_label_map,
)
from vemcell.modelcard import ModelCard, resolve_model
from vemcell.progress import Progress

HELP = "score a model's segmentation of a labelled volume (IoU per class, the paper's eq. 1)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="ONNX model (with its card) or shipped model name")
    p.add_argument("--image", required=True, help="image volume")
    p.add_argument("--labels", required=True, help="ground-truth label volume (same shape)")
    add_directions_argument(p, "predict XY slices only (1) or XY, XZ and YZ fused (3)")
    p.add_argument("--median", type=int, default=3, help="3D median filter size (0: none)")
    add_tta_argument(p)
    add_min_size_argument(p)
    p.add_argument("--label-map", help="map label values to classes, e.g. '0=0,*=3'")
    p.add_argument(
        "--voxel-size", nargs=3, type=float, metavar=("Z", "Y", "X"), help="override, in nm"
    )
    p.add_argument("--threads", type=int, help="onnxruntime threads (default: all cores)")
    p.add_argument(
        "--per-slice",
        action="store_true",
        help="also score every XY slice (serial sections: finds sections labelled differently)",
    )
    p.add_argument("--json", help="write {'iou': {class: value}, 'mean_iou': …} to this file")


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
) -> dict[str, Any]:
    """Segment ``image_path`` with ``card``'s model and score it against ``labels_path``.

    ``min_size`` as in :func:`vemcell.segment.segment` (None: the card's); ``per_slice`` also
    scores every XY slice, ``offsets=False`` leaves out the boundary offsets (see :func:`score`;
    for callers that tabulate IoU only: the distance maps take a few seconds a volume).
    """
    from vemcell.segment import segment

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
            "seconds": round(seconds, 2),
            "voxels": int(np.prod(vol.shape)),
            "unlabelled_voxels": int(np.count_nonzero(truth == UNLABELLED)),
        }
    )
    return report


def run(args: argparse.Namespace) -> int:
    from vemcell.segment import parse_min_size

    card = resolve_model(args.model)
    min_size = parse_min_size(args.min_size, card)
    if args.median < 0:
        raise VemcellError(f"--median must be 0 or a positive size, not {args.median}.")
    progress = Progress(args.progress, [("segment", 1.0)])
    with progress.stage("segment", f"segmenting with {card.name}"):
        report = evaluate(
            card,
            args.image,
            args.labels,
            directions=args.directions,
            median=args.median,
            label_map=args.label_map,
            voxel_size_nm=args.voxel_size,
            threads=args.threads,
            progress=progress,
            tta=args.tta,
            min_size=min_size,
            per_slice=args.per_slice,
        )
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    progress.done("evaluated")
    if args.progress != "json":
        print_report(report)
    return 0


def _cell(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def print_report(report: dict[str, Any]) -> None:
    """IoU and boundary offset per class, then (with per-slice scores) one row per slice."""
    offsets = report["boundary_offset_nm"]
    print(f"{'class':<20} {'IoU':>6} {'boundary offset (nm)':>21}")
    for name, value in report["iou"].items():
        print(f"{name:<20} {_cell(value, '.3f'):>6} {_cell(offsets[name], '+.1f'):>21}")
    if report["mean_iou"] is not None:
        print(f"{'mean':<20} {report['mean_iou']:>6.3f}")
    names = list(report["iou"])
    for key, title, fmt in (("iou", "IoU", ".3f"), ("boundary_offset_nm", "offset (nm)", "+.1f")):
        rows = report.get("per_slice", [])
        if rows:
            print(f"\nper slice, {title}:\n{'z':>4} " + " ".join(f"{n[:11]:>11}" for n in names))
        for row in rows:
            print(f"{row['z']:>4} " + " ".join(f"{_cell(row[key][n], fmt):>11}" for n in names))
    print(
        f"({report['directions']} direction(s), {report['seconds']:.1f} s; boundary offset: how "
        "much wider the prediction draws a class than the labels)"
    )
