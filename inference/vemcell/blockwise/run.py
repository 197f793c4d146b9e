"""The pipeline blockwise: the same steps as :func:`vemcell.pipeline.run`, one task per block.

Read lazily → whole-volume statistics → segmentation per block with halos → speck removal
(global components) → cell separation (:mod:`vemcell.blockwise.cells`) → OME-Zarr labels and
cells → object ids, voxel counts and components → meshes per block, welded per object →
measurements, one ``.glb`` per cell, ``scene.glb`` of the largest cells, Neuroglancer
precomputed meshes → ``report.json`` (written last: a folder without it is not a finished run).

Work arrays and the ledger of finished tasks live in ``OUT/.work`` until the run succeeds, so
running the same command again resumes where an interrupted run stopped.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

import vemcell.blockwise.cells as bcells
import vemcell.blockwise.labels as blabels
import vemcell.blockwise.meshes as bmeshes
import vemcell.blockwise.ngff as ngff
import vemcell.blockwise.segment as bseg
import vemcell.blockwise.watershed as bwatershed
from vemcell.blockwise.engine import Runner, connect
from vemcell.blockwise.plan import Block, Plan, Work, halo_for, open_or_start
from vemcell.errors import VemcellError
from vemcell.options import RunOptions
from vemcell.progress import Progress

STAGES = [  # in the order they run
    ("read", 2.0),
    ("segment", 50.0),
    ("cells", 14.0),
    ("volumes", 4.0),
    ("measure", 6.0),
    ("mesh", 20.0),
    ("write", 4.0),
]

#: How many of the largest cells ``scene.glb`` shows (every cell has its own ``.glb``).
SCENE_CELLS = 20

#: Files and folders a blockwise run writes into its output folder.
OUTPUTS = (
    "em.ome.zarr",
    "labels.ome.zarr",
    "cells.ome.zarr",
    "meshes",
    "cells",
    "neuroglancer",
    "scene.glb",
    "scene.json",
    "measurements.csv",
    "measurements.json",
    "report.json",
)


def run_blockwise(
    volume_path: str | os.PathLike,
    out: str | os.PathLike,
    options: RunOptions | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    memory_limit: str | int | None = None,
    block: tuple[int, int, int] | None = None,
    progress: Progress | None = None,
    halo: int | None = None,
    keep_work: bool = False,
) -> dict[str, Any]:
    """Run the whole pipeline on a volume of any size, block by block on dask.distributed.

    Parameters
    ----------
    volume_path, out, options
        As for :func:`vemcell.pipeline.run`.
    workers : int, optional
        Worker processes of a local cluster (default 2); ignored with ``scheduler``.
    scheduler : str, optional
        Address of a running dask scheduler (``tcp://host:8786``) whose workers see ``out``
        and the volume at the same paths.
    memory_limit : str or int, optional
        Memory of the whole local cluster (``"6GB"``), split between its workers.
    block : (z, y, x), optional
        Block size in voxels (default :data:`vemcell.blockwise.plan.DEFAULT_BLOCK`).
    halo : int, optional
        Halo of the segmentation blocks in voxels (default :func:`plan.halo_for` the model).
    keep_work : bool
        Keep ``out/.work`` (work arrays and the task ledger) after success.

    Returns
    -------
    dict
        The report, also written as ``out/report.json``.
    """
    from vemcell.cards.card import resolve_model
    from vemcell.io.lazy import open_lazy
    from vemcell.pipeline import peak_rss_mb, report_header, versions
    from vemcell.segmentation import segment as seg_mod
    from vemcell.segmentation.preprocess import sample_step

    t_start = time.perf_counter()
    opt = (options or RunOptions()).validate()
    prog = progress or Progress("none", STAGES)
    card = resolve_model(opt.model)
    vol = open_lazy(volume_path, opt.voxel_size_nm)
    voxel = tuple(float(v) for v in vol.voxel_size_nm)
    directions = seg_mod.resolve_directions(opt.directions, vol, card)
    _check_supported(vol, card, opt, directions)
    plan = Plan.make(vol.shape, block)
    halo = halo_for(card, opt.median) if halo is None else int(halo)
    final = Path(out).resolve()
    _check_out(final)
    fingerprint = {
        "vemcell": "blockwise/1",
        "input": str(Path(vol.path).resolve()),
        "shape": list(vol.shape),
        "voxel": list(voxel),
        "model": str(card.onnx_path),
        "options": asdict(opt),
        "block": list(plan.block),
        "halo": halo,
    }
    final.mkdir(parents=True, exist_ok=True)
    resumed = open_or_start(final / ".work", fingerprint)
    if not resumed:
        for name in OUTPUTS:
            p = final / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    else:
        (final / "report.json").unlink(missing_ok=True)
    work = Work(final / ".work", plan)
    blocks = plan.blocks
    bg = card.background_class
    fill = bg or 0
    n_classes = card.n_classes
    report_cells: dict[str, Any] = {"separated": False, "reason": "turned off"}

    with connect(workers, scheduler, memory_limit) as client:
        runner = Runner(client, work, prog)
        dashboard = _dashboard(client)
        n_workers = len(client.scheduler_info().get("workers", {}))
        with prog.stage("read", f"{len(blocks)} blocks on {n_workers} workers"):
            runner.begin()
            if dashboard:
                prog.update(0.0, f"dask dashboard: {dashboard}", force=True)
            stats = runner.map(
                "stats",
                bseg.stats_block,
                blocks,
                vol.path,
                voxel,
                sample_step(math.prod(vol.shape)),
            )
            scaling = bseg.scaling(stats, vol.dtype, card.normalisation)
            del stats
            # the EM at every second voxel and coarser, for viewers (the add-on's cut planes)
            em_dtype = np.uint8 if vol.dtype == np.bool_ else vol.dtype
            half = tuple(max(8, b // 2) for b in plan.block)  # a task reads one block's worth
            em_paths = ngff.create(str(final / "em.ome.zarr"), plan.shape, half, em_dtype, 1)
            if em_paths:
                level1 = Plan.make(ngff.level_shapes(plan.shape)[1], half)
                runner.map(
                    "em-level1", bseg.preview_block, level1.blocks, vol.path, voxel, em_paths[0]
                )
                ngff.pyramid(runner, "em", em_paths, half)
                ngff.write_metadata(str(final / "em.ome.zarr"), voxel, None, name="em")

        # ---- segmentation ----------------------------------------------------------------
        with prog.stage("segment", f"segmenting with {card.name}"):
            runner.begin()
            raw = work.create("labels-raw", np.uint8)
            job = bseg.SegmentJob(
                path=vol.path,
                voxel=voxel,
                model=str(card.path) if getattr(card, "path", None) else opt.model,
                threads=opt.threads,
                precision=getattr(opt, "precision", "auto"),
                scaling=scaling,
                directions=directions,
                fuse=opt.fuse,
                median_box=seg_mod.median_box(opt.median, voxel) if opt.median > 1 else (1, 1, 1),
                denoise=opt.denoise,
                tta=opt.tta,
                halo=halo,
                out=raw,
            )
            runner.map("segment", bseg.segment_block, blocks, job)
            sizes = dict(card.min_size_um3 if opt.min_size is None else opt.min_size)
            clean, removed = _remove_specks(runner, card, raw, sizes, voxel, fill)

        # ---- cells -----------------------------------------------------------------------
        cells_raw, cell_lut = None, None
        if opt.separate_cells != "off":
            with prog.stage("cells", "separating cells (unet)"):
                runner.begin()
                cells_raw, cell_lut, n_cells, flood = _separate(runner, card, clean, voxel)
                report_cells = {"separated": True, "foreground": "unet", "cells": n_cells}
                report_cells["watershed"] = {k: v for k, v in flood.items() if k != "cells"}
                if n_cells == 0 or (n_cells == 1 and opt.separate_cells == "auto"):
                    report_cells.update(separated=False, reason=f"{n_cells} cell(s) found")
                    cells_raw, cell_lut = None, None

        # ---- volumes out -----------------------------------------------------------------
        with prog.stage("volumes", "writing OME-Zarr labels"):
            runner.begin()
            lab_paths = ngff.create(
                str(final / "labels.ome.zarr"), plan.shape, plan.block, np.uint8
            )
            cell_paths = None
            if cells_raw is not None:
                cell_paths = ngff.create(
                    str(final / "cells.ome.zarr"), plan.shape, plan.block, np.uint16
                )
            runner.map(
                "final",
                final_block,
                blocks,
                clean,
                cells_raw,
                cell_lut,
                fill,
                lab_paths[0],
                cell_paths[0] if cell_paths else None,
            )
            ngff.pyramid(runner, "labels", lab_paths, plan.block)
            info = seg_mod.label_info(card)
            ngff.write_metadata(
                str(final / "labels.ome.zarr"),
                voxel,
                [
                    {"value": i, "name": c["name"], "color": c["color"]}
                    for i, c in enumerate(info["classes"])
                ],
                name="organelles",
            )
            if cell_paths:
                ngff.pyramid(runner, "cells", cell_paths, plan.block)
                ngff.write_metadata(str(final / "cells.ome.zarr"), voxel, None, name="cells")

        # ---- objects, meshes, measurements ----------------------------------------------
        classes = [
            (i, c["name"], tuple(c["color"])) for i, c in enumerate(info["classes"]) if i != bg
        ]
        wanted = sorted(i for i, _, _ in classes)
        shift = 1 if wanted[0] == 0 else 0
        lut = np.zeros(256, np.uint32)
        lut[wanted] = np.asarray(wanted) + shift
        objects = bmeshes.ObjectIds(
            lab_paths[0], cell_paths[0] if cell_paths else None, lut, n_classes + shift
        )
        with prog.stage("measure", "counting voxels and pieces"):
            runner.begin()
            obj_path = work.create("objects", np.uint32)
            counts: Counter[int] = Counter()
            for c in runner.map("objects", bmeshes.objects_block, blocks, objects, obj_path):
                counts.update(c)
            if not counts:
                raise VemcellError(
                    f"Model {card.name} found no organelles in this volume; check the voxel size "
                    f"({'×'.join(f'{v:g}' for v in voxel)} nm) and that the data "
                    "resembles what the model was trained on."
                )
            comps = blabels.label(runner, "objects-cc", obj_path, connectivity=26)
            n_components = np.bincount(comps.values[1:], minlength=max(counts) + 1)

        from vemcell.meshes import mesh as mesh_mod

        smooth = mesh_mod.auto_smooth(voxel) if opt.smooth is None else int(opt.smooth)
        names = {i: (n, mesh_mod.norm_color(c)) for i, n, c in classes}
        max_cell = max((objects.split(o)[0] for o in counts), default=0)
        with prog.stage("mesh", "building meshes"):
            runner.begin()
            folder = work.root / "pieces"
            folder.mkdir(exist_ok=True)
            per_block = runner.map(
                "mesh-blocks", bmeshes.mesh_block, blocks, plan, obj_path, voxel, str(folder)
            )
            where: dict[int, list[int]] = {}
            for b, faces in zip(blocks, per_block, strict=True):
                for oid in faces:
                    where.setdefault(oid, []).append(b.index)
            items, meta = [], {}
            for oid in sorted(where):
                cell, cls = objects.split(oid)
                cname, color = names[cls]
                in_cell = cell_paths is not None and cell > 0
                name = f"{mesh_mod.cell_prefix(cell, max_cell)}/{cname}" if in_cell else cname
                meta[oid] = (name, int(cell) if in_cell else None, cls, cname, color)
                items.append((oid, mesh_mod.safe_name(name.replace("/", "__")), where[oid]))
            (final / "meshes").mkdir(exist_ok=True)
            mjob = bmeshes.MeshJob(
                str(folder),
                voxel,
                smooth,
                float(opt.decimate or 0.0),
                opt.mesh_format,
                str(final),
                True,
            )
            merged = runner.map(
                "mesh-objects",
                bmeshes.merge_object,
                items,
                mjob,
                key=lambda it: str(it[0]),
                label="object",
            )

        # ---- tables and scenes -----------------------------------------------------------
        with prog.stage("write", "writing measurements and scenes"):
            runner.begin()
            rows, manifest = _tables(counts, n_components, merged, meta, voxel)
            from vemcell.meshes import measure as measure_mod

            measure_mod.write_csv(rows, final / "measurements.csv")
            (final / "measurements.json").write_text(
                json.dumps(measure_mod.summary(rows), indent=2), encoding="utf-8"
            )
            glbs = _scenes(manifest)
            runner.map(
                "glb",
                bmeshes.write_glb,
                glbs,
                str(final),
                key=lambda it: it[0].replace("/", "_"),
                label="scene",
            )
            bmeshes.write_neuroglancer_info(str(final), manifest)
            scene = {
                "vemcell": "scene/1",
                "units": "um",
                "up_axis": "Z",
                "glb": "scene.glb",
                "scene_cells": sorted({o["cell"] for o in glbs[0][1] if o["cell"] is not None}),
                "cell_glbs": {
                    str(k[len("cells/cell_") : -4].lstrip("0") or "0"): k for k, _ in glbs[1:]
                },
                "objects": [
                    {k: v for k, v in o.items() if k != "oid"} | {"neuroglancer_id": o["oid"]}
                    for o in manifest
                ],
                "cells": sorted({o["cell"] for o in manifest if o["cell"] is not None}),
                "classes": [{"index": i, "name": n, "color": list(c)} for i, n, c in classes],
                "neuroglancer": "neuroglancer/mesh",
            }
            (final / "scene.json").write_text(json.dumps(scene, indent=2) + "\n", encoding="utf-8")
        workers_peak = _workers_peak(client)

    params = asdict(opt)
    params["voxel_size_nm"] = list(opt.voxel_size_nm) if opt.voxel_size_nm else None
    report = {
        "vemcell": "report/1",
        "mode": "blockwise",
        **report_header(vol, card),
        "segmentation": {
            "working_voxel_nm": list(voxel),
            "working_shape_zyx": list(vol.shape),
            "directions": directions,
            "min_size_um3": sizes,
            "specks_removed": removed,
            "normalisation": asdict(scaling),
            "precision": getattr(opt, "precision", "auto"),
        },
        "cells": report_cells,
        "meshes": len(merged),
        "watertight": int(sum(m["watertight"] for m in merged)),
        "em_preview": "em.ome.zarr" if em_paths else None,
        "blockwise": {
            "block_zyx": list(plan.block),
            "grid_zyx": list(plan.grid),
            "blocks": len(blocks),
            "halo": halo,
            "workers": n_workers,
            "scheduler": scheduler or "local",
            "dashboard": dashboard,
            "resumed": resumed,
        },
        "parameters": params,
        "timings_s": {**runner.seconds, "total": round(time.perf_counter() - t_start, 3)},
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "workers_peak_rss_mb": workers_peak,
        "versions": versions(),
        "notes": vol.notes,
    }
    if not keep_work:
        shutil.rmtree(work.root, ignore_errors=True)
    (final / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    prog.done(f"wrote {final}")
    return report


# --------------------------------------------------------------------------------------------


def _check_supported(vol: Any, card: Any, opt: RunOptions, directions: int) -> None:
    """One sentence for what the blockwise route does not do (yet)."""
    from vemcell.cells import separate as cells

    t = float(card.voxel_size_nm or min(vol.voxel_size_nm))
    target = (max(t, float(vol.voxel_size_nm[0])) if directions == 1 else t, t, t)
    if any(abs(float(v) - w) > 1e-6 * w for v, w in zip(vol.voxel_size_nm, target, strict=True)):
        raise VemcellError(
            "Blockwise runs need the volume on the model's grid "
            f"({'×'.join(f'{w:g}' for w in target)} nm voxels, this one has "
            f"{'×'.join(f'{v:g}' for v in vol.voxel_size_nm)} nm); "
            "resample it first or run it in memory."
        )
    if getattr(opt, "sparse", None):
        raise VemcellError(
            "Blockwise runs do not restore sparse sections yet; run --sparse in memory "
            "(or restore the stack first with vemcell reconstruct)."
        )
    if opt.denoise not in ("none", "median"):
        raise VemcellError("Blockwise runs denoise with --denoise none or median only.")
    need = card.divisor
    if min(vol.shape[1:] if directions == 1 else vol.shape) < need:
        raise VemcellError(
            f"The volume ({' × '.join(map(str, vol.shape))} voxels) is smaller than the model "
            f"needs: at least {need} voxels along each sliced axis."
        )
    if opt.separate_cells != "off":
        provider = cells.default_provider(card) if opt.foreground == "auto" else opt.foreground
        if provider != "unet" or cells.membrane_split(card, provider):
            raise VemcellError(
                "Blockwise runs separate cells from the U-Net foreground of a model without a "
                "membrane class only; pass --foreground unet or --cells off."
            )
        if card.background_class is None:
            raise VemcellError(
                "This model has no background class, so blockwise runs cannot separate cells; "
                "pass --cells off."
            )


def _check_out(final: Path) -> None:
    if final.exists() and not final.is_dir():
        raise VemcellError(f"'{final}' exists and is a file; --out must be a folder.")
    if (
        final.is_dir()
        and any(final.iterdir())
        and not (final / "report.json").exists()
        and not (final / ".work").exists()
    ):
        raise VemcellError(
            f"'{final}' already holds files that are not a vemcell run; choose another --out."
        )


def _remove_specks(
    runner: Runner,
    card: Any,
    raw: str,
    sizes: dict[str, float],
    voxel: tuple[float, float, float],
    fill: int,
) -> tuple[str, dict[str, int]]:
    """Pieces of a class smaller than its minimum go to the class around them (one pass)."""
    from vemcell.segmentation.segment import min_size_voxels

    need = min_size_voxels(card, sizes, voxel) if any(v > 0 for v in sizes.values()) else {}
    if not need:
        return raw, {}
    plan = runner.work.plan
    value_lut = np.zeros(256, np.uint8)
    need_by_value = np.zeros(257, np.int64)
    for cls, n in need.items():
        value_lut[cls] = cls + 1
        need_by_value[cls + 1] = n
    lab = blabels.label(runner, "specks", raw, connectivity=26, value_lut=value_lut)
    small = (lab.values > 0) & (lab.sizes < need_by_value[lab.values])
    small[0] = False
    if not small.any():
        return raw, {}
    hist = np.zeros((lab.n + 1, card.n_classes), np.int64)
    for part in runner.map(
        "specks-around", bseg.face_histograms, plan.blocks, lab, plan, raw, small, card.n_classes
    ):
        for gid, h in part.items():
            hist[gid] += h
    replace_with = np.zeros(lab.n + 1, np.uint16)
    ids = np.flatnonzero(small)
    replace_with[ids] = np.where(hist[ids].sum(axis=1) > 0, hist[ids].argmax(axis=1), fill) + 1
    clean = runner.work.create("labels-clean", np.uint8)
    runner.map("specks-apply", bseg.clean_block, plan.blocks, lab, plan, raw, replace_with, clean)
    removed = Counter(card.class_names[int(v) - 1] for v in lab.values[ids])
    return clean, dict(sorted(removed.items()))


def _separate(
    runner: Runner, card: Any, labels: str, voxel: tuple[float, float, float]
) -> tuple[str, np.ndarray, int, dict]:
    """Cell ids of the whole volume (see :mod:`vemcell.blockwise.cells`), and what the
    watershed reports (:mod:`vemcell.blockwise.watershed`)."""
    from vemcell.cells.separate import DEFAULT_WORK_NM

    work, plan = runner.work, runner.work.plan
    v = np.asarray(voxel, float)
    radius = round(30.0 / v[1])  # unet_foreground's open_nm
    opened = work.create("fg-open", np.uint8)
    runner.map(
        "fg-open",
        bcells.open_block,
        plan.blocks,
        plan,
        labels,
        int(card.background_class),
        radius,
        opened,
    )
    background = np.array([1, 0], np.uint8)
    holes2d = blabels.label(runner, "holes2d", opened, connectivity=4, value_lut=background)
    filled = work.create("fg-fill2d", np.uint8)
    runner.map("fg-fill2d", bcells.fill_block, plan.blocks, plan, opened, holes2d, filled)
    holes3d = blabels.label(runner, "holes3d", filled, connectivity=6, value_lut=background)
    filled3 = work.create("fg-fill3d", np.uint8)
    runner.map("fg-fill3d", bcells.fill_block, plan.blocks, plan, filled, holes3d, filled3)
    source = bcells.MaskSource(filled3)
    min_vox = int(0.05 * 1e9 / float(np.prod(v)))  # unet_foreground's min_object_um3
    if min_vox > 1:
        pieces = blabels.label(runner, "fg-pieces", filled3, connectivity=6)
        keep = pieces.sizes >= min_vox
        keep[0] = False
        source = bcells.MaskSource(filled3, pieces, keep)
    f = np.maximum(1.0, np.floor(DEFAULT_WORK_NM / v))
    if np.any(f > 1):
        coarse_shape = tuple(int(np.ceil(n / k)) for n, k in zip(plan.shape, f, strict=True))
        steps = int(f.max()) + 1
    else:
        coarse_shape, steps = plan.shape, 0
    wv = tuple(float(x) for x in v * np.asarray(plan.shape) / np.asarray(coarse_shape))
    # coarse blocks cover about one full-resolution block each, at least MIN_BLOCK a side
    # (their halos are wide: see vemcell.blockwise.watershed)
    cplan = Plan.make(
        coarse_shape,
        tuple(max(bwatershed.MIN_BLOCK, int(b // k)) for b, k in zip(plan.block, f, strict=True)),
    )
    coarse = work.create("coarse-mask", np.uint8, coarse_shape, cplan.block)
    runner.map("cells-zoom", bcells.coarse_block, cplan.blocks, plan, coarse_shape, source, coarse)
    cids = work.create("coarse-cells", np.uint16, coarse_shape, cplan.block)
    flood = bwatershed.separate(runner, cplan, coarse, bwatershed.Settings.defaults(wv), cids)
    cells_raw = work.create("cells-raw", np.uint16)
    present = runner.map(
        "cells-grid", bcells.upsample_block, plan.blocks, plan, cids, source, steps, cells_raw
    )
    ids = np.unique(np.concatenate(present))
    ids = ids[ids > 0]
    lut = np.zeros(int(ids.max(initial=0)) + 1, np.uint16)
    lut[ids] = np.arange(1, len(ids) + 1)
    return cells_raw, lut, len(ids), flood


def final_block(
    block: Block,
    clean: str,
    cells_raw: str | None,
    cell_lut: np.ndarray | None,
    fill: int,
    labels_out: str,
    cells_out: str | None,
) -> int:
    """Level 0 of labels.ome.zarr (organelles inside cells) and cells.ome.zarr for one block."""
    import zarr

    labels = np.asarray(zarr.open_array(clean, mode="r")[block.box])
    if cells_raw is not None and cells_out is not None and cell_lut is not None:
        cells = cell_lut[np.asarray(zarr.open_array(cells_raw, mode="r")[block.box])]
        labels = np.where(cells > 0, labels, fill).astype(np.uint8)
        zarr.open_array(cells_out, mode="r+")[block.box] = cells
    zarr.open_array(labels_out, mode="r+")[block.box] = labels
    return 0


def _tables(
    counts: Counter,
    n_components: np.ndarray,
    merged: list[dict],
    meta: dict,
    voxel: tuple[float, float, float],
) -> tuple[list[dict], list[dict]]:
    """measurements rows (as :func:`vemcell.meshes.measure.measure`) and the scene objects."""
    voxel_um3 = math.prod(voxel) / 1e9
    by_oid = {m["oid"]: m for m in merged}
    rows, objects = [], []
    for oid in sorted(counts):
        name, cell, cls, cname, color = meta.get(oid, (None, None, None, None, None))
        if name is None:
            continue
        volume = counts[oid] * voxel_um3
        m = by_oid.get(oid)
        area = m["area_um2"] if m else None
        row = {
            "cell": cell if cell is not None else "",
            "class_index": cls,
            "class_name": cname,
            "voxels": int(counts[oid]),
            "volume_um3": volume,
            "surface_area_um2": area,
            "sphericity": bmeshes.sphericity(volume, area),
            "components": int(n_components[oid]),
        }
        rows.append(row)
        if m:
            objects.append(
                {
                    "oid": oid,
                    "name": name,
                    "cell": cell,
                    "class_index": cls,
                    "class_name": cname,
                    "color": [round(float(c), 4) for c in color],
                    "mesh": m["mesh"],
                    "vertices": m["vertices"],
                    "faces": m["faces"],
                    "watertight": m["watertight"],
                    "measurements": row,
                }
            )
    rows.sort(key=lambda r: (-1 if r["cell"] == "" else r["cell"], r["class_index"]))
    return rows, objects


def _scenes(objects: list[dict]) -> list[tuple[str, list[dict]]]:
    """(file, objects) of scene.glb (the largest cells) and of one glb per cell."""
    from vemcell.meshes.mesh import cell_prefix

    per_cell: dict[int, list[dict]] = {}
    for o in objects:
        if o["cell"] is not None:
            per_cell.setdefault(o["cell"], []).append(o)
    if not per_cell:
        return [("scene.glb", objects)]
    size = {c: sum(o["measurements"]["voxels"] for o in objs) for c, objs in per_cell.items()}
    largest = sorted(per_cell, key=lambda c: -size[c])[:SCENE_CELLS]
    scene = [o for o in objects if o["cell"] is None or o["cell"] in largest]
    width = max(per_cell)
    return [("scene.glb", scene)] + [
        (f"cells/{cell_prefix(c, width)}.glb", per_cell[c]) for c in sorted(per_cell)
    ]


def _dashboard(client: Any) -> str | None:
    """The dask dashboard's address (served only when bokeh is installed)."""
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return None
    return getattr(client, "dashboard_link", None)


def _workers_peak(client: Any) -> dict[str, float]:
    """Peak resident memory of each worker process in MB."""

    def peak() -> float:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    try:
        return {k: round(v, 1) for k, v in client.run(peak).items()}
    except Exception:
        return {}
