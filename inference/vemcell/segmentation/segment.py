"""Organelle segmentation with an ONNX U-Net: tiled 2D inference along 1 or 3 directions.

The paper's method: predict class probabilities on the XY, XZ and YZ slice stacks of an
isotropic volume, fuse them per voxel, take the most probable class and clean the result with a
3D median filter. Accumulators are uint8 (for the mean each direction's probabilities are
quantised to 0..85, so three of them sum within 255; a maximum keeps 0..255), which keeps a
512³ six-class volume under a gigabyte of fusion state.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from vemcell.cards.card import ModelCard
from vemcell.errors import VemcellError
from vemcell.io.volumes import Volume
from vemcell.options import PRECISIONS
from vemcell.progress import Progress
from vemcell.segmentation import preprocess

# Quantisation step of the per-direction probability accumulators: 3 × 85 = 255 fits uint8.
_QUANT = 85


#: Slices up to this many pixels a side are predicted whole (see :class:`Segmenter`).
WHOLE_SLICE = 1024


def choose_providers(available: Sequence[str]) -> list[str]:
    """CUDA first when onnxruntime-gpu sees a GPU, always CPU as the fallback.

    ``$VEMCELL_PROVIDERS`` (``tensorrt,cuda,cpu`` or any of them, in order of preference)
    chooses instead: TensorRT is opt-in (it compiles engines for minutes on first use), and
    ``cpu`` alone keeps a GPU machine on its CPUs for a comparison.
    """
    names = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider"}
    names["cpu"] = "CPUExecutionProvider"
    wanted = os.environ.get("VEMCELL_PROVIDERS")
    if wanted:
        unknown = [w for w in wanted.split(",") if w.strip().lower() not in names]
        if unknown:
            raise VemcellError(
                f"VEMCELL_PROVIDERS names {', '.join(unknown)}; use tensorrt, cuda and/or cpu."
            )
        chosen = [names[w.strip().lower()] for w in wanted.split(",")]
        providers = [p for p in chosen if p in available]
    else:
        providers = [p for p in ("CUDAExecutionProvider",) if p in available]
    if "CPUExecutionProvider" not in providers:
        providers.append("CPUExecutionProvider")
    return providers


def choose_precision(precision: str, card: ModelCard, providers: Sequence[str]) -> str:
    """``int8`` where the card ships INT8 weights and the CPU runs them (``auto``), else ``fp32``.

    A GPU runs the float model: its INT8 path needs calibration of its own (TensorRT).
    """
    if precision not in PRECISIONS:
        raise VemcellError(f"--precision must be auto, fp32 or int8, not {precision!r}.")
    on_cpu = list(providers) == ["CPUExecutionProvider"]
    if precision == "int8" and card.int8_path is None:
        raise VemcellError(f"Model {card.name} has no INT8 weights; use --precision fp32.")
    if precision == "auto":
        return "int8" if card.int8_path is not None and on_cpu else "fp32"
    return precision


def session_options(threads: int | None = None) -> Any:
    """onnxruntime options: bounded intra-op threads, no spinning (keeps Blender responsive)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads) if threads else (os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


def gaussian_window(size: int, sigma_frac: float = 0.125) -> np.ndarray:
    """2D Gaussian blending weights for one tile (never exactly zero at the border)."""
    r = np.arange(size, dtype=np.float32) - (size - 1) / 2.0
    g = np.exp(-0.5 * (r / (sigma_frac * size)) ** 2)
    w = np.outer(g, g)
    return np.maximum(w / w.max(), 1e-3).astype(np.float32)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length`` with at least ``overlap``."""
    if length <= tile:
        return [0]
    stride = max(1, tile - overlap)
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


class Segmenter:
    """An onnxruntime session for one model card, predicting class probabilities of 2D slices.

    Parameters
    ----------
    card : ModelCard
        The model and everything about it.
    threads : int, optional
        onnxruntime intra-op threads (default: all cores).
    batch_size : int
        Tiles per inference call. One at a time is fastest on CPUs: a 256² slice's activations
        stay in cache (batches of 8 measured 1.4-1.9× slower per slice; docs/benchmarks.md).
    precision : {"auto", "fp32", "int8"}
        Which weights to run (:func:`choose_precision`).
    tile : int, optional
        Largest square predicted in one piece. The network is fully convolutional, so whole
        slices up to :data:`WHOLE_SLICE` pixels are predicted at once (no overlapping tiles to
        pay for twice); larger slices are cut into tiles of this size with a quarter overlap.
        Default: the larger of the card's tile and :data:`WHOLE_SLICE`.
    """

    def __init__(
        self,
        card: ModelCard,
        threads: int | None = None,
        batch_size: int = 1,
        tile: int | None = None,
        precision: str = "auto",
    ) -> None:
        import onnxruntime as ort

        self.card = card
        self.batch_size = max(1, int(batch_size))
        d = card.divisor
        self.tile = max(d, d * (int(tile or max(card.tile, WHOLE_SLICE)) // d))
        self.providers = choose_providers(ort.get_available_providers())
        self.precision = choose_precision(precision, card, self.providers)
        path = card.int8_path if self.precision == "int8" else card.onnx_path
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=session_options(threads), providers=self.providers
            )
        except Exception as exc:
            raise VemcellError(
                f"Model {card.onnx_path.name} could not be loaded by onnxruntime ({exc})."
            ) from None
        inputs = self.session.get_inputs()
        channels = inputs[0].shape[1] if len(inputs) == 1 and len(inputs[0].shape) == 4 else 0
        if not isinstance(channels, int) or channels < 1 or channels % 2 == 0:
            raise VemcellError(
                f"Model {card.onnx_path.name} must take one [N, K, H, W] image input: a slice "
                "with K - 1 (an even number of) neighbouring slices as channels."
            )
        self.in_channels = channels
        self.context = (channels - 1) // 2
        self.input_name = inputs[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.providers = self.session.get_providers()

    def _run(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output_name], {self.input_name: x})[0]
        if out.ndim != 4 or out.shape[1] != self.card.n_classes:
            raise VemcellError(
                f"Model {self.card.onnx_path.name} returned shape {tuple(out.shape)}, but its card "
                f"lists {self.card.n_classes} classes."
            )
        if self.card.output == "logits":
            out = out - out.max(axis=1, keepdims=True)
            np.exp(out, out=out)
            out /= out.sum(axis=1, keepdims=True)
        return out.astype(np.float32, copy=False)

    def predict_slices(self, slices: np.ndarray, tta: bool = False) -> np.ndarray:
        """Class probabilities (N, C, H, W) for float32 slices (N, H, W) in [0, 1].

        A model with neighbouring-slice context (:attr:`context` > 0) takes each slice with
        its neighbours, (N, K, H, W) as :func:`direction_slices` cuts them. Slices larger than
        the card's tile are cut into overlapping tiles whose predictions are blended with
        Gaussian weights; sizes are padded (reflect) to multiples of the divisor.
        ``tta`` averages the predictions of the 8 rotations and mirror images of each slice
        (test-time augmentation: steadier probabilities for 8× the time).
        """
        x = np.asarray(slices, dtype=np.float32)
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise VemcellError(
                f"Model {self.card.onnx_path.name} takes {self.in_channels} slice(s) per "
                f"prediction, got an array of shape {tuple(x.shape)}."
            )
        if not tta:
            return self._predict(x)
        acc = None
        for k in range(4):
            for flip in (False, True):
                view = np.rot90(x, k, axes=(2, 3))
                view = view[..., ::-1] if flip else view
                p = self._predict(np.ascontiguousarray(view))
                p = np.rot90(p[..., ::-1] if flip else p, -k, axes=(2, 3))
                acc = p.copy() if acc is None else acc + p
        return acc / 8

    def _predict(self, x: np.ndarray) -> np.ndarray:
        n, _, h, w = x.shape
        d, tile = self.card.divisor, self.tile
        ph = max(d * -(-h // d), 0)
        pw = max(d * -(-w // d), 0)
        if h > tile:
            ph = max(ph, tile)
        if w > tile:
            pw = max(pw, tile)
        if (ph, pw) != (h, w):
            mode = "reflect" if (ph - h < h and pw - w < w) else "edge"
            x = np.pad(x, ((0, 0), (0, 0), (0, ph - h), (0, pw - w)), mode=mode)
        th, tw = min(tile, ph), min(tile, pw)
        ys, xs = tile_starts(ph, th, th // 4), tile_starts(pw, tw, tw // 4)
        c = self.card.n_classes
        if len(ys) == 1 and len(xs) == 1:
            out = np.empty((n, c, ph, pw), np.float32)
            for i in range(0, n, self.batch_size):
                out[i : i + self.batch_size] = self._run(x[i : i + self.batch_size])
            return out[:, :, :h, :w]
        weight = (
            gaussian_window(th)
            if th == tw
            else np.outer(gaussian_window(th)[:, th // 2], gaussian_window(tw)[tw // 2]).astype(
                np.float32
            )
        )
        acc = np.zeros((n, c, ph, pw), np.float32)
        norm = np.zeros((ph, pw), np.float32)
        positions = [(y0, x0) for y0 in ys for x0 in xs]
        for y0, x0 in positions:
            norm[y0 : y0 + th, x0 : x0 + tw] += weight
        jobs = [(i, y0, x0) for i in range(n) for (y0, x0) in positions]
        for k in range(0, len(jobs), self.batch_size):
            chunk = jobs[k : k + self.batch_size]
            batch = np.stack([x[i, :, y0 : y0 + th, x0 : x0 + tw] for i, y0, x0 in chunk])
            probs = self._run(batch)
            for (i, y0, x0), p in zip(chunk, probs, strict=True):
                acc[i, :, y0 : y0 + th, x0 : x0 + tw] += p * weight
        acc /= norm
        return acc[:, :, :h, :w]


def majority_filter(labels: np.ndarray, size: int | Sequence[int], n_classes: int) -> np.ndarray:
    """The 3D median filter of a label volume: the median of each class's indicator.

    A class's indicator has median 1 exactly where it holds more than half of the window
    (``size``³, or a (Z, Y, X) box), so this is a per-voxel majority vote; voxels with no
    majority keep their label. Box sums are separable, which makes this far faster than a rank
    filter.
    """
    sizes = (size,) * 3 if np.isscalar(size) else tuple(size)
    if len(sizes) != 3 or min(sizes) < 1:
        raise VemcellError(f"The median filter needs 3 sizes of at least 1, not {size}.")
    sizes = tuple(int(n) for n in sizes)
    if max(sizes) <= 1:
        return labels
    out = labels.copy()
    need = math.prod(sizes) // 2 + 1
    for c in range(n_classes):
        ind = (labels == c).astype(np.uint16)
        for ax, n in enumerate(sizes):
            if n > 1:
                ones = np.ones(n, dtype=np.uint16)
                ind = ndimage.correlate1d(ind, ones, axis=ax, mode="nearest", output=np.uint16)
        out[ind >= need] = c
    return out


def median_box(size: int, voxel_nm: Sequence[float]) -> tuple[int, int, int]:
    """The majority-filter box for ``size`` on a grid: 1 along axes over 2× the finest voxel.

    On thick serial sections (50 nm between 5 nm pixels, say) a 3-section vote would erase
    every structure thinner than the sections.
    """
    finest = min(float(v) for v in voxel_nm)
    return tuple(int(size) if float(v) <= 2 * finest else 1 for v in voxel_nm)  # type: ignore[return-value]


def direction_slices(
    image: np.ndarray, axis: int, start: int, stop: int, context: int = 0
) -> np.ndarray:
    """Slices ``start:stop`` of a (Z, Y, X) volume cut perpendicular to ``axis``, as (N, H, W).

    With ``context`` > 0 each slice comes with its ``context`` neighbours on either side as
    channels, (N, 2·context + 1, H, W), the end slices repeated beyond the volume's faces:
    what a model trained with neighbouring-slice context takes (training cuts them here too).
    """
    if context == 0:
        if axis == 0:
            return image[start:stop]
        if axis == 1:
            return np.ascontiguousarray(image[:, start:stop, :].transpose(1, 0, 2))
        return np.ascontiguousarray(image[:, :, start:stop].transpose(2, 0, 1))
    idx = np.clip(np.arange(start - context, stop + context), 0, image.shape[axis] - 1)
    block = np.moveaxis(np.take(image, idx, axis=axis), axis, 0)
    windows = np.lib.stride_tricks.sliding_window_view(block, 2 * context + 1, axis=0)
    return np.ascontiguousarray(np.moveaxis(windows, -1, 1))


def _accumulate(
    acc: np.ndarray, q: np.ndarray, axis: int, start: int, stop: int, fuse: str
) -> None:
    """Add (or max) quantised probabilities q (k, C, a, b) into acc (C, Z, Y, X)."""
    if axis == 0:
        view, src = acc[:, start:stop], q.transpose(1, 0, 2, 3)
    elif axis == 1:
        view, src = acc[:, :, start:stop, :], q.transpose(1, 2, 0, 3)
    else:
        view, src = acc[:, :, :, start:stop], q.transpose(1, 2, 3, 0)
    if fuse == "max":
        np.maximum(view, src, out=view)
    else:
        view += src


def _check_inputs(
    image: np.ndarray, card: ModelCard, directions: int, fuse: str, median: int
) -> np.ndarray:
    """Validate the settings and that the volume is large enough; returns the float32 image."""
    if directions not in (1, 3):
        raise VemcellError(f"--directions must be 1 or 3, not {directions}.")
    if fuse not in ("mean", "max"):
        raise VemcellError(f"fuse must be 'mean' or 'max', not {fuse!r}.")
    if median < 0:
        raise VemcellError(f"--median must be 0 or a positive size, not {median}.")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise VemcellError("Segmentation needs a 3D volume.")
    need = card.divisor
    small = [n for ax, n in enumerate(image.shape) if (ax != 0 or directions == 3) and n < need]
    in_plane = image.shape[1:] if directions == 1 else image.shape
    if small or min(in_plane) < need:
        raise VemcellError(
            f"The volume ({' × '.join(map(str, image.shape))} voxels after resampling) is smaller "
            f"than the model needs: at least {need} voxels along each sliced axis."
        )
    return image


def fused_scores(
    image: np.ndarray,
    card: ModelCard,
    *,
    directions: int = 3,
    fuse: str = "mean",
    threads: int | None = None,
    batch_slices: int = 16,
    progress: Progress | None = None,
    segmenter: Segmenter | None = None,
    tta: bool = False,
    region: tuple[slice, slice, slice] | None = None,
) -> np.ndarray:
    """Fused class probabilities (C, Z, Y, X) as uint8 scores (255 = certain).

    With ``fuse="mean"`` each of three directions' probabilities is quantised to 0..85 and the
    three are summed; one direction, or the per-class maximum (``fuse="max"``), uses 0..255.
    With ``region`` (a block and its halo: the blockwise pipeline) only that part is scored,
    each slice still predicted whole so the network sees the halo around the region.
    """
    if region is None:
        image = _check_inputs(image, card, directions, fuse, 0)
        region = tuple(slice(0, n) for n in image.shape)
    else:  # a block of a volume already checked whole: an edge block may be thin
        image = np.asarray(image, dtype=np.float32)
    seg = segmenter or Segmenter(card, threads=threads)
    axes = (0,) if directions == 1 else (0, 1, 2)
    quant = _QUANT * 3 // len(axes) if fuse == "mean" else 255
    total = sum(region[ax].stop - region[ax].start for ax in axes)
    done = 0
    acc = np.zeros((card.n_classes, *(r.stop - r.start for r in region)), np.uint8)
    names = {0: "XY", 1: "XZ", 2: "YZ"}
    for ax in axes:
        first, n = region[ax].start, region[ax].stop
        across = tuple(region[a] for a in range(3) if a != ax)
        for s0 in range(first, n, batch_slices):
            s1 = min(n, s0 + batch_slices)
            probs = seg.predict_slices(direction_slices(image, ax, s0, s1, seg.context), tta)
            q = np.rint(probs[:, :, across[0], across[1]] * quant).astype(np.uint8)
            _accumulate(acc, q, ax, s0 - first, s1 - first, fuse)
            done += s1 - s0
            if progress:
                # up to 0.98: the median filter and speck removal report 0.99 and 0.995
                progress.update(0.98 * done / total, f"{names[ax]} slices {s1}/{n}")
    return acc


def segment_volume(
    image: np.ndarray,
    card: ModelCard,
    *,
    directions: int = 3,
    median: int = 3,
    fuse: str = "mean",
    threads: int | None = None,
    batch_slices: int = 16,
    progress: Progress | None = None,
    segmenter: Segmenter | None = None,
    voxel_nm: Sequence[float] | None = None,
    tta: bool = False,
) -> np.ndarray:
    """Label a normalised (Z, Y, X) float volume with the model of ``card``.

    The volume must be isotropic for 3 directions; with 1 direction Z may be coarser.

    Parameters
    ----------
    directions : {1, 3}
        1 predicts XY slices only; 3 predicts XY, XZ and YZ and fuses them (the paper).
    median : int
        Size of the 3D median (majority) filter applied after fusion; 0 or 1 disables it.
        With ``voxel_nm``, axes over twice the finest voxel are not filtered (:func:`median_box`).
    fuse : {"mean", "max"}
        Average the three directions' probabilities, or keep each class's highest probability
        (the paper's literal rule).
    tta : bool
        Average each slice's 8 rotations and mirror images (:meth:`Segmenter.predict_slices`).
    """
    image = _check_inputs(image, card, directions, fuse, median)
    seg = segmenter or Segmenter(card, threads=threads)
    if directions == 1:  # no fusion: labels straight from each batch, no score volume
        labels = np.empty(image.shape, np.uint8)
        for z0 in range(0, image.shape[0], batch_slices):
            z1 = min(image.shape[0], z0 + batch_slices)
            slices = direction_slices(image, 0, z0, z1, seg.context)
            labels[z0:z1] = seg.predict_slices(slices, tta).argmax(axis=1)
            if progress:
                progress.update(0.98 * z1 / image.shape[0], f"XY slices {z1}/{image.shape[0]}")
    else:
        acc = fused_scores(
            image,
            card,
            directions=directions,
            fuse=fuse,
            batch_slices=batch_slices,
            progress=progress,
            segmenter=seg,
            tta=tta,
        )
        labels = np.empty(image.shape, np.uint8)
        step = slab_depth(image.shape)  # argmax gives int64: 32 MB a slab
        for z0 in range(0, image.shape[0], step):
            labels[z0 : z0 + step] = acc[:, z0 : z0 + step].argmax(axis=0)
        del acc
    if median > 1:
        box = median_box(median, voxel_nm) if voxel_nm is not None else (median,) * 3
        if progress:
            progress.update(0.99, f"median filter ({' × '.join(map(str, box))})")
        labels = majority_filter(labels, box, card.n_classes)
    return labels


@dataclass
class SegmentResult:
    """Labels on the input's voxel grid plus what was done to get them."""

    labels: np.ndarray
    working_voxel_nm: tuple[float, float, float]
    working_shape: tuple[int, int, int]
    providers: list[str] = field(default_factory=list)
    precision: str = "fp32"
    probabilities_note: str = ""
    directions: int = 3
    # with segment(confidence=True): the chosen class's fused probability, uint8 (255 = certain)
    confidence: np.ndarray | None = None
    # the minimum piece volumes applied (class name -> µm³; see remove_small_pieces)
    min_size_um3: dict[str, float] = field(default_factory=dict)
    specks_removed: dict[str, int] = field(default_factory=dict)


def auto_directions(volume: Volume, card: ModelCard) -> int:
    """3 (the paper's XY + XZ + YZ fusion) where a volume can be resliced, else 1 (XY only).

    XY only for a model trained on XY slices alone (serial-section models), for Z steps over
    twice the model's voxel (thick sections, whose XZ/YZ slices would be mostly interpolation)
    and for volumes too thin in Z to cut XZ/YZ slices from.
    """
    t = float(card.voxel_size_nm or min(volume.voxel_size_nm))
    dz = float(volume.voxel_size_nm[0])
    trained = (card.raw.get("training") or {}).get("directions")
    if trained == 1 or dz > 2.0 * t or volume.shape[0] * dz / t < card.divisor:
        return 1
    return 3


def resolve_directions(directions: int | str, volume: Volume, card: ModelCard) -> int:
    """``"auto"`` -> :func:`auto_directions`; 1 and 3 are kept; anything else is an error."""
    if directions == "auto":
        return auto_directions(volume, card)
    if directions not in (1, 3, "1", "3"):
        raise VemcellError(f"--directions must be auto, 1 or 3, not {directions}.")
    return int(directions)


def prepare(
    volume: Volume, card: ModelCard, denoise: str = "none", directions: int = 3
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Normalise as the card says and resample to the model's voxel size.

    3 directions need isotropic voxels. With 1 direction a Z step coarser than the model's
    voxel is kept (thick serial sections are not interpolated into made-up slices, as in
    training); a finer one is resampled to the model's voxel.
    """
    arr = volume.array()
    norm = card.normalisation
    arr = preprocess.normalise(
        arr, norm.get("method", "auto"), norm.get("low", 0.5), norm.get("high", 99.5)
    )
    arr = preprocess.denoise(arr, denoise)
    t = float(card.voxel_size_nm or min(volume.voxel_size_nm))
    target = (max(t, float(volume.voxel_size_nm[0])) if directions == 1 else t, t, t)
    arr = preprocess.resample(arr, volume.voxel_size_nm, target, order=1)
    return arr, target


def segment(
    volume: Volume,
    card: ModelCard,
    *,
    directions: int | str = "auto",
    median: int = 3,
    fuse: str = "mean",
    denoise: str = "none",
    threads: int | None = None,
    progress: Progress | None = None,
    segmenter: Segmenter | None = None,
    tta: bool = False,
    confidence: bool = False,
    min_size: Mapping[str, float] | None = None,
    precision: str = "auto",
) -> SegmentResult:
    """The whole organelle segmentation of a volume: preprocess, predict, map labels back.

    ``directions="auto"`` picks 3 or 1 with :func:`auto_directions`; the result says which.
    ``tta`` averages each slice's 8 rotations and mirror images. ``confidence`` also returns
    how probable the chosen class is at each voxel (what :mod:`vemcell.cli.pseudolabel`
    thresholds); it always takes the soft-majority path described next. ``precision`` picks
    the float or INT8 weights (:func:`choose_precision`) when no ``segmenter`` is given.

    When the model works on a coarser grid than the data, the fused class probabilities are
    interpolated to the data's grid and the most probable class taken there, so boundaries fall
    between the coarse voxels where the probabilities cross; the median vote is then a box mean
    of the probabilities on the coarse grid (a soft majority) before interpolation.

    Last, connected pieces of a class smaller than its minimum volume (``min_size``, class name
    to µm³; ``None`` takes the card's ``min_size_um3``, ``{}`` keeps every piece) are given to
    the class around them (:func:`remove_small_pieces`); their confidence becomes 0.
    """
    sizes = dict(card.min_size_um3 if min_size is None else min_size)
    directions = resolve_directions(directions, volume, card)
    seg = segmenter or Segmenter(card, threads=threads, precision=precision)
    work, work_voxel = prepare(volume, card, denoise, directions)
    working_shape = tuple(int(s) for s in work.shape)
    certainty = None
    if working_shape == tuple(volume.shape) and not confidence:
        labels = segment_volume(
            work,
            card,
            directions=directions,
            median=median,
            fuse=fuse,
            progress=progress,
            segmenter=seg,
            voxel_nm=work_voxel,
            tta=tta,
        )
    else:
        _check_inputs(work, card, directions, fuse, median)
        scores = fused_scores(
            work, card, directions=directions, fuse=fuse, progress=progress, segmenter=seg, tta=tta
        )
        if progress:
            progress.update(0.99, "class probabilities to the input grid")
        box = median_box(median, work_voxel) if median > 1 else (1, 1, 1)
        labels, certainty = preprocess.argmax_and_score_resized(
            (ndimage.uniform_filter(sc, box, mode="nearest") for sc in scores), volume.shape
        )
        del scores
    removed: dict[str, int] = {}
    if any(v > 0 for v in sizes.values()):
        if progress:
            progress.update(0.995, "removing specks")
        before = labels
        labels, removed = remove_small_pieces(
            labels, min_size_voxels(card, sizes, volume.voxel_size_nm), card
        )
        if certainty is not None:
            certainty[labels != before] = 0
    return SegmentResult(
        labels=labels,
        working_voxel_nm=work_voxel,
        working_shape=working_shape,  # type: ignore[arg-type]
        providers=list(seg.providers),
        precision=seg.precision,
        directions=directions,
        confidence=certainty if confidence else None,
        min_size_um3=sizes,
        specks_removed=removed,
    )


def _check_min_size_names(
    sizes: Mapping[str, float], class_names: Sequence[str], what: str
) -> None:
    for name in sizes:
        if name not in class_names:
            raise VemcellError(
                f"--min-size names {name!r}, which is not a class of {what} "
                f"({', '.join(class_names)})."
            )


def min_size_voxels(
    card: ModelCard, sizes_um3: Mapping[str, float], voxel_nm: Sequence[float]
) -> dict[int, int]:
    """Class index -> the smallest piece kept, in voxels of ``voxel_nm`` (classes at 0 left out)."""
    names = card.class_names
    _check_min_size_names(sizes_um3, names, f"model {card.name}")
    voxel_um3 = math.prod(float(v) for v in voxel_nm) * 1e-9
    return {
        names.index(name): max(1, math.ceil(um3 / voxel_um3 - 1e-9))
        for name, um3 in sizes_um3.items()
        if um3 > 0
    }


def min_size_from_options(
    items: Sequence[str], start: Mapping[str, float], class_names: Sequence[str], what: str
) -> dict[str, float]:
    """``--min-size`` values (``CLASS=µm³``, or ``off`` for none) applied over ``start``."""
    sizes = dict(start)
    for item in items:
        if item.strip().lower() == "off":
            sizes = {}
            continue
        name, sep, value = item.partition("=")
        try:
            um3 = float(value) if sep else -1.0
        except ValueError:
            um3 = -1.0
        if not um3 >= 0:
            raise VemcellError(
                "--min-size takes CLASS=VOLUME in µm³ (e.g. peroxisome=0.001) or off, "
                f"not {item!r}."
            )
        sizes[name.strip()] = um3
    _check_min_size_names(sizes, class_names, what)
    return sizes


def parse_min_size(items: Sequence[str] | None, card: ModelCard) -> dict[str, float] | None:
    """``--min-size`` values over the card's sizes; None (no option given): the card's own."""
    if not items:
        return None
    return min_size_from_options(items, card.min_size_um3, card.class_names, f"model {card.name}")


def slab_depth(shape: Sequence[int], voxels: int = 1 << 22) -> int:
    """How many Z slices of a volume of ``shape`` make a slab of about ``voxels`` (at least 1):
    for steps whose temporaries are int64, done a slab at a time instead of all at once."""
    return max(1, voxels // max(1, math.prod(shape[1:])))


def piece_sizes(pieces: np.ndarray, n: int, chunk_voxels: int = 1 << 22) -> np.ndarray:
    """Voxels of each label 0..n of a labelled volume, counted a slab at a time: ``bincount``
    casts its input to int64, which on the whole volume would be 8 bytes a voxel more."""
    sizes = np.zeros(n + 1, np.int64)
    step = slab_depth(pieces.shape, chunk_voxels)
    for z0 in range(0, pieces.shape[0], step):
        sizes += np.bincount(pieces[z0 : z0 + step].ravel(), minlength=n + 1)
    return sizes


def remove_small_pieces(
    labels: np.ndarray, min_voxels: Mapping[int, int], card: ModelCard
) -> tuple[np.ndarray, dict[str, int]]:
    """Give each connected piece of class c with fewer than ``min_voxels[c]`` voxels to its
    surroundings.

    A few voxels of "peroxisome" in the cytoplasm are the commonest false organelle, and each one
    would become its own tiny mesh and row in the measurements. The class most common on the
    piece's outer face (26-connected) replaces it; a piece with nothing around it becomes the
    background class. Returns the new labels and how many pieces of each class went.
    """
    out = labels
    counts: dict[str, int] = {}
    full = np.ones((3, 3, 3), bool)
    fill = card.background_class or 0
    pieces = None
    for cls, need in sorted(min_voxels.items()):
        del pieces  # the last class's pieces go before this one's are made (4 bytes a voxel)
        pieces, n = ndimage.label(out == cls, structure=full)
        if n == 0:
            continue
        sizes = piece_sizes(pieces, n)
        small = [i for i in range(1, n + 1) if sizes[i] < need]
        if not small:
            continue
        if out is labels:
            out = labels.copy()
        boxes = ndimage.find_objects(pieces)
        for i in small:
            box = tuple(
                slice(max(b.start - 1, 0), min(b.stop + 1, dim))
                for b, dim in zip(boxes[i - 1], out.shape, strict=True)
            )
            piece = pieces[box] == i
            face = ndimage.binary_dilation(piece, full) & ~piece
            around = out[box][face]
            around = around[around != cls]
            out[box][piece] = np.bincount(around).argmax() if around.size else fill
        counts[card.class_names[cls]] = len(small)
    return out, counts


def label_info(card: ModelCard) -> dict[str, Any]:
    """The JSON stored in label TIFFs so later steps can name and colour the classes."""
    return {
        "vemcell": "labels/1",
        "model": card.name,
        "classes": [{"name": c.name, "color": list(c.color)} for c in card.classes],
        "background_class": card.background_class,
    }
