"""Measuring what sparse sections lose: keep every K-th section of a full stack, restore the
rest, and score only the sections that were dropped.

For each factor K and method: PSNR and SSIM of the restored sections against the real ones
(overall and by distance to the nearest kept section), segmentation IoU per class on the
dropped sections against the labels and against the segmentation of the full stack (the same
segmenter throughout), organelle counts (connected pieces in 3D) and seconds. The "real
sections" row is the full stack's own segmentation scored on the same dropped sections: the
ceiling. ``nearest`` (copy the nearest kept section) is the baseline; the ``shape`` route
segments the kept sections and interpolates the shapes (no image, so no PSNR/SSIM).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from vemcell.cards.card import ModelCard
from vemcell.errors import VemcellError
from vemcell.evaluation.metrics import iou_per_class
from vemcell.io.volumes import Volume
from vemcell.progress import advance
from vemcell.sparse.core import IMAGE_METHODS, check_factor, check_sections
from vemcell.sparse.image import reconstruct
from vemcell.sparse.learned import model_used
from vemcell.sparse.shape import shape_interpolate

FORMAT = "vemcell-sparse-eval/1"


#: A restoration method supplied by the caller: (kept sections, factor, their voxel size in nm)
#: -> (the restored stack, facts for the report or None).
Restorer = Callable[[np.ndarray, int, tuple[float, float, float]], tuple[np.ndarray, Any]]


def _round(v: float | None, n: int = 4) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), n)


def _iou(pred: np.ndarray, truth: np.ndarray, card: ModelCard, scored: Sequence[int]) -> dict:
    iou = iou_per_class(pred, truth, card.n_classes)
    return {card.class_names[c]: _round(iou[c]) for c in scored}


def _mean(d: dict) -> float | None:
    vals = [v for v in d.values() if v is not None]
    return _round(float(np.mean(vals))) if vals else None


def count_pieces(labels: np.ndarray, classes: Sequence[int]) -> dict[int, int]:
    """Connected pieces (26-connected, 3D) of each class."""
    full = np.ones((3, 3, 3), bool)
    return {int(c): int(ndimage.label(labels == c, structure=full)[1]) for c in classes}


def _image_scores(full: np.ndarray, restored: np.ndarray, factor: int, data_range: float) -> dict:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    by: dict[int, list[tuple[float, float]]] = {}
    for z in range(full.shape[0]):
        j = z % factor
        if j == 0:
            continue
        a, b = full[z].astype(np.float64), restored[z].astype(np.float64)
        p = peak_signal_noise_ratio(a, b, data_range=data_range)
        s = structural_similarity(a, b, data_range=data_range)
        by.setdefault(min(j, factor - j), []).append((p, s))
    allv = np.array([v for vals in by.values() for v in vals])
    return {
        "psnr": _round(allv[:, 0].mean(), 3),
        "ssim": _round(allv[:, 1].mean(), 4),
        "by_distance": {
            str(d): {
                "sections": len(v),
                "psnr": _round(np.mean([x[0] for x in v]), 3),
                "ssim": _round(np.mean([x[1] for x in v]), 4),
            }
            for d, v in sorted(by.items())
        },
    }


def _seg_scores(
    pred: np.ndarray,
    dropped: np.ndarray,
    ref_seg: np.ndarray,
    truth: np.ndarray | None,
    card: ModelCard,
    scored: Sequence[int],
    counted: Sequence[int],
    ref_counts: dict,
) -> dict:
    out: dict[str, Any] = {}
    if truth is not None:
        out["iou_vs_labels"] = _iou(pred[dropped], truth[dropped], card, scored)
        out["mean_iou_vs_labels"] = _mean(out["iou_vs_labels"])
    out["iou_vs_full_stack"] = _iou(pred[dropped], ref_seg[dropped], card, scored)
    out["mean_iou_vs_full_stack"] = _mean(out["iou_vs_full_stack"])
    counts = count_pieces(pred, counted)
    out["counts"] = {card.class_names[c]: n for c, n in counts.items()}
    for key, ref in ref_counts.items():
        out[f"count_error_vs_{key}"] = {
            card.class_names[c]: (_round(abs(counts[c] - ref[c]) / ref[c], 3) if ref[c] else None)
            for c in counted
        }
    return out


def sparse_eval(
    image: np.ndarray,
    voxel_size_nm: Sequence[float],
    card: ModelCard,
    factors: Sequence[int] = (2, 4, 8),
    methods: Sequence[str] = ("linear", "flow"),
    labels: np.ndarray | None = None,
    *,
    shape_route: bool = True,
    directions: int | str = "auto",
    scored_classes: Sequence[str] | None = None,
    progress: Any = None,
    segment_options: dict[str, Any] | None = None,
    learned_models: dict[int, str] | None = None,
    restorers: dict[str, Restorer] | None = None,
) -> dict[str, Any]:
    """The sparse-section measurement of one full stack (see the module docstring).

    ``labels`` (class indices, 255 = not labelled) are optional; without them IoU is scored
    against the full stack's segmentation only. ``nearest`` is always measured as the baseline.
    ``scored_classes`` limits the IoU and count tables to some classes (e.g. ``membrane``).
    ``learned_models`` maps a factor to the restoration model of the ``learned`` method
    (default: the shipped one). ``restorers`` adds methods from outside the runtime
    (a trial in ``vemcell_train``): name → ``f(kept, factor, kept_voxel_nm)`` returning the
    restored stack and a dict of facts stored in its row (or None).
    """
    from vemcell.segmentation.segment import resolve_directions, segment

    image = np.asarray(image)
    if image.ndim != 3:
        raise VemcellError(f"sparse-eval needs a 3D stack, not shape {image.shape}.")
    factors = [check_factor(k) for k in factors]
    methods = list(dict.fromkeys(["nearest", *methods]))
    for m in methods:
        if m not in IMAGE_METHODS:
            raise VemcellError(f"Unknown method {m!r}; choose from {', '.join(IMAGE_METHODS)}.")
    if labels is not None and labels.shape != image.shape:
        raise VemcellError(
            f"The labels are {labels.shape} but the image is {image.shape}; they must match."
        )
    n = image.shape[0]
    for k in factors:
        if n < 2 * k + 1:
            raise VemcellError(
                f"Factor {k} needs at least {2 * k + 1} sections (three kept ones), the stack "
                f"has {n}."
            )
    check_sections(n)
    names = card.class_names
    if scored_classes:
        unknown = [c for c in scored_classes if c not in names]
        if unknown:
            raise VemcellError(
                f"Class {unknown[0]!r} is not one of model {card.name}'s ({', '.join(names)})."
            )
        scored = [names.index(c) for c in scored_classes]
    else:
        scored = list(range(card.n_classes))
    counted = [c for c in scored if c != card.background_class] or scored
    opts = dict(segment_options or {})
    voxel = tuple(float(v) for v in voxel_size_nm)
    vol_full = Volume(data=image, voxel_size_nm=voxel)  # type: ignore[arg-type]
    dirs = resolve_directions(directions, vol_full, card)
    data_range = (
        float(np.iinfo(image.dtype).max)
        if image.dtype.kind in "ui"
        else float(image.max() - image.min()) or 1.0
    )

    restorers = dict(restorers or {})
    steps = 1 + len(factors) * (len(methods) + len(restorers) + int(shape_route))
    done = 0

    def tick(msg: str) -> None:
        nonlocal done
        done += 1
        advance(progress, done / steps, msg)

    t0 = time.perf_counter()
    ref_result = segment(vol_full, card, directions=dirs, **opts)
    ref_seg = ref_result.labels
    seconds_full = time.perf_counter() - t0
    tick("segmented the full stack")
    report: dict[str, Any] = {
        "format": FORMAT,
        "shape_zyx": list(image.shape),
        "dtype": str(image.dtype),
        "voxel_size_nm_zyx": list(voxel),
        "model": card.name,
        "classes": names,
        "scored_classes": [names[c] for c in scored],
        "counted_classes": [names[c] for c in counted],
        "directions": dirs,
        "precision": getattr(ref_result, "precision", None),
        "shape_route_directions": 1,
        "labels": labels is not None,
        "full_stack_segment_seconds": round(seconds_full, 2),
        "factors": {},
    }
    for k in factors:
        n_use = ((n - 1) // k) * k + 1
        full = image[:n_use]
        kept = full[::k]
        dropped = np.array([z % k != 0 for z in range(n_use)])
        ref = ref_seg[:n_use]
        truth = labels[:n_use] if labels is not None else None
        ref_counts = {"full_stack": count_pieces(ref, counted)}
        if truth is not None:
            ref_counts = {"labels": count_pieces(truth, counted), **ref_counts}
        sparse_voxel = (voxel[0] * k, voxel[1], voxel[2])
        entry: dict[str, Any] = {
            "sections_used": n_use,
            "kept_sections": int(kept.shape[0]),
            "dropped_sections": int(dropped.sum()),
            "sparse_voxel_size_nm_zyx": list(sparse_voxel),
            "counts_full_stack": {names[c]: v for c, v in ref_counts["full_stack"].items()},
        }
        if truth is not None:
            entry["counts_labels"] = {names[c]: v for c, v in ref_counts["labels"].items()}
            real = _iou(ref[dropped], truth[dropped], card, scored)
            entry["real_sections"] = {"iou_vs_labels": real, "mean_iou_vs_labels": _mean(real)}
        rows = []
        for m in [*methods, *restorers]:
            t0 = time.perf_counter()
            facts = None
            if m in restorers:
                restored, facts = restorers[m](kept, k, sparse_voxel)
            else:
                restored = reconstruct(
                    kept, k, m, model=(learned_models or {}).get(k), voxel_size_nm=sparse_voxel
                )
            t_restore = time.perf_counter() - t0
            row: dict[str, Any] = {"route": "image", "method": m}
            if m == "learned":
                row["model"] = model_used((learned_models or {}).get(k), sparse_voxel, k)
            if facts is not None:
                row[m] = facts
            row.update(_image_scores(full, restored, k, data_range))
            t0 = time.perf_counter()
            vol = Volume(data=restored, voxel_size_nm=voxel)  # type: ignore[arg-type]
            pred = segment(vol, card, directions=dirs, **opts).labels
            t_seg = time.perf_counter() - t0
            row.update(_seg_scores(pred, dropped, ref, truth, card, scored, counted, ref_counts))
            row["seconds_restore"] = round(t_restore, 3)
            row["seconds_segment"] = round(t_seg, 2)
            rows.append(row)
            tick(f"factor {k}: {m}")
        if shape_route:
            t0 = time.perf_counter()
            vol_kept = Volume(data=kept, voxel_size_nm=sparse_voxel)
            kept_seg = segment(vol_kept, card, directions=1, **opts).labels
            t_seg = time.perf_counter() - t0
            for shape_method, images in (("signed-distance", None), ("signed-distance+flow", kept)):
                t0 = time.perf_counter()
                pred = shape_interpolate(kept_seg, k, card.n_classes, images=images)
                t_restore = time.perf_counter() - t0
                row = {"route": "shape", "method": shape_method}
                row.update(
                    _seg_scores(pred, dropped, ref, truth, card, scored, counted, ref_counts)
                )
                row["seconds_restore"] = round(t_restore, 3)
                row["seconds_segment"] = round(t_seg, 2)
                rows.append(row)
            tick(f"factor {k}: shape route")
        entry["rows"] = rows
        report["factors"][str(k)] = entry
    return report


def table(report: dict[str, Any]) -> str:
    """A Markdown table of a sparse-eval report: one row per factor and method."""
    key = "iou_vs_labels" if report.get("labels") else "iou_vs_full_stack"
    classes = report["scored_classes"]
    head = ["K", "route", "method", "PSNR", "SSIM", *classes, "mean", "count err", "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(v: Any, nd: int = 3) -> str:
        return "–" if v is None else f"{v:.{nd}f}"

    for k, entry in report["factors"].items():
        if "real_sections" in entry:
            real = entry["real_sections"]["iou_vs_labels"]
            cells = [k, "real sections", "–", "–", "–", *(fmt(real[c]) for c in classes)]
            cells += [fmt(entry["real_sections"]["mean_iou_vs_labels"]), "–", "–"]
            lines.append("| " + " | ".join(cells) + " |")
        for row in entry["rows"]:
            ious = row[key]
            errs = row.get("count_error_vs_full_stack", {})
            err_vals = [v for v in errs.values() if v is not None]
            cells = [
                k,
                row["route"],
                row["method"],
                fmt(row.get("psnr"), 2),
                fmt(row.get("ssim")),
                *(fmt(ious[c]) for c in classes),
                fmt(_mean(ious)),
                fmt(float(np.mean(err_vals)) if err_vals else None, 2),
                f"{row['seconds_restore']:.1f} + {row['seconds_segment']:.1f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(
    reports: dict[str, dict[str, Any]], path: str | Path, classes: dict | None = None
) -> Path:
    """A PNG of IoU on the dropped sections (relative to the real sections where labels exist)
    per dataset, factor and method. ``reports`` maps a dataset name to its report; ``classes``
    optionally picks, per dataset, the classes to average (default: all scored ones)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise VemcellError("The chart needs matplotlib (pip install matplotlib).") from None
    from vemcell.io.volumes import atomic_path

    groups, series = [], {}
    for name, rep in reports.items():
        key = "iou_vs_labels" if rep.get("labels") else "iou_vs_full_stack"
        pick = (classes or {}).get(name) or rep["scored_classes"]
        for k, entry in rep["factors"].items():
            groups.append(f"{name}\nK={k}")
            real = entry.get("real_sections", {}).get("iou_vs_labels")
            for row in entry["rows"]:
                label = row["method"] if row["route"] == "image" else f"shape: {row['method']}"
                vals = [row[key][c] for c in pick if row[key].get(c) is not None]
                if real:
                    vals = [
                        row[key][c] / real[c]
                        for c in pick
                        if row[key].get(c) is not None and real.get(c)
                    ]
                series.setdefault(label, {})[groups[-1]] = float(np.mean(vals)) if vals else np.nan
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 2.5), 4.2))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (label, vals) in enumerate(series.items()):
        ax.bar(
            x - 0.4 + (i + 0.5) * width,
            [vals.get(g, np.nan) for g in groups],
            width,
            label=label,
        )
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.set_xticks(x, groups, fontsize=8)
    ax.set_ylabel("IoU, dropped sections ÷ real sections")
    ax.set_ylim(
        0,
        max(
            1.1,
            0.05
            + max((v for d in series.values() for v in d.values() if np.isfinite(v)), default=1.0),
        ),
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Sections never imaged, restored: IoU kept (class mean)", fontsize=10)
    fig.tight_layout()
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out


def merge_reports(reports: Sequence[dict[str, Any]], name: str | None = None) -> dict[str, Any]:
    """Average several sparse-eval reports of the same model, factors and methods (e.g. one per
    synthetic volume) into one: every number in a row is the mean over the reports that have
    it (None where none has); the numbers of sections are summed."""
    if not reports:
        raise VemcellError("No reports to merge.")
    if len(reports) == 1:
        return dict(reports[0], **({"name": name} if name else {}))

    def mean_of(values: list[Any]) -> Any:
        present = [v for v in values if v is not None]
        if not present:
            return None
        if all(isinstance(v, dict) for v in present):
            keys = dict.fromkeys(k for v in present for k in v)
            return {k: mean_of([v.get(k) for v in present]) for k in keys}
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            return round(float(np.mean(present)), 4)
        return present[0]

    first = reports[0]
    out = {key: first[key] for key in first if key != "factors"}
    out["name"] = name or first.get("name")
    out["merged_from"] = [r.get("name") or r.get("volume") for r in reports]
    out["labels"] = all(r.get("labels") for r in reports)
    out["factors"] = {}
    for k in first["factors"]:
        entries = [r["factors"][k] for r in reports if k in r["factors"]]
        entry = {key: mean_of([e.get(key) for e in entries]) for key in entries[0] if key != "rows"}
        for key in ("sections_used", "kept_sections", "dropped_sections"):
            entry[key] = int(sum(e[key] for e in entries))
        rows = []
        for row in entries[0]["rows"]:
            same = [
                r
                for e in entries
                for r in e["rows"]
                if (r["route"], r["method"]) == (row["route"], row["method"])
            ]
            rows.append({key: mean_of([r.get(key) for r in same]) for key in row})
        entry["rows"] = rows
        out["factors"][k] = entry
    return out
