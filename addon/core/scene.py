"""Importing a vemcell run directory (``scene.json`` + meshes) into a Blender scene.

The scene gets one collection per cell under a root collection, one object per organelle named
``cell_03 / mitochondrion``, at physical scale (1 Blender unit = 1 µm), coloured per class in the
model card's colours (carried by ``scene.json``), with the measurements as custom properties.
Importing again replaces the previous result.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from . import materials

ROOT_TAG = "vemcell_root"
OBJECT_TAG = "vemcell_class"
MEASUREMENT_KEYS = (
    "volume_um3",
    "surface_area_um2",
    "sphericity",
    "components",
    "voxels",
)


class SceneError(Exception):
    """The run directory is missing or malformed; one sentence for the user."""


def load_manifest(run_dir: str | Path) -> dict[str, Any]:
    """Read and check ``scene.json`` (format ``scene/1``)."""
    path = Path(run_dir) / "scene.json"
    if not path.is_file():
        raise SceneError(f"'{run_dir}' is not a vemcell run folder (no scene.json).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SceneError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict) or not str(data.get("vemcell", "")).startswith("scene/"):
        raise SceneError(f"{path} is not a vemcell scene manifest.")
    if not isinstance(data.get("objects"), list):
        raise SceneError(f"{path} lists no objects.")
    return data


def load_report(run_dir: str | Path) -> dict[str, Any]:
    """``report.json`` of a run (input volume path and voxel size), or {} when absent."""
    path = Path(run_dir) / "report.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def input_of(report: dict[str, Any]) -> tuple[str, tuple[float, float, float] | None]:
    """The original volume path and its voxel size (nm, z y x) recorded by ``vemcell run``."""
    inp = report.get("input", "")
    voxel = report.get("voxel_size_nm") or report.get("voxel_size_nm_zyx")
    if isinstance(inp, dict):
        voxel = inp.get("voxel_size_nm") or inp.get("voxel_size_nm_zyx") or voxel
        inp = inp.get("path", "")
    try:
        vox = tuple(float(v) for v in voxel)[:3] if voxel else None
    except (TypeError, ValueError):
        vox = None
    return str(inp or ""), vox  # type: ignore[return-value]


def display_name(name: str) -> str:
    """``cell_03/mitochondrion`` -> ``cell_03 / mitochondrion`` (the Outliner name)."""
    return " / ".join(part for part in str(name).split("/") if part)


def read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (N, 3) float32 and triangles (M, 3) int32 of a PLY/OBJ/STL file (trimesh)."""
    import trimesh

    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:
        raise SceneError(f"Mesh {path.name} could not be read ({exc}).") from None
    v = np.asarray(mesh.vertices, dtype=np.float32)
    f = np.asarray(mesh.faces, dtype=np.int32)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise SceneError(f"Mesh {path.name} is not a triangle mesh.")
    return v, f


def make_mesh(name: str, vertices: np.ndarray, faces: np.ndarray) -> bpy.types.Mesh:
    """A Blender mesh from numpy arrays (foreach_set: fast for big organelles)."""
    me = bpy.data.meshes.new(name)
    n_v, n_f = len(vertices), len(faces)
    me.vertices.add(n_v)
    me.vertices.foreach_set("co", np.ascontiguousarray(vertices, dtype=np.float32).ravel())
    me.loops.add(n_f * 3)
    me.loops.foreach_set("vertex_index", np.ascontiguousarray(faces, dtype=np.int32).ravel())
    me.polygons.add(n_f)
    me.polygons.foreach_set("loop_start", np.arange(0, n_f * 3, 3, dtype=np.int32))
    me.update(calc_edges=True)
    me.validate()
    return me


def find_root(scene: bpy.types.Scene) -> bpy.types.Collection | None:
    """The collection holding the current vemcell result in ``scene``, if any."""
    for coll in scene.collection.children_recursive:
        if coll.get(ROOT_TAG):
            return coll
    return None


def result_objects(scene: bpy.types.Scene) -> list[bpy.types.Object]:
    """Every organelle object of the current result."""
    root = find_root(scene)
    if root is None:
        return []
    return [o for o in root.all_objects if o.get(OBJECT_TAG) is not None and o.type == "MESH"]


def remove_result(scene: bpy.types.Scene) -> None:
    """Delete the previous result (collections, objects, meshes); cut planes stay."""
    root = find_root(scene)
    if root is None:
        return
    colls = [root, *root.children_recursive]
    for obj in list(root.all_objects):
        if obj.get(OBJECT_TAG) is None:
            continue
        mesh = obj.data if obj.type == "MESH" else None
        bpy.data.objects.remove(obj, do_unlink=True)
        if mesh is not None and mesh.users == 0:
            bpy.data.meshes.remove(mesh)
    for coll in reversed(colls):
        bpy.data.collections.remove(coll)
    materials.remove_unused_cell_materials()


def _numeric(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def import_run_dir(
    run_dir: str | Path,
    scene: bpy.types.Scene | None = None,
    colours: dict[str, tuple[float, float, float, float]] | None = None,
    max_cells: int | None = None,
) -> bpy.types.Collection:
    """Import a run folder into ``scene``, replacing any previous vemcell result.

    Parameters
    ----------
    run_dir : path
        Folder written by ``vemcell run`` (``scene.json``, ``meshes/``, ``report.json``).
    scene : bpy.types.Scene, optional
        Target scene (default: the context scene).
    colours : dict, optional
        Class name -> RGBA overriding the manifest's (the model card's) colours: the
        panel's choices.
    max_cells : int, optional
        For a blockwise run (a large volume of many cells): import only this many cells,
        the largest first.

    Returns
    -------
    The root collection.
    """
    scene = scene or bpy.context.scene
    run_dir = Path(run_dir).resolve()
    manifest = load_manifest(run_dir)
    report = load_report(run_dir)
    objects, total = manifest["objects"], None
    if max_cells and report.get("mode") == "blockwise":
        from vemcell.meshes.scene import cells_by_size

        ranked = cells_by_size(run_dir)
        keep = {c["cell"] for c in ranked[:max_cells]}
        objects = [o for o in objects if o.get("cell") is None or o.get("cell") in keep]
        total = len(ranked)
    # Read every mesh before touching the scene: a bad file leaves the scene as it was.
    loaded = []
    for entry in objects:
        mesh_rel = entry.get("mesh")
        if not mesh_rel:
            raise SceneError(f"Object {entry.get('name')!r} in scene.json has no mesh.")
        path = run_dir / mesh_rel
        if not path.is_file():
            raise SceneError(f"Mesh {mesh_rel} listed in scene.json is missing.")
        loaded.append((entry, *read_mesh(path)))

    remove_result(scene)
    volume, voxel = input_of(report)
    root = bpy.data.collections.new("vemcell " + (Path(volume).stem if volume else run_dir.name))
    root[ROOT_TAG] = True
    root["vemcell_run_dir"] = str(run_dir)
    root["vemcell_input"] = volume
    if report.get("em_preview") and (run_dir / report["em_preview"]).is_dir():
        root["vemcell_em"] = str(run_dir / report["em_preview"])
    if voxel is not None:
        root["vemcell_voxel_size_nm"] = list(voxel)
    timings = {k: float(v) for k, v in (report.get("timings_s") or {}).items() if _numeric(v)}
    if timings:
        root["vemcell_timings_s"] = timings
    scene.collection.children.link(root)

    cell_colls: dict[Any, bpy.types.Collection] = {}
    overrides = colours or {}
    for entry, verts, faces in loaded:
        cls = str(entry.get("class_name") or entry.get("name", "object").split("/")[-1])
        cell = entry.get("cell")
        key = cell if cell is not None else "all"
        if key not in cell_colls:
            cname = f"cell_{int(cell):02d}" if cell is not None else "organelles"
            coll = bpy.data.collections.new(cname)
            coll["vemcell_cell"] = int(cell) if cell is not None else -1
            root.children.link(coll)
            cell_colls[key] = coll
        name = display_name(entry.get("name") or cls)
        me = make_mesh(name, verts, faces)
        colour = overrides.get(cls) or materials.default_colour(entry.get("color"))
        me.materials.append(materials.class_material(cls, colour))
        obj = bpy.data.objects.new(name, me)
        obj[OBJECT_TAG] = cls
        obj["vemcell_name"] = str(entry.get("name", name))
        obj["vemcell_class_index"] = int(entry.get("class_index", -1))
        obj["vemcell_cell"] = int(cell) if cell is not None else -1
        measured = []
        for k, v in (entry.get("measurements") or {}).items():
            num = _numeric(v)
            if num is not None and k not in ("cell", "class_index"):
                obj[k] = num
                measured.append(k)
        obj["vemcell_measured"] = ",".join(measured)
        cell_colls[key].objects.link(obj)
    root["vemcell_classes"] = sorted({o[OBJECT_TAG] for o in root.all_objects})
    if total is not None:
        root["vemcell_cells_shown"] = len(cell_colls) - ("all" in cell_colls)
        root["vemcell_cells_total"] = total
    return root


def colour_by_cell(scene: bpy.types.Scene, class_name: str, on: bool = True) -> int:
    """Give every cell's object of one class a colour of its own (or the class colour back).

    Returns the number of cells coloured individually; objects outside cells ("organelles")
    keep the class material.
    """
    shared = bpy.data.materials.get(materials.MATERIAL_PREFIX + class_name)
    cells = set()
    for obj in result_objects(scene):
        cell = int(obj.get("vemcell_cell", -1))
        if obj.get(OBJECT_TAG) != class_name or not obj.data.materials:
            continue
        mat = materials.cell_material(class_name, cell) if on and cell >= 0 else shared
        if mat is not None:
            obj.data.materials[0] = mat
        if mat is not shared:
            cells.add(cell)
    materials.remove_unused_cell_materials()
    return len(cells)


def coloured_by_cell(scene: bpy.types.Scene) -> set[str]:
    """Classes of the result whose objects wear per-cell materials (read off the objects)."""
    return {
        str(obj[OBJECT_TAG])
        for obj in result_objects(scene)
        if obj.data.materials
        and obj.data.materials[0] is not None
        and obj.data.materials[0].get(materials.CELL_TAG) is not None
    }


def run_timings(scene: bpy.types.Scene) -> list[tuple[str, float]]:
    """The imported run's seconds per pipeline stage (report.json's ``timings_s``), in order."""
    root = find_root(scene)
    if root is None or "vemcell_timings_s" not in root:
        return []
    timings = root["vemcell_timings_s"].to_dict()
    total = timings.pop("total", None)
    rows = [(k, float(v)) for k, v in timings.items()]
    return [*rows, ("total", float(total))] if total is not None else rows


def bounds(objects: list[bpy.types.Object]) -> tuple[np.ndarray, np.ndarray]:
    """World-space axis-aligned bounds (min, max) of objects' undeformed geometry."""
    if not objects:
        return np.zeros(3), np.ones(3)
    pts = []
    for o in objects:
        mw = np.array(o.matrix_world)
        corners = np.array([(*c, 1.0) for c in o.bound_box])
        pts.append((corners @ mw.T)[:, :3])
    allp = np.concatenate(pts)
    return allp.min(axis=0), allp.max(axis=0)
