"""Segmentation speed and accuracy side by side: today's settings against the older ones.

Scores the cmerolae6 model on fresh synthetic test volumes (the card's seeds and imaging, both
protocols: cells cut by the volume edge, and one whole cell per cube) with each setting, in the
same process, 3 directions, and prints wall and CPU seconds (CPU time is what to compare on a
shared machine), the CPU-time ratio to the baseline and every class's IoU
difference from the baseline (the accuracy bar of issue 20 is ±0.005).

Settings: ``baseline`` = batches of 8 tiles of 256² with a quarter overlap (before 2026-12);
``default`` = one slice at a time, whole slices up to 1024²; ``int8`` = the default with the
model quantised to INT8 (QOperator, per-channel weights, calibrated on training-like slices).

    .venv/bin/python benchmarks/bench_segment.py [--volumes 5] [--settings baseline default int8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODEL = REPO / "models" / "cmerolae6.onnx"


def int8_model(tmp: Path) -> Path:
    """cmerolae6 quantised to INT8 on slices of synthetic volumes the scoring never uses."""
    from vemcell.synth import generator as synth
    from vemcell_train.onnx_export import quantise_int8

    vol = synth.generate(shape=(64, 160, 160), voxel_nm=20.0, seed=31337)
    img = vol.image.astype(np.float32) / 255.0  # the card's "scale" normalisation of uint8
    slices = img[::4]
    out = tmp / "cmerolae6_int8.onnx"
    quantise_int8(MODEL, out, slices)
    card = json.loads(MODEL.with_suffix(".json").read_text())
    card["onnx"] = out.name
    out.with_suffix(".json").write_text(json.dumps(card))
    return out


def segmenter(setting: str, tmp: Path):
    from vemcell.cards.card import load_card
    from vemcell.segmentation.segment import Segmenter

    if setting == "baseline":
        return Segmenter(load_card(MODEL), threads=2, batch_size=8, tile=256)
    if setting == "default":
        return Segmenter(load_card(MODEL), threads=2)
    if setting == "int8":
        return Segmenter(load_card(int8_model(tmp)), threads=2)
    raise SystemExit(f"unknown setting {setting!r}")


def slice_cost(sizes: tuple[int, ...] = (256, 512, 1024), reps: int = 3) -> list[dict]:
    """CPU ms per slice predicted whole against 256² tiles with a quarter overlap (the old way)."""
    from vemcell.cards.card import load_card
    from vemcell.segmentation.segment import Segmenter

    card = load_card(MODEL)
    tiled, whole = Segmenter(card, threads=2, tile=256), Segmenter(card, threads=2)
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        x = rng.random((1, n, n), dtype=np.float32)
        cost = {}
        for name, seg in (("tiles_256", tiled), ("whole", whole)):
            seg.predict_slices(x)
            c0 = time.process_time()
            for _ in range(reps):
                seg.predict_slices(x)
            cost[name] = (time.process_time() - c0) / reps * 1000
        rows.append({"size": n, **{k: round(v, 1) for k, v in cost.items()}})
        print(
            f"{n:>5}² slice: tiles of 256² {cost['tiles_256']:8.1f} CPU ms, whole "
            f"{cost['whole']:8.1f} CPU ms ({cost['tiles_256'] / cost['whole']:.2f}×)"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=5, help="volumes per protocol (one a stage)")
    ap.add_argument("--settings", nargs="+", default=["baseline", "default", "int8"])
    ap.add_argument("--json", default=str(HERE / "results" / "bench_segment.json"))
    ap.add_argument("--slice-sizes", type=int, nargs="*", default=[256, 512, 1024])
    args = ap.parse_args()
    slices = slice_cost(tuple(args.slice_sizes))
    from vemcell.evaluation.score import evaluate
    from vemcell.io.volumes import write_tiff
    from vemcell_train.recipes import scoring_volume

    rows: dict[str, dict] = {s: {"seconds": 0.0, "cpu": 0.0, "iou": {}} for s in args.settings}
    with tempfile.TemporaryDirectory(prefix="vemcell-bench-") as td:
        tmp = Path(td)
        segs = {s: segmenter(s, tmp) for s in args.settings}
        cases = []
        for protocol, shape, whole in (("cut", (96, 160, 160), False), ("whole", (144,) * 3, True)):
            for k in range(args.volumes):
                stage = k % 5 + 1
                seed = 7000 + stage + 100 * (k // 5)
                r = scoring_volume(stage, seed, shape, 20.0, whole)
                img, lab = tmp / f"{protocol}{k}_image.tif", tmp / f"{protocol}{k}_labels.tif"
                write_tiff(img, r.image, r.voxel_size_nm)
                write_tiff(lab, r.labels, r.voxel_size_nm)
                cases.append((protocol, img, lab))
        for setting, seg in segs.items():
            for protocol, img, lab in cases:
                print(f"{setting}: {img.name}", file=sys.stderr, flush=True)
                t0, c0 = time.perf_counter(), time.process_time()
                rep = evaluate(seg.card, img, lab, directions=3, segmenter=seg, offsets=False)
                rows[setting]["seconds"] += time.perf_counter() - t0
                rows[setting]["cpu"] += time.process_time() - c0
                for c, v in rep["iou"].items():
                    if v is not None:
                        rows[setting]["iou"].setdefault(f"{protocol}/{c}", []).append(v)
    base = args.settings[0]
    names = sorted(rows[base]["iou"])
    print(f"{'setting':>9} {'wall s':>8} {'CPU s':>8} {'× CPU':>7} {'max |ΔIoU|':>11}  worst class")
    summary = {}
    for s in args.settings:
        means = {c: float(np.mean(v)) for c, v in rows[s]["iou"].items()}
        base_means = {c: float(np.mean(v)) for c, v in rows[base]["iou"].items()}
        delta = {c: round(means[c] - base_means[c], 4) for c in names}
        worst = max(delta, key=lambda c: abs(delta[c]))
        ratio = rows[base]["cpu"] / rows[s]["cpu"]
        print(
            f"{s:>9} {rows[s]['seconds']:>8.1f} {rows[s]['cpu']:>8.1f} {ratio:>6.2f}× "
            f"{abs(delta[worst]):>11.4f}  {worst} ({delta[worst]:+.4f})"
        )
        summary[s] = {
            "wall_seconds": round(rows[s]["seconds"], 2),
            "cpu_seconds": round(rows[s]["cpu"], 2),
            "cpu_speedup_vs_baseline": round(ratio, 3),
            "mean_iou": {c: round(v, 4) for c, v in means.items()},
            "delta_iou_vs_baseline": delta,
        }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "baseline": base,
        "volumes_per_protocol": args.volumes,
        "settings": summary,
        "slice_cost_cpu_ms": slices,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
