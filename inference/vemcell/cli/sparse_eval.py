"""``vemcell sparse-eval VOLUME --factors 2 4 8 --methods linear flow``: what sparse sections lose.

Keeps every K-th section of a full stack, restores the rest with each method (and the shape
route), segments, and scores only the dropped sections: PSNR/SSIM, IoU against the labels and
against the full stack's own segmentation, organelle counts and seconds
(:mod:`vemcell.sparse.evaluate`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vemcell.cli.arguments import (
    add_directions_argument,
    add_precision_argument,
    add_voxel_argument,
)
from vemcell.errors import VemcellError
from vemcell.progress import Progress

HELP = "keep every K-th section of a full stack, restore the rest and score the dropped ones"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from vemcell.sparse import IMAGE_METHODS

    p.add_argument("volume", help="a full stack (every section imaged)")
    p.add_argument("--labels", help="ground-truth labels of the same shape (optional)")
    p.add_argument("--label-map", help="map label values to classes, e.g. '0=0,*=1'")
    p.add_argument("--model", help="shipped model name or .onnx with its card (default cmerolae6)")
    p.add_argument(
        "--factors", nargs="+", default=["2", "4", "8"], metavar="K", help="default: 2 4 8"
    )
    p.add_argument(
        "--methods",
        nargs="+",
        choices=[m for m in IMAGE_METHODS if m != "nearest"],
        default=["linear", "flow"],
        help="image-route methods (nearest, the baseline, is always measured)",
    )
    p.add_argument(
        "--learned-model",
        action="append",
        default=[],
        metavar="[K=]M",
        help="restoration model for --methods learned, for every factor or for factor K "
        "(repeatable; default: the shipped zinterp)",
    )
    p.add_argument("--no-shape", action="store_true", help="leave out the shape route")
    p.add_argument(
        "--classes", nargs="+", metavar="CLASS", help="score only these classes (e.g. membrane)"
    )
    p.add_argument("--crop", metavar="Z0:Z1,Y0:Y1,X0:X1", help="measure a crop of the stack")
    add_directions_argument(p, "segment with 1 or 3 directions (the shape route always uses 1)")
    add_precision_argument(p)
    add_voxel_argument(p)
    p.add_argument("--json", help="write the full report to this JSON file")
    p.add_argument("--chart", help="write a PNG chart of IoU relative to the real sections")
    p.add_argument("--name", help="dataset name in the report and chart (default: file name)")


def run(args: argparse.Namespace) -> int:
    from vemcell.cards.card import resolve_model
    from vemcell.evaluation.metrics import apply_label_map, parse_label_map
    from vemcell.io.volumes import atomic_path, read_volume
    from vemcell.sparse import check_factor
    from vemcell.sparse.core import parse_crop
    from vemcell.sparse.evaluate import chart, sparse_eval, table

    factors = [check_factor(k) for k in args.factors]
    learned: dict[int, str] = {}
    for item in args.learned_model:
        key, sep, path = item.partition("=")
        if sep and not path:
            raise VemcellError(f"--learned-model takes M or K=M, not {item!r}.")
        if sep:
            learned[check_factor(key)] = path
        else:
            learned.update({k: item for k in factors})
    card = resolve_model(args.model)
    mapping = parse_label_map(args.label_map)
    prog = Progress(args.progress, [("read", 2), ("measure", 98)])
    with prog.stage("read", "reading the stack"):
        vol = read_volume(args.volume, voxel_size_nm=args.voxel_size)
        image = vol.array()
        labels = None
        if args.labels:
            lab = read_volume(args.labels, kind="labels").array()
            if lab.shape != image.shape:
                raise VemcellError(
                    f"The labels are {lab.shape} but the image is {image.shape}; they must match."
                )
            labels = apply_label_map(lab, mapping, card.n_classes)
        crop = parse_crop(args.crop, image.shape)
        if crop is not None:
            image = image[crop]
            labels = labels[crop] if labels is not None else None
    for note in vol.notes:
        print(f"note: {note}", file=sys.stderr)
    with prog.stage("measure", "restoring and scoring"):
        report = sparse_eval(
            image,
            vol.voxel_size_nm,
            card,
            factors,
            args.methods,
            labels,
            shape_route=not args.no_shape,
            directions=args.directions,
            scored_classes=args.classes,
            progress=prog,
            learned_models=learned,
            segment_options={"precision": args.precision},
        )
    name = args.name or Path(args.volume).parent.name or Path(args.volume).stem
    report = {
        "name": name,
        "volume": str(Path(args.volume).resolve()),
        "labels_path": str(Path(args.labels).resolve()) if args.labels else None,
        "label_map": args.label_map,
        "crop": args.crop,
        **report,
    }
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.chart:
        chart({name: report}, args.chart)
    prog.done("measured")
    if args.progress != "json":
        print(table(report))
        for out in (args.json, args.chart):
            if out:
                print(f"wrote {out}")
    return 0
