"""Viewer page: file size and time to the first frame in headless Chromium (software WebGL2).

For each run folder: how long ``vemcell.view.write_viewer`` takes, the page's size (meshes and
EM parts), and, over ``--repeats`` cold loads (a fresh browser profile each), the page's own
clock (``performance.now()``, from the start of navigation, so parsing the file is included):

* first frame: the model drawn and presented (``timings.firstFramePaintedMs``);
* ready: the EM volume decoded and every shader compiled (``vemcellViewer.ready``);
* cut frame: one frame with a Z cut, filled caps and the EM section, once warm.

The browser is Debian's ``chromium`` with ``chromedriver`` (selenium), headless, with
SwiftShader for WebGL2 (no GPU), a 1280×800 window, ``file://`` and no host name resolving.

Runs: ``--demo`` makes the demo's run (the embedded sample, as ``vemcell demo``), ``--synth N``
a run on an N³ synthetic volume (seed 3); or give run folders. Results go to
``benchmarks/results/bench_viewer.json``.

    .venv/bin/python benchmarks/bench_viewer.py --demo --synth 256 [--repeats 3] [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the browser the viewer's tests drive, the same

import headless_chromium  # noqa: E402

RESULTS = HERE / "results" / "bench_viewer.json"


def make_demo_run(work: Path) -> Path:
    from vemcell.pipeline import RunOptions, run
    from vemcell.synth.generator import sample_dir

    out = work / "demo" / "run"
    if not (out / "scene.json").exists():
        run(sample_dir() / "image.tif", out, RunOptions())
    return out


def make_synth_run(work: Path, n: int) -> Path:
    from vemcell.pipeline import RunOptions, run
    from vemcell.synth import generator as synth

    folder = work / f"synth{n}"
    out = folder / "run"
    if not (out / "scene.json").exists():  # as `vemcell synth DIR --shape N N N --seed 3`
        synth.write(synth.generate(shape=(n, n, n), voxel_nm=20.0, seed=3), folder)
        run(folder / "image.tif", out, RunOptions())
    return out


READY = """
const done = arguments[arguments.length - 1];
window.vemcellViewer.ready.then((t) => {
  const v = window.vemcellViewer;
  v.setCut('z', 0.5); v.setEM(true); v.screenshot({overlays: false});  // warm
  const t0 = performance.now();
  v.screenshot({overlays: false});
  done({...t, cutFrameMs: performance.now() - t0, webgl2: v.state().webgl2});
}, (e) => done({error: String(e)}));
"""


def load_once(page: Path) -> dict:
    driver = headless_chromium.start((1280, 800), 120)
    try:
        driver.get(page.resolve().as_uri())
        out = driver.execute_async_script(READY)
        out["chromium"] = driver.capabilities.get("browserVersion")
    finally:
        driver.quit()
    if "error" in out:
        raise RuntimeError(out["error"])
    return out


def bench(run_dir: Path, repeats: int) -> dict:
    from vemcell.view.page import write_viewer_stats

    t0 = time.perf_counter()
    stats = write_viewer_stats(run_dir)
    write_s = time.perf_counter() - t0
    loads = [load_once(stats.path) for _ in range(repeats)]
    report = json.loads((run_dir / "report.json").read_text())
    return {
        "run": str(run_dir),
        "volume_zyx": report["input"]["shape_zyx"],
        "objects": stats.objects,
        "faces": stats.faces,
        "page_mb": round(stats.bytes / 1e6, 2),
        "mesh_mb": round(stats.mesh_bytes / 1e6, 2),
        "em_mb": round(stats.em_bytes / 1e6, 2),
        "em_zyx": stats.em_shape_zyx,
        "write_s": round(write_s, 2),
        "first_frame_s": [round(x["firstFramePaintedMs"] / 1000, 3) for x in loads],
        "ready_s": [round(x["readyMs"] / 1000, 3) for x in loads],
        "cut_frame_ms": [round(x["cutFrameMs"], 1) for x in loads],
        "chromium": loads[0]["chromium"],
        "webgl2": loads[0]["webgl2"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="*", type=Path, help="run folders to make pages of")
    ap.add_argument("--demo", action="store_true", help="the demo's run (embedded sample)")
    ap.add_argument("--synth", type=int, action="append", default=[], metavar="N")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, help="folder for the runs made here (default: temp)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="vemcell-bench-viewer-"))
    runs = list(args.runs)
    if args.demo:
        runs.append(make_demo_run(work))
    runs += [make_synth_run(work, n) for n in args.synth]
    if not runs:
        ap.error("give run folders, --demo or --synth N")
    load_before = os.getloadavg()[0]
    rows = [bench(r, args.repeats) for r in runs]
    load_after = os.getloadavg()[0]

    print(
        f"{'run':<28} {'volume':>13} {'faces':>10} {'page MB':>8} {'mesh':>6} {'EM':>6} "
        f"{'write s':>8} {'first frame s (median, max)':>28} {'ready s':>8} {'cut frame ms':>13}"
    )
    for r in rows:
        ff = r["first_frame_s"]
        print(
            f"{Path(r['run']).parent.name + '/' + Path(r['run']).name:<28} "
            f"{'×'.join(map(str, r['volume_zyx'])):>13} {r['faces']:>10,} {r['page_mb']:>8.2f} "
            f"{r['mesh_mb']:>6.2f} {r['em_mb']:>6.2f} {r['write_s']:>8.2f} "
            f"{statistics.median(ff):>19.2f}, {max(ff):>6.2f} "
            f"{statistics.median(r['ready_s']):>8.2f} {statistics.median(r['cut_frame_ms']):>13.0f}"
        )
    cpu = platform.processor() or platform.machine()
    try:
        cpu = (
            subprocess.run(
                ["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            or cpu
        )
    except OSError:
        pass
    result = {
        "benchmark": "viewer page size and first frame (headless Chromium, SwiftShader WebGL2)",
        "command": "benchmarks/bench_viewer.py "
        + " ".join(
            [*(["--demo"] if args.demo else []), *(f"--synth {n}" for n in args.synth)]
            + [f"--repeats {args.repeats}"]
        ),
        "machine": {
            "cpu": cpu,
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            # other work on the machine slows software WebGL down: the 1-minute load average
            "load_average_before_after": [round(load_before, 2), round(load_after, 2)],
        },
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"load average (1 min) {load_before:.1f} before, {load_after:.1f} after; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
