"""Blender renders of a run folder from outside Blender: the headless script in a subprocess.

The backend never imports bpy: :func:`render_run_dir` runs the Blender extension's headless script
(``headless.py``, shipped in the extension and in ``addon/`` of a checkout) with this same Python
(which imports the ``bpy`` module) or with a Blender binary (``--blender`` or
``$VEMCELL_BLENDER``). Its JSON progress lines are relayed and its one-line errors become
:class:`~vemcell.errors.VemcellError`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vemcell.errors import VemcellError
from vemcell.options import RENDER_ANIMATIONS, STILL
from vemcell.progress import Progress


def headless_script() -> Path:
    """The extension's headless script, next to this backend package."""
    pkg = Path(__file__).resolve().parent  # .../vemcell
    for cand in (pkg.parent.parent / "headless.py", pkg.parent.parent / "addon" / "headless.py"):
        if cand.is_file():
            return cand
    raise VemcellError(
        "The Blender add-on's headless.py was not found beside the vemcell package; "
        "render from a source checkout or the installed Blender extension."
    )


def _launcher(blender: str | None) -> list[str]:
    blender = blender or os.environ.get("VEMCELL_BLENDER") or None
    if blender:
        if not Path(blender).is_file():
            raise VemcellError(f"Blender executable '{blender}' does not exist.")
        return [blender, "--background", "--python-exit-code", "2", "--python"]
    if importlib.util.find_spec("bpy") is None:
        raise VemcellError(
            "Rendering needs Blender: install the bpy module (pip install 'vemcell[blender]', "
            "Python 3.11) or pass --blender /path/to/blender."
        )
    return [sys.executable]


def render_run_dir(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    animation: str = "turntable",
    engine: str = "workbench",
    frames: int | None = None,
    resolution: tuple[int, int] | None = None,
    samples: int | None = None,
    blend: str | os.PathLike | None = None,
    glb: str | os.PathLike | None = None,
    cuts: Sequence[str] = (),
    em_slice: bool = False,
    colour_by_cell: Sequence[str] = (),
    blender: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Render a run folder with Blender in a subprocess; returns the script's summary.

    Parameters
    ----------
    run_dir : path
        Folder written by ``vemcell run`` (scene.json, meshes, report.json).
    out : path
        ``.mp4`` (the animation) or ``.png`` (one still, or ``<stem>_0001.png``... frames).
    animation : str
        One of :data:`vemcell.options.RENDER_ANIMATIONS`: an animation, or ``still`` (one
        picture with a cut plane).
    engine : {"workbench", "cycles"}
        Preview (Workbench) or final (Cycles, denoised) preset.
    colour_by_cell : sequence of str
        Classes whose objects get one colour per cell instead of the class colour.

    Raises
    ------
    VemcellError
        Bad arguments, no Blender available, or the render failed (its one-line reason).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "scene.json").is_file():
        raise VemcellError(f"'{run_dir}' is not a vemcell run folder (no scene.json).")
    out = Path(out)
    if out.suffix.lower() not in (".mp4", ".png"):
        raise VemcellError(f"--out must end in .mp4 or .png, not '{out.name}'.")
    if animation not in RENDER_ANIMATIONS:
        raise VemcellError(
            f"Unknown animation '{animation}' (one of {', '.join(RENDER_ANIMATIONS)})."
        )
    if engine not in ("workbench", "cycles"):
        raise VemcellError(f"Unknown engine '{engine}' (workbench or cycles).")
    if frames is not None and frames < 1:
        raise VemcellError("--frames must be at least 1.")
    if resolution is not None and min(resolution) < 4:
        raise VemcellError("--resolution must be at least 4 x 4 pixels.")

    args = [str(run_dir.resolve()), "--out", str(out.resolve()), "--engine", engine]
    args += ["--animation", animation]
    if frames is not None or animation == STILL:
        args += ["--frames", str(frames or 1)]
    if resolution is not None:
        args += ["--resolution", str(int(resolution[0])), str(int(resolution[1]))]
    if samples is not None:
        args += ["--samples", str(int(samples))]
    if blend is not None:
        args += ["--blend", str(Path(blend).resolve())]
    if glb is not None:
        args += ["--glb", str(Path(glb).resolve())]
    for axis in cuts:
        args += ["--cut", axis]
    if em_slice:
        args.append("--em-slice")
    for cls in colour_by_cell:
        args += ["--colour-by-cell", cls]
    cmd = [*_launcher(blender), str(headless_script()), "--", *args, "--progress", "json"]

    prog = progress or Progress("none", [("render", 1.0)])
    summary: dict[str, Any] = {}
    with prog.stage("render", f"rendering {out.name}"):
        try:
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                encoding="utf-8",
                errors="replace",
            )
        except OSError as exc:
            raise VemcellError(f"Could not start Blender ({cmd[0]}): {exc}.") from None
        errors: list[str] = []

        def _drain() -> None:
            assert proc.stderr is not None
            errors.extend(line.rstrip() for line in proc.stderr)

        reader = threading.Thread(target=_drain, daemon=True)
        reader.start()
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("stage") == "done":
                    try:
                        summary = json.loads(rec.get("message") or "{}")
                    except ValueError:
                        summary = {}
                    continue
                # one line per rendered frame: few enough to pass all on
                prog.update(
                    float(rec.get("fraction", 0.0)), str(rec.get("message", "")), force=True
                )
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.kill()
            proc.wait()
            raise
        reader.join(5.0)
    if rc != 0:
        reason = next(
            (ln.split("error:", 1)[1].strip() for ln in reversed(errors) if "error:" in ln), ""
        )
        if not reason:
            tail = [ln for ln in errors if ln.strip()][-3:]
            reason = " / ".join(tail) or f"Blender exited with code {rc}"
        raise VemcellError(f"Rendering failed: {reason}")
    return summary
