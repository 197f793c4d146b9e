"""Export a checkpoint to ONNX (dynamic batch and slice size) with its model card.

The ONNX graph takes ``image`` float32 [N, 1, H, W] (H, W multiples of 16) and returns
``probabilities`` [N, C, H, W] (softmax inside), the contract of
:mod:`vemcell.segmentation.segment`.
Optional INT8 static quantisation (onnxruntime QOperator, per-channel weights) is calibrated on
slices of a user volume and reports how much the IoU moves against the float model.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vemcell.cards.card import CARD_FORMAT, write_card
from vemcell.errors import VemcellError
from vemcell.io.volumes import atomic_path
from vemcell.segmentation.segment import direction_slices, min_size_from_options
from vemcell_train.data import with_channels
from vemcell_train.model import SoftmaxModel, build_model, count_parameters
from vemcell_train.train import load_checkpoint

OPSET = 17


def _context(arch: dict) -> dict:
    """The card's note of neighbouring-slice context (the runtime reads it off the ONNX input)."""
    k = int(arch.get("in_channels", 1))
    return {"context_slices": (k - 1) // 2} if k > 1 else {}


def model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    """The trained network (logits), in eval mode."""
    net = build_model(ckpt["arch"])
    net.load_state_dict(ckpt["model"])
    return net.eval()


def export_onnx(net: torch.nn.Module, path: str | os.PathLike, example_size: int = 64) -> Path:
    """Write ``net`` (logits) wrapped in a softmax as ONNX with dynamic N, H and W."""
    wrapped = SoftmaxModel(net).eval()
    x = torch.zeros(1, getattr(net, "in_channels", 1), example_size, example_size)
    out = Path(path)
    # The TorchScript exporter (dynamo=False) needs no onnxscript and handles this network's
    # dynamic sizes; torch marks it deprecated, which is noise for users.
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapped,
            (x,),
            str(tmp),
            input_names=["image"],
            output_names=["probabilities"],
            dynamic_axes={
                "image": {0: "N", 2: "H", 3: "W"},
                "probabilities": {0: "N", 2: "H", 3: "W"},
            },
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    return out


def parity(net: torch.nn.Module, onnx_path: str | os.PathLike, sizes=((2, 64, 96),)) -> float:
    """Largest absolute difference between torch and onnxruntime probabilities."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    wrapped = SoftmaxModel(net).eval()
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for n, h, w in sizes:
        x = torch.rand(n, getattr(net, "in_channels", 1), h, w, generator=gen)
        with torch.no_grad():
            ref = wrapped(x).numpy()
        got = sess.run(["probabilities"], {"image": x.numpy()})[0]
        worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def card_from_checkpoint(ckpt: dict, onnx_name: str, extra: dict[str, Any] | None = None) -> dict:
    """The JSON model card for an exported checkpoint (see :mod:`vemcell.cards.card`)."""
    c = dict(ckpt["card"])
    cfg = ckpt["config"]
    net = build_model(ckpt["arch"])
    history = ckpt.get("history", [])
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "name": c["name"],
        "title": c.get("title", c["name"]),
        "onnx": onnx_name,
        "classes": c["classes"],
        "background_class": c.get("background_class", 0),
        "input": {
            "tile": int(c.get("tile", 256)),
            "divisor": 2 ** int(ckpt["arch"].get("depth", 4)),
            "normalisation": c.get("normalisation", {"method": "auto"}),
            **_context(ckpt["arch"]),
        },
        "output": "probabilities",
        "voxel_size_nm": c.get("voxel_size_nm"),
        **{k: c[k] for k in ("cell_boundary_class",) if c.get(k) is not None},
        "architecture": {
            "type": "2D U-Net with attention gates (Kousaka et al., Table 2)",
            **ckpt["arch"],
            "parameters": count_parameters(net),
        },
        "training": {
            **c.get("training", {}),
            "epochs": ckpt["epoch"],
            "steps_per_epoch": cfg["steps_per_epoch"],
            "batch_size": cfg["batch_size"],
            "tile": cfg["tile"],
            "loss": {
                "type": "focal Tversky" if cfg["gamma"] != 1 else "Tversky",
                "alpha": cfg["alpha"],
                "beta": cfg["beta"],
                "gamma": cfg["gamma"],
                "ce_weight": cfg["ce_weight"],
            },
            "optimiser": {
                "type": "AdamW",
                "lr": cfg["lr"],
                "lr_decay_per_epoch": cfg["lr_decay"],
                "weight_decay": cfg["weight_decay"],
            },
            "directions": cfg["directions"],
            "seed": cfg["seed"],
            "seconds": round(sum(h.get("seconds", 0.0) for h in history), 1),
            "threads": cfg["threads"],
            "torch": ckpt.get("torch", ""),
        },
        "licence": c.get("licence", ""),
    }
    if history and "val_iou" in history[-1]:
        best = max(history, key=lambda h: h.get("val_mean_iou", -1))
        card["training"]["validation_slices_iou"] = {
            "epoch": best["epoch"],
            "iou": best["val_iou"],
            "note": "single 2D slices during training; see 'validation' for whole volumes",
        }
    if extra:
        card.update(extra)
    return card


class _SliceReader:
    """onnxruntime calibration reader: batches of normalised 2D slices of a volume."""

    def __init__(self, slices: np.ndarray, batch: int = 4) -> None:
        slices = with_channels(slices)
        self._batches = [slices[i : i + batch] for i in range(0, len(slices), batch)]
        self._i = 0

    def get_next(self) -> dict | None:
        if self._i >= len(self._batches):
            return None
        self._i += 1
        return {"image": self._batches[self._i - 1].astype(np.float32)}

    def rewind(self) -> None:
        self._i = 0


def calibration_slices(
    image01: np.ndarray, n: int, divisor: int, tile: int, context: int = 0
) -> np.ndarray:
    """``n`` XY, XZ and YZ slices spread through a normalised volume, cropped to the tile size.

    With ``context`` > 0 each comes with its neighbours as channels, (n, K, H, W), as the
    model takes them.
    """
    planes = []
    axes = [0, 1, 2] if min(image01.shape) >= divisor else [0]
    per = max(1, n // len(axes))
    for ax in axes:
        for i in np.linspace(0, image01.shape[ax] - 1, per + 2)[1:-1]:
            planes.append(direction_slices(image01, ax, round(i), round(i) + 1, context)[0])
    size_h = min(tile, min(p.shape[-2] for p in planes)) // divisor * divisor
    size_w = min(tile, min(p.shape[-1] for p in planes)) // divisor * divisor
    if size_h < divisor or size_w < divisor:
        raise VemcellError("The calibration volume is too small to cut calibration slices from.")
    return np.stack([p[..., :size_h, :size_w] for p in planes]).astype(np.float32)


def quantise_int8(
    fp32_path: Path, out_path: Path, slices: np.ndarray, quant_format: str = "qoperator"
) -> Path:
    """Static INT8 quantisation (per-channel weights) calibrated on ``slices``.

    ``qoperator`` (QLinearConv and friends) runs the VNNI integer kernels directly: 1.37× the
    FP32 speed on this project's CPUs, where ``qdq`` (Quantize/Dequantize pairs around float
    ops) measured 1.19× (docs/benchmarks.md).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as td:
        pre = Path(td) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        with atomic_path(out_path) as tmp:
            quantize_static(
                str(pre),
                str(tmp),
                _SliceReader(slices),
                quant_format=QuantFormat.QOperator
                if quant_format == "qoperator"
                else QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
    return out_path


def export_checkpoint(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    name: str | None = None,
    extra_card: dict[str, Any] | None = None,
    min_size: Sequence[str] = (),
) -> dict[str, Any]:
    """Export ``checkpoint`` to ``out`` (.onnx) plus ``out.json``; returns facts for the report.

    ``min_size`` (``CLASS=µm³`` items, as ``--min-size``) goes into the card's ``min_size_um3``.
    """
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise VemcellError(f"--out must end in .onnx, not '{out.name}'.")
    ckpt = load_checkpoint(checkpoint)
    if name:
        ckpt["card"] = {**ckpt["card"], "name": name}
    if min_size:
        names = [c["name"] if isinstance(c, dict) else str(c) for c in ckpt["card"]["classes"]]
        sizes = min_size_from_options(min_size, {}, names, "this checkpoint")
        extra_card = {**(extra_card or {}), "min_size_um3": sizes}
    net = model_from_checkpoint(ckpt)
    t0 = time.perf_counter()
    export_onnx(net, out)
    diff = parity(net, out)
    card = card_from_checkpoint(ckpt, out.name, extra_card)
    card["export"] = {"opset": OPSET, "max_abs_diff_vs_torch": diff, "precision": "float32"}
    card_path = out.with_suffix(".json")
    with atomic_path(card_path) as tmp:
        write_card(card, tmp)
    return {
        "onnx": str(out),
        "card": str(card_path),
        "bytes": out.stat().st_size,
        "max_abs_diff": diff,
        "seconds": round(time.perf_counter() - t0, 2),
        "net": net,
        "ckpt": ckpt,
    }
