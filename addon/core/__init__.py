"""The work behind the vemcell add-on, shared by the panel's operators and the headless script.

Nothing here draws UI; every function takes plain arguments (paths, a scene, objects) so the
interactive add-on and ``headless.py`` (``blender -b -P``) run exactly the same code.
"""

# first: puts the bundled ``vemcell`` backend on sys.path, so every module here can import its
# light modules (run options, animation names)
from . import backend  # noqa: F401
