"""Headless vemcell: pipeline, import, animation and render in one synchronous run.

Run with Blender or with the ``bpy`` module (Blender as a Python module)::

    blender -b -P headless.py -- VOLUME --model M --animation turntable --out out.mp4
    python headless.py -- RUN_DIR --animation cut-sweep --out frame.png --engine cycles

Timers and modal operators do not run in background mode, so everything here is
synchronous. ``vemcell render`` (the backend CLI) starts this script in a subprocess; with
``--progress json`` it prints one ``{"stage", "fraction", "message"}`` object per line
(``vemcell.progress``, as the backend does). The pipeline's options are those of ``vemcell run``
(``vemcell.cli.run_options``). Errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import bpy

HERE = Path(__file__).resolve().parent
NO_ANIMATION = "none"  # this script only: render the scene as it is


def _addon():
    """This add-on's package, whether Blender already loaded it (extension) or not."""
    init = HERE / "__init__.py"
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if f and Path(f).resolve() == init:
            return mod
    spec = importlib.util.spec_from_file_location(
        "vemcell_blender", init, submodule_search_locations=[str(HERE)]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["vemcell_blender"] = mod
    spec.loader.exec_module(mod)
    return mod


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The script's arguments; the pipeline's are ``vemcell run``'s own (imported from the
    backend, so load the add-on first: :func:`_addon` puts the backend on the path)."""
    from vemcell.cli.arguments import add_render_arguments
    from vemcell.cli.run_options import add_run_arguments
    from vemcell.options import RENDER_ANIMATIONS

    p = argparse.ArgumentParser(
        prog="headless.py",
        description="Build (or load) a vemcell result and render an animation, headless.",
    )
    p.add_argument("input", help="EM volume, or a run folder written by 'vemcell run'")
    add_render_arguments(p, (*RENDER_ANIMATIONS, NO_ANIMATION))
    p.add_argument("--progress", choices=["json", "none", "text"], default="text")
    p.add_argument("--work", help="folder for the pipeline run (default: a temporary folder)")
    p.add_argument("--python", default="", help="Python that runs the backend")
    add_run_arguments(p.add_argument_group("pipeline (when INPUT is a volume; as 'vemcell run')"))
    args = p.parse_args(argv)
    if not args.out.lower().endswith((".mp4", ".png")):
        p.error("--out must end in .mp4 or .png")
    if min(args.resolution) < 4:
        p.error("--resolution must be at least 4 x 4")
    return args


def main(argv: list[str]) -> int:
    addon = _addon()
    from importlib import import_module

    core = addon.__name__ + ".core"
    animation = import_module(core + ".animation")
    backend = import_module(core + ".backend")
    cutplanes = import_module(core + ".cutplanes")
    emslice = import_module(core + ".emslice")
    pipeline = import_module(core + ".pipeline")
    render = import_module(core + ".render")
    vscene = import_module(core + ".scene")
    from vemcell.cli.run_options import options_from_args
    from vemcell.errors import VemcellError
    from vemcell.options import STILL
    from vemcell.progress import Progress

    args = parse_args(argv)
    src = Path(args.input).expanduser()
    if not src.exists():
        raise UserError(f"'{src}' does not exist.")
    is_run = src.is_dir() and (src / "scene.json").is_file()
    share = 0.0 if is_run else 0.5  # of the whole job, for the pipeline
    stages = [("pipeline", share), ("import", 0.05), ("render", 0.92 - share), ("save", 0.03)]
    prog = Progress(args.progress, stages)
    t0 = time.perf_counter()
    if is_run:
        run_dir = src
    else:
        try:
            opts = options_from_args(args)
        except VemcellError as exc:
            raise UserError(str(exc)) from None
        work = args.work or tempfile.mkdtemp(prefix="vemcell_headless_")

        def on_progress(ev) -> None:  # the backend's lines, already 0.2 s apart
            prog.update(ev.fraction, f"{ev.stage}: {ev.message}", force=True)

        with prog.stage("pipeline", "running the pipeline"):
            try:
                run_dir = backend.run_sync(src, opts, work, args.python, on_progress)
            except backend.BackendError as exc:
                raise UserError(str(exc)) from None
    t_pipeline = time.perf_counter() - t0

    with prog.stage("import", f"importing {run_dir}"):
        bpy.ops.wm.read_homefile(app_template="", use_empty=True)
        scene = bpy.context.scene
        try:
            pipeline.load_result(scene, run_dir, fast_cuts=True)
        except vscene.SceneError as exc:
            raise UserError(str(exc)) from None
        found = list(vscene.find_root(scene)["vemcell_classes"])
        for cls in args.colour_by_cell:
            if cls not in found:
                raise UserError(
                    f"--colour-by-cell {cls}: the result has no such class ({', '.join(found)})."
                )
            vscene.colour_by_cell(scene, cls)
        still = args.animation == STILL
        for axis in args.cut or (["Y"] if still else []):
            cutplanes.add_cut_plane(scene, axis)
        if args.em_slice:
            for empty in cutplanes.cut_planes(scene):
                emslice.enable(scene, empty)

    default_frames = 120 if args.out.lower().endswith(".mp4") else 1
    frames = args.frames or default_frames
    render.apply_preset(scene, args.engine, tuple(args.resolution), args.samples)
    animation.setup_camera(scene, frame_cut=still)
    if args.animation not in (NO_ANIMATION, STILL):
        animation.animate(scene, args.animation, frames)
    scene.frame_start, scene.frame_end = 1, frames
    render.apply_preset(scene, args.engine, tuple(args.resolution), args.samples)

    def on_frame(done: int, total: int) -> None:  # every frame, however fast
        prog.update(done / total, f"frame {done}/{total}", force=True)

    t1 = time.perf_counter()
    with prog.stage("render", f"rendering {frames} frame(s) with {args.engine}"):
        files = render.render(scene, args.out, on_frame)
    t_render = time.perf_counter() - t1
    if args.blend or args.glb:
        with prog.stage("save", "saving the scene"):
            if args.blend:
                render.save_blend(args.blend)
            if args.glb:
                render.export_glb(args.glb)
    summary = {
        "run_dir": str(run_dir),
        "files": [str(f) for f in files],
        "blend": args.blend or "",
        "glb": args.glb or "",
        "engine": args.engine,
        "frames": frames,
        "pipeline_s": round(t_pipeline, 2),
        "render_s": round(t_render, 2),
    }
    prog.done(json.dumps(summary))  # what `vemcell render` reads back
    return 0


class UserError(Exception):
    """A problem the user can fix: one line on stderr, exit code 2."""


def _argv() -> list[str]:
    return sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]


def run() -> int:
    try:
        return main(_argv())
    except UserError as exc:
        print(f"vemcell render: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("vemcell render: cancelled.", file=sys.stderr, flush=True)
        return 130
    except SystemExit as exc:  # argparse usage errors
        return int(exc.code or 0)
    except Exception as exc:
        print(
            f"vemcell render: internal error: {type(exc).__name__}: {exc}",
            file=sys.stderr,
            flush=True,
        )
        return 1


if __name__ == "__main__":
    sys.exit(run())
