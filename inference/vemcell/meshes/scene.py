"""Write meshes for Blender and other tools: ``scene.glb``, ``meshes/*``, ``scene.json``.

``scene.glb`` is one glTF binary scene (trimesh) with one node per :class:`MeshItem`, named by
``MeshItem.name`` and coloured by a PBR material (base colour with alpha; ``alphaMode`` BLEND
for translucent classes such as cytoplasm). glTF is Y-up while vemcell works Z-up in µm, so
vertices are written as (X, Z, −Y): Blender's glTF importer turns that back into (X, Y, Z) and
the model stands Z-up at 1 Blender unit = 1 µm. The per-object files and ``scene.json`` keep
vemcell's own Z-up coordinates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vemcell.errors import VemcellError
from vemcell.io.volumes import atomic_path
from vemcell.meshes.mesh import MeshItem
from vemcell.options import MESH_FORMATS

#: Z-up (X, Y, Z) → glTF Y-up (X, Z, −Y); a proper rotation, so face winding is kept.
ZUP_TO_GLTF = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def zup_to_gltf(vertices: np.ndarray) -> np.ndarray:
    """Rotate Z-up vertices into glTF's Y-up frame."""
    return np.asarray(vertices, dtype=np.float64) @ ZUP_TO_GLTF.T


def gltf_to_zup(vertices: np.ndarray) -> np.ndarray:
    """Inverse of :func:`zup_to_gltf` (for reading a ``scene.glb`` back)."""
    return np.asarray(vertices, dtype=np.float64) @ ZUP_TO_GLTF


def _material(item: MeshItem) -> Any:
    from trimesh.visual.material import PBRMaterial

    r, g, b, a = (float(c) for c in item.color)
    return PBRMaterial(
        name=item.class_name,
        baseColorFactor=[r, g, b, a],
        metallicFactor=0.0,
        roughnessFactor=0.6,
        alphaMode="BLEND" if a < 1.0 else "OPAQUE",
        doubleSided=a < 1.0,
    )


def build_scene(meshes: Sequence[MeshItem]) -> Any:
    """A :class:`trimesh.Scene` with one named, coloured node per mesh (glTF Y-up frame)."""
    import trimesh
    from trimesh.visual import TextureVisuals

    scene = trimesh.Scene()
    for item in meshes:
        tm = trimesh.Trimesh(
            zup_to_gltf(item.vertices),
            np.asarray(item.faces),
            process=False,
            visual=TextureVisuals(material=_material(item)),
        )
        scene.add_geometry(tm, node_name=item.name, geom_name=item.name)
    return scene


def write_file(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_outputs(
    out_dir: str | os.PathLike,
    meshes: Sequence[MeshItem],
    rows: Sequence[dict[str, Any]],
    *,
    mesh_format: str = "ply",
    classes: Sequence[tuple[int, str, Any]] | None = None,
) -> dict[str, Any]:
    """Write ``scene.glb``, ``meshes/<name>.<format>`` and ``scene.json`` into ``out_dir``.

    Parameters
    ----------
    out_dir : path-like
        Created if missing. Every file appears only when complete.
    meshes : list of MeshItem
        From :func:`vemcell.mesh.mesh_labels`.
    rows : list of dict
        From :func:`vemcell.measure.measure`; each object's row goes into the manifest.
    mesh_format : {"ply", "obj", "stl"}
        Format of the per-object files (binary PLY/STL, text OBJ).
    classes : sequence of (index, name, color), optional
        The full class list for the manifest; taken from the meshes when not given.

    Returns
    -------
    dict
        The manifest written as ``scene.json`` (``"vemcell": "scene/1"``).
    """
    import trimesh

    if mesh_format not in MESH_FORMATS:
        raise VemcellError(f"Mesh format must be ply, obj or stl, not {mesh_format!r}.")
    if not meshes:
        raise VemcellError("There are no meshes to write.")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise VemcellError(f"'{out}' is a file; give a folder to write the scene into.")
    out.mkdir(parents=True, exist_ok=True)
    (out / "meshes").mkdir(exist_ok=True)
    by_key = {(r["cell"] if r["cell"] != "" else None, int(r["class_index"])): r for r in rows}
    names = [m.name for m in meshes]
    if len(set(names)) != len(names):
        raise VemcellError("Two meshes have the same name; every object needs its own name.")

    objects = []
    for item in meshes:
        rel = f"meshes/{item.file_stem}.{mesh_format}"
        tm = trimesh.Trimesh(item.vertices, item.faces, process=False)
        data = tm.export(file_type=mesh_format)
        write_file(out / rel, data if isinstance(data, bytes) else data.encode("utf-8"))
        row = by_key.get((item.cell, item.class_index))
        objects.append(
            {
                "name": item.name,
                "cell": item.cell,
                "class_index": item.class_index,
                "class_name": item.class_name,
                "color": [round(float(c), 4) for c in item.color],
                "mesh": rel,
                "vertices": len(item.vertices),
                "faces": len(item.faces),
                "measurements": _jsonable(row) if row is not None else None,
            }
        )

    glb = build_scene(meshes).export(file_type="glb")
    write_file(out / "scene.glb", glb)

    if classes is not None:
        class_list = [
            {"index": int(i), "name": str(n), "color": [float(c) for c in col]}
            for i, n, col in classes
        ]
    else:
        seen: dict[int, dict[str, Any]] = {}
        for m in meshes:
            seen.setdefault(
                m.class_index,
                {"index": m.class_index, "name": m.class_name, "color": list(m.color)},
            )
        class_list = [seen[k] for k in sorted(seen)]
    manifest = {
        "vemcell": "scene/1",
        "units": "um",
        "up_axis": "Z",
        "glb": "scene.glb",
        "objects": objects,
        "cells": sorted({m.cell for m in meshes if m.cell is not None}),
        "classes": class_list,
    }
    write_file(out / "scene.json", (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    return manifest


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not np.isfinite(v):
            v = None
        out[k] = v
    return out


def cells_by_size(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The cells of a run folder, largest first: ``{"cell", "volume_um3", "glb", "objects"}``.

    Read from ``scene.json`` (what the Blender add-on lists, then imports the chosen ``glb``).
    """
    d = Path(run_dir)
    try:
        scene = json.loads((d / "scene.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise VemcellError(f"'{d}' holds no readable scene.json; is it a vemcell run?") from None
    cells: dict[int, dict[str, Any]] = {}
    for o in scene.get("objects", []):
        if o.get("cell") is None:
            continue
        c = cells.setdefault(o["cell"], {"cell": o["cell"], "volume_um3": 0.0, "objects": []})
        c["volume_um3"] += float((o.get("measurements") or {}).get("volume_um3") or 0.0)
        c["objects"].append(o["name"])
    glbs = scene.get("cell_glbs", {})
    for c in cells.values():
        c["glb"] = glbs.get(str(c["cell"]))
    return sorted(cells.values(), key=lambda c: -c["volume_um3"])
