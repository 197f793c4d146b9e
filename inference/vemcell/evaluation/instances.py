"""Scores for instance segmentations (cells): how well predicted ids match ground-truth ids.

* :func:`matched_f1` — detection F1: a predicted object counts as a true positive when it
  overlaps one ground-truth object with IoU above a threshold (0.5 makes the matching unique).
* :func:`adjusted_rand_error` — ``1 - ARI`` (Hubert & Arabie's chance-corrected Rand index) and
  :func:`adapted_rand_error` — the SNEMI3D/CREMI "adapted Rand error" (scikit-image), which
  ignores ground-truth background.
* :func:`voi` — variation of information split into over-segmentation (split) and
  under-segmentation (merge) conditional entropies (scikit-image), in bits.
* :func:`isbi2012_scores` — the ISBI 2012 challenge's final metrics: the foreground-restricted
  Rand score ``V_Rand`` and information-theoretic score ``V_Info`` after thinning the
  proposal's boundaries (Arganda-Carreras et al. 2015, Front. Neuroanat. 9:142, eqs. 3 and 6).

All scores are computed from one sparse contingency table, so they work on large 3D volumes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from vemcell.errors import VemcellError


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise VemcellError(
            f"Ground truth {gt.shape} and prediction {pred.shape} must have the same shape."
        )
    for name, a in (("Ground truth", gt), ("Prediction", pred)):
        if a.dtype.kind not in "uib":
            raise VemcellError(f"{name} must hold integer labels, not {a.dtype}.")
        if a.size and a.min() < 0:
            raise VemcellError(f"{name} holds negative labels.")
    return gt, pred


def contingency(gt: np.ndarray, pred: np.ndarray) -> sparse.csr_matrix:
    """Voxel counts ``n[i, j]`` of ground-truth label ``i`` overlapping predicted label ``j``."""
    gt, pred = _check_pair(gt, pred)
    g = gt.ravel().astype(np.int64)
    p = pred.ravel().astype(np.int64)
    shape = (int(g.max(initial=0)) + 1, int(p.max(initial=0)) + 1)
    return sparse.coo_matrix((np.ones(g.size, np.int64), (g, p)), shape=shape).tocsr()


def matched_f1(gt: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5) -> dict[str, Any]:
    """Detection precision, recall and F1 of objects matched one-to-one at IoU > threshold.

    Label 0 is background in both. Matching maximises total IoU (Hungarian) among pairs above
    the threshold; at 0.5 or more every match is unique anyway.

    Returns
    -------
    dict
        ``f1``, ``precision``, ``recall``, ``tp``, ``fp``, ``fn``, ``n_true``, ``n_pred``,
        ``mean_matched_iou`` and ``iou_threshold``.
    """
    from scipy.optimize import linear_sum_assignment

    table = contingency(gt, pred).tocoo()
    gt_sizes = np.bincount(np.asarray(gt).ravel().astype(np.int64))
    pred_sizes = np.bincount(np.asarray(pred).ravel().astype(np.int64))
    true_ids = np.flatnonzero(gt_sizes[1:]) + 1
    pred_ids = np.flatnonzero(pred_sizes[1:]) + 1
    keep = (table.row > 0) & (table.col > 0)
    rows, cols, inter = table.row[keep], table.col[keep], table.data[keep].astype(float)
    union = gt_sizes[rows] + pred_sizes[cols] - inter
    iou = inter / union
    good = iou > iou_threshold
    rows, cols, iou = rows[good], cols[good], iou[good]
    tp = 0
    matched_iou: list[float] = []
    if rows.size:
        r_idx = {v: i for i, v in enumerate(np.unique(rows))}
        c_idx = {v: i for i, v in enumerate(np.unique(cols))}
        cost = np.zeros((len(r_idx), len(c_idx)))
        for r, c, v in zip(rows, cols, iou, strict=True):
            cost[r_idx[r], c_idx[c]] = v
        ri, ci = linear_sum_assignment(cost, maximize=True)
        chosen = cost[ri, ci]
        matched_iou = [float(v) for v in chosen if v > iou_threshold]
        tp = len(matched_iou)
    n_true, n_pred = int(true_ids.size), int(pred_ids.size)
    fp, fn = n_pred - tp, n_true - tp
    precision = tp / n_pred if n_pred else (1.0 if n_true == 0 else 0.0)
    recall = tp / n_true if n_true else (1.0 if n_pred == 0 else 0.0)
    f1 = 2 * tp / (n_true + n_pred) if (n_true + n_pred) else 1.0
    return {
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n_true": n_true,
        "n_pred": n_pred,
        "mean_matched_iou": float(np.mean(matched_iou)) if matched_iou else 0.0,
        "iou_threshold": iou_threshold,
    }


def adjusted_rand_error(gt: np.ndarray, pred: np.ndarray) -> float:
    """``1 - ARI`` over all voxels (background is a label like any other); 0 is perfect."""
    table = contingency(gt, pred)
    n = float(table.sum())
    if n < 2:
        return 0.0

    def pairs(x: np.ndarray) -> float:
        x = np.asarray(x, dtype=float)
        return float(np.sum(x * (x - 1.0)) / 2.0)

    sum_ij = pairs(table.data)
    sum_a = pairs(np.asarray(table.sum(axis=1)).ravel())
    sum_b = pairs(np.asarray(table.sum(axis=0)).ravel())
    expected = sum_a * sum_b / (n * (n - 1.0) / 2.0)
    max_index = (sum_a + sum_b) / 2.0
    if max_index == expected:  # both labelings trivial (one cluster or all singletons)
        return 0.0
    ari = (sum_ij - expected) / (max_index - expected)
    return float(1.0 - ari)


def adapted_rand_error(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """SNEMI3D adapted Rand error (scikit-image), ground-truth background ignored."""
    from skimage.metrics import adapted_rand_error as _are

    gt, pred = _check_pair(gt, pred)
    err, prec, rec = _are(gt, pred, ignore_labels=(0,))
    return {"error": float(err), "precision": float(prec), "recall": float(rec)}


def voi(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Variation of information in bits: ``split`` = H(pred|gt), ``merge`` = H(gt|pred)."""
    from skimage.metrics import variation_of_information

    gt, pred = _check_pair(gt, pred)
    split, merge = (float(x) for x in variation_of_information(gt, pred))  # bits (log2)
    return {"split": split, "merge": merge, "total": split + merge}


def instance_scores(gt: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5) -> dict:
    """Every cell-instance score at once (what ``benchmarks/eval_cells.py`` reports)."""
    return {
        "matched": matched_f1(gt, pred, iou_threshold),
        "adjusted_rand_error": adjusted_rand_error(gt, pred),
        "adapted_rand": adapted_rand_error(gt, pred),
        "voi": voi(gt, pred),
    }


def _thin_boundaries(pred: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Grow proposal regions over their boundary pixels (label 0) until none is left there."""
    from skimage.segmentation import expand_labels

    if not np.any(pred[foreground] == 0) or not np.any(pred):
        return pred
    return expand_labels(pred, distance=max(pred.shape))


def isbi2012_scores(
    gt_regions: np.ndarray, pred: np.ndarray, *, thin: bool = True
) -> dict[str, dict[str, float]]:
    """ISBI 2012 foreground-restricted Rand and information-theoretic scores of one 2D image.

    Parameters
    ----------
    gt_regions : (Y, X) int
        Ground-truth regions (connected components of the cell interiors), 0 = membrane.
    pred : (Y, X) int
        Proposed regions; 0 = boundary, which is thinned away (grown over by the neighbouring
        regions) before scoring when ``thin``.

    Returns
    -------
    dict
        ``{"rand": {"score", "split", "merge"}, "info": {"score", "split", "merge"}}``; 1 is
        perfect. With ``p_ij`` the joint distribution over ground-truth foreground pixels,
        ``s`` the proposal and ``t`` the truth marginals: Rand split = Σp²/Σt², merge =
        Σp²/Σs², score = their harmonic mean; Info split = I/H(S), merge = I/H(T).
    """
    gt_regions, pred = _check_pair(gt_regions, pred)
    fg = gt_regions > 0
    if not fg.any():
        raise VemcellError("The ground truth has no foreground to score.")
    if thin:
        pred = _thin_boundaries(pred, fg)
    table = contingency(gt_regions[fg], pred[fg])
    return _isbi_from_table(table)


def _isbi_from_table(table: sparse.csr_matrix) -> dict[str, dict[str, float]]:
    n = float(table.sum())
    p = table.data.astype(float) / n
    t = np.asarray(table.sum(axis=1)).ravel().astype(float) / n  # truth marginals
    s = np.asarray(table.sum(axis=0)).ravel().astype(float) / n  # proposal marginals
    t, s = t[t > 0], s[s > 0]
    sp2, st2, ss2 = np.sum(p**2), np.sum(t**2), np.sum(s**2)
    rand = {
        "score": float(2 * sp2 / (st2 + ss2)),
        "split": float(sp2 / st2),
        "merge": float(sp2 / ss2),
    }
    h_st = -np.sum(p * np.log(p))
    h_t = -np.sum(t * np.log(t))
    h_s = -np.sum(s * np.log(s))
    mi = h_s + h_t - h_st

    def ratio(a: float, b: float) -> float:
        return float(a / b) if b > 0 else 1.0

    info = {
        "score": ratio(2 * mi, h_s + h_t),
        "split": ratio(mi, h_s),
        "merge": ratio(mi, h_t),
    }
    return {"rand": rand, "info": info}


def isbi2012_stack_scores(
    gt_membranes: np.ndarray, pred: np.ndarray, *, membrane_value: int = 1
) -> dict[str, Any]:
    """ISBI 2012 scores of a stack, slice by slice as the challenge scores 2D images.

    ``gt_membranes`` is the challenge's label stack (``membrane_value`` on membranes, anything
    else inside cells); ground-truth regions are the 4-connected interiors of each slice.
    Returns the mean over slices and the per-slice values.
    """
    from skimage.measure import label

    gt_membranes = np.asarray(gt_membranes)
    pred = np.asarray(pred)
    if gt_membranes.shape != pred.shape or gt_membranes.ndim != 3:
        raise VemcellError("Membrane ground truth and prediction must be matching 3D stacks.")
    per_slice = []
    for z in range(gt_membranes.shape[0]):
        regions = label(gt_membranes[z] != membrane_value, connectivity=1)
        per_slice.append(isbi2012_scores(regions, pred[z]))
    mean = {
        kind: {
            key: float(np.mean([s[kind][key] for s in per_slice]))
            for key in ("score", "split", "merge")
        }
        for kind in ("rand", "info")
    }
    return {"mean": mean, "per_slice": per_slice}
