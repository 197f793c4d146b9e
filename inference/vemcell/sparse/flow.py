"""Optical flow between two sections (OpenCV's DIS) and what it carries to a depth between.

Shared by the image route's ``flow`` method, the ``learned`` method (which corrects it) and
the shape route's ``+flow`` variant.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_FLOW_SIDE = 12  # OpenCV's DIS needs an image at least this wide or high


def robust_range(arr: np.ndarray) -> tuple[float, float]:
    """Robust grey range (0.5–99.5 percentiles of a subsample) for the 8-bit flow copies."""
    flat = np.asarray(arr).reshape(-1)
    step = max(1, flat.size // 2_000_000)
    lo, hi = np.percentile(flat[::step].astype(np.float32), [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


class FlowMaker:
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
        """Flow (H, W, 2; x, y) with a(p) ≈ b(p + flow(p)); none on sections too small for DIS
        (under 12 pixels both ways), which then blend like ``linear``."""
        if max(a8.shape) < MIN_FLOW_SIDE:
            return np.zeros((*a8.shape, 2), np.float32)
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

    def __init__(self, a: np.ndarray, b: np.ndarray, flow_maker: FlowMaker | None = None) -> None:
        fm = flow_maker or FlowMaker(*robust_range(np.stack([a, b])))
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
