"""``vemcell crossval``: k-fold cross-validation over volumes, tabulated like the paper's Table 3.

Each fold trains on the other volumes (from scratch, or fine-tuning ``--init``'s weights),
exports the model to ONNX and scores every held-out volume through the user-facing segmentation
with 1 and with 3 directions. The result is a class × stage × direction table (the mean over a
stage's volumes, the paper's cases) as Markdown, CSV and a PNG chart, and every volume's scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vemcell.errors import VemcellError
from vemcell.evaluation.crossval import assign_folds, write_tables
from vemcell.io.volumes import atomic_path
from vemcell.progress import Progress
from vemcell_train.cli.common import (
    add_training_arguments,
    build_config,
    check_class_weights,
    load_classes,
    load_volumes,
    require_training,
)

HELP = "k-fold cross-validation over volumes, IoU table as in the paper (needs 'train' extra)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_training_arguments(p)
    p.add_argument("--out", required=True, help="directory for fold models and the tables")
    p.add_argument(
        "--folds",
        type=int,
        help="number of folds (default: one per volume; a stage's volumes go to different folds)",
    )
    p.add_argument(
        "--stage-names",
        nargs="+",
        help="column name of each volume (default: file names); give several volumes the same "
        "stage for the paper's cases (each fold validates one of each stage, the table shows "
        "each stage's mean)",
    )
    p.add_argument("--median", type=int, default=3, help="3D median filter size for scoring")


def run(args: argparse.Namespace) -> int:
    train_mod = require_training("crossval", "vemcell_train.train")
    data_mod = require_training("crossval", "vemcell_train.data")
    export_mod = require_training("crossval", "vemcell_train.onnx_export")
    from vemcell.cards.card import load_card
    from vemcell.evaluation.score import evaluate

    n = len(args.images)
    folds = args.folds or n
    if n < 2:
        raise VemcellError("Cross-validation needs at least two volumes.")
    if not 2 <= folds <= n:
        raise VemcellError(f"--folds must be between 2 and the number of volumes ({n}).")
    if len(args.labels) != n:
        raise VemcellError(f"Got {n} image(s) but {len(args.labels)} label volume(s).")
    stages = args.stage_names or [Path(p).stem for p in args.images]
    if len(stages) != n:
        raise VemcellError(f"--stage-names must name all {n} volumes.")
    config = build_config(args, train_mod)
    fields = load_classes(args.classes)
    check_class_weights(config, len(fields["classes"]), train_mod)
    if args.init:
        train_mod.load_checkpoint(args.init)  # a missing or foreign file fails before training
    card = {
        "name": fields.get("name", "crossval"),
        "classes": fields["classes"],
        "background_class": fields.get("background_class", 0),
        "normalisation": {"method": args.normalisation},
        "voxel_size_nm": args.voxel_nm,
        "tile": max(256, config.tile),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = Progress(args.progress, [(f"fold {f + 1}", 1.0) for f in range(folds)])
    vols = load_volumes(args.images, args.labels, card, args, data_mod)
    results: list[dict[str, Any]] = []
    fold_of = assign_folds(stages, folds)
    for f in range(folds):
        held = [i for i in range(n) if fold_of[i] == f]
        train_idx = [i for i in range(n) if fold_of[i] != f]
        fold_dir = out / f"fold{f + 1}"
        with progress.stage(f"fold {f + 1}", f"training fold {f + 1}/{folds}"):
            train_mod.train(
                config,
                [vols[i] for i in train_idx],
                fold_dir,
                card=card,
                init_from=args.init,
                progress=None,
            )
            onnx = fold_dir / "model.onnx"
            export_mod.export_checkpoint(fold_dir / "last.pt", onnx)
            fold_card = load_card(onnx)
            for i in held:
                for d in (1, 3):
                    r = evaluate(
                        fold_card,
                        args.images[i],
                        args.labels[i],
                        directions=d,
                        median=args.median,
                        label_map=args.label_map,
                        offsets=False,
                    )
                    r.update({"fold": f + 1, "stage": stages[i], "volume": args.images[i]})
                    results.append(r)
    order = {s: k for k, s in enumerate(stages)}
    results.sort(key=lambda r: (order[r["stage"]], r["directions"]))
    with atomic_path(out / "crossval.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    paths = write_tables(results, [c["name"] for c in card["classes"]], out)
    progress.done("cross-validation finished")
    if args.progress != "json":
        print((out / "crossval.md").read_text(encoding="utf-8"))
        print("wrote " + ", ".join(str(p) for p in [out / "crossval.json", *paths]))
    return 0
