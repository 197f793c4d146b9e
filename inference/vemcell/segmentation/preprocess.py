"""Preprocessing as in the paper: isotropic resampling, optional denoising, normalisation to [0, 1].

Small pure functions on numpy arrays; each validates its input and says what is wrong in one
sentence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage

from vemcell.errors import VemcellError

PERCENTILE_SAMPLE = 4_000_000


def sample_step(n_voxels: int) -> int:
    """Stride of the subsample that percentile estimates read (about PERCENTILE_SAMPLE voxels):
    the same for a whole volume here and for the blockwise first pass."""
    return max(1, n_voxels // PERCENTILE_SAMPLE)


def _sample(arr: np.ndarray) -> np.ndarray:
    """A strided subsample for percentile estimates (exact enough, far cheaper on big volumes)."""
    return arr.reshape(-1)[:: sample_step(arr.size)]


def normalise(
    arr: np.ndarray,
    method: str = "auto",
    low: float = 0.5,
    high: float = 99.5,
) -> np.ndarray:
    """Map intensities to float32 in [0, 1].

    Parameters
    ----------
    arr : ndarray
        uint8, uint16, other integer or float volume.
    method : {"auto", "scale", "percentile", "none"}
        ``scale`` divides by the integer type's maximum (the paper's /255); ``percentile`` maps
        the robust ``low``/``high`` percentiles to 0/1 and clips; ``auto`` scales uint8 and uses
        percentiles for everything else; ``none`` only converts to float32.
    """
    a = np.asarray(arr)
    if a.dtype.kind == "f":
        if np.isnan(a).any():
            raise VemcellError(
                "The volume contains NaN values; fix or mask them before segmenting."
            )
        if np.isinf(a).any():
            raise VemcellError("The volume contains infinite values; fix them before segmenting.")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    lo_v, hi_v = float(a.min()), float(a.max())
    if lo_v == hi_v:
        raise VemcellError(
            f"The volume is constant (every voxel is {lo_v:g}); there is nothing to segment."
        )
    if method == "auto":
        method = "scale" if a.dtype == np.uint8 else "percentile"
    if method == "none":
        return a.astype(np.float32, copy=False)
    if method == "scale":
        if a.dtype.kind in "ui":
            return a.astype(np.float32) / float(np.iinfo(a.dtype).max)
        method = "percentile"  # floats have no natural maximum
    if method != "percentile":
        raise VemcellError(f"Unknown normalisation method {method!r}.")
    if not 0.0 <= low < high <= 100.0:
        raise VemcellError(f"Percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}.")
    p_lo, p_hi = (float(v) for v in np.percentile(_sample(a), [low, high]))
    if p_hi <= p_lo:
        p_lo, p_hi = lo_v, hi_v
    out = a.astype(np.float32)
    out -= p_lo
    out *= 1.0 / (p_hi - p_lo)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def zoom_factors(
    voxel_size_nm: Sequence[float], target_nm: float | Sequence[float]
) -> tuple[float, float, float]:
    """Per-axis zoom that turns ``voxel_size_nm`` voxels into ``target_nm`` voxels."""
    t = (target_nm,) * 3 if np.isscalar(target_nm) else tuple(target_nm)  # type: ignore[arg-type]
    return tuple(float(v) / float(s) for v, s in zip(voxel_size_nm, t, strict=True))  # type: ignore[return-value]


def resize(arr: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """Resize a 3D array to exactly ``shape``: linear (order 1) for images, nearest (0) labels."""
    shape = tuple(int(s) for s in shape)
    if tuple(arr.shape) == shape:
        return arr
    if min(shape) < 1:
        raise VemcellError(f"Cannot resample to an empty shape {shape}.")
    factors = [s / i for s, i in zip(shape, arr.shape, strict=True)]
    out = ndimage.zoom(arr, factors, order=order, mode="nearest", grid_mode=True)
    if tuple(out.shape) != shape:  # zoom rounds; fix a one-voxel mismatch by edge crop/pad
        pads = [(0, max(0, s - o)) for s, o in zip(shape, out.shape, strict=True)]
        out = np.pad(out, pads, mode="edge")[tuple(slice(0, s) for s in shape)]
    return out


def argmax_resized(scores: Iterable[np.ndarray], shape: Sequence[int]) -> np.ndarray:
    """The class (index in ``scores``) whose uint8 score, interpolated to ``shape``, is highest.

    Scores are resized linearly one class at a time, so memory stays at three bytes per output
    voxel whatever the number of classes; ties go to the lower class.
    """
    return argmax_and_score_resized(scores, shape)[0]


def argmax_and_score_resized(
    scores: Iterable[np.ndarray], shape: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`argmax_resized` and the winning class's interpolated uint8 score per voxel."""
    shape = tuple(int(s) for s in shape)
    out = np.zeros(shape, dtype=np.uint8)
    best = None
    for c, sc in enumerate(scores):
        if c > 255:
            raise VemcellError("At most 256 classes can be resized.")
        cover = resize(np.asarray(sc, dtype=np.uint8), shape, order=1)
        if best is None:
            best = cover
            continue
        wins = cover > best
        out[wins] = c
        np.maximum(best, cover, out=best)
    if best is None:
        raise VemcellError("No class scores to resize.")
    return out, best


def resize_labels(labels: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resize a label volume to ``shape``, each voxel taking the class that covers it most.

    Each class's indicator is interpolated linearly and the largest wins, so class boundaries
    come out as smooth as the coarse grid allows instead of nearest-neighbour blocks (when
    a 20 nm model labels 5 nm data, say). Memory: three bytes per output voxel.
    """
    shape = tuple(int(s) for s in shape)
    labels = np.asarray(labels)
    if tuple(labels.shape) == shape:
        return labels
    if labels.dtype.kind not in "ub":
        return resize(labels, shape, order=0)
    present = np.flatnonzero(np.bincount(labels.ravel()))
    if len(present) <= 1 or present[-1] > 255:
        return resize(labels, shape, order=0)
    picked = argmax_resized(
        (np.where(labels == c, 255, 0).astype(np.uint8) for c in present), shape
    )
    return present.astype(labels.dtype)[picked]


def resample(
    arr: np.ndarray,
    voxel_size_nm: Sequence[float],
    target_nm: float | Sequence[float],
    order: int = 1,
) -> np.ndarray:
    """Resample a (Z, Y, X) volume from ``voxel_size_nm`` to ``target_nm`` voxels."""
    f = zoom_factors(voxel_size_nm, target_nm)
    shape = [max(1, round(s * z)) for s, z in zip(arr.shape, f, strict=True)]
    return resize(arr, shape, order)


def denoise(arr: np.ndarray, method: str = "none", size: int = 3) -> np.ndarray:
    """Optional denoising: ``median`` (3D, ``size``) or ``bilateral`` (per slice, as the paper)."""
    if method == "none":
        return arr
    if method == "median":
        return ndimage.median_filter(arr, size=size)
    if method == "bilateral":
        from skimage.restoration import denoise_bilateral

        a = np.asarray(arr, dtype=np.float32)
        lo, hi = float(a.min()), float(a.max())
        scaled = (a - lo) / (hi - lo) if hi > lo else a
        out = np.stack(
            [denoise_bilateral(s, sigma_color=0.08, sigma_spatial=1.5) for s in scaled]
        ).astype(np.float32)
        return out * (hi - lo) + lo if hi > lo else out
    raise VemcellError(f"Unknown denoising method {method!r} (none, median or bilateral).")
