"""The per-volume implicit neural field (``vemcell_train.inr``) measured like ``vemcell
sparse-eval``: keep every K-th section of a full stack, restore the rest with ``nearest``,
``linear``, ``flow`` and ``inr`` in the same run, segment each restored stack with the same
model as the full stack, and score only the dropped sections (PSNR/SSIM by distance to the
nearest kept section, IoU per class against the labels and the full stack's segmentation,
3D piece counts, seconds) with the scoring helpers of :mod:`vemcell.sparse.evaluate`. The
field is fitted to the kept sections only, so no scored section is ever trained on.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_sparse_inr.py IMAGE.tif \
        --labels LABELS.tif --model cmerolae6 --factors 4 --json docs/sparse/inr_synth_seed1.json

Needs torch (the training extra). One thread throughout (torch, onnxruntime).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "training"))


def main(argv: list[str] | None = None) -> int:
    from vemcell.cards.card import resolve_model
    from vemcell.evaluation.metrics import apply_label_map, parse_label_map
    from vemcell.io.volumes import atomic_path, read_volume
    from vemcell.sparse.evaluate import sparse_eval, table
    from vemcell_train.inr import INRSettings, reconstruct_inr

    d = INRSettings()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("volume")
    ap.add_argument("--labels")
    ap.add_argument("--label-map")
    ap.add_argument("--model", default="cmerolae6")
    ap.add_argument("--factors", type=int, nargs="+", default=[4])
    ap.add_argument("--classes", nargs="+", help="score only these classes")
    ap.add_argument("--directions", default="auto")
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--batch", type=int, default=d.batch)
    ap.add_argument("--json")
    ap.add_argument("--name")
    args = ap.parse_args(argv)

    card = resolve_model(args.model)
    vol = read_volume(args.volume)
    image = vol.array()
    labels = None
    if args.labels:
        lab = read_volume(args.labels, kind="labels").array()
        labels = apply_label_map(lab, parse_label_map(args.label_map), card.n_classes)
    settings = INRSettings(steps=args.steps, batch=args.batch)

    def inr(kept: np.ndarray, k: int, kept_voxel: tuple) -> tuple[np.ndarray, dict]:
        t0 = time.perf_counter()
        restored, facts = reconstruct_inr(kept, k, kept_voxel, settings)
        assert np.array_equal(restored[::k], kept)
        print(f"K={k} inr: fitted in {time.perf_counter() - t0:.1f} s", flush=True)
        return restored, facts

    report = sparse_eval(
        image,
        vol.voxel_size_nm,
        card,
        factors=args.factors,
        methods=("linear", "flow"),
        labels=labels,
        shape_route=False,
        directions=args.directions if args.directions == "auto" else int(args.directions),
        scored_classes=args.classes,
        segment_options={"precision": "fp32", "threads": 1},
        restorers={"inr": inr},
    )
    report = {
        "name": args.name or Path(args.volume).parent.name,
        "volume": str(Path(args.volume).resolve()),
        "labels_path": str(Path(args.labels).resolve()) if args.labels else None,
        "label_map": args.label_map,
        "benchmark": "bench_sparse_inr",
        "threads": 1,
        **report,
        "machine": {"cpus": os.cpu_count(), "threads": 1},
    }
    print(table(report))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
