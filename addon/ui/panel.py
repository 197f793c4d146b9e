"""The vemcell sidebar tab in the 3D viewport."""

from __future__ import annotations

import bpy

from ..core import cutplanes
from ..core import scene as vscene
from . import props


class _Base:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "vemcell"


class VEMCELL_PT_main(_Base, bpy.types.Panel):
    bl_label = "vemcell"
    bl_idname = "VEMCELL_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        s = context.scene.vemcell
        layout = self.layout
        col = layout.column(align=True)
        col.prop(s, "volume", text="")
        col.operator("vemcell.sample", icon="FILE_IMAGE")
        box = layout.box()
        box.prop(s, "voxel_size")
        if s.voxel_source:
            box.label(text=f"Voxel size from: {s.voxel_source}", icon="INFO")
        layout.prop(s, "model")
        if s.model == "CUSTOM":
            layout.prop(s, "custom_model", text="")
        opts = layout.column(heading="Options")
        opts.prop(s, "directions")
        opts.prop(s, "median")
        opts.prop(s, "tta")
        opts.prop(s, "remove_specks")
        opts.prop(s, "separate_cells")
        if s.separate_cells:
            opts.prop(s, "foreground")
        opts.prop(s, "smooth")
        opts.prop(s, "decimate")
        opts.prop(s, "sparse")
        if s.sparse > 1:
            opts.prop(s, "sparse_method")
        k = props.suggested_sparse(tuple(s.voxel_size))
        if k and s.sparse == 1:
            opts.label(text=f"Sections are {k}x the pixel apart: imaged every {k}th?", icon="INFO")
        if s.running:
            layout.progress(factor=s.progress, type="BAR", text=s.status or "Running")
            layout.operator("vemcell.cancel", icon="CANCEL")
        else:
            row = layout.row()
            row.scale_y = 1.6
            row.operator("vemcell.build", icon="PLAY")
            if s.status:
                layout.label(text=s.status)
        row = layout.row(align=True)
        row.operator("vemcell.import_run", icon="IMPORT")
        row.operator("vemcell.open_in_browser", icon="URL")
        root = vscene.find_root(context.scene)
        if root is not None and "vemcell_cells_total" in root:
            box = layout.box()
            shown, total = root["vemcell_cells_shown"], root["vemcell_cells_total"]
            box.label(text=f"Showing the {shown} largest of {total} cells", icon="INFO")
            box.prop(s, "max_cells")


class VEMCELL_PT_display(_Base, bpy.types.Panel):
    bl_label = "Classes"
    bl_parent_id = "VEMCELL_PT_main"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return len(context.scene.vemcell.classes) > 0

    def draw(self, context: bpy.types.Context) -> None:
        for item in context.scene.vemcell.classes:
            row = self.layout.row(align=True)
            icon = "HIDE_OFF" if item.visible else "HIDE_ON"
            row.prop(item, "visible", text="", icon=icon, emboss=False)
            row.label(text=item.name)
            row.prop(item, "by_cell", text="", icon="COLOR", toggle=True)
            row.prop(item, "colour", text="")


class VEMCELL_PT_measurements(_Base, bpy.types.Panel):
    bl_label = "Measurements"
    bl_parent_id = "VEMCELL_PT_main"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(vscene.result_objects(context.scene))

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        obj = context.active_object
        if obj is None or obj.get(vscene.OBJECT_TAG) is None:
            layout.label(text="Select an organelle to see its measurements.")
            return
        layout.label(text=obj.name, icon="MESH_DATA")
        col = layout.column(align=True)
        for key in str(obj.get("vemcell_measured", "")).split(","):
            if key and key in obj:
                value = obj[key]
                text = f"{value:.4g}" if isinstance(value, float) else str(value)
                row = col.row()
                row.label(text=key)
                row.label(text=text)


class VEMCELL_PT_timings(_Base, bpy.types.Panel):
    bl_label = "Timings"
    bl_parent_id = "VEMCELL_PT_main"
    bl_options = {"DEFAULT_CLOSED"}  # noqa: RUF012

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(vscene.run_timings(context.scene))

    def draw(self, context: bpy.types.Context) -> None:
        col = self.layout.column(align=True)
        for stage, seconds in vscene.run_timings(context.scene):
            row = col.row()
            row.label(text=stage)
            row.label(text=f"{seconds:.1f} s")


class VEMCELL_PT_cuts(_Base, bpy.types.Panel):
    bl_label = "Cut planes"
    bl_parent_id = "VEMCELL_PT_main"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(vscene.result_objects(context.scene))

    def draw(self, context: bpy.types.Context) -> None:
        s = context.scene.vemcell
        layout = self.layout
        row = layout.row(align=True)
        row.prop(s, "cut_axis", text="")
        row.operator("vemcell.add_cut", icon="ADD").axis = s.cut_axis
        layout.prop(s, "fast_cuts")
        layout.prop(s, "slice_opacity")
        for empty in cutplanes.cut_planes(context.scene):
            box = layout.box()
            row = box.row(align=True)
            row.label(text=empty.name, icon="MOD_BOOLEAN")
            em = row.operator(
                "vemcell.toggle_slice",
                text="",
                icon="IMAGE_DATA",
                depress=bool(empty.get("vemcell_em")),
            )
            em.plane = empty.name
            row.operator("vemcell.remove_cut", text="", icon="X").plane = empty.name
            box.prop(empty, "location", text="")
            if empty.get("vemcell_axis") == "FREE":
                box.prop(empty, "rotation_euler", text="")


class VEMCELL_PT_render(_Base, bpy.types.Panel):
    bl_label = "Animation and rendering"
    bl_parent_id = "VEMCELL_PT_main"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(vscene.result_objects(context.scene))

    def draw(self, context: bpy.types.Context) -> None:
        s = context.scene.vemcell
        layout = self.layout
        layout.prop(s, "frames")
        grid = layout.grid_flow(columns=2, align=True)
        for idname, icon in (
            ("vemcell.turntable", "FILE_REFRESH"),
            ("vemcell.cut_sweep", "MOD_BOOLEAN"),
            ("vemcell.reveal", "HIDE_OFF"),
            ("vemcell.flythrough", "IMAGE_DATA"),
        ):
            grid.operator(idname, icon=icon).frames = s.frames
        layout.prop(s, "preset", expand=True)
        if s.preset == "final":
            layout.prop(s, "samples")
        r = context.scene.render
        row = layout.row(align=True)
        row.prop(r, "resolution_x", text="W")
        row.prop(r, "resolution_y", text="H")
        layout.prop(s, "output", text="")
        layout.operator("vemcell.render", icon="RENDER_ANIMATION").preset = s.preset


CLASSES = (
    VEMCELL_PT_main,
    VEMCELL_PT_display,
    VEMCELL_PT_measurements,
    VEMCELL_PT_timings,
    VEMCELL_PT_cuts,
    VEMCELL_PT_render,
)
