"""Camera, lights and the one-click animations of ``vemcell.options.ANIMATIONS`` (each keys the
scene; edit freely after).

* turntable: the camera circles the cell once;
* cut sweep: a cut plane travels through the cell, exposing the cross-sections;
* reveal: the cytoplasm fades to glass so the organelles appear;
* fly-through: a Z cut plane carrying the original EM slice travels down through the volume.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import bpy
import numpy as np
from mathutils import Vector

from vemcell.options import ANIMATIONS

from . import cutplanes, emslice, materials
from . import scene as vscene

CAMERA = "vemcell camera"
PIVOT = "vemcell pivot"
SUN = "vemcell sun"


def _fcurves(id_data: bpy.types.ID) -> Iterator[bpy.types.FCurve]:
    """Every F-curve of an ID (legacy ``action.fcurves`` or 4.4+ layered actions)."""
    ad = id_data.animation_data
    action = ad.action if ad else None
    if action is None:
        return
    if hasattr(action, "layers") and len(action.layers):
        slot = getattr(ad, "action_slot", None)
        for layer in action.layers:
            for strip in layer.strips:
                bag = strip.channelbag(slot) if slot is not None else None
                if bag is not None:
                    yield from bag.fcurves
        return
    yield from getattr(action, "fcurves", ())


def _linear(id_data: bpy.types.ID) -> None:
    for fc in _fcurves(id_data):
        for kp in fc.keyframe_points:
            kp.interpolation = "LINEAR"


def _extent(
    scene: bpy.types.Scene, evaluated: bool = False
) -> tuple[Vector, float, np.ndarray, np.ndarray]:
    objs = vscene.result_objects(scene)
    if evaluated:  # what is left after the cuts
        dg = bpy.context.evaluated_depsgraph_get()
        kept = [o for o in objs if len(o.evaluated_get(dg).data.polygons)]
        objs = [o.evaluated_get(dg) for o in kept] or objs
    lo, hi = vscene.bounds(objs)
    centre = Vector(((lo + hi) / 2.0).tolist())
    diag = float(np.linalg.norm(hi - lo)) or 1.0
    return centre, diag, lo, hi


def setup_camera(scene: bpy.types.Scene, frame_cut: bool = False) -> bpy.types.Object:
    """A camera framing the whole result, parented to a pivot Empty at its centre; a sun.

    ``frame_cut`` frames what the cut planes leave instead of the whole result.
    """
    centre, diag, _, _ = _extent(scene, evaluated=frame_cut)
    pivot = bpy.data.objects.get(PIVOT)
    if pivot is None:
        pivot = bpy.data.objects.new(PIVOT, None)
        scene.collection.objects.link(pivot)
    elif pivot.name not in scene.objects:
        scene.collection.objects.link(pivot)
    pivot.animation_data_clear()
    pivot.location = centre
    pivot.rotation_euler = (0.0, 0.0, 0.0)
    pivot.empty_display_size = diag * 0.1

    cam = bpy.data.objects.get(CAMERA)
    if cam is None:
        cam = bpy.data.objects.new(CAMERA, bpy.data.cameras.new(CAMERA))
        scene.collection.objects.link(cam)
    elif cam.name not in scene.objects:
        scene.collection.objects.link(cam)
    cam.animation_data_clear()
    cam.parent = pivot
    cam.data.lens = 50.0
    cam.data.sensor_fit = "AUTO"
    cam.data.clip_start = diag * 1e-3
    cam.data.clip_end = diag * 20.0
    # fit the bounding sphere in the narrower field of view (aspect from the render size)
    r = scene.render
    aspect = (r.resolution_x * r.pixel_aspect_x) / max(1e-6, r.resolution_y * r.pixel_aspect_y)
    half_fov = math.atan(cam.data.sensor_width / 2.0 / cam.data.lens)
    if aspect >= 1.0:
        half_fov = math.atan(math.tan(half_fov) / aspect)
    direction = Vector((0.9, -1.4, 0.9)).normalized()
    # 0.65: a box fills less of the view than its bounding sphere
    cam.location = direction * (diag / 2.0) / math.sin(half_fov) * 0.65
    cam.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam

    sun = bpy.data.objects.get(SUN)
    if sun is None:
        sun = bpy.data.objects.new(SUN, bpy.data.lights.new(SUN, "SUN"))
        scene.collection.objects.link(sun)
    elif sun.name not in scene.objects:
        scene.collection.objects.link(sun)
    sun.data.energy = 3.0
    sun.rotation_euler = (math.radians(40), math.radians(15), math.radians(30))
    if scene.world is None:
        scene.world = bpy.data.worlds.new("vemcell world")
    scene.world.color = (0.05, 0.05, 0.06)
    if scene.world.node_tree is not None:
        bg = scene.world.node_tree.nodes.get("Background")
        if bg is not None:
            bg.inputs["Color"].default_value = (0.05, 0.05, 0.06, 1.0)
            bg.inputs["Strength"].default_value = 1.0
    return cam


def _frames(scene: bpy.types.Scene, frames: int) -> tuple[int, int]:
    frames = max(1, int(frames))
    scene.frame_start = 1
    scene.frame_end = frames
    scene.frame_set(1)
    return 1, frames


def _ensure_plane(scene: bpy.types.Scene, axis: str) -> bpy.types.Object:
    for empty in cutplanes.cut_planes(scene):
        if empty.get("vemcell_axis") == axis:
            return empty
    return cutplanes.add_cut_plane(scene, axis)


def turntable(scene: bpy.types.Scene, frames: int = 120) -> None:
    """The camera circles the result once (the last frame is just short of a full turn)."""
    start, end = _frames(scene, frames)
    setup_camera(scene)
    pivot = bpy.data.objects[PIVOT]
    pivot.rotation_euler.z = 0.0
    pivot.keyframe_insert("rotation_euler", index=2, frame=start)
    pivot.rotation_euler.z = 2.0 * math.pi
    pivot.keyframe_insert("rotation_euler", index=2, frame=end + 1)
    _linear(pivot)
    scene.frame_set(start)


def _normal_range(empty: bpy.types.Object, lo: np.ndarray, hi: np.ndarray) -> tuple[float, float]:
    n = np.array(empty.matrix_world.to_3x3() @ Vector((0.0, 0.0, 1.0)))
    corners = np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    d = corners @ n
    return float(d.min()), float(d.max())


def cut_sweep(scene: bpy.types.Scene, frames: int = 120, axis: str = "Z") -> bpy.types.Object:
    """A cut plane moves from outside the result to near its far side, opening it up."""
    start, end = _frames(scene, frames)
    setup_camera(scene)
    empty = _ensure_plane(scene, axis)
    _, _, lo, hi = _extent(scene)
    dmin, dmax = _normal_range(empty, lo, hi)
    n = empty.matrix_world.to_3x3() @ Vector((0.0, 0.0, 1.0))
    base = Vector(empty.location) - n * float(np.dot(np.array(empty.location), np.array(n)))
    empty.animation_data_clear()
    empty.location = base + n * (dmax + 0.01 * (dmax - dmin))
    empty.keyframe_insert("location", frame=start)
    empty.location = base + n * (dmin + 0.15 * (dmax - dmin))
    empty.keyframe_insert("location", frame=end)
    _linear(empty)
    scene.frame_set(start)
    return empty


def reveal(scene: bpy.types.Scene, frames: int = 120, cls: str = "cytoplasm") -> None:
    """The cytoplasm fades from opaque to glass while the camera turns a quarter."""
    start, end = _frames(scene, frames)
    setup_camera(scene)
    for mat in materials.of_class(cls):  # the class material and its per-cell copies
        mat.animation_data_clear()
        if mat.node_tree is not None:
            mat.node_tree.animation_data_clear()
        final_alpha = min(float(mat.diffuse_color[3]), 0.15)
        fade_end = start + max(1, int((end - start) * 0.7))
        for frame, alpha in ((start, 1.0), (fade_end, final_alpha)):
            colour = list(mat.diffuse_color)
            colour[3] = alpha
            materials.set_colour(mat, colour)
            mat.keyframe_insert("diffuse_color", index=3, frame=frame)
            sock = materials.alpha_socket(mat)
            if sock is not None:
                sock.keyframe_insert("default_value", frame=frame)
        mat.surface_render_method = "BLENDED"
        _linear(mat)
        if mat.node_tree is not None:
            _linear(mat.node_tree)
    pivot = bpy.data.objects[PIVOT]
    pivot.keyframe_insert("rotation_euler", index=2, frame=start)
    pivot.rotation_euler.z = math.pi / 2
    pivot.keyframe_insert("rotation_euler", index=2, frame=end)
    pivot.rotation_euler.z = 0.0
    _linear(pivot)
    scene.frame_set(start)


def flythrough(scene: bpy.types.Scene, frames: int = 120, resolution: int = 256) -> None:
    """A Z cut plane showing the EM slice travels from the top of the volume to near its base."""
    empty = cut_sweep(scene, frames, axis="Z")
    emslice.enable(scene, empty, resolution=resolution, opacity=1.0)
    scene.frame_set(scene.frame_start)
    emslice.update_all(scene)


#: How each of :data:`vemcell.options.ANIMATIONS` is keyed (a test checks they are the same).
KEYERS = {
    "turntable": turntable,
    "cut-sweep": cut_sweep,
    "reveal": reveal,
    "flythrough": flythrough,
}


def animate(scene: bpy.types.Scene, name: str, frames: int = 120) -> None:
    """Run one of :data:`ANIMATIONS` by name."""
    if name not in KEYERS:
        raise ValueError(f"unknown animation {name!r}; one of {', '.join(ANIMATIONS)}")
    KEYERS[name](scene, frames)
