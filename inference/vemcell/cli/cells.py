"""``vemcell cells VOLUME --out cells.tif``: find every cell (foreground + 3D watershed)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vemcell.cells import separate as cells
from vemcell.cli.arguments import add_directions_argument, add_threads_argument, add_voxel_argument
from vemcell.errors import VemcellError
from vemcell.io.volumes import read_volume, write_tiff
from vemcell.progress import Progress

HELP = "separate the cells of a multi-cell volume into a uint16 cell-id TIFF"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume", help="TIFF stack, folder of slices, MRC file or Zarr store")
    p.add_argument("--out", required=True, help="cell-id TIFF to write (e.g. cells.tif)")
    add_voxel_argument(p)
    p.add_argument(
        "--foreground",
        choices=cells.PROVIDERS,
        default="auto",
        help="how cells are told from resin: SAM, the U-Net's background class, or a "
        "threshold (auto: SAM if exported, else the U-Net if it has a background class, "
        "else threshold)",
    )
    p.add_argument("--model", help="organelle model (name or .onnx) for --foreground unet")
    add_directions_argument(
        p, "U-Net: XY slices only (1, for thick serial sections) or XY, XZ, YZ fused (3)"
    )
    p.add_argument("--sam", metavar="DIR", help="exported SAM folder (vemcell sam-export)")
    p.add_argument(
        "--threshold",
        type=float,
        help="intensity separating cells from resin for --foreground threshold (default Otsu)",
    )
    p.add_argument(
        "--polarity",
        choices=["auto", "dark", "bright"],
        default="auto",
        help="whether cells are darker or brighter than the resin (threshold provider)",
    )
    p.add_argument("--slice-step", type=int, default=1, help="run SAM on every K-th slice")
    p.add_argument(
        "--points-per-side", type=int, default=16, help="SAM prompt grid density per slice"
    )
    p.add_argument(
        "--min-cell-um3",
        type=float,
        default=cells.DEFAULT_MIN_CELL_UM3,
        help="fragments smaller than this merge into a neighbour or are dropped",
    )
    p.add_argument(
        "--seed-h-um",
        type=float,
        default=cells.DEFAULT_SEED_H_UM,
        help="how much thicker than their contact two cells must be to be split (µm)",
    )
    p.add_argument(
        "--seed-smooth-um",
        type=float,
        default=cells.DEFAULT_SEED_SMOOTH_UM,
        help="smoothing of the distance map before seeding (µm)",
    )
    p.add_argument(
        "--min-seed-radius-um",
        type=float,
        default=cells.DEFAULT_MIN_SEED_RADIUS_UM,
        help="ignore seeds closer than this to the resin (µm)",
    )
    p.add_argument(
        "--work-nm",
        type=float,
        default=cells.DEFAULT_WORK_NM,
        help="voxel size the watershed works at (0 = the volume's own)",
    )
    add_threads_argument(p)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise VemcellError(f"--out must be a .tif file, not '{out.name}'.")
    if out.exists() and out.is_dir():
        raise VemcellError(f"--out '{out}' is a folder; give a .tif file name.")
    if args.slice_step < 1:
        raise VemcellError(f"--slice-step must be 1 or more, not {args.slice_step}.")
    prog = Progress(
        args.progress,
        [("read", 1.0), ("foreground", 6.0), ("cells", 2.0), ("write", 1.0)],
    )
    with prog.stage("read", "reading the volume"):
        vol = read_volume(args.volume, voxel_size_nm=args.voxel_size)
        image = vol.array()
    card = None
    if args.model is not None or args.foreground in ("auto", "unet"):
        from vemcell.cards.card import resolve_model

        try:
            card = resolve_model(args.model)
        except VemcellError:
            if args.model is not None or args.foreground == "unet":
                raise
    provider = args.foreground
    if provider == "auto":
        provider = cells.default_provider(card, args.sam)
    membrane = cells.membrane_split(card, provider)
    with prog.stage("foreground", f"telling cells from resin ({provider})"):
        unet_labels = None
        if provider == "unet":
            from vemcell.segmentation import segment

            unet_labels = segment.segment(
                vol, card, directions=args.directions, progress=prog
            ).labels
    with prog.stage("cells", "3D watershed"):
        ids, used = cells.find_cells(
            image,
            vol.voxel_size_nm,
            provider=provider,
            card=card,
            unet_labels=unet_labels,
            threshold=args.threshold,
            polarity=args.polarity,
            sam_dir=args.sam,
            sam_options={"slice_step": args.slice_step, "points_per_side": args.points_per_side},
            progress=prog,
            min_cell_um3=args.min_cell_um3,
            seed_smooth_um=args.seed_smooth_um,
            seed_h_um=args.seed_h_um,
            min_seed_radius_um=args.min_seed_radius_um,
            work_nm=args.work_nm or None,
        )
    n = int(ids.max())
    params = (
        {"boundary_class": card.class_names[card.cell_boundary_class]}
        if membrane
        else {
            "min_cell_um3": args.min_cell_um3,
            "seed_h_um": args.seed_h_um,
            "seed_smooth_um": args.seed_smooth_um,
            "min_seed_radius_um": args.min_seed_radius_um,
            "work_nm": args.work_nm,
        }
    )
    with prog.stage("write", f"writing {out.name}"):
        write_tiff(
            out,
            ids,
            vol.voxel_size_nm,
            metadata={"vemcell": "instances/1", "foreground": used, "cells": n, **params},
        )
    prog.done(f"{n} cells")
    result = {
        "out": str(out),
        "cells": n,
        "foreground": used,
        "voxel_size_nm_zyx": list(vol.voxel_size_nm),
        "per_cell": cells.summarise(ids, vol.voxel_size_nm),
    }
    if args.json:
        print(json.dumps(result))
    elif args.progress != "json":
        print(f"{n} cell(s) found (foreground: {used}); wrote {out}")
        for row in result["per_cell"]:
            x, y, z = row["centroid_um_xyz"]
            print(
                f"  cell {row['cell']:3d}  {row['volume_um3']:7.3f} µm³  "
                f"at ({x:.2f}, {y:.2f}, {z:.2f}) µm"
            )
    return 0
