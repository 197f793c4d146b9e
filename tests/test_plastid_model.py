"""The shipped plastid model reproduces its card's IoU on held-out plant_leaf_sem sections.

The card's ``validation.test_crop`` names a crop of sections 5–6 (never used in training) and the
IoU ``python -m vemcell_train.recipes score-plastid`` measured on it; this test cuts the same crop
from ``../shared/data/plant_leaf_sem``, runs ``vemcell evaluate`` (1 direction) on it and
compares. Skipped when the data is absent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO, shared_data
from vemcell.cli.main import main
from vemcell.io.volumes import read_volume, write_tiff

MODEL = REPO / "models" / "plastid_leaf.onnx"


def test_plastid_model_reproduces_card_iou(tmp_path):
    root = shared_data("plant_leaf_sem")
    if not MODEL.exists():
        pytest.skip(f"{MODEL} is not shipped")
    card = json.loads(MODEL.with_suffix(".json").read_text(encoding="utf-8"))
    crop = card["validation"]["test_crop"]
    sl = tuple(slice(a, b) for a, b in crop["zyx"])
    vol = read_volume(root / "image.tif")
    inst = read_volume(root / "chloroplast_instances.tif", kind="labels").array()
    img, lab, rep = tmp_path / "image.tif", tmp_path / "labels.tif", tmp_path / "iou.json"
    write_tiff(img, np.ascontiguousarray(vol.array()[sl]), vol.voxel_size_nm)
    write_tiff(lab, (inst[sl] > 0).astype(np.uint8), vol.voxel_size_nm)
    args = ["evaluate", "--model", str(MODEL), "--image", str(img), "--labels", str(lab)]
    assert main([*args, "--directions", "1", "--threads", "2", "--json", str(rep)]) == 0
    iou = json.loads(rep.read_text(encoding="utf-8"))["iou"]
    assert iou["plastid"] == pytest.approx(crop["iou"]["plastid"], abs=2e-3)
    assert iou["background"] == pytest.approx(crop["iou"]["background"], abs=2e-3)
