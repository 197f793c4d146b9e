"""vemcell for Blender: one-click 3D cell models from volume electron microscopy.

A sidebar tab ("vemcell") runs the vemcell backend as a subprocess on an EM stack, imports every
cell and organelle as coloured, measured objects, cuts them open with capped cut planes showing
the original EM slice, and keys and renders animations. ``headless.py`` does the same from the
command line (``blender -b -P headless.py -- VOLUME ...``).
"""

from __future__ import annotations

import bpy

from . import ui
from .core import emslice


def register() -> None:
    for cls in ui.CLASSES:
        bpy.utils.register_class(cls)
    ui.props.register_properties()
    emslice.register_handlers()


def unregister() -> None:
    emslice.unregister_handlers()
    ui.props.unregister_properties()
    for cls in reversed(ui.CLASSES):
        bpy.utils.unregister_class(cls)
