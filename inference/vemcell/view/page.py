"""Build the self-contained viewer page of a run folder and write it (atomically).

The page is ``static/viewer.html`` with the stylesheet, three.js (one classic-script bundle),
the viewer script, a JSON manifest (scene.json's objects, classes and cells, the run's model and
voxel size, the bounds) and two base64 blocks (the packed meshes and, when the run's volume can
still be read, the EM atlas) put in where ``@@NAME@@`` stands. Nothing in it refers to anything
outside the file, and its Content-Security-Policy forbids the browser to fetch anything.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import vemcell.view.pack as pack
from vemcell import __version__
from vemcell.errors import VemcellError
from vemcell.io.volumes import atomic_path

STATIC = Path(__file__).resolve().parent / "static"
VIEWER_FILE = "viewer.html"


@dataclass
class ViewerStats:
    """What went into a page (for the CLI's summary and the benchmark)."""

    path: Path
    bytes: int
    objects: int
    faces: int
    faces_in_run: int
    mesh_bytes: int
    em_bytes: int
    em_shape_zyx: list[int] | None
    em_note: str


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VemcellError(
            f"'{path.parent}' has no {path.name}; give a run folder that 'vemcell run' wrote."
        ) from None
    except (OSError, ValueError) as exc:
        raise VemcellError(f"Cannot read the {what} {path}: {exc}.") from None


def _load_mesh(run_dir: Path, obj: dict[str, Any], glb: Any) -> tuple[np.ndarray, np.ndarray]:
    """An object's (vertices, faces) in µm, Z up: its mesh file, else its node in scene.glb."""
    import trimesh

    rel = obj.get("mesh")
    path = run_dir / rel if rel else None
    if path is not None and path.is_file():
        m = trimesh.load(path, process=False, force="mesh")
        if path.suffix.lower() == ".stl":
            m.merge_vertices()
        return np.asarray(m.vertices, np.float32), np.asarray(m.faces, np.int64)
    if glb is not None and obj["name"] in glb.graph.nodes_geometry:
        from vemcell.meshes.scene import gltf_to_zup

        transform, geom = glb.graph[obj["name"]]
        m = glb.geometry[geom].copy()
        m.apply_transform(transform)
        return gltf_to_zup(m.vertices).astype(np.float32), np.asarray(m.faces, np.int64)
    raise VemcellError(
        f"The mesh of {obj['name']} ({rel}) is missing from {run_dir} and from its scene.glb."
    )


def _volume_box(report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """The volume's extent in µm (X, Y, Z): voxel centres at index × size, so ±half a voxel."""
    inp = report.get("input") or {}
    shape, vox = inp.get("shape_zyx"), inp.get("voxel_size_nm_zyx")
    if not shape or not vox:
        return None
    n = np.asarray(shape[::-1], float)
    v = np.asarray(vox[::-1], float) / 1000.0
    return -0.5 * v, (n - 0.5) * v


def _em_section(
    report: dict[str, Any], em_voxels: int
) -> tuple[bytes | None, dict[str, Any] | None, str]:
    """The EM atlas, its manifest entry and a note; (None, None, why) when there is none."""
    inp = report.get("input") or {}
    path, vox = inp.get("path"), inp.get("voxel_size_nm_zyx")
    if em_voxels <= 0:
        return None, None, "No EM section: it was left out of this page (--no-em)."
    if not path or not vox:
        return None, None, "No EM section: the run's report.json does not name its volume."
    if not Path(path).exists():
        return (
            None,
            None,
            (
                f"No EM section: the run's volume {Path(path).name} was not found when this page "
                "was made."
            ),
        )
    from vemcell.io.volumes import read_volume

    try:
        vol = read_volume(path, voxel_size_nm=tuple(vox))
    except (VemcellError, OSError, ValueError) as exc:
        return None, None, f"No EM section: the run's volume could not be read ({exc})."
    expected = inp.get("shape_zyx")
    if expected and list(vol.shape) != list(expected):
        return (
            None,
            None,
            (
                f"No EM section: {Path(path).name} is now {'×'.join(map(str, vol.shape))} voxels, "
                f"not the {'×'.join(map(str, expected))} the run was made from."
            ),
        )
    data, meta = pack.em_atlas(vol.data, tuple(vox), max_voxels=em_voxels)
    shape = meta["shape_zyx"]
    note = ""
    if shape != list(vol.shape):
        note = (
            f"EM section at {'×'.join(map(str, shape))} voxels (z y x), resampled from "
            f"{'×'.join(map(str, vol.shape))}."
        )
    meta["note"] = note
    meta["source"] = Path(path).name
    return data, meta, note


def _script_safe(text: str) -> str:
    """Text that cannot close the <script> element it is put in."""
    return re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE)


def build_viewer(
    run_dir: str | os.PathLike,
    *,
    max_faces: int = pack.DEFAULT_MAX_FACES,
    em_voxels: int = pack.DEFAULT_EM_VOXELS,
) -> tuple[str, dict[str, Any]]:
    """The page's HTML and facts about it (``faces``, ``mesh_bytes``, ``em_bytes``, ...)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise VemcellError(f"'{run}' is not a folder; give a run folder that 'vemcell run' wrote.")
    scene = _read_json(run / "scene.json", "scene manifest")
    report_path = run / "report.json"
    report = _read_json(report_path, "run report") if report_path.exists() else {}
    objects = scene.get("objects") or []
    if not objects:
        raise VemcellError(f"{run / 'scene.json'} lists no objects; there is nothing to show.")

    glb = None
    if (
        any(not (run / o.get("mesh", "")).is_file() for o in objects)
        and (run / "scene.glb").exists()
    ):
        import trimesh

        glb = trimesh.load(run / "scene.glb", force="scene")
    meshes = [_load_mesh(run, o, glb) for o in objects]
    faces_in_run = sum(len(f) for _, f in meshes)
    meshes = pack.simplify_to_budget(meshes, max_faces)

    vox = (report.get("input") or {}).get("voxel_size_nm_zyx")
    finest = min(vox) / 1000.0 if vox else None
    packed = pack.pack_meshes(meshes, finest_voxel_um=finest)

    lo = np.min([v.min(axis=0) for v, _ in meshes if len(v)], axis=0)
    hi = np.max([v.max(axis=0) for v, _ in meshes if len(v)], axis=0)
    box = _volume_box(report)
    if box is not None:
        lo, hi = np.minimum(lo, box[0]), np.maximum(hi, box[1])

    em_data, em_meta, em_note = _em_section(report, em_voxels)

    page_objects = []
    for obj, entry in zip(objects, packed.entries, strict=True):
        page_objects.append({**obj, "packed": entry})
    model = (report.get("model") or {}).get("name")
    inp = report.get("input") or {}
    title = f"{run.resolve().name} · vemcell"
    manifest = {
        "vemcell": "viewer/1",
        "generator": __version__,
        "title": title,
        "units": scene.get("units", "um"),
        "run": {
            "folder": run.resolve().name,
            "model": model,
            "input": Path(inp["path"]).name if inp.get("path") else None,
            "shape_zyx": inp.get("shape_zyx"),
            "voxel_size_nm_zyx": inp.get("voxel_size_nm_zyx"),
        },
        "bounds": {"min": [float(x) for x in lo], "max": [float(x) for x in hi]},
        "classes": scene.get("classes") or [],
        "cells": scene.get("cells") or [],
        "objects": page_objects,
        "meshes": packed.codec(),
        "simplified": (
            {"faces_in_run": faces_in_run, "faces": sum(len(f) for _, f in meshes)}
            if faces_in_run != sum(len(f) for _, f in meshes)
            else None
        ),
        "em": em_meta,
        "em_note": em_note,
    }
    parts = {
        "VERSION": __version__,
        "TITLE": _html_text(title),
        "CSS": (STATIC / "viewer.css").read_text(encoding="utf-8"),
        "MANIFEST": json.dumps(manifest, separators=(",", ":"), allow_nan=False).replace(
            "<", "\\u003c"
        ),
        "MESHES": base64.b64encode(packed.data).decode("ascii"),
        "EM": base64.b64encode(em_data).decode("ascii") if em_data else "",
        "THREE": _script_safe((STATIC / "three.bundle.min.js").read_text(encoding="utf-8")),
        "VIEWER": _script_safe((STATIC / "viewer.js").read_text(encoding="utf-8")),
    }
    template = (STATIC / "viewer.html").read_text(encoding="utf-8")
    html = re.sub(r"@@([A-Z]+)@@", lambda m: parts[m.group(1)], template)
    facts = {
        "objects": len(objects),
        "faces": sum(len(f) for _, f in meshes),
        "faces_in_run": faces_in_run,
        "mesh_bytes": len(packed.data),
        "em_bytes": len(em_data) if em_data else 0,
        "em_shape_zyx": em_meta["shape_zyx"] if em_meta else None,
        "em_note": em_note,
    }
    return html, facts


def _html_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_viewer(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    max_faces: int = pack.DEFAULT_MAX_FACES,
    em_voxels: int = pack.DEFAULT_EM_VOXELS,
) -> Path:
    """Write the run folder's viewer page (default ``RUN_DIR/viewer.html``); return its path.

    The file appears only when complete (written under a temporary name, then renamed).
    Raises :class:`~vemcell.errors.VemcellError` when ``run_dir`` is not a readable run folder.
    """
    return write_viewer_stats(run_dir, out, max_faces=max_faces, em_voxels=em_voxels).path


def write_viewer_stats(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    max_faces: int = pack.DEFAULT_MAX_FACES,
    em_voxels: int = pack.DEFAULT_EM_VOXELS,
) -> ViewerStats:
    """:func:`write_viewer`, returning what went into the page as well."""
    target = Path(out) if out is not None else Path(run_dir) / VIEWER_FILE
    if target.is_dir():
        target = target / VIEWER_FILE
    html, facts = build_viewer(run_dir, max_faces=max_faces, em_voxels=em_voxels)
    data = html.encode("utf-8")
    try:
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise VemcellError(f"Cannot write {target}: {exc.strerror or exc}.") from None
    return ViewerStats(path=target, bytes=len(data), **facts)
