"""Scene properties behind the panel (``scene.vemcell``)."""

from __future__ import annotations

import bpy

from ..core import cutplanes, materials, pipeline
from ..core import scene as vscene

_MODEL_ITEMS: list[tuple[str, str, str]] = []


def _model_items(self: bpy.types.PropertyGroup, context: bpy.types.Context | None) -> list:
    # Blender keeps only references to these strings: the list must outlive the call.
    _MODEL_ITEMS.clear()
    _MODEL_ITEMS.append(("DEFAULT", "Default", "The backend's default model"))
    for name, title in pipeline.shipped_models():
        _MODEL_ITEMS.append((name, name, title))
    _MODEL_ITEMS.append(("CUSTOM", "Custom .onnx", "A model file of your own (with its card)"))
    return _MODEL_ITEMS


def _volume_changed(self: VemcellSettings, context: bpy.types.Context) -> None:
    path = bpy.path.abspath(self.volume)
    found = pipeline.read_voxel_size(path) if path else None
    if found is not None:
        (z, y, x), source = found
        self.voxel_size = (z, y, x)
        self.voxel_file = (z, y, x)
        self.voxel_source = source


def suggested_sparse(voxel_size: tuple[float, float, float]) -> int | None:
    """K when the sections lie K pixels apart (2 to 8), as after imaging every K-th section of
    a FIB-SEM block; thicker serial sections are segmented as they are, so none is suggested."""
    z, y, x = voxel_size
    k = round(z / max(min(y, x), 1e-9))
    return k if 2 <= k <= 8 else None


def _class_changed(self: VemcellClass, context: bpy.types.Context) -> None:
    mat = bpy.data.materials.get(materials.MATERIAL_PREFIX + self.name)
    if mat is not None and tuple(mat.diffuse_color) != tuple(self.colour):
        materials.set_class_colour(self.name, tuple(self.colour))
    if self.by_cell != (self.name in vscene.coloured_by_cell(context.scene)):
        vscene.colour_by_cell(context.scene, self.name, self.by_cell)
    for obj in vscene.result_objects(context.scene):
        if obj.get(vscene.OBJECT_TAG) == self.name:
            obj.hide_viewport = not self.visible
            obj.hide_render = not self.visible


def _opacity_changed(self: VemcellSettings, context: bpy.types.Context) -> None:
    from ..core import emslice

    for empty in cutplanes.cut_planes(context.scene):
        plane = emslice.slice_plane(empty)
        if plane is not None:
            plane["vemcell_opacity"] = self.slice_opacity
            emslice.update(context.scene, empty)


def _solver_changed(self: VemcellSettings, context: bpy.types.Context) -> None:
    cutplanes.set_viewport_solver(context.scene, self.fast_cuts)


class VemcellClass(bpy.types.PropertyGroup):
    """Display settings of one class (all cells)."""

    name: bpy.props.StringProperty()  # type: ignore[valid-type]
    colour: bpy.props.FloatVectorProperty(  # type: ignore[valid-type]
        name="Colour", subtype="COLOR", size=4, min=0.0, max=1.0, update=_class_changed
    )
    visible: bpy.props.BoolProperty(name="Visible", default=True, update=_class_changed)  # type: ignore[valid-type]
    by_cell: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Colour by cell",
        description="Give every cell its own colour for this class (e.g. neurites' cytoplasm)",
        default=False,
        update=_class_changed,
    )


class VemcellSettings(bpy.types.PropertyGroup):
    """Everything the panel edits."""

    volume: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Volume",
        description="EM stack to segment (TIFF, MRC, Zarr, folder of slices)",
        subtype="FILE_PATH",
        update=_volume_changed,
    )
    voxel_size: bpy.props.FloatVectorProperty(  # type: ignore[valid-type]
        name="Voxel size (nm)",
        description="Voxel size Z, Y, X in nanometres (read from the file; edit if wrong)",
        size=3,
        min=0.001,
        default=(10.0, 10.0, 10.0),
    )
    voxel_source: bpy.props.StringProperty(default="")  # type: ignore[valid-type]
    # what the file says; the size is passed to the backend only when the user changed it
    voxel_file: bpy.props.FloatVectorProperty(size=3, default=(0.0, 0.0, 0.0))  # type: ignore[valid-type]
    model: bpy.props.EnumProperty(name="Model", items=_model_items)  # type: ignore[valid-type]
    custom_model: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Model file", subtype="FILE_PATH", description="An .onnx model with its JSON card"
    )
    directions: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Directions",
        description="Which slices the U-Net predicts",
        items=[
            (
                "AUTO",
                "Auto",
                "3 directions where the volume can be resliced (FIB-SEM), XY only for thick "
                "serial sections and models trained on XY slices",
            ),
            ("3", "3 directions", "XY, XZ and YZ fused (the paper's method; 3x slower)"),
            ("1", "XY only", "XY slices only"),
        ],
        default="AUTO",
    )
    median: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Median size", description="3D median filter size (0 = off)", default=3, min=0, max=15
    )
    tta: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Test-time augmentation",
        description="Average each slice's 8 rotations and mirror images: steadier labels, "
        "8x slower",
        default=False,
    )
    remove_specks: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Remove specks",
        description="Give organelle pieces smaller than the model's minimum size (its card's "
        "min_size_um3) to the class around them",
        default=True,
    )
    separate_cells: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Separate cells", description="Split the cytoplasm into cells", default=True
    )
    foreground: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Foreground",
        description="What marks cell foreground for separating cells",
        items=[
            ("auto", "Auto", "SAM when installed, else the U-Net's cytoplasm"),
            ("unet", "U-Net", "The segmentation model's cytoplasm"),
            ("sam", "SAM", "Segment Anything (needs the sam extra)"),
            ("threshold", "Threshold", "Intensity threshold"),
        ],
        default="auto",
    )
    smooth: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Smoothing", description="Mesh smoothing iterations", default=2, min=0, max=50
    )
    decimate: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Decimation",
        description="Fraction of triangles to remove",
        default=0.5,
        min=0.0,
        max=0.99,
    )
    max_cells: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Largest cells",
        description="Of a blockwise run (a large volume of many cells), import this many "
        "cells, the largest first (import the run again after changing it)",
        default=20,
        min=1,
        max=10000,
    )
    sparse: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Sections imaged every",
        description="The stack holds every K-th section of the sample: restore the sections "
        "between before segmenting (1: every section was imaged)",
        default=1,
        min=1,
        max=16,
    )
    sparse_method: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Restored by",
        description="How the sections between are made",
        items=[
            ("auto", "Best measured", "The method measured best for this kind of stack and "
             "model: the learned network for FIB-SEM-like stacks with its model, else flow"),
            ("flow", "Optical flow", "Warp both neighbours along their optical flow and blend"),
            ("learned", "Learned", "A small network that corrects the optical flow"),
            ("linear", "Linear blend", "Distance-weighted average of the two neighbours"),
        ],
        default="auto",
    )  # fmt: skip
    # job state
    running: bpy.props.BoolProperty(default=False)  # type: ignore[valid-type]
    progress: bpy.props.FloatProperty(default=0.0, min=0.0, max=1.0)  # type: ignore[valid-type]
    status: bpy.props.StringProperty(default="")  # type: ignore[valid-type]
    # display
    classes: bpy.props.CollectionProperty(type=VemcellClass)  # type: ignore[valid-type]
    fast_cuts: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Fast preview",
        description="Fast Boolean solver in the viewport (renders always use the exact one)",
        default=True,
        update=_solver_changed,
    )
    slice_opacity: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="EM slice opacity",
        description="Opacity of the EM slices shown on cut planes",
        default=1.0,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
        update=_opacity_changed,
    )
    cut_axis: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Axis",
        items=[(a, a.title() if a == "FREE" else a, f"Cut plane {a}") for a in cutplanes.AXES],
        default="Z",
    )
    # animation and rendering
    frames: bpy.props.IntProperty(name="Frames", default=120, min=1, max=10000)  # type: ignore[valid-type]
    preset: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Preset",
        items=[
            ("preview", "Preview", "Workbench: seconds per frame"),
            ("final", "Final", "Cycles, denoised"),
        ],
        default="preview",
    )
    output: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Output", subtype="FILE_PATH", default="//vemcell.mp4"
    )
    samples: bpy.props.IntProperty(name="Samples", default=16, min=1, max=4096)  # type: ignore[valid-type]


def sync_classes(scene: bpy.types.Scene) -> None:
    """Fill the panel's class list from the imported result's materials."""
    settings = scene.vemcell
    root = vscene.find_root(scene)
    names = list(root.get("vemcell_classes", [])) if root else []
    keep = {c.name: (c.visible, c.by_cell) for c in settings.classes}
    by_cell = vscene.coloured_by_cell(scene)
    settings.classes.clear()
    for name in names:
        item = settings.classes.add()
        item.name = name
        mat = bpy.data.materials.get(materials.MATERIAL_PREFIX + name)
        item.colour = tuple(mat.diffuse_color) if mat else (0.6, 0.6, 0.6, 1.0)
        visible, cells = keep.get(name, (True, False))
        item.visible = visible
        item.by_cell = cells or name in by_cell  # a re-run keeps the choice


def chosen_colours(scene: bpy.types.Scene) -> dict[str, tuple[float, float, float, float]]:
    """Colours the user set in the panel (kept across re-runs)."""
    return {c.name: tuple(c.colour) for c in scene.vemcell.classes}


CLASSES = (VemcellClass, VemcellSettings)


def register_properties() -> None:
    bpy.types.Scene.vemcell = bpy.props.PointerProperty(type=VemcellSettings)


def unregister_properties() -> None:
    del bpy.types.Scene.vemcell
