"""The original EM slice shown on a cut plane, resampled from the input volume as it moves.

The volume recorded in the run's ``report.json`` is read once (vemcell.io, i.e. tifffile for
TIFF stacks) and cached; each update samples it on a grid lying in the cut plane (nearest voxel,
any orientation) and writes the pixels into an image texture on a plane just in front of the cut.
Updates happen from a depsgraph handler (the user drags the plane) and a frame-change handler
(animations and rendering).
"""

from __future__ import annotations

import math
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from . import backend
from . import scene as vscene
from .cutplanes import cut_planes

SLICE_TAG = "vemcell_slice"
_VOLUMES: dict[tuple[str, float], tuple[np.ndarray, float, float, tuple]] = {}


#: The most voxels of the EM volume held for the cut planes; a larger volume (a blockwise run's)
#: is read from the level of its OME-Zarr pyramid that fits, or else every ``step``-th voxel
#: along each axis, which is plenty for a section on screen.
MAX_VOXELS = 64_000_000


def _pyramid(path: Path) -> bool:
    """Whether ``path`` is an OME-Zarr image with multiscale levels."""
    import json

    for meta in ("zarr.json", ".zattrs"):
        f = path / meta
        if f.is_file():
            attrs = json.loads(f.read_text(encoding="utf-8"))
            attrs = attrs.get("attributes", attrs)
            return bool((attrs.get("ome") or attrs).get("multiscales"))
    return False


def load_volume(
    path: str, voxel_nm: tuple[float, float, float]
) -> tuple[np.ndarray, float, float, tuple[float, float, float]]:
    """The volume (z, y, x), its display range (0.5th, 99.5th percentiles) and the voxel size
    it was read at: the finest OME-Zarr level within :data:`MAX_VOXELS`, or every step-th
    voxel of a larger plain volume. Cached."""
    p = Path(path)
    key = (str(p), p.stat().st_mtime if p.exists() else 0.0)
    if key in _VOLUMES:
        return _VOLUMES[key]
    backend.ensure_importable()
    voxel = tuple(float(v) for v in voxel_nm)
    try:
        if p.is_dir() and _pyramid(p):
            from vemcell.blockwise.ngff import read_level

            data, voxel = read_level(p, MAX_VOXELS)
        else:
            from vemcell.io.lazy import open_lazy

            lazy = open_lazy(p).data
            step = max(1, math.ceil((math.prod(lazy.shape) / MAX_VOXELS) ** (1 / 3)))
            data = np.asarray(lazy[::step, ::step, ::step])
            voxel = tuple(v * step for v in voxel)
    except ImportError:
        import tifffile

        data = np.asarray(tifffile.imread(str(p)))
    sample = data[:: max(1, data.shape[0] // 16)].ravel()
    sample = sample[:: max(1, sample.size // 200_000)]
    lo, hi = (float(v) for v in np.percentile(sample, (0.5, 99.5)))
    if hi <= lo:
        hi = lo + 1.0
    _VOLUMES.clear()  # keep one volume in memory at a time
    _VOLUMES[key] = (data, lo, hi, voxel)
    return _VOLUMES[key]


def sample_plane(
    volume: np.ndarray,
    voxel_size_nm: tuple[float, float, float],
    matrix: Matrix | np.ndarray,
    centre_uv: tuple[float, float],
    half: float,
    resolution: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``volume`` on a square grid in the plane z=0 of ``matrix`` (nearest voxel).

    Returns the values (res, res) and a mask of grid points inside the volume. Grid row 0 is
    the plane's -v edge (Blender images start at the bottom row).
    """
    res = int(resolution)
    step = 2.0 * half / res
    coords = (np.arange(res) + 0.5) * step - half
    uu, vv = np.meshgrid(coords + centre_uv[0], coords + centre_uv[1])
    local = np.stack([uu.ravel(), vv.ravel(), np.zeros(uu.size), np.ones(uu.size)], axis=1)
    world = local @ np.array(matrix, dtype=np.float64).T
    vz, vy, vx = voxel_size_nm
    idx = np.rint(
        np.stack(
            [world[:, 2] * 1000.0 / vz, world[:, 1] * 1000.0 / vy, world[:, 0] * 1000.0 / vx],
            axis=1,
        )
    ).astype(np.int64)
    shape = np.array(volume.shape)
    inside = np.all((idx >= 0) & (idx < shape), axis=1)
    values = np.zeros(idx.shape[0], dtype=np.float32)
    sel = idx[inside]
    values[inside] = volume[sel[:, 0], sel[:, 1], sel[:, 2]]
    return values.reshape(res, res), inside.reshape(res, res)


def _slice_material(image: bpy.types.Image, name: str) -> bpy.types.Material:
    mat = bpy.data.materials.get(name) or bpy.data.materials.new(name)
    nt = mat.node_tree
    nt.nodes.clear()
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.interpolation = "Closest"
    emit = nt.nodes.new("ShaderNodeEmission")
    transp = nt.nodes.new("ShaderNodeBsdfTransparent")
    mix = nt.nodes.new("ShaderNodeMixShader")
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(tex.outputs["Color"], emit.inputs["Color"])
    nt.links.new(tex.outputs["Alpha"], mix.inputs["Fac"])
    nt.links.new(transp.outputs["BSDF"], mix.inputs[1])
    nt.links.new(emit.outputs["Emission"], mix.inputs[2])
    nt.links.new(mix.outputs["Shader"], out.inputs["Surface"])
    if hasattr(mat, "surface_render_method"):
        mat.surface_render_method = "BLENDED"
    mat.diffuse_color = (0.8, 0.8, 0.8, 1.0)
    return mat


def _volume_box(
    shape: tuple[int, ...], voxel: tuple[float, float, float]
) -> tuple[np.ndarray, float]:
    ext = np.array([shape[2] * voxel[2], shape[1] * voxel[1], shape[0] * voxel[0]]) / 1000.0
    return ext / 2.0, float(np.linalg.norm(ext)) / 2.0


def slice_plane(empty: bpy.types.Object) -> bpy.types.Object | None:
    """The EM-slice plane of a cut plane, if it has one."""
    for child in empty.children:
        if child.get(SLICE_TAG):
            return child
    return None


def enable(
    scene: bpy.types.Scene, empty: bpy.types.Object, resolution: int = 256, opacity: float = 1.0
) -> bpy.types.Object:
    """Show the EM slice on ``empty``'s cut plane (creates the plane and its image)."""
    plane = slice_plane(empty)
    if plane is None:
        idx = int(empty.get("vemcell_cut_index", 0))
        image = bpy.data.images.new(f"vemcell slice {idx}", resolution, resolution, alpha=True)
        me = bpy.data.meshes.new(f"vemcell slice {idx}")
        me.from_pydata([(-1, -1, 0), (1, -1, 0), (1, 1, 0), (-1, 1, 0)], [], [(0, 1, 2, 3)])
        uv = me.uv_layers.new(name="UVMap")
        for loop, co in zip(uv.data, ((0, 0), (1, 0), (1, 1), (0, 1)), strict=True):
            loop.uv = co
        me.materials.append(_slice_material(image, f"vemcell slice {idx}"))
        plane = bpy.data.objects.new(f"vemcell slice {idx}", me)
        plane[SLICE_TAG] = image.name
        plane.parent = empty
        plane.hide_select = True
        for coll in empty.users_collection:
            coll.objects.link(plane)
    plane["vemcell_opacity"] = float(opacity)
    empty["vemcell_em"] = True
    update(scene, empty)
    return plane


def disable(empty: bpy.types.Object) -> None:
    """Remove the EM slice from a cut plane."""
    plane = slice_plane(empty)
    empty["vemcell_em"] = False
    if plane is None:
        return
    image = bpy.data.images.get(str(plane.get(SLICE_TAG)))
    me = plane.data
    mats = list(me.materials)
    bpy.data.objects.remove(plane, do_unlink=True)
    bpy.data.meshes.remove(me)
    for m in mats:
        if m is not None and m.users == 0:
            bpy.data.materials.remove(m)
    if image is not None and image.users == 0:
        bpy.data.images.remove(image)


def update(scene: bpy.types.Scene, empty: bpy.types.Object) -> bool:
    """Resample the EM slice at the cut plane's current position; False when no volume."""
    plane = slice_plane(empty)
    root = vscene.find_root(scene)
    if plane is None or root is None:
        return False
    # a blockwise run's EM pyramid (em.ome.zarr) when it has one, else the input volume
    path = str(root.get("vemcell_em", "") or root.get("vemcell_input", ""))
    voxel = root.get("vemcell_voxel_size_nm")
    if not path or voxel is None or not Path(path).exists():
        return False
    data, lo, hi, voxel = load_volume(path, tuple(voxel))
    image = bpy.data.images.get(str(plane.get(SLICE_TAG)))
    if image is None:
        return False
    res = int(image.size[0])
    centre, half = _volume_box(data.shape, voxel)
    mw = np.array(empty.matrix_world, dtype=np.float64)
    inv = np.linalg.inv(mw)
    c_local = inv @ np.array([*centre, 1.0])
    uv = (float(c_local[0]), float(c_local[1]))
    values, inside = sample_plane(data, voxel, mw, uv, half, res)
    grey = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    opacity = float(plane.get("vemcell_opacity", 1.0))
    rgba = np.empty((res, res, 4), dtype=np.float32)
    rgba[..., 0] = rgba[..., 1] = rgba[..., 2] = grey
    rgba[..., 3] = inside * opacity
    image.pixels.foreach_set(rgba.ravel())
    image.update()
    image.update_tag()  # re-upload the GPU texture (Workbench, viewport)
    # the plane: a square of side 2*half centred on the volume's projection, just on the
    # removed side so it is not hidden inside the caps
    eps = half * 1e-3
    co = [
        (uv[0] - half, uv[1] - half, eps),
        (uv[0] + half, uv[1] - half, eps),
        (uv[0] + half, uv[1] + half, eps),
        (uv[0] - half, uv[1] + half, eps),
    ]
    me = plane.data
    me.vertices.foreach_set("co", np.array(co, dtype=np.float32).ravel())
    me.update()
    plane.matrix_parent_inverse = Matrix.Identity(4)
    return True


def update_all(scene: bpy.types.Scene) -> None:
    """Resample every EM slice (frame changes, renders)."""
    for empty in cut_planes(scene):
        if empty.get("vemcell_em"):
            update(scene, empty)


def _state(empty: bpy.types.Object) -> tuple:
    return tuple(round(v, 6) for row in empty.matrix_world for v in row)


_LAST: dict[str, tuple] = {}


@bpy.app.handlers.persistent
def on_depsgraph_update(scene: bpy.types.Scene, depsgraph: bpy.types.Depsgraph) -> None:
    """Resample slices whose cut plane moved (only when its matrix really changed)."""
    for empty in cut_planes(scene):
        if not empty.get("vemcell_em"):
            continue
        st = _state(empty)
        if _LAST.get(empty.name) != st:
            _LAST[empty.name] = st
            try:
                update(scene, empty)
            except Exception as exc:  # a handler must never break Blender
                print(f"vemcell: EM slice update failed: {exc}")


@bpy.app.handlers.persistent
def on_frame_change(scene: bpy.types.Scene, depsgraph: bpy.types.Depsgraph | None = None) -> None:
    """Resample slices for the new frame (animated cut planes)."""
    try:
        update_all(scene)
    except Exception as exc:
        print(f"vemcell: EM slice update failed: {exc}")


HANDLERS = (
    (bpy.app.handlers.depsgraph_update_post, on_depsgraph_update),
    (bpy.app.handlers.frame_change_post, on_frame_change),
)


def register_handlers() -> None:
    for lst, fn in HANDLERS:
        if fn not in lst:
            lst.append(fn)


def unregister_handlers() -> None:
    for lst, fn in HANDLERS:
        while fn in lst:
            lst.remove(fn)
