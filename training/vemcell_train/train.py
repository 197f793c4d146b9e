"""The training loop: AdamW, exponential learning-rate decay, checkpoints, resume, fixed seeds.

Every epoch reseeds its random streams from ``(seed, epoch)``, so a run resumed from a checkpoint
continues exactly as the uninterrupted run would have, and the same seed gives the same run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vemcell.errors import VemcellError
from vemcell.evaluation.metrics import confusion_matrix, iou_from_confusion
from vemcell.io.volumes import atomic_path
from vemcell.progress import Progress
from vemcell.segmentation.segment import direction_slices
from vemcell_train.data import IGNORE, Augment, SliceSampler, VolumePair, with_channels
from vemcell_train.losses import TverskyLoss, distillation_loss
from vemcell_train.model import add_context_into, build_model, count_parameters, widen_into

CHECKPOINT_FORMAT = "vemcell-checkpoint/1"


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint).

    The defaults are the recipe measured on a 2-core CPU: a 16-channel-wide network on 128²
    tiles, Tversky loss with alpha 0.4 / beta 0.6, AdamW at 2e-3 decaying ×0.95 per epoch. The
    paper's settings are ``base=64, lr=1e-5, alpha=beta=0.5`` (Tversky reduces to Dice).
    """

    epochs: int = 16
    steps_per_epoch: int = 50
    batch_size: int = 8
    tile: int = 128
    base: int = 16
    depth: int = 4
    dropout: float = 0.1
    lr: float = 2e-3
    lr_decay: float = 0.95
    weight_decay: float = 1e-4
    alpha: float = 0.4
    beta: float = 0.6
    gamma: float = 1.0
    ce_weight: float = 0.0
    directions: int = 3
    balance: float = 0.5
    augment: bool = True
    seed: int = 0
    threads: int = 2
    val_slices: int = 12
    # comma-separated per-class weights ("" = none): odds of each class for the balanced crops,
    # and weights of the cross-entropy term
    class_draw: str = ""
    ce_class_weights: str = ""
    # neighbouring slices on each side fed with every slice as extra input channels (2.5D)
    context: int = 0
    # knowledge distillation: a vemcell checkpoint of a trained teacher ("" = none; a shipped
    # ONNX model becomes one with vemcell_train.onnx_weights), the weight of the distillation
    # term added to the loss, and its softening temperature
    teacher: str = ""
    kd_weight: float = 1.0
    kd_temperature: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)


def parse_class_weights(text: str, n_classes: int, what: str) -> list[float] | None:
    """Per-class weights from ``"1,1,2"`` ("" = None)."""
    if not text.strip():
        return None
    try:
        w = [float(v) for v in text.split(",")]
    except ValueError:
        raise VemcellError(f"{what}: '{text}' is not a comma-separated list of numbers.") from None
    if len(w) != n_classes or min(w) < 0:
        raise VemcellError(f"{what} needs {n_classes} non-negative weights, got '{text}'.")
    return w


def _rng_for(seed: int, epoch: int) -> tuple[np.random.Generator, torch.Generator]:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return np.random.default_rng([seed, epoch]), gen


def _val_planes(volumes: list[VolumePair], n: int, directions: int) -> list[tuple[int, int, int]]:
    """Fixed (volume, axis, index) slices for validation, evenly spread over each volume."""
    out = []
    axes = (0,) if directions == 1 else (0, 1, 2)
    for vi, v in enumerate(volumes):
        use = [a for a in axes if a == 0 or v.labels.shape[0] >= 16]
        per = max(1, n // len(use))
        for a in use:
            size = v.labels.shape[a]
            for i in dict.fromkeys(round(i) for i in np.linspace(0, size - 1, per + 2)[1:-1]):
                out.append((vi, a, i))
    return out


def _pad_to(x: np.ndarray, d: int) -> np.ndarray:
    h, w = x.shape
    return np.pad(x, ((0, -h % d), (0, -w % d)), mode="reflect" if min(h, w) > d else "edge")


def plane_input(
    image: np.ndarray, axis: int, index: int, in_channels: int, divisor: int
) -> torch.Tensor:
    """One whole slice as a network input (1, K, H', W'), padded to the divisor; a network
    with neighbouring-slice context gets the slice's neighbours as inference cuts them."""
    stack = direction_slices(image, axis, index, index + 1, (in_channels - 1) // 2)
    stack = stack.reshape(-1, *stack.shape[-2:])  # (K, H, W); K = 1 without context
    return torch.from_numpy(np.stack([_pad_to(c, divisor) for c in stack]))[None]


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    volumes: list[VolumePair],
    planes: list[tuple[int, int, int]],
    n_classes: int,
) -> np.ndarray:
    """Per-class IoU of whole validation slices (one network pass per slice, no tiling)."""
    model.eval()
    cm = np.zeros((n_classes, n_classes), np.int64)
    d = model.divisor
    for vi, axis, idx in planes:
        v = volumes[vi]
        lab = v.labels[(slice(None),) * axis + (idx,)]
        x = plane_input(v.image, axis, idx, model.in_channels, d)
        pred = model(x).argmax(1)[0, : lab.shape[0], : lab.shape[1]].numpy()
        cm += confusion_matrix(pred, lab, n_classes, ignore=IGNORE)
    return iou_from_confusion(cm)


def _save(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`train`, with a clear error for anything else."""
    p = Path(path)
    if not p.is_file():
        raise VemcellError(f"Checkpoint '{p}' does not exist.")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise VemcellError(f"'{p}' is not a readable vemcell checkpoint ({exc}).") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise VemcellError(f"'{p}' is not a vemcell checkpoint (written by 'vemcell train').")
    return ckpt


def train(
    config: TrainConfig,
    train_volumes: list[VolumePair],
    out_dir: str | os.PathLike,
    *,
    card: dict[str, Any],
    val_volumes: list[VolumePair] | None = None,
    resume: bool = False,
    init_from: str | os.PathLike | None = None,
    progress: Progress | None = None,
    log=None,
) -> dict:
    """Train a network and write ``last.pt``, ``best.pt`` and ``history.json`` into ``out_dir``.

    Parameters
    ----------
    config : TrainConfig
    train_volumes, val_volumes : list of VolumePair
        Prepared (normalised, resampled) volumes; validation picks the best checkpoint.
    card : dict
        The model-card fields known at training time (name, classes, normalisation, voxel size,
        licence...), stored in the checkpoint so ``vemcell export`` can write the card.
    resume : bool
        Continue from ``out_dir/last.pt`` (same configuration required).
    init_from : path, optional
        Start from the weights of another checkpoint (fine-tuning; same architecture and
        classes), with a fresh optimiser and learning-rate schedule.

    Returns
    -------
    dict
        The history: one record per epoch (loss, learning rate, validation IoU, seconds).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    torch.set_num_threads(max(1, int(config.threads)))
    n_classes = len(card["classes"])
    arch = {
        "n_classes": n_classes,
        "base": config.base,
        "depth": config.depth,
        "dropout": config.dropout,
        "in_channels": 2 * config.context + 1,
    }
    if config.context < 0:
        raise VemcellError(f"context must be 0 or more slices, got {config.context}.")
    if config.tile % (2**config.depth):
        raise VemcellError(f"--tile {config.tile} must be a multiple of {2**config.depth}.")
    torch.manual_seed(config.seed)
    model = build_model(arch)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=config.lr_decay)
    loss_fn = TverskyLoss(
        config.alpha,
        config.beta,
        config.gamma,
        ce_weight=config.ce_weight,
        ignore_index=IGNORE,
        ce_class_weights=parse_class_weights(
            config.ce_class_weights, n_classes, "ce_class_weights"
        ),
    )
    teacher = _load_teacher(config.teacher, arch) if config.teacher else None
    if teacher is not None:
        log(
            f"distilling from {config.teacher} ({_n_weights(teacher) / 1e6:.2f} M "
            f"parameters, weight {config.kd_weight:g}, temperature {config.kd_temperature:g})"
        )
    history: list[dict] = []
    start_epoch, best = 0, -1.0
    last_path = out / "last.pt"
    if init_from is not None and not (resume and last_path.exists()):
        src = load_checkpoint(init_from)
        if src["arch"] == arch:
            model.load_state_dict(src["model"])
            log(f"starting from the weights of {init_from}")
        elif (grow := _grow(arch, src["arch"])) is not None:
            copy_into, note = grow
            smaller = build_model(src["arch"])
            smaller.load_state_dict(src["model"])
            copy_into(model, smaller)
            log(f"starting from the weights of {init_from}, {note}")
        else:
            raise VemcellError(
                f"Cannot start from {init_from}: its network ({src['arch']}) differs from this "
                f"one ({arch}) in more than a larger width or added slice context."
            )
    if resume:
        if not last_path.exists():
            raise VemcellError(f"Nothing to resume: {last_path} does not exist.")
        ckpt = load_checkpoint(last_path)
        defaults = asdict(TrainConfig())  # settings added since the checkpoint was written
        old = {k: v for k, v in ckpt["config"].items() if k not in ("epochs", "threads")}
        old = {k: old.get(k, defaults[k]) for k in defaults if k not in ("epochs", "threads")}
        new = {k: v for k, v in asdict(config).items() if k not in ("epochs", "threads")}
        if old != new:
            diff = sorted(k for k in new if old.get(k) != new[k])
            raise VemcellError(
                f"Cannot resume {last_path}: it was trained with different settings "
                f"({', '.join(diff)})."
            )
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start_epoch, best, history = ckpt["epoch"], ckpt["best_score"], ckpt["history"]
        log(f"resuming {last_path} after epoch {start_epoch}")
    crop = round(config.tile * 1.5 / 16) * 16 if config.augment else config.tile
    sampler = SliceSampler(
        train_volumes,
        crop,
        config.directions,
        config.balance,
        n_classes,
        seed=config.seed,
        class_weights=parse_class_weights(config.class_draw, n_classes, "class_draw"),
        context=config.context,
    )
    augment = Augment() if config.augment else None
    planes = _val_planes(val_volumes or [], config.val_slices, config.directions)
    log(
        f"training {count_parameters(model) / 1e6:.2f} M parameters on {len(train_volumes)} "
        f"volume(s), {config.epochs} epochs × {config.steps_per_epoch} steps × "
        f"{config.batch_size} tiles of {config.tile}², {config.threads} thread(s)"
    )
    for v in train_volumes:
        unlabelled = float(np.mean(v.labels == IGNORE))
        if unlabelled:
            log(
                f"{v.name or 'a volume'}: {100 * unlabelled:.1f} % of voxels not labelled "
                "(left out)"
            )
    total_steps = max(1, (config.epochs - start_epoch) * config.steps_per_epoch)
    done_steps = 0
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        rng, gen = _rng_for(config.seed, epoch)
        torch.manual_seed(config.seed * 1_000_003 + epoch)
        model.train()
        losses = []
        for step in range(config.steps_per_epoch):
            imgs, labs = sampler.batch(rng, config.batch_size)
            x_np, y_np = torch.from_numpy(imgs), torch.from_numpy(labs.astype(np.int64))
            if augment is not None:
                x, y = augment(x_np, y_np, config.tile, gen)
            else:
                x, y = with_channels(x_np), y_np
            opt.zero_grad(set_to_none=True)
            logits = model(x)
            loss = loss_fn(logits, y)
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(x)
                kd = distillation_loss(logits, target, config.kd_temperature)
                loss = loss + config.kd_weight * kd
            if not torch.isfinite(loss):
                raise VemcellError(
                    f"Training diverged at epoch {epoch + 1} (loss {loss.item()}); lower --lr."
                )
            loss.backward()
            opt.step()
            losses.append(float(loss.item()))
            done_steps += 1
            if progress is not None:
                progress.update(
                    done_steps / total_steps,
                    f"epoch {epoch + 1}/{config.epochs} step {step + 1}/{config.steps_per_epoch} "
                    f"loss {np.mean(losses[-20:]):.4f}",
                )
        lr = opt.param_groups[0]["lr"]
        sched.step()
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)),
            "lr": lr,
        }
        if planes:
            iou = validate(model, val_volumes or [], planes, n_classes)
            names = [c["name"] for c in card["classes"]]
            record["val_iou"] = {
                n: (None if np.isnan(v) else round(float(v), 4))
                for n, v in zip(names, iou, strict=True)
            }
            record["val_mean_iou"] = float(np.nanmean(iou))
        record["seconds"] = round(time.perf_counter() - t0, 2)
        history.append(record)
        score = record.get("val_mean_iou", -record["loss"])
        ckpt = {
            "format": CHECKPOINT_FORMAT,
            "arch": arch,
            "config": asdict(config),
            "card": card,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch + 1,
            "history": history,
            "best_score": max(best, score),
            "torch": torch.__version__,
        }
        _save(ckpt, last_path)
        if score > best:
            best = score
            _save(ckpt, out / "best.pt")
        with atomic_path(out / "history.json") as tmp:
            tmp.write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
        msg = (
            f"epoch {epoch + 1}/{config.epochs} loss {record['loss']:.4f} lr {lr:.2e} "
            f"{record['seconds']:.0f}s"
        )
        if "val_iou" in record:
            per = " ".join(
                f"{k[:4]} {v:.3f}" for k, v in record["val_iou"].items() if v is not None
            )
            msg += f" val mIoU {record['val_mean_iou']:.3f} ({per})"
        log(msg)
    return {"history": history, "best_score": best}


def _load_teacher(path: str, arch: dict) -> torch.nn.Module:
    """The frozen teacher network of a distillation run (eval mode: no dropout, fixed norms)."""
    ckpt = load_checkpoint(path)
    t_arch = ckpt["arch"]
    for key in ("n_classes", "in_channels"):
        if t_arch.get(key, 1) != arch[key]:
            raise VemcellError(
                f"The teacher {path} has {key} {t_arch.get(key, 1)}, the student {arch[key]}."
            )
    teacher = build_model(t_arch)
    teacher.load_state_dict(ckpt["model"])
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _grow(arch: dict, src: dict):
    """How ``src``'s weights seed the larger ``arch`` with the same output, and a note; or None."""
    if _context_only(arch, src):
        k = (arch["in_channels"] - 1) // 2
        return add_context_into, (
            f"which saw single slices; now with {k} neighbouring slice(s) on each side (same "
            "output to start)"
        )
    if _wider_only(arch, src):
        return widen_into, (
            f"widened from base {src['base']} to {arch['base']} (same output; the new channels "
            "learn)"
        )
    return None


def _context_only(arch: dict, src: dict) -> bool:
    """Whether ``arch`` is the single-slice ``src`` given neighbouring slices as well."""
    same = all(arch.get(k) == src.get(k) for k in ("n_classes", "base", "depth", "dropout"))
    return same and src.get("in_channels", 1) == 1 and arch["in_channels"] > 1


def _wider_only(arch: dict, src: dict) -> bool:
    """Whether ``arch`` is ``src`` with the same layout and at least its width."""
    rest = ("n_classes", "depth", "dropout", "in_channels")
    return all(arch.get(k) == src.get(k) for k in rest) and arch["base"] >= src["base"]


def _n_weights(model: torch.nn.Module) -> int:
    """Number of parameters, frozen ones included (a teacher's)."""
    return sum(p.numel() for p in model.parameters())
