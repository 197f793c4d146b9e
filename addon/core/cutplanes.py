"""Cut planes that clip every organelle with filled cross-sections (caps).

A cut plane is an Empty the user moves and rotates; its child is a large box (hidden) whose
bottom face lies on the plane and which a Boolean *Difference* modifier subtracts from every
organelle. On closed meshes the Boolean leaves closed meshes, so cut faces are filled with the
organelle's own material instead of showing hollow shells. The viewport uses a fast solver;
:func:`render_solvers` switches to an exact one while rendering.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import bmesh
import bpy
import numpy as np

from . import scene as vscene

CUT_TAG = "vemcell_cut"
MAX_PLANES = 3
MOD_PREFIX = "vemcell cut"
AXES = ("X", "Y", "Z", "FREE")

# Rotation (Euler XYZ) that turns the Empty's local +Z (the removed side) towards +X, -Y, +Z:
# the half facing the default camera (which looks from +X, -Y, +Z) is the one removed, so the
# caps face the camera.
_ROTATION = {
    "Z": (0.0, 0.0, 0.0),
    "X": (0.0, math.pi / 2, 0.0),
    "Y": (math.pi / 2, 0.0, 0.0),
    "FREE": (math.radians(35), math.radians(-25), 0.0),
}


def solver_choice(kind: str) -> str:
    """The Boolean solver for ``kind``: "fast" (viewport preview) or "exact" (renders).

    The exact result uses Manifold (Blender 4.5+: exact, always closed output on closed input,
    and fast enough to re-cut every frame of an animation), else the Exact solver.
    """
    items = {e.identifier for e in bpy.types.BooleanModifier.bl_rna.properties["solver"].enum_items}
    order = ("FLOAT", "FAST", "MANIFOLD") if kind == "fast" else ("MANIFOLD", "EXACT")
    return next(s for s in (*order, "EXACT") if s in items)


def cut_planes(scene: bpy.types.Scene) -> list[bpy.types.Object]:
    """The scene's cut-plane Empties, in creation order."""
    planes = [o for o in scene.objects if o.get(CUT_TAG) and o.type == "EMPTY"]
    return sorted(planes, key=lambda o: int(o.get("vemcell_cut_index", 0)))


def _box_mesh(name: str, half: float) -> bpy.types.Mesh:
    """A closed box spanning z in [0, 2*half] and x, y in [-half, half]."""
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=2.0 * half)
    bmesh.ops.translate(bm, verts=bm.verts, vec=(0.0, 0.0, half))
    me = bpy.data.meshes.new(name)
    bm.to_mesh(me)
    bm.free()
    return me


def _scene_extent(scene: bpy.types.Scene) -> tuple[np.ndarray, float]:
    objs = vscene.result_objects(scene)
    lo, hi = vscene.bounds(objs)
    centre = (lo + hi) / 2.0
    diag = float(np.linalg.norm(hi - lo)) or 1.0
    return centre, diag


def add_cut_plane(
    scene: bpy.types.Scene,
    axis: str = "Z",
    fast: bool = True,
) -> bpy.types.Object:
    """Add a cut plane through the centre of the result and clip every organelle with it.

    Parameters
    ----------
    axis : {"X", "Y", "Z", "FREE"}
        Plane normal; X/Y/Z planes keep their orientation (rotation locked), FREE can be
        rotated.
    fast : bool
        Viewport solver: fast preview (True) or exact (False).
    """
    axis = axis.upper()
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}")
    existing = cut_planes(scene)
    if len(existing) >= MAX_PLANES:
        raise RuntimeError(f"At most {MAX_PLANES} cut planes; remove one first.")
    used = {int(o.get("vemcell_cut_index", 0)) for o in existing}
    index = next(i for i in range(1, MAX_PLANES + 1) if i not in used)
    centre, diag = _scene_extent(scene)

    empty = bpy.data.objects.new(f"vemcell cut {index} ({axis})", None)
    empty.empty_display_type = "SINGLE_ARROW"
    empty.empty_display_size = diag * 0.25
    empty.location = tuple(centre)
    empty.rotation_euler = _ROTATION[axis]
    if axis != "FREE":
        empty.lock_rotation = (True, True, True)
    empty[CUT_TAG] = True
    empty["vemcell_cut_index"] = index
    empty["vemcell_axis"] = axis
    empty["vemcell_half_size"] = diag

    box = bpy.data.objects.new(f"vemcell cut {index} cutter", _box_mesh(f"cutter {index}", diag))
    box.parent = empty
    box.display_type = "WIRE"
    box.hide_render = True
    box.hide_select = True
    box.hide_viewport = True
    box["vemcell_cutter"] = index
    for obj in (empty, box):
        scene.collection.objects.link(obj)
    empty["vemcell_box"] = box.name
    for obj in vscene.result_objects(scene):
        _add_modifier(obj, box, index, fast)
    return empty


def cutter_box(empty: bpy.types.Object) -> bpy.types.Object | None:
    """The hidden box a cut-plane Empty moves."""
    box = bpy.data.objects.get(str(empty.get("vemcell_box", "")))
    if box is None:
        for child in empty.children:
            if child.get("vemcell_cutter") is not None:
                return child
    return box


def _add_modifier(obj: bpy.types.Object, box: bpy.types.Object, index: int, fast: bool) -> None:
    name = f"{MOD_PREFIX} {index}"
    mod = obj.modifiers.get(name) or obj.modifiers.new(name, "BOOLEAN")
    mod.operation = "DIFFERENCE"
    mod.operand_type = "OBJECT"
    mod.object = box
    mod.solver = solver_choice("fast" if fast else "exact")
    if hasattr(mod, "material_mode"):
        mod.material_mode = "INDEX"


def apply_to_objects(scene: bpy.types.Scene, fast: bool = True) -> None:
    """Clip every organelle with every existing cut plane (after a new import)."""
    for empty in cut_planes(scene):
        box = cutter_box(empty)
        if box is None:
            continue
        for obj in vscene.result_objects(scene):
            _add_modifier(obj, box, int(empty["vemcell_cut_index"]), fast)


def remove_cut_plane(scene: bpy.types.Scene, empty: bpy.types.Object) -> None:
    """Remove a cut plane, its modifiers, its box and its EM-slice plane."""
    index = int(empty.get("vemcell_cut_index", 0))
    name = f"{MOD_PREFIX} {index}"
    for obj in scene.objects:
        mod = obj.modifiers.get(name) if obj.type == "MESH" else None
        if mod is not None:
            obj.modifiers.remove(mod)
    for child in list(empty.children_recursive):
        data = child.data
        bpy.data.objects.remove(child, do_unlink=True)
        if isinstance(data, bpy.types.Mesh) and data.users == 0:
            bpy.data.meshes.remove(data)
    bpy.data.objects.remove(empty, do_unlink=True)


def set_viewport_solver(scene: bpy.types.Scene, fast: bool) -> None:
    """Switch every cut modifier between the fast preview and the exact solver."""
    solver = solver_choice("fast" if fast else "exact")
    for obj in vscene.result_objects(scene):
        for mod in obj.modifiers:
            if mod.type == "BOOLEAN" and mod.name.startswith(MOD_PREFIX):
                mod.solver = solver


@contextmanager
def render_solvers(scene: bpy.types.Scene, solver: str = "EXACT") -> Iterator[None]:
    """Use ``solver`` for every cut modifier while the block runs (the render result)."""
    saved = []
    for obj in vscene.result_objects(scene):
        for mod in obj.modifiers:
            if mod.type == "BOOLEAN" and mod.name.startswith(MOD_PREFIX):
                saved.append((mod, mod.solver))
                mod.solver = solver
    try:
        yield
    finally:
        for mod, s in saved:
            mod.solver = s


def evaluated_mesh_is_closed(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> bool:
    """True when the evaluated (clipped) mesh is watertight: every edge joins exactly 2 faces."""
    ev = obj.evaluated_get(depsgraph)
    me = ev.to_mesh()
    try:
        bm = bmesh.new()
        bm.from_mesh(me)
        closed = len(bm.faces) > 0 and all(len(e.link_faces) == 2 for e in bm.edges)
        bm.free()
    finally:
        ev.to_mesh_clear()
    return closed
