"""What neighbouring-slice context (``--context N``) costs at inference, against single slices.

One randomly initialised AttentionUNet (the shipped ``vnc5`` width) is exported to ONNX as it
is and with 1 and 2 neighbouring slices on either side (``model.add_context_into``); each runs
``vemcell.segment.segment`` on the same synthetic serial-section volume (thick sections, XY
only, as ``vnc5`` runs) and, with ``--directions 3``, on an isotropic one. Figures are seconds
(fastest of ``--repeats``) and peak traced (numpy) memory of the segmentation, each as a ratio
to the single-slice network.

    .venv/bin/python benchmarks/bench_context.py [--threads 2] [--shape 24 1024 1024] [--iso 128]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def export_variants(folder: Path, base: int, contexts: list[int]) -> dict[int, Path]:
    """The same trained-looking network exported with each slice context; card paths."""
    import torch

    from vemcell_train.model import AttentionUNet, add_context_into
    from vemcell_train.onnx_export import export_onnx

    torch.manual_seed(0)
    single = AttentionUNet(n_classes=5, base=base).eval()
    cards = {}
    for k in contexts:
        net = single
        if k:
            net = AttentionUNet(n_classes=5, base=base, in_channels=2 * k + 1).eval()
            add_context_into(net, single)
        onnx = export_onnx(net, folder / f"ctx{k}.onnx", example_size=64)
        card = {
            "format": "vemcell-model-card/1",
            "name": f"ctx{k}",
            "onnx": onnx.name,
            "classes": [{"name": f"c{i}"} for i in range(5)],
            "input": {"tile": 256, "divisor": 16, "normalisation": {"method": "percentile"}},
            "voxel_size_nm": 9.2,
        }
        cards[k] = onnx.with_suffix(".json")
        cards[k].write_text(json.dumps(card), encoding="utf-8")
    return cards


def run(
    card_path: Path, volume, directions: int, threads: int, repeats: int
) -> tuple[float, float]:
    """Best seconds and peak traced memory (MB) of a segmentation, after a warm-up call."""
    from vemcell.cards.card import load_card
    from vemcell.segmentation.segment import Segmenter, segment

    card = load_card(card_path)
    seg = Segmenter(card, threads=threads)
    seg.predict_slices(np.zeros((1, seg.in_channels, 64, 64), np.float32))
    best, peak = float("inf"), 0.0
    for _ in range(repeats):
        tracemalloc.start()
        t0 = time.perf_counter()
        segment(volume, card, directions=directions, median=3, segmenter=seg)
        best = min(best, time.perf_counter() - t0)
        peak = max(peak, tracemalloc.get_traced_memory()[1] / 1e6)
        tracemalloc.stop()
    return best, peak


def main() -> None:
    from vemcell.io.volumes import Volume

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--base", type=int, default=16)
    p.add_argument("--shape", type=int, nargs=3, default=(24, 1024, 1024))
    p.add_argument("--iso", type=int, default=128, help="side of the isotropic volume (0: skip)")
    p.add_argument("--repeats", type=int, default=2, help="runs per case; the fastest counts")
    p.add_argument("--json", default=str(HERE / "results" / "bench_context.json"))
    args = p.parse_args()
    rng = np.random.default_rng(0)
    serial = Volume(rng.integers(0, 255, args.shape, dtype=np.uint8), (50.0, 4.6, 4.6))
    cases = [("serial sections, 1 direction", serial, 1)]
    if args.iso:
        iso = Volume(rng.integers(0, 255, (args.iso,) * 3, dtype=np.uint8), (9.2, 9.2, 9.2))
        cases.append(("isotropic, 3 directions", iso, 3))
    rows = []
    with tempfile.TemporaryDirectory() as td:
        cards = export_variants(Path(td), args.base, [0, 1, 2])
        for name, vol, directions in cases:
            base_s = base_mb = None
            for k, card in cards.items():
                seconds, mb = run(card, vol, directions, args.threads, args.repeats)
                base_s, base_mb = base_s or seconds, base_mb or mb
                rows.append(
                    {
                        "case": name,
                        "shape": list(vol.shape),
                        "context": k,
                        "seconds": round(seconds, 3),
                        "time_ratio": round(seconds / base_s, 3),
                        "peak_mb": round(mb, 1),
                        "memory_ratio": round(mb / base_mb, 3),
                    }
                )
    print(f"{'case':32} {'context':>7} {'seconds':>8} {'× time':>7} {'peak MB':>8} {'× memory':>8}")
    for r in rows:
        print(
            f"{r['case']:32} {r['context']:>7} {r['seconds']:>8.2f} {r['time_ratio']:>7.2f} "
            f"{r['peak_mb']:>8.1f} {r['memory_ratio']:>8.2f}"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
