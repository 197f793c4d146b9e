"""Speed of restoring sparse sections: a 64×256×256 result at K = 4 (the issue's target: ≤ 60 s
on 2 cores), by each method of ``vemcell.sparse.reconstruct`` and by the shape route's
interpolation (``vemcell.sparse.shape_interpolate``, labels of the kept sections given), with
each one's time as a ratio to ``flow``'s in the same process.

The input is 17 kept sections of a synthetic *C. merolae* volume (vemcell.synth, 20 nm, every
4th of a 65-section stack), so the result is 65×256×256 (64 intervals of 20 nm). Each figure is
the best of ``--repeats`` rounds, the methods run in turn. Segmentation is not timed here
(``vemcell sparse-eval`` reports it per method).

    .venv/bin/python benchmarks/bench_sparse.py [--repeats 3] [--factor 4] [--size 256]

writes docs/sparse/bench_sparse.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    from vemcell import sparse
    from vemcell.synth.generator import generate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--sections", type=int, default=64, help="intervals of the result")
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "sparse" / "bench_sparse.json"))
    args = ap.parse_args()
    k, n_out = args.factor, args.sections + 1
    synth = generate((n_out, args.size, args.size), seed=7)
    kept_image, kept_labels = synth.image[::k], synth.labels[::k]
    voxel = (20.0 * k, 20.0, 20.0)  # the sparse stack's: picks the shipped learned model
    jobs = {
        m: (lambda m=m: sparse.reconstruct(kept_image, k, m, voxel_size_nm=voxel))
        for m in sparse.IMAGE_METHODS
    }
    jobs["shape route (interpolation only)"] = lambda: sparse.shape_interpolate(kept_labels, k, 6)
    best = dict.fromkeys(jobs, float("inf"))
    for _ in range(args.repeats):
        for name, fn in jobs.items():
            t0 = time.perf_counter()
            out = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
            assert out.shape == (n_out, args.size, args.size)
    result = {
        "benchmark": "bench_sparse",
        "input_zyx": list(kept_image.shape),
        "result_zyx": [n_out, args.size, args.size],
        "factor": k,
        "seconds_best_of": args.repeats,
        "seconds": {name: round(s, 3) for name, s in best.items()},
        "ratio_to_flow": {name: round(s / best["flow"], 2) for name, s in best.items()},
        "target_seconds": 60.0,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{'method':34s} {'seconds':>8s} {'÷ flow':>7s}")
    for name, s in best.items():
        print(f"{name:34s} {s:8.2f} {s / best['flow']:7.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
