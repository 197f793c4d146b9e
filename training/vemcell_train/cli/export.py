"""``vemcell export``: a training checkpoint to an ONNX model plus its model card (needs torch)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vemcell.errors import VemcellError
from vemcell.io.volumes import atomic_path
from vemcell.progress import Progress
from vemcell_train.cli.common import require_training

HELP = "export a training checkpoint to ONNX with its model card (needs the 'train' extra)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="best.pt or last.pt from 'vemcell train'")
    p.add_argument("--out", required=True, help="output .onnx (the card is written beside it)")
    p.add_argument("--name", help="model name in the card (default: the name used in training)")
    p.add_argument(
        "--int8",
        action="store_true",
        help="also write an INT8 model (OUT stem + '_int8.onnx'), calibrated on --calibration",
    )
    p.add_argument("--calibration", help="image volume for INT8 calibration and comparison")
    p.add_argument(
        "--calibration-labels",
        help="labels of the calibration volume: report IoU of both models against them",
    )
    p.add_argument("--label-map", help="map calibration label values to classes")
    p.add_argument("--directions", type=int, choices=[1, 3], default=1, help="for the comparison")
    p.add_argument(
        "--min-size",
        action="append",
        default=[],
        metavar="CLASS=UM3",
        help="store the smallest piece of CLASS kept at inference in the card (repeatable)",
    )
    p.add_argument(
        "--validation",
        help="JSON from 'vemcell evaluate' (or a list of them) to store as the card's validation",
    )


def _int8(args: argparse.Namespace, out: Path, facts: dict, progress: Progress) -> dict:
    """Quantise, write the INT8 card, and measure the IoU change against the float model."""
    from vemcell.cards.card import load_card, write_card
    from vemcell.evaluation.metrics import iou_per_class, iou_report
    from vemcell.evaluation.score import evaluate
    from vemcell.io.volumes import read_volume
    from vemcell.segmentation.segment import prepare, segment
    from vemcell_train.onnx_export import calibration_slices, quantise_int8

    card32 = load_card(out)
    vol = read_volume(args.calibration)
    work, _ = prepare(vol, card32, directions=args.directions)
    context = (facts["net"].in_channels - 1) // 2  # neighbouring slices the network takes
    slices = calibration_slices(work, 24, card32.divisor, card32.tile, context)
    q_path = out.with_name(out.stem + "_int8.onnx")
    quantise_int8(out, q_path, slices)
    card8 = dict(json.loads(out.with_suffix(".json").read_text(encoding="utf-8")))
    card8["name"] = card8["name"] + "-int8"
    card8["onnx"] = q_path.name
    card8["export"] = {**card8.get("export", {}), "precision": "int8 (QDQ, per-channel)"}
    card8_path = q_path.with_suffix(".json")
    with atomic_path(card8_path) as tmp:
        write_card(card8, tmp)
    cardq = load_card(card8_path)
    if args.calibration_labels:
        kw = {"directions": args.directions, "label_map": args.label_map}
        r32 = evaluate(card32, args.calibration, args.calibration_labels, **kw)
        r8 = evaluate(cardq, args.calibration, args.calibration_labels, **kw)
        change = {
            k: (None if r8["iou"][k] is None else round(r8["iou"][k] - r32["iou"][k], 4))
            for k in r32["iou"]
        }
        comparison = {"against": "labels", "fp32": r32, "int8": r8, "iou_change": change}
    else:
        l32 = segment(vol, card32, directions=args.directions).labels
        l8 = segment(vol, cardq, directions=args.directions).labels
        agree = iou_report(
            iou_per_class(l8, l32, card32.n_classes, ignore=None), card32.class_names
        )
        comparison = {"against": "fp32 prediction", "agreement_iou": agree}
    card8["export"]["comparison"] = comparison
    with atomic_path(card8_path) as tmp:
        write_card(card8, tmp)
    return {"onnx": str(q_path), "bytes": q_path.stat().st_size, "comparison": comparison}


def run(args: argparse.Namespace) -> int:
    export_mod = require_training("export", "vemcell_train.onnx_export")
    out = Path(args.out)
    if args.int8 and not args.calibration:
        raise VemcellError("--int8 needs --calibration VOLUME to calibrate the quantisation.")
    extra = None
    if args.validation:
        try:
            extra = {"validation": json.loads(Path(args.validation).read_text(encoding="utf-8"))}
        except (OSError, json.JSONDecodeError) as exc:
            raise VemcellError(
                f"--validation '{args.validation}' is not readable JSON ({exc})."
            ) from None
    progress = Progress(args.progress, [("export", 1.0), ("int8", 4.0 if args.int8 else 0.0)])
    with progress.stage("export", "exporting ONNX"):
        facts = export_mod.export_checkpoint(
            args.checkpoint, out, name=args.name, extra_card=extra, min_size=args.min_size
        )
    q = None
    if args.int8:
        with progress.stage("int8", "quantising to INT8"):
            q = _int8(args, out, facts, progress)
    progress.done("exported")
    if args.progress != "json":
        print(
            f"wrote {facts['onnx']} ({facts['bytes'] / 1e6:.1f} MB) and {facts['card']}; "
            f"max |onnxruntime − torch| = {facts['max_abs_diff']:.2e}"
        )
        if q:
            print(f"wrote {q['onnx']} ({q['bytes'] / 1e6:.1f} MB)")
            print(json.dumps(q["comparison"].get("iou_change") or q["comparison"]["agreement_iou"]))
    return 0
