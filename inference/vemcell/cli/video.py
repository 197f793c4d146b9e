"""``vemcell video VOLUME_OR_RUN_DIR --out slices.mp4``: a movie through the stack.

About 100 frames evenly through the sections (frames between two sections interpolated), with
``--overlay`` the organelle colours of a run's labels over the EM, and with ``--sparse K`` the
sections between those imaged every K-th restored first (:mod:`vemcell.sparse.video`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vemcell.cli.arguments import add_voxel_argument
from vemcell.errors import VemcellError
from vemcell.progress import Progress

HELP = "a movie (MP4) through the stack, optionally restored (--sparse K) and coloured"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from vemcell.sparse import METHODS

    p.add_argument("input", help="an EM volume, or a run folder from 'vemcell run'")
    p.add_argument("--out", required=True, help="the .mp4 to write")
    p.add_argument("--frames", default="100", help="number of frames (default 100)")
    p.add_argument("--fps", default="10", help="frames per second (default 10)")
    p.add_argument(
        "--overlay", action="store_true", help="colour the organelles (a run's labels.tif)"
    )
    p.add_argument("--labels", help="label TIFF to overlay (default: the run folder's labels.tif)")
    p.add_argument("--model", help="model whose class colours to use if the labels carry none")
    p.add_argument(
        "--sparse", metavar="K", help="the sections were imaged every K-th: restore the rest first"
    )
    p.add_argument(
        "--method",
        choices=list(METHODS),
        help="how frames between sections are made (default: linear; flow with --sparse)",
    )
    p.add_argument("--max-size", default="1024", help="longest frame side in pixels (1024)")
    add_voxel_argument(p)


def _number(value: str, what: str, kind: type, minimum: float) -> Any:
    try:
        v = kind(value)
    except (TypeError, ValueError):
        raise VemcellError(f"{what} must be a number, not {value!r}.") from None
    if not v >= minimum:
        raise VemcellError(f"{what} must be at least {minimum:g}, not {value}.")
    return v


def _source(args: argparse.Namespace) -> tuple[Path, Path | None, dict[str, Any]]:
    """(image path, labels path or None, the run's report or {})."""
    src = Path(args.input)
    if not src.exists():
        raise VemcellError(f"'{src}' does not exist.")
    report: dict[str, Any] = {}
    labels = Path(args.labels) if args.labels else None
    if src.is_dir() and (src / "report.json").exists():
        try:
            report = json.loads((src / "report.json").read_text(encoding="utf-8"))
            image = Path(report["input"]["path"])
        except (OSError, ValueError, KeyError, TypeError):
            raise VemcellError(f"'{src / 'report.json'}' is not a vemcell run report.") from None
        if not image.exists():
            raise VemcellError(
                f"The run's image '{image}' is no longer there; give the volume itself instead."
            )
        if labels is None and (src / "labels.tif").exists():
            labels = src / "labels.tif"
    else:
        image = src
    return image, labels, report


def _colours(labels_path: Path, args: argparse.Namespace, report: dict) -> list:
    from vemcell.cards.card import resolve_model
    from vemcell.io.volumes import read_tiff_info

    info = read_tiff_info(labels_path) or {}
    classes = info.get("classes")
    if classes and not args.model:
        return [c["color"] for c in classes]
    name = args.model or (report.get("model") or {}).get("name")
    return [c.color for c in resolve_model(name).classes]


def run(args: argparse.Namespace) -> int:
    from vemcell.io.volumes import read_volume
    from vemcell.sparse import check_factor
    from vemcell.sparse.video import make_video

    frames = _number(args.frames, "--frames", int, 2)
    fps = _number(args.fps, "--fps", float, 0.1)
    max_size = _number(args.max_size, "--max-size", int, 16)
    k = check_factor(args.sparse) if args.sparse is not None else None
    if Path(args.out).suffix.lower() != ".mp4":
        raise VemcellError(f"--out must be an .mp4 file, not '{args.out}'.")
    image_path, labels_path, report = _source(args)
    if args.overlay and labels_path is None:
        raise VemcellError(
            "--overlay needs labels: give a run folder from 'vemcell run' or --labels."
        )
    prog = Progress(args.progress, [("read", 5), ("video", 95)])
    with prog.stage("read", "reading the stack"):
        vol = read_volume(image_path, voxel_size_nm=args.voxel_size)
        image = vol.array()
        labels = colours = None
        if args.overlay:
            labels = read_volume(labels_path, kind="labels").array()
            colours = _colours(labels_path, args, report)
    for note in vol.notes:
        print(f"note: {note}", file=sys.stderr)
    if k is not None:
        from vemcell.sparse import check_sparse_spacing

        check_sparse_spacing(vol.voxel_size_nm)
    with prog.stage("video", f"writing {frames} frames"):
        facts = make_video(
            image,
            args.out,
            frames=frames,
            labels=labels,
            colors=colours,
            sparse=k,
            method=args.method,
            fps=fps,
            max_size=max_size,
            z_step_nm=vol.voxel_size_nm[0],
            progress=prog,
        )
    prog.done(f"wrote {args.out}")
    if args.progress != "json":
        w, h = facts["size_xy"]
        print(
            f"wrote {args.out}: {facts['frames']} frames of {w} × {h} at {fps:g} fps through "
            f"{facts['sections']} sections ({facts['method']}"
            + (f", restored from every {k}-th" if k else "")
            + (", organelles coloured" if facts["overlay"] else "")
            + ")"
        )
    return 0
