"""``vemcell min-size``: choose each class's minimum piece size on labelled volumes.

Specks (a few voxels of one class inside another) are the commonest false organelles. A model
card's ``min_size_um3`` removes them at inference (:func:`vemcell.segment.remove_small_pieces`);
this command measures, on validation volumes the model was not trained on, how each class's IoU
moves as the minimum size grows, and picks the smallest size that reaches the best IoU (within
``--tolerance``), so real small organelles are kept. Store the result with ``vemcell export
--min-size`` or pass it to ``segment``/``run`` as ``--min-size``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from vemcell.cards.card import resolve_model
from vemcell.cli.arguments import add_directions_argument, add_threads_argument, add_tta_argument
from vemcell.errors import VemcellError
from vemcell.evaluation.min_size import default_sizes, tune_min_size
from vemcell.evaluation.score import read_pair
from vemcell.io.volumes import atomic_path
from vemcell.progress import Progress

HELP = "choose each class's minimum piece size (speck removal) on labelled validation volumes"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="ONNX model (with its card) or shipped model name")
    p.add_argument("--image", nargs="+", required=True, help="validation image volume(s)")
    p.add_argument("--labels", nargs="+", required=True, help="their label volumes, same order")
    p.add_argument(
        "--classes", nargs="+", help="classes to tune (default: every class but the background)"
    )
    p.add_argument(
        "--sizes",
        nargs="+",
        type=float,
        metavar="UM3",
        help="candidate sizes in µm³ (default: 0 and 10–3200 voxels of the model's grid)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.001,
        help="take the smallest size whose mean IoU is within this of the best (default 0.001)",
    )
    add_directions_argument(p, "predict XY slices only (1) or XY, XZ and YZ fused (3)")
    p.add_argument("--median", type=int, default=3, help="3D median filter size (0: none)")
    add_tta_argument(p)
    p.add_argument("--label-map", help="map label values to classes, e.g. '0=0,*=3'")
    add_threads_argument(p)
    p.add_argument("--json", help="write every measured IoU and the choice to this file")


def run(args: argparse.Namespace) -> int:
    from vemcell.segmentation.segment import segment

    card = resolve_model(args.model)
    if len(args.image) != len(args.labels):
        raise VemcellError(
            f"--image names {len(args.image)} volume(s) but --labels {len(args.labels)}; "
            "give one label volume per image."
        )
    classes = args.classes or [
        n for i, n in enumerate(card.class_names) if i != card.background_class
    ]
    for name in classes:
        if name not in card.class_names:
            raise VemcellError(
                f"--classes names {name!r}, which is not a class of model {card.name} "
                f"({', '.join(card.class_names)})."
            )
    if args.sizes and any(not (s >= 0 and math.isfinite(s)) for s in args.sizes):
        raise VemcellError("--sizes must be volumes of at least 0 µm³.")
    if args.median < 0:
        raise VemcellError(f"--median must be 0 or a positive size, not {args.median}.")
    if not 0 <= args.tolerance < 1:
        raise VemcellError(f"--tolerance must be between 0 and 1, not {args.tolerance}.")
    progress = Progress(args.progress, [("segment", 0.8), ("tune", 0.2)])
    labelled = []
    with progress.stage("segment", f"segmenting with {card.name}"):
        for k, (image, labels) in enumerate(zip(args.image, args.labels, strict=True)):
            vol, truth = read_pair(card, image, labels, args.label_map)
            res = segment(
                vol,
                card,
                directions=args.directions,
                median=args.median,
                threads=args.threads,
                tta=args.tta,
                min_size={},
            )
            labelled.append((res.labels, truth, vol.voxel_size_nm))
            progress.update((k + 1) / len(args.image), f"volume {k + 1}/{len(args.image)}")
    sizes = sorted(set(args.sizes or default_sizes(card, labelled[0][2])) | {0.0})
    with progress.stage("tune", "trying minimum sizes"):
        report = tune_min_size(card, labelled, classes, sizes, args.tolerance)
    report["volumes"] = [str(p) for p in args.image]
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    progress.done("tuned")
    if args.progress != "json":
        _print(report, sizes)
    return 0


def _print(report: dict[str, Any], sizes: Sequence[float]) -> None:
    """The IoU table (classes × sizes) and the choice, for people."""
    out = sys.stdout
    cols = [f"{s:g}" for s in sizes]
    width = max(8, *(len(c) for c in cols))
    out.write(f"{'µm³':<20}" + "".join(f"{c:>{width + 1}}" for c in cols) + "\n")
    for name, rows in report["table"].items():
        cells = ["—" if r["iou"] is None else f"{r['iou']:.3f}" for r in rows]
        mark = report["chosen"].get(name, 0.0)
        line = "".join(
            f"{(c + '*') if r['um3'] == mark else c:>{width + 1}}"
            for c, r in zip(cells, rows, strict=True)
        )
        out.write(f"{name:<20}{line}\n")
    out.write("* the smallest size within the tolerance of the best mean IoU\n")
    if report["chosen"]:
        out.write(f"chosen: {report['export_flags']}\n")
    else:
        out.write("chosen: none (removing pieces did not help any class)\n")
