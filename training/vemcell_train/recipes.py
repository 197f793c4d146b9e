"""Reproducible recipes for the shipped models: ``python -m vemcell_train.recipes cmerolae6 OUT``.

``cmerolae6`` trains the default 6-class model on synthetic *C. merolae* volumes from
:func:`vemcell.synth.generate` (training seeds 1000+, validation seeds 9000+; scoring uses other
seeds again), at 20 nm isotropic voxels, with the ``/255`` normalisation of the paper.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from vemcell import synth
from vemcell_train.data import VolumePair, prepare_pair
from vemcell_train.train import TrainConfig, train

CMEROLAE_VOXEL_NM = 20.0
CMEROLAE_NORMALISATION = {"method": "scale"}


def cmerolae_card() -> dict:
    """The card fields of the synthetic C. merolae model known before training."""
    return {
        "name": "cmerolae6",
        "title": "C. merolae cell and organelles (6 classes, synthetic FIB-SEM training data)",
        "classes": [
            {"name": n, "color": list(c)}
            for n, c in zip(synth.CLASS_NAMES, synth.CLASS_COLORS, strict=True)
        ],
        "background_class": 0,
        "normalisation": CMEROLAE_NORMALISATION,
        "voxel_size_nm": CMEROLAE_VOXEL_NM,
        "tile": 256,
        "licence": (
            "Weights: GPL-3.0-or-later, as vemcell. Trained only on synthetic volumes from "
            "vemcell.synth (no third-party data)."
        ),
    }


def synthetic_volumes(
    seeds: list[int],
    shape: tuple[int, int, int],
    directions: int = 3,
    cache: Path | None = None,
) -> list[VolumePair]:
    """Generate and prepare synthetic volumes, cycling the five cell-cycle stages.

    With ``cache``, generated volumes are kept there as ``.npz`` so a resumed run does not
    generate them again (generation is deterministic, so the cache only saves time).
    """
    out = []
    for i, seed in enumerate(seeds):
        stages = [1 + (i + k) % 5 for k in range(5)]
        key = f"synth-{synth.GENERATOR_VERSION.replace('/', '')}-{seed}-{'x'.join(map(str, shape))}"
        hit = cache / f"{key}-{''.join(map(str, stages))}.npz" if cache else None
        if hit is not None and hit.exists():
            with np.load(hit) as z:
                image, labels = z["image"], z["labels"]
        else:
            r = synth.generate(
                shape=shape, voxel_nm=CMEROLAE_VOXEL_NM, stages=stages, seed=seed, randomise=True
            )
            image, labels = r.image, r.labels
            if hit is not None:
                hit.parent.mkdir(parents=True, exist_ok=True)
                np.savez(hit, image=image, labels=labels)
        out.append(
            prepare_pair(
                image,
                labels,
                (CMEROLAE_VOXEL_NM,) * 3,
                normalisation=CMEROLAE_NORMALISATION,
                target_nm=CMEROLAE_VOXEL_NM,
                directions=directions,
                n_classes=len(synth.CLASS_NAMES),
                name=f"synth-seed{seed}",
            )
        )
    return out


def cmerolae6(
    out_dir: Path,
    config: TrainConfig,
    n_train: int,
    shape,
    resume: bool,
    init_from: Path | None = None,
    cache: Path | None = None,
) -> dict:
    """Generate the data and train; returns the training history."""
    t0 = time.perf_counter()
    cache = cache or out_dir / "synth-cache"
    train_vols = synthetic_volumes([1000 + i for i in range(n_train)], shape, cache=cache)
    val_vols = synthetic_volumes([9000 + i for i in range(3)], shape, cache=cache)
    print(f"generated {n_train}+3 volumes in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    card = cmerolae_card()
    card["training"] = {
        "data": (
            f"{n_train} synthetic volumes {list(shape)} (Z, Y, X) at 20 nm from vemcell.synth "
            f"(seeds 1000–{999 + n_train}, randomised imaging, stages 1–5)"
        ),
        "recipe": "python -m vemcell_train.recipes cmerolae6",
    }
    if init_from is not None:
        card["training"]["initialised_from"] = str(init_from.name)
    return train(
        config,
        train_vols,
        out_dir,
        card=card,
        val_volumes=val_vols,
        resume=resume,
        init_from=init_from,
    )


def score_cmerolae6(model: Path, out_dir: Path, shape, seed0: int = 7000) -> dict:
    """Score a model on fresh synthetic volumes, one per cell-cycle stage, 1 and 3 directions.

    Every volume is generated with a seed the training never used, written as a TIFF pair and
    scored with ``vemcell evaluate``'s code (the user-facing segmentation). Writes the paper's
    Table 3 layout (``crossval.md/.csv/.png``) and ``validation.json`` into ``out_dir``.
    """
    from vemcell.commands.crossval import write_tables
    from vemcell.commands.evaluate import evaluate
    from vemcell.io import write_tiff
    from vemcell.modelcard import load_card
    from vemcell.segment import Segmenter

    card = load_card(model)
    seg = Segmenter(card, threads=2)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for stage in range(1, 6):
        r = synth.generate(
            shape=shape,
            voxel_nm=CMEROLAE_VOXEL_NM,
            stages=[stage],
            seed=seed0 + stage,
            randomise=True,
        )
        img, lab = out_dir / f"stage{stage}_image.tif", out_dir / f"stage{stage}_labels.tif"
        write_tiff(img, r.image, r.voxel_size_nm)
        write_tiff(lab, r.labels, r.voxel_size_nm)
        for d in (1, 3):
            rep = evaluate(card, img, lab, directions=d, segmenter=seg)
            rep.update({"stage": f"stage {stage}", "seed": seed0 + stage})
            results.append(rep)
            print(f"stage {stage} {d} dir: {json.dumps(rep['iou'])}", file=sys.stderr)
    write_tables(results, card.class_names, out_dir)
    means = {}
    for d in (1, 3):
        rows = [r for r in results if r["directions"] == d]
        means[d] = {}
        for c in card.class_names:
            vals = [r["iou"][c] for r in rows if r["iou"][c] is not None]
            means[d][c] = round(sum(vals) / len(vals), 4) if vals else None
    present = [v for v in means[3].values() if v is not None]
    summary: dict = {
        "data": f"5 fresh synthetic volumes {list(shape)} at 20 nm, one per cell-cycle stage, "
        f"seeds {seed0 + 1}–{seed0 + 5} (never used in training)",
        "method": "vemcell evaluate (vemcell.segment.segment, median 3), IoU per class, "
        "mean over the five stages",
        "iou": means[3],
        "mean_iou": round(sum(present) / len(present), 4),
        "iou_1_direction": means[1],
        "per_stage": [
            {k: r[k] for k in ("stage", "directions", "iou", "mean_iou", "seconds")}
            for r in results
        ],
    }
    (out_dir / "validation.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command line of the recipes (``--set key=value`` overrides any TrainConfig field)."""
    p = argparse.ArgumentParser(prog="python -m vemcell_train.recipes")
    p.add_argument("recipe", choices=["cmerolae6", "score-cmerolae6"])
    p.add_argument("out", type=Path, help="run directory (score: the directory for the tables)")
    p.add_argument("--model", type=Path, help="score-cmerolae6: the ONNX model to score")
    p.add_argument("--volumes", type=int, default=16, help="number of training volumes")
    p.add_argument("--shape", type=int, nargs=3, default=(128, 192, 192))
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init", type=Path, help="start from this checkpoint's weights (fine-tune)")
    p.add_argument("--cache", type=Path, help="folder of cached synthetic volumes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    cfg = TrainConfig()
    types = {f.name: type(getattr(cfg, f.name)) for f in fields(cfg)}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in types:
            p.error(f"unknown setting {key}")
        setattr(cfg, key, json.loads(value) if types[key] is bool else types[key](value))
    t0 = time.perf_counter()
    if args.recipe == "score-cmerolae6":
        if args.model is None:
            p.error("score-cmerolae6 needs --model")
        score_cmerolae6(args.model, args.out, tuple(args.shape))
        return 0
    cmerolae6(args.out, cfg, args.volumes, tuple(args.shape), args.resume, args.init, args.cache)
    print(f"total {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
