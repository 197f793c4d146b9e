"""The image route: restore the missing sections themselves between every two kept ones.

``nearest`` copies the nearest kept section (the baseline), ``linear`` averages the two
neighbours weighted by distance, ``flow`` is motion-compensated interpolation: optical flow
(OpenCV's DIS) both ways between the two kept sections, each warped towards the missing depth
and blended by distance, with pixels that one side cannot see (where the forward and backward
flows disagree) taken from the other side. A feature visible in neither neighbour cannot be
recovered by any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vemcell.errors import VemcellError
from vemcell.progress import advance
from vemcell.sparse.core import (
    IMAGE_METHODS,
    METHODS,
    cast_to,
    check_factor,
    check_sections,
    output_sections,
)
from vemcell.sparse.flow import FlowMaker, PairFlow, robust_range
from vemcell.sparse.learned import LearnedBetween, resolve_method


def interpolate_pair(
    a: np.ndarray,
    b: np.ndarray,
    ts: Sequence[float],
    method: str = "flow",
    flow_maker: FlowMaker | None = None,
) -> list[np.ndarray]:
    """Sections at fractional depths ``ts`` (0 = ``a``, 1 = ``b``) between two sections, float32."""
    if method not in METHODS:
        raise VemcellError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    af, bf = a.astype(np.float32), b.astype(np.float32)
    if method == "nearest":
        return [af.copy() if t <= 0.5 else bf.copy() for t in ts]
    if method == "linear":
        return [(1.0 - t) * af + t * bf for t in ts]
    pair = PairFlow(af, bf, flow_maker)
    return [pair.blend(af, bf, t) for t in ts]


def reconstruct(
    volume_array: np.ndarray,
    factor: int,
    method: str = "flow",
    progress: Any = None,
    out: np.ndarray | None = None,
    model: str | None = None,
    voxel_size_nm: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """Restore ``(n - 1)·K + 1`` sections from ``n`` sections imaged every ``factor``-th.

    Output section ``i·K`` is input section ``i`` bit for bit, and the dtype is kept (integers
    rounded and clipped). ``progress`` is a :class:`vemcell.progress.Progress`, a callable
    ``(fraction, message)`` or ``None``. ``out`` may be a preallocated array of the result's
    shape and dtype (e.g. a memory map). ``method="auto"`` is the one measured best for this
    kind of stack when no segmentation model is named: ``flow``
    (:func:`vemcell.sparse.learned.default_method`). ``method="learned"`` takes
    ``model``, a restoration model's name or ``.onnx`` (default: the shipped one for
    ``voxel_size_nm``, the sparse stack's; :mod:`vemcell.sparse.learned`).
    """
    k = check_factor(factor)
    method = resolve_method(method, voxel_size_nm, k)
    if method not in IMAGE_METHODS:
        raise VemcellError(f"Unknown method {method!r}; choose one of {', '.join(IMAGE_METHODS)}.")
    arr = np.asarray(volume_array)
    if arr.ndim != 3:
        raise VemcellError(f"Restoring sections needs a 3D (Z, Y, X) stack, not shape {arr.shape}.")
    n = arr.shape[0]
    check_sections(n)
    shape = (output_sections(n, k), *arr.shape[1:])
    if out is None:
        out = np.empty(shape, arr.dtype)
    elif out.shape != shape or out.dtype != arr.dtype:
        raise VemcellError(f"The output array must be {shape} {arr.dtype}.")
    if method == "learned":
        between = LearnedBetween(arr, k, model, voxel_size_nm)
    else:
        fm = FlowMaker(*robust_range(arr)) if method == "flow" else None

        def between(a: np.ndarray, b: np.ndarray, ts: list[float]) -> list[np.ndarray]:
            return interpolate_pair(a, b, ts, method, fm)

    ts = [j / k for j in range(1, k)]
    for i in range(n - 1):
        out[i * k] = arr[i]
        for j, sec in enumerate(between(arr[i], arr[i + 1], ts), start=1):
            out[i * k + j] = cast_to(sec, arr.dtype)
        advance(progress, (i + 1) / (n - 1), f"sections {i + 1}/{n - 1} ({method})")
    out[(n - 1) * k] = arr[n - 1]
    return out
