"""``vemcell run VOLUME --out DIR``: the whole pipeline into one run folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vemcell.cli.segment import add_segmentation_arguments
from vemcell.progress import Progress

if TYPE_CHECKING:
    from vemcell.pipeline import RunOptions

HELP = "the whole pipeline: labels, cells, meshes, measurements and report in one folder"


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the whole pipeline (shared with ``demo``)."""
    add_segmentation_arguments(p)
    p.add_argument(
        "--smooth",
        type=int,
        metavar="N",
        help="Taubin smoothing iterations (default: 20 × the voxel anisotropy, at most 80)",
    )
    p.add_argument(
        "--decimate",
        type=float,
        default=0.5,
        metavar="R",
        help="fraction of mesh faces to remove (0 keeps all; default 0.5)",
    )
    p.add_argument("--format", choices=["ply", "obj", "stl"], default="ply", dest="mesh_format")
    p.add_argument(
        "--cells",
        choices=["auto", "on", "off"],
        default="auto",
        dest="separate_cells",
        help="separate cells (auto: when the volume holds more than one)",
    )
    p.add_argument(
        "--foreground",
        choices=["auto", "sam", "unet", "threshold"],
        default="auto",
        help="how cells are told from resin when separating them",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume", help="TIFF stack, folder of slices, MRC file or Zarr store")
    p.add_argument("--out", required=True, help="run folder to write (replaced atomically)")
    add_run_arguments(p)


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """RunOptions from parsed arguments."""
    from vemcell.cards.card import resolve_model
    from vemcell.pipeline import RunOptions
    from vemcell.segmentation.segment import parse_min_size

    return RunOptions(
        model=args.model,
        directions=args.directions,
        median=args.median,
        fuse=args.fuse,
        denoise=args.denoise,
        tta=args.tta,
        min_size=parse_min_size(args.min_size, resolve_model(args.model))
        if args.min_size
        else None,
        voxel_size_nm=tuple(args.voxel_size) if args.voxel_size else None,
        smooth=args.smooth,
        decimate=args.decimate,
        mesh_format=args.mesh_format,
        separate_cells=args.separate_cells,
        foreground=args.foreground,
        threads=args.threads,
    )


def print_summary(report: dict, out: Path) -> None:
    """A short human summary of a run."""
    t = report["timings_s"]
    print(f"run folder  {out}")
    print(f"model       {report['model']['name']}")
    cells = report["cells"]
    if cells.get("separated"):
        print(f"cells       {cells['cells']} (foreground: {cells['foreground']})")
    print(f"meshes      {report['meshes']} in {out / 'scene.glb'}")
    print(f"time        {t['total']:.1f} s, peak memory {report['peak_rss_mb']:.0f} MB")
    for note in report.get("notes", []):
        print(f"note        {note}")


def run(args: argparse.Namespace) -> int:
    from vemcell.pipeline import STAGES
    from vemcell.pipeline import run as run_pipeline

    prog = Progress(args.progress, STAGES)
    report = run_pipeline(args.volume, args.out, options_from_args(args), progress=prog)
    if args.progress == "json":
        sys.stdout.write(json.dumps({"stage": "result", "fraction": 1.0, "message": args.out}))
        sys.stdout.write("\n")
    else:
        print_summary(report, Path(args.out))
    return 0
