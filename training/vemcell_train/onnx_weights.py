"""Recover a trainable checkpoint from a shipped ONNX model (to fine-tune it without its .pt).

``vemcell export`` writes the network in eval mode with constant folding, so every
convolution → batch-norm pair arrives in the ONNX file as one convolution with a bias
(``W' = W γ/σ``, ``b' = β - γ μ/σ``); dropout is gone. The ONNX convolutions are taken in
graph order, which is the order the torch network calls its ``Conv2d`` modules (traced with
hooks), and likewise the transposed convolutions; shapes are checked one by one.

A fused pair cannot be split back into the original ``W``, ``γ``, ``β`` and running
statistics, but an equivalent one can be made: the convolution keeps ``W'`` and the batch norm
gets running mean ``m`` and variance ``s²`` measured on calibration images (the statistics of
``W' x`` in the exact network), with ``γ = sqrt(s² + ε)`` and ``β = b' + m``. In eval mode
that is exactly ``W' x + b'``; in training mode the batch statistics are close to ``m`` and
``s``, so fine-tuning starts from (nearly) the same function.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vemcell.errors import VemcellError
from vemcell_train.data import with_channels
from vemcell_train.model import AttentionUNet, build_model
from vemcell_train.train import CHECKPOINT_FORMAT, _save


def _call_order(net: nn.Module, kind: type, size: int) -> list[nn.Module]:
    """The modules of type ``kind`` in the order one forward pass calls them."""
    order: list[nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: order.append(mod))
        for m in net.modules()
        if type(m) is kind
    ]
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, net.in_channels, size, size))
    finally:
        for h in hooks:
            h.remove()
    return order


def _batch_norm_after(net: nn.Module) -> dict[nn.Conv2d, nn.BatchNorm2d]:
    """Each Conv2d that a BatchNorm2d directly follows in a Sequential, mapped to that norm."""
    out: dict[nn.Conv2d, nn.BatchNorm2d] = {}
    for m in net.modules():
        if isinstance(m, nn.Sequential):
            kids = list(m)
            for a, b in itertools.pairwise(kids):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                    out[a] = b
    return out


def _onnx_weights(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray | None]], ...]:
    """(weight, bias) of every Conv and ConvTranspose node, in graph order."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:  # the exporter shares equal tensors through Identity nodes
        if node.op_type == "Identity" and node.input[0] in init:
            init[node.output[0]] = init[node.input[0]]
    convs, ups = [], []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        try:
            w = init[node.input[1]]
            b = init[node.input[2]] if len(node.input) > 2 and node.input[2] else None
        except KeyError as exc:
            raise VemcellError(
                f"{path.name}: {node.op_type} weight {exc} is not a constant."
            ) from None
        (convs if node.op_type == "Conv" else ups).append((w, b))
    return convs, ups


def recover_network(
    onnx_path: str | os.PathLike, arch: dict[str, Any], calibration: np.ndarray | None = None
) -> AttentionUNet:
    """An :class:`AttentionUNet` with the weights of ``onnx_path`` (eval outputs identical).

    Parameters
    ----------
    onnx_path : path
        A model written by ``vemcell export`` (softmax output, batch norms folded).
    arch : dict
        The network's ``arch`` (the card's ``architecture`` block: n_classes, base, depth...).
    calibration : ndarray, optional
        Normalised images (N, H, W), or (N, K, H, W) slices with their neighbours for a network
        with slice context, H and W multiples of ``2**depth``, to measure the batch-norm
        statistics on; without it they are measured on uniform noise (eval outputs are exact
        either way, only training-mode behaviour depends on them).
    """
    path = Path(onnx_path)
    net = build_model(arch).eval()
    size = 2 ** int(arch.get("depth", 4)) * 2
    convs = _call_order(net, nn.Conv2d, size)
    ups = _call_order(net, nn.ConvTranspose2d, size)
    onnx_convs, onnx_ups = _onnx_weights(path)
    if len(onnx_convs) != len(convs) or len(onnx_ups) != len(ups):
        raise VemcellError(
            f"{path.name} has {len(onnx_convs)} convolutions and {len(onnx_ups)} transposed "
            f"ones; a network with {arch} has {len(convs)} and {len(ups)}."
        )
    bn_of = _batch_norm_after(net)
    with torch.no_grad():
        for mods, weights in ((convs, onnx_convs), (ups, onnx_ups)):
            for k, (mod, (w, b)) in enumerate(zip(mods, weights, strict=True)):
                if tuple(mod.weight.shape) != w.shape:
                    raise VemcellError(
                        f"{path.name}: weight {k} has shape {w.shape}, the network expects "
                        f"{tuple(mod.weight.shape)} (different architecture?)."
                    )
                mod.weight.copy_(torch.from_numpy(np.array(w)))
                bias = torch.zeros(w.shape[1] if mod in ups else w.shape[0])
                if b is not None:
                    bias = torch.from_numpy(np.array(b)).float()
                bn = bn_of.get(mod)
                if bn is None:
                    if mod.bias is None:
                        if b is not None and np.any(b):
                            raise VemcellError(f"{path.name}: unexpected bias on layer {k}.")
                    else:
                        mod.bias.copy_(bias)
                    continue
                if mod.bias is not None:
                    mod.bias.zero_()
                # identity normalisation for now: (z - 0) / sqrt(1 - eps + eps) * 1 + b'
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                bn.weight.fill_(1.0)
                bn.bias.copy_(bias)
    _calibrate(net, bn_of, calibration, size)
    return net.eval()


def _calibrate(
    net: nn.Module,
    bn_of: dict[nn.Conv2d, nn.BatchNorm2d],
    images: np.ndarray | None,
    size: int,
) -> None:
    """Give every batch norm the statistics of its input while keeping eval outputs exact."""
    if images is None:
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(4, net.in_channels, size * 4, size * 4, generator=gen)
    else:
        x = torch.from_numpy(with_channels(np.asarray(images, np.float32)))
    sums: dict[nn.Conv2d, tuple[torch.Tensor, torch.Tensor, int]] = {}

    def hook(mod, _inp, out):
        n = out.numel() // out.shape[1]
        s1 = out.sum((0, 2, 3)).double()
        s2 = (out.double() ** 2).sum((0, 2, 3))
        if mod in sums:
            a, b, c = sums[mod]
            s1, s2, n = s1 + a, s2 + b, n + c
        sums[mod] = (s1, s2, n)

    hooks = [c.register_forward_hook(hook) for c in bn_of]
    try:
        with torch.no_grad():
            net.eval()
            for i in range(0, len(x), 4):
                net(x[i : i + 4])
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for conv, bn in bn_of.items():
            s1, s2, n = sums[conv]
            mean = s1 / n
            var = (s2 / n - mean**2).clamp_min(1e-6)
            b_fused = bn.bias.clone()
            bn.running_mean.copy_(mean.float())
            bn.running_var.copy_(var.float())
            bn.weight.copy_(torch.sqrt(var + bn.eps).float())
            bn.bias.copy_(b_fused + mean.float())


def max_difference(net: nn.Module, onnx_path: str | os.PathLike, x: np.ndarray) -> float:
    """Largest |softmax(net(x)) - onnxruntime(x)| for images ``x`` (N, K, H, W)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = torch.softmax(net.eval()(torch.from_numpy(x)), 1).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return float(np.abs(ref - got).max())


def checkpoint_from_onnx(
    onnx_path: str | os.PathLike,
    out: str | os.PathLike,
    calibration: np.ndarray | None = None,
) -> dict[str, Any]:
    """Write a vemcell checkpoint (usable with ``--init``) holding the ONNX model's weights.

    The architecture and card come from the model's JSON card next to it. Returns the
    checkpoint dict (with ``max_abs_diff``: torch vs onnxruntime on the calibration images).
    """
    from vemcell.cards.card import load_card

    path = Path(onnx_path)
    raw = load_card(path).raw
    a = raw.get("architecture", {})
    arch = {
        "n_classes": int(a.get("n_classes", len(raw["classes"]))),
        "base": int(a["base"]),
        "depth": int(a.get("depth", 4)),
        "dropout": float(a.get("dropout", 0.1)),
        "in_channels": int(a.get("in_channels", 1)),
    }
    net = recover_network(path, arch, calibration)
    d = 2 ** arch["depth"]
    if calibration is not None:
        x = with_channels(np.asarray(calibration[:4], np.float32))
    else:
        shape = (2, arch["in_channels"], 4 * d, 6 * d)
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
    diff = max_difference(net, path, x)
    ckpt_card = {
        "name": raw["name"],
        "title": raw.get("title", raw["name"]),
        "classes": raw["classes"],
        "background_class": raw.get("background_class", 0),
        "normalisation": raw.get("input", {}).get("normalisation", {"method": "auto"}),
        "voxel_size_nm": raw.get("voxel_size_nm"),
        "tile": raw.get("input", {}).get("tile", 256),
        "licence": raw.get("licence", ""),
        "training": raw.get("training", {}),
    }
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "config": {},
        "card": ckpt_card,
        "model": net.state_dict(),
        "epoch": 0,
        "history": [],
        "best_score": -1.0,
        "torch": torch.__version__,
        "recovered_from": path.name,
        "max_abs_diff": diff,
    }
    _save(ckpt, Path(out))
    return ckpt


def calibration_slices(onnx_path: str | os.PathLike, image: str | os.PathLike | None) -> np.ndarray:
    """Up to 8 XY slices (with the model's neighbouring slices) on which to measure batch norm.

    From ``image`` prepared as the model's card says (normalised, resampled to its voxel size,
    centre tiles of the card's tile size), or, without one, from a synthetic C. merolae volume
    ("scale" normalisation, 20 nm). Statistics from images like the model's own data make the
    recovered network's training mode behave like the original's.
    """
    from vemcell.cards.card import load_card
    from vemcell.segmentation.segment import direction_slices, prepare

    card = load_card(onnx_path)
    k = int(card.raw.get("architecture", {}).get("in_channels", 1))
    if image is None:
        from vemcell.synth import generator as synth

        r = synth.generate(shape=(64, 128, 128), voxel_nm=20.0, stages=[1], seed=4242)
        vol = r.image.astype(np.float32) / 255.0  # "scale" normalisation
    else:
        from vemcell.io.volumes import read_volume

        vol, _ = prepare(read_volume(image), card, directions=1)
    n = vol.shape[0]
    tile = min(card.tile, *vol.shape[1:]) // card.divisor * card.divisor
    if tile < card.divisor:
        raise VemcellError(f"The calibration volume is smaller than one {card.divisor}² tile.")
    y0, x0 = (vol.shape[1] - tile) // 2, (vol.shape[2] - tile) // 2
    zs = sorted({int(z) for z in np.linspace(0, n - 1, min(n, 8))})
    return np.stack(
        [
            direction_slices(vol, 0, z, z + 1, (k - 1) // 2)[0][..., y0 : y0 + tile, x0 : x0 + tile]
            for z in zs
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m vemcell_train.onnx_weights MODEL.onnx OUT.pt [--calibrate VOLUME]``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m vemcell_train.onnx_weights")
    p.add_argument("onnx", type=Path)
    p.add_argument("out", type=Path)
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--calibrate",
        type=Path,
        metavar="VOLUME",
        help="measure batch-norm statistics on XY slices of this image volume (the model's kind "
        "of data)",
    )
    how.add_argument(
        "--calibrate-synthetic",
        action="store_true",
        help="measure batch-norm statistics on slices of a synthetic C. merolae volume",
    )
    args = p.parse_args(argv)
    try:
        calib = None
        if args.calibrate or args.calibrate_synthetic:
            calib = calibration_slices(args.onnx, args.calibrate)
        ckpt = checkpoint_from_onnx(args.onnx, args.out, calib)
    except VemcellError as exc:
        print(f"onnx_weights: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out} ({ckpt['arch']}); max |torch - onnxruntime| = "
        f"{ckpt['max_abs_diff']:.2e}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
