"""The run options on the command line: their arguments, defined once, read back into
:class:`~vemcell.options.RunOptions` (``run``, ``render``, ``segment`` and ``pseudolabel`` share
them, and so does the Blender add-on's headless script)."""

from __future__ import annotations

import argparse

from vemcell.cli.arguments import (
    add_directions_argument,
    add_min_size_argument,
    add_precision_argument,
    add_threads_argument,
    add_tta_argument,
    add_voxel_argument,
)
from vemcell.options import MESH_FORMATS, SPARSE_METHODS, SPARSE_ROUTES, RunOptions


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
    add_precision_argument(p)
    g = p.add_argument_group("sections imaged every K-th (the rest restored first)")
    g.add_argument(
        "--sparse",
        type=int,
        metavar="K",
        help="the stack holds every K-th section of the sample: restore the K - 1 between each "
        "pair before segmenting (Z spacing / K)",
    )
    g.add_argument(
        "--sparse-route",
        choices=SPARSE_ROUTES,
        default="image",
        help="image: restore the sections, then segment (default, better by measurement); "
        "shape: segment the imaged sections and interpolate the organelle shapes",
    )
    g.add_argument(
        "--sparse-method",
        choices=SPARSE_METHODS,
        default="auto",
        help="how the image route restores a section: auto (default: the method measured best "
        "for this kind of stack and model), learned (a network correcting flow), flow "
        "(optical flow both ways), linear blend or the nearest section",
    )


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the whole pipeline: the segmentation's, then meshing and cells."""
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
    p.add_argument("--format", choices=MESH_FORMATS, default="ply", dest="mesh_format")
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
    p.add_argument(
        "--no-viewer",
        dest="viewer",
        action="store_false",
        help="do not write viewer.html (the model as one page for any browser; vemcell view)",
    )


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """Validated :class:`RunOptions` from parsed arguments.

    Arguments of :func:`add_run_arguments`, or only those of :func:`add_segmentation_arguments`
    (``segment``): the meshing and cell options then keep their defaults. ``--min-size`` is
    resolved against the model's card (class -> µm³), as ``report.json`` records it.
    """
    default = RunOptions()
    min_size = None
    if args.min_size:
        from vemcell.cards.card import resolve_model
        from vemcell.segmentation.segment import parse_min_size

        min_size = parse_min_size(args.min_size, resolve_model(args.model))
    return RunOptions(
        model=args.model,
        directions=args.directions,
        median=args.median,
        fuse=args.fuse,
        denoise=args.denoise,
        tta=args.tta,
        min_size=min_size,
        voxel_size_nm=tuple(args.voxel_size) if args.voxel_size else None,
        smooth=getattr(args, "smooth", default.smooth),
        decimate=getattr(args, "decimate", default.decimate),
        mesh_format=getattr(args, "mesh_format", default.mesh_format),
        separate_cells=getattr(args, "separate_cells", default.separate_cells),
        foreground=getattr(args, "foreground", default.foreground),
        viewer=getattr(args, "viewer", default.viewer),
        threads=args.threads,
        precision=args.precision,
        sparse=args.sparse,
        sparse_route=args.sparse_route,
        sparse_method=args.sparse_method,
    ).validate()
