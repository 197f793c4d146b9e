"""Meshes and measurements of every (cell, class) object, block by block, welded per object.

Each block is meshed by zmesh with a one-voxel overlap on its low side (the volume padded by
one background voxel at its borders), so every marching-cubes cell is meshed by exactly one
block and vertices on shared faces come out at identical positions in both blocks. Per object
the pieces are concatenated and coincident vertices welded (marching-cubes vertices sit on
half-voxel positions, so doubled voxel coordinates are exact integers): the result is the
surface :func:`vemcell.meshes.mesh.mesh_labels` makes of the whole volume, closed and
consistently wound. It is then smoothed, measured and decimated as in memory.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vemcell.blockwise.plan import Block, Plan
from vemcell.meshes.mesh import open_surfaces


@dataclass(frozen=True)
class ObjectIds:
    """``cell × stride + class + shift`` per voxel (0 = nothing to mesh), as in memory."""

    labels: str
    cells: str | None
    lut: np.ndarray  # class -> class + shift for wanted classes, else 0
    stride: int

    def read(self, box: Any) -> np.ndarray:
        import zarr

        cls = self.lut[np.asarray(zarr.open_array(self.labels, mode="r")[box])]
        if self.cells is None:
            return cls.astype(np.uint32)
        cell = np.asarray(zarr.open_array(self.cells, mode="r")[box]).astype(np.uint32)
        return np.where(cls > 0, cell * np.uint32(self.stride) + cls, 0).astype(np.uint32)

    def split(self, oid: int) -> tuple[int, int]:
        cell, c = divmod(int(oid), self.stride)
        shift = 1 if self.lut[0] else 0
        return cell, c - shift


def objects_block(block: Block, objects: ObjectIds, out: str) -> dict[int, int]:
    """Write the block's object ids; return voxels per object."""
    import fastremap
    import zarr

    ids = objects.read(block.box)
    zarr.open_array(out, mode="r+")[block.box] = ids
    uniq, counts = fastremap.unique(ids, return_counts=True)
    return {int(u): int(c) for u, c in zip(uniq, counts, strict=True) if u}


def mesh_block(
    block: Block, plan: Plan, objects: str, voxel: tuple[float, float, float], folder: str
) -> dict[int, int]:
    """Marching cubes of one block (+1 voxel on the low side, background beyond the volume).

    Pieces go to ``folder/<block>.npz`` (vertices in nm, columns X, Y, Z, in the volume's
    frame; faces wound outwards); returns faces per object.
    """
    import zarr
    import zmesh

    arr = zarr.open_array(objects, mode="r")
    lo = [max(0, a - 1) for a in block.start]
    box = tuple(slice(a, b) for a, b in zip(lo, block.stop, strict=True))
    data = np.asarray(arr[box])
    pad = [
        (1 if a == 0 else 0, 1 if b == n else 0)
        for a, b, n in zip(block.start, block.stop, plan.shape, strict=True)
    ]
    data = np.ascontiguousarray(np.pad(data, pad))
    origin = np.array([a - 1 for a in block.start], np.float64)  # voxel of data[0, 0, 0]
    res = np.asarray(voxel, np.float64)
    mesher = zmesh.Mesher(voxel)
    pieces: dict[str, np.ndarray] = {}
    faces: dict[int, int] = {}
    shift_xyz = (origin * res)[::-1]
    for oid, verts, tri in open_surfaces(mesher, data):
        pieces[f"v{oid}"] = (np.asarray(verts, np.float64) + shift_xyz).astype(np.float32)
        pieces[f"f{oid}"] = np.ascontiguousarray(tri, dtype=np.int32)
        faces[oid] = len(tri)
    mesher.clear()
    path = Path(folder) / f"{block.index}.npz"
    tmp = path.with_name(f".{block.index}.tmp.npz")
    np.savez(tmp, **pieces)
    tmp.replace(path)
    return faces


def weld(
    parts: Sequence[tuple[np.ndarray, np.ndarray]], res_xyz: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate surface pieces and merge their coincident vertices (doubled voxel units)."""
    offsets = np.cumsum([0] + [len(v) for v, _ in parts])
    verts = np.concatenate([v for v, _ in parts])
    faces = np.concatenate([f + o for (_, f), o in zip(parts, offsets[:-1], strict=True)])
    if len(parts) == 1:
        return verts, faces.astype(np.int32)
    q = np.rint(verts * (2.0 / res_xyz)).astype(np.int64)
    q -= q.min(axis=0)
    dims = q.max(axis=0) + 1
    key = (q[:, 0] * dims[1] + q[:, 1]) * dims[2] + q[:, 2]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first)  # keep vertices in first-seen order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return verts[first[order]], rank[inverse.ravel()][faces].astype(np.int32)


@dataclass(frozen=True)
class MeshJob:
    folder: str
    voxel: tuple[float, float, float]
    smooth: int
    decimate: float
    mesh_format: str
    out: str  # the run folder
    neuroglancer: bool


def merge_object(item: tuple[int, str, list[int]], job: MeshJob) -> dict[str, Any]:
    """Weld, smooth, measure and decimate one object; write its mesh file (and precomputed)."""
    import trimesh

    from vemcell.meshes import mesh as mesh_mod
    from vemcell.meshes.scene import write_file

    oid, stem, blocks = item
    parts = []
    for b in blocks:
        with np.load(Path(job.folder) / f"{b}.npz") as z:
            parts.append((z[f"v{oid}"], z[f"f{oid}"]))
    res = np.asarray(job.voxel, np.float64)[::-1]
    verts, faces = weld(parts, res)
    watertight_raw = mesh_mod.is_watertight(faces)
    verts = verts / np.float32(1000.0)
    if job.smooth > 0:
        verts = mesh_mod.smooth_mesh(verts, faces, int(job.smooth))
    area = mesh_mod.surface_area(verts, faces)
    if job.decimate > 0:
        verts, faces = mesh_mod.decimate_mesh(verts, faces, job.decimate)
    verts = np.ascontiguousarray(verts, np.float32)
    faces = np.ascontiguousarray(faces, np.int32)
    rel = f"meshes/{stem}.{job.mesh_format}"
    data = trimesh.Trimesh(verts, faces, process=False).export(file_type=job.mesh_format)
    write_file(Path(job.out) / rel, data if isinstance(data, bytes) else data.encode("utf-8"))
    if job.neuroglancer:
        import zmesh

        ng = Path(job.out) / "neuroglancer" / "mesh"
        frag = zmesh.Mesh(verts.astype(np.float32) * 1000.0, faces, None).to_precomputed()
        write_file(ng / f"{oid}.frag", frag)
        write_file(ng / f"{oid}:0", json.dumps({"fragments": [f"{oid}.frag"]}).encode())
    return {
        "oid": oid,
        "mesh": rel,
        "area_um2": float(area),
        "vertices": len(verts),
        "faces": len(faces),
        "watertight": bool(watertight_raw and mesh_mod.is_watertight(faces)),
    }


def sphericity(volume_um3: float, area_um2: float | None) -> float | None:
    if not area_um2 or area_um2 <= 0 or not math.isfinite(area_um2):
        return None
    return math.pi ** (1.0 / 3.0) * (6.0 * volume_um3) ** (2.0 / 3.0) / area_um2


def load_items(out: str, objects: list[dict[str, Any]]) -> list[Any]:
    """MeshItems of written objects (read back from their mesh files)."""
    import trimesh

    from vemcell.meshes.mesh import MeshItem

    items = []
    for o in objects:
        tm = trimesh.load(Path(out) / o["mesh"], process=False, force="mesh")
        items.append(
            MeshItem(
                name=o["name"],
                cell=o["cell"],
                class_index=o["class_index"],
                class_name=o["class_name"],
                color=tuple(o["color"]),
                vertices=np.asarray(tm.vertices, np.float32),
                faces=np.asarray(tm.faces, np.int32),
                undecimated_area_um2=o["measurements"]["surface_area_um2"],
            )
        )
    return items


def write_glb(item: tuple[str, list[dict[str, Any]]], out: str) -> str:
    """One glTF binary scene (as ``scene.glb``) of the given objects."""
    from vemcell.meshes.scene import build_scene, write_file

    rel, objects = item
    glb = build_scene(load_items(out, objects)).export(file_type="glb")
    write_file(Path(out) / rel, glb)
    return rel


def neuroglancer_tags(class_names: Sequence[str]) -> dict[str, str]:
    """Each class name as a Neuroglancer segment-property tag.

    The format's tags must not contain spaces or start with ``#`` and are matched ignoring case:
    Neuroglancer lists a tag ``lipid droplet`` but its query ``#lipid droplet`` fails ("Invalid
    tag: lipid"), so runs of whitespace become ``_`` (and a clash ignoring case gets ``_2``, ...).
    """
    tags: dict[str, str] = {}
    seen: set[str] = set()
    for name in class_names:
        base = re.sub(r"\s+", "_", name.strip()).lstrip("#") or "class"
        tag, n = base, 1
        while tag.casefold() in seen:
            n += 1
            tag = f"{base}_{n}"
        seen.add(tag.casefold())
        tags[name] = tag
    return tags


def write_neuroglancer_info(out: str, objects: list[dict[str, Any]]) -> None:
    """``neuroglancer/mesh/info`` and its segment properties (names, cells, classes, volumes)."""
    from vemcell.meshes.scene import write_file

    ng = Path(out) / "neuroglancer" / "mesh"
    write_file(
        ng / "info",
        json.dumps(
            {"@type": "neuroglancer_legacy_mesh", "segment_properties": "segment_properties"}
        ).encode(),
    )
    classes = sorted({o["class_name"] for o in objects})
    tags = neuroglancer_tags(classes)
    props = {
        "@type": "neuroglancer_segment_properties",
        "inline": {
            "ids": [str(o["oid"]) for o in objects],
            "properties": [
                {"id": "label", "type": "label", "values": [o["name"] for o in objects]},
                {
                    "id": "class",
                    "type": "tags",
                    "tags": [tags[c] for c in classes],
                    "values": [[classes.index(o["class_name"])] for o in objects],
                },
                {
                    "id": "volume_um3",
                    "type": "number",
                    "data_type": "float32",
                    "values": [float(o["measurements"]["volume_um3"]) for o in objects],
                },
            ],
        },
    }
    write_file(ng / "segment_properties" / "info", json.dumps(props).encode())
