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
    seeds: list[int], shape: tuple[int, int, int], directions: int = 3
) -> list[VolumePair]:
    """Generate and prepare synthetic volumes, cycling the five cell-cycle stages."""
    out = []
    for i, seed in enumerate(seeds):
        r = synth.generate(
            shape=shape,
            voxel_nm=CMEROLAE_VOXEL_NM,
            stages=[1 + (i + k) % 5 for k in range(5)],
            seed=seed,
            randomise=True,
        )
        out.append(
            prepare_pair(
                r.image,
                r.labels,
                r.voxel_size_nm,
                normalisation=CMEROLAE_NORMALISATION,
                target_nm=CMEROLAE_VOXEL_NM,
                directions=directions,
                n_classes=len(synth.CLASS_NAMES),
                name=f"synth-seed{seed}",
            )
        )
    return out


def cmerolae6(out_dir: Path, config: TrainConfig, n_train: int, shape, resume: bool) -> dict:
    """Generate the data and train; returns the training history."""
    t0 = time.perf_counter()
    train_vols = synthetic_volumes([1000 + i for i in range(n_train)], shape)
    val_vols = synthetic_volumes([9000 + i for i in range(3)], shape)
    print(f"generated {n_train}+3 volumes in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    card = cmerolae_card()
    card["training"] = {
        "data": (
            f"{n_train} synthetic volumes {list(shape)} (Z, Y, X) at 20 nm from vemcell.synth "
            f"(seeds 1000–{999 + n_train}, randomised imaging, stages 1–5)"
        ),
        "recipe": "python -m vemcell_train.recipes cmerolae6",
    }
    return train(config, train_vols, out_dir, card=card, val_volumes=val_vols, resume=resume)


def main(argv: list[str] | None = None) -> int:
    """Command line of the recipes (``--set key=value`` overrides any TrainConfig field)."""
    p = argparse.ArgumentParser(prog="python -m vemcell_train.recipes")
    p.add_argument("recipe", choices=["cmerolae6"])
    p.add_argument("out", type=Path)
    p.add_argument("--volumes", type=int, default=16, help="number of training volumes")
    p.add_argument("--shape", type=int, nargs=3, default=(128, 192, 192))
    p.add_argument("--resume", action="store_true")
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
    cmerolae6(args.out, cfg, args.volumes, tuple(args.shape), args.resume)
    print(f"total {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
