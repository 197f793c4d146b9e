"""U-Net inference speed: the ONNX path users run vs the same network in PyTorch eager.

One randomly initialised AttentionUNet (the shipped architecture) is exported to ONNX in this
process; both run on the same batches of 256² slices with the same number of threads. INT8
static quantisation (onnxruntime, calibrated on synthetic EM slices) is reported too. Figures
are slices/s and effective GFLOP/s, each as a ratio to PyTorch eager.

    .venv/bin/python benchmarks/bench_inference.py [--threads 2] [--base 16] [--batches 6]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def conv_flops(net, size: int) -> float:
    """Multiply-adds ×2 of every convolution for one size×size slice (hook-counted)."""
    import torch

    total = [0.0]

    def hook(mod, inp, out):
        k = mod.kernel_size[0] * mod.kernel_size[1]
        cin = mod.in_channels // mod.groups
        total[0] += 2.0 * cin * k * out.numel()

    handles = [
        m.register_forward_hook(hook)
        for m in net.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
    ]
    with torch.no_grad():
        net(torch.zeros(1, 1, size, size))
    for h in handles:
        h.remove()
    return total[0]


def slices(n: int, size: int, seed: int = 0) -> np.ndarray:
    from vemcell.synth import generator as synth

    vol = synth.generate(shape=(n, size, size), voxel_nm=20.0, seed=seed).image
    return (vol.astype(np.float32) / 255.0)[:, None]


def timed(fn, batches: list[np.ndarray], repeats: int = 1) -> float:
    fn(batches[0])  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        for b in batches:
            fn(b)
    return time.perf_counter() - t0


def main() -> None:
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    from vemcell.segmentation.segment import session_options
    from vemcell_train.model import AttentionUNet, SoftmaxModel

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--base", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--json", default=str(HERE / "results" / "bench_inference.json"))
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    net = SoftmaxModel(AttentionUNet(n_classes=6, base=args.base)).eval()
    data = slices(args.batch * args.batches + 8, args.size)
    batches = [data[i * args.batch : (i + 1) * args.batch] for i in range(args.batches)]
    n_slices = args.batch * args.batches
    flops = conv_flops(net, args.size)

    rows = {}
    with torch.inference_mode():

        def torch_run(b):
            return net(torch.from_numpy(b)).numpy()

        rows["pytorch eager fp32"] = timed(torch_run, batches)

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "unet.onnx"
        torch.onnx.export(
            net,
            torch.zeros(1, 1, args.size, args.size),
            str(fp32),
            input_names=["image"],
            output_names=["probabilities"],
            dynamic_axes={
                "image": {0: "N", 2: "H", 3: "W"},
                "probabilities": {0: "N", 2: "H", 3: "W"},
            },
            opset_version=17,
            dynamo=False,
        )
        so = session_options(args.threads)
        sess = ort.InferenceSession(str(fp32), so, providers=["CPUExecutionProvider"])
        rows["onnxruntime fp32"] = timed(lambda b: sess.run(None, {"image": b}), batches)
        with torch.inference_mode():
            ref = net(torch.from_numpy(batches[0])).numpy()
        max_diff = float(np.abs(sess.run(None, {"image": batches[0]})[0] - ref).max())

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.items = iter([{"image": data[-8 + i : -8 + i + 1]} for i in range(8)])

            def get_next(self):
                return next(self.items, None)

        int8 = Path(tmp) / "unet_int8.onnx"
        quantize_static(
            str(fp32),
            str(int8),
            Reader(),
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
        sess8 = ort.InferenceSession(str(int8), so, providers=["CPUExecutionProvider"])
        rows["onnxruntime int8 (static)"] = timed(lambda b: sess8.run(None, {"image": b}), batches)
        agree = float((sess8.run(None, {"image": batches[0]})[0].argmax(1) == ref.argmax(1)).mean())

    base = rows["pytorch eager fp32"]
    print(
        f"AttentionUNet base={args.base}, {args.size}² slices, batch {args.batch}, "
        f"{args.threads} threads, {flops / 1e9:.2f} GFLOP per slice"
    )
    print(f"{'engine':<28} {'slices/s':>9} {'GFLOP/s':>8} {'× eager':>8}")
    out_rows = []
    for name, secs in rows.items():
        sps = n_slices / secs
        out_rows.append(
            {
                "engine": name,
                "seconds": round(secs, 3),
                "slices_per_s": round(sps, 3),
                "gflop_per_s": round(sps * flops / 1e9, 2),
                "ratio_vs_eager": round(base / secs, 2),
            }
        )
        print(f"{name:<28} {sps:>9.2f} {sps * flops / 1e9:>8.2f} {base / secs:>8.2f}")
    print(f"fp32 ONNX vs torch max |Δp| = {max_diff:.2e}; int8 argmax agreement = {agree:.4f}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "config": vars(args) | {"gflop_per_slice": flops / 1e9},
                "rows": out_rows,
                "fp32_max_abs_diff": max_diff,
                "int8_argmax_agreement": agree,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
