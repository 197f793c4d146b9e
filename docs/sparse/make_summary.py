"""The summary table and chart of docs/sparse from the sparse-eval JSON reports.

    .venv/bin/python docs/sparse/make_summary.py synthetic=docs/sparse/synth_seed1.json,... \
        vnc_sstem=docs/sparse/vnc_sstem.json ... --md docs/sparse/summary.md \
        --chart docs/sparse/sparse_eval.png

Several reports given for one name (comma-separated) are averaged
(:func:`vemcell.sparse.evaluate.merge_reports`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vemcell.sparse.evaluate import chart, merge_reports

# the classes each dataset is judged on (the targets), and the organelles counted
KEY_CLASSES = {
    "synthetic": ["nucleus", "plastid", "mitochondrion", "peroxisome"],
    "vnc_sstem": ["mitochondrion", "membrane"],
    "isbi2012_sstem": ["membrane"],
    "plant_leaf_sem": ["plastid"],
}
COUNTED = {
    "synthetic": ["nucleus", "plastid", "mitochondrion", "peroxisome"],
    "vnc_sstem": ["mitochondrion", "synapse"],
    "plant_leaf_sem": ["plastid"],
}


def fmt(v, nd=3):
    return "–" if v is None else f"{v:.{nd}f}"


def summary(reports: dict[str, dict]) -> str:
    lines = [
        "| dataset | K | route | method | PSNR | SSIM | IoU of the key classes (÷ real sections) "
        "| count error (vs labels / vs full-stack segmentation) | seconds (restore + segment) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rep in reports.items():
        key = "iou_vs_labels" if rep.get("labels") else "iou_vs_full_stack"
        classes = KEY_CLASSES.get(name, rep["scored_classes"])
        counted = [c for c in COUNTED.get(name, []) if c in rep.get("counted_classes", [])]
        for k, entry in rep["factors"].items():
            real = (entry.get("real_sections") or {}).get("iou_vs_labels") or {}
            cells = ", ".join(f"{c} {fmt(real.get(c))}" for c in classes)
            lines.append(f"| {name} | {k} | real sections | – | – | – | {cells} | – | – |")
            for row in entry["rows"]:
                ious = ", ".join(
                    f"{c} {fmt(row[key].get(c))}"
                    + (
                        f" ({row[key][c] / real[c]:.2f}×)"
                        if real.get(c) and row[key].get(c) is not None
                        else ""
                    )
                    for c in classes
                )
                e_lab = row.get("count_error_vs_labels") or {}
                e_full = row.get("count_error_vs_full_stack") or {}
                err = (
                    ", ".join(
                        f"{c} {fmt(e_lab.get(c), 2)} / {fmt(e_full.get(c), 2)}" for c in counted
                    )
                    or "–"
                )
                secs = f"{row['seconds_restore']:.1f} + {row['seconds_segment']:.1f}"
                psnr, ssim = fmt(row.get("psnr"), 2), fmt(row.get("ssim"))
                lines.append(
                    f"| {name} | {k} | {row['route']} | {row['method']} | {psnr} | {ssim} | "
                    f"{ious} | {err} | {secs} |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", metavar="NAME=A.json[,B.json]")
    ap.add_argument("--md", required=True)
    ap.add_argument("--chart", required=True)
    args = ap.parse_args()
    reports = {}
    for item in args.reports:
        name, _, paths = item.partition("=")
        loaded = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths.split(",")]
        reports[name] = merge_reports(loaded, name)
    Path(args.md).write_text(summary(reports), encoding="utf-8")
    chart(reports, args.chart, classes=KEY_CLASSES)
    print(f"wrote {args.md} and {args.chart}")


if __name__ == "__main__":
    main()
