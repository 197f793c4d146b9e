"""``vemcell train``: train the paper's attention U-Net on image/label TIFF pairs (needs torch)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vemcell.errors import VemcellError
from vemcell.progress import Progress
from vemcell_train.cli.common import (
    add_training_arguments,
    build_config,
    check_class_weights,
    load_classes,
    load_volumes,
    require_training,
)

HELP = "train a segmentation model on image/label TIFF pairs (needs the 'train' extra)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_training_arguments(p)
    p.add_argument("--out", required=True, help="run directory: checkpoints, history, config")
    p.add_argument("--val-images", nargs="*", default=[], metavar="TIF", help="validation images")
    p.add_argument("--val-labels", nargs="*", default=[], metavar="TIF", help="their labels")
    p.add_argument("--name", help="model name for the card (default: the run directory's name)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")


def run(args: argparse.Namespace) -> int:
    train_mod = require_training("train", "vemcell_train.train")
    data_mod = require_training("train", "vemcell_train.data")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise VemcellError(f"--out '{out}' exists and is not a directory.")
    if (out / "last.pt").exists() and not args.resume:
        raise VemcellError(
            f"'{out}' already holds a training run; add --resume to continue it or choose "
            "another --out."
        )
    config = build_config(args, train_mod)
    fields = load_classes(args.classes)
    check_class_weights(config, len(fields["classes"]), train_mod)
    card = {
        "name": args.name or fields.get("name") or out.resolve().name,
        "title": fields.get("title", ""),
        "classes": fields["classes"],
        "background_class": fields.get("background_class", 0),
        "normalisation": {"method": args.normalisation},
        "voxel_size_nm": args.voxel_nm,
        "tile": max(256, config.tile),
        "licence": fields.get("licence", ""),
        "training": {"data": [str(Path(p).name) for p in args.images]},
    }
    progress = Progress(args.progress, [("load", 1.0), ("train", 20.0)])
    with progress.stage("load", "reading volumes"):
        vols = load_volumes(args.images, args.labels, card, args, data_mod)
        val = load_volumes(args.val_images, args.val_labels, card, args, data_mod)
    out.mkdir(parents=True, exist_ok=True)
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    with progress.stage("train", "training"):
        result = train_mod.train(
            config,
            vols,
            out,
            card=card,
            val_volumes=val,
            resume=args.resume,
            init_from=args.init,
            progress=progress,
        )
    progress.done(f"best checkpoint {out / 'best.pt'}")
    if args.progress != "json":
        print(f"checkpoints in {out}: best.pt (score {result['best_score']:.4f}), last.pt")
        print(f"export with: vemcell export {out / 'best.pt'} --out MODEL.onnx")
    return 0
