"""Reproducible recipes for the shipped models: ``python -m vemcell_train.recipes RECIPE OUT``.

``cmerolae6`` trains the default 6-class model on synthetic *C. merolae* volumes from
:func:`vemcell.synth.generate` (training seeds 1000+, validation seeds 9000+; scoring uses other
seeds again), at 20 nm isotropic voxels, with the ``/255`` normalisation of the paper.

``plastid`` trains a background/plastid model on the 7 serial sections of ``plant_leaf_sem``
(40 × 10 × 10 nm): sections 0–4 train, 5–6 are held out for validation and scoring. It works at
40 nm in the plane (the sections' own thickness, so nothing is interpolated between sections),
where the U-Net's ~140-pixel receptive field spans ~5.6 µm, enough to tell chloroplasts from the
equally dark cell walls and junctions around them.

``vnc5`` trains the 5-class model (cytoplasm, membrane, glia / extracellular space,
mitochondrion, synapse) on the 14 labelled ssTEM sections of ``vnc_sstem`` (50 × 4.6 × 4.6 nm):
sections 0–9 train, section 10 picks the checkpoints and 11–13 are never seen before scoring. It
works at 9.2 nm in the plane (2× the data's pixel), where a 256² tile spans 2.4 µm of neuropil.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from vemcell.errors import VemcellError
from vemcell.synth import generator as synth
from vemcell_train.data import VolumePair, load_pair, prepare_pair
from vemcell_train.train import TrainConfig, train

CMEROLAE_VOXEL_NM = 20.0
CMEROLAE_NORMALISATION = {"method": "scale"}
WEIGHTS_LICENCE = "Weights: GPL-3.0-or-later, as vemcell."

PLASTID_VOXEL_NM = 40.0
PLASTID_NORMALISATION = {"method": "percentile", "low": 0.5, "high": 99.5}
PLASTID_DATA = "plant_leaf_sem"  # folder name under the data root (see data_dir)
PLASTID_LABELS = "chloroplast_instances.tif"  # instance ids; > 0 = plastid
PLASTID_TRAIN = (0, 5)  # sections [0, 5) train
PLASTID_HELD_OUT = (5, 7)  # sections [5, 7) validate and score
# The crop of the held-out sections that tests/ scores (Z, Y, X ranges at 10 nm in the plane).
PLASTID_TEST_CROP = ((5, 7), (1200, 2224), (1600, 2624))

VNC_VOXEL_NM = 9.2
VNC_NORMALISATION = {"method": "percentile", "low": 0.5, "high": 99.5}
VNC_DATA = "vnc_sstem"
VNC_LABELS = "labels.tif"
VNC_CLASSES = ("cytoplasm", "membrane", "glia-extracellular", "mitochondrion", "synapse")
VNC_COLORS = {
    "membrane": (0.85, 0.80, 0.65, 1.0),
    "glia-extracellular": (0.35, 0.55, 0.90, 0.6),
    "synapse": (0.90, 0.20, 0.55, 1.0),
}
VNC_TRAIN = (0, 10)  # sections [0, 10) train
VNC_CHECKPOINTS = (10, 11)  # section 10 picks the best checkpoint
VNC_HELD_OUT = (11, 14)  # sections [11, 14) are only scored

# each recipe's working pixel (nm) unless --voxel-nm says otherwise
VOXEL_NM = {"cmerolae6": CMEROLAE_VOXEL_NM, "plastid": PLASTID_VOXEL_NM, "vnc5": VNC_VOXEL_NM}


def _card(
    name: str,
    title: str,
    class_names,
    normalisation: dict,
    voxel_nm: float,
    data: str,
    background_class: int = 0,
    colors: dict | None = None,
    weights_licence: str = WEIGHTS_LICENCE,
):
    """Card fields known before training; colours are the synthetic model's where it has one."""
    colors = {**dict(zip(synth.CLASS_NAMES, synth.CLASS_COLORS, strict=True)), **(colors or {})}
    return {
        "name": name,
        "title": title,
        "classes": [{"name": n, "color": list(colors[n])} for n in class_names],
        "background_class": background_class,
        "normalisation": normalisation,
        "voxel_size_nm": voxel_nm,
        "tile": 256,
        "licence": f"{weights_licence} {data}",
    }


def cmerolae_card(voxel_nm: float = CMEROLAE_VOXEL_NM) -> dict:
    """The card fields of the synthetic C. merolae model known before training."""
    fine = voxel_nm != CMEROLAE_VOXEL_NM
    return _card(
        f"cmerolae6_{voxel_nm:g}nm" if fine else "cmerolae6",
        "C. merolae cell and organelles (6 classes, synthetic FIB-SEM training data"
        + (f", {voxel_nm:g} nm)" if fine else ")"),
        synth.CLASS_NAMES,
        CMEROLAE_NORMALISATION,
        voxel_nm,
        "Trained only on synthetic volumes from vemcell.synth.generator (no third-party data).",
    )


def plastid_card(voxel_nm: float = PLASTID_VOXEL_NM) -> dict:
    """The card fields of the plant-leaf plastid model known before training."""
    return _card(
        "plastid_leaf",
        "Plastids (chloroplasts) in plant leaf serial-section SEM (2 classes)",
        ("background", "plastid"),
        PLASTID_NORMALISATION,
        voxel_nm,
        "Training data: WSU PlantBio ML example data (MIT-licensed repository), "
        "plant_leaf_sem sections 0-4.",
    )


def vnc_card(voxel_nm: float = VNC_VOXEL_NM) -> dict:
    """The card fields of the VNC ssTEM model known before training.

    Membrane is its background class and the class cells are split along (neurites are
    cells); every other class (neurite cytoplasm, glia, mitochondria, synapses) gets meshes.
    """
    card = _card(
        "vnc5",
        "Neural tissue in serial-section TEM: cytoplasm, membrane, glia, mitochondrion, synapse",
        VNC_CLASSES,
        VNC_NORMALISATION,
        voxel_nm,
        "(Gerhard, Funke, Martel, Cardona, Fetter (2013), 'Segmented anisotropic ssTEM dataset "
        "of neural tissue', figshare); vemcell's code is GPL-3.0-or-later. Trained on vnc_sstem "
        "sections 0-9, section 10 picked the checkpoint.",
        background_class=1,
        colors=VNC_COLORS,
        weights_licence="Weights trained on CC-BY-NC-SA 3.0 data: use them for non-commercial "
        "research and cite the dataset",
    )
    card["cell_boundary_class"] = VNC_CLASSES.index("membrane")
    return card


def synthetic_volumes(
    seeds: list[int],
    shape: tuple[int, int, int],
    directions: int = 3,
    cache: Path | None = None,
    voxel_nm: float = CMEROLAE_VOXEL_NM,
) -> list[VolumePair]:
    """Generate and prepare synthetic volumes at ``voxel_nm``, cycling the cell-cycle stages.

    With ``cache``, generated volumes are kept there as ``.npz`` so a resumed run does not
    generate them again (generation is deterministic, so the cache only saves time).
    """
    out = []
    grid = "" if voxel_nm == CMEROLAE_VOXEL_NM else f"-{voxel_nm:g}nm"  # 20 nm keeps old keys
    version = synth.GENERATOR_VERSION.replace("/", "")
    for i, seed in enumerate(seeds):
        stages = [1 + (i + k) % 5 for k in range(5)]
        key = f"synth-{version}-{seed}-{'x'.join(map(str, shape))}{grid}"
        hit = cache / f"{key}-{''.join(map(str, stages))}.npz" if cache else None
        if hit is not None and hit.exists():
            with np.load(hit) as z:
                image, labels = z["image"], z["labels"]
        else:
            r = synth.generate(
                shape=shape, voxel_nm=voxel_nm, stages=stages, seed=seed, randomise=True
            )
            image, labels = r.image, r.labels
            if hit is not None:
                hit.parent.mkdir(parents=True, exist_ok=True)
                np.savez(hit, image=image, labels=labels)
        out.append(
            prepare_pair(
                image,
                labels,
                (voxel_nm,) * 3,
                normalisation=CMEROLAE_NORMALISATION,
                target_nm=voxel_nm,
                directions=directions,
                n_classes=len(synth.CLASS_NAMES),
                name=f"synth-seed{seed}",
            )
        )
    return out


def _train(
    recipe: str,
    card: dict,
    data: str,
    out_dir: Path,
    config: TrainConfig,
    train_vols: list[VolumePair],
    val_vols: list[VolumePair],
    resume: bool,
    init_from: Path | None,
) -> dict:
    """Record how the model was made in the card and train; returns the training history."""
    card["training"] = {"data": data, "recipe": f"python -m vemcell_train.recipes {recipe}"}
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


def cmerolae6(
    out_dir: Path,
    config: TrainConfig,
    n_train: int,
    shape,
    resume: bool,
    init_from: Path | None = None,
    cache: Path | None = None,
    voxel_nm: float = CMEROLAE_VOXEL_NM,
) -> dict:
    """Generate the data and train; returns the training history."""
    t0 = time.perf_counter()
    cache = cache or out_dir / "synth-cache"
    seeds = [1000 + i for i in range(n_train)]
    train_vols = synthetic_volumes(seeds, shape, cache=cache, voxel_nm=voxel_nm)
    val_vols = synthetic_volumes(
        [9000 + i for i in range(3)], shape, cache=cache, voxel_nm=voxel_nm
    )
    print(f"generated {n_train}+3 volumes in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    data = (
        f"{n_train} synthetic volumes {list(shape)} (Z, Y, X) at {voxel_nm:g} nm from "
        f"vemcell.synth.generator (seeds 1000–{999 + n_train}, randomised imaging, stages 1–5)"
    )
    card = cmerolae_card(voxel_nm)
    return _train("cmerolae6", card, data, out_dir, config, train_vols, val_vols, resume, init_from)


def dataset_dir(name: str) -> Path:
    """The folder of a real dataset: ``$VEMCELL_DATA/<name>`` (the recipes' ``--data`` overrides).

    Data never lives in the repository, and the code never guesses a path outside it.
    """
    root = os.environ.get("VEMCELL_DATA")
    if not root:
        raise VemcellError(
            f"Where is the {name} data? Give --data DIR or set VEMCELL_DATA to the folder "
            f"that holds {name}/."
        )
    folder = Path(root) / name
    if not folder.is_dir():
        raise VemcellError(f"{folder} is not a folder; check VEMCELL_DATA or give --data DIR.")
    return folder


def serial_sections(
    data_dir: Path, labels_name: str, *ranges: tuple[int, int], binary: bool = False
) -> list[tuple[np.ndarray, np.ndarray, tuple]]:
    """Sections ``z0:z1`` of ``image.tif`` and its label file, each file read once.

    Returns one (image, labels, voxel size) per range; ``binary`` turns instance ids into 0/1.
    """
    from vemcell.io.volumes import read_volume

    vol = read_volume(data_dir / "image.tif")
    image = vol.array()
    labels = read_volume(data_dir / labels_name, kind="labels").array()
    out = []
    for z0, z1 in ranges:
        lab = (labels[z0:z1] > 0).astype(np.uint8) if binary else labels[z0:z1]
        out.append(
            (
                np.ascontiguousarray(image[z0:z1]),
                np.ascontiguousarray(lab),
                tuple(vol.voxel_size_nm),
            )
        )
    return out


def sections_pair(
    sections, z: tuple[int, int], normalisation: dict, voxel_nm: float, n_classes: int, name: str
) -> VolumePair:
    """Serial sections prepared as inference prepares them (resampled in the plane, XY only)."""
    image, labels, voxel = sections
    return prepare_pair(
        image,
        labels,
        voxel,
        normalisation=normalisation,
        target_nm=voxel_nm,
        directions=1,
        n_classes=n_classes,
        name=f"{name}[{z[0]}:{z[1]}]",
    )


def extra_pairs(
    extra: list[tuple[Path, Path]] | None, normalisation: dict, voxel_nm: float, n_classes: int
) -> tuple[list[VolumePair], str]:
    """More serial-section training pairs (e.g. ``vemcell pseudolabel`` output) and their note.

    They are prepared as the recipe's own sections are (XY only, resampled in the plane); 255
    in their labels marks voxels left out of the loss.
    """
    pairs = [
        load_pair(
            image,
            labels,
            normalisation=normalisation,
            target_nm=voxel_nm,
            directions=1,
            n_classes=n_classes,
        )
        for image, labels in extra or []
    ]
    note = "".join(
        f"; plus {Path(i).name} with the labels {Path(lab).name}" for i, lab in extra or []
    )
    return pairs, note


def _xy_only(recipe: str, n_sections: int, config: TrainConfig) -> None:
    if config.directions != 1:
        raise VemcellError(
            f"{recipe}: {n_sections} thick serial sections only give XY slices (directions=1)."
        )


def vnc5(
    out_dir: Path,
    config: TrainConfig,
    resume: bool,
    init_from: Path | None = None,
    data_dir: Path | None = None,
    voxel_nm: float = VNC_VOXEL_NM,
    extra: list[tuple[Path, Path]] | None = None,
) -> dict:
    """Train the 5-class VNC model on sections 0–9, picking checkpoints on 10; 11–13 unseen.

    ``extra`` adds (image, labels) pairs, such as the pseudo-labelled ``unlabelled_stack2``.
    """
    _xy_only("vnc5", 14, config)
    train_s, ckpt_s = serial_sections(
        data_dir or dataset_dir(VNC_DATA), VNC_LABELS, VNC_TRAIN, VNC_CHECKPOINTS
    )
    n = len(VNC_CLASSES)
    more, note = extra_pairs(extra, VNC_NORMALISATION, voxel_nm, n)
    data = (
        f"vnc_sstem (Gerhard et al. 2013, Drosophila larval VNC) sections {VNC_TRAIN[0]}–"
        f"{VNC_TRAIN[1] - 1} of 14 (1024 × 1024 at 50 × 4.6 × 4.6 nm), resampled to "
        f"{voxel_nm:g} nm in the plane; section {VNC_CHECKPOINTS[0]} picked the checkpoint, "
        f"sections {VNC_HELD_OUT[0]}–{VNC_HELD_OUT[1] - 1} held out for scoring only{note}"
    )
    return _train(
        "vnc5",
        vnc_card(voxel_nm),
        data,
        out_dir,
        config,
        [sections_pair(train_s, VNC_TRAIN, VNC_NORMALISATION, voxel_nm, n, "vnc_sstem"), *more],
        [sections_pair(ckpt_s, VNC_CHECKPOINTS, VNC_NORMALISATION, voxel_nm, n, "vnc_sstem")],
        resume,
        init_from,
    )


def plastid(
    out_dir: Path,
    config: TrainConfig,
    resume: bool,
    init_from: Path | None = None,
    data_dir: Path | None = None,
    voxel_nm: float = PLASTID_VOXEL_NM,
    extra: list[tuple[Path, Path]] | None = None,
) -> dict:
    """Train the plastid model on sections 0–4, validating on 5–6; returns the history."""
    _xy_only("plastid", 7, config)
    more, note = extra_pairs(extra, PLASTID_NORMALISATION, voxel_nm, 2)
    data = (
        f"plant_leaf_sem (WSU PlantBio ML example data) sections {PLASTID_TRAIN[0]}–"
        f"{PLASTID_TRAIN[1] - 1} of 7 (2341 × 3293 at 40 × 10 × 10 nm, every chloroplast "
        f"instance > 0 = plastid), resampled to {voxel_nm:g} nm in the plane; sections "
        f"{PLASTID_HELD_OUT[0]}–{PLASTID_HELD_OUT[1] - 1} held out for validation{note}"
    )
    ranges = (PLASTID_TRAIN, PLASTID_HELD_OUT)
    train_vol, val_vol = (
        sections_pair(s, z, PLASTID_NORMALISATION, voxel_nm, 2, "plant_leaf_sem")
        for s, z in zip(
            serial_sections(
                data_dir or dataset_dir(PLASTID_DATA), PLASTID_LABELS, *ranges, binary=True
            ),
            ranges,
            strict=True,
        )
    )
    return _train(
        "plastid",
        plastid_card(voxel_nm),
        data,
        out_dir,
        config,
        [train_vol, *more],
        [val_vol],
        resume,
        init_from,
    )


def score_plastid(model: Path, out_dir: Path, data_dir: Path | None = None) -> dict:
    """Score a plastid model with ``vemcell evaluate``'s code on the held-out sections 5–6.

    Writes the held-out sections and the test crop (:data:`PLASTID_TEST_CROP`) as TIFF pairs
    into ``out_dir``, scores both with 1 direction (XY only: 7 sections are too few to slice
    along Z) and the default 3³ median, and writes ``validation.json`` (for ``vemcell export
    --validation``).
    """
    from vemcell.cards.card import load_card
    from vemcell.evaluation.score import evaluate
    from vemcell.io.volumes import write_tiff
    from vemcell.segmentation.segment import Segmenter

    card = load_card(model)
    seg = Segmenter(card, threads=2)
    out_dir.mkdir(parents=True, exist_ok=True)
    ((image, labels, voxel),) = serial_sections(
        data_dir or dataset_dir(PLASTID_DATA), PLASTID_LABELS, (0, 7), binary=True
    )
    crop_z, crop_y, crop_x = (slice(*r) for r in PLASTID_TEST_CROP)
    parts = {
        "held_out": (slice(*PLASTID_HELD_OUT), slice(None), slice(None)),
        "test_crop": (crop_z, crop_y, crop_x),
    }
    reports = {}
    for key, sl in parts.items():
        img, lab = out_dir / f"{key}_image.tif", out_dir / f"{key}_labels.tif"
        write_tiff(img, image[sl], voxel)
        write_tiff(lab, labels[sl], voxel)
        reports[key] = evaluate(card, img, lab, directions=1, segmenter=seg)
        print(f"{key}: {json.dumps(reports[key]['iou'])}", file=sys.stderr)
    z0, z1 = PLASTID_HELD_OUT
    summary = {
        "data": f"plant_leaf_sem sections {z0}–{z1 - 1} (never trained on, but the training "
        "picked its best checkpoints by IoU on them), "
        f"{image.shape[1]} × {image.shape[2]} at 40 × 10 × 10 nm; plastid = instance > 0",
        "method": "vemcell evaluate (vemcell.segment.segment, 1 direction, median 3), IoU per "
        "class against the labels at 10 nm; class probabilities interpolated from 40 nm to "
        "10 nm before the most probable class is taken" + _specks(card),
        "reproduce": "python -m vemcell_train.recipes score-plastid OUT "
        f"--model models/{model.name}",
        "iou": reports["held_out"]["iou"],
        "mean_iou": reports["held_out"]["mean_iou"],
        "boundary_offset_nm": reports["held_out"]["boundary_offset_nm"],
        "seconds": reports["held_out"]["seconds"],
        "test_crop": {
            "zyx": [list(r) for r in PLASTID_TEST_CROP],
            "iou": reports["test_crop"]["iou"],
            "note": "scored by tests/test_plastid_model.py (sections are cropped before "
            "normalisation, so these values differ slightly from the whole sections')",
        },
    }
    (out_dir / "validation.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _specks(card) -> str:
    """How the score treated specks, for a validation record's ``method``."""
    if not any(v > 0 for v in card.min_size_um3.values()):
        return ""
    sizes = ", ".join(f"{k} {v:g}" for k, v in card.min_size_um3.items() if v > 0)
    return f"; pieces under the card's min_size_um3 ({sizes} µm³) given to their surroundings"


def score_vnc5(model: Path, out_dir: Path, data_dir: Path | None = None) -> dict:
    """Score a VNC model with ``vemcell evaluate``'s code on sections 11–13 (never trained on).

    Writes them as a TIFF pair into ``out_dir``, scores with 1 direction and the default median,
    and writes ``validation.json`` (for ``vemcell export --validation``).
    """
    from vemcell.cards.card import load_card
    from vemcell.evaluation.score import evaluate
    from vemcell.io.volumes import write_tiff

    card = load_card(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    ((image, labels, voxel),) = serial_sections(
        data_dir or dataset_dir(VNC_DATA), VNC_LABELS, VNC_HELD_OUT
    )
    img, lab = out_dir / "held_out_image.tif", out_dir / "held_out_labels.tif"
    write_tiff(img, image, voxel)
    write_tiff(lab, labels, voxel)
    report = evaluate(card, img, lab, directions=1)
    print(f"held out: {json.dumps(report['iou'])}", file=sys.stderr)
    z0, z1 = VNC_HELD_OUT
    summary = {
        "data": f"vnc_sstem sections {z0}–{z1 - 1} (never used in training or to pick "
        "checkpoints), 1024 × 1024 at 50 × 4.6 × 4.6 nm",
        "method": "vemcell evaluate (vemcell.segment.segment, 1 direction, median 3), IoU per "
        f"class against the labels at 4.6 nm (the model works at {card.voxel_size_nm:g} nm; "
        "class probabilities are interpolated to 4.6 nm before the most probable class is taken)"
        + _specks(card),
        "reproduce": f"python -m vemcell_train.recipes score-vnc5 OUT --model models/{model.name}",
        "iou": report["iou"],
        "mean_iou": report["mean_iou"],
        "boundary_offset_nm": report["boundary_offset_nm"],
        "seconds": report["seconds"],
    }
    (out_dir / "validation.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def scoring_volume(
    stage: int, seed: int, shape, voxel_nm: float, whole_cells: bool
) -> synth.SynthResult:
    """One fresh test volume of a single cell (or dividing pair) at ``stage``.

    By default the cell may be cut by the volume border (``randomise``, as in training data);
    ``whole_cells`` keeps it whole, the paper's protocol (each cell cropped into its own cube),
    with the same randomised imaging the default draws for that seed.
    """
    if not whole_cells:
        return synth.generate(
            shape=shape, voxel_nm=voxel_nm, stages=[stage], seed=seed, randomise=True
        )
    r = synth.generate(
        shape=shape,
        voxel_nm=voxel_nm,
        stages=[stage],
        seed=seed,
        imaging=synth.randomised_imaging(seed),
    )
    if not all(c["complete"] for c in r.info["cells"]):
        raise VemcellError(
            f"A stage-{stage} cell does not fit whole in a volume of {list(shape)} voxels of "
            f"{voxel_nm:g} nm; give a larger --shape (144 144 144 at 20 nm holds every stage)."
        )
    return r


def score_cmerolae6(
    model: Path,
    out_dir: Path,
    shape,
    seed0: int = 7000,
    voxel_nm: float = CMEROLAE_VOXEL_NM,
    whole_cells: bool = False,
    precision: str = "auto",
) -> dict:
    """Score a model on fresh synthetic volumes, one per cell-cycle stage, 1 and 3 directions.

    Every volume is generated with a seed the training never used (see :func:`scoring_volume`),
    written as a TIFF pair and scored with ``vemcell evaluate``'s code (the user-facing
    segmentation). Writes the paper's Table 3 layout (``crossval.md/.csv/.png``) and
    ``validation.json`` into ``out_dir``.
    """
    from vemcell.cards.card import load_card
    from vemcell.evaluation.crossval import write_tables
    from vemcell.evaluation.score import evaluate
    from vemcell.io.volumes import write_tiff
    from vemcell.segmentation.segment import Segmenter

    card = load_card(model)
    seg = Segmenter(card, threads=2, precision=precision)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for stage in range(1, 6):
        r = scoring_volume(stage, seed0 + stage, shape, voxel_nm, whole_cells)
        img, lab = out_dir / f"stage{stage}_image.tif", out_dir / f"stage{stage}_labels.tif"
        write_tiff(img, r.image, r.voxel_size_nm)
        write_tiff(lab, r.labels, r.voxel_size_nm)
        for d in (1, 3):
            rep = evaluate(card, img, lab, directions=d, segmenter=seg, offsets=False)
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
        "data": f"5 fresh synthetic volumes {list(shape)} at {voxel_nm:g} nm, one per cell-cycle "
        f"stage, seeds {seed0 + 1}–{seed0 + 5} (never used in training), "
        + ("each cell whole" if whole_cells else "cells may be cut by the volume border"),
        "method": "vemcell evaluate (vemcell.segment.segment, median 3), IoU per class, "
        "mean over the five stages" + _specks(card),
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


#: Seeds of the INT8 calibration volumes: never used for training (0..) or scoring (7000..).
INT8_CALIBRATION_SEEDS = range(9100, 9106)


def quantise_cmerolae6(model: Path) -> Path:
    """INT8 weights for ``model`` beside it (``<name>_int8.onnx``) and the card's ``onnx_int8``.

    Calibrated on XY, XZ and YZ slices of six synthetic volumes (one per cell-cycle stage and
    one more) with seeds no training or scoring uses, normalised as the card says.
    """
    from vemcell.cards.card import load_card, write_card
    from vemcell.segmentation import preprocess
    from vemcell_train.onnx_export import quantise_int8

    card = load_card(model)
    slices = []
    for k, seed in enumerate(INT8_CALIBRATION_SEEDS):
        r = scoring_volume(k % 5 + 1, seed, (64, 160, 160), CMEROLAE_VOXEL_NM, False)
        img = preprocess.normalise(r.image, **card.normalisation)
        slices += [img[::16], img[:, ::40].transpose(1, 0, 2), img[:, :, ::40].transpose(2, 0, 1)]
    calib = np.concatenate([s.reshape(-1, *s.shape[-2:])[:, :64, :64] for s in slices])
    out = card.onnx_path.with_name(f"{card.onnx_path.stem}_int8.onnx")
    quantise_int8(card.onnx_path, out, calib.astype(np.float32))
    data = json.loads(card.path.read_text(encoding="utf-8"))
    data["onnx_int8"] = out.name
    data["int8"] = {
        "method": "onnxruntime static quantisation, QOperator, per-channel INT8 weights, UINT8 "
        "activations, MinMax calibration",
        "calibration": f"{len(calib)} slices (64x64 crops in XY, XZ and YZ) of six synthetic "
        f"volumes, seeds {INT8_CALIBRATION_SEEDS.start}-{INT8_CALIBRATION_SEEDS.stop - 1}",
        "reproduce": f"python -m vemcell_train.recipes int8-cmerolae6 OUT --model {model}",
    }
    write_card(data, card.path)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {card.path}", file=sys.stderr)
    return out


def score_cmerolae6_repeats(
    model: Path,
    out_dir: Path,
    shape,
    seed0: int,
    voxel_nm: float,
    repeats: int,
    whole_cells: bool = False,
    precision: str = "auto",
) -> dict:
    """:func:`score_cmerolae6` ``repeats`` times (seeds ``seed0``, ``seed0 + 100``, ...), each in
    ``out_dir/sSEED``, and the per-class means over all 5 × ``repeats`` volumes.

    One volume per stage is a small sample (a peroxisome's IoU runs from 0 to 0.77 across
    volumes); the means over 20 volumes are the numbers the card and the README quote.
    """
    if repeats < 1:
        raise VemcellError(f"--repeats must be at least 1, not {repeats}.")
    seeds = [seed0 + 100 * r for r in range(repeats)]
    runs = [
        score_cmerolae6(model, out_dir / f"s{s}", shape, s, voxel_nm, whole_cells, precision)
        for s in seeds
    ]
    means: dict = {}
    for key, d in (("iou_3_directions", 3), ("iou_1_direction", 1)):
        values: dict[str, list[float]] = {}
        for run in runs:
            for row in run["per_stage"]:
                if row["directions"] == d:
                    for name, v in row["iou"].items():
                        if v is not None:
                            values.setdefault(name, []).append(v)
        means[key] = {n: round(sum(v) / len(v), 4) for n, v in values.items()}
    summary = {
        **runs[0],
        "means": {
            "volumes": 5 * repeats,
            "seeds": ", ".join(f"{s + 1}–{s + 5}" for s in seeds),
            **means,
        },
    }
    (out_dir / "validation.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"means over {5 * repeats} volumes: {json.dumps(means['iou_3_directions'])}")
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command line of the recipes (``--set key=value`` overrides any TrainConfig field)."""
    p = argparse.ArgumentParser(prog="python -m vemcell_train.recipes")
    p.add_argument(
        "recipe",
        choices=[
            "cmerolae6",
            "score-cmerolae6",
            "int8-cmerolae6",
            "plastid",
            "score-plastid",
            "vnc5",
            "score-vnc5",
        ],
    )
    p.add_argument("out", type=Path, help="run directory (score: the directory for the tables)")
    p.add_argument("--model", type=Path, help="score-*: the ONNX model to score")
    p.add_argument(
        "--data",
        type=Path,
        help="plastid/vnc5: the plant_leaf_sem or vnc_sstem folder (default: that folder under "
        "$VEMCELL_DATA)",
    )
    p.add_argument("--volumes", type=int, default=16, help="number of training volumes")
    p.add_argument(
        "--voxel-nm",
        type=float,
        help="working pixel in nm (default: "
        + ", ".join(f"{k} {v:g}" for k, v in VOXEL_NM.items())
        + "); score-cmerolae6: the test volumes' voxel",
    )
    p.add_argument("--shape", type=int, nargs=3, default=(128, 192, 192))
    p.add_argument(
        "--seed0", type=int, default=7000, help="score-cmerolae6: stage k uses seed SEED0 + k"
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="score-cmerolae6: score this many sets of five volumes (seeds SEED0, SEED0 + 100, "
        "...) and report the means over all of them",
    )
    p.add_argument(
        "--whole-cells",
        action="store_true",
        help="score-cmerolae6: keep each test cell whole inside its volume (the paper's "
        "protocol: one cell per cube; give --shape 144 144 144); by default cells may be cut "
        "by the volume border",
    )
    p.add_argument("--resume", action="store_true")
    p.add_argument(
        "--init", type=Path, help="start from this checkpoint's weights (fine-tune, or widen)"
    )
    p.add_argument("--cache", type=Path, help="folder of cached synthetic volumes")
    p.add_argument(
        "--extra",
        nargs=2,
        type=Path,
        action="append",
        metavar=("IMAGE", "LABELS"),
        help="plastid/vnc5: one more training pair, e.g. vemcell pseudolabel output (repeatable)",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "int8"],
        default="auto",
        help="score-cmerolae6: the float or the INT8 weights (auto: INT8 where the card has them)",
    )
    args = p.parse_args(argv)
    serial = args.recipe.removeprefix("score-") in ("plastid", "vnc5")
    cfg = TrainConfig(directions=1) if serial else TrainConfig()
    data_dir = args.data
    types = {f.name: type(getattr(cfg, f.name)) for f in fields(cfg)}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in types:
            p.error(f"unknown setting {key}")
        setattr(cfg, key, json.loads(value) if types[key] is bool else types[key](value))
    t0 = time.perf_counter()
    if args.recipe.startswith("score-") and args.model is None:
        p.error(f"{args.recipe} needs --model")
    if args.extra and not serial:
        p.error("--extra adds serial-section pairs to the plastid and vnc5 recipes only")
    if args.recipe == "int8-cmerolae6":
        quantise_cmerolae6(args.model or Path("models/cmerolae6.onnx"))
        return 0
    voxel = args.voxel_nm or VOXEL_NM[args.recipe.removeprefix("score-")]
    if args.recipe == "score-cmerolae6":
        shape, whole = tuple(args.shape), args.whole_cells
        if args.repeats == 1:
            score_cmerolae6(args.model, args.out, shape, args.seed0, voxel, whole, args.precision)
        else:
            score_cmerolae6_repeats(
                args.model, args.out, shape, args.seed0, voxel, args.repeats, whole, args.precision
            )
        return 0
    if args.recipe == "score-plastid":
        score_plastid(args.model, args.out, data_dir)
        return 0
    if args.recipe == "score-vnc5":
        score_vnc5(args.model, args.out, data_dir)
        return 0
    if args.recipe == "plastid":
        plastid(args.out, cfg, args.resume, args.init, data_dir, voxel, args.extra)
    elif args.recipe == "vnc5":
        vnc5(args.out, cfg, args.resume, args.init, data_dir, voxel, args.extra)
    else:
        shape = tuple(args.shape)
        cmerolae6(args.out, cfg, args.volumes, shape, args.resume, args.init, args.cache, voxel)
    print(f"total {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VemcellError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
