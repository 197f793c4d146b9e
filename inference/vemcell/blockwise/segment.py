"""Organelle segmentation block by block, with the statistics of the whole volume.

A first pass over all blocks gathers what normalisation needs from the whole volume (range,
NaN/inf checks, and exactly the strided sample :func:`vemcell.segmentation.preprocess.normalise`
takes its percentiles from), so every block is scaled as the whole volume would be. Then each
block is read with a halo (the network's reach plus the median filter's), its XY, XZ and YZ
slices are predicted and fused as :func:`vemcell.segmentation.segment.fused_scores` does, the
most probable class is taken and majority-filtered, and only the block itself is written.
Speck removal is a global connected-component pass (:mod:`vemcell.blockwise.labels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vemcell.blockwise.plan import Block, Plan
from vemcell.errors import VemcellError

_CACHE: dict[Any, Any] = {}  # per worker process: open volumes and onnxruntime sessions


def volume(path: str, voxel: tuple[float, float, float]) -> Any:
    """The lazily opened volume (cached in each worker process)."""
    key = ("volume", path, voxel)
    if key not in _CACHE:
        from vemcell.io.lazy import open_lazy

        _CACHE[key] = open_lazy(path, voxel)
    return _CACHE[key]


def segmenter(model: str | None, threads: int | None, precision: str = "auto") -> Any:
    """The onnxruntime session of the model (one per worker process)."""
    key = ("segmenter", model, threads, precision)
    if key not in _CACHE:
        from vemcell.cards.card import resolve_model
        from vemcell.segmentation.segment import Segmenter

        _CACHE[key] = Segmenter(resolve_model(model), threads=threads or 1, precision=precision)
    return _CACHE[key]


# --------------------------------------------------------------------------------------------
# Whole-volume statistics


def stats_block(block: Block, path: str, voxel: tuple[float, float, float], step: int) -> dict:
    """Range, NaN/inf flags and the voxels at flat indices ≡ 0 (mod ``step``) of one block."""
    a = np.asarray(volume(path, voxel).data[block.box])
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    out: dict[str, Any] = {"min": float(a.min()), "max": float(a.max())}
    if a.dtype.kind == "f":
        out["nan"] = bool(np.isnan(a).any())
        out["inf"] = bool(np.isinf(a).any())
    _, ny, nx = volume(path, voxel).shape
    y = np.arange(block.start[1], block.stop[1], dtype=np.int64)[:, None]
    x = np.arange(block.start[2], block.stop[2], dtype=np.int64)[None, :]
    samples = []
    for k, z in enumerate(range(block.start[0], block.stop[0])):
        flat = (z * ny + y) * nx + x
        samples.append(a[k][flat % step == 0])
    out["sample"] = np.concatenate(samples)
    return out


def preview_block(block: Block, path: str, voxel: tuple[float, float, float], dst: str) -> int:
    """One block of the EM pyramid's level 1 (every second voxel of the input), for viewers."""
    import zarr

    box = tuple(slice(2 * a, 2 * b) for a, b in zip(block.start, block.stop, strict=True))
    a = np.asarray(volume(path, voxel).data[box])[::2, ::2, ::2]
    zarr.open_array(dst, mode="r+")[block.box] = a.astype(np.uint8) if a.dtype == np.bool_ else a
    return 0


@dataclass(frozen=True)
class Scaling:
    """How every block maps its intensities to [0, 1] (decided once, for the whole volume)."""

    method: str  # "none", "scale" or "percentile"
    offset: float = 0.0
    factor: float = 1.0

    def apply(self, a: np.ndarray) -> np.ndarray:
        """The same arithmetic as :func:`vemcell.segmentation.preprocess.normalise`."""
        if a.dtype == np.bool_:
            a = a.astype(np.uint8)
        if self.method == "none":
            return a.astype(np.float32, copy=False)
        if self.method == "scale":
            return a.astype(np.float32) / self.factor
        out = a.astype(np.float32)
        out -= self.offset
        out *= self.factor
        np.clip(out, 0.0, 1.0, out=out)
        return out


def scaling(stats: list[dict], dtype: np.dtype, norm: dict[str, Any]) -> Scaling:
    """The normalisation of the whole volume from the blocks' statistics."""
    if any(s.get("nan") for s in stats):
        raise VemcellError("The volume contains NaN values; fix or mask them before segmenting.")
    if any(s.get("inf") for s in stats):
        raise VemcellError("The volume contains infinite values; fix them before segmenting.")
    lo_v = min(s["min"] for s in stats)
    hi_v = max(s["max"] for s in stats)
    if lo_v == hi_v:
        raise VemcellError(
            f"The volume is constant (every voxel is {lo_v:g}); there is nothing to segment."
        )
    method = norm.get("method", "auto")
    dt = np.dtype(np.uint8) if dtype == np.bool_ else np.dtype(dtype)
    if method == "auto":
        method = "scale" if dt == np.uint8 else "percentile"
    if method == "none":
        return Scaling("none")
    if method == "scale":
        if dt.kind in "ui":
            return Scaling("scale", factor=float(np.iinfo(dt).max))
        method = "percentile"
    if method != "percentile":
        raise VemcellError(f"Unknown normalisation method {method!r}.")
    low, high = norm.get("low", 0.5), norm.get("high", 99.5)
    if not 0.0 <= low < high <= 100.0:
        raise VemcellError(f"Percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}.")
    sample = np.concatenate([s["sample"] for s in stats])
    p_lo, p_hi = (float(v) for v in np.percentile(sample, [low, high]))
    if p_hi <= p_lo:
        p_lo, p_hi = lo_v, hi_v
    return Scaling("percentile", offset=p_lo, factor=1.0 / (p_hi - p_lo))


# --------------------------------------------------------------------------------------------
# Block segmentation


@dataclass(frozen=True)
class SegmentJob:
    """Everything a segmentation block task needs (small and picklable)."""

    path: str
    voxel: tuple[float, float, float]
    model: str | None
    threads: int | None
    precision: str
    scaling: Scaling
    directions: int
    fuse: str
    median_box: tuple[int, int, int]
    denoise: str
    tta: bool
    halo: int
    out: str


def segment_block(block: Block, job: SegmentJob) -> int:
    """Labels of one block (read with its halo), written to ``job.out``; returns the voxels."""
    import zarr
    from scipy import ndimage

    from vemcell.segmentation import segment as seg_mod

    vol = volume(job.path, job.voxel)
    outer = block.grown(job.halo, vol.shape)
    image = job.scaling.apply(np.asarray(vol.data[outer]))
    if job.denoise == "median":
        image = ndimage.median_filter(image, size=3)
    seg = segmenter(job.model, job.threads, job.precision)
    inner = block.inner_in(outer)
    m = [k // 2 for k in job.median_box]
    region = tuple(
        slice(max(0, s.start - r), min(n, s.stop + r))
        for s, r, n in zip(inner, m, image.shape, strict=True)
    )
    shape = tuple(s.stop - s.start for s in region)
    if job.directions == 1:
        labels = np.empty(shape, np.uint8)
        for z0 in range(region[0].start, region[0].stop, 16):
            z1 = min(region[0].stop, z0 + 16)
            slices = seg_mod.direction_slices(image, 0, z0, z1, seg.context)
            probs = seg.predict_slices(slices, job.tta)[:, :, region[1], region[2]]
            labels[z0 - region[0].start : z1 - region[0].start] = probs.argmax(axis=1)
    else:
        labels = fused_labels(image, region, seg, job.fuse, job.tta)
    if max(job.median_box) > 1:
        labels = seg_mod.majority_filter(labels, job.median_box, seg.card.n_classes)
    crop = tuple(
        slice(i.start - r.start, i.stop - r.start) for i, r in zip(inner, region, strict=True)
    )
    zarr.open_array(job.out, mode="r+")[block.box] = labels[crop]
    return int(np.prod(block.shape))


def fused_labels(
    image: np.ndarray, region: tuple[slice, ...], seg: Any, fuse: str, tta: bool
) -> np.ndarray:
    """Most probable class on ``region`` of ``image`` from its XY, XZ and YZ slices, each
    predicted whole (halo included) and cropped to the region:
    :func:`vemcell.segmentation.segment.fused_scores` on the region."""
    from vemcell.segmentation.segment import fused_scores

    scores = fused_scores(image, seg.card, fuse=fuse, segmenter=seg, tta=tta, region=tuple(region))
    return scores.argmax(axis=0).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Speck removal


def face_histograms(
    block: Block, lab: Any, plan: Plan, labels: str, small: np.ndarray, n_classes: int
) -> dict[int, np.ndarray]:
    """For each small piece touching this block: the classes on its outer face (26-connected)
    that lie inside this block, as a histogram. Summed over blocks: the whole face."""
    import fastremap
    import zarr
    from scipy import ndimage as ndi

    from vemcell.blockwise.labels import read_components

    ext = block.grown(1, plan.shape)
    g = read_components(lab, plan, ext)
    sel = small[g]
    if not sel.any():
        return {}
    lab_ext = np.asarray(zarr.open_array(labels, mode="r")[ext])
    inner = np.zeros(g.shape, bool)
    inner[block.inner_in(ext)] = True
    pieces, remap = fastremap.renumber(np.where(sel, g, 0), in_place=False)
    back = {v: k for k, v in remap.items() if v}
    full = np.ones((3, 3, 3), bool)
    out: dict[int, np.ndarray] = {}
    for i, box in enumerate(ndi.find_objects(pieces), start=1):
        if box is None:
            continue
        box = tuple(
            slice(max(s.start - 1, 0), min(s.stop + 1, n))
            for s, n in zip(box, g.shape, strict=True)
        )
        piece = pieces[box] == i
        face = ndi.binary_dilation(piece, full) & ~piece & inner[box]
        if not face.any():
            continue
        cls = int(lab_ext[box][piece][0])
        around = lab_ext[box][face]
        around = around[around != cls]
        out[int(back[i])] = np.bincount(around, minlength=n_classes)
    return out


def clean_block(
    block: Block, lab: Any, plan: Plan, labels: str, replace: np.ndarray, out: str
) -> int:
    """Write the block's labels with every small piece given its replacement class."""
    import zarr

    from vemcell.blockwise.labels import read_components

    cls = np.asarray(zarr.open_array(labels, mode="r")[block.box])
    g = read_components(lab, plan, block.box)
    new = replace[g]
    cls = np.where(new > 0, new - 1, cls).astype(np.uint8)
    zarr.open_array(out, mode="r+")[block.box] = cls
    return 0
