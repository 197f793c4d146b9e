"""The synthetic C. merolae generator: determinism, biology by stage, geometry, files, sample."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage as ndi

from conftest import REPO
from vemcell.cli.main import main
from vemcell.errors import VemcellError
from vemcell.io.volumes import read_tiff_info, read_volume
from vemcell.synth import generator as synth

# 32 nm voxels keep the volumes small (a cell is ~55 voxels across) and the tests fast.
SMALL = {"shape": (80, 96, 96), "voxel_nm": 32.0}
NAMES = ("nucleus", "plastid", "mitochondrion", "peroxisome")


def components(mask: np.ndarray) -> int:
    return int(ndi.label(mask)[1])


def counts_in(result: synth.SynthResult, cell_ids: list[int]) -> dict[str, int]:
    """Organelle pieces inside the given cells, counted from the volumes, not from ``info``."""
    mine = np.isin(result.cells, cell_ids)
    return {n: components((result.labels == synth.ORGANELLES[n]) & mine) for n in NAMES}


@pytest.fixture(scope="module")
def by_stage() -> dict[int, synth.SynthResult]:
    return {s: synth.generate(stages=[s], seed=10 + s, **SMALL) for s in range(1, 6)}


def test_same_seed_same_volume_other_seed_differs():
    a = synth.generate(shape=(40, 48, 48), voxel_nm=40.0, seed=3, randomise=True)
    b = synth.generate(shape=(40, 48, 48), voxel_nm=40.0, seed=3, randomise=True)
    c = synth.generate(shape=(40, 48, 48), voxel_nm=40.0, seed=4, randomise=True)
    for name in ("image", "labels", "cells"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.info == b.info
    assert not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.uint8 and a.labels.dtype == np.uint8
    assert a.cells.dtype == np.uint16


# organelle pieces per cell before cytokinesis (stages 1-3) and per daughter pair (4-5)
EXPECTED = {
    1: {"nucleus": 1, "plastid": 1, "mitochondrion": 1, "peroxisome": 1},
    2: {"nucleus": 1, "plastid": 2, "mitochondrion": 1, "peroxisome": 1},
    3: {"nucleus": 1, "plastid": 2, "mitochondrion": 2, "peroxisome": 1},
    4: {"nucleus": 2, "plastid": 2, "mitochondrion": 2, "peroxisome": 1},
    5: {"nucleus": 2, "plastid": 2, "mitochondrion": 2, "peroxisome": 2},
}


@pytest.mark.parametrize("stage", [1, 2, 3, 4, 5])
def test_organelles_divide_in_the_papers_order(by_stage, stage):
    r = by_stage[stage]
    cells = r.info["cells"]
    assert all(c["complete"] for c in cells), "the test volume should hold whole cells"
    ids = [c["id"] for c in cells]
    assert counts_in(r, ids) == EXPECTED[stage]
    if stage <= 3:
        assert len(cells) == 1 and cells[0]["role"] == "whole"
        assert sorted(np.unique(r.cells)) == [0, ids[0]]
    else:
        # two daughters, each with its own id, touching each other
        a, b = cells
        assert r.info["pairs"] == [[a["id"], b["id"]]]
        assert a["partner"] == b["id"] and b["partner"] == a["id"]
        grown = ndi.binary_dilation(r.cells == a["id"])
        assert (grown & (r.cells == b["id"])).any(), "daughters must touch"
        for c in cells:
            got = counts_in(r, [c["id"]])
            assert got["plastid"] == got["mitochondrion"] == got["nucleus"] == 1
        per_daughter = [counts_in(r, [c["id"]])["peroxisome"] for c in cells]
        assert sorted(per_daughter) == ([0, 1] if stage == 4 else [1, 1])
    # info reports what the volumes hold
    for c in cells:
        assert c["organelles"] == counts_in(r, [c["id"]])


def test_organelles_lie_inside_their_cell(by_stage):
    for r in by_stage.values():
        assert np.array_equal(r.labels == 0, r.cells == 0)
        lab = ndi.label(r.labels >= 2)[0]
        for i, sl in enumerate(ndi.find_objects(lab), start=1):
            ids = np.unique(r.cells[sl][lab[sl] == i])
            assert len(ids) == 1 and ids[0] != 0


def test_class_volume_fractions_are_plausible(by_stage):
    v_um3 = 0.032**3
    for stage, r in by_stage.items():
        for c in r.info["cells"]:
            cell = r.cells == c["id"]
            vol = cell.sum()
            frac = {n: ((r.labels == synth.ORGANELLES[n]) & cell).sum() / vol for n in NAMES}
            assert 0.12 < frac["plastid"] < 0.45, (stage, frac)
            assert 0.02 < frac["nucleus"] < 0.15, (stage, frac)
            assert 0.003 < frac["mitochondrion"] < 0.08, (stage, frac)
            assert frac["peroxisome"] < 0.02, (stage, frac)
            assert frac["plastid"] == max(frac.values()), "the plastid is the largest organelle"
            if stage <= 3:
                diameter = 2 * (3 * vol * v_um3 / (4 * np.pi)) ** (1 / 3)
                assert 1.4 < diameter < 2.1, (stage, diameter)


def test_several_cells_some_touching():
    r = synth.generate(shape=(64, 112, 112), voxel_nm=32.0, cells=4, stages=[1, 2], seed=5)
    ids = [c["id"] for c in r.info["cells"]]
    assert len(ids) >= 3
    touching = 0
    for i in ids:
        grown = ndi.binary_dilation(r.cells == i)
        touching += int(np.any(grown & (r.cells != i) & (r.cells != 0)))
    assert touching >= 2
    # cells lie at different orientations
    frames = [np.array(c["frame_xyz"]) for c in r.info["cells"]]
    assert not np.allclose(frames[0], frames[1])


def test_image_grey_levels_look_like_em(by_stage):
    r = by_stage[3]
    img, lab = r.image.astype(float), r.labels
    # grey level inside each class, away from its membranes
    mean = {k: img[ndi.binary_erosion(lab == k)].mean() for k in range(6)}
    # resin is light, ribosome-dense cytoplasm darker, the nucleus and mitochondrion close
    # to the resin (the paper's reason they are hard), membranes dark
    assert mean[0] > mean[1] + 30
    assert abs(mean[synth.NUCLEUS] - mean[0]) < abs(mean[synth.CYTOPLASM] - mean[0])
    assert abs(mean[synth.MITOCHONDRION] - mean[0]) < abs(mean[synth.CYTOPLASM] - mean[0])
    edge = (r.cells > 0) & ~ndi.binary_erosion(r.cells > 0)
    assert img[edge].mean() < mean[1] - 20
    assert 5 < np.std(img[lab == 0]) < 25, "noise like real EM"


def test_anisotropic_z_step_keeps_physical_sizes():
    r = synth.generate(shape=(40, 96, 96), voxel_nm=32.0, z_step_nm=64.0, stages=[1], seed=2)
    assert r.voxel_size_nm == (64.0, 32.0, 32.0)
    c = r.info["cells"][0]
    assert c["complete"]
    vol = (r.cells == c["id"]).sum() * 64 * 32 * 32 / 1e9
    assert 1.4 < 2 * (3 * vol / (4 * np.pi)) ** (1 / 3) < 2.1


def test_write_files_with_voxel_size_and_classes(tmp_path):
    r = synth.generate(shape=(24, 40, 40), voxel_nm=50.0, seed=1)
    out = synth.write(r, tmp_path / "s")
    for name, kind in (("image.tif", "image"), ("labels.tif", "labels"), ("cells.tif", "labels")):
        vol = read_volume(out / name, kind=kind)
        assert vol.voxel_size_nm == pytest.approx((50.0, 50.0, 50.0))
        np.testing.assert_array_equal(vol.array(), getattr(r, name[:-4]))
    info = read_tiff_info(out / "labels.tif")
    assert info["vemcell"] == "labels/1" and info["background_class"] == 0
    assert [c["name"] for c in info["classes"]] == list(synth.CLASS_NAMES)
    assert read_tiff_info(out / "cells.tif") == {"vemcell": "instances/1"}
    meta = json.loads((out / "synth.json").read_text())
    assert meta["parameters"]["seed"] == 1 and meta["cells"]
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (2, 64, 64)},
        {"shape": (64, 64)},
        {"stages": [0]},
        {"stages": [6]},
        {"cells": 0},
        {"voxel_nm": -1.0},
        {"voxel_nm": float("nan")},
        {"z_step_nm": 0.0},
    ],
)
def test_bad_arguments_are_one_sentence(kwargs):
    with pytest.raises(VemcellError):
        synth.generate(**kwargs)


def test_cli_writes_a_volume_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "v"
    argv = ["synth", str(out), "--shape", "24", "48", "48", "--voxel-nm", "40", "--stage", "2"]
    assert main([*argv, "--progress", "none"]) == 0
    assert {p.name for p in out.iterdir()} == {"image.tif", "labels.tif", "cells.tif", "synth.json"}
    assert "stage 2" in capsys.readouterr().out
    assert main(["synth", str(tmp_path / "w"), "--shape", "3", "3", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "shape" in err
    assert not (tmp_path / "w").exists()
    (tmp_path / "file").write_text("x")
    assert main(["synth", str(tmp_path / "file"), "--shape", "16", "16", "16"]) == 2


def test_regenerate_repeats_random_stages_and_custom_imaging():
    im = synth.Imaging(background=150.0, curtain_amplitude=0.0, drift_amplitude=0.0)
    for kw in ({"cells": 2}, {"imaging": im}):
        r = synth.generate(shape=(32, 48, 48), voxel_nm=40.0, seed=8, **kw)
        again = synth.regenerate(json.loads(json.dumps(r.info)))
        np.testing.assert_array_equal(r.labels, again.labels)
        np.testing.assert_array_equal(r.image, again.image)
    assert r.info["parameters"]["imaging"]["background"] == 150.0
    assert abs(np.median(r.image[r.labels == 0]) - 150) < 10


def test_randomised_parameters_differ_and_stay_in_range():
    a = synth.Imaging.randomised(np.random.default_rng(0))
    b = synth.Imaging.randomised(np.random.default_rng(1))
    assert a != b
    for im in (a, b):
        assert 0 < im.gain and im.blur_xy_nm > 0
        assert all(15 <= v <= 240 for v in (im.background, im.cytoplasm, im.membrane))


@pytest.mark.slow
def test_embedded_sample_is_small_and_reproducible():
    d = synth.sample_dir()
    files = ["image.tif", "labels.tif", "cells.tif", "sample.json"]
    assert all((d / f).exists() for f in files)
    assert sum((d / f).stat().st_size for f in files) < 4 * 1024 * 1024
    meta = json.loads((d / "sample.json").read_text())
    stages = sorted({c["stage"] for c in meta["cells"]})
    assert len(stages) >= 2 and all(c["complete"] for c in meta["cells"])
    again = synth.regenerate(meta)
    for name in ("labels", "cells"):
        stored = read_volume(d / f"{name}.tif", kind="labels")
        assert stored.voxel_size_nm == pytest.approx(again.voxel_size_nm)
        np.testing.assert_array_equal(stored.array(), getattr(again, name))
    # the image too, up to last-bit differences of vectorised exp() between CPUs
    image = read_volume(d / "image.tif").array()
    assert np.mean(image != again.image) < 1e-3


@pytest.mark.slow
def test_figure_script_writes_overlay_png(tmp_path):
    pytest.importorskip("matplotlib")
    r = synth.generate(shape=(24, 64, 64), voxel_nm=40.0, stages=[2], seed=0)
    synth.write(r, tmp_path / "s")
    png = tmp_path / "fig.png"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "docs" / "make_synth_figure.py"),
            "--sample",
            str(tmp_path / "s"),
            "--out",
            str(png),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert png.stat().st_size > 10_000


def test_undivided_stage4_peroxisome_keeps_the_parent_size():
    # Stage 4 divides the nucleus, not the peroxisome: the single peroxisome should be about as
    # large as the two of stage 5 together (each daughter's is drawn at the daughter's scale).
    def volume(stage: int) -> float:
        vols = []
        for seed in range(6):
            r = synth.generate(stages=[stage], seed=100 + seed, **SMALL)
            vols.append(int((r.labels == synth.PEROXISOME).sum()))
        return float(np.mean(vols))

    ratio = volume(4) / volume(5)
    assert 0.7 < ratio < 1.5, ratio
