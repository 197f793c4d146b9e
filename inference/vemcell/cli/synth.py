"""``vemcell synth OUT_DIR``: a synthetic C. merolae FIB-SEM volume with exact labels."""

from __future__ import annotations

import argparse

from vemcell.errors import VemcellError
from vemcell.progress import Progress

HELP = "generate a synthetic C. merolae FIB-SEM volume with exact ground-truth labels"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", help="folder for image.tif, labels.tif, cells.tif and synth.json")
    p.add_argument(
        "--cells",
        type=int,
        help="number of cells (a dividing pair counts as one); default: what fits the volume",
    )
    p.add_argument(
        "--stage",
        type=int,
        action="append",
        choices=range(1, 6),
        metavar="1..5",
        help="cell-cycle stage (repeat for one stage per cell); default: random",
    )
    p.add_argument(
        "--shape",
        nargs=3,
        type=int,
        default=[128, 128, 128],
        metavar=("Z", "Y", "X"),
        help="volume size in voxels (default 128 128 128)",
    )
    p.add_argument("--voxel-nm", type=float, default=20.0, help="pixel size in nm (default 20)")
    p.add_argument(
        "--z-step-nm",
        type=float,
        help="slice spacing in nm, for anisotropic stacks (default: = voxel)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--randomise",
        action="store_true",
        help="draw imaging parameters at random and let cells touch the border (training data)",
    )


def run(args: argparse.Namespace) -> int:
    from vemcell.synth import generator as synth

    if args.seed < 0:
        raise VemcellError(f"--seed must be zero or positive, got {args.seed}.")
    progress = Progress(args.progress, [("generate", 0.85), ("write", 0.15)])
    with progress.stage("generate", "drawing cells and rendering the EM image"):
        result = synth.generate(
            shape=tuple(args.shape),
            voxel_nm=args.voxel_nm,
            cells=args.cells,
            stages=args.stage,
            seed=args.seed,
            z_step_nm=args.z_step_nm,
            randomise=args.randomise,
        )
    with progress.stage("write", f"writing {args.out_dir}"):
        out = synth.write(result, args.out_dir)
    progress.done(str(out))
    if args.progress != "json":
        for c in result.info["cells"]:
            pair = f", touches daughter {c['partner']}" if c["partner"] else ""
            counts = ", ".join(f"{k} {v}" for k, v in c["organelles"].items())
            edge = "" if c["complete"] else " (cut by the volume border)"
            print(f"cell {c['id']}: stage {c['stage']}{pair}{edge}: {counts}")
        print(f"wrote {out}/image.tif, labels.tif, cells.tif, synth.json")
    return 0
