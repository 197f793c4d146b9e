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

import numpy as np

from vemcell.commands.evaluate import read_pair
from vemcell.commands.info import add_directions_argument, add_tta_argument
from vemcell.errors import VemcellError
from vemcell.io import atomic_path
from vemcell.metrics import UNLABELLED, iou_per_class, iou_report
from vemcell.modelcard import ModelCard, resolve_model
from vemcell.progress import Progress

HELP = "choose each class's minimum piece size (speck removal) on labelled validation volumes"

# candidate sizes in voxels of the model's grid (0 = keep every piece)
LADDER = (0, 10, 25, 50, 100, 200, 400, 800, 1600, 3200)


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
    p.add_argument("--threads", type=int, help="onnxruntime threads (default: all cores)")
    p.add_argument("--json", help="write every measured IoU and the choice to this file")


def default_sizes(card: ModelCard, voxel_nm: Sequence[float]) -> list[float]:
    """0 and 10–3200 voxels of the model's grid (or the data's finest voxel), in µm³ to 3 digits."""
    v = float(card.voxel_size_nm or min(voxel_nm))
    return [float(f"{n * v**3 * 1e-9:.3g}") for n in LADDER]


def tune_min_size(
    card: ModelCard,
    labelled: Sequence[tuple[np.ndarray, np.ndarray, Sequence[float]]],
    classes: Sequence[str],
    sizes_um3: Sequence[float],
    tolerance: float = 0.001,
) -> dict[str, Any]:
    """Mean IoU of each class over ``labelled`` (prediction, truth, voxel nm) per candidate size.

    Each class is tuned alone (the others keep every piece); ``chosen`` maps a class to the
    smallest size within ``tolerance`` of its best mean IoU, and ``iou_chosen`` scores all the
    chosen sizes applied together.
    """
    from vemcell.segment import min_size_voxels, remove_small_pieces

    names = card.class_names

    def mean_iou(sizes: dict[str, float]) -> np.ndarray:
        rows = []
        for pred, truth, voxel in labelled:
            out, _ = remove_small_pieces(pred, min_size_voxels(card, sizes, voxel), card)
            rows.append(iou_per_class(out, truth, card.n_classes, ignore=UNLABELLED))
        with np.errstate(all="ignore"):
            return np.nanmean(np.array(rows, float), axis=0) if rows else np.array([])

    base = mean_iou({})
    table: dict[str, list[dict[str, float | None]]] = {}
    chosen: dict[str, float] = {}
    for name in classes:
        c = names.index(name)
        rows = []
        for um3 in sizes_um3:
            value = mean_iou({name: um3})[c] if um3 > 0 else base[c]
            rows.append({"um3": um3, "iou": None if np.isnan(value) else round(float(value), 6)})
        table[name] = rows
        scored = [r for r in rows if r["iou"] is not None]
        if not scored:
            continue
        best = max(r["iou"] for r in scored)  # type: ignore[type-var]
        pick = min(r["um3"] for r in scored if r["iou"] >= best - tolerance)  # type: ignore[operator]
        if pick > 0:
            chosen[name] = float(pick)  # type: ignore[arg-type]
    return {
        "model": card.name,
        "tolerance": tolerance,
        "iou_without": iou_report(base, names)["iou"],
        "table": table,
        "chosen": chosen,
        "iou_chosen": iou_report(mean_iou(chosen), names)["iou"],
        "export_flags": " ".join(f"--min-size {k}={v:g}" for k, v in chosen.items()),
    }


def run(args: argparse.Namespace) -> int:
    from vemcell.segment import segment

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
