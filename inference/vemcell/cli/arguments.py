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


def add_render_arguments(p: Any, animations: tuple[str, ...]) -> None:
    """What to render and how: shared by ``vemcell render`` and the add-on's headless script."""
    p.add_argument("--out", required=True, help="output .mp4 or .png")
    p.add_argument("--animation", choices=animations, default="turntable")
    p.add_argument(
        "--engine",
        choices=["workbench", "cycles"],
        default="workbench",
        help="preview (workbench) or final (cycles, denoised) preset",
    )
    p.add_argument("--frames", type=positive_int, help="animation length (default 120; 1 for PNG)")
    p.add_argument(
        "--resolution",
        type=positive_int,
        nargs=2,
        metavar=("W", "H"),
        default=(1280, 720),
        help="picture size in pixels (default 1280 720)",
    )
    p.add_argument(
        "--samples", type=positive_int, default=16, help="Cycles samples (default 16, denoised)"
    )
    p.add_argument("--blend", help="also save the Blender scene as this .blend")
    p.add_argument("--glb", help="also export the (cut) scene as this .glb")
    p.add_argument(
        "--cut", action="append", default=[], choices=["X", "Y", "Z", "FREE"], help="cut plane"
    )
    p.add_argument("--em-slice", action="store_true", help="show the EM slice on cut planes")
    p.add_argument(
        "--colour-by-cell",
        action="append",
        default=[],
        metavar="CLASS",
        help="one colour per cell for this class, e.g. cytoplasm for neurites (repeatable)",
    )
