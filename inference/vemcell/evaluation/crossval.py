"""Cross-validation tables: folds dealt by stage, stage means, Markdown/CSV/PNG tables."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from vemcell.evaluation.metrics import iou_report
from vemcell.io.volumes import atomic_path


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
