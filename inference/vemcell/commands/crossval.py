"""``vemcell crossval``: k-fold cross-validation over volumes, tabulated like the paper's Table 3.

Each fold trains on the other volumes (from scratch, or fine-tuning ``--init``'s weights),
exports the model to ONNX and scores every held-out volume through the user-facing segmentation
with 1 and with 3 directions. The result is a class × stage × direction table (the mean over a
stage's volumes, the paper's cases) as Markdown, CSV and a PNG chart, and every volume's scores.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from vemcell.commands._training import (
    add_training_arguments,
    build_config,
    check_class_weights,
    load_classes,
    load_volumes,
    require_training,
)
from vemcell.errors import VemcellError
from vemcell.io import atomic_path
from vemcell.metrics import iou_report
from vemcell.progress import Progress

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


def assign_folds(stages: list[str], folds: int) -> list[int]:
    """The fold (0-based) of each volume: grouped by stage, then dealt out in turn.

    With one volume of every stage per case, as in the paper (six cases, each validating one
    cell of each of five stages), every fold holds one volume of each stage; with a stage name
    per volume this is volume ``i`` in fold ``i % folds``.
    """
    first = {s: k for k, s in reversed(list(enumerate(stages)))}
    order = sorted(range(len(stages)), key=lambda i: (first[stages[i]], i))
    fold = [0] * len(stages)
    for k, i in enumerate(order):
        fold[i] = k % folds
    return fold


def stage_means(results: list[dict[str, Any]], class_names: list[str]) -> list[dict[str, Any]]:
    """One result per (stage, directions), in the order given: each class's IoU averaged over
    that stage's volumes (the paper's cases; classes absent from a volume are left out)."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["stage"], r["directions"]), []).append(r)
    out = []
    for (stage, directions), rs in groups.items():
        means = [
            np.mean([r["iou"][c] for r in rs if r["iou"].get(c) is not None] or [np.nan])
            for c in class_names
        ]
        report = iou_report(np.array(means), class_names)
        out.append({"stage": stage, "directions": directions, **report, "cases": len(rs)})
    return out


def table_rows(results: list[dict[str, Any]], class_names: list[str]) -> tuple[list, list]:
    """Header and rows: one row per class, columns (stage, directions) in volume order."""
    cols = [(r["stage"], r["directions"]) for r in results]
    header = ["Class"] + [f"{s} ({d} dir)" for s, d in cols]
    rows = []
    for name in class_names:
        row = [name]
        for r in results:
            v = r["iou"].get(name)
            row.append("" if v is None else f"{v:.3f}")
        rows.append(row)
    rows.append(
        ["Mean"] + [("" if r["mean_iou"] is None else f"{r['mean_iou']:.3f}") for r in results]
    )
    return header, rows


def write_tables(results: list[dict[str, Any]], class_names: list[str], out: Path) -> list[Path]:
    """Markdown, CSV and PNG of the table (with several volumes of a stage, their mean), and
    every volume's scores in ``crossval_cases.csv``; returns the paths written."""
    cases = results
    results = stage_means(cases, class_names)
    header, rows = table_rows(results, class_names)
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    most = max(r["cases"] for r in results)
    if most > 1:
        md += [
            "",
            f"Each column is the mean over that stage's {most} cases (folds); every "
            "volume's own scores are in crossval_cases.csv.",
        ]
    paths = []
    with atomic_path(out / "crossval.md") as tmp:
        tmp.write_text("\n".join(md) + "\n", encoding="utf-8")
    paths.append(out / "crossval.md")
    with atomic_path(out / "crossval.csv") as tmp, tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    paths.append(out / "crossval.csv")
    with atomic_path(out / "crossval_cases.csv") as tmp, tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["fold", "stage", "volume", "directions", *class_names, "mean"])
        for r in cases:
            scores = [r["iou"].get(c) for c in class_names] + [r["mean_iou"]]
            w.writerow(
                [r.get("fold", ""), r["stage"], r["image"], r["directions"]]
                + ["" if v is None else f"{v:.3f}" for v in scores]
            )
    paths.append(out / "crossval_cases.csv")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return paths
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(class_names) + 2) + 2.2, 4))
    n = len(results)
    width = 0.8 / max(n, 1)
    x = np.arange(len(class_names))
    for i, r in enumerate(results):
        vals = [np.nan if r["iou"].get(c) is None else r["iou"][c] for c in class_names]
        hatch = "//" if r["directions"] == 3 else None
        ax.bar(
            x + i * width - 0.4 + width / 2,
            vals,
            width,
            label=f"{r['stage']} ({r['directions']} dir)",
            hatch=hatch,
        )
    ax.set_xticks(x, class_names, rotation=20)
    ax.set_ylabel("IoU")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside, not over, bars
    ax.set_title("Cross-validation IoU per class")
    fig.tight_layout()
    with atomic_path(out / "crossval.png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    paths.append(out / "crossval.png")
    return paths


def run(args: argparse.Namespace) -> int:
    train_mod = require_training("crossval", "vemcell_train.train")
    data_mod = require_training("crossval", "vemcell_train.data")
    export_mod = require_training("crossval", "vemcell_train.export")
    from vemcell.commands.evaluate import evaluate
    from vemcell.modelcard import load_card

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
