"""Blockwise runs (vemcell.blockwise on dask.distributed): time per stage and peak memory of all
processes together, by volume size and number of workers.

The volume is a synthetic lattice of touching cells (10 nm voxels, radius 0.7 µm, 1.3 µm
apart, so neighbours touch and the watershed has to split them), each with a nucleus and three
mitochondria, written block by block into a Zarr store (it is never whole in memory). It is
segmented by a pointwise four-class test model (``tests/tiny_models.py``: intensity bands), so
the numbers measure the blockwise machinery (reading, halos, global components, cells,
meshes, OME-Zarr); the U-Net's own cost per block is measured separately with ``--unet``.

Memory is sampled every 0.2 s over this process and all its children (the dask nannies and
workers): the peak of the sum, and each worker's own peak.

    .venv/bin/python benchmarks/bench_blockwise.py --sizes 256 512 --workers 1 2
    .venv/bin/python benchmarks/bench_blockwise.py --sizes 1024 --workers 2
    .venv/bin/python benchmarks/bench_blockwise.py --unet        # one 128³ block of cmerolae6
    .venv/bin/python benchmarks/bench_blockwise.py --equal 384   # in memory vs blockwise
    .venv/bin/python benchmarks/bench_blockwise.py --equal-watershed 1024 --block 64

Prints a table and writes JSON to ``benchmarks/results/bench_blockwise.json`` (rows merged by
size and workers, so runs can be made one at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "bench_blockwise.json"
VOXEL_NM = 10.0
RADIUS, SPACING = 70, 130  # voxels: 0.7 µm cells, 1.3 µm apart (they touch)

#: report.json step names -> the stages of the table
GROUPS = {
    "stats": "read",
    "segment": "segment",
    "specks": "specks",
    "fg": "cells",
    "holes2d": "cells",
    "holes3d": "cells",
    "cells": "cells",
    "final": "write",
    "labels": "write",
    "objects": "measure",
    "mesh": "mesh",
    "glb": "write",
}
COLUMNS = ["read", "segment", "specks", "cells", "measure", "mesh", "write", "driver", "total"]


def centres(shape):
    """Cell centres on a jittered lattice (seeded: the same volume every time)."""
    rng = np.random.default_rng(7)
    axes = [np.arange(RADIUS // 2, n - RADIUS // 2 + 1, SPACING) for n in shape]
    out = []
    for c in np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3):
        out.append(c + rng.integers(-8, 9, 3))
    return np.asarray(out)


def paint(box, cells):
    """Intensities (uint8) of one box: resin 0.1, cytoplasm 0.5, mitochondria 0.65, nucleus 0.9.

    Each cell is painted only inside its bounding box (everything it paints lies there).
    """
    img = np.full(tuple(s.stop - s.start for s in box), 0.1, np.float32)
    lo = np.array([s.start for s in box])
    hi = np.array([s.stop for s in box])
    for k, c in enumerate(cells):
        a = np.maximum(c - RADIUS, lo)
        b = np.minimum(c + RADIUS + 1, hi)
        if np.any(a >= b):
            continue
        z, y, x = np.ogrid[a[0] : b[0], a[1] : b[1], a[2] : b[2]]
        sub = img[tuple(slice(i - o, j - o) for i, j, o in zip(a, b, lo, strict=True))]
        d2 = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2
        sub[d2 < RADIUS**2] = 0.5
        sub[d2 < 25**2] = 0.9
        rng = np.random.default_rng(k)
        for _ in range(3):  # mitochondria: ellipsoids 10 × 10 × 30 voxels
            m = c + rng.integers(-40, 41, 3)
            e = ((z - m[0]) / 10.0) ** 2 + ((y - m[1]) / 10.0) ** 2 + ((x - m[2]) / 30.0) ** 2
            sub[(e < 1) & (d2 > 30**2) & (d2 < (RADIUS - 8) ** 2)] = 0.65
    noise = np.random.default_rng(int(lo.sum())).normal(0, 0.02, img.shape).astype(np.float32)
    return (np.clip(img + noise, 0, 1) * 255).astype(np.uint8)


def make_volume(path: Path, size: int, block: int = 256) -> Path:
    """The synthetic volume as a Zarr array, written block by block."""
    import zarr

    from vemcell.blockwise.plan import iter_boxes

    shape = (size,) * 3
    if path.exists():
        return path
    arr = zarr.create_array(str(path), shape=shape, chunks=(block,) * 3, dtype=np.uint8)
    cells = centres(shape)
    for box in iter_boxes(shape, (block,) * 3):
        arr[box] = paint(box, cells)
    return path


def band_model(folder: Path) -> Path:
    """The pointwise four-class test model on a 10 nm grid, mitochondria under 500 voxels
    removed as specks."""
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_models import make_band_model

    card = make_band_model(
        folder,
        name="band4",
        centres=(0.1, 0.5, 0.65, 0.9),
        class_names=("background", "cytoplasm", "mitochondrion", "nucleus"),
        tile=64,
        voxel_size_nm=VOXEL_NM,
        normalisation={"method": "scale"},
    )
    data = json.loads(card.read_text())
    data["min_size_um3"] = {"mitochondrion": 0.0005}
    card.write_text(json.dumps(data))
    return card


class MemorySampler:
    """Peak resident memory of this process and all its children, summed, every 0.2 s."""

    def __init__(self) -> None:
        import psutil

        self.me = psutil.Process()
        self.peak_total = 0
        self.peak_each: dict[int, int] = {}
        self.loads: list[float] = []  # the 1-minute load average: was the machine quiet?
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for p in [self.me, *self.me.children(recursive=True)]:
                try:
                    rss = p.memory_info().rss
                except Exception:
                    continue
                total += rss
                self.peak_each[p.pid] = max(self.peak_each.get(p.pid, 0), rss)
            self.peak_total = max(self.peak_total, total)
            self.loads.append(os.getloadavg()[0])
            self._stop.wait(0.2)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_one(size: int, workers: int, work: Path, memory_limit: str, block: int) -> dict:
    from vemcell.blockwise import run_blockwise
    from vemcell.options import RunOptions

    vol = make_volume(work / f"synth_{size}.zarr", size)
    card = band_model(work / "models")
    out = work / f"run_{size}_{workers}"
    shutil.rmtree(out, ignore_errors=True)
    opt = RunOptions(model=str(card), threads=1, voxel_size_nm=(VOXEL_NM,) * 3)
    t0 = time.perf_counter()
    with MemorySampler() as mem:
        report = run_blockwise(
            vol, out, opt, workers=workers, memory_limit=memory_limit, block=(block,) * 3
        )
    wall = time.perf_counter() - t0
    steps = report["timings_s"]
    stages = dict.fromkeys(COLUMNS, 0.0)
    for name, sec in steps.items():
        if name == "total":
            continue
        stages[GROUPS.get(name.split("-")[0], "write")] += sec
    stages["total"] = round(wall, 1)
    stages["driver"] = round(wall - sum(v for k, v in steps.items() if k != "total"), 1)
    n_blocks = report["blockwise"]["blocks"]
    worker_peaks = sorted(report["workers_peak_rss_mb"].values())
    row = {
        "size": size,
        "workers": workers,
        "voxels": size**3,
        "blocks": n_blocks,
        "block": block,
        "memory_limit": memory_limit,
        "stages_s": {k: round(v, 1) for k, v in stages.items()},
        "steps_s": steps,
        "segment_s_per_block": round(steps["segment"] * workers / n_blocks, 2),
        "merge_s": round(sum(v for k, v in steps.items() if k.endswith("-faces")), 1),
        "io_mvox_per_s": round(size**3 / 1e6 / max(steps.get("final", 0.0), 1e-9), 1),
        "peak_total_mb": round(mem.peak_total / 1e6, 0),
        "load_avg_mean": round(float(np.mean(mem.loads)), 2) if mem.loads else None,
        "peak_driver_mb": round(report["peak_rss_mb"], 0),
        "peak_worker_mb": worker_peaks,
        "cells": report["cells"].get("cells"),
        "meshes": report["meshes"],
        "watertight": report["watertight"],
    }
    shutil.rmtree(out, ignore_errors=True)
    return row


def unet_block(block: int = 128) -> dict:
    """Seconds for one block of the shipped U-Net (cmerolae6, 3 directions, its halo), 1 thread."""
    import zarr

    from vemcell.blockwise import segment as bseg
    from vemcell.blockwise.plan import Block, halo_for
    from vemcell.cards.card import resolve_model

    card = resolve_model("cmerolae6")
    halo = halo_for(card, 3)
    with tempfile.TemporaryDirectory() as d:
        n = block + 2 * halo
        vol = zarr.create_array(f"{d}/v.zarr", shape=(n,) * 3, chunks=(n,) * 3, dtype=np.uint8)
        vol[...] = paint(tuple(slice(0, n) for _ in range(3)), centres((n,) * 3))
        out = zarr.create_array(f"{d}/o.zarr", shape=(n,) * 3, chunks=(n,) * 3, dtype=np.uint8)
        middle = Block(0, (0, 0, 0), (halo,) * 3, (halo + block,) * 3)
        job = bseg.SegmentJob(
            path=f"{d}/v.zarr",
            voxel=(20.0,) * 3,
            model="cmerolae6",
            threads=1,
            precision="auto",
            scaling=bseg.Scaling("scale", factor=255.0),
            directions=3,
            fuse="mean",
            median_box=(3, 3, 3),
            denoise="none",
            tta=False,
            halo=halo,
            out=f"{d}/o.zarr",
        )
        t0 = time.perf_counter()
        bseg.segment_block(middle, job)
        sec = time.perf_counter() - t0
        del out
    return {
        "block": block,
        "halo": halo,
        "seconds": round(sec, 1),
        "voxels_per_s": round(block**3 / sec),
    }


def equality(size: int, work: Path, block: int, workers: int = 2) -> dict:
    """The same volume in memory and blockwise: labels, cells (one to one) and measurements."""
    import csv

    import tifffile
    import zarr

    from vemcell import pipeline
    from vemcell.blockwise import run_blockwise
    from vemcell.options import RunOptions

    vol = make_volume(work / f"synth_{size}.zarr", size)
    card = band_model(work / "models")
    opt = RunOptions(model=str(card), threads=1, voxel_size_nm=(VOXEL_NM,) * 3)
    mem, blk = work / f"equal_{size}_memory", work / f"equal_{size}_blockwise"
    for d in (mem, blk):
        shutil.rmtree(d, ignore_errors=True)
    t0 = time.perf_counter()
    pipeline.run(vol, mem, opt)
    t_mem = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = run_blockwise(vol, blk, opt, workers=workers, memory_limit="6GB", block=(block,) * 3)
    t_blk = time.perf_counter() - t0
    la = tifffile.imread(mem / "labels.tif")
    lb = np.asarray(zarr.open_array(str(blk / "labels.ome.zarr" / "0"), mode="r")[...])
    labels_equal = float((la == lb).mean())
    del la, lb
    ca = tifffile.imread(mem / "cells.tif").astype(np.int64)
    cb = np.asarray(zarr.open_array(str(blk / "cells.ome.zarr" / "0"), mode="r")[...])
    pair, count = np.unique(ca * 65536 + cb, return_counts=True)
    size_a = np.bincount(ca.ravel())
    size_b = np.bincount(cb.ravel().astype(np.int64))
    del ca, cb
    a_ids, b_ids = pair // 65536, pair % 65536
    ious = []
    for i in range(1, len(size_a)):
        sel = (a_ids == i) & (b_ids > 0)
        if not sel.any():
            ious.append(0.0)
            continue
        k = np.flatnonzero(sel)[np.argmax(count[sel])]
        j = b_ids[k]
        ious.append(count[k] / (size_a[i] + size_b[j] - count[k]))

    def rows(d: Path) -> dict:
        with open(d / "measurements.csv", newline="", encoding="utf-8") as fh:
            return {(r["cell"], r["class_name"]): r for r in csv.DictReader(fh)}

    ra, rb = rows(mem), rows(blk)
    within = sum(
        1
        for k, a in ra.items()
        if k in rb
        and all(
            abs(float(rb[k][c]) - float(a[c])) <= 0.005 * abs(float(a[c]))
            for c in ("voxels", "volume_um3", "surface_area_um2")
        )
    )
    return {
        "size": size,
        "block": block,
        "blocks": report["blockwise"]["blocks"],
        "labels_equal": round(labels_equal, 6),
        "cells_memory": len(size_a) - 1,
        "cells_blockwise": len(size_b) - 1,
        "min_cell_iou": round(float(min(ious, default=1.0)), 5),
        "cells_iou_099": int(sum(i >= 0.99 for i in ious)),
        "measurements": len(ra),
        "measurements_within_0_5pct": within,
        "watershed": report["cells"].get("watershed"),
        "memory_s": round(t_mem, 1),
        "blockwise_s": round(t_blk, 1),
    }


def watershed_equality(size: int, block: int, workers: int = 2) -> dict:
    """The cell watershed alone, blockwise against ``separate_cells``, on the working grid of a
    ``size``³ lattice volume (every 4th voxel: 40 nm) in small blocks, so halos really cut."""
    import zarr
    from distributed import Client, LocalCluster

    from vemcell.blockwise import watershed
    from vemcell.blockwise.engine import Runner
    from vemcell.blockwise.plan import Plan, Work
    from vemcell.cells.separate import separate_cells

    n = size // 4
    z, y, x = np.ogrid[:n, :n, :n]
    mask = np.zeros((n,) * 3, bool)
    for c in centres((size,) * 3) / 4.0:
        mask |= (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < (RADIUS / 4.0) ** 2
    voxel = (4 * VOXEL_NM,) * 3
    t0 = time.perf_counter()
    ref = separate_cells(mask, voxel, work_nm=None)
    t_mem = time.perf_counter() - t0
    with (
        tempfile.TemporaryDirectory() as d,
        LocalCluster(n_workers=workers, threads_per_worker=1, memory_limit="3GB") as lc,
        Client(lc) as client,
    ):
        plan = Plan.make(mask.shape, (block,) * 3)
        work = Work(d, plan)
        src = work.create("mask", np.uint8)
        zarr.open_array(src, mode="r+")[...] = mask
        out = work.create("cells", np.uint16)
        t0 = time.perf_counter()
        rep = watershed.separate(
            Runner(client, work), plan, src, watershed.Settings.defaults(voxel), out
        )
        t_blk = time.perf_counter() - t0
        got = np.asarray(zarr.open_array(out, mode="r")[...])
    return {
        "working_grid": n,
        "block": block,
        "cells_memory": int(ref.max()),
        "cells_blockwise": int(got.max()),
        "voxels_equal": round(float((got == ref).mean()), 7),
        "identical": bool(np.array_equal(got, ref)),
        "watershed": rep,
        "memory_s": round(t_mem, 1),
        "blockwise_s": round(t_blk, 1),
    }


def table(rows: list[dict]) -> str:
    head = (
        ["size", "workers", "blocks"]
        + COLUMNS
        + ["s/block seg", "merge s", "peak all MB", "peak worker MB", "cells", "watertight", "load"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: (r["size"], r["workers"])):
        s = r["stages_s"]
        lines.append(
            "| "
            + " | ".join(
                [f"{r['size']}³", str(r["workers"]), str(r["blocks"])]
                + [f"{s[c]:.1f}" for c in COLUMNS]
                + [
                    f"{r['segment_s_per_block']:.2f}",
                    f"{r['merge_s']:.1f}",
                    f"{r['peak_total_mb']:.0f}",
                    "/".join(f"{w:.0f}" for w in r["peak_worker_mb"]),
                    str(r["cells"]),
                    f"{r['watertight']}/{r['meshes']}",
                    str(r.get("load_avg_mean", "")),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--memory-limit", default="6GB")
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--work", type=Path, help="folder for volumes and runs (default: a temp dir)")
    ap.add_argument(
        "--unet", action="store_true", help="time one block of cmerolae6 (with its halo)"
    )
    ap.add_argument(
        "--equal",
        type=int,
        metavar="SIZE",
        help="run a SIZE³ volume in memory and blockwise (2 workers) and compare them",
    )
    ap.add_argument(
        "--equal-watershed",
        type=int,
        metavar="SIZE",
        help="the cell watershed alone on a SIZE³ lattice's working grid, blockwise in --block "
        "blocks against in memory",
    )
    args = ap.parse_args()
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": []}
    if args.equal:
        work = args.work or Path(tempfile.mkdtemp(prefix="bench_blockwise_"))
        work.mkdir(parents=True, exist_ok=True)
        eq = equality(args.equal, work, args.block)
        old["equality"] = [e for e in old.get("equality", []) if e["size"] != eq["size"]] + [eq]
        print(json.dumps(eq, indent=1))
    elif args.equal_watershed:
        eq = watershed_equality(args.equal_watershed, args.block)
        old["watershed_equality"] = eq
        print(json.dumps(eq, indent=1))
    elif args.unet:
        old["unet_block"] = unet_block(args.block)
        print(json.dumps(old["unet_block"]))
    else:
        work = args.work or Path(tempfile.mkdtemp(prefix="bench_blockwise_"))
        work.mkdir(parents=True, exist_ok=True)
        for size in args.sizes:
            for w in args.workers:
                row = run_one(size, w, work, args.memory_limit, args.block)
                old["rows"] = [r for r in old["rows"] if (r["size"], r["workers"]) != (size, w)] + [
                    row
                ]
                print(json.dumps(row["stages_s"]), row["peak_total_mb"], flush=True)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    old["command"] = (
        "benchmarks/bench_blockwise.py --sizes 256 512 --workers 1 2; --sizes 1024 --workers 2"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(old, indent=2) + "\n")
    if old["rows"]:
        print(table(old["rows"]))


if __name__ == "__main__":
    main()
