"""``vemcell demo --out DIR``: the whole product on the built-in sample, as ``make demo`` runs it.

Sample volume → organelle labels → cells → meshes → measurements → a Blender scene with coloured
organelles and a cut plane → a rendered PNG and a short MP4.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from vemcell.cli.arguments import add_threads_argument
from vemcell.progress import Progress

HELP = "run the whole pipeline and render on the built-in sample volume"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", default="demo-output", help="folder for everything (default demo-output)"
    )
    p.add_argument("--model", help="model to use (default: the shipped default model)")
    p.add_argument("--no-render", action="store_true", help="stop after the run folder")
    p.add_argument(
        "--engine",
        choices=["workbench", "cycles"],
        default="workbench",
        help="render engine for the picture and the video",
    )
    add_threads_argument(p)


def run(args: argparse.Namespace) -> int:
    from vemcell.cli.run import print_summary
    from vemcell.options import RunOptions
    from vemcell.pipeline import STAGES
    from vemcell.pipeline import run as run_pipeline
    from vemcell.synth.generator import sample_dir

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sample = sample_dir() / "image.tif"
    run_dir = out / "run"
    print(f"vemcell demo: sample volume {sample}")
    report = run_pipeline(
        sample,
        run_dir,
        RunOptions(model=args.model, threads=args.threads),
        progress=Progress(args.progress, STAGES),
    )
    print_summary(report, run_dir)
    outputs = {
        "labels": run_dir / "labels.tif",
        "scene": run_dir / "scene.glb",
        "viewer": run_dir / "viewer.html",
        "measurements": run_dir / "measurements.csv",
        "report": run_dir / "report.json",
    }
    if not args.no_render:
        if importlib.util.find_spec("bpy") is None:
            print(
                "vemcell demo: bpy is not installed, so no render (pip install 'vemcell[blender]')."
            )
        else:
            from vemcell.cli.render import render_run_dir

            png = out / "cell_model.png"
            mp4 = out / "turntable.mp4"
            blend = out / "cell_model.blend"
            size = (960, 540)
            render_run_dir(
                run_dir, png, animation="still", engine=args.engine, blend=blend, resolution=size
            )
            render_run_dir(
                run_dir, mp4, animation="turntable", engine=args.engine, frames=48, resolution=size
            )
            outputs.update({"picture": png, "video": mp4, "blend": blend})
    print("\nvemcell demo wrote:")
    for name, path in outputs.items():
        print(f"  {name:<13} {path}")
    return 0
