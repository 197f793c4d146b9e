"""``vemcell info VOLUME``: shape, dtype, voxel size and value range."""

from __future__ import annotations

import argparse
import json
from typing import Any

from vemcell.io.volumes import read_volume, value_range

HELP = "show a volume's shape, dtype, voxel size and value range"


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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume", help="TIFF stack, folder of slices, MRC file or Zarr store")
    add_voxel_argument(p)
    p.add_argument("--json", action="store_true", help="print the facts as one JSON object")


def run(args: argparse.Namespace) -> int:
    vol = read_volume(args.volume, voxel_size_nm=args.voxel_size)
    lo, hi = value_range(vol)
    facts = {
        "path": vol.path,
        "format": vol.format,
        "shape_zyx": list(vol.shape),
        "dtype": str(vol.dtype),
        "voxel_size_nm_zyx": list(vol.voxel_size_nm),
        "voxel_size_source": vol.voxel_size_source,
        "physical_size_um_zyx": [
            round(s * v / 1000.0, 4) for s, v in zip(vol.shape, vol.voxel_size_nm, strict=True)
        ],
        "min": lo,
        "max": hi,
        "notes": vol.notes,
    }
    if args.json:
        print(json.dumps(facts))
        return 0
    z, y, x = vol.shape
    vz, vy, vx = vol.voxel_size_nm
    pz, py, px = facts["physical_size_um_zyx"]
    print(f"file        {vol.path} ({vol.format})")
    print(f"shape       {z} × {y} × {x} (Z × Y × X), {vol.dtype}")
    print(f"voxel size  {vz:g} × {vy:g} × {vx:g} nm ({vol.voxel_size_source})")
    print(f"extent      {pz:g} × {py:g} × {px:g} µm")
    print(f"values      {lo:g} … {hi:g}")
    for note in vol.notes:
        print(f"note        {note}")
    return 0
