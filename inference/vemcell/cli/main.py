"""The ``vemcell`` command line: one entry point, one sub-command module per verb.

Every failure the user can fix is one line on stderr and a nonzero exit; ``--debug`` shows the
traceback. Each verb is a module that defines ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``: the runtime's own are listed in :data:`COMMANDS`; other packages (the
training verbs of ``vemcell_train``) register theirs as ``vemcell.commands`` entry points, so the
runtime never imports them by name.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback
from importlib import metadata
from types import ModuleType

from vemcell import __version__
from vemcell.errors import VemcellError

# sub-command name -> module under vemcell.cli
COMMANDS: dict[str, str] = {
    "info": "info",
    "segment": "segment",
    "pseudolabel": "pseudolabel",
    "run": "run",
    "mesh": "mesh",
    "measure": "measure",
    "demo": "demo",
    "models": "models",
    "synth": "synth",
    "cells": "cells",
    "evaluate": "evaluate",
    "min-size": "min_size",
    "render": "render",
    "view": "view",
    "reconstruct": "reconstruct",
    "sparse-eval": "sparse_eval",
    "video": "video",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by the docs and the tests)."""
    parser = argparse.ArgumentParser(
        prog="vemcell",
        description="One-click 3D cell models from volume electron microscopy.",
    )
    parser.add_argument("--version", action="version", version=f"vemcell {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common.add_argument(
        "--progress",
        choices=["bar", "json", "none"],
        default="bar",
        help="progress on a terminal (bar), as JSON lines on stdout (json), or none",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in verbs().items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP, parents=[common])
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


ENTRY_POINT_GROUP = "vemcell.commands"


def verbs() -> dict[str, ModuleType]:
    """Every verb: the runtime's own, then those other installed packages register."""
    found = {name: importlib.import_module(f"vemcell.cli.{mod}") for name, mod in COMMANDS.items()}
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name not in found:
            try:
                found[ep.name] = ep.load()
            except ImportError:  # a registered package that is not importable here
                continue
    return found


def _sigterm_as_interrupt() -> None:
    """Let SIGTERM (how the Blender add-on cancels) unwind like Ctrl-C, so cleanup runs."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a test runner thread)
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    _sigterm_as_interrupt()
    try:
        return int(args._module.run(args) or 0)
    except VemcellError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"vemcell {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"vemcell {args.command}: cancelled.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout (`| head`) stopped early: not an error to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush stays quiet
        return 141
    except MemoryError:
        if args.debug:
            traceback.print_exc()
        print(
            f"vemcell {args.command}: error: out of memory; try a smaller volume or crop.",
            file=sys.stderr,
        )
        return 3
    except Exception as exc:  # a bug: still one line, the traceback on request
        if args.debug:
            traceback.print_exc()
        print(
            f"vemcell {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(run again with --debug for the traceback and report it).",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
