"""The one-click path timed stage by stage: volume -> run folder -> Blender scene built.

For each size, a synthetic C. merolae volume (20 nm, the default model's grid) goes through
:func:`vemcell.pipeline.run` and the add-on's scene import (``bpy``) in this one process, once
per setting, so the ratio between settings is measured on the same machine in the same state:

``before``
    the segmentation as it was before 2026-12: batches of 8 tiles of 256² with a quarter
    overlap, float32 weights;
``today``
    the defaults: one whole slice at a time, INT8 weights on CPUs where the card ships them.

Prints a table (wall seconds per stage, peak memory, the ratio to ``before``) and writes JSON.

    .venv/bin/python benchmarks/bench_pipeline.py [--sizes 128 256] [--settings before today]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STAGES = ["read", "segment", "cells", "mesh", "measure", "write", "total", "blender", "one_click"]


def settings(name: str):
    """A context in which :class:`Segmenter` takes this setting's defaults."""
    from contextlib import contextmanager

    from vemcell.segmentation import segment

    @contextmanager
    def patched():
        original = segment.Segmenter.__init__
        if name == "before":

            def init(self, card, threads=None, batch_size=8, tile=256, precision="fp32"):
                original(self, card, threads, batch_size, tile, precision)

            segment.Segmenter.__init__ = init
        elif name != "today":
            raise SystemExit(f"unknown setting {name!r}")
        try:
            yield
        finally:
            segment.Segmenter.__init__ = original

    return patched()


def addon_package():
    """The Blender add-on loaded as a package from addon/ (as Blender loads the extension)."""
    import bpy  # noqa: F401  (Blender as a module must be imported before the add-on)

    spec = importlib.util.spec_from_file_location(
        "vemcell_addon", REPO / "addon" / "__init__.py", submodule_search_locations=[]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["vemcell_addon"] = mod
    spec.loader.exec_module(mod)
    from importlib import import_module

    return import_module("vemcell_addon.core.pipeline")


def run_once(volume: Path, out: Path, setting: str, load) -> dict:
    import bpy

    from vemcell.options import RunOptions
    from vemcell.pipeline import run

    with settings(setting):
        t0 = time.perf_counter()
        report = run(volume, out, RunOptions(threads=2))
    t1 = time.perf_counter()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    load(bpy.context.scene, out)
    blender = time.perf_counter() - t1
    t = dict(report["timings_s"])
    t["blender"] = round(blender, 2)
    t["one_click"] = round(t1 - t0 + blender, 2)
    return {
        "timings_s": t,
        "peak_rss_mb": report["peak_rss_mb"],
        "precision": report["segmentation"].get("precision"),
        "meshes": report["meshes"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--settings", nargs="+", default=["before", "today"])
    ap.add_argument("--json", default=str(HERE / "results" / "bench_pipeline.json"))
    args = ap.parse_args()
    from vemcell.synth import generator as synth

    load = addon_package().load_result
    rows = []
    with tempfile.TemporaryDirectory(prefix="vemcell-bench-") as td:
        for size in sorted(args.sizes):
            folder = Path(td) / f"synth_{size}"
            synth.write(synth.generate(shape=(size,) * 3, voxel_nm=20.0, seed=size), folder)
            for setting in args.settings:
                print(f"{size}³ {setting} …", file=sys.stderr, flush=True)
                r = run_once(
                    folder / "image.tif", Path(td) / f"run_{size}_{setting}", setting, load
                )
                rows.append({"size": size, "setting": setting, **r})
    print(f"{'size':>6} {'setting':>8} " + " ".join(f"{s:>9}" for s in STAGES) + "  peak MB  ×")
    for r in rows:
        base = next(b for b in rows if b["size"] == r["size"] and b["setting"] == args.settings[0])
        r["speedup_one_click"] = round(
            base["timings_s"]["one_click"] / r["timings_s"]["one_click"], 2
        )
        t = r["timings_s"]
        print(
            f"{r['size']:>5}³ {r['setting']:>8} "
            + " ".join(f"{t.get(s, 0.0):>9.2f}" for s in STAGES)
            + f" {r['peak_rss_mb']:>8.0f} {r['speedup_one_click']:>5.2f}"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"baseline": args.settings[0], "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
