"""Per-class materials in the model card's colours.

The card (``models/<name>.json``, ``classes[i].color``) is the one palette: the backend writes it
into ``scene.json`` (and the ``.glb``), and the import here takes it from there, so Blender, the
``.glb`` and every other viewer show the same colours. One material per class (shared by every
cell) so a single colour or visibility control in the panel changes that organelle everywhere.
Colours are set on the Principled BSDF (Cycles, EEVEE) and on ``diffuse_color`` (Workbench and the
solid viewport). A class can instead be coloured by cell (neurites in neural tissue, cells of a
colony): each cell then gets its own copy of the class material in a hue of its own, and
class-wide changes (opacity, reveal) reach every copy.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import bpy

MATERIAL_PREFIX = "vemcell "
CELL_TAG = "vemcell_cell"


def default_colour(colour: Sequence[float] | None) -> tuple[float, float, float, float]:
    """A class's RGBA as ``scene.json`` carries it from the model card; grey when it has none."""
    if colour is not None and len(colour) >= 3:
        c = [float(v) for v in colour]
        return (c[0], c[1], c[2], c[3] if len(c) > 3 else 1.0)
    return (0.6, 0.6, 0.6, 1.0)


def class_material(class_name: str, colour: Sequence[float]) -> bpy.types.Material:
    """The shared material of one class, created on first use and recoloured on later calls."""
    name = MATERIAL_PREFIX + class_name
    mat = bpy.data.materials.get(name)
    if mat is None:
        mat = bpy.data.materials.new(name)
    mat["vemcell_class"] = class_name
    set_colour(mat, colour)
    return mat


def _principled(mat: bpy.types.Material) -> bpy.types.Node | None:
    if mat.node_tree is None:
        return None
    for node in mat.node_tree.nodes:
        if node.bl_idname == "ShaderNodeBsdfPrincipled":
            return node
    return None


def set_colour(mat: bpy.types.Material, colour: Sequence[float]) -> None:
    """Apply an RGBA colour (alpha < 1 makes the material see-through in every engine)."""
    r, g, b = (float(c) for c in colour[:3])
    a = float(colour[3]) if len(colour) > 3 else 1.0
    mat.diffuse_color = (r, g, b, a)
    node = _principled(mat)
    if node is not None:
        node.inputs["Base Color"].default_value = (r, g, b, 1.0)
        node.inputs["Alpha"].default_value = a
        node.inputs["Roughness"].default_value = 0.45
    if hasattr(mat, "surface_render_method"):
        mat.surface_render_method = "BLENDED" if a < 1.0 else "DITHERED"
    if hasattr(mat, "use_transparency_overlap"):
        mat.use_transparency_overlap = True
    mat.show_transparent_back = a < 1.0


def alpha_socket(mat: bpy.types.Material) -> bpy.types.NodeSocket | None:
    """The Principled BSDF alpha input (what the reveal animation keys)."""
    node = _principled(mat)
    return None if node is None else node.inputs["Alpha"]


def cell_colour(cell: int, alpha: float = 1.0) -> tuple[float, float, float, float]:
    """A colour per cell id: hues a golden angle apart, so cells with nearby ids differ."""
    hue = (0.08 + 0.6180339887 * int(cell)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.6, 0.95)
    return (r, g, b, float(alpha))


def of_class(class_name: str) -> list[bpy.types.Material]:
    """The class's shared material and its per-cell copies."""
    return [m for m in bpy.data.materials if m.get("vemcell_class") == class_name]


def set_class_colour(class_name: str, colour: Sequence[float]) -> None:
    """Recolour a class; per-cell copies keep their hue and take the class's opacity."""
    alpha = float(colour[3]) if len(colour) > 3 else 1.0
    for mat in of_class(class_name):
        if mat.get(CELL_TAG) is None:
            set_colour(mat, colour)
        elif abs(mat.diffuse_color[3] - alpha) > 1e-6:
            set_colour(mat, (*mat.diffuse_color[:3], alpha))


def cell_material(class_name: str, cell: int) -> bpy.types.Material | None:
    """The class's material for one cell (created from the class colour's opacity on first use)."""
    shared = bpy.data.materials.get(MATERIAL_PREFIX + class_name)
    if shared is None:
        return None
    name = f"{MATERIAL_PREFIX}{class_name} cell {int(cell):02d}"
    mat = bpy.data.materials.get(name)
    if mat is None:
        mat = bpy.data.materials.new(name)
        mat["vemcell_class"] = class_name
        mat[CELL_TAG] = int(cell)
    set_colour(mat, cell_colour(cell, shared.diffuse_color[3]))
    return mat


def remove_unused_cell_materials() -> None:
    """Delete per-cell copies no object uses any more (after a re-import or turning it off)."""
    for mat in list(bpy.data.materials):
        if mat.get(CELL_TAG) is not None and mat.users == 0:
            bpy.data.materials.remove(mat)
