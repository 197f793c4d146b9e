"""``vemcell evaluate``: per-class IoU of an ONNX model on a labelled volume.

The prediction goes through :func:`vemcell.segment.segment`, the code every user runs, so the
score is the score of the shipped pipeline (resampling, normalisation, tiling, 3-direction
fusion and the median filter included).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from vemcell.cards.card import resolve_model
from vemcell.cli.arguments import (
    add_directions_argument,
    add_min_size_argument,
    add_precision_argument,
    add_threads_argument,
    add_tta_argument,
)
from vemcell.errors import VemcellError
from vemcell.evaluation.score import evaluate
from vemcell.io.volumes import atomic_path
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
    add_threads_argument(p)
    add_precision_argument(p)
    p.add_argument(
        "--per-slice",
        action="store_true",
        help="also score every XY slice (serial sections: finds sections labelled differently)",
    )
    p.add_argument("--json", help="write {'iou': {class: value}, 'mean_iou': …} to this file")


def run(args: argparse.Namespace) -> int:
    from vemcell.segmentation.segment import parse_min_size

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
            precision=args.precision,
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
