"""The shipped VNC model reproduces its card's IoU on the held-out vnc_sstem sections 11–13.

``python -m vemcell_train.recipes score-vnc5`` measured the card's ``validation.iou`` and
``boundary_offset_nm`` on these sections (never used in training nor to pick checkpoints); this
test cuts them from
``../shared/data/vnc_sstem``, runs ``vemcell evaluate`` (1 direction) and compares. Skipped
when the data is absent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO, shared_data
from vemcell.cli.main import main
from vemcell.io.volumes import read_volume, write_tiff

MODEL = REPO / "models" / "vnc5.onnx"
HELD_OUT = slice(11, 14)


def test_vnc_model_reproduces_card_iou(tmp_path):
    root = shared_data("vnc_sstem")
    if not MODEL.exists():
        pytest.skip(f"{MODEL} is not shipped")
    card = json.loads(MODEL.with_suffix(".json").read_text(encoding="utf-8"))
    vol = read_volume(root / "image.tif")
    lab = read_volume(root / "labels.tif", kind="labels").array()
    img, labels, rep = tmp_path / "image.tif", tmp_path / "labels.tif", tmp_path / "iou.json"
    write_tiff(img, np.ascontiguousarray(vol.array()[HELD_OUT]), vol.voxel_size_nm)
    write_tiff(labels, np.ascontiguousarray(lab[HELD_OUT]), vol.voxel_size_nm)
    args = ["evaluate", "--model", str(MODEL), "--image", str(img), "--labels", str(labels)]
    assert main([*args, "--directions", "1", "--threads", "2", "--json", str(rep)]) == 0
    report = json.loads(rep.read_text(encoding="utf-8"))
    for name, value in card["validation"]["iou"].items():
        assert report["iou"][name] == pytest.approx(value, abs=2e-3), name
    # mitochondria drawn ~3 nm wider than these sections' labels (their convention, see card)
    for name, value in card["validation"]["boundary_offset_nm"].items():
        assert report["boundary_offset_nm"][name] == pytest.approx(value, abs=0.3), name
    # the card's minimum piece sizes are what moved mitochondria and synapses
    assert main([*args, "--directions", "1", "--json", str(rep), "--min-size", "off"]) == 0
    iou = json.loads(rep.read_text(encoding="utf-8"))["iou"]
    for name, value in card["validation"]["without_min_size"]["iou"].items():
        assert iou[name] == pytest.approx(value, abs=2e-3), name


def test_vnc_model_splits_neurites_along_its_membranes(tmp_path):
    """`vemcell cells --model vnc5` cuts the held-out sections into neurites (card's membrane
    class): scored per section against the regions the labelled membranes enclose."""
    from scipy import ndimage as ndi

    from vemcell.evaluation import instances as im

    root = shared_data("vnc_sstem")
    if not MODEL.exists():
        pytest.skip(f"{MODEL} is not shipped")
    vol = read_volume(root / "image.tif")
    lab = read_volume(root / "labels.tif", kind="labels").array()[HELD_OUT]
    img, out = tmp_path / "image.tif", tmp_path / "cells.tif"
    write_tiff(img, np.ascontiguousarray(vol.array()[HELD_OUT]), vol.voxel_size_nm)
    args = ["cells", str(img), "--model", str(MODEL), "--out", str(out)]  # auto: XY only
    assert main([*args, "--progress", "none"]) == 0
    ids = read_volume(out, kind="labels").array()
    errors = [
        im.adapted_rand_error(ndi.label(lab[z] != 1)[0], ids[z])["error"] for z in range(len(lab))
    ]
    assert ids.max() > 100 and np.mean(errors) < 0.25  # measured: 220 neurites, 0.13
    spans = [len(np.unique(ids[z])) for z in range(len(lab))]
    assert ids.max() < sum(spans)  # sections are joined into 3D neurites


def test_models_lists_vnc5_with_its_slice_context_and_minimum_sizes(capsys):
    """The shipped vnc5 takes each section with 2 neighbours either side: its ONNX input has 5
    channels, its card says so and ``vemcell models`` tells the user."""
    from vemcell.cards.card import load_card
    from vemcell.segmentation.segment import Segmenter

    seg = Segmenter(load_card(MODEL), threads=1)
    assert seg.in_channels == 5 and seg.context == 2
    assert seg.card.raw["input"]["context_slices"] == 2
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "each slice with the 2 on either side of it" in out.split("vnc5:")[1]
    assert "specks   removed: mitochondrion < 0.000311 µm³, synapse < 0.000311 µm³" in out
