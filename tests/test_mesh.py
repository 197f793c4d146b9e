"""Meshing, measuring and export: accuracy on analytic shapes, watertightness, CLI contract."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import trimesh

from vemcell.cli.main import main
from vemcell.errors import VemcellError
from vemcell.io.volumes import write_tiff
from vemcell.meshes import measure, mesh, scene

CLASSES = [
    (1, "cytoplasm", (1.0, 1.0, 1.0, 0.3)),
    (2, "nucleus", (0.5, 0.5, 0.5, 1.0)),
    (3, "plastid", (0.0, 0.8, 0.0, 1.0)),
    (4, "mitochondrion", (1.0, 0.9, 0.0, 1.0)),
    (5, "peroxisome", (1.0, 0.5, 0.0, 1.0)),
]
INFO = {
    "vemcell": "labels/1",
    "model": "test",
    "classes": [{"name": "background", "color": [0, 0, 0, 0]}]
    + [{"name": n, "color": list(c)} for _, n, c in CLASSES],
    "background_class": 0,
}


def ball(radius_nm: float, voxel_nm: tuple[float, float, float], pad: int = 3) -> np.ndarray:
    """A ball of physical radius ``radius_nm`` sampled on an anisotropic grid (centred)."""
    axes = []
    for v in voxel_nm:
        n = 2 * (math.ceil(radius_nm / v) + pad) + 1
        axes.append((np.arange(n) - (n - 1) / 2) * v)
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    return (zz**2 + yy**2 + xx**2 <= radius_nm**2).astype(np.uint8) * 4


def tm(item: mesh.MeshItem) -> trimesh.Trimesh:
    return trimesh.Trimesh(item.vertices, item.faces, process=False)


@pytest.mark.parametrize(
    "voxel", [(10.0, 10.0, 10.0), (20.0, 10.0, 10.0), (30.0, 12.0, 10.0), (40.0, 10.0, 10.0)]
)
def test_sphere_volume_and_area_within_3_percent(voxel):
    r_nm = 20 * 10.0  # radius 20 voxels along x
    labels = ball(r_nm, voxel)
    items = mesh.mesh_labels(labels, voxel, CLASSES)
    assert [it.name for it in items] == ["mitochondrion"]
    assert tm(items[0]).is_watertight
    rows = measure.measure(labels, voxel, CLASSES, meshes=items)
    r_um = r_nm / 1000.0
    volume, area = 4 / 3 * math.pi * r_um**3, 4 * math.pi * r_um**2
    assert rows[0]["volume_um3"] == pytest.approx(volume, rel=0.03)
    assert rows[0]["surface_area_um2"] == pytest.approx(area, rel=0.03)
    assert rows[0]["sphericity"] == pytest.approx(1.0, abs=0.03)
    assert rows[0]["components"] == 1
    # the decimated mesh still encloses the same volume and sits where the ball is
    assert tm(items[0]).volume == pytest.approx(volume, rel=0.03)
    centre = np.array([(s - 1) / 2 * v for s, v in zip(labels.shape, voxel, strict=True)])
    centre_xyz = centre[::-1] / 1000.0
    assert np.allclose(tm(items[0]).center_mass, centre_xyz, atol=0.002)


def test_raw_marching_cubes_overestimates_area_so_smoothing_matters():
    labels = ball(200.0, (10.0, 10.0, 10.0))
    raw = mesh.mesh_labels(labels, (10, 10, 10), CLASSES, smooth=0, decimate=0)
    smooth = mesh.mesh_labels(labels, (10, 10, 10), CLASSES, decimate=0)
    area = 4 * math.pi * 0.2**2
    assert raw[0].area_um2 > 1.05 * area
    assert abs(smooth[0].area_um2 / area - 1) < abs(raw[0].area_um2 / area - 1)


def test_coordinates_axes_and_outward_winding():
    labels = np.zeros((10, 12, 14), np.uint8)
    labels[2:5, 3:6, 4:8] = 2
    voxel = (30.0, 20.0, 10.0)
    (item,) = mesh.mesh_labels(labels, voxel, CLASSES, smooth=0, decimate=0)
    lo, hi = item.vertices.min(axis=0), item.vertices.max(axis=0)
    # X from array axis 2 (x), Y from axis 1, Z from axis 0; surface half a voxel outside.
    assert np.allclose(lo, [3.5 * 0.010, 2.5 * 0.020, 1.5 * 0.030], atol=1e-5)
    assert np.allclose(hi, [7.5 * 0.010, 5.5 * 0.020, 4.5 * 0.030], atol=1e-5)
    t = tm(item)
    assert t.is_watertight and t.volume > 0  # positive volume = normals point outwards
    assert item.vertices.dtype == np.float32 and item.faces.dtype == np.int32


def test_border_touching_and_touching_classes_are_all_watertight():
    rng = np.random.default_rng(0)
    labels = np.zeros((24, 30, 36), np.uint8)
    labels[:, :, :12] = 1  # fills three volume faces
    labels[:, :, 12:] = 3  # touches class 1 along a whole plane
    labels[5:15, 5:20, 8:20] = 2  # straddles classes 1 and 3
    labels[rng.random(labels.shape) < 0.02] = 5  # speckle: single voxels, diagonal contacts
    items = mesh.mesh_labels(labels, (15.0, 10.0, 10.0), CLASSES, smooth=10, decimate=0.5)
    assert {it.class_index for it in items} == {1, 2, 3, 5}
    for it in items:
        t = tm(it)
        assert t.is_watertight, it.name
        assert mesh.is_watertight(it.faces)
        assert t.volume > 0


def test_decimation_ratio_and_face_target_keep_meshes_closed():
    labels = ball(300.0, (10.0, 10.0, 10.0))
    (full,) = mesh.mesh_labels(labels, (10, 10, 10), CLASSES, decimate=0)
    (half,) = mesh.mesh_labels(labels, (10, 10, 10), CLASSES, decimate=0.5)
    (few,) = mesh.mesh_labels(labels, (10, 10, 10), CLASSES, decimate=2000)
    assert len(half.faces) < 0.6 * len(full.faces)
    assert len(few.faces) <= 2200
    for it in (half, few):
        assert tm(it).is_watertight
        assert tm(it).volume == pytest.approx(tm(full).volume, rel=0.02)
    assert half.area_um2 == pytest.approx(full.area_um2)  # area is measured before decimation


def test_is_watertight_matches_trimesh_on_broken_meshes():
    box = trimesh.creation.box()
    assert mesh.is_watertight(box.faces) and box.is_watertight
    assert not mesh.is_watertight(box.faces[1:])  # a hole
    flipped = box.faces.copy()
    flipped[0] = flipped[0][::-1]
    assert not mesh.is_watertight(flipped)  # inconsistent winding


def two_cells() -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros((20, 30, 50), np.uint8)
    cells = np.zeros_like(labels, dtype=np.uint16)
    cells[2:18, 3:27, 2:24] = 1
    cells[2:18, 3:27, 24:48] = 2  # the two cells touch
    labels[cells > 0] = 1
    labels[6:12, 8:20, 6:14] = 2  # nucleus of cell 1
    labels[6:10, 8:12, 30:34] = 4  # mitochondrion in cell 2 ...
    labels[12:15, 18:22, 40:44] = 4  # ... in two pieces
    labels[0:2, 0:3, 0:3] = 4  # a mitochondrion outside every cell
    return labels, cells


def test_instances_give_one_mesh_per_cell_and_class():
    labels, cells = two_cells()
    items = mesh.mesh_labels(labels, (20, 10, 10), CLASSES, instances=cells)
    names = [it.name for it in items]
    assert names == [
        "mitochondrion",
        "cell_01/cytoplasm",
        "cell_01/nucleus",
        "cell_02/cytoplasm",
        "cell_02/mitochondrion",
    ]
    assert [it.cell for it in items] == [None, 1, 1, 2, 2]
    assert all(tm(it).is_watertight for it in items)
    rows = measure.measure(labels, (20, 10, 10), CLASSES, instances=cells, meshes=items)
    by = {(r["cell"], r["class_name"]): r for r in rows}
    assert by[(2, "mitochondrion")]["components"] == 2
    assert by[(2, "mitochondrion")]["voxels"] == 4 * 4 * 4 + 3 * 4 * 4
    assert by[("", "mitochondrion")]["voxels"] == 18
    assert by[(1, "nucleus")]["volume_um3"] == pytest.approx(6 * 12 * 8 * 20 * 10 * 10 / 1e9)
    s = measure.summary(rows)
    assert s["cells"] == [1, 2]
    assert s["classes"]["mitochondrion"]["objects"] == 2
    assert s["classes"]["mitochondrion"]["cells"] == 1
    frac = s["per_cell"]["1"]["classes"]
    assert frac["cytoplasm"]["fraction_of_cell"] + frac["nucleus"]["fraction_of_cell"] == (
        pytest.approx(1.0)
    )


@pytest.mark.parametrize("with_cells", [False, True])
def test_class_zero_is_meshed_when_it_is_not_the_background(with_cells):
    """A model whose class 0 is an organelle (vnc5: 0 cytoplasm, background 1 membrane)."""
    labels = np.ones((16, 20, 24), np.uint8)
    labels[3:9, 4:12, 4:14] = 0
    labels[10:14, 5:15, 12:20] = 2
    cells = np.zeros(labels.shape, np.uint16)
    cells[:, :, :12], cells[:, :, 12:] = 1, 2
    classes = [(0, "cytoplasm", (1, 1, 1, 1)), (2, "glia", (0, 0, 1, 1))]
    inst = cells if with_cells else None
    items = mesh.mesh_labels(labels, (10, 10, 10), classes, instances=inst)
    assert sorted({it.class_name for it in items}) == ["cytoplasm", "glia"]
    assert all(tm(it).is_watertight for it in items)
    rows = measure.measure(labels, (10, 10, 10), classes, instances=inst, meshes=items)
    voxels = {}
    for r in rows:
        voxels[r["class_name"]] = voxels.get(r["class_name"], 0) + r["voxels"]
    assert voxels == {"cytoplasm": 6 * 8 * 10, "glia": 4 * 10 * 8}
    objects = mesh.object_ids(labels, classes, inst)
    assert {objects.split(int(i))[1] for i in np.unique(objects.ids) if i} == {0, 2}


def test_components_use_26_connectivity():
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[1, 1, 1] = labels[2, 2, 2] = 5  # corner contact: one piece
    labels[5, 5, 5] = 5  # separate
    rows = measure.measure(labels, (10, 10, 10), CLASSES)
    assert rows[0]["components"] == 2


def test_measure_meshes_itself_with_default_smoothing():
    labels, cells = two_cells()
    items = mesh.mesh_labels(labels, (20, 10, 10), CLASSES, instances=cells)
    given = measure.measure(labels, (20, 10, 10), CLASSES, instances=cells, meshes=items)
    alone = measure.measure(labels, (20, 10, 10), CLASSES, instances=cells)
    for a, b in zip(given, alone, strict=True):
        assert a["surface_area_um2"] == pytest.approx(b["surface_area_um2"], rel=1e-9)


def test_bad_inputs_are_one_clear_error():
    labels, cells = two_cells()
    with pytest.raises(VemcellError, match="same shape"):
        mesh.mesh_labels(labels, (10, 10, 10), CLASSES, instances=cells[:, :, :10])
    with pytest.raises(VemcellError, match="only background"):
        mesh.mesh_labels(np.zeros((5, 5, 5), np.uint8), (10, 10, 10), CLASSES)
    with pytest.raises(VemcellError, match="only background"):
        measure.measure(np.zeros((5, 5, 5), np.uint8), (10, 10, 10), CLASSES)
    with pytest.raises(VemcellError, match="positive"):
        mesh.mesh_labels(labels, (0, 10, 10), CLASSES)
    with pytest.raises(VemcellError, match="negative"):
        mesh.mesh_labels(-labels.astype(np.int16), (10, 10, 10), CLASSES)


def test_write_outputs_scene_files_and_gltf_round_trip(tmp_path):
    labels, cells = two_cells()
    items = mesh.mesh_labels(labels, (20, 10, 10), CLASSES, instances=cells)
    rows = measure.measure(labels, (20, 10, 10), CLASSES, instances=cells, meshes=items)
    manifest = scene.write_outputs(tmp_path, items, rows, mesh_format="obj")
    on_disk = json.loads((tmp_path / "scene.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["vemcell"] == "scene/1" and on_disk["units"] == "um"
    assert on_disk["cells"] == [1, 2]
    obj = {o["name"]: o for o in on_disk["objects"]}
    mito = obj["cell_02/mitochondrion"]
    assert mito["mesh"] == "meshes/cell_02__mitochondrion.obj"
    assert mito["cell"] == 2 and mito["class_index"] == 4
    assert mito["measurements"]["components"] == 2
    assert obj["mitochondrion"]["cell"] is None
    for o in on_disk["objects"]:
        loaded = trimesh.load(tmp_path / o["mesh"], process=False)
        assert len(loaded.faces) == o["faces"]
    assert not list(tmp_path.rglob("*.partial"))

    glb = trimesh.load(tmp_path / "scene.glb")
    assert set(glb.geometry) == {it.name for it in items}
    for it in items:
        g = glb.geometry[it.name]
        assert g.is_watertight
        back = scene.gltf_to_zup(g.vertices)
        assert np.allclose(back, it.vertices, atol=1e-5)  # Y-up in the file, Z-up after import
        mat = g.visual.material
        assert np.allclose(np.asarray(mat.baseColorFactor) / 255.0, it.color, atol=1 / 255)
        assert mat.alphaMode == ("BLEND" if it.color[3] < 1 else "OPAQUE")
    # vemcell's Z (slices) is glTF's Y
    assert np.allclose(scene.zup_to_gltf(np.array([[1.0, 2.0, 3.0]])), [[1.0, 3.0, -2.0]])


@pytest.mark.parametrize("fmt", ["ply", "stl"])
def test_mesh_files_in_each_format_are_closed(tmp_path, fmt):
    labels = ball(150.0, (10.0, 10.0, 10.0))
    items = mesh.mesh_labels(labels, (10, 10, 10), CLASSES)
    rows = measure.measure(labels, (10, 10, 10), CLASSES, meshes=items)
    scene.write_outputs(tmp_path, items, rows, mesh_format=fmt)
    loaded = trimesh.load(tmp_path / "meshes" / f"mitochondrion.{fmt}")
    assert loaded.is_watertight
    assert loaded.volume == pytest.approx(tm(items[0]).volume, rel=1e-4)


# ---- command line ---------------------------------------------------------------------------


def write_labels(tmp_path: Path, with_info: bool = True) -> tuple[Path, Path]:
    labels, cells = two_cells()
    lp, cp = tmp_path / "labels.tif", tmp_path / "cells.tif"
    write_tiff(lp, labels, (20.0, 10.0, 10.0), metadata=INFO if with_info else None)
    write_tiff(cp, cells, (20.0, 10.0, 10.0), metadata={"vemcell": "instances/1"})
    return lp, cp


def test_cli_mesh_writes_scene_meshes_and_measurements(tmp_path, capsys):
    lp, cp = write_labels(tmp_path)
    out = tmp_path / "out"
    rc = main(["mesh", str(lp), "--out", str(out), "--instances", str(cp), "--format", "stl"])
    assert rc == 0
    for name in ("scene.glb", "scene.json", "measurements.csv", "measurements.json"):
        assert (out / name).is_file()
    manifest = json.loads((out / "scene.json").read_text())
    assert {o["class_name"] for o in manifest["objects"]} == {
        "cytoplasm",
        "nucleus",
        "mitochondrion",
    }
    assert (out / "meshes" / "cell_01__nucleus.stl").is_file()
    with open(out / "measurements.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == measure.FIELDS
    assert len(rows) == 5
    cyto = json.loads((out / "scene.json").read_text())["objects"][1]
    assert cyto["color"] == [1.0, 1.0, 1.0, 0.3]


def test_cli_measure_and_progress_json(tmp_path, capsys):
    lp, _cp = write_labels(tmp_path, with_info=False)
    out = tmp_path / "m.csv"
    rc = main(["measure", str(lp), "--out", str(out), "--progress", "json"])
    assert rc == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert lines[-1]["stage"] == "done" and lines[-1]["fraction"] == 1.0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["class_name"] for r in rows] == ["class_1", "class_2", "class_4"]  # generic names
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["voxel_size_nm"] == [20.0, 10.0, 10.0]


def test_cli_voxel_size_override_scales_volumes(tmp_path, capsys):
    lp, _ = write_labels(tmp_path)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["measure", str(lp), "--out", str(a)]) == 0
    assert main(["measure", str(lp), "--out", str(b), "--voxel-size", "40", "10", "10"]) == 0
    va = [float(r["volume_um3"]) for r in csv.DictReader(open(a, newline=""))]
    vb = [float(r["volume_um3"]) for r in csv.DictReader(open(b, newline=""))]
    assert vb == pytest.approx([2 * v for v in va], rel=1e-5)


def test_cli_model_card_names_classes(tmp_path, capsys):
    lp, _ = write_labels(tmp_path, with_info=False)
    card = {
        "format": "vemcell-model-card/1",
        "name": "tiny",
        "onnx": "tiny.onnx",
        "classes": INFO["classes"],
        "background_class": 0,
    }
    (tmp_path / "tiny.json").write_text(json.dumps(card))
    (tmp_path / "tiny.onnx").write_bytes(b"")
    out = tmp_path / "m.csv"
    assert (
        main(["measure", str(lp), "--out", str(out), "--model", str(tmp_path / "tiny.json")]) == 0
    )
    names = [r["class_name"] for r in csv.DictReader(open(out, newline=""))]
    assert names == ["cytoplasm", "nucleus", "mitochondrion"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    lp, _cp = write_labels(tmp_path)
    small = tmp_path / "small.tif"
    write_tiff(small, np.ones((4, 4, 4), np.uint16), (20.0, 10.0, 10.0))
    empty = tmp_path / "empty.tif"
    write_tiff(empty, np.zeros((4, 4, 4), np.uint8), (20.0, 10.0, 10.0), metadata=INFO)
    cases = [
        (["mesh", str(lp), "--out", str(tmp_path / "o1"), "--instances", str(small)], "shape"),
        (["mesh", str(empty), "--out", str(tmp_path / "o2")], "no foreground"),
        (["measure", str(empty), "--out", str(tmp_path / "o3.csv")], "no foreground"),
        (["mesh", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "o4")], "does not exist"),
        (["mesh", str(lp), "--out", str(tmp_path / "o5"), "--smooth", "-1"], "--smooth"),
        (["mesh", str(lp), "--out", str(lp)], "is a file"),
    ]
    for argv, text in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and text in err, err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o3.csv").exists()


# ---- real FIB-SEM labels ----------------------------------------------------------------------


@pytest.mark.slow
def test_real_fibsem_labels_mesh_watertight():
    from conftest import shared_data
    from vemcell.io.volumes import read_volume

    root = shared_data("urocell_fibsem_labels")
    vol = read_volume(root / "fib1-1-0-3_organelles.tif", kind="labels")
    inst = read_volume(root / "fib1-1-0-3_mito_instances.tif", kind="labels").array()
    labels = vol.array()[:128, :128, :128]
    inst = inst[:128, :128, :128]
    classes = [(1, "mitochondrion", (1, 1, 0, 1)), (2, "lysosome", (0, 0, 1, 1))]
    classes.append((3, "golgi", (0, 1, 0, 1)))
    classes.append((4, "fusiform vesicle", (1, 0, 1, 1)))
    items = mesh.mesh_labels(labels, vol.voxel_size_nm, classes, instances=inst)
    assert items and all(tm(it).is_watertight for it in items)
    rows = measure.measure(labels, vol.voxel_size_nm, classes, instances=inst, meshes=items)
    assert sum(r["voxels"] for r in rows) == int(np.isin(labels, [1, 2, 3, 4]).sum())


@pytest.mark.parametrize("voxel", [(15.0, 16.0, 16.0), (50.0, 4.6, 4.6)])
def test_slab_seams_weld_into_the_single_pass_surface(monkeypatch, voxel):
    rng = np.random.default_rng(3)
    labels = np.zeros((23, 70, 31), np.uint8)  # longest axis is y: slabs cut along it
    labels[2:20, 3:67, 4:28] = 1
    labels[5:15, 10:50, 8:20] = 4
    labels[rng.random(labels.shape) < 0.03] = 5
    monkeypatch.setattr(mesh, "SLAB", 1000)
    single = mesh.mesh_labels(labels, voxel, CLASSES, smooth=0, decimate=0)
    monkeypatch.setattr(mesh, "SLAB", 4)
    slabs = mesh.mesh_labels(labels, voxel, CLASSES, smooth=0, decimate=0)
    assert [it.name for it in slabs] == [it.name for it in single]
    for a, b in zip(single, slabs, strict=True):
        ta, tb = tm(a), tm(b)
        assert tb.is_watertight
        assert len(b.faces) == len(a.faces) and len(b.vertices) == len(a.vertices)
        assert tb.volume == pytest.approx(ta.volume, rel=1e-6)
        assert np.allclose(np.sort(a.vertices, axis=0), np.sort(b.vertices, axis=0), atol=1e-6)


def test_pieces_in_separate_slabs_with_no_shared_seam(monkeypatch):
    """One class as two blobs that lie in different slabs and never reach a slab seam."""
    labels = np.zeros((12, 40, 12), np.uint8)  # slabs of 8 layers along y: seams at 8, 16, …
    labels[3:8, 1:6, 3:8] = 1
    labels[3:8, 18:23, 3:8] = 1
    monkeypatch.setattr(mesh, "SLAB", 8)
    items = mesh.mesh_labels(labels, (20.0, 20.0, 20.0), CLASSES[:1], smooth=0, decimate=0)
    assert len(items) == 1 and tm(items[0]).is_watertight
    assert len(tm(items[0]).split(only_watertight=False)) == 2


@pytest.mark.parametrize("workers", [2, 3])
def test_worker_processes_give_the_single_process_surface(monkeypatch, workers):
    """Slab runs meshed in worker processes weld into exactly the one-process surface."""
    rng = np.random.default_rng(5)
    labels = np.zeros((60, 22, 25), np.uint8)  # slabs of 4 layers along z, split over workers
    labels[2:58, 3:19, 4:21] = 1  # crosses every seam between the runs
    labels[5:12, 6:12, 8:14] = 4  # only in the first run
    labels[45:55, 8:15, 5:12] = 5  # only in the last run
    labels[rng.random(labels.shape) < 0.02] = 2
    monkeypatch.setattr(mesh, "SLAB", 4)
    one = mesh.mesh_labels(labels, (30.0, 12.0, 10.0), CLASSES, smooth=0, decimate=0, workers=1)
    many = mesh.mesh_labels(
        labels, (30.0, 12.0, 10.0), CLASSES, smooth=0, decimate=0, workers=workers
    )
    assert [it.name for it in many] == [it.name for it in one]
    for a, b in zip(one, many, strict=True):
        assert tm(b).is_watertight
        assert len(b.faces) == len(a.faces) and len(b.vertices) == len(a.vertices)
        assert tm(b).volume == pytest.approx(tm(a).volume, rel=1e-6)
        assert b.area_um2 == pytest.approx(a.area_um2, rel=1e-6)


def test_default_workers_follow_the_volume_size(monkeypatch):
    calls = []
    real = mesh._run_groups

    def spy(chunks, *args):
        calls.append(len(chunks))
        return real(chunks, *args)

    monkeypatch.setattr(mesh, "_run_groups", spy)
    monkeypatch.setattr(mesh, "default_workers", lambda: 2)
    labels = np.zeros((40, 20, 20), np.uint8)
    labels[5:35, 5:15, 5:15] = 1
    mesh.mesh_labels(labels, (10.0, 10.0, 10.0), CLASSES[:1], smooth=0, decimate=0)
    monkeypatch.setattr(mesh, "PARALLEL_MIN_VOXELS", 1000)
    mesh.mesh_labels(labels, (10.0, 10.0, 10.0), CLASSES[:1], smooth=0, decimate=0)
    assert calls == [1, 2]
