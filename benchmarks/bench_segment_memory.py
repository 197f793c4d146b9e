"""Where `segment` holds its memory: the traced peak of each phase, in bytes per voxel.

A synthetic C. merolae volume (vemcell.synth) is segmented in memory with the shipped
``cmerolae6`` model (3 directions, median 3, the card's smallest organelle sizes, so the speck
removal runs). numpy's allocations are traced (``tracemalloc``); each phase's figure is its
peak above what was held when it started, and the whole call's peak is also given as a ratio
to the float32 working image (4 bytes a voxel) measured in the same process. The network's
own buffers (onnxruntime) are not traced: ``bench_memory.py`` reports process RSS.

    .venv/bin/python benchmarks/bench_segment_memory.py [--sizes 128 256]

writes benchmarks/results/bench_segment_memory.json.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHASES = ("prepare", "fused_scores", "majority_filter", "remove_small_pieces")


def measure(n: int, threads: int) -> dict:
    from vemcell.cards.card import resolve_model
    from vemcell.io.volumes import Volume
    from vemcell.segmentation import segment as seg_mod
    from vemcell.synth.generator import generate

    image = generate((n, n, n), seed=3).image
    vol = Volume(data=image, voxel_size_nm=(20.0, 20.0, 20.0))
    card = resolve_model("cmerolae6")
    segmenter = seg_mod.Segmenter(card, threads=threads)
    phases: dict[str, float] = {}
    originals = {name: getattr(seg_mod, name) for name in PHASES}

    overall = [0]  # the whole call's peak: each phase resets tracemalloc's, so keep it here

    def traced(name, fn):
        def run(*args, **kwargs):
            start, before = tracemalloc.get_traced_memory()
            overall[0] = max(overall[0], before)
            tracemalloc.reset_peak()
            out = fn(*args, **kwargs)
            _, peak = tracemalloc.get_traced_memory()
            overall[0] = max(overall[0], peak)
            phases[name] = max(phases.get(name, 0.0), (peak - start) / image.size)
            return out

        return run

    for name, fn in originals.items():
        setattr(seg_mod, name, traced(name, fn))
    try:
        tracemalloc.start()
        t0 = time.perf_counter()
        seg_mod.segment(vol, card, segmenter=segmenter)
        seconds = time.perf_counter() - t0
        peak = max(overall[0], tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()
        for name, fn in originals.items():
            setattr(seg_mod, name, fn)
    per_voxel = peak / image.size
    return {
        "size": n,
        "peak_bytes_per_voxel": round(per_voxel, 2),
        "peak_over_float32_image": round(per_voxel / 4.0, 2),
        "phases_bytes_per_voxel": {k: round(v, 2) for k, v in phases.items()},
        "seconds": round(seconds, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=str(HERE / "results" / "bench_segment_memory.json"))
    args = ap.parse_args()
    rows = [measure(n, args.threads) for n in args.sizes]
    print(f"{'size':>6} {'peak B/voxel':>13} {'÷ image':>8}  " + "  ".join(PHASES))
    for r in rows:
        ph = "  ".join(f"{r['phases_bytes_per_voxel'].get(p, 0):>{len(p)}.1f}" for p in PHASES)
        peak, ratio = r["peak_bytes_per_voxel"], r["peak_over_float32_image"]
        print(f"{r['size']:>5}³ {peak:>13.1f} {ratio:>8.2f}  {ph}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "bench_segment_memory", "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
