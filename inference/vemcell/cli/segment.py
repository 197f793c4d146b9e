"""``vemcell segment VOLUME --model M --out labels.tif``: organelle labels as a TIFF."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vemcell.cli.run_options import add_segmentation_arguments, options_from_args
from vemcell.errors import VemcellError
from vemcell.progress import Progress

HELP = "segment organelles with an ONNX U-Net (1 or 3 directions) into a label TIFF"


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

    opt = options_from_args(args)
    card = resolve_model(opt.model)
    with prog.stage("read", "reading the volume"):
        vol = read_volume(args.volume, voxel_size_nm=opt.voxel_size_nm)
    for note in vol.notes:
        print(f"note: {note}", file=sys.stderr)
    if opt.sparse:
        if extra:
            raise VemcellError("--sparse works with vemcell run and segment, not here.")
        from vemcell.pipeline import restore_sparse

        vol, result, _ = restore_sparse(vol, card, opt, prog)  # result: the shape route's
        if result is not None:
            return vol, card, result
    with prog.stage("segment", f"segmenting with {card.name}"):
        result = segment.segment(
            vol, card, **opt.segmentation_kwargs(), threads=opt.threads, progress=prog, **extra
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
