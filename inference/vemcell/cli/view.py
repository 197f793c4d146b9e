"""``vemcell view RUN_DIR``: the run's 3D model as one HTML file that opens in any browser.

The page needs no network and nothing installed: three.js, the meshes and a downsampled EM
volume are inside it. Rotate, zoom, slice (with filled caps and the EM section on the cut),
toggle cells and organelles, read an organelle's measurements, save a PNG.
"""

from __future__ import annotations

import argparse
import webbrowser
from pathlib import Path

from vemcell.errors import VemcellError
from vemcell.progress import Progress

HELP = "write the run's 3D model as one self-contained HTML page and open it in the browser"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder that 'vemcell run' wrote")
    p.add_argument(
        "--out",
        metavar="FILE.html",
        help="where to write the page (default RUN_DIR/viewer.html)",
    )
    p.add_argument("--no-open", action="store_true", help="write the page, do not open it")
    p.add_argument(
        "--max-faces",
        type=int,
        default=None,
        metavar="N",
        help="simplify the meshes in the page when they have more triangles than this "
        "(default 2,000,000; 0: never); the run's own files are not changed",
    )
    p.add_argument(
        "--no-em",
        action="store_true",
        help="leave the EM volume out of the page (smaller file; no EM section on the cut)",
    )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def run(args: argparse.Namespace) -> int:
    from vemcell.view import pack
    from vemcell.view.page import write_viewer_stats

    max_faces = pack.DEFAULT_MAX_FACES if args.max_faces is None else args.max_faces
    if max_faces < 0:
        raise VemcellError(f"--max-faces must be 0 (no limit) or more, not {max_faces}.")
    if args.out is not None and Path(args.out).suffix.lower() not in (".html", ".htm"):
        raise VemcellError(f"--out names the HTML file to write, not {args.out!r}.")
    prog = Progress(args.progress, [("viewer", 1.0)])
    with prog.stage("viewer", "writing the viewer page"):
        stats = write_viewer_stats(
            args.run_dir,
            args.out,
            max_faces=max_faces,
            em_voxels=0 if args.no_em else pack.DEFAULT_EM_VOXELS,
        )
    prog.done(f"wrote {stats.path}")
    if args.progress != "json":
        faces = f"{stats.faces:,} triangles"
        if stats.faces != stats.faces_in_run:
            faces += f" (simplified from {stats.faces_in_run:,})"
        em = f"EM {_mb(stats.em_bytes)}" if stats.em_bytes else "no EM section"
        print(
            f"vemcell view: wrote {stats.path} ({_mb(stats.bytes)}: {stats.objects} objects, "
            f"{faces}, meshes {_mb(stats.mesh_bytes)}, {em})"
        )
        if stats.em_note:
            print(f"  {stats.em_note}")
    if not args.no_open:
        uri = stats.path.resolve().as_uri()
        if not webbrowser.open(uri):
            print(f"vemcell view: no browser could be started here; open {uri} in one.")
    return 0
