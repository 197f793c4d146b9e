"""What removing specks (the model card's ``min_size_um3``) costs, against keeping every piece.

``vemcell.segment.segment`` runs the shipped models twice on the same volume in one process:
with ``min_size={}`` (every piece kept: the baseline) and with the card's sizes. Figures are
seconds (fastest of ``--repeats``) and peak traced (numpy) memory of the whole segmentation, as
ratios to the baseline, and how many pieces went.

Volumes: a synthetic *C. merolae* volume from :func:`vemcell.synth.generate` with ``cmerolae6``
(3 directions) and, where ``../shared/data/vnc_sstem`` is present, its sections 11–13 with
``vnc5`` (1 direction, labels on the 4.6 nm grid).

    .venv/bin/python benchmarks/bench_min_size.py [--threads 2] [--shape 128 256 256]
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
VNC = HERE.parent.parent / "shared" / "data" / "vnc_sstem"


def run(volume, card, directions: int, min_size, threads: int, repeats: int):
    """Best seconds, peak traced MB and the result of one segmentation setting."""
    from vemcell.segmentation.segment import Segmenter, segment

    seg = Segmenter(card, threads=threads)
    best, peak, result = float("inf"), 0.0, None
    for _ in range(repeats):
        tracemalloc.start()
        t0 = time.perf_counter()
        result = segment(volume, card, directions=directions, segmenter=seg, min_size=min_size)
        best = min(best, time.perf_counter() - t0)
        peak = max(peak, tracemalloc.get_traced_memory()[1] / 1e6)
        tracemalloc.stop()
    return best, peak, result


def main() -> None:
    import numpy as np

    from vemcell.cards.card import resolve_model
    from vemcell.io.volumes import Volume, read_volume
    from vemcell.synth import generator as synth

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shape", type=int, nargs=3, default=(128, 256, 256))
    p.add_argument("--repeats", type=int, default=2, help="runs per case; the fastest counts")
    p.add_argument("--json", default=str(HERE / "results" / "bench_min_size.json"))
    args = p.parse_args()
    r = synth.generate(shape=tuple(args.shape), voxel_nm=20.0, seed=11, randomise=True)
    cases = [("synthetic C. merolae", "cmerolae6", Volume(r.image, r.voxel_size_nm), 3)]
    if (VNC / "image.tif").exists():
        vol = read_volume(VNC / "image.tif")
        held_out = Volume(np.ascontiguousarray(vol.array()[11:14]), vol.voxel_size_nm)
        cases.append(("vnc_sstem sections 11-13", "vnc5", held_out, 1))
    else:
        print(f"skipping vnc5: {VNC} is not present")
    rows = []
    for name, model, vol, directions in cases:
        card = resolve_model(model)
        base_s, base_mb, _ = run(vol, card, directions, {}, args.threads, args.repeats)
        s, mb, res = run(vol, card, directions, None, args.threads, args.repeats)
        rows.append(
            {
                "case": name,
                "model": model,
                "shape": list(vol.shape),
                "min_size_um3": res.min_size_um3,
                "pieces_removed": res.specks_removed,
                "seconds_keep_all": round(base_s, 3),
                "seconds": round(s, 3),
                "time_ratio": round(s / base_s, 3),
                "peak_mb_keep_all": round(base_mb, 1),
                "peak_mb": round(mb, 1),
                "memory_ratio": round(mb / base_mb, 3),
            }
        )
    head = f"{'case':26} {'shape':>14} {'keep all s':>10} {'removal s':>9} {'× time':>7}"
    print(head + f" {'peak MB':>8} {'× memory':>8}  pieces removed")
    for r in rows:
        shape = "×".join(map(str, r["shape"]))
        print(
            f"{r['case']:26} {shape:>14} {r['seconds_keep_all']:>10.2f} {r['seconds']:>9.2f} "
            f"{r['time_ratio']:>7.3f} {r['peak_mb']:>8.1f} {r['memory_ratio']:>8.2f}  "
            f"{json.dumps(r['pieces_removed'])}"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
