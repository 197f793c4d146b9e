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
    add_blockwise_arguments(p)


def add_blockwise_arguments(p: argparse.ArgumentParser) -> None:
    """Where and how a volume larger than memory runs (``vemcell.blockwise``)."""
    g = p.add_argument_group(
        "volumes larger than memory",
        "runs blockwise on dask.distributed when asked, or when the volume does not fit the "
        "memory budget; small volumes run in memory as before",
    )
    g.add_argument(
        "--workers", type=int, metavar="N", help="run blockwise on N local worker processes"
    )
    g.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run blockwise on the dask scheduler at ADDRESS (tcp://host:8786)",
    )
    g.add_argument(
        "--memory-limit",
        metavar="SIZE",
        help="memory budget, e.g. 6GB (default: 80%% of the free memory); split between workers",
    )
    g.add_argument(
        "--block",
        type=int,
        nargs=3,
        metavar=("Z", "Y", "X"),
        help="block size of a blockwise run in voxels (default 256 256 256)",
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
    if (out / "viewer.html").is_file():
        print(f"viewer      {out / 'viewer.html'} (opens in any browser)")
    print(f"time        {t['total']:.1f} s, peak memory {report['peak_rss_mb']:.0f} MB")
    if report.get("mode") == "blockwise":
        bw = report["blockwise"]
        print(
            f"blockwise   {bw['blocks']} blocks of {'×'.join(map(str, bw['block_zyx']))} on "
            f"{bw['workers']} workers; labels.ome.zarr, cells.ome.zarr, neuroglancer/"
        )
        if bw.get("dashboard"):
            print(f"dashboard   {bw['dashboard']}")
    for note in report.get("notes", []):
        print(f"note        {note}")


def run(args: argparse.Namespace) -> int:
    from vemcell.pipeline import STAGES
    from vemcell.pipeline import run as run_pipeline

    options = options_from_args(args)
    report = _run_blockwise(args, options)
    if report is None:  # fits in memory: the one in-memory pipeline, unchanged
        prog = Progress(args.progress, STAGES)
        report = run_pipeline(args.volume, args.out, options, progress=prog)
    if args.progress == "json":
        sys.stdout.write(json.dumps({"stage": "result", "fraction": 1.0, "message": args.out}))
        sys.stdout.write("\n")
    else:
        print_summary(report, Path(args.out))
    return 0


def _run_blockwise(args: argparse.Namespace, options: object) -> dict | None:
    """The blockwise run's report, or None when the volume runs in memory."""
    from vemcell.blockwise.route import choose_route

    workers = getattr(args, "workers", None)
    scheduler = getattr(args, "scheduler", None)
    memory_limit = getattr(args, "memory_limit", None)
    block = getattr(args, "block", None)
    blockwise, why = choose_route(
        args.volume,
        tuple(args.voxel_size) if args.voxel_size else None,
        workers=workers,
        scheduler=scheduler,
        memory_limit=memory_limit,
    )
    if not blockwise:
        return None
    from vemcell.blockwise.run import STAGES, run_blockwise

    if args.progress != "json":
        print(f"blockwise   {why}", file=sys.stderr)
    return run_blockwise(
        args.volume,
        args.out,
        options,  # type: ignore[arg-type]
        workers=workers,
        scheduler=scheduler,
        memory_limit=memory_limit,
        block=tuple(block) if block else None,
        progress=Progress(args.progress, STAGES),
    )
