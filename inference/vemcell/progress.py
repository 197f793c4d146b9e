"""Progress reporting: a bar on a terminal, JSON lines for the Blender add-on, plain lines for
logs, or nothing.

Stages carry weights so ``fraction`` is always the overall fraction of the whole job, which is
what a single progress bar in Blender needs. The JSON-lines protocol is one object per line on
stdout, ``{"stage": str, "fraction": float in [0, 1], "message": str}``; the add-on's backend
reader and ``vemcell render`` parse it. The terminal bar is tqdm's.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

MODES = ("bar", "json", "text", "none")


class Progress:
    """Report overall progress of a job made of weighted stages.

    Parameters
    ----------
    mode : {"bar", "json", "text", "none"}
        ``bar`` draws a tqdm bar on stderr (only when it is a terminal); ``json`` writes one
        object per line on stdout: ``{"stage", "fraction", "message"}``; ``text`` writes one
        plain line per update on stdout (``vemcell:  42.0% segment: ...``, for logs).
    stages : sequence of (name, weight)
        The stages this job will go through, in order.
    stream : file, optional
        Where to write instead of stdout (json, text) or stderr (bar).
    """

    def __init__(
        self,
        mode: str = "bar",
        stages: Sequence[tuple[str, float]] = (),
        stream: TextIO | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown progress mode {mode!r}")
        self.mode = mode
        self.stream = stream
        total = sum(w for _, w in stages) or 1.0
        self._offsets: dict[str, tuple[float, float]] = {}
        acc = 0.0
        for name, weight in stages:
            self._offsets[name] = (acc / total, weight / total)
            acc += weight
        self._stage = ""
        self._last_emit = 0.0
        self._last_fraction = -1.0
        self._bar: Any = None  # the tqdm bar while one is drawn

    @contextmanager
    def stage(self, name: str, message: str = "") -> Iterator[Progress]:
        """Enter a stage; on exit it is reported complete."""
        self._stage = name
        self._offsets.setdefault(name, (self._overall(0.0), 0.0))
        self.update(0.0, message or name, force=True)
        try:
            yield self
        except BaseException:
            self.close()  # the error message then starts on a line of its own
            raise
        self.update(1.0, message or name, force=True)

    def _overall(self, fraction: float) -> float:
        start, width = self._offsets.get(self._stage, (0.0, 0.0))
        return min(1.0, max(0.0, start + width * min(max(fraction, 0.0), 1.0)))

    def update(self, fraction: float, message: str = "", force: bool = False) -> None:
        """Report ``fraction`` (0..1) of the current stage done (at most every 0.2 s unless
        ``force``)."""
        overall = self._overall(fraction)
        now = time.monotonic()
        if not force and (now - self._last_emit < 0.2 or overall == self._last_fraction):
            return
        self._last_emit, self._last_fraction = now, overall
        if self.mode == "json":
            out = self.stream or sys.stdout
            record = {"stage": self._stage, "fraction": round(overall, 4), "message": message}
            out.write(json.dumps(record) + "\n")
            out.flush()
        elif self.mode == "text":
            out = self.stream or sys.stdout
            out.write(f"vemcell: {overall * 100:5.1f}% {self._stage}: {message}\n")
            out.flush()
        elif self.mode == "bar":
            self._draw(overall, f"{self._stage}: {message}")

    def _draw(self, overall: float, text: str) -> None:
        """The tqdm bar at ``overall``; it ends (with a newline) when the job is complete."""
        out = self.stream or sys.stderr
        if self._bar is None:
            if not (hasattr(out, "isatty") and out.isatty()):
                return
            from tqdm import tqdm

            self._bar = tqdm(
                total=1.0,
                initial=overall,
                desc=text,
                file=out,
                bar_format="{percentage:5.1f}%|{bar:30}| {elapsed} {desc}",
                dynamic_ncols=True,
                mininterval=0.0,
                leave=True,
            )
        else:
            self._bar.set_description_str(text, refresh=False)
            self._bar.n = overall
            self._bar.refresh()
        if overall >= 1.0:
            self.close()

    def close(self) -> None:
        """End the terminal bar (it stays on screen); a later update starts a new one."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def done(self, message: str = "done") -> None:
        """Report the whole job finished."""
        self._stage = "done"
        self._offsets["done"] = (1.0, 0.0)
        self.update(1.0, message, force=True)


def advance(progress: Any, fraction: float, message: str) -> None:
    """Send ``fraction`` (0..1 of the current step) to a :class:`Progress`, a callable
    ``(fraction, message)`` or nothing: how library functions report without knowing which."""
    if progress is None:
        return
    if hasattr(progress, "update"):
        progress.update(fraction, message)
    else:
        progress(fraction, message)


class Span:
    """The part ``lo..hi`` of a caller's progress, handed to a step that reports its own 0..1
    (as a :class:`Progress` with ``update`` or as a plain callable), so steps in a row never
    send the bar backwards."""

    def __init__(self, progress: Any, lo: float, hi: float) -> None:
        self.progress, self.lo, self.hi = progress, float(lo), float(hi)

    def update(self, fraction: float, message: str = "", force: bool = False) -> None:
        f = min(max(float(fraction), 0.0), 1.0)
        advance(self.progress, self.lo + (self.hi - self.lo) * f, message)

    __call__ = update
