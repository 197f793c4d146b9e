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
    AUTO,
    IMAGE_METHODS,
    METHODS,
    cast_to,
    check_factor,
    check_sections,
    output_sections,
)


class _FlowMaker:
    """Dense optical flow between two sections with OpenCV's DIS, on 8-bit copies."""

    def __init__(self, lo: float, hi: float, preset: str = "medium", smooth: float = 1.0) -> None:
        import cv2

        self.cv2 = cv2
        presets = {
            "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
            "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        }
        self.dis = cv2.DISOpticalFlow_create(presets[preset])
        self.lo, self.hi = float(lo), float(hi)
        self.smooth = float(smooth)

    def to_u8(self, img: np.ndarray) -> np.ndarray:
        scale = 255.0 / max(self.hi - self.lo, 1e-12)
        u8 = np.clip((img.astype(np.float32) - self.lo) * scale, 0, 255).astype(np.uint8)
        if self.smooth > 0:
            u8 = self.cv2.GaussianBlur(u8, (0, 0), self.smooth)
        return u8

    def __call__(self, a8: np.ndarray, b8: np.ndarray) -> np.ndarray:
        """Flow (H, W, 2; x, y) with a(p) ≈ b(p + flow(p))."""
        return self.dis.calc(a8, b8, None)


def _grid(h: int, w: int) -> np.ndarray:
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([gx, gy], axis=-1)


def _warp(cv2: Any, img: np.ndarray, grid: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: out(p) = img(p + flow(p)), bilinear, edges replicated."""
    m = grid + flow
    return cv2.remap(img, m[..., 0], m[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _visibility(cv2: Any, f_ab: np.ndarray, f_ba: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """1 where the forward flow from a is undone by the backward flow from b, falling to 0
    where they disagree by much more than a pixel (a pixel of a that b does not see)."""
    back = _warp(cv2, f_ba, grid, f_ab)
    err = np.sum((f_ab + back) ** 2, axis=-1)
    tol = 1.0 + 0.01 * np.sum(f_ab**2, axis=-1)
    return np.exp(-err / (2.0 * tol)).astype(np.float32)


class PairFlow:
    """The two-way optical flow between two sections, and how to carry any per-pixel map of
    either section (the grey levels, or a class's signed distance) to a depth in between."""

    def __init__(self, a: np.ndarray, b: np.ndarray, flow_maker: _FlowMaker | None = None) -> None:
        fm = flow_maker or _FlowMaker(*robust_range(np.stack([a, b])))
        self.cv2 = fm.cv2
        a8, b8 = fm.to_u8(a), fm.to_u8(b)
        self.f_ab, self.f_ba = fm(a8, b8), fm(b8, a8)
        self.grid = _grid(*a.shape)
        self.vis_a = _visibility(self.cv2, self.f_ab, self.f_ba, self.grid)
        self.vis_b = _visibility(self.cv2, self.f_ba, self.f_ab, self.grid)
        self._weights: dict[float, tuple] = {}

    def _at(self, t: float) -> tuple:
        if t not in self._weights:
            # flows from the missing section at depth t back to a and to b (Jiang et al. 2018,
            # Super SloMo: the two-way flows combined under locally constant motion)
            f_ab, f_ba = self.f_ab, self.f_ba
            f_ta = -(1.0 - t) * t * f_ab + t * t * f_ba
            f_tb = (1.0 - t) ** 2 * f_ab - t * (1.0 - t) * f_ba
            # distance weights, lowered where a side does not see the pixel (flows disagree)
            w_a = (1.0 - t) * (_warp(self.cv2, self.vis_a, self.grid, f_ta) + 1e-3)
            w_b = t * (_warp(self.cv2, self.vis_b, self.grid, f_tb) + 1e-3)
            self._weights[t] = (f_ta, f_tb, w_a, w_b)
        return self._weights[t]

    def warped(
        self, map_a: np.ndarray, map_b: np.ndarray, t: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``map_a`` and ``map_b`` (float32) each warped to depth ``t``, and their blend."""
        f_ta, f_tb, w_a, w_b = self._at(t)
        wa = _warp(self.cv2, map_a, self.grid, f_ta)
        wb = _warp(self.cv2, map_b, self.grid, f_tb)
        return wa, wb, (w_a * wa + w_b * wb) / (w_a + w_b)

    def blend(self, map_a: np.ndarray, map_b: np.ndarray, t: float) -> np.ndarray:
        """``map_a`` and ``map_b`` (float32, one per section) warped to depth ``t`` and blended."""
        return self.warped(map_a, map_b, t)[2]


def interpolate_pair(
    a: np.ndarray,
    b: np.ndarray,
    ts: Sequence[float],
    method: str = "flow",
    flow_maker: _FlowMaker | None = None,
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


def robust_range(arr: np.ndarray) -> tuple[float, float]:
    """Robust grey range (0.5–99.5 percentiles of a subsample) for the 8-bit flow copies."""
    flat = np.asarray(arr).reshape(-1)
    step = max(1, flat.size // 2_000_000)
    lo, hi = np.percentile(flat[::step].astype(np.float32), [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


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
    if method == AUTO:
        from vemcell.sparse.learned import default_method

        method = default_method(voxel_size_nm, k)
    if method not in IMAGE_METHODS:
        raise VemcellError(f"Unknown method {method!r}; choose one of {', '.join(IMAGE_METHODS)}.")
    if method == "learned":
        from vemcell.sparse.learned import restore_learned

        return restore_learned(
            volume_array, k, model, progress=progress, out=out, voxel_size_nm=voxel_size_nm
        )
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
    fm = _FlowMaker(*robust_range(arr)) if method == "flow" else None
    ts = [j / k for j in range(1, k)]
    for i in range(n - 1):
        out[i * k] = arr[i]
        for j, sec in enumerate(interpolate_pair(arr[i], arr[i + 1], ts, method, fm), start=1):
            out[i * k + j] = cast_to(sec, arr.dtype)
        advance(progress, (i + 1) / (n - 1), f"sections {i + 1}/{n - 1} ({method})")
    out[(n - 1) * k] = arr[n - 1]
    return out
