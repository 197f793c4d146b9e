"""Command-line arguments more than one verb takes, each defined once."""

from __future__ import annotations

import argparse
from typing import Any


def add_voxel_argument(p: argparse.ArgumentParser) -> None:
    """The shared ``--voxel-size Z Y X`` override."""
    p.add_argument(
        "--voxel-size",
        nargs=3,
        type=float,
        metavar=("Z", "Y", "X"),
        help="voxel size in nm, overriding the file's metadata",
    )


def positive_int(value: str) -> int:
    """An argparse type: a whole number of at least 1 (threads, workers, counts)."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {n}")
    return n


def add_threads_argument(p: Any, help: str = "onnxruntime threads (default: all cores)") -> None:
    """The shared ``--threads N`` (N ≥ 1)."""
    p.add_argument("--threads", type=positive_int, metavar="N", help=help)


def add_precision_argument(p: Any) -> None:
    """The shared ``--precision`` (the model's float or INT8 weights)."""
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "int8"],
        default="auto",
        help="the model's float or INT8 weights (auto: INT8 on CPUs where the model ships "
        "them, within its card's stated IoU of the float weights; float on GPUs)",
    )


def _directions(value: str) -> int | str:
    return value if value == "auto" else int(value) if value in ("1", "3") else value


def add_directions_argument(p: Any, help: str, auto: bool = True) -> None:
    """The shared ``--directions``: ``auto`` (the default), 1 or 3; without ``auto``, 3."""
    choices = ["auto", 1, 3] if auto else [1, 3]
    p.add_argument(
        "--directions",
        type=_directions,
        choices=choices,
        default="auto" if auto else 3,
        metavar="{" + ",".join(map(str, choices)) + "}",
        help=help + (" (auto: 3 where the volume can be resliced, else 1)" if auto else ""),
    )


def add_tta_argument(p: argparse.ArgumentParser) -> None:
    """The shared ``--tta`` (test-time augmentation)."""
    p.add_argument(
        "--tta",
        action="store_true",
        help="average each slice's 8 rotations and mirror images (steadier, 8x slower)",
    )


def add_min_size_argument(p: argparse.ArgumentParser) -> None:
    """The shared ``--min-size`` (pieces of a class smaller than this are specks)."""
    p.add_argument(
        "--min-size",
        action="append",
        metavar="CLASS=UM3",
        help="give pieces of CLASS smaller than UM3 µm³ to the class around them (repeatable; "
        "CLASS=0 keeps every piece; 'off' drops the model card's sizes; default: the card's)",
    )
