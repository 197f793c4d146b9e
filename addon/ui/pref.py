"""Add-on preferences: which Python runs the backend and where runs are kept."""

from __future__ import annotations

import bpy

from ..core import backend

ADDON_PACKAGE = __package__.rpartition(".")[0]


class VEMCELL_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    python: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Backend Python",
        description=(
            "Python interpreter that runs the vemcell backend; empty uses Blender's own "
            "Python with the wheels bundled in the extension"
        ),
        subtype="FILE_PATH",
        default="",
    )
    runs_dir: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Runs folder",
        description="Where pipeline results are written; empty uses the extension's user folder",
        subtype="DIR_PATH",
        default="",
    )
    slice_resolution: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="EM slice resolution",
        description="Pixels along each side of the EM-slice image on a cut plane",
        default=256,
        min=32,
        max=2048,
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "python")
        layout.prop(self, "runs_dir")
        layout.prop(self, "slice_resolution")
        bdir = backend.backend_dir()
        layout.label(text=f"Backend package: {bdir or 'installed vemcell'}")


def preferences(context: bpy.types.Context | None = None) -> VEMCELL_AP_preferences | None:
    """This add-on's preferences (None when not registered as an add-on, e.g. headless)."""
    ctx = context or bpy.context
    addon = ctx.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon else None


def runs_dir(context: bpy.types.Context | None = None) -> str | None:
    """The folder for pipeline runs: the preference, else the extension's user folder."""
    prefs = preferences(context)
    if prefs and prefs.runs_dir:
        return bpy.path.abspath(prefs.runs_dir)
    if ADDON_PACKAGE.startswith("bl_ext."):
        try:
            return bpy.utils.extension_path_user(ADDON_PACKAGE, path="runs", create=True)
        except Exception:
            return None
    return None


def python_path(context: bpy.types.Context | None = None) -> str:
    prefs = preferences(context)
    return bpy.path.abspath(prefs.python) if prefs and prefs.python else ""


CLASSES = (VEMCELL_AP_preferences,)
