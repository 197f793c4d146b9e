"""The one pipeline definition: volume → organelle labels → meshes → measurements → run folder.

The CLI (`vemcell run`), the Blender add-on's subprocess and headless rendering all call
:func:`run`. Everything is written into a temporary sibling folder that replaces ``out`` only
when the whole job has succeeded, so a failure or a cancel leaves no half-written results.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from vemcell import __version__
from vemcell.cards.card import ModelCard, resolve_model
from vemcell.errors import VemcellError
from vemcell.io.volumes import Volume, ordinary_mode, read_volume, write_tiff
from vemcell.options import RunOptions
from vemcell.progress import Progress

STAGES = [
    ("read", 2.0),
    ("restore", 0.0),  # only for a stack of every K-th section (--sparse)
    ("segment", 60.0),
    ("cells", 8.0),
    ("mesh", 22.0),
    ("measure", 5.0),
    ("write", 3.0),
    ("viewer", 2.0),
]


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (what report.json and benchmarks quote)."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1024.0 if sys.platform != "darwin" else peak / 1024.0 / 1024.0
    except ImportError:  # Windows
        import psutil

        return psutil.Process().memory_info().peak_wset / 1024.0 / 1024.0


def versions() -> dict[str, str]:
    """Versions of vemcell and the libraries that shape its results."""
    out = {"vemcell": __version__, "python": platform.python_version()}
    from importlib import metadata

    for mod in ("numpy", "scipy", "skimage", "onnxruntime", "zmesh", "trimesh", "tifffile"):
        dist = {"skimage": "scikit-image"}.get(mod, mod)
        try:  # installed distributions (zmesh has no __version__); onnxruntime-gpu is another
            out[mod] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            try:
                out[mod] = str(__import__(mod).__version__)
            except Exception:
                out[mod] = "missing"
    return out


@contextmanager
def staged_output(out: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces ``out`` on success; removed on failure."""
    final = Path(out).resolve()
    if final.exists() and not final.is_dir():
        raise VemcellError(f"'{final}' exists and is a file; --out must be a folder.")
    if final.is_dir() and any(final.iterdir()) and not (final / "report.json").exists():
        raise VemcellError(
            f"'{final}' already holds files that are not a vemcell run; choose another --out."
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    os.chmod(tmp, ordinary_mode(directory=True))
    try:
        yield tmp
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 3)


def _classes_to_mesh(card_info: dict[str, Any]) -> list[tuple[int, str, tuple]]:
    bg = card_info.get("background_class")
    return [
        (i, c["name"], tuple(c["color"])) for i, c in enumerate(card_info["classes"]) if i != bg
    ]


def run(
    volume_path: str | os.PathLike,
    out: str | os.PathLike,
    options: RunOptions | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline on one volume and write the run folder ``out``.

    Returns the report (also written as ``out/report.json``).
    """
    from vemcell.meshes import measure, mesh, scene
    from vemcell.segmentation import segment

    opt = (options or RunOptions()).validate()
    prog = progress or Progress("none", STAGES)
    timer = _Timer()
    t_start = time.perf_counter()
    card = resolve_model(opt.model)
    with staged_output(out) as tmp:
        with timer("read"), prog.stage("read", "reading the volume"):
            vol = read_volume(volume_path, voxel_size_nm=opt.voxel_size_nm)
            if not isinstance(vol.data, np.ndarray):
                vol.data = vol.array()
        sparse_report, shape_result, imaged = None, None, vol
        if opt.sparse:
            vol, shape_result, sparse_report = restore_sparse(vol, card, opt, prog, timer)
            write_tiff(tmp / "restored.tif", vol.data, vol.voxel_size_nm)
        # resolved once for the whole volume, so every single-cell crop is cut the same way
        seg_opt = replace(opt, directions=segment.resolve_directions(opt.directions, vol, card))
        seg = segment.Segmenter(card, threads=opt.threads, precision=opt.precision)
        provider = _provider(opt, card)
        instances, cells_report = None, {"separated": False, "reason": "turned off"}
        if shape_result is not None:
            seg_result = shape_result  # the shape route: labels made before the cells
            if provider is not None:
                instances, cells_report = _separate_cells(
                    vol, seg_result.labels, card, opt, provider, prog, timer
                )
        elif provider not in (None, "unet"):
            # SAM or threshold: cells first, then the U-Net on each single-cell crop (the paper).
            instances, cells_report = _separate_cells(vol, None, card, opt, provider, prog, timer)
        if shape_result is None:
            with timer("segment"), prog.stage("segment", f"segmenting with {card.name}"):
                if instances is not None:
                    seg_result = _segment_per_cell(vol, instances, card, seg_opt, seg, prog)
                else:
                    seg_result = segment.segment(
                        vol, card, **seg_opt.segmentation_kwargs(), progress=prog, segmenter=seg
                    )
        labels = seg_result.labels
        info = segment.label_info(card)
        if provider == "unet" and shape_result is None:
            instances, cells_report = _separate_cells(vol, labels, card, opt, provider, prog, timer)
        if instances is not None:
            labels = np.where(instances > 0, labels, card.background_class or 0).astype(np.uint8)
        if not np.any(
            labels != (card.background_class if card.background_class is not None else -1)
        ):
            raise VemcellError(
                f"Model {card.name} found no organelles in this volume; check the voxel size "
                f"({'×'.join(f'{v:g}' for v in vol.voxel_size_nm)} nm) and that the data "
                "resembles what the model was trained on."
            )
        classes = _classes_to_mesh(info)
        with timer("mesh"), prog.stage("mesh", "building meshes"):
            meshes = mesh.mesh_labels(
                labels,
                vol.voxel_size_nm,
                classes,
                instances=instances,
                smooth=opt.smooth,
                decimate=opt.decimate,
                progress=prog,
                workers=opt.threads,
            )
        with timer("measure"), prog.stage("measure", "measuring organelles"):
            rows = measure.measure(
                labels, vol.voxel_size_nm, classes, instances=instances, meshes=meshes
            )
        with timer("write"), prog.stage("write", "writing results"):
            write_tiff(tmp / "labels.tif", labels, vol.voxel_size_nm, metadata=info)
            if instances is not None:
                write_tiff(
                    tmp / "cells.tif",
                    instances,
                    vol.voxel_size_nm,
                    metadata={"vemcell": "instances/1", **cells_report},
                )
            scene.write_outputs(tmp, meshes, rows, mesh_format=opt.mesh_format)
            measure.write_csv(rows, tmp / "measurements.csv")
            (tmp / "measurements.json").write_text(
                json.dumps(measure.summary(rows), indent=2), encoding="utf-8"
            )
        # "input" is the stack as imaged (what the add-on and the viewer show on cut planes)
        report = _report(imaged, card, opt, seg_result, timer, t_start, cells_report, meshes)
        if sparse_report is not None:
            report["sparse"] = sparse_report
            report["notes"] = vol.notes
        (tmp / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        if opt.viewer:  # the page reads the finished run folder, report.json included
            from vemcell.view import write_viewer

            with timer("viewer"), prog.stage("viewer", "writing the browser view"):
                write_viewer(tmp)
            report["timings_s"]["viewer"] = timer.seconds["viewer"]
            report["timings_s"]["total"] = round(time.perf_counter() - t_start, 3)
            (tmp / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    prog.done(f"wrote {Path(out)}")
    return report


def restore_sparse(
    vol: Volume, card: ModelCard, opt: RunOptions, prog: Progress, timer: _Timer | None = None
) -> tuple[Volume, Any, dict[str, Any]]:
    """A stack of every K-th section (``opt.sparse``) brought to full resolution: the restored
    image (what the rest of the pipeline works on) and, on the shape route, the segmentation
    made from the kept sections (None on the image route); plus what report.json records."""
    from vemcell import sparse

    timer = timer or _Timer()

    k = sparse.check_factor(opt.sparse)
    sparse.check_sections(vol.shape[0])
    sparse.check_sparse_spacing(vol.voxel_size_nm)
    sparse.check_memory(vol.shape, k, vol.data.dtype.itemsize, extra_bytes_per_voxel=40.0)
    shape_result = None
    from vemcell.sparse.learned import resolve_method

    method = opt.sparse_method if opt.sparse_route == "image" else "linear"
    method = resolve_method(method, vol.voxel_size_nm, k, card.name)
    if opt.sparse_route == "shape":
        with timer("segment"), prog.stage("segment", f"segmenting every {k}-th section"):
            labels, shape_result = sparse.shape_route(
                vol, card, k, progress=prog, **{**opt.segmentation_kwargs(), "directions": 1}
            )
            shape_result.labels = labels
            shape_result.working_shape = tuple(labels.shape)
    with timer("restore"), prog.stage("restore", f"restoring the sections between ({method})"):
        restored = sparse.restore_volume(vol, k, method, progress=prog)
    report = {
        "factor": k,
        "route": opt.sparse_route,
        "method": method,
        "imaged_shape_zyx": list(vol.shape),
        "imaged_voxel_size_nm_zyx": list(vol.voxel_size_nm),
        "restored_shape_zyx": list(restored.shape),
        "restored": "restored.tif",
    }
    return restored, shape_result, report


def _provider(opt: RunOptions, card: ModelCard) -> str | None:
    """The foreground provider to use, or None when cells are not separated."""
    if opt.separate_cells == "off":
        return None
    from vemcell.cells import separate as cells

    if opt.foreground == "auto":
        return cells.default_provider(card)
    return opt.foreground


def _separate_cells(
    vol: Volume,
    labels: np.ndarray | None,
    card: ModelCard,
    opt: RunOptions,
    provider: str,
    prog: Progress,
    timer: _Timer,
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Cell instances, or None when fewer than two cells were found in auto mode."""
    from vemcell.cells import separate as cells

    with timer("cells"), prog.stage("cells", f"separating cells ({provider})"):
        ids, used = cells.find_cells(
            vol.array(),
            vol.voxel_size_nm,
            provider=provider,
            card=card,
            unet_labels=labels,
            progress=prog,
        )
    n = int(ids.max())
    report: dict[str, Any] = {"separated": True, "foreground": used, "cells": n}
    if n == 0 or (n == 1 and opt.separate_cells == "auto"):
        report.update(separated=False, reason=f"{n} cell(s) found")
        return None, report
    return ids, report


def _segment_per_cell(
    vol: Volume,
    instances: np.ndarray,
    card: ModelCard,
    opt: RunOptions,
    seg: Any,
    prog: Progress,
) -> Any:
    """Segment each cell's crop (with a margin) and write its labels back inside the cell."""
    from vemcell.cells import separate as cells
    from vemcell.segmentation import segment

    boxes = cells.cell_boxes(instances, cells.crop_margin_voxels(vol.voxel_size_nm))
    labels = np.full(vol.shape, card.background_class or 0, np.uint8)
    result = None
    removed: dict[str, int] = {}
    for k, (cell_id, box) in enumerate(sorted(boxes.items())):
        crop = Volume(
            data=np.ascontiguousarray(vol.data[box]),
            voxel_size_nm=vol.voxel_size_nm,
            voxel_size_source=vol.voxel_size_source,
            path=vol.path,
        )
        result = segment.segment(crop, card, **opt.segmentation_kwargs(), segmenter=seg)
        inside = instances[box] == cell_id
        labels[box][inside] = result.labels[inside]
        for name, n in result.specks_removed.items():
            removed[name] = removed.get(name, 0) + n
        prog.update((k + 1) / len(boxes), f"cell {k + 1}/{len(boxes)}")
    if result is None:
        raise VemcellError("No cells were found to segment.")
    result.labels = labels
    result.working_shape = tuple(vol.shape)
    result.specks_removed = removed
    return result


def report_header(vol: Volume, card: ModelCard) -> dict[str, Any]:
    """The ``input`` and ``model`` sections of report.json (in-memory and blockwise runs)."""
    return {
        "input": {
            "path": str(Path(vol.path).resolve()),
            "format": vol.format,
            "shape_zyx": list(vol.shape),
            "dtype": str(vol.dtype),
            "voxel_size_nm_zyx": list(vol.voxel_size_nm),
            "voxel_size_source": vol.voxel_size_source,
        },
        "model": {
            "name": card.name,
            "path": str(card.onnx_path),
            "classes": card.class_names,
            "voxel_size_nm": card.voxel_size_nm,
        },
    }


def _report(
    vol: Volume,
    card: ModelCard,
    opt: RunOptions,
    seg_result: Any,
    timer: _Timer,
    t_start: float,
    cells_report: dict[str, Any],
    meshes: list[Any],
) -> dict[str, Any]:
    params = asdict(opt)
    params["voxel_size_nm"] = list(opt.voxel_size_nm) if opt.voxel_size_nm else None
    return {
        "vemcell": "report/1",
        **report_header(vol, card),
        "segmentation": {
            "working_voxel_nm": list(seg_result.working_voxel_nm),
            "working_shape_zyx": list(seg_result.working_shape),
            "directions": seg_result.directions,
            "execution_providers": seg_result.providers,
            "precision": seg_result.precision,
            "min_size_um3": seg_result.min_size_um3,
            "specks_removed": seg_result.specks_removed,
        },
        "cells": cells_report,
        "meshes": len(meshes),
        "parameters": params,
        "timings_s": {**timer.seconds, "total": round(time.perf_counter() - t_start, 3)},
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "versions": versions(),
        "notes": vol.notes,
    }
