"""Peak memory of `vemcell segment` (3 directions, six classes) as the volume grows.

Each size runs in its own process on a blob volume with a pointwise six-class ONNX model (so
the figure is the pipeline's own memory — volume, normalised copy, uint8 fusion accumulators,
labels, median filter — not a network's activations). Reported: peak RSS, bytes per voxel, and
the ratio to the smallest size run in the same invocation.

    .venv/bin/python benchmarks/bench_memory.py [--sizes 128 256 512]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

CHILD = r"""
import json, resource, sys, time
from vemcell.io.volumes import read_volume
from vemcell.cards.card import load_card
from vemcell.segmentation.segment import segment
vol = read_volume(sys.argv[1])
card = load_card(sys.argv[2])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
res = segment(vol, card, directions=3, median=3, threads=2)
dt = time.perf_counter() - t0
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_after_read_mb": base, "seconds": dt,
                  "classes_found": sorted(set(res.labels[::7, ::7, ::7].ravel().tolist()))}))
"""


def blob_volume(n: int, seed: int = 0) -> np.ndarray:
    """Six grey levels in random spheres, uint8, like a stack of labelled organelles."""
    rng = np.random.default_rng(seed)
    vol = np.full((n, n, n), 20, np.uint8)
    z, y, x = np.ogrid[:n, :n, :n]
    for _ in range(40):
        c = rng.integers(0, n, 3)
        r = rng.integers(n // 16, n // 6)
        level = rng.choice([60, 110, 150, 200, 240])
        vol[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r * r] = level
    return vol


def main() -> None:
    from tiny_models import make_band_model
    from vemcell.io.volumes import write_tiff

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--json", default=str(HERE / "results" / "bench_memory.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="vemcell-mem-") as tmp:
        card = make_band_model(
            Path(tmp),
            name="six",
            centres=(20 / 255, 60 / 255, 110 / 255, 150 / 255, 200 / 255, 240 / 255),
            tile=512,
            normalisation={"method": "scale"},
        )
        for n in sorted(args.sizes):
            path = Path(tmp) / f"blobs_{n}.tif"
            write_tiff(path, blob_volume(n), (10.0, 10.0, 10.0))
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, str(path), str(card)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode:
                raise SystemExit(proc.stderr)
            r = json.loads(proc.stdout.strip().splitlines()[-1]) | {"size": n}
            r["bytes_per_voxel"] = r["peak_rss_mb"] * 2**20 / n**3
            rows.append(r)
    base = rows[0]
    print(f"{'size':>6} {'peak MB':>9} {'B/voxel':>8} {'seconds':>8} {'× mem':>7} {'× voxels':>9}")
    for r in rows:
        r["ratio_peak_rss"] = round(r["peak_rss_mb"] / base["peak_rss_mb"], 2)
        r["ratio_voxels"] = round((r["size"] / base["size"]) ** 3, 1)
        print(
            f"{r['size']:>5}³ {r['peak_rss_mb']:>9.0f} {r['bytes_per_voxel']:>8.2f} "
            f"{r['seconds']:>8.1f} {r['ratio_peak_rss']:>7.2f} {r['ratio_voxels']:>9.0f}"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"baseline": f"{base['size']}³", "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
