"""Shared pieces of the training commands (train, export, crossval); imports no torch.

The commands need torch, which is an optional extra; :func:`require_training` imports it
lazily and turns its absence into one sentence saying what to install.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from vemcell.cards.card import _color
from vemcell.cli.arguments import add_directions_argument
from vemcell.errors import VemcellError


def require_training(command: str, module: str = "vemcell_train") -> ModuleType:
    """Import ``module`` (a part of vemcell_train), or explain how to install torch."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise VemcellError(
            f"vemcell {command} needs the training extra: pip install 'vemcell[train]'."
        ) from None
    return importlib.import_module(module)


def load_classes(path: str | Path) -> dict[str, Any]:
    """Read a classes file: a JSON list of names/``{"name", "color"}`` or an object with
    ``"classes"`` and optional ``"name"``, ``"title"``, ``"background_class"``, ``"licence"``.

    Returns the card fields it defines, with every colour as RGBA floats.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VemcellError(f"Classes file '{p}' does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VemcellError(f"Classes file '{p}' is not valid JSON ({exc}).") from None
    if isinstance(data, list):
        data = {"classes": data}
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise VemcellError(f"Classes file '{p}' must be a list of classes or hold 'classes'.")
    classes = []
    for i, c in enumerate(data["classes"]):
        if isinstance(c, str):
            c = {"name": c}
        if not isinstance(c, dict) or not c.get("name"):
            raise VemcellError(f"Classes file '{p}': class {i} has no name.")
        color = _color(c.get("color", [0.5, 0.5, 0.5, 1.0]), f"Classes file {p.name}")
        classes.append({"name": str(c["name"]), "color": list(color)})
    if len(classes) < 2:
        raise VemcellError(f"Classes file '{p}' must list at least two classes (index = label).")
    out = {k: v for k, v in data.items() if k != "classes"}
    out["classes"] = classes
    bg = out.get("background_class", 0)
    if bg is not None and not (isinstance(bg, int) and 0 <= bg < len(classes)):
        raise VemcellError(f"Classes file '{p}': background_class {bg!r} is not a class index.")
    return out


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """Data and hyper-parameter options shared by ``train`` and ``crossval``."""
    p.add_argument(
        "--init",
        metavar="CHECKPOINT",
        help="start from these weights (fine-tuning; a narrower network of the same layout is "
        "widened to --width; crossval: every fold)",
    )
    d = p.add_argument_group("data")
    d.add_argument("--images", nargs="+", required=True, metavar="TIF", help="image volumes")
    d.add_argument(
        "--labels",
        nargs="+",
        required=True,
        metavar="TIF",
        help="label volumes (same order); 255 marks voxels nobody labelled (left out)",
    )
    d.add_argument(
        "--classes", required=True, help="JSON: class names (index = label value) and colours"
    )
    d.add_argument(
        "--label-map",
        help="map label values to classes, e.g. '0=0,*=1' (every nonzero label is class 1)",
    )
    d.add_argument(
        "--voxel-nm",
        type=float,
        help="train at this isotropic voxel size in nm (default: the first image's finest axis)",
    )
    d.add_argument(
        "--normalisation",
        choices=["auto", "scale", "percentile"],
        default="auto",
        help="intensity normalisation, stored in the model card (auto: /255 for uint8)",
    )
    add_directions_argument(
        d, "train on XY slices only (1) or on XY, XZ and YZ slices (3, the paper)", auto=False
    )
    h = p.add_argument_group("training")
    h.add_argument("--epochs", type=int, default=16)
    h.add_argument("--steps", type=int, default=50, help="steps per epoch")
    h.add_argument("--batch-size", type=int, default=8)
    h.add_argument("--tile", type=int, default=128, help="training tile size (multiple of 16)")
    h.add_argument(
        "--width",
        type=int,
        help="channels of the first stage (paper: 64; default: --init's width, else 16)",
    )
    h.add_argument("--dropout", type=float, default=0.1)
    h.add_argument("--lr", type=float, default=2e-3, help="initial learning rate (paper: 1e-5)")
    h.add_argument("--lr-decay", type=float, default=0.95, help="learning-rate factor per epoch")
    h.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    h.add_argument("--alpha", type=float, default=0.4, help="Tversky false-positive weight")
    h.add_argument("--beta", type=float, default=0.6, help="Tversky false-negative weight")
    h.add_argument("--gamma", type=float, default=1.0, help="focal Tversky gamma (1: plain)")
    h.add_argument(
        "--ce-weight",
        type=float,
        default=0.0,
        help="weight of an added cross-entropy term (0: pure Tversky, as the paper)",
    )
    h.add_argument(
        "--balance",
        type=float,
        default=0.5,
        help="fraction of tiles centred on a voxel of a uniformly drawn class",
    )
    h.add_argument(
        "--class-draw",
        default="",
        metavar="W,W,...",
        help="odds, one per class, of which class a balanced tile is centred on (default: "
        "uniform); more weight on a rare organelle shows it more often",
    )
    h.add_argument(
        "--ce-class-weights",
        default="",
        metavar="W,W,...",
        help="weights, one per class, of the cross-entropy term (with --ce-weight > 0)",
    )
    h.add_argument(
        "--context",
        type=int,
        metavar="N",
        help="also feed the N slices on either side of each slice as input channels (2.5D: "
        "helps on serial sections, where an organelle runs through several; default 0, or the "
        "--init checkpoint's)",
    )
    h.add_argument("--no-augment", action="store_true", help="no rotation/scale/intensity jitter")
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def positive(value: float | int, what: str) -> None:
    """Raise a one-sentence error unless ``value`` is positive."""
    if not value > 0:
        raise VemcellError(f"{what} must be positive, got {value}.")


def build_config(args: argparse.Namespace, train_mod: ModuleType) -> Any:
    """A ``TrainConfig`` from the shared options, checked."""
    width, context = args.width, args.context
    if width is None or context is None:  # fine-tuning keeps the network unless asked
        arch = train_mod.load_checkpoint(args.init)["arch"] if args.init else {}
        width = int(arch.get("base", 16)) if width is None else width
        context = (int(arch.get("in_channels", 1)) - 1) // 2 if context is None else context
    if context < 0:
        raise VemcellError(f"--context must be 0 or more slices, got {context}.")
    for what, v in (
        ("--epochs", args.epochs),
        ("--steps", args.steps),
        ("--batch-size", args.batch_size),
        ("--tile", args.tile),
        ("--width", width),
        ("--lr", args.lr),
        ("--lr-decay", args.lr_decay),
        ("--threads", args.threads),
    ):
        positive(v, what)
    if args.tile % 16:
        raise VemcellError(f"--tile must be a multiple of 16, got {args.tile}.")
    if not 0 <= args.balance <= 1:
        raise VemcellError(f"--balance must be between 0 and 1, got {args.balance}.")
    if not 0 <= args.dropout < 1:
        raise VemcellError(f"--dropout must be in [0, 1), got {args.dropout}.")
    if args.alpha < 0 or args.beta < 0 or args.alpha + args.beta == 0:
        raise VemcellError("--alpha and --beta must be non-negative and not both zero.")
    positive(args.gamma, "--gamma")
    if args.ce_weight < 0:
        raise VemcellError(f"--ce-weight must not be negative, got {args.ce_weight}.")
    return train_mod.TrainConfig(
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        batch_size=args.batch_size,
        tile=args.tile,
        base=width,
        dropout=args.dropout,
        lr=args.lr,
        lr_decay=args.lr_decay,
        weight_decay=args.weight_decay,
        alpha=args.alpha,
        beta=args.beta,
        gamma=args.gamma,
        ce_weight=args.ce_weight,
        directions=args.directions,
        balance=args.balance,
        context=context,
        class_draw=args.class_draw,
        ce_class_weights=args.ce_class_weights,
        augment=not args.no_augment,
        seed=args.seed,
        threads=args.threads,
    )


def check_class_weights(config: Any, n_classes: int, train_mod: ModuleType) -> None:
    """Reject --class-draw / --ce-class-weights lists of the wrong length before any data loads."""
    train_mod.parse_class_weights(config.class_draw, n_classes, "--class-draw")
    train_mod.parse_class_weights(config.ce_class_weights, n_classes, "--ce-class-weights")


def load_volumes(
    images: list[str],
    labels: list[str],
    card: dict[str, Any],
    args: argparse.Namespace,
    data_mod: ModuleType,
) -> list[Any]:
    """Read and prepare every image/label pair (fills ``card['voxel_size_nm']`` if unset)."""
    from vemcell.evaluation.metrics import parse_label_map
    from vemcell.io.volumes import read_volume

    if len(images) != len(labels):
        raise VemcellError(
            f"Got {len(images)} image(s) but {len(labels)} label volume(s); give one label "
            "volume per image, in the same order."
        )
    label_map = parse_label_map(args.label_map)
    out = []
    for img_path, lab_path in zip(images, labels, strict=True):
        vol = read_volume(img_path)
        lab = read_volume(lab_path, kind="labels")
        if card.get("voxel_size_nm") is None:
            card["voxel_size_nm"] = float(min(vol.voxel_size_nm[1:]))
        out.append(
            data_mod.prepare_pair(
                vol.array(),
                lab.array(),
                vol.voxel_size_nm,
                normalisation=card["normalisation"],
                target_nm=card["voxel_size_nm"],
                directions=args.directions,
                n_classes=len(card["classes"]),
                label_map=label_map,
                name=Path(img_path).name,
            )
        )
    return out
