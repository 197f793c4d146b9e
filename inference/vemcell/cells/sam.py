"""Cell-versus-resin masks with Segment Anything (SAM), run through onnxruntime only.

The paper separates cells from the embedding resin with SAM's automatic mode before the 3D
watershed. This module does the same with the two ONNX files ``vemcell sam-export`` writes
(image encoder; prompt encoder + mask decoder), so inference needs no torch:

1. every ``slice_step``-th slice is normalised with the *volume's* percentiles (the same grey
   levels mean the same thing on every slice), resized so its longest side is the encoder's
   input size, replicated to RGB and encoded once;
2. a regular grid of single-point prompts is decoded in batches (SAM's automatic mask
   generator); each prompt gives three candidate masks;
3. candidates are kept when their predicted IoU and stability score (IoU of the mask
   thresholded at ±1 logit) are high, and duplicates are removed by box non-maximum
   suppression, as in Kirillov et al. 2023;
4. kept masks of cell size whose grey levels do not match the resin (estimated from the
   backdrop-sized masks) are merged into the slice's foreground;
5. slices between key slices are interpolated through signed distance maps, a 3-slice
   majority vote along Z removes flicker, and the mask is cleaned in 3D.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from vemcell.cells.masks import clean_mask
from vemcell.errors import VemcellError
from vemcell.progress import advance

CARD_NAME = "sam.json"
CARD_FORMAT = "vemcell-sam-card/1"


@dataclass
class SamCard:
    """What :mod:`vemcell.cells.sam` needs to know about an exported SAM."""

    name: str
    directory: Path
    encoder: Path
    decoder: Path
    img_size: int
    mask_input_size: tuple[int, int]
    pixel_mean: np.ndarray
    pixel_std: np.ndarray
    mask_threshold: float
    raw: dict[str, Any]


def load_sam_card(model_dir: str | os.PathLike) -> SamCard:
    """Read and check ``sam.json`` in an exported-SAM folder."""
    d = Path(model_dir)
    path = d / CARD_NAME
    if not path.exists():
        raise VemcellError(f"'{d}' holds no exported SAM ({CARD_NAME} missing).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VemcellError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict) or data.get("format") != CARD_FORMAT:
        raise VemcellError(f"{path} is not a vemcell SAM card ({CARD_FORMAT}).")
    try:
        card = SamCard(
            name=str(data.get("name", "sam")),
            directory=d,
            encoder=d / str(data["encoder"]),
            decoder=d / str(data["decoder"]),
            img_size=int(data["img_size"]),
            mask_input_size=tuple(int(v) for v in data["mask_input_size"]),  # type: ignore[arg-type]
            pixel_mean=np.asarray(data["pixel_mean"], np.float32).reshape(3, 1, 1),
            pixel_std=np.asarray(data["pixel_std"], np.float32).reshape(3, 1, 1),
            mask_threshold=float(data.get("mask_threshold", 0.0)),
            raw=data,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise VemcellError(f"{path} lacks or garbles the field {exc}.") from None
    for f in (card.encoder, card.decoder):
        if not f.exists():
            raise VemcellError(f"{path.name} names {f.name}, which is missing from '{d}'.")
    return card


class SamOnnx:
    """An exported SAM as two onnxruntime sessions.

    Parameters
    ----------
    model_dir : path
        Folder written by ``vemcell sam-export``.
    threads : int, optional
        Intra-op threads for onnxruntime (its default when None).
    """

    def __init__(self, model_dir: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.card = load_sam_card(model_dir)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider",) if p in available]
        providers.append("CPUExecutionProvider")
        try:
            self.encoder = ort.InferenceSession(str(self.card.encoder), opts, providers=providers)
            self.decoder = ort.InferenceSession(str(self.card.decoder), opts, providers=providers)
        except Exception as exc:
            raise VemcellError(
                f"The exported SAM in '{self.card.directory}' could not be loaded "
                f"({type(exc).__name__}); export it again with `vemcell sam-export`."
            ) from None

    def input_shape(self, hw: tuple[int, int]) -> tuple[int, int]:
        """Size of a (H, W) slice after resizing its longest side to the encoder's size."""
        s = self.card.img_size
        scale = s / max(hw)
        return int(hw[0] * scale + 0.5), int(hw[1] * scale + 0.5)

    def embed(self, rgb255: np.ndarray) -> np.ndarray:
        """Image embedding of one (H, W) slice already scaled to SAM's 0..255 grey levels."""
        from skimage.transform import resize

        s = self.card.img_size
        nh, nw = self.input_shape(rgb255.shape)
        small = resize(
            rgb255.astype(np.float32),
            (nh, nw),
            order=1,
            preserve_range=True,
            anti_aliasing=nh < rgb255.shape[0],
        ).astype(np.float32)
        x = (np.broadcast_to(small, (3, nh, nw)) - self.card.pixel_mean) / self.card.pixel_std
        padded = np.zeros((1, 3, s, s), np.float32)
        padded[0, :, :nh, :nw] = x
        return self.encoder.run(None, {"image": padded})[0]

    def predict(
        self, embedding: np.ndarray, points_xy: np.ndarray, hw: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Masks for a batch of single-point prompts.

        Parameters
        ----------
        points_xy : (B, 2) float
            Prompt points in slice pixel coordinates (x, y).
        hw : (H, W)
            The slice's size.

        Returns
        -------
        logits : (B, 3, H, W) float32
            The three multimask candidates per prompt (mask = logits > mask_threshold).
        iou : (B, 3) float32
            SAM's predicted IoU of each candidate.
        """
        nh, nw = self.input_shape(hw)
        pts = np.asarray(points_xy, np.float32).reshape(-1, 2)
        scaled = pts * np.array([nw / hw[1], nh / hw[0]], np.float32)
        b = scaled.shape[0]
        # A padding point labelled -1 stands for the absent box prompt (as SAM's ONNX example).
        coords = np.zeros((b, 2, 2), np.float32)
        coords[:, 0] = scaled
        labels = np.tile(np.array([[1.0, -1.0]], np.float32), (b, 1))
        mh, mw = self.card.mask_input_size
        feeds = {
            "image_embeddings": embedding,
            "point_coords": coords,
            "point_labels": labels,
            "mask_input": np.zeros((1, 1, mh, mw), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array(hw, np.float32),
        }
        masks, iou, _ = self.decoder.run(None, feeds)
        if masks.shape[1] > 3:  # token 0 is the single-mask output; automatic mode uses 1..3
            masks, iou = masks[:, 1:], iou[:, 1:]
        return masks, iou


def point_grid(hw: tuple[int, int], points_per_side: int) -> np.ndarray:
    """SAM's automatic prompt grid: ``n × n`` points at cell centres, (x, y) pixel coords."""
    n = int(points_per_side)
    if n < 1:
        raise VemcellError(f"points_per_side must be at least 1, not {points_per_side}.")
    offs = 1.0 / (2 * n)
    t = np.linspace(offs, 1 - offs, n)
    xs, ys = np.meshgrid(t * hw[1], t * hw[0])
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


def stability_score(logits: np.ndarray, threshold: float, offset: float) -> np.ndarray:
    """IoU of each mask thresholded at ``threshold ± offset`` (SAM's stability score)."""
    hi = (logits > threshold + offset).sum(axis=(-2, -1))
    lo = (logits > threshold - offset).sum(axis=(-2, -1))
    return np.where(lo > 0, hi / np.maximum(lo, 1), 0.0)


def _box(mask: np.ndarray) -> np.ndarray:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], float)


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression of (x0, y0, x1, y1) boxes."""
    order = list(np.argsort(-np.asarray(scores), kind="stable"))
    keep: list[int] = []
    boxes = np.asarray(boxes, float)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if not order:
            break
        rest = np.asarray(order)
        x0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        y0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        x1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        y1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        iou = inter / (area[i] + area[rest] - inter)
        order = [int(j) for j, v in zip(rest, iou, strict=True) if v <= iou_threshold]
    return keep


@dataclass
class SamOptions:
    """Automatic-mask and merging parameters (SAM's defaults where SAM has one)."""

    points_per_side: int = 16
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.92
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    min_cell_area_um2: float = 0.05
    max_cell_area_um2: float = 25.0
    max_area_fraction: float = 0.5
    resin_tolerance: float = 1.0
    slice_step: int = 1


def automatic_masks(
    model: SamOnnx, slice255: np.ndarray, opt: SamOptions
) -> tuple[list[np.ndarray], list[float]]:
    """SAM's automatic mode on one slice: the kept masks and their scores, best first."""
    hw = (int(slice255.shape[0]), int(slice255.shape[1]))
    emb = model.embed(slice255)
    pts = point_grid(hw, opt.points_per_side)
    # Bound the decoder's output (B × 3 × H × W float32) to about 200 MB.
    batch = max(1, min(int(opt.points_per_batch), int(2e8 / (12 * hw[0] * hw[1]))))
    masks: list[np.ndarray] = []
    scores: list[float] = []
    thr = model.card.mask_threshold
    for start in range(0, len(pts), batch):
        logits, iou = model.predict(emb, pts[start : start + batch], hw)
        stab = stability_score(logits, thr, opt.stability_score_offset)
        good = (iou > opt.pred_iou_thresh) & (stab >= opt.stability_score_thresh)
        for b, k in zip(*np.nonzero(good), strict=True):
            m = logits[b, k] > thr
            if m.any():
                masks.append(m)
                scores.append(float(iou[b, k]))
    if not masks:
        return [], []
    keep = box_nms(np.stack([_box(m) for m in masks]), np.asarray(scores), opt.box_nms_thresh)
    return [masks[i] for i in keep], [scores[i] for i in keep]


def merge_cell_masks(
    masks: list[np.ndarray],
    slice255: np.ndarray,
    pixel_area_um2: float,
    opt: SamOptions,
) -> np.ndarray:
    """Union of the masks that look like cells rather than resin.

    A mask covering more than ``max_area_fraction`` of the slice or more than
    ``max_cell_area_um2`` is backdrop (the resin); its grey levels are the resin's (or, with no
    such mask, those of the pixels no mask covers, when they are at least 5 % of the slice). A
    cell-sized mask (at least ``min_cell_area_um2``) joins the foreground unless its mean grey
    level lies within ``resin_tolerance`` resin standard deviations of the resin's mean (a
    pocket of resin between cells).
    """
    hw = slice255.shape
    out = np.zeros(hw, bool)
    if not masks:
        return out
    areas = np.array([m.sum() for m in masks], float)
    big = (areas > opt.max_area_fraction * hw[0] * hw[1]) | (
        areas * pixel_area_um2 > opt.max_cell_area_um2
    )
    # The resin's grey level: from the backdrop-sized masks, else from what no mask covers
    # (SAM often leaves a featureless backdrop unsegmented).
    backdrop = np.zeros(hw, bool)
    for m, b in zip(masks, big, strict=True):
        if b:
            backdrop |= m
    if not backdrop.any():
        covered = np.zeros(hw, bool)
        for m in masks:
            covered |= m
        backdrop = ~covered if (~covered).mean() > 0.05 else backdrop
    resin = None
    if backdrop.any():
        vals = slice255[backdrop]
        resin = (float(vals.mean()), float(vals.std()) + 1e-6)
    for m, a, b in zip(masks, areas, big, strict=True):
        if b or a * pixel_area_um2 < opt.min_cell_area_um2:
            continue
        if resin is not None:
            if abs(float(slice255[m].mean()) - resin[0]) <= opt.resin_tolerance * resin[1]:
                continue
        out |= m
    return ndi.binary_fill_holes(out)


def interpolate_slices(keys: dict[int, np.ndarray], depth: int, voxel_yx: tuple[float, float]):
    """Fill a (depth, H, W) mask from masks at some slices by blending signed distances.

    Between two key slices the mask morphs linearly; beyond the first/last key slice the
    nearest key slice is repeated.
    """
    zs = sorted(keys)
    if not zs:
        raise VemcellError("No slices were given to interpolate between.")
    shape = (depth, *keys[zs[0]].shape)
    out = np.zeros(shape, bool)

    def sdt(m: np.ndarray) -> np.ndarray:
        inside = ndi.distance_transform_edt(m, sampling=voxel_yx)
        outside = ndi.distance_transform_edt(~m, sampling=voxel_yx)
        return inside - outside

    out[: zs[0] + 1] = keys[zs[0]]
    out[zs[-1] :] = keys[zs[-1]]
    hi_sdt = sdt(keys[zs[0]])
    for lo, hi in itertools.pairwise(zs):
        lo_sdt, hi_sdt = hi_sdt, sdt(keys[hi])  # two slices of distances in memory at a time
        out[hi] = keys[hi]
        for z in range(lo + 1, hi):
            w = (z - lo) / (hi - lo)
            out[z] = (1 - w) * lo_sdt + w * hi_sdt > 0
    return out


def grey_range(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """The volume's robust grey range (percentiles of a subsample), mapped to SAM's 0..255."""
    step = max(1, round((image.size / 4e6) ** (1 / 3)))
    sample = np.asarray(image[::step, ::step, ::step], np.float32)
    lo, hi = (float(v) for v in np.percentile(sample, [low, high]))
    if not np.isfinite([lo, hi]).all():
        raise VemcellError("The volume holds NaN or infinite values.")
    if hi <= lo:
        raise VemcellError("The volume is constant; there are no cells to find.")
    return lo, hi


def scale_grey(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Grey levels ``lo..hi`` to SAM's 0..255 (float32), clipped."""
    scaled = (a.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(scaled, 0, 1) * np.float32(255.0)


def to_sam_grey(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """The whole volume on SAM's 0..255 scale from its own robust percentiles (one scale for all
    slices, so a grey level means the same thing throughout)."""
    return scale_grey(np.asarray(image), *grey_range(image, low, high))


def sam_foreground(
    image: np.ndarray,
    voxel_size_nm: tuple[float, float, float],
    model_dir: str | os.PathLike,
    *,
    progress: Any = None,
    threads: int | None = None,
    model: SamOnnx | None = None,
    **options: Any,
) -> np.ndarray:
    """Cell mask of a (Z, Y, X) volume from SAM's automatic masks, slice by slice.

    ``options`` are :class:`SamOptions` fields (``points_per_side``, ``pred_iou_thresh``,
    ``stability_score_thresh``, ``slice_step``, ...).
    """

    try:
        opt = SamOptions(**options)
    except TypeError as exc:
        raise VemcellError(f"Unknown SAM option ({exc}).") from None
    if opt.slice_step < 1:
        raise VemcellError(f"slice_step must be 1 or more, not {opt.slice_step}.")
    img = np.asarray(image)
    if img.ndim != 3:
        raise VemcellError(f"SAM needs a 3D (Z, Y, X) volume, not {img.ndim}D.")
    sam = model or SamOnnx(model_dir, threads=threads)
    lo, hi = grey_range(img)
    _, vy, vx = (float(v) for v in voxel_size_nm)
    pixel_area_um2 = vy * vx / 1e6
    depth = img.shape[0]
    key_z = list(range(0, depth, opt.slice_step))
    if key_z[-1] != depth - 1:
        key_z.append(depth - 1)
    keys: dict[int, np.ndarray] = {}
    for i, z in enumerate(key_z):
        grey = scale_grey(img[z], lo, hi)
        masks, _ = automatic_masks(sam, grey, opt)
        keys[z] = merge_cell_masks(masks, grey, pixel_area_um2, opt)
        advance(progress, 0.9 * (i + 1) / len(key_z), f"SAM slice {z + 1}/{depth}")
    mask = interpolate_slices(keys, depth, (vy, vx))
    if depth >= 3:
        votes = mask.astype(np.uint8)
        votes = votes + np.roll(votes, 1, axis=0) + np.roll(votes, -1, axis=0)
        smooth = votes >= 2
        smooth[0], smooth[-1] = mask[0], mask[-1]
        mask = smooth
    return clean_mask(mask, voxel_size_nm, open_nm=0.0)
