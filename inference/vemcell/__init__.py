"""vemcell: one-click 3D cell models from volume electron microscopy.

The backend package: reading volumes, segmenting organelles with ONNX U-Nets, meshing and
measuring them. It never imports bpy, so the CLI, the Blender add-on's subprocess and headless
rendering all share it.
"""

__version__ = "0.1.0"
