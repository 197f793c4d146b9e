"""``vemcell info VOLUME``: shape, dtype, voxel size and value range."""

from __future__ import annotations

import argparse
import json

from vemcell.cli.arguments import add_voxel_argument
from vemcell.io.volumes import read_volume, value_range

HELP = "show a volume's shape, dtype, voxel size and value range"


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
