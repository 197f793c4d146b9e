"""Choosing each class's minimum piece size (speck removal) on labelled validation volumes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vemcell.cards.card import ModelCard
from vemcell.evaluation.metrics import UNLABELLED, iou_per_class, iou_report
from vemcell.segmentation.segment import min_size_voxels, remove_small_pieces

# candidate sizes in voxels of the model's grid (0 = keep every piece)
LADDER = (0, 10, 25, 50, 100, 200, 400, 800, 1600, 3200)


def default_sizes(card: ModelCard, voxel_nm: Sequence[float]) -> list[float]:
    """0 and 10–3200 voxels of the model's grid (or the data's finest voxel), in µm³ to 3 digits."""
    v = float(card.voxel_size_nm or min(voxel_nm))
    return [float(f"{n * v**3 * 1e-9:.3g}") for n in LADDER]


def tune_min_size(
    card: ModelCard,
    labelled: Sequence[tuple[np.ndarray, np.ndarray, Sequence[float]]],
    classes: Sequence[str],
    sizes_um3: Sequence[float],
    tolerance: float = 0.001,
) -> dict[str, Any]:
    """Mean IoU of each class over ``labelled`` (prediction, truth, voxel nm) per candidate size.

    Each class is tuned alone (the others keep every piece); ``chosen`` maps a class to the
    smallest size within ``tolerance`` of its best mean IoU, and ``iou_chosen`` scores all the
    chosen sizes applied together.
    """

    names = card.class_names

    def mean_iou(sizes: dict[str, float]) -> np.ndarray:
        rows = []
        for pred, truth, voxel in labelled:
            out, _ = remove_small_pieces(pred, min_size_voxels(card, sizes, voxel), card)
            rows.append(iou_per_class(out, truth, card.n_classes, ignore=UNLABELLED))
        with np.errstate(all="ignore"):
            return np.nanmean(np.array(rows, float), axis=0) if rows else np.array([])

    base = mean_iou({})
    table: dict[str, list[dict[str, float | None]]] = {}
    chosen: dict[str, float] = {}
    for name in classes:
        c = names.index(name)
        rows = []
        for um3 in sizes_um3:
            value = mean_iou({name: um3})[c] if um3 > 0 else base[c]
            rows.append({"um3": um3, "iou": None if np.isnan(value) else round(float(value), 6)})
        table[name] = rows
        scored = [r for r in rows if r["iou"] is not None]
        if not scored:
            continue
        best = max(r["iou"] for r in scored)  # type: ignore[type-var]
        pick = min(r["um3"] for r in scored if r["iou"] >= best - tolerance)  # type: ignore[operator]
        if pick > 0:
            chosen[name] = float(pick)  # type: ignore[arg-type]
    return {
        "model": card.name,
        "tolerance": tolerance,
        "iou_without": iou_report(base, names)["iou"],
        "table": table,
        "chosen": chosen,
        "iou_chosen": iou_report(mean_iou(chosen), names)["iou"],
        "export_flags": " ".join(f"--min-size {k}={v:g}" for k, v in chosen.items()),
    }
