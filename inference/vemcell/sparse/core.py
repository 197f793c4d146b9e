"""The sparse-section contract and its checks, shared by the image and the shape routes.

A sparse stack of ``n`` sections imaged every ``K``-th section becomes ``(n - 1)·K + 1``
sections: output section ``i·K`` is input section ``i`` (bit for bit) and the ``K - 1``
sections between two kept ones are restored. The Z step of the result is the input's ``/ K``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from vemcell.errors import VemcellError

# image-route methods: "nearest" (copy the nearest kept section, the baseline to beat),
# "linear" (distance-weighted average of the two neighbours), "flow" (motion-compensated)
METHODS = ("nearest", "linear", "flow")
# and "learned": a network that corrects flow (a shipped model, adaptable to a stack)
IMAGE_METHODS = (*METHODS, "learned")
# "auto": the method measured best for this kind of stack (learned where its shipped model's
# card says it beat flow on held-out data, otherwise flow)
AUTO = "auto"


def cast_to(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float values back to a stack's dtype (rounded and clipped for integers)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    if dtype.kind == "b":
        return values >= 0.5
    return values.astype(dtype, copy=False)


def linear_fill(arr: np.ndarray, factor: int) -> np.ndarray:
    """The ``(n - 1)·K + 1`` sections of the ``linear`` method as float32 (no dtype cast)."""
    arr = np.asarray(arr)
    k = int(factor)
    n = arr.shape[0]
    out = np.empty((output_sections(n, k), *arr.shape[1:]), np.float32)
    out[::k] = arr
    for j in range(1, k):
        t = j / k
        out[j::k] = (1.0 - t) * arr[:-1].astype(np.float32) + t * arr[1:].astype(np.float32)
    return out


def parse_crop(spec: str | None, shape: Sequence[int]) -> tuple[slice, ...] | None:
    """``"Z0:Z1,Y0:Y1,X0:X1"`` (any part may be empty, e.g. ``":,0:512,0:512"``) as slices."""
    if not spec:
        return None
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 3:
        raise VemcellError(f"--crop takes Z0:Z1,Y0:Y1,X0:X1 (three ranges), not {spec!r}.")
    out = []
    for part, n in zip(parts, shape, strict=True):
        lo, sep, hi = part.partition(":")
        if not sep and part:
            raise VemcellError(f"--crop range {part!r} is not START:STOP.")
        try:
            a = int(lo) if lo.strip() else 0
            b = int(hi) if hi.strip() else int(n)
        except ValueError:
            raise VemcellError(f"--crop range {part!r} is not START:STOP.") from None
        if not (0 <= a < b <= n):
            raise VemcellError(f"--crop range {part!r} is outside the volume's 0..{n}.")
        out.append(slice(a, b))
    return tuple(out)


def check_factor(value: Any) -> int:
    """``value`` as a whole number of at least 2, or one sentence saying what is wrong."""
    k: int | None = None
    if isinstance(value, bool):
        k = None
    elif isinstance(value, numbers.Integral):
        k = int(value)
    elif isinstance(value, numbers.Real) and float(value).is_integer():
        k = int(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            k = int(text)
        except ValueError:
            try:
                f = float(text)
                k = int(f) if math.isfinite(f) and f.is_integer() else None
            except ValueError:
                k = None
    if k is None:
        raise VemcellError(
            f"The factor must be a whole number (keep every K-th section, K ≥ 2), not {value!r}."
        )
    if k < 2:
        raise VemcellError(f"The factor must be at least 2 (1 would keep every section), not {k}.")
    return k


def check_sections(n: int) -> None:
    """At least two sections are needed to restore anything between them."""
    if int(n) < 2:
        raise VemcellError(
            f"The stack has {int(n)} section; restoring sections between kept ones needs at "
            "least 2."
        )


def output_sections(n: int, factor: int) -> int:
    """How many sections ``n`` kept sections become at ``factor``: ``(n - 1)·K + 1``."""
    return (int(n) - 1) * int(factor) + 1


def kept_indices(n_out: int, factor: int) -> np.ndarray:
    """Indices of the kept sections in a restored stack of ``n_out`` sections."""
    return np.arange(0, int(n_out), int(factor))


def sparse_voxel_size(voxel_size_nm: Sequence[float], factor: int) -> tuple[float, float, float]:
    """The voxel size of the restored stack: the Z step divided by ``factor``."""
    z, y, x = (float(v) for v in voxel_size_nm)
    return (z / int(factor), y, x)


def check_sparse_spacing(voxel_size_nm: Sequence[float], tolerance: float = 1e-3) -> None:
    """Refuse a stack whose sections are already closer together than its pixels.

    There is nothing to restore between sections finer than the in-plane pixel (the stack is
    already over-sampled along Z).
    """
    z, y, x = (float(v) for v in voxel_size_nm)
    pixel = min(y, x)
    if z < pixel * (1.0 - tolerance):
        raise VemcellError(
            f"The sections are {z:g} nm apart, already finer than the {pixel:g} nm pixels: "
            "there is nothing to restore between them (check --voxel-size)."
        )


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.0f} MB"


def check_memory(
    shape: Sequence[int],
    factor: int,
    itemsize: int,
    extra_bytes_per_voxel: float = 0.0,
    available: int | None = None,
) -> int:
    """Refuse a result larger than the memory available; returns the bytes it will take.

    ``shape`` is the sparse stack's (Z, Y, X); the result holds ``(Z - 1)·K + 1`` sections of
    ``itemsize`` bytes (plus ``extra_bytes_per_voxel`` of working state per output voxel, e.g.
    labels beside an image). The sparse stack itself and a few float32 working sections come
    on top.
    ``available`` defaults to the system's available memory (psutil).
    """
    n, h, w = (int(s) for s in shape)
    n_out = output_sections(n, factor)
    # the result, the sparse stack it comes from, and a few float32 working sections
    need = n_out * h * w * (itemsize + extra_bytes_per_voxel) + n * h * w * itemsize
    need += 16 * h * w * 4
    if available is None:
        import psutil

        available = int(psutil.virtual_memory().available)
    if need > 0.9 * available:
        raise VemcellError(
            f"Restoring {n} sections by {factor} gives {n_out} sections of {h} × {w} "
            f"({_gb(need)}), more than the {_gb(available)} of memory available; crop the "
            "volume or choose a smaller factor."
        )
    return int(need)
