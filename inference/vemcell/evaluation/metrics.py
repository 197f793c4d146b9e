"""Segmentation scores: per-class intersection over union (the paper's eq. 1) and how far a
predicted boundary sits from the labelled one.

Numpy and scipy only, so the runtime, the evaluation command, training and cross-validation all
score predictions with the same code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from vemcell.errors import VemcellError

# Label value for voxels nobody labelled (partial annotations, unsure pseudo-labels): training
# leaves them out of the loss and evaluation out of the score.
UNLABELLED = 255


def confusion_matrix(
    pred: np.ndarray, truth: np.ndarray, n_classes: int, ignore: int | None = UNLABELLED
) -> np.ndarray:
    """Counts ``cm[t, p]`` of voxels with true class ``t`` predicted as ``p`` (int64).

    Voxels whose truth equals ``ignore`` are left out; predictions and truths outside
    ``0..n_classes-1`` are an error.
    """
    p = np.asarray(pred)
    t = np.asarray(truth)
    if p.shape != t.shape:
        raise VemcellError(f"Prediction shape {p.shape} differs from the label shape {t.shape}.")
    p = p.reshape(-1).astype(np.int64)
    t = t.reshape(-1).astype(np.int64)
    if ignore is not None:
        keep = t != ignore
        if not keep.all():
            p, t = p[keep], t[keep]
    if t.size and (t.min() < 0 or t.max() >= n_classes):
        raise VemcellError(
            f"The labels hold value {int(t.max())}, outside the model's {n_classes} classes "
            f"(0..{n_classes - 1}); map them with --label-map."
        )
    if p.size and (p.min() < 0 or p.max() >= n_classes):
        raise VemcellError(f"The prediction holds class {int(p.max())} of only {n_classes}.")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def iou_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU = overlap / union from a confusion matrix; NaN where a class is in neither."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def iou_per_class(
    pred: np.ndarray, truth: np.ndarray, n_classes: int, ignore: int | None = UNLABELLED
) -> np.ndarray:
    """IoU of every class (NaN for a class absent from both prediction and truth)."""
    return iou_from_confusion(confusion_matrix(pred, truth, n_classes, ignore))


def _signed_distance(mask: np.ndarray, sampling: Sequence[float], half: float) -> np.ndarray:
    """Distance (nm) of each voxel centre from the faces of ``mask``: negative inside."""
    inside = ndimage.distance_transform_edt(mask, sampling=sampling)
    outside = ndimage.distance_transform_edt(~mask, sampling=sampling)
    return np.where(mask, half - inside, outside - half)


def _rim(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """The voxels of ``mask`` with a face on the outside (the volume's own faces do not count)."""
    return mask & ~ndimage.binary_erosion(mask, structure, border_value=1)


def boundary_offset(
    pred: np.ndarray,
    truth: np.ndarray,
    cls: int,
    voxel_nm: Sequence[float],
    *,
    reach: float = 5.0,
    ignore: int | None = UNLABELLED,
) -> float:
    """How much wider (nm; negative: narrower) the prediction draws class ``cls`` than the labels.

    The mean signed distance of each predicted boundary voxel from the labelled boundary and of
    each labelled boundary voxel from the predicted one (sign flipped), counting only boundary
    voxels within ``reach`` voxels of the other boundary, so whole missed or extra objects are
    left out and what remains is the systematic offset of the outline (a ball one voxel larger
    than the labelled one scores one voxel, give or take a third). A label convention (an
    organelle's membrane drawn inside or outside it) shows up here where IoU only falls. Where
    the Z step is over twice the in-plane pixel (serial sections) distances are measured within
    each section. NaN where the class has no boundary within reach in prediction or labels.
    """
    return offset_from_sums(
        boundary_offset_sums(pred, truth, cls, voxel_nm, reach=reach, ignore=ignore).sum(0)
    )


def offset_from_sums(sums: np.ndarray) -> float:
    """The offset (nm) from a (sum of signed distances, count) pair; NaN for no count."""
    return float(sums[0] / sums[1]) if sums[1] else float("nan")


def boundary_offset_sums(
    pred: np.ndarray,
    truth: np.ndarray,
    cls: int,
    voxel_nm: Sequence[float],
    *,
    reach: float = 5.0,
    ignore: int | None = UNLABELLED,
    slab_voxels: int = 1 << 24,
) -> np.ndarray:
    """:func:`boundary_offset`'s (sum of signed distances in nm, count) for each XY section of
    serial sections, or once for a volume measured in 3D: an (n, 2) array.

    A 3D volume is measured in slabs of ``slab_voxels`` (each with a margin of the reach), so
    the distance maps stay small however large the volume.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape or pred.ndim != 3:
        raise VemcellError(
            f"Prediction {pred.shape} and labels {truth.shape} must be one 3D shape."
        )
    vz, vy, vx = (float(v) for v in voxel_nm)
    planar = vz > 2 * min(vy, vx)
    pad = math.ceil(reach) + 2  # beyond it, nothing changes a distance that is counted
    if planar:
        blocks = [(p, t, (slice(None),) * 2) for p, t in zip(pred, truth, strict=True)]
        sampling, step = (vy, vx), min(vy, vx)
    else:
        n_z = pred.shape[0]
        depth = max(1, slab_voxels // max(1, pred.shape[1] * pred.shape[2]))
        blocks = []
        for z0 in range(0, n_z, depth):
            lo, hi = max(z0 - pad, 0), min(z0 + depth + pad, n_z)
            core = (slice(z0 - lo, z0 - lo + min(depth, n_z - z0)), slice(None), slice(None))
            blocks.append((pred[lo:hi], truth[lo:hi], core))
        sampling, step = (vz, vy, vx), min(vz, vy, vx)
    structure = ndimage.generate_binary_structure(len(sampling), 1)
    half, limit = step / 2, reach * step
    total = np.zeros((len(blocks), 2))
    for k, (p_block, t_block, core) in enumerate(blocks):
        p, t = p_block == cls, t_block == cls
        if not p.any() or not t.any():
            continue
        counted = np.zeros(p.shape, bool)
        counted[core] = True
        if ignore is not None:
            counted &= t_block != ignore
        # only the box around the class (with the margin) matters: far cheaper for organelles
        box = ndimage.find_objects((p | t).astype(np.uint8))[0]
        box = tuple(
            slice(max(b.start - pad, 0), min(b.stop + pad, n))
            for b, n in zip(box, p.shape, strict=True)
        )
        p, t, counted = p[box], t[box], counted[box]
        if p.all() or t.all():
            continue
        for a, b, sign in ((p, t, 1.0), (t, p, -1.0)):
            d = _signed_distance(b, sampling, half)[_rim(a, structure) & counted] + half
            d = d[np.abs(d) <= limit]
            total[k] += (sign * float(d.sum()), d.size)
    return total if planar else total.sum(0, keepdims=True)


def iou_report(iou: np.ndarray, class_names: list[str]) -> dict:
    """``{"iou": {name: value or None}, "mean_iou": mean over classes present}`` (JSON-ready)."""
    values = {
        name: (None if np.isnan(v) else round(float(v), 6))
        for name, v in zip(class_names, iou, strict=True)
    }
    present = [v for v in values.values() if v is not None]
    return {"iou": values, "mean_iou": round(float(np.mean(present)), 6) if present else None}


def parse_label_map(spec: str | None) -> dict[str, int] | None:
    """Parse ``"0=0,1=3,*=1"`` (label value = class index; ``*`` any other value)."""
    if not spec:
        return None
    out: dict[str, int] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not (key == "*" or key.lstrip("-").isdigit()) or not value.strip().isdigit():
            raise VemcellError(
                f"--label-map entry {part!r} is not VALUE=CLASS (e.g. '0=0,*=1' maps every "
                "nonzero label to class 1)."
            )
        out[key] = int(value)
    return out


def apply_label_map(
    labels: np.ndarray, mapping: dict[str, int] | None, n_classes: int
) -> np.ndarray:
    """Map raw label values to class indices; unlisted values keep their value (or ``*``'s).

    :data:`UNLABELLED` (255) stays, meaning "not labelled". A volume whose only other value is
    0 is refused: that is a 0/255 binary mask, whose 255 must be mapped to a class.
    """
    labels = np.asarray(labels)
    if mapping:
        values = np.unique(labels)
        lut_keys = values.astype(np.int64)
        mapped = np.array(
            [mapping.get(str(int(v)), mapping.get("*", int(v))) for v in lut_keys], np.int64
        )
        idx = np.searchsorted(lut_keys, labels.astype(np.int64))
        labels = mapped[idx]
    if not labels.size:
        return labels.astype(np.uint8)
    lo, hi = int(labels.min()), int(labels.max())
    if hi == UNLABELLED and n_classes <= UNLABELLED:
        rest = labels[labels != UNLABELLED]
        if not rest.size or int(rest.max()) == 0:
            raise VemcellError(
                "The labels hold only 0 and 255: 255 means 'not labelled', so if it marks a "
                "class give a --label-map such as '255=1'."
            )
        hi = int(rest.max())
    if hi >= n_classes or lo < 0:
        raise VemcellError(
            f"The labels hold value {hi if hi >= n_classes else lo}, but there are only "
            f"{n_classes} classes (0..{n_classes - 1}; 255 = not labelled); give a --label-map."
        )
    return labels.astype(np.uint8)
