"""``vemcell run VOLUME --out DIR``: the whole pipeline into one run folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vemcell.cli.run_options import add_run_arguments, options_from_args
from vemcell.progress import Progress

HELP = "the whole pipeline: labels, cells, meshes, measurements and report in one folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume", help="TIFF stack, folder of slices, MRC file or Zarr store")
    p.add_argument("--out", required=True, help="run folder to write (replaced atomically)")
    add_run_arguments(p)


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
