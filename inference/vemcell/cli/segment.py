"""``vemcell segment VOLUME --model M --out labels.tif``: organelle labels as a TIFF."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vemcell.cli.info import (
    add_directions_argument,
    add_min_size_argument,
    add_threads_argument,
    add_tta_argument,
    add_voxel_argument,
)
from vemcell.progress import Progress

HELP = "segment organelles with an ONNX U-Net (1 or 3 directions) into a label TIFF"


def add_segmentation_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``segment`` and ``run``."""
    add_voxel_argument(p)
    p.add_argument(
        "--model",
        help="shipped model name or path to an .onnx with its JSON card (default: cmerolae6)",
    )
    add_directions_argument(
        p, "predict XY slices only (1) or XY, XZ and YZ fused (3, the paper's method)"
    )
    p.add_argument(
        "--median",
        type=int,
        default=3,
        metavar="N",
        help="size of the 3D median filter after fusion (0 turns it off; default 3)",
    )
    p.add_argument(
        "--fuse",
        choices=["mean", "max"],
        default="mean",
        help="combine the 3 directions by mean probability or per-class maximum",
    )
    add_tta_argument(p)
    add_min_size_argument(p)
    p.add_argument(
        "--denoise",
        choices=["none", "median", "bilateral"],
        default="none",
        help="denoise before segmenting (bilateral per slice, as in the paper, or 3D median)",
    )
    add_threads_argument(
        p, help="onnxruntime threads, and meshing processes in run (default: all cores)"
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume", help="TIFF stack, folder of slices, MRC file or Zarr store")
    p.add_argument("--out", required=True, help="label TIFF to write")
    add_segmentation_arguments(p)


def read_and_segment(args: argparse.Namespace, prog: Progress, **extra: Any) -> tuple:
    """Read ``args.volume`` and segment it with the shared options; returns (volume, card, result).

    ``extra`` goes to :func:`vemcell.segment.segment` (e.g. ``confidence=True``).
    """
    from vemcell.cards.card import resolve_model
    from vemcell.io.volumes import read_volume
    from vemcell.segmentation import segment

    card = resolve_model(args.model)
    with prog.stage("read", "reading the volume"):
        vol = read_volume(args.volume, voxel_size_nm=args.voxel_size)
    for note in vol.notes:
        print(f"note: {note}", file=sys.stderr)
    with prog.stage("segment", f"segmenting with {card.name}"):
        result = segment.segment(
            vol,
            card,
            directions=args.directions,
            median=args.median,
            fuse=args.fuse,
            denoise=args.denoise,
            threads=args.threads,
            progress=prog,
            tta=args.tta,
            min_size=segment.parse_min_size(args.min_size, card),
            **extra,
        )
    return vol, card, result


def run(args: argparse.Namespace) -> int:
    from vemcell.io.volumes import write_tiff
    from vemcell.segmentation import segment

    prog = Progress(args.progress, [("read", 3), ("segment", 95), ("write", 2)])
    vol, card, result = read_and_segment(args, prog)
    with prog.stage("write", "writing labels"):
        write_tiff(args.out, result.labels, vol.voxel_size_nm, metadata=segment.label_info(card))
    prog.done(f"wrote {args.out}")
    if args.progress != "json":
        print(f"wrote {args.out}")
    return 0
