"""The ``learned`` image method: a small network restores the missing sections, run with ONNX.

How it learns without any section it will be scored on (CARE/IsoVEM-style self-supervision,
:mod:`vemcell_train.zrestore`): the imaged sections are sharp in X and Y, so each one is
resampled along Y (or X) to the restored Z step, every K-th row kept and the rest filled in
linearly, and the network learns to restore the rows in between (a residual over the linear
fill). Applied to the sparse stack, the same network restores the missing rows of every XZ and
YZ plane (each plane's Z rows filled linearly first); the two predictions are averaged.
The model is an ``.onnx`` with a JSON card beside it (format ``vemcell-zrestore/1``) giving
the factor and the steps it was trained for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from vemcell.errors import VemcellError
from vemcell.progress import advance
from vemcell.sparse.core import cast_to, check_factor, check_sections, linear_fill

CARD_FORMAT = "vemcell-zrestore/1"


def load_card(model: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """(onnx path, card) of a z-restoration model given as its ``.onnx`` or its card."""
    p = Path(model)
    onnx_path = p if p.suffix.lower() == ".onnx" else p.with_suffix(".onnx")
    card_path = onnx_path.with_suffix(".json")
    if not onnx_path.exists() or not card_path.exists():
        raise VemcellError(
            f"The learned method needs a model: '{onnx_path}' and its card '{card_path.name}' "
            "(train one with python -m vemcell_train.zrestore)."
        )
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise VemcellError(f"'{card_path}' is not a readable model card.") from None
    if card.get("format") != CARD_FORMAT:
        raise VemcellError(f"'{card_path}' is not a z-restoration model card ({CARD_FORMAT}).")
    return onnx_path, card


def _robust_range(arr: np.ndarray) -> tuple[float, float]:
    flat = np.asarray(arr).reshape(-1)
    step = max(1, flat.size // 2_000_000)
    lo, hi = np.percentile(flat[::step].astype(np.float32), [0.5, 99.5])
    return float(lo), float(max(hi, lo + 1e-6))


def plane_inputs(planes: np.ndarray, factor: int, divisor: int) -> tuple[np.ndarray, int, int]:
    """Network input (N, 2, H', W') from linearly filled planes (N, H, W) whose rows
    ``0, K, 2K, ...`` are imaged: the plane and a mask of the imaged rows, padded (edge) to
    multiples of ``divisor``. Returns (input, H, W)."""
    n, h, w = planes.shape
    mask = np.zeros((h, 1), np.float32)
    mask[::factor] = 1.0
    ph, pw = -(-h // divisor) * divisor, -(-w // divisor) * divisor
    x = np.empty((n, 2, ph, pw), np.float32)
    x[:, 0] = np.pad(planes, ((0, 0), (0, ph - h), (0, pw - w)), mode="edge")
    x[:, 1] = np.pad(np.broadcast_to(mask, (h, w)), ((0, ph - h), (0, pw - w)), mode="edge")
    return x, h, w


def restore_learned(
    volume_array: np.ndarray,
    factor: int,
    model: str | os.PathLike,
    progress: Any = None,
    threads: int | None = None,
    batch: int = 16,
) -> np.ndarray:
    """Restore ``(n - 1)·K + 1`` sections with a z-restoration model (see the module text).

    Kept sections stay bit for bit; the dtype is kept.
    """
    import onnxruntime as ort

    from vemcell.segmentation.segment import session_options

    k = check_factor(factor)
    onnx_path, card = load_card(model)
    if int(card.get("factor", 0)) != k:
        raise VemcellError(
            f"Model {onnx_path.name} was trained for factor {card.get('factor')}, not {k}."
        )
    arr = np.asarray(volume_array)
    check_sections(arr.shape[0])
    divisor = int(card.get("divisor", 8))
    lo, hi = _robust_range(arr)
    lin = linear_fill(arr, k)
    norm = (lin - lo) / (hi - lo)
    session = ort.InferenceSession(
        str(onnx_path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    residual = np.zeros_like(norm)
    total = norm.shape[1] + norm.shape[2]
    done = 0
    for axis in (1, 2):  # XZ planes (one per Y), then YZ planes (one per X)
        n_planes = norm.shape[axis]
        for s0 in range(0, n_planes, batch):
            s1 = min(n_planes, s0 + batch)
            planes = np.moveaxis(np.take(norm, np.arange(s0, s1), axis=axis), axis, 0)
            x, h, w = plane_inputs(np.ascontiguousarray(planes), k, divisor)
            res = session.run(None, {name: x})[0][:, 0, :h, :w]
            if axis == 1:
                residual[:, s0:s1, :] += res.transpose(1, 0, 2)
            else:
                residual[:, :, s0:s1] += res.transpose(1, 2, 0)
            done += s1 - s0
            advance(progress, done / total, f"learned restoration, plane {done}/{total}")
    out = cast_to((norm + residual / 2.0) * (hi - lo) + lo, arr.dtype)
    out[::k] = arr  # the imaged sections, bit for bit
    return out
