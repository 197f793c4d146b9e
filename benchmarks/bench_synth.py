"""Synthetic-volume generation speed (training draws many volumes, so it must stay cheap).

Times :func:`vemcell.synth.generate` for a few shapes, with default and randomised imaging, on
one core (the generator is single-threaded numpy/scipy). Each time is also given as a ratio to
one 3D Gaussian filter (σ = 1 voxel) of the same volume, run in the same process, so numbers
from different machines compare; the budget is 10 s for 128³.

    .venv/bin/python benchmarks/bench_synth.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

HERE = Path(__file__).resolve().parent

CASES = [
    ("64³, 1 cell", {"shape": (64, 64, 64), "voxel_nm": 40.0}),
    ("128³ default", {"shape": (128, 128, 128)}),
    ("128³ randomised", {"shape": (128, 128, 128), "randomise": True}),
    ("sample 112×192×192, 3 cells", {"shape": (112, 192, 192), "stages": [1, 3, 5]}),
]


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    from vemcell.synth import generator as synth

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=HERE / "results" / "synth_speed.json")
    args = p.parse_args(argv)
    rows = []
    for name, kw in CASES:
        shape = kw["shape"]
        vol = np.random.default_rng(0).random(shape, dtype=np.float32)
        base = best_of(lambda v=vol: ndi.gaussian_filter(v, 1.0), args.repeats)
        t = best_of(lambda kw=kw: synth.generate(seed=1, **kw), args.repeats)
        r = synth.generate(seed=1, **kw)
        rows.append(
            {
                "case": name,
                "voxels": int(np.prod(shape)),
                "cells": len(r.info["cells"]),
                "seconds": round(t, 3),
                "gaussian_s": round(base, 4),
                "ratio_to_gaussian": round(t / base, 1),
                "mvoxel_per_s": round(np.prod(shape) / t / 1e6, 2),
            }
        )
    print(f"{'case':32s} {'cells':>5s} {'seconds':>8s} {'× gaussian':>10s} {'Mvox/s':>7s}")
    for r in rows:
        print(
            f"{r['case']:32s} {r['cells']:5d} {r['seconds']:8.2f} "
            f"{r['ratio_to_gaussian']:10.1f} {r['mvoxel_per_s']:7.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"cpu_count": os.cpu_count(), "repeats": args.repeats, "rows": rows}, indent=1)
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
