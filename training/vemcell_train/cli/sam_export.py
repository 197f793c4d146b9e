"""``vemcell sam-export``: turn Meta's SAM checkpoint into the ONNX pair vemcell runs."""

from __future__ import annotations

import argparse
import json

from vemcell.errors import VemcellError

HELP = "export Meta's Segment Anything checkpoint to ONNX for --foreground sam (needs [sam])"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        required=True,
        help="Meta's SAM checkpoint, e.g. sam_vit_b_01ec64.pth from the segment-anything release",
    )
    p.add_argument(
        "--model-type", required=True, choices=["vit_b", "vit_l", "vit_h"], help="SAM size"
    )
    p.add_argument(
        "--out",
        required=True,
        help="folder for sam_encoder.onnx, sam_decoder.onnx and sam.json (models/sam is "
        "found automatically; elsewhere pass --sam DIR or set VEMCELL_SAM)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        from vemcell_train import sam_export
    except ImportError:
        raise VemcellError(
            "sam-export needs vemcell's training package and the 'sam' extra: "
            "pip install 'vemcell[sam]'."
        ) from None
    card_path = sam_export.export_checkpoint(args.checkpoint, args.model_type, args.out)
    card = json.loads(card_path.read_text(encoding="utf-8"))
    if args.progress == "json":
        print(json.dumps({"stage": "done", "fraction": 1.0, "message": f"wrote {card_path}"}))
    else:
        print(f"exported {card['name']} to {card_path.parent} (check: {card['export_check']})")
    return 0
