"""The work behind the vemcell add-on, shared by the panel's operators and the headless script.

Nothing here draws UI; every function takes plain arguments (paths, a scene, objects) so the
interactive add-on and ``headless.py`` (``blender -b -P``) run exactly the same code.
"""
