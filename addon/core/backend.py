"""Running the vemcell backend (``python -m vemcell run``) as a subprocess.

Blender never imports the heavy pipeline (onnxruntime, scipy, meshing) itself: the backend runs
in a child process that prints one JSON progress object per line, so the UI stays responsive,
Esc can stop it, and a crash in the pipeline can never take Blender down.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ADDON_DIR = Path(__file__).resolve().parents[1]


class BackendError(Exception):
    """The backend failed or could not start; the message is one sentence for the user."""


def backend_dir() -> Path | None:
    """The folder holding the ``vemcell`` backend package, or None when it is installed.

    The built extension bundles it as ``<extension>/backend/vemcell``; a source checkout keeps
    it in ``inference/vemcell`` beside ``addon/``.
    """
    for cand in (ADDON_DIR / "backend", ADDON_DIR.parent / "inference"):
        if (cand / "vemcell" / "__init__.py").is_file():
            return cand
    return None


def extension_site_packages() -> Path | None:
    """Where Blender (4.2+) unpacks an extension's bundled wheels, if it exists.

    Blender installs the wheels of every extension into one shared
    ``<extensions>/.local/lib/pythonX.Y/site-packages``.
    """
    try:
        import bpy

        root = bpy.utils.user_resource("EXTENSIONS")
    except Exception:
        return None
    site = (
        Path(root)
        / ".local"
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "site-packages"
    )
    return site if site.is_dir() else None


def ensure_importable() -> None:
    """Put the bundled backend on this process's ``sys.path`` (for model cards, volume reading)."""
    bdir = backend_dir()
    if bdir is not None and str(bdir) not in sys.path:
        sys.path.insert(0, str(bdir))


# The add-on reads the backend's light modules (run options, animation names) in Blender itself;
# importing this module first (``core/__init__``) makes ``vemcell`` importable for the others.
ensure_importable()
from vemcell.options import RunOptions  # noqa: E402


def backend_python(custom: str = "") -> str:
    """The Python that runs the backend: a user-chosen one, else Blender's own.

    Blender's bundled interpreter (``sys.executable`` inside Blender) has numpy, and the
    extension's wheels provide the rest.
    """
    if custom:
        p = Path(custom).expanduser()
        if not p.is_file():
            raise BackendError(f"The backend Python '{custom}' does not exist (see Preferences).")
        return str(p)
    return sys.executable


def backend_env(custom_python: str = "") -> dict[str, str]:
    """Environment for the child: the bundled backend and the extension wheels on PYTHONPATH."""
    env = dict(os.environ)
    paths = []
    bdir = backend_dir()
    if bdir is not None:
        paths.append(str(bdir))
    if not custom_python:
        site = extension_site_packages()
        if site is not None:
            paths.append(str(site))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_arguments(volume: str | os.PathLike, out_dir: Path, options: RunOptions) -> list[str]:
    """The ``vemcell run`` command line (after ``python -m vemcell``) for one volume."""
    args = ["run", str(volume), "--out", str(out_dir), "--progress", "json"]
    return args + options.to_arguments()


@dataclass
class ProgressEvent:
    """One progress line from the backend."""

    stage: str
    fraction: float
    message: str


class BackendJob:
    """A running ``vemcell`` child process whose progress is read without blocking.

    Reader threads drain stdout (JSON progress lines) and stderr (error text) into queues so the
    caller can poll from a Blender timer (:meth:`poll`) or wait (:meth:`wait`).

    Parameters
    ----------
    arguments : sequence of str
        Arguments after ``python -m vemcell``.
    python : str
        The interpreter to run.
    env : dict, optional
        Environment of the child (default :func:`backend_env`).
    command : list of str, optional
        Run this exact command instead (anything that prints the same JSON lines).
    """

    def __init__(
        self,
        arguments: Sequence[str],
        python: str | None = None,
        env: dict[str, str] | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        self.command = list(command or [python or sys.executable, "-m", "vemcell", *arguments])
        self._events: queue.Queue[ProgressEvent] = queue.Queue()
        self._stderr: list[str] = []
        self._other: list[str] = []
        self.last = ProgressEvent("starting", 0.0, "Starting the backend")
        self.cancelled = False
        kwargs: dict = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        else:
            kwargs["start_new_session"] = True
        try:
            self.proc = subprocess.Popen(
                self.command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env=env if env is not None else backend_env(),
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                **kwargs,
            )
        except OSError as exc:
            raise BackendError(f"Could not start the backend ({self.command[0]}): {exc}.") from None
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
                ev = ProgressEvent(
                    str(rec.get("stage", "")),
                    float(rec.get("fraction", 0.0)),
                    str(rec.get("message", "")),
                )
            except (ValueError, TypeError, AttributeError):
                self._other.append(line)
                continue
            self._events.put(ev)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if line.strip():
                self._stderr.append(line.rstrip())

    def poll(self) -> list[ProgressEvent]:
        """New progress events since the last call (never blocks)."""
        out = []
        while True:
            try:
                ev = self._events.get_nowait()
            except queue.Empty:
                break
            out.append(ev)
            self.last = ev
        return out

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def cancel(self, grace_s: float = 3.0) -> None:
        """Stop the child (and anything it started); waits up to ``grace_s`` then kills it."""
        self.cancelled = True
        if self.proc.poll() is not None:
            return
        try:
            if os.name == "nt":
                self.proc.terminate()
            else:
                os.killpg(self.proc.pid, 15)
        except (ProcessLookupError, PermissionError, OSError):
            pass
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            try:
                if os.name == "nt":
                    self.proc.kill()
                else:
                    os.killpg(self.proc.pid, 9)
            except (ProcessLookupError, PermissionError, OSError):
                pass
            self.proc.wait()

    def finish(self) -> None:
        """After the process ended: drain the readers, raise :class:`BackendError` on failure."""
        for t in self._threads:
            t.join(5.0)
        self.poll()
        rc = self.proc.returncode
        if rc == 0 or self.cancelled:
            return
        raise BackendError(self.error_message(rc))

    def error_message(self, rc: int | None = None) -> str:
        """The backend's own one-line error, else the end of what it printed."""
        lines = [ln for ln in self._stderr if ln.strip()]
        for ln in reversed(lines):
            if "error:" in ln:
                return ln.split("error:", 1)[1].strip()
        if lines:
            return lines[-1].strip()
        rc = self.proc.returncode if rc is None else rc
        return f"The backend stopped with exit code {rc} and no message."

    def wait(
        self,
        on_progress: Callable[[ProgressEvent], None] | None = None,
        interval_s: float = 0.1,
    ) -> None:
        """Block until the child ends, reporting progress; raises :class:`BackendError`."""
        try:
            while self.running:
                for ev in self.poll():
                    if on_progress:
                        on_progress(ev)
                time.sleep(interval_s)
        except KeyboardInterrupt:
            self.cancel()
            raise
        for ev in self.poll():
            if on_progress:
                on_progress(ev)
        self.finish()


def new_run_dir(base: str | os.PathLike | None, volume: str) -> tuple[Path, Path]:
    """A fresh ``(job_dir, run_dir)`` pair; the backend creates ``run_dir`` atomically.

    Deleting ``job_dir`` removes everything a cancelled run left behind.
    """
    root = Path(base) if base else Path(tempfile.gettempdir()) / "vemcell_runs"
    root.mkdir(parents=True, exist_ok=True)
    stem = Path(volume).name.split(".")[0] or "volume"
    job = Path(tempfile.mkdtemp(prefix=f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-", dir=root))
    return job, job / "run"


def discard(job_dir: Path) -> None:
    """Remove a cancelled or failed job's folder."""
    shutil.rmtree(job_dir, ignore_errors=True)


def run_sync(
    volume: str | os.PathLike,
    options: RunOptions,
    base_dir: str | os.PathLike | None = None,
    python: str = "",
    on_progress: Callable[[ProgressEvent], None] | None = None,
) -> Path:
    """Run the pipeline on ``volume`` to completion (headless use); returns the run directory."""
    job_dir, run_dir = new_run_dir(base_dir, str(volume))
    job = BackendJob(
        run_arguments(volume, run_dir, options), backend_python(python), backend_env(python)
    )
    try:
        job.wait(on_progress)
    except BaseException:
        discard(job_dir)
        raise
    if not (run_dir / "scene.json").is_file():
        discard(job_dir)
        raise BackendError("The backend finished but wrote no scene.json.")
    return run_dir


def viewer_page(run_dir: str | os.PathLike, python: str = "") -> Path:
    """The run folder's ``viewer.html``, written by the backend (``vemcell view``) if missing.

    Runs written with ``--no-viewer`` or before the viewer existed get their page on demand.
    """
    page = Path(run_dir) / "viewer.html"
    if not page.is_file():
        args = ["view", str(run_dir), "--out", str(page), "--no-open", "--progress", "json"]
        BackendJob(args, backend_python(python), backend_env(python)).wait()
        if not page.is_file():
            raise BackendError("The backend finished but wrote no viewer.html.")
    return page
