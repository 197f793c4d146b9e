"""End-to-end `vemcell run` cost on synthetic volumes of growing size.

Each size runs as its own `vemcell run` process (so peak RSS is that size's alone) on a
synthetic C. merolae volume; the table gives seconds per stage and peak memory, and each as a
ratio to the smallest size run in the same invocation — how cost grows with volume.

    .venv/bin/python benchmarks/bench_pipeline.py [--sizes 128 256 512] [--model M]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_size(size: int, model: str | None, workdir: Path, threads: int | None) -> dict:
    from vemcell.synth import generator as synth

    folder = workdir / f"synth_{size}"
    t0 = time.perf_counter()
    result = synth.generate(shape=(size, size, size), voxel_nm=20.0, seed=size)
    synth.write(result, folder)
    gen_s = time.perf_counter() - t0
    out = workdir / f"run_{size}"
    cmd = [sys.executable, "-m", "vemcell", "run", str(folder / "image.tif"), "--out", str(out)]
    cmd += ["--progress", "none"]
    if model:
        cmd += ["--model", model]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"vemcell run failed on {size}³: {proc.stderr.strip()}")
    report = json.loads((out / "report.json").read_text())
    return {
        "size": size,
        "voxels": size**3,
        "generate_s": round(gen_s, 2),
        "timings_s": report["timings_s"],
        "peak_rss_mb": report["peak_rss_mb"],
        "cells": report["cells"],
        "meshes": report["meshes"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--model")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--json", default=str(HERE / "results" / "bench_pipeline.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="vemcell-bench-") as tmp:
        for size in sorted(args.sizes):
            print(f"running {size}³ …", file=sys.stderr, flush=True)
            rows.append(run_size(size, args.model, Path(tmp), args.threads))
    base = rows[0]
    stages = ["read", "segment", "cells", "mesh", "measure", "write", "total"]
    header = f"{'size':>6} {'Mvox':>7} " + " ".join(f"{s:>9}" for s in stages)
    header += f" {'peak MB':>8} {'× time':>7} {'× mem':>6} {'× vox':>6}"
    print(header)
    for r in rows:
        t = r["timings_s"]
        line = f"{r['size']:>5}³ {r['voxels'] / 1e6:>7.2f} "
        line += " ".join(f"{t.get(s, 0.0):>9.2f}" for s in stages)
        r["ratio_total_time"] = round(t["total"] / base["timings_s"]["total"], 2)
        r["ratio_peak_rss"] = round(r["peak_rss_mb"] / base["peak_rss_mb"], 2)
        r["ratio_voxels"] = round(r["voxels"] / base["voxels"], 2)
        line += f" {r['peak_rss_mb']:>8.0f} {r['ratio_total_time']:>7.2f}"
        line += f" {r['ratio_peak_rss']:>6.2f} {r['ratio_voxels']:>6.0f}"
        print(line)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"baseline": f"{base['size']}³", "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
