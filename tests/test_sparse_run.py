"""`vemcell run --sparse K`: a stack of every K-th section through the whole pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tiny_models import make_cells_model, two_cells_image
from vemcell.cli.main import main
from vemcell.io.volumes import read_volume, write_tiff
from vemcell.options import RunOptions
from vemcell.sparse.learned import default_method


@pytest.fixture()
def sparse_stack(tmp_path):
    """Every 2nd section of two cells with bright nuclei (40 nm sections, 20 nm pixels)."""
    path = tmp_path / "every2nd.tif"
    write_tiff(path, two_cells_image()[::2], (40.0, 20.0, 20.0))
    return path, make_cells_model(tmp_path / "models")


@pytest.mark.parametrize("route", ["image", "shape"])
def test_sparse_run_works_on_the_full_resolution_grid(tmp_path, sparse_stack, route, capsys):
    path, model = sparse_stack
    out = tmp_path / f"run_{route}"
    argv = ["run", str(path), "--out", str(out), "--model", str(model), "--threads", "1"]
    argv += ["--sparse", "2", "--sparse-route", route, "--no-viewer", "--progress", "none"]
    assert main(argv) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["sparse"]["factor"] == 2 and report["sparse"]["route"] == route
    # the method measured best for such a stack and segmentation model
    auto = default_method((40.0, 20.0, 20.0), 2, report["model"]["name"])
    assert report["sparse"]["method"] == (auto if route == "image" else "linear")
    assert report["sparse"]["restored_shape_zyx"] == [47, 64, 96]  # (24 - 1) * 2 + 1
    assert report["input"]["shape_zyx"] == [24, 64, 96]  # the stack as imaged
    labels = read_volume(out / "labels.tif", kind="labels")
    assert labels.shape == (47, 64, 96) and labels.voxel_size_nm == (20.0, 20.0, 20.0)
    restored = read_volume(out / "restored.tif")
    imaged = read_volume(path).array()
    assert np.array_equal(restored.array()[::2], imaged)  # the imaged sections, bit for bit
    assert set(np.unique(labels.array())) == {0, 1, 2}
    assert report["cells"]["cells"] == 2 and report["meshes"] >= 4


def test_sparse_options_round_trip_and_errors(tmp_path, sparse_stack, capsys):
    opts = RunOptions(sparse=4, sparse_route="shape", sparse_method="linear")
    assert opts.to_arguments()[-6:] == [
        "--sparse",
        "4",
        "--sparse-route",
        "shape",
        "--sparse-method",
        "linear",
    ]
    path, model = sparse_stack
    base = ["run", str(path), "--out", str(tmp_path / "r"), "--model", str(model)]
    assert main([*base, "--sparse", "1"]) == 2
    assert "2 or more" in capsys.readouterr().err
    fine = tmp_path / "fine.tif"  # sections 10 nm apart under 20 nm pixels
    write_tiff(fine, np.zeros((8, 32, 32), np.uint8), (10.0, 20.0, 20.0))
    assert main(["run", str(fine), "--out", str(tmp_path / "f"), "--sparse", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "finer than" in err[0]
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize("route", ["image", "shape"])
def test_sparse_segment_writes_full_resolution_labels(tmp_path, sparse_stack, route, capsys):
    path, model = sparse_stack
    out = tmp_path / "labels.tif"
    argv = ["segment", str(path), "--out", str(out), "--model", str(model), "--threads", "1"]
    assert main([*argv, "--sparse", "2", "--sparse-route", route]) == 0, capsys.readouterr().err
    labels = read_volume(out, kind="labels")
    assert labels.shape == (47, 64, 96) and labels.voxel_size_nm == (20.0, 20.0, 20.0)
    assert set(np.unique(labels.array())) == {0, 1, 2}
    pseudo = ["pseudolabel", str(path), "--out", str(tmp_path / "p.tif"), "--model", str(model)]
    assert main([*pseudo, "--sparse", "2"]) == 2
    assert "not here" in capsys.readouterr().err
