"""Meshing speed: ``vemcell.mesh.mesh_labels`` vs scikit-image marching cubes per label.

Baseline (run in the same process on the same volumes): ``skimage.measure.marching_cubes``
looped over every object, each on its bounding-box crop padded by one voxel (the usual way to
mesh a label volume with scikit-image). ``mesh_labels`` is timed for meshing only
(``smooth=0, decimate=0``, the like-for-like comparison) with its default worker processes
(every CPU on volumes of 48 M voxels or more) and in one process, and once with its defaults
(Taubin smoothing + watertight decimation), the cost a user actually pays. Every mesh is
checked with ``trimesh.Trimesh.is_watertight``. Figures are Mvox/s (voxels of the label
volume per second) and the speed-up over the baseline; each time is the best of ``--repeats``
rounds in which they run in turn.

Volumes: a synthetic *C. merolae* volume (vemcell.synth: cells with nucleus, plastid,
mitochondrion, peroxisome), a synthetic volume with many small organelles, and the five
UroCell FIB-SEM label volumes in ../shared/data/urocell_fibsem_labels (skipped when absent),
each meshed per class and per (cell or instance) × class.

    .venv/bin/python benchmarks/bench_mesh.py [--repeats 2] [--no-full] [--real N]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REAL = HERE.parent.parent / "shared" / "data" / "urocell_fibsem_labels"
CLASS_COLOURS = [(1.0, 1.0, 1.0, 0.3), (0.5, 0.5, 0.5, 1), (0, 0.8, 0, 1), (1, 0.9, 0, 1)]


def skimage_baseline(ids: np.ndarray, voxel: tuple[float, float, float]) -> list[tuple]:
    """Marching cubes on each object's padded bounding-box crop (scikit-image)."""
    from scipy import ndimage as ndi
    from skimage.measure import marching_cubes

    out = []
    for oid, box in enumerate(ndi.find_objects(ids), start=1):
        if box is None:
            continue
        crop = np.pad(ids[box] == oid, 1).astype(np.float32)
        verts, faces, _, _ = marching_cubes(crop, 0.5, spacing=voxel)
        out.append((verts, faces))
    return out


def best_of_interleaved(fns: list, repeats: int) -> list[tuple[float, object]]:
    """Best time of each function over ``repeats`` rounds, run in turn (A B A B ...).

    Interleaving keeps a change in machine load (shared CPUs) from favouring one side.
    """
    best = [float("inf")] * len(fns)
    results: list[object] = [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            results[i] = fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return list(zip(best, results, strict=True))


def watertight_count(meshes: list[tuple]) -> int:
    import trimesh

    return sum(trimesh.Trimesh(v, f, process=False).is_watertight for v, f in meshes)


def many_organelles(shape=(160, 160, 160), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Eight touching cells (class 1) holding a nucleus and ~60 small organelles each."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint8)
    cells = np.zeros(shape, np.uint16)
    zz, yy, xx = np.indices(shape, dtype=np.float32)
    half = np.array(shape) / 4
    cid = 0
    for cz in (1, 3):
        for cy in (1, 3):
            for cx in (1, 3):
                cid += 1
                c = np.array([cz, cy, cx]) * half
                d2 = ((zz - c[0]) / half[0]) ** 2 + ((yy - c[1]) / half[1]) ** 2
                d2 += ((xx - c[2]) / half[2]) ** 2
                inside = d2 <= 1.1
                cells[inside & (cells == 0)] = cid
    labels[cells > 0] = 1
    for cid in range(1, 9):
        pts = np.argwhere(cells == cid)
        centre = pts.mean(axis=0)
        r = 0.35 * half.min()
        nuc = ((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2) <= r**2
        labels[nuc & (cells == cid)] = 2
        for k in range(60):
            p = pts[rng.integers(len(pts))]
            cls = 3 + k % 3
            rad = rng.uniform(2.0, 5.0)
            lo = np.maximum(p - 6, 0)
            hi = np.minimum(p + 7, shape)
            sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
            d2 = (zz[sl] - p[0]) ** 2 + (yy[sl] - p[1]) ** 2 + (xx[sl] - p[2]) ** 2
            m = (d2 <= rad**2) & (cells[sl] == cid) & (labels[sl] == 1)
            labels[sl][m] = cls
    return labels, cells


def datasets(n_real: int) -> list[dict]:
    from vemcell.synth import generator as synth

    out = []
    s = synth.generate(shape=(128, 192, 192), voxel_nm=20.0, seed=1)
    out.append(
        {
            "name": "synth C. merolae 128x192x192",
            "labels": s.labels,
            "instances": s.cells,
            "voxel": tuple(s.voxel_size_nm),
        }
    )
    labels, cells = many_organelles()
    out.append(
        {
            "name": "synth many organelles 160^3",
            "labels": labels,
            "instances": cells,
            "voxel": (20.0, 20.0, 20.0),
        }
    )
    if REAL.is_dir():
        from vemcell.io.volumes import read_volume

        for path in sorted(REAL.glob("*_organelles.tif"))[:n_real]:
            vol = read_volume(path, kind="labels")
            inst_path = path.with_name(path.name.replace("_organelles", "_mito_instances"))
            inst = read_volume(inst_path, kind="labels").array() if inst_path.exists() else None
            out.append(
                {
                    "name": f"UroCell {path.stem.replace('_organelles', '')}",
                    "labels": vol.array(),
                    "instances": inst,
                    "voxel": tuple(vol.voxel_size_nm),
                }
            )
        vols = [ds["labels"] for ds in out if ds["name"].startswith("UroCell")]
        if len(vols) >= 4:
            # 2×2×2 blocks of the real volumes (mirrored to vary them): 512³, the size at which
            # mesh_labels splits marching cubes over worker processes.
            big = np.block(
                [
                    [[vols[0], vols[1]], [vols[2], vols[3]]],
                    [[vols[-1], vols[0][::-1]], [vols[1][::-1], vols[2][::-1]]],
                ]
            )
            out.append(
                {
                    "name": "UroCell 2x2x2 blocks 512^3",
                    "labels": np.ascontiguousarray(big),
                    "instances": None,
                    "voxel": tuple(vol.voxel_size_nm),
                }
            )
    else:
        print(f"note: {REAL} is absent; real FIB-SEM volumes skipped")
    return out


def run_case(name: str, labels, instances, voxel, repeats: int, full: bool) -> dict:
    import trimesh

    from vemcell.meshes import mesh

    n_cls = int(labels.max())
    classes = [(i, f"class_{i}", CLASS_COLOURS[(i - 1) % 4]) for i in range(1, n_cls + 1)]
    ids = mesh.object_ids(labels, classes, instances).ids

    def baseline():
        ids_ = mesh.object_ids(labels, classes, instances).ids
        return skimage_baseline(ids_, voxel)

    def ours(workers=None):
        return mesh.mesh_labels(
            labels, voxel, classes, instances=instances, smooth=0, decimate=0, workers=workers
        )

    (t_base, base_meshes), (t_ours, items), (t_one, _) = best_of_interleaved(
        [baseline, ours, lambda: ours(1)], repeats
    )
    n_vox = labels.size
    row = {
        "volume": name,
        "mode": "per cell x class" if instances is not None else "per class",
        "shape": list(labels.shape),
        "voxel_nm": list(voxel),
        "objects": len(items),
        "faces": int(sum(len(it.faces) for it in items)),
        "skimage_s": round(t_base, 3),
        "mesh_labels_s": round(t_ours, 3),
        "skimage_mvox_s": round(n_vox / t_base / 1e6, 2),
        "mesh_labels_mvox_s": round(n_vox / t_ours / 1e6, 2),
        "speedup": round(t_base / t_ours, 2),
        "mesh_labels_1proc_s": round(t_one, 3),
        "speedup_1proc": round(t_base / t_one, 2),
        "workers": mesh.default_workers() if n_vox >= mesh.PARALLEL_MIN_VOXELS else 1,
        "watertight": f"{sum(it.to_trimesh().is_watertight for it in items)}/{len(items)}",
        "skimage_watertight": f"{watertight_count(base_meshes)}/{len(base_meshes)}",
    }
    assert len(base_meshes) == len(items) == int(np.count_nonzero(np.bincount(ids.ravel())[1:]))
    if full:
        t0 = time.perf_counter()
        full_items = mesh.mesh_labels(labels, voxel, classes, instances=instances)
        t_full = time.perf_counter() - t0
        closed = sum(
            trimesh.Trimesh(it.vertices, it.faces, process=False).is_watertight for it in full_items
        )
        row.update(
            {
                "full_s": round(t_full, 3),
                "full_mvox_s": round(n_vox / t_full / 1e6, 2),
                "full_faces": int(sum(len(it.faces) for it in full_items)),
                "full_watertight": f"{closed}/{len(full_items)}",
            }
        )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-full", action="store_true", help="skip the smoothing+decimation runs")
    ap.add_argument("--real", type=int, default=5, help="how many real volumes (default all 5)")
    ap.add_argument("--out", default=str(HERE / "results" / "bench_mesh.json"))
    args = ap.parse_args()

    rows = []
    for ds in datasets(args.real):
        modes = [None] + ([ds["instances"]] if ds["instances"] is not None else [])
        for inst in modes:
            row = run_case(
                ds["name"], ds["labels"], inst, ds["voxel"], args.repeats, not args.no_full
            )
            rows.append(row)
            print(
                f"{row['volume']:<30} {row['mode']:<17} obj {row['objects']:>4}  "
                f"skimage {row['skimage_mvox_s']:>6.2f}  "
                f"mesh_labels {row['mesh_labels_mvox_s']:>6.2f}"
                f" Mvox/s  x{row['speedup']:<5} (1 process x{row['speedup_1proc']:<5})"
                f" watertight {row['watertight']}"
                f" (skimage {row['skimage_watertight']})"
                + (
                    f"  full {row['full_mvox_s']:.2f} Mvox/s {row['full_watertight']}"
                    if "full_s" in row
                    else ""
                ),
                flush=True,
            )
    speedups = [r["speedup"] for r in rows]
    geo = float(np.exp(np.mean(np.log(speedups))))
    print()
    print(
        "| volume | mode | objects | skimage Mvox/s | mesh_labels Mvox/s | speed-up |"
        " 1 process | watertight | full (smooth+decimate) Mvox/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['volume']} | {r['mode']} | {r['objects']} | {r['skimage_mvox_s']} | "
            f"{r['mesh_labels_mvox_s']} | {r['speedup']}× | {r['speedup_1proc']}× | "
            f"{r['watertight']} | "
            f"{r.get('full_mvox_s', '')} |"
        )
    geo_one = float(np.exp(np.mean(np.log([r["speedup_1proc"] for r in rows]))))
    print(
        f"\ngeometric-mean speed-up {geo:.2f}× ({geo_one:.2f}× in one process) "
        f"over {len(rows)} cases"
    )
    result = {
        "benchmark": "bench_mesh",
        "baseline": "skimage.measure.marching_cubes per object on padded bounding-box crops",
        "candidate": "vemcell.mesh.mesh_labels (zmesh multi-label), smooth=0 decimate=0",
        "full": "vemcell.mesh.mesh_labels defaults (Taubin auto + decimate 0.5)",
        "repeats": args.repeats,
        "machine": {"python": platform.python_version(), "cpu": platform.processor()},
        "rows": rows,
        "geomean_speedup": round(geo, 3),
        "geomean_speedup_1proc": round(geo_one, 3),
        "min_speedup": min(speedups),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
