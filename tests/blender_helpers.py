"""Helpers for the Blender tests: a small run folder in the ``vemcell run`` layout.

The fake run has two cells made of spheres (cytoplasm, nucleus, mitochondrion, plastid,
peroxisome) written as PLY meshes with trimesh, a ``scene.json`` manifest, a ``report.json``
that points at a synthetic EM volume, so the add-on can be tested without the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

VOXEL_NM = (20.0, 10.0, 10.0)
SHAPE = (40, 80, 160)  # z, y, x -> 0.8 x 0.8 x 1.6 µm


def make_volume(path: Path) -> Path:
    """A synthetic EM-like stack: a gradient plus a bright disc, ImageJ TIFF with voxel size."""
    import tifffile

    z, y, x = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1], 0 : SHAPE[2]]
    img = (x * 1.2 + z * 2.0).astype(np.float32)
    img[(y - 40) ** 2 + (x - 40) ** 2 < 15**2] = 250
    img = np.clip(img, 0, 255).astype(np.uint8)
    tifffile.imwrite(
        path,
        img,
        imagej=True,
        resolution=(1.0 / VOXEL_NM[2], 1.0 / VOXEL_NM[1]),
        metadata={"spacing": VOXEL_NM[0], "unit": "nm", "axes": "ZYX"},
    )
    return path


def make_fake_run(root: Path) -> Path:
    """Write a run folder under ``root`` and return it."""
    import trimesh

    run = root / "run"
    (run / "meshes").mkdir(parents=True)
    volume = make_volume(root / "volume.tif")
    objects = []
    spec = [
        # cell, class index, class name, centre (µm), radius (µm)
        (1, 1, "cytoplasm", (0.4, 0.4, 0.4), 0.38),
        (1, 2, "nucleus", (0.4, 0.4, 0.4), 0.15),
        (1, 4, "mitochondrion", (0.55, 0.25, 0.4), 0.08),
        (1, 3, "plastid", (0.25, 0.55, 0.4), 0.09),
        (2, 1, "cytoplasm", (1.2, 0.4, 0.4), 0.38),
        (2, 5, "peroxisome", (1.2, 0.4, 0.4), 0.12),
    ]
    colours = {
        "cytoplasm": [1, 1, 1, 0.3],
        "nucleus": [0.5, 0.5, 0.5, 1],
        "plastid": [0, 1, 0, 1],
        "mitochondrion": [1, 1, 0, 1],
        "peroxisome": [1, 0.5, 0, 1],
    }
    for cell, index, name, centre, radius in spec:
        sphere = trimesh.creation.icosphere(subdivisions=3, radius=radius)
        sphere.apply_translation(centre)
        rel = f"meshes/cell_{cell:02d}__{name}.ply"
        sphere.export(run / rel)
        objects.append(
            {
                "name": f"cell_{cell:02d}/{name}",
                "cell": cell,
                "class_index": index,
                "class_name": name,
                "color": colours[name],
                "mesh": rel,
                "measurements": {
                    "cell": cell,
                    "class_index": index,
                    "class_name": name,
                    "voxels": int(4 / 3 * np.pi * radius**3 * 1e9 / np.prod(VOXEL_NM)),
                    "volume_um3": round(4 / 3 * np.pi * radius**3, 5),
                    "surface_area_um2": round(4 * np.pi * radius**2, 5),
                    "sphericity": 1.0,
                    "components": 1,
                },
            }
        )
    manifest = {
        "vemcell": "scene/1",
        "units": "um",
        "objects": objects,
        "cells": [1, 2],
        "classes": [{"name": k, "color": v} for k, v in colours.items()],
    }
    (run / "scene.json").write_text(json.dumps(manifest, indent=1))
    timings = {"read": 0.1, "segment": 2.0, "cells": 0.3, "mesh": 0.5, "total": 3.0}
    (run / "report.json").write_text(
        json.dumps({"input": str(volume), "voxel_size_nm": list(VOXEL_NM), "timings_s": timings})
    )
    return run


def make_sample_run(root: Path) -> Path:
    """A run folder of the embedded sample built from its exact labels with the backend's own
    meshing, measuring and export (everything ``vemcell run`` does after segmentation)."""
    import tifffile

    from vemcell.meshes import measure, mesh, scene
    from vemcell.synth.generator import sample_dir

    sample = Path(sample_dir())
    meta = json.loads((sample / "sample.json").read_text())
    labels = tifffile.imread(sample / "labels.tif")
    cells = tifffile.imread(sample / "cells.tif")
    voxel = tuple(float(v) for v in meta["voxel_size_nm_zyx"])
    classes = [(i, c["name"], c["color"]) for i, c in enumerate(meta["classes"]) if i != 0]
    items = mesh.mesh_labels(labels, voxel, classes, instances=cells)
    rows = measure.measure(labels, voxel, classes, instances=cells, meshes=items)
    run = root / "sample_run"
    scene.write_outputs(run, items, rows)
    (run / "report.json").write_text(
        json.dumps({"input": str(sample / "image.tif"), "voxel_size_nm": list(voxel)})
    )
    return run
