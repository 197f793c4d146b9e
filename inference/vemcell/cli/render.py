"""``vemcell render VOLUME|RUN_DIR --out out.mp4|out.png``: Blender renders of a result.

The backend never imports bpy: this command runs the Blender extension's headless script
(``headless.py``, shipped in the extension and in ``addon/`` of a checkout) in a subprocess with
this same Python (``python headless.py -- ...``, which imports the ``bpy`` module), or with a
Blender binary (``--blender`` or ``$VEMCELL_BLENDER``: ``blender -b -P headless.py -- ...``).
Its JSON progress lines are relayed and its one-line errors become :class:`VemcellError`.
Given a volume instead of a run folder, the pipeline runs first (in this process).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vemcell.cli.arguments import add_render_arguments
from vemcell.cli.run_options import add_run_arguments, options_from_args
from vemcell.errors import VemcellError
from vemcell.options import RENDER_ANIMATIONS
from vemcell.progress import Progress
from vemcell.render import _launcher, headless_script, render_run_dir

HELP = "render a run folder (or a volume, running the pipeline first) as a PNG or MP4 in Blender"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="run folder from 'vemcell run', or an EM volume to run first")
    add_render_arguments(p, RENDER_ANIMATIONS)
    p.add_argument("--blender", help="Blender executable (default: the bpy module of this Python)")
    p.add_argument("--run-dir", help="where to write the pipeline run for a volume input")
    add_run_arguments(p)


def run(args: argparse.Namespace) -> int:
    src = Path(args.input)
    if not src.exists():
        raise VemcellError(f"'{src}' does not exist.")
    out = Path(args.out)
    if out.suffix.lower() not in (".mp4", ".png"):
        raise VemcellError(f"--out must end in .mp4 or .png, not '{out.name}'.")
    _launcher(args.blender)  # fail before a long pipeline run when no Blender is available
    headless_script()
    if src.is_dir() and (src / "scene.json").is_file():
        run_dir = src
        prog = Progress(args.progress, [("render", 1.0)])
    else:
        from vemcell.pipeline import STAGES
        from vemcell.pipeline import run as run_pipeline

        run_dir = Path(args.run_dir) if args.run_dir else out.with_name(out.stem + "_run")
        prog = Progress(args.progress, [*STAGES, ("render", 40.0)])
        run_pipeline(src, run_dir, options_from_args(args), progress=prog)
    summary = render_run_dir(
        run_dir,
        out,
        animation=args.animation,
        engine=args.engine,
        frames=args.frames,
        resolution=tuple(args.resolution) if args.resolution else None,
        samples=args.samples,
        blend=args.blend,
        glb=args.glb,
        cuts=args.cut,
        em_slice=args.em_slice,
        colour_by_cell=args.colour_by_cell,
        blender=args.blender,
        progress=prog,
    )
    prog.done()
    if args.progress != "json":
        for f in summary.get("files", []):
            print(f"wrote {f}")
        for key in ("blend", "glb"):
            if summary.get(key):
                print(f"wrote {summary[key]}")
        if summary.get("render_s") is not None:
            print(f"render time {summary['render_s']} s ({summary.get('frames')} frame(s))")
    return 0
