"""`vemcell run` end to end on tiny models: outputs, report, progress, errors and atomicity."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from tiny_models import make_cells_model, two_cells_image
from vemcell.cli.main import main
from vemcell.io.volumes import read_tiff_info, read_volume, write_tiff


@pytest.fixture()
def band_model(tmp_path):
    return make_cells_model(tmp_path / "models")


def two_cells(path, shape=(48, 64, 96)):
    """Two separate cells with a bright nucleus each, 20 nm voxels, written to ``path``."""
    write_tiff(path, two_cells_image(shape), (20.0, 20.0, 20.0))
    return path


def test_run_writes_the_whole_run_folder(tmp_path, band_model, capsys):
    vol = two_cells(tmp_path / "cells.tif")
    out = tmp_path / "run"
    args = ["run", str(vol), "--out", str(out), "--model", str(band_model), "--threads", "1"]
    rc = main([*args, "--tta"])
    assert rc == 0, capsys.readouterr().err
    names = ("labels.tif", "scene.glb", "scene.json", "measurements.csv", "report.json")
    for name in (*names, "viewer.html"):
        assert (out / name).is_file(), name
    labels = read_volume(out / "labels.tif", kind="labels")
    assert labels.voxel_size_nm == (20.0, 20.0, 20.0)
    assert set(np.unique(labels.array())) == {0, 1, 2}
    info = read_tiff_info(out / "labels.tif")
    assert [c["name"] for c in info["classes"]] == ["background", "cytoplasm", "nucleus"]
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["name"] == "band"
    assert report["parameters"]["tta"] is True
    assert set(report["timings_s"]) >= {"read", "segment", "mesh", "measure", "write", "viewer"}
    assert report["timings_s"]["total"] >= sum(
        v for k, v in report["timings_s"].items() if k != "total"
    )
    assert report["parameters"]["viewer"] is True
    assert main([*args, "--no-viewer"]) == 0
    assert not (out / "viewer.html").exists()
    assert (out / "scene.glb").is_file()
    report = json.loads((out / "report.json").read_text())
    assert "viewer" not in report["timings_s"]
    assert report["peak_rss_mb"] > 0
    assert "missing" not in report["versions"].values(), report["versions"]
    assert report["input"]["voxel_size_source"] == "metadata"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]


def test_run_separates_two_cells(tmp_path, band_model):
    vol = two_cells(tmp_path / "cells.tif")
    out = tmp_path / "run"
    assert main(["run", str(vol), "--out", str(out), "--model", str(band_model)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["cells"]["cells"] == 2, report["cells"]
    ids = tifffile.imread(out / "cells.tif")
    assert ids.max() == 2
    scene = json.loads((out / "scene.json").read_text())
    names = sorted(o["name"] for o in scene["objects"])
    assert names == [
        "cell_01/cytoplasm",
        "cell_01/nucleus",
        "cell_02/cytoplasm",
        "cell_02/nucleus",
    ]


def test_progress_json_lines(tmp_path, band_model):
    vol = two_cells(tmp_path / "cells.tif")
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "vemcell", "run", str(vol), "--out", str(out)]
        + ["--model", str(band_model), "--progress", "json", "--cells", "off"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all({"stage", "fraction", "message"} <= set(r) for r in records)
    fractions = [r["fraction"] for r in records]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    stages = {r["stage"] for r in records}
    assert {"read", "segment", "mesh", "measure", "write", "done"} <= stages


def test_a_reader_that_stops_early_is_not_an_error(tmp_path, band_model):
    """`vemcell ... | head -1`: the closed pipe ends the run quietly, as for any Unix tool."""
    vol = two_cells(tmp_path / "cells.tif")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vemcell", "run", str(vol), "--out", str(tmp_path / "run")]
        + ["--model", str(band_model), "--progress", "json", "--cells", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert json.loads(proc.stdout.readline())["stage"]
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err == "", err


def test_errors_are_one_line_and_leave_nothing(tmp_path, band_model):
    nan = tmp_path / "nan.tif"
    tifffile.imwrite(nan, np.full((20, 32, 32), np.nan, np.float32))
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "vemcell", "run", str(nan), "--out", str(out)]
        + ["--model", str(band_model)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "NaN" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    assert {p.name for p in tmp_path.iterdir()} == {"nan.tif", "models"}


def test_failed_rerun_keeps_previous_results(tmp_path, band_model, monkeypatch):
    vol = two_cells(tmp_path / "cells.tif")
    out = tmp_path / "run"
    assert main(["run", str(vol), "--out", str(out), "--model", str(band_model)]) == 0
    before = (out / "report.json").read_text()
    from vemcell.meshes import measure

    def boom(*a, **k):
        raise KeyboardInterrupt  # what a cancel (SIGTERM from Blender) becomes

    monkeypatch.setattr(measure, "measure", boom)
    assert main(["run", str(vol), "--out", str(out), "--model", str(band_model)]) == 130
    assert (out / "report.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.tif", "models", "run"]


def test_refuses_to_replace_a_foreign_folder(tmp_path, band_model, capsys):
    vol = two_cells(tmp_path / "cells.tif")
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.docx").write_text("do not delete")
    assert main(["run", str(vol), "--out", str(out), "--model", str(band_model)]) == 2
    assert "not a vemcell run" in capsys.readouterr().err
    assert (out / "thesis.docx").exists()


def test_segment_command_writes_labels_with_metadata(tmp_path, band_model):
    vol = two_cells(tmp_path / "cells.tif")
    out = tmp_path / "labels.tif"
    assert main(["segment", str(vol), "--model", str(band_model), "--out", str(out)]) == 0
    assert read_tiff_info(out)["model"] == "band"
    assert read_volume(out, kind="labels").voxel_size_nm == (20.0, 20.0, 20.0)


def test_min_size_reaches_segment_run_and_evaluate(tmp_path, band_model, capsys):
    """--min-size on the command line: specks go, the report says so, a bad value is one line."""
    vol = two_cells(tmp_path / "cells.tif")
    img = read_volume(vol).array()
    img[2:4, 2:4, 2:4] = 230  # an 8-voxel "nucleus" speck in the background
    write_tiff(vol, img, (20.0, 20.0, 20.0))
    common = ["--model", str(band_model), "--cells", "off", "--median", "0"]
    out = tmp_path / "run"
    assert main(["run", str(vol), "--out", str(out), *common, "--min-size", "nucleus=0.0001"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["segmentation"]["min_size_um3"] == {"nucleus": 0.0001}
    assert report["segmentation"]["specks_removed"] == {"nucleus": 1}
    assert report["parameters"]["min_size"] == {"nucleus": 0.0001}
    assert tifffile.imread(out / "labels.tif")[3, 3, 3] == 0
    seg = tmp_path / "plain.tif"
    assert main(["segment", str(vol), "--out", str(seg), *common[:2], "--median", "0"]) == 0
    assert tifffile.imread(seg)[3, 3, 3] == 2  # this card names no sizes
    report_json = tmp_path / "eval.json"
    args = ["evaluate", "--model", str(band_model), "--image", str(vol), "--labels", str(seg)]
    assert main([*args, "--median", "0", "--json", str(report_json), "--min-size", "off"]) == 0
    assert json.loads(report_json.read_text())["iou"]["nucleus"] == 1.0
    assert main([*args, "--json", str(report_json), "--min-size", "nucleus=1e-4"]) == 0
    assert json.loads(report_json.read_text())["min_size_um3"] == {"nucleus": 0.0001}
    capsys.readouterr()
    bad = ["segment", str(vol), "--out", str(tmp_path / "x.tif"), "--model", str(band_model)]
    assert main([*bad, "--min-size", "golgi=0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'golgi', which is not a class of model band" in err[0]
    assert not (tmp_path / "x.tif").exists()


def test_evaluate_reports_boundary_offsets_per_class_and_per_slice(tmp_path, band_model, capsys):
    """A slice whose nuclei were labelled a voxel wider shows up in --per-slice as -20 nm."""
    from scipy import ndimage

    vol = two_cells(tmp_path / "cells.tif")
    seg = tmp_path / "pred.tif"
    common = ["--model", str(band_model), "--median", "0", "--progress", "none"]
    assert main(["segment", str(vol), "--out", str(seg), *common]) == 0
    truth = tifffile.imread(seg)
    z = 24
    wider = ndimage.binary_dilation(truth[z] == 2)  # one pixel more all round, this slice only
    truth[z][wider] = 2
    labels = tmp_path / "labels.tif"
    write_tiff(labels, truth, (20.0, 20.0, 20.0))
    report_json = tmp_path / "eval.json"
    ev = ["evaluate", "--image", str(vol), "--labels", str(labels), "--json", str(report_json)]
    assert main([*ev, *common, "--per-slice"]) == 0
    out = capsys.readouterr().out
    assert "boundary offset (nm)" in out and "per slice, offset (nm):" in out
    report = json.loads(report_json.read_text())
    rows = {row["z"]: row for row in report["per_slice"]}
    assert sorted(rows) == list(range(48))
    assert rows[z]["boundary_offset_nm"]["nucleus"] == pytest.approx(-20.0, abs=5.0)
    assert rows[z]["iou"]["nucleus"] < 0.9
    assert rows[z - 4]["boundary_offset_nm"]["nucleus"] == 0.0
    assert rows[z - 4]["iou"]["nucleus"] == 1.0
    assert rows[0]["boundary_offset_nm"]["nucleus"] is None  # no nucleus in that slice
    # in 3D one slice's wider outline is a small part of the whole nucleus surface
    assert -20.0 < report["boundary_offset_nm"]["nucleus"] < 0.0
    assert main([*ev, *common]) == 0
    assert "per_slice" not in json.loads(report_json.read_text())


def test_pseudolabels_mark_unsure_voxels_and_score_like_labels(tmp_path, band_model, capsys):
    """`vemcell pseudolabel` writes the prediction with 255 where unsure; evaluate skips 255."""
    clean = read_volume(two_cells(tmp_path / "clean.tif")).array().astype(np.float32)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 40, clean.shape), 0, 255)
    vol = tmp_path / "noisy.tif"
    write_tiff(vol, noisy.astype(np.uint8), (20.0, 20.0, 20.0))
    out = tmp_path / "pseudo.tif"
    common = ["--model", str(band_model), "--median", "0", "--progress", "none"]
    args = ["pseudolabel", str(vol), "--out", str(out), "--min-confidence", "0.9", *common]
    assert main(args) == 0
    assert "not labelled (255)" in capsys.readouterr().out
    labels = read_volume(out, kind="labels").array()
    unsure = labels == 255
    assert set(np.unique(labels)) == {0, 1, 2, 255} and 0.01 < unsure.mean() < 0.5
    assert read_tiff_info(out)["unlabelled_value"] == 255
    # scoring the model against its own sure labels gives 1.0: the 255 voxels are left out
    report = tmp_path / "iou.json"
    ev = ["evaluate", "--image", str(vol), "--labels", str(out), "--json", str(report), *common]
    assert main(ev) == 0
    scores = json.loads(report.read_text())
    assert scores["mean_iou"] == 1.0 and scores["unlabelled_voxels"] == int(unsure.sum())
    # test-time augmentation runs through the same command; a bad threshold is one sentence
    assert main([*args, "--tta"]) == 0
    bad = tmp_path / "bad.tif"
    assert (
        main(["pseudolabel", str(vol), "--out", str(bad), "--min-confidence", "70", *common]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1].endswith("--min-confidence must be between 0 and 1, not 70.") and not bad.exists()
    )


def test_min_size_command_picks_the_size_that_drops_specks_and_keeps_organelles(
    tmp_path, band_model, capsys
):
    """`vemcell min-size` on a volume whose bright specks are labelled cytoplasm: the chosen size
    lies between the specks (8 voxels) and the nuclei (2 k voxels)."""
    vol = two_cells(tmp_path / "cells.tif")
    img = read_volume(vol).array()
    truth = np.where(img > 200, 2, np.where(img > 100, 1, 0)).astype(np.uint8)
    for z, y, x in [(20, 20, 12), (30, 40, 16), (20, 44, 60), (28, 22, 78)]:
        img[z : z + 2, y : y + 2, x : x + 2] = 230  # bright specks inside the cells' cytoplasm
    write_tiff(vol, img, (20.0, 20.0, 20.0))
    lab = tmp_path / "truth.tif"
    write_tiff(lab, truth, (20.0, 20.0, 20.0))
    out = tmp_path / "sizes.json"
    args = ["min-size", "--model", str(band_model), "--image", str(vol), "--labels", str(lab)]
    sizes = ["--sizes", "0", "0.00004", "0.0001", "0.1"]  # 0, 5, 12.5 and 12.5 k voxels
    assert main([*args, *sizes, "--median", "0", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["chosen"] == {"nucleus": 0.0001}
    assert "chosen: --min-size nucleus=0.0001" in printed
    rows = {r["um3"]: r["iou"] for r in report["table"]["nucleus"]}
    assert rows[0.0] < rows[0.0001] == 1.0 and rows[0.1] == 0.0
    assert report["iou_chosen"]["nucleus"] == 1.0 and report["table"]["cytoplasm"]
    assert main([*args, "--labels", str(lab), str(lab), "--progress", "none"]) == 2
    assert "give one label volume per image" in capsys.readouterr().err
    assert main([*args, "--median", "-1"]) == 2
    assert "--median must be 0 or a positive size" in capsys.readouterr().err
    assert main([*args, "--classes", "golgi"]) == 2
    assert "'golgi', which is not a class of model band" in capsys.readouterr().err


def test_run_progress_never_goes_back(tmp_path, band_model, capsys, monkeypatch):
    """The JSON progress lines of a whole run (cells included) only ever move forwards."""
    import itertools

    from vemcell import progress

    clock = itertools.count(0.0, 1.0)  # every update 1 s after the last: none is held back
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    vol = two_cells(tmp_path / "cells.tif")
    args = ["run", str(vol), "--out", str(tmp_path / "run"), "--model", str(band_model)]
    assert main([*args, "--threads", "1", "--progress", "json", "--no-viewer"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    fractions = [x["fraction"] for x in lines if x["stage"] != "result"]
    assert len(fractions) > 5
    assert all(b >= a for a, b in itertools.pairwise(fractions)), fractions
