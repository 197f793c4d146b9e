"""Cell-separation accuracy: synthetic multi-cell volumes and the ISBI 2012 stack.

Part 1 — synthetic C. merolae volumes with exact cell ids (vemcell.synth: touching cells and
dividing daughters with their own ids). For every foreground provider that can run here, plus
the ground-truth foreground (which isolates the 3D watershed's own errors), it reports
matched-IoU F1 at 0.5, the adjusted Rand error (1 − ARI), the SNEMI3D adapted Rand error and
the variation of information split/merge (bits).

Part 2 — /work/shared/data/isbi2012_sstem (Cardona et al. 2010; ISBI 2012 challenge training
stack): the boundary-based variant, :func:`vemcell.cells.boundary_watershed` on a membrane
probability. Slices 0–11 are for training/tuning, 12–23 are scored with the challenge's
foreground-restricted Rand and information-theoretic scores (after border thinning). Two
membrane probabilities:

* ``unet`` — a vemcell_train attention U-Net (2 classes) trained here on slices 0–9
  (validation 10–11), when torch and vemcell_train are importable;
* ``classical`` — clearly not a learned model: the mean of the smoothed inverted intensity and a
  Sato ridge filter (membranes are dark ridges).

Watershed parameters (threshold, smoothing, seed depth) are chosen on slices 0–11 only (for the
U-Net on its validation slices 10–11, as its output on its own training slices is optimistic).

    .venv/bin/python benchmarks/eval_cells.py            # both parts, JSON to results/
    .venv/bin/python benchmarks/eval_cells.py --quick    # fewer volumes, no U-Net training
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from vemcell.cells import separate as cells
from vemcell.evaluation import instances as im

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "isbi2012_sstem"

_SMALL = dict(shape=(56, 128, 160), voxel_nm=40)
SYNTH_CASES = [
    # name, vemcell.synth.generate() keyword arguments
    ("six cells, touching", dict(_SMALL, cells=6, seed=1, stages=[1, 2, 3])),
    ("dividing pairs", dict(_SMALL, cells=4, seed=2, stages=[4, 5])),
    ("all stages", dict(_SMALL, cells=6, seed=3, stages=[1, 2, 3, 4, 5])),
    ("anisotropic 20x20x60 nm", dict(shape=(40, 224, 256), voxel_nm=20, z_step_nm=60, seed=4)),
    ("randomised imaging", dict(shape=(64, 160, 160), voxel_nm=32, seed=5, randomise=True)),
]


def touching_pairs(ids: np.ndarray) -> int:
    pairs = set()
    for ax in range(3):
        a = np.moveaxis(ids, ax, 0)
        x, y = a[:-1].ravel(), a[1:].ravel()
        k = (x > 0) & (y > 0) & (x != y)
        pairs |= {tuple(p) for p in np.sort(np.stack([x[k], y[k]], 1), 1).tolist()}
    return len(pairs)


def flat_scores(s: dict) -> dict:
    return {
        "f1@0.5": s["matched"]["f1"],
        "tp": s["matched"]["tp"],
        "fp": s["matched"]["fp"],
        "fn": s["matched"]["fn"],
        "matched_iou": s["matched"]["mean_matched_iou"],
        "adjusted_rand_error": s["adjusted_rand_error"],
        "adapted_rand_error": s["adapted_rand"]["error"],
        "voi_split": s["voi"]["split"],
        "voi_merge": s["voi"]["merge"],
    }


def unet_card_for_synth():
    """A shipped organelle model with a background class, if one is installed."""
    from vemcell.cards.card import resolve_model
    from vemcell.errors import VemcellError

    try:
        card = resolve_model(None)
    except VemcellError:
        return None
    return card if card.background_class is not None else None


def part_synth(cases) -> list[dict]:
    from vemcell.io.volumes import Volume
    from vemcell.synth import generator as synth

    card = unet_card_for_synth()
    rows = []
    for name, kw in cases:
        t0 = time.perf_counter()
        r = synth.generate(**kw)
        gen_s = time.perf_counter() - t0
        gt = r.cells
        fg_true = gt > 0
        runs = {"ground-truth foreground": fg_true}
        t0 = time.perf_counter()
        runs["threshold"], _ = cells.foreground(r.image, r.voxel_size_nm, provider="threshold")
        times = {"threshold": time.perf_counter() - t0}
        if card is not None:
            from vemcell.segmentation import segment

            t0 = time.perf_counter()
            vol = Volume(r.image, r.voxel_size_nm, "user")
            labels = segment.segment(vol, card).labels
            runs["unet"], _ = cells.foreground(
                r.image, r.voxel_size_nm, provider="unet", card=card, unet_labels=labels
            )
            times["unet"] = time.perf_counter() - t0
        for provider, mask in runs.items():
            t0 = time.perf_counter()
            ids = cells.separate_cells(mask, r.voxel_size_nm)
            ws_s = time.perf_counter() - t0
            row = {
                "volume": name,
                "shape": list(gt.shape),
                "voxel_nm": list(r.voxel_size_nm),
                "true_cells": int(len(np.unique(gt)) - 1),
                "touching_pairs": touching_pairs(gt),
                "foreground": provider,
                "foreground_iou": float((mask & fg_true).sum() / max(1, (mask | fg_true).sum())),
                "found_cells": int(ids.max()),
                **flat_scores(im.instance_scores(gt, ids)),
                "foreground_s": round(times.get(provider, 0.0), 2),
                "watershed_s": round(ws_s, 2),
                "generate_s": round(gen_s, 2),
            }
            rows.append(row)
            print(
                f"{name:26s} {provider:24s} cells {row['found_cells']:2d}/{row['true_cells']:2d} "
                f"F1 {row['f1@0.5']:.3f} ARE {row['adjusted_rand_error']:.3f} "
                f"VOI s/m {row['voi_split']:.3f}/{row['voi_merge']:.3f} "
                f"fg IoU {row['foreground_iou']:.3f}",
                flush=True,
            )
    if card is None:
        print("(no shipped organelle model with a background class: U-Net foreground skipped)")
    return rows


# ------------------------------------------------------------------------------------- ISBI


def classical_membrane_probability(image01: np.ndarray) -> np.ndarray:
    """NOT a learned model: mean of smoothed inverted intensity and a Sato dark-ridge filter."""
    from scipy import ndimage as ndi
    from skimage.filters import sato

    def norm(a: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(a, [1, 99])
        return np.clip((a - lo) / (hi - lo), 0, 1)

    inv = np.stack([ndi.gaussian_filter(1.0 - s, 1.0) for s in image01])
    ridge = np.stack([sato(s, sigmas=[1, 2], black_ridges=True) for s in image01])
    return (0.5 * norm(inv) + 0.5 * norm(ridge)).astype(np.float32)


def unet_membrane_probability(
    image01: np.ndarray,
    membranes: np.ndarray,
    voxel,
    out_dir: Path,
    epochs: int,
    steps: int,
    reuse: bool = False,
) -> tuple[np.ndarray, dict]:
    """Train a 2-class vemcell_train U-Net on slices 0–9 (validation 10–11); predict all."""
    import torch

    from vemcell_train.data import VolumePair
    from vemcell_train.onnx_export import model_from_checkpoint
    from vemcell_train.train import TrainConfig, load_checkpoint, train

    card = {
        "name": "isbi2012-membranes",
        "classes": [{"name": "interior"}, {"name": "membrane"}],
        "background_class": None,
        "normalisation": {"method": "scale"},
    }
    lab = membranes.astype(np.uint8)
    tr = VolumePair(image01[:10], lab[:10], "isbi-train", tuple(voxel))
    va = VolumePair(image01[10:12], lab[10:12], "isbi-val", tuple(voxel))
    cfg = TrainConfig(
        epochs=epochs, steps_per_epoch=steps, directions=1, val_slices=2, threads=2, seed=0
    )
    t0 = time.perf_counter()
    if reuse and (out_dir / "best.pt").exists():
        history = {"history": json.loads((out_dir / "history.json").read_text())}
    else:
        history = train(cfg, [tr], out_dir, card=card, val_volumes=[va])
    train_s = time.perf_counter() - t0
    ckpt = load_checkpoint(out_dir / "best.pt")
    history.setdefault("best_score", ckpt.get("best_score"))
    net = model_from_checkpoint(ckpt)
    probs = []
    with torch.no_grad():
        for s in image01:
            logits = net(torch.from_numpy(s[None, None].astype(np.float32)))
            probs.append(torch.softmax(logits, 1)[0, 1].numpy())
    info = {
        "train_slices": "0-9",
        "val_slices": "10-11",
        "epochs": epochs,
        "steps_per_epoch": steps,
        "train_s": None if reuse else round(train_s, 1),
        "epochs_run": len(history.get("history", [])),
        "best_val_mean_iou": history.get("best_score"),
        "val_iou_per_epoch": [h.get("val_iou") for h in history.get("history", [])],
    }
    return np.stack(probs).astype(np.float32), info


def tune_and_score(prob: np.ndarray, membranes: np.ndarray, voxel, tune: slice) -> dict:
    test = slice(12, 24)
    grid = list(itertools.product((0.0, 12.0), (0.4, 0.5, 0.6, 0.7, 0.8), (8.0, 16.0, 24.0, 32.0)))
    best = None
    for smooth, thr, h in grid:
        ids = cells.boundary_watershed(
            prob[tune], voxel, threshold=thr, smooth_nm=smooth, seed_h_nm=h
        )
        s = im.isbi2012_stack_scores(membranes[tune], ids)["mean"]
        if best is None or s["rand"]["score"] > best[0]:
            best = (s["rand"]["score"], {"smooth_nm": smooth, "threshold": thr, "seed_h_nm": h})
    params = best[1]
    t0 = time.perf_counter()
    ids = cells.boundary_watershed(prob[test], voxel, **params)
    ws_s = time.perf_counter() - t0
    scores = im.isbi2012_stack_scores(membranes[test], ids)
    return {
        "params": params,
        "tune_vrand": best[0],
        "test": scores["mean"],
        "watershed_s_per_slice": round(ws_s / 12, 3),
    }


def part_isbi(train_unet: bool, epochs: int, steps: int, work: Path, reuse: bool) -> dict:
    import tifffile

    if not DATA.exists():
        print(f"ISBI 2012 data not found at {DATA}: part 2 skipped")
        return {"skipped": f"{DATA} not found"}
    image01 = tifffile.imread(DATA / "image.tif").astype(np.float32) / 255.0
    membranes = tifffile.imread(DATA / "membranes.tif")
    voxel = (50.0, 4.0, 4.0)
    out: dict = {}
    t0 = time.perf_counter()
    prob = classical_membrane_probability(image01)
    res = tune_and_score(prob, membranes, voxel, slice(0, 12))
    res["tuned_on_slices"] = "0-11"
    res["probability_s"] = round(time.perf_counter() - t0, 1)
    res["membrane_probability"] = "classical (smoothed inverted intensity + Sato ridge filter)"
    out["classical"] = res
    print_isbi("classical", res)
    if train_unet:
        try:
            prob_u, info = unet_membrane_probability(
                image01, membranes, voxel, work, epochs, steps, reuse
            )
        except ImportError as exc:
            print(f"U-Net membrane model skipped: {exc}")
            out["unet"] = {"skipped": str(exc)}
        else:
            # slices 0-9 trained the network, so its output there is optimistic: tune the
            # watershed on the validation slices 10-11
            res = tune_and_score(prob_u, membranes, voxel, slice(10, 12))
            res["tuned_on_slices"] = "10-11"
            res["membrane_probability"] = "vemcell_train attention U-Net trained on slices 0-9"
            res["training"] = info
            out["unet"] = res
            print_isbi("unet", res)
    return out


def print_isbi(name: str, res: dict) -> None:
    t = res["test"]
    print(
        f"ISBI 2012 slices 12-23, {name:9s}: V_Rand {t['rand']['score']:.4f} "
        f"(split {t['rand']['split']:.4f}, merge {t['rand']['merge']:.4f})  "
        f"V_Info {t['info']['score']:.4f} (split {t['info']['split']:.4f}, "
        f"merge {t['info']['merge']:.4f})  params {res['params']}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two volumes, no U-Net training")
    ap.add_argument("--no-unet", action="store_true", help="skip training the membrane U-Net")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--skip-synth", action="store_true")
    ap.add_argument("--skip-isbi", action="store_true")
    ap.add_argument("--work", default="/tmp/vemcell-eval-cells", help="U-Net checkpoints")
    ap.add_argument(
        "--reuse-checkpoint",
        action="store_true",
        help="score the membrane U-Net already in --work (best.pt) instead of training again",
    )
    ap.add_argument("--json", default=str(HERE / "results" / "eval_cells.json"))
    args = ap.parse_args(argv)
    out = Path(args.json)
    # A part that is skipped keeps its previous results from the JSON file.
    result: dict = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    command = "benchmarks/eval_cells.py " + " ".join(argv or sys.argv[1:])
    if not args.skip_synth:
        result["synthetic"] = part_synth(SYNTH_CASES[:2] if args.quick else SYNTH_CASES)
        result["synthetic_command"] = command
    if not args.skip_isbi:
        result["isbi2012"] = part_isbi(
            not (args.quick or args.no_unet),
            args.epochs,
            args.steps,
            Path(args.work),
            args.reuse_checkpoint,
        )
        result["isbi2012_command"] = command
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
