"""``scene.glb`` opens Z-up in µm in Blender's own glTF importer, with translucent cytoplasm.

Runs Blender (the bpy module) in a subprocess so its state does not leak into other tests;
skipped when bpy is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from vemcell.meshes import measure, mesh, scene

pytestmark = pytest.mark.blender

SCRIPT = """
import json, sys
import bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=sys.argv[1])
out = {}
for ob in bpy.context.scene.objects:
    if ob.type != "MESH":
        continue
    pts = [ob.matrix_world @ v.co for v in ob.data.vertices]
    bsdf = ob.active_material.node_tree.nodes.get("Principled BSDF")
    out[ob.name] = {
        "lo": [min(p[i] for p in pts) for i in range(3)],
        "hi": [max(p[i] for p in pts) for i in range(3)],
        "alpha": bsdf.inputs["Alpha"].default_value,
        "color": list(bsdf.inputs["Base Color"].default_value),
    }
print("RESULT" + json.dumps(out))
"""


def test_glb_is_z_up_in_blender(tmp_path):
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("bpy (Blender as a Python module) is not installed")
    labels = np.zeros((12, 40, 60), np.uint8)
    labels[:, :, :] = 1  # cytoplasm filling the volume: 0.12 µm tall (Z), 0.6 µm wide (X)
    labels[3:9, 10:30, 20:40] = 4
    classes = [(1, "cytoplasm", (1.0, 1.0, 1.0, 0.3)), (4, "mitochondrion", (1.0, 0.9, 0.0, 1))]
    items = mesh.mesh_labels(labels, (10.0, 10.0, 10.0), classes, smooth=0, decimate=0)
    rows = measure.measure(labels, (10.0, 10.0, 10.0), classes, meshes=items)
    scene.write_outputs(tmp_path, items, rows)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "scene.glb")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT"))
    objs = json.loads(line[len("RESULT") :])
    cyto = objs["cytoplasm"]
    size = np.subtract(cyto["hi"], cyto["lo"])
    assert size == pytest.approx([0.6, 0.4, 0.12], abs=0.011)  # X, Y, Z in µm, Z up
    assert cyto["alpha"] == pytest.approx(0.3, abs=0.01)
    mito = objs["mitochondrion"]
    assert mito["lo"][2] == pytest.approx(0.025, abs=0.006)  # slices 3..8 → Z 0.025..0.085 µm
    assert mito["hi"][2] == pytest.approx(0.085, abs=0.006)
    assert mito["alpha"] == pytest.approx(1.0)
