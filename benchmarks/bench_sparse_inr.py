"""The per-volume implicit neural field (``vemcell_train.inr``) measured like ``vemcell
sparse-eval``: keep every K-th section of a full stack, restore the rest with ``nearest``,
``linear``, ``flow`` and ``inr`` in the same run, segment each restored stack with the same
model as the full stack, and score only the dropped sections (PSNR/SSIM by distance to the
nearest kept section, IoU per class against the labels and the full stack's segmentation,
3D piece counts, seconds) with the scoring helpers of :mod:`vemcell.sparse.evaluate`. The
field is fitted to the kept sections only, so no scored section is ever trained on.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_sparse_inr.py IMAGE.tif \
        --labels LABELS.tif --model cmerolae6 --factors 4 --json docs/sparse/inr_synth_seed1.json

Needs torch (the training extra). One thread throughout (torch, onnxruntime).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "training"))


def main(argv: list[str] | None = None) -> int:
    from vemcell.cards.card import resolve_model
    from vemcell.evaluation.metrics import apply_label_map, parse_label_map
    from vemcell.io.volumes import Volume, atomic_path, read_volume
    from vemcell.segmentation.segment import resolve_directions, segment
    from vemcell.sparse.evaluate import (
        FORMAT,
        _image_scores,
        _iou,
        _mean,
        _seg_scores,
        count_pieces,
        table,
    )
    from vemcell.sparse.image import reconstruct
    from vemcell_train.inr import INRSettings, reconstruct_inr

    d = INRSettings()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("volume")
    ap.add_argument("--labels")
    ap.add_argument("--label-map")
    ap.add_argument("--model", default="cmerolae6")
    ap.add_argument("--factors", type=int, nargs="+", default=[4])
    ap.add_argument("--classes", nargs="+", help="score only these classes")
    ap.add_argument("--directions", default="auto")
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--batch", type=int, default=d.batch)
    ap.add_argument("--json")
    ap.add_argument("--name")
    args = ap.parse_args(argv)

    card = resolve_model(args.model)
    vol = read_volume(args.volume)
    image = vol.array()
    labels = None
    if args.labels:
        lab = read_volume(args.labels, kind="labels").array()
        labels = apply_label_map(lab, parse_label_map(args.label_map), card.n_classes)
    voxel = tuple(float(v) for v in vol.voxel_size_nm)
    names = card.class_names
    scored = [names.index(c) for c in args.classes] if args.classes else list(range(len(names)))
    counted = [c for c in scored if c != card.background_class] or scored
    opts = {"precision": "fp32", "threads": 1}
    vol_full = Volume(data=image, voxel_size_nm=voxel)  # type: ignore[arg-type]
    directions = args.directions if args.directions == "auto" else int(args.directions)
    dirs = resolve_directions(directions, vol_full, card)
    data_range = (
        float(np.iinfo(image.dtype).max)
        if image.dtype.kind in "ui"
        else float(image.max() - image.min()) or 1.0
    )
    t0 = time.perf_counter()
    ref_seg = segment(vol_full, card, directions=dirs, **opts).labels
    report = {
        "name": args.name or Path(args.volume).parent.name,
        "volume": str(Path(args.volume).resolve()),
        "labels_path": str(Path(args.labels).resolve()) if args.labels else None,
        "label_map": args.label_map,
        "format": FORMAT,
        "benchmark": "bench_sparse_inr",
        "shape_zyx": list(image.shape),
        "dtype": str(image.dtype),
        "voxel_size_nm_zyx": list(voxel),
        "model": card.name,
        "classes": names,
        "scored_classes": [names[c] for c in scored],
        "counted_classes": [names[c] for c in counted],
        "directions": dirs,
        "precision": "fp32",
        "labels": labels is not None,
        "threads": 1,
        "full_stack_segment_seconds": round(time.perf_counter() - t0, 2),
        "factors": {},
    }
    n = image.shape[0]
    for k in args.factors:
        n_use = ((n - 1) // k) * k + 1
        full, kept = image[:n_use], image[:n_use:k]
        dropped = np.array([z % k != 0 for z in range(n_use)])
        ref = ref_seg[:n_use]
        truth = labels[:n_use] if labels is not None else None
        ref_counts = {"full_stack": count_pieces(ref, counted)}
        if truth is not None:
            ref_counts = {"labels": count_pieces(truth, counted), **ref_counts}
        entry: dict = {
            "sections_used": n_use,
            "kept_sections": int(kept.shape[0]),
            "dropped_sections": int(dropped.sum()),
        }
        if truth is not None:
            real = _iou(ref[dropped], truth[dropped], card, scored)
            entry["real_sections"] = {"iou_vs_labels": real, "mean_iou_vs_labels": _mean(real)}
        rows = []
        for m in ("nearest", "linear", "flow", "inr"):
            t0 = time.perf_counter()
            facts = None
            if m == "inr":
                settings = INRSettings(steps=args.steps, batch=args.batch)
                restored, facts = reconstruct_inr(kept, k, (voxel[0] * k, *voxel[1:]), settings)
            else:
                restored = reconstruct(kept, k, m)
            t_restore = time.perf_counter() - t0
            assert np.array_equal(restored[::k], kept)
            row: dict = {"route": "image", "method": m}
            row.update(_image_scores(full, restored, k, data_range))
            t0 = time.perf_counter()
            pred = segment(
                Volume(data=restored, voxel_size_nm=voxel), card, directions=dirs, **opts
            )
            t_seg = time.perf_counter() - t0
            row.update(
                _seg_scores(pred.labels, dropped, ref, truth, card, scored, counted, ref_counts)
            )
            row["seconds_restore"] = round(t_restore, 3)
            row["seconds_segment"] = round(t_seg, 2)
            if facts is not None:
                row["inr"] = facts
            rows.append(row)
            print(f"K={k} {m}: psnr {row['psnr']} ssim {row['ssim']} ({t_restore:.1f} s)")
        entry["rows"] = rows
        report["factors"][str(k)] = entry
    report["machine"] = {"cpus": os.cpu_count(), "threads": 1}
    print(table(report))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
