"""Cell separation: foreground providers, 3D watershed, crops, instance metrics, `vemcell cells`."""

from __future__ import annotations

import numpy as np
import pytest

from vemcell.cells import separate as cells
from vemcell.cli.main import main
from vemcell.errors import VemcellError
from vemcell.evaluation import instances as im
from vemcell.io.volumes import read_tiff_info, read_volume, write_tiff


def balls(shape, voxel, centres_um, radii_um):
    """Integer ids of (possibly overlapping) balls, later ones winning; physical units."""
    zz, yy, xx = np.meshgrid(
        *[np.arange(n) * v / 1000.0 for n, v in zip(shape, voxel, strict=True)], indexing="ij"
    )
    ids = np.zeros(shape, np.uint16)
    for i, (c, r) in enumerate(zip(centres_um, radii_um, strict=True), start=1):
        inside = (xx - c[0]) ** 2 + (yy - c[1]) ** 2 + (zz - c[2]) ** 2 <= r**2
        ids[inside & (ids == 0)] = i
    return ids


def touching_pairs(ids):
    pairs = set()
    for ax in range(3):
        a = np.moveaxis(ids, ax, 0)
        x, y = a[:-1].ravel(), a[1:].ravel()
        k = (x > 0) & (y > 0) & (x != y)
        pairs |= {tuple(p) for p in np.sort(np.stack([x[k], y[k]], 1), 1).tolist()}
    return pairs


# ---------------------------------------------------------------------------------- watershed


def test_dividing_cell_and_touching_cells_are_split_single_cells_are_not():
    voxel = (40.0, 40.0, 40.0)
    shape = (48, 64, 160)
    truth = balls(
        shape,
        voxel,
        # a dividing cell (two daughters joined by a constriction), a lone cell, an
        # elongated cell made of two overlapping balls that must NOT be split
        [(0.9, 1.3, 0.95), (1.9, 1.3, 0.95), (3.4, 1.3, 0.95), (5.0, 1.3, 0.95), (5.3, 1.3, 0.95)],
        [0.75, 0.75, 0.8, 0.7, 0.7],
    )
    ids = cells.separate_cells(truth > 0, voxel)
    assert ids.dtype == np.uint16
    assert int(ids.max()) == 4
    truth[truth == 5] = 4
    score = im.matched_f1(truth, ids)
    assert score["f1"] == 1.0
    assert score["mean_matched_iou"] > 0.85


def test_anisotropic_voxels_use_physical_distances():
    # 100 nm sections, 25 nm pixels: the same dividing pair must still split in two.
    voxel = (100.0, 25.0, 25.0)
    truth = balls((20, 100, 160), voxel, [(1.4, 1.25, 1.0), (2.6, 1.25, 1.0)], [0.8, 0.8])
    ids = cells.separate_cells(truth > 0, voxel)
    assert int(ids.max()) == 2
    assert im.matched_f1(truth, ids)["f1"] == 1.0
    assert np.array_equal(ids > 0, truth > 0)
    # fine voxels: the watershed works on a ~40 nm grid and maps the ids back onto every voxel
    fine = (12.5, 12.5, 12.5)
    truth = balls((88, 88, 168), fine, [(0.6, 0.55, 0.55), (1.4, 0.55, 0.55)], [0.5, 0.5])
    ids = cells.separate_cells(truth > 0, fine)
    assert int(ids.max()) == 2
    assert np.array_equal(ids > 0, truth > 0)
    assert im.matched_f1(truth, ids)["mean_matched_iou"] > 0.95


def test_separate_cells_edge_cases():
    voxel = (40.0, 40.0, 40.0)
    empty = cells.separate_cells(np.zeros((8, 8, 8), bool), voxel)
    assert empty.dtype == np.uint16 and not empty.any()
    with pytest.raises(VemcellError):
        cells.separate_cells(np.zeros((8, 8), bool), voxel)
    with pytest.raises(VemcellError):
        cells.separate_cells(np.ones((8, 8, 8), bool), (40.0, 0.0, 40.0))
    with pytest.raises(VemcellError):
        cells.separate_cells(np.ones((8, 8, 8), bool), voxel, seed_h_um=-1.0)


def test_merge_small_regions_merges_into_the_neighbour_it_touches_most_and_drops_isolated():
    ids = np.zeros((1, 6, 12), np.int32)
    ids[0, :, :5] = 1
    ids[0, :, 5:10] = 2
    ids[0, 2:4, 4:6] = 3  # small, touches 1 and 2
    ids[0, 0, 11] = 4  # small, isolated
    out = cells.merge_small_regions(ids, min_voxels=5)
    assert set(np.unique(out)) == {0, 1, 2}
    assert out[0, 0, 11] == 0
    assert (out[0, 2:4, 4:6] != 3).all()


def test_cell_boxes_add_margin_and_clip():
    ids = np.zeros((10, 20, 30), np.uint16)
    ids[2:4, 5:8, 0:3] = 1
    ids[8:10, 15:20, 20:30] = 3
    boxes = cells.cell_boxes(ids, 2)
    assert set(boxes) == {1, 3}
    assert boxes[1] == (slice(0, 6), slice(3, 10), slice(0, 5))
    assert boxes[3] == (slice(6, 10), slice(13, 20), slice(18, 30))
    per_axis = cells.cell_boxes(ids, (0, 1, 0))
    assert per_axis[1] == (slice(2, 4), slice(4, 9), slice(0, 3))
    assert cells.crop_margin_voxels((50.0, 10.0, 10.0), 0.2) == (4, 20, 20)
    with pytest.raises(VemcellError):
        cells.cell_boxes(ids, -1)


# -------------------------------------------------------------------------------- foreground


def _textured_cells(seed=0):
    """Dark textured cells in light resin, as in inverted back-scatter FIB-SEM."""
    rng = np.random.default_rng(seed)
    voxel = (40.0, 40.0, 40.0)
    truth = balls((32, 64, 96), voxel, [(1.2, 1.3, 0.65), (2.6, 1.3, 0.65)], [0.6, 0.6])
    img = np.where(truth > 0, 120.0, 185.0) + rng.normal(0, 12, truth.shape)
    return np.clip(img, 0, 255).astype(np.uint8), truth, voxel


def test_threshold_provider_finds_cells_whatever_their_polarity():
    img, truth, voxel = _textured_cells()
    fg = truth > 0
    for image in (img, 255 - img):
        mask, used = cells.foreground(image, voxel, provider="threshold")
        assert used == "threshold" and mask.dtype == bool
        assert (mask & fg).sum() / (mask | fg).sum() > 0.9
    fixed = cells.threshold_foreground(img, voxel, threshold=150, polarity="dark")
    assert (fixed & fg).sum() / (fixed | fg).sum() > 0.9
    with pytest.raises(VemcellError):
        cells.threshold_foreground(np.full((4, 8, 8), 7, np.uint8), voxel)


def test_unet_provider_from_labels_and_probabilities():
    _, truth, voxel = _textured_cells()
    labels = np.where(truth > 0, 1, 0).astype(np.uint8)
    labels[truth == 1] = 3  # a plastid-labelled cell is still a cell

    class Card:
        background_class = 0

    mask, used = cells.foreground(
        np.zeros(truth.shape, np.uint8), voxel, provider="unet", card=Card(), unet_labels=labels
    )
    assert used == "unet"
    fg = truth > 0

    def iou(m):
        return (m & fg).sum() / (m | fg).sum()

    # the clean-up opening only trims single-voxel tips at the balls' poles
    assert iou(mask) > 0.97 and not (mask & ~fg).any()
    probs = np.zeros((truth.shape[0], 2, *truth.shape[1:]), np.float32)
    probs[:, 0] = (truth == 0).astype(np.float32)
    probs[:, 1] = 1 - probs[:, 0]
    mask_p = cells.unet_foreground(voxel, probabilities=probs, background_class=0)
    assert np.array_equal(mask_p, mask)
    with pytest.raises(VemcellError):
        cells.unet_foreground(voxel)

    class NoBackground:
        background_class = None

    with pytest.raises(VemcellError):
        cells.foreground(truth, voxel, provider="unet", card=NoBackground(), unet_labels=labels)
    with pytest.raises(VemcellError):
        cells.foreground(truth, voxel, provider="magic")


def test_default_provider_order(monkeypatch, tmp_path):
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "tiny_sam"
    monkeypatch.delenv("VEMCELL_SAM", raising=False)
    monkeypatch.setenv("VEMCELL_MODELS", str(tmp_path))  # no models/sam in there

    class Card:
        background_class = 0

    if cells.find_sam() is None:
        assert cells.default_provider(Card()) == "unet"
        assert cells.default_provider(None) == "threshold"
    monkeypatch.setenv("VEMCELL_SAM", str(fixture))
    assert cells.default_provider(Card()) == "sam"
    assert cells.default_provider(None, sam_dir=fixture) == "sam"
    with pytest.raises(VemcellError):
        cells.find_sam(tmp_path)


# ---------------------------------------------------------------------------------- CLI, synth


@pytest.mark.slow
def test_vemcell_cells_finds_six_cells_two_touching(tmp_path):
    """The issue's acceptance test: six synthetic cells, some touching, give six cells."""
    from vemcell.synth import generator as synth

    r = synth.generate(shape=(56, 128, 160), voxel_nm=40, cells=6, seed=1, stages=[1, 2, 3])
    assert int(r.cells.max()) == 6
    assert touching_pairs(r.cells), "the test volume must contain touching cells"
    vol = tmp_path / "six.tif"
    write_tiff(vol, r.image, r.voxel_size_nm)
    out = tmp_path / "cells.tif"
    code = main(["cells", str(vol), "--out", str(out), "--foreground", "threshold",
                 "--progress", "none"])  # fmt: skip
    assert code == 0
    back = read_volume(out, kind="labels")
    assert back.dtype == np.uint16
    assert np.allclose(back.voxel_size_nm, r.voxel_size_nm)
    info = read_tiff_info(out)
    assert info["vemcell"] == "instances/1" and info["foreground"] == "threshold"
    assert info["cells"] == 6
    scores = im.instance_scores(r.cells, back.array())
    assert scores["matched"]["f1"] == 1.0
    assert scores["matched"]["mean_matched_iou"] > 0.8


def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch):
    img, _, voxel = _textured_cells()
    vol = tmp_path / "v.tif"
    write_tiff(vol, img, voxel)
    assert main(["cells", str(vol), "--out", str(tmp_path / "x.png")]) == 2
    assert main(["cells", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "c.tif")]) == 2
    monkeypatch.delenv("VEMCELL_SAM", raising=False)
    monkeypatch.setenv("VEMCELL_MODELS", str(tmp_path))
    if cells.find_sam() is None:
        assert main(["cells", str(vol), "--out", str(tmp_path / "c.tif"), "--foreground",
                     "sam"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all(line.startswith("vemcell cells: error:") for line in err)
    assert not (tmp_path / "c.tif").exists()


# ----------------------------------------------------------------------------------- metrics


def test_instance_metrics_known_values():
    gt = np.array([[[0, 0, 1, 1]]])
    pred = np.array([[[0, 0, 1, 2]]])
    # sklearn's documented example: adjusted_rand_score([0, 0, 1, 1], [0, 0, 1, 2]) = 0.5714...
    assert im.adjusted_rand_error(gt, pred) == pytest.approx(1 - 0.5714285714, abs=1e-9)
    assert im.adjusted_rand_error(gt, gt) == pytest.approx(0.0)
    v = im.voi(gt, pred)
    assert v["merge"] == pytest.approx(0.0) and v["split"] == pytest.approx(0.5)  # 1 bit on half
    v = im.voi(pred, gt)
    assert v["split"] == pytest.approx(0.0) and v["merge"] == pytest.approx(0.5)

    a = np.zeros((1, 10, 10), np.uint16)
    a[0, :5, :5], a[0, 5:, 5:] = 1, 2
    b = np.zeros_like(a)
    b[0, :5, :5] = 7  # perfect match
    b[0, 5:, 5:7] = 8  # IoU 0.4: not a match
    b[0, 0, 9] = 9  # false positive
    m = im.matched_f1(a, b)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 2, 1)
    assert m["f1"] == pytest.approx(2 * 1 / (2 + 3))
    assert im.matched_f1(a, a)["f1"] == 1.0
    assert im.adapted_rand_error(a, a)["error"] == pytest.approx(0.0)
    with pytest.raises(VemcellError):
        im.matched_f1(a, b[..., :5])


def test_isbi_scores():
    gt = np.zeros((8, 8), np.int32)
    gt[:, :4], gt[:, 4:] = 1, 2
    perfect = im.isbi2012_scores(gt, gt * 5)
    assert perfect["rand"]["score"] == pytest.approx(1.0)
    assert perfect["info"]["score"] == pytest.approx(1.0)
    merged = im.isbi2012_scores(gt, np.ones_like(gt))
    assert merged["rand"]["split"] == pytest.approx(1.0)
    assert merged["rand"]["merge"] == pytest.approx(0.5)
    assert merged["info"]["merge"] == pytest.approx(0.0)
    # proposal boundaries (0) are thinned away before scoring
    with_boundary = gt.copy()
    with_boundary[:, 3:5] = 0
    thinned = im.isbi2012_scores(gt, with_boundary)
    assert thinned["rand"]["score"] == pytest.approx(1.0)
    # ground-truth membranes are outside the scored foreground
    membranes = np.zeros((1, 8, 8), np.uint8)
    membranes[0, :, 4] = 1
    pred = np.ones((1, 8, 8), np.int32)
    pred[0, :, 4:] = 2
    stack = im.isbi2012_stack_scores(membranes, pred)
    assert stack["mean"]["rand"]["score"] == pytest.approx(1.0)


def test_boundary_watershed_splits_dense_tissue_even_through_membrane_gaps():
    membranes = np.zeros((2, 64, 64), np.uint8)
    membranes[:, 31:33, :] = 1
    membranes[:, :, 31:33] = 1
    membranes[1, 31:33, 5:9] = 0  # a gap: the two left regions touch through it
    prob = membranes.astype(np.float32) * 0.9 + 0.05
    ids = cells.boundary_watershed(prob, (50.0, 4.0, 4.0), threshold=0.5, seed_h_nm=8.0)
    assert ids.dtype == np.int32 and ids.min() > 0  # every pixel gets a region
    assert [len(np.unique(ids[z])) for z in range(2)] == [4, 4]
    assert not set(np.unique(ids[0])) & set(np.unique(ids[1]))  # unique across slices
    # (slice 1's ground truth joins the two left regions through the gap, so score slice 0)
    scores = im.isbi2012_stack_scores(membranes[:1], ids[:1])
    assert scores["mean"]["rand"]["score"] > 0.99 and scores["mean"]["info"]["score"] > 0.99
    ids3d = cells.boundary_watershed(prob, (50.0, 4.0, 4.0), per_slice=False, seed_h_nm=8.0)
    assert len(np.unique(ids3d)) == 4


def _neurites(shift_px=3, n_sections=3, size=96, wall=2):
    """A 3 × 3 grid of neurites cut by thick sections, the walls shifting a little per section.

    Returns the membrane mask (Z, Y, X) and the true neurite ids (0 on membranes).
    """
    truth = np.zeros((n_sections, size, size), np.int32)
    mem = np.zeros(truth.shape, bool)
    for z in range(n_sections):
        walls = [size // 3 + z * shift_px, 2 * size // 3 - z * shift_px]
        rows = np.searchsorted(walls, np.arange(size), side="right")
        truth[z] = rows[:, None] * 3 + rows[None, :] + 1
        for w in walls:
            mem[z, w - wall // 2 : w + (wall + 1) // 2, :] = True
            mem[z, :, w - wall // 2 : w + (wall + 1) // 2] = True
    truth[mem] = 0
    return mem, truth


def test_link_sections_joins_majority_overlaps_only():
    ids = np.zeros((2, 10, 10), np.int32)
    ids[0, :, :5], ids[0, :, 5:] = 1, 2
    ids[1, :, :4], ids[1, :, 4:6], ids[1, :, 6:] = 5, 6, 7  # 6 straddles both
    out = cells.link_sections(ids, 0.5)
    assert out[1, 0, 0] == out[0, 0, 0] and out[1, 0, 9] == out[0, 0, 9]
    assert len({out[1, 0, 4], out[0, 0, 0], out[0, 0, 9]}) == 3  # no merge through 6
    assert out.max() == 3 and out.dtype == np.int32
    ids[1, :, 4:6] = 0  # zeros stay zeros
    assert (cells.link_sections(ids)[1, :, 4:6] == 0).all()
    with pytest.raises(VemcellError, match="3D"):
        cells.link_sections(ids[0])
    with pytest.raises(VemcellError, match="min_overlap"):
        cells.link_sections(ids, 1.0)


def test_membrane_cells_follow_neurites_through_thick_sections():
    mem, truth = _neurites()
    labels = np.where(mem, 1, 0).astype(np.uint8)
    ids = cells.membrane_cells(labels, (50.0, 10.0, 10.0), boundary_class=1)
    assert ids.dtype == np.uint16 and ids.min() > 0  # membranes belong to a neighbour too
    inside = truth > 0
    assert im.adjusted_rand_error(truth[inside], ids[inside]) == 0.0  # 9 neurites, 3 sections
    assert int(ids.max()) == 9
    # isotropic voxels: one 3D watershed gives the same 9 cells
    iso = cells.membrane_cells(np.repeat(labels, 5, axis=0), (10.0, 10.0, 10.0), 1)
    assert int(iso.max()) == 9
    with pytest.raises(VemcellError, match="class index"):
        cells.membrane_cells(labels, (50.0, 10.0, 10.0), boundary_class=-1)


def _threshold_unet(tmp_path, **card_fields):
    """A two-class stand-in U-Net as ONNX (background = bright), with its model card."""
    import json

    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Sub", ["image", "t"], ["d"]),
        helper.make_node("Mul", ["d", "k"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["bg"]),
        helper.make_node("Sub", ["one", "bg"], ["fg"]),
        helper.make_node("Concat", ["bg", "fg"], ["probabilities"], axis=1),
    ]
    consts = [
        helper.make_tensor("t", TensorProto.FLOAT, [], [150.0 / 255.0]),
        helper.make_tensor("k", TensorProto.FLOAT, [], [40.0]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
    ]
    graph = helper.make_graph(
        nodes,
        "threshold_unet",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, "h", "w"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 2, "h", "w"])],
        consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, tmp_path / "twoclass.onnx")
    card = {
        "format": "vemcell-model-card/1",
        "name": "twoclass",
        "onnx": "twoclass.onnx",
        "classes": [{"name": "background"}, {"name": "cytoplasm"}],
        "background_class": 0,
        "input": {"tile": 64, "divisor": 16, "normalisation": {"method": "scale"}},
        "voxel_size_nm": 40.0,
        **card_fields,
    }
    (tmp_path / "twoclass.json").write_text(json.dumps(card))
    return tmp_path / "twoclass.onnx"


def test_vemcell_cells_with_the_unet_background_class(tmp_path, monkeypatch):
    monkeypatch.delenv("VEMCELL_SAM", raising=False)
    monkeypatch.setenv("VEMCELL_MODELS", str(tmp_path))
    img, truth, voxel = _textured_cells()
    vol = tmp_path / "v.tif"
    write_tiff(vol, img, voxel)
    model = _threshold_unet(tmp_path)
    out = tmp_path / "cells.tif"
    if cells.find_sam() is not None:
        pytest.skip("an exported SAM is installed, so auto would pick SAM")
    code = main(["cells", str(vol), "--out", str(out), "--model", str(model),
                 "--progress", "none"])  # fmt: skip
    assert code == 0
    assert read_tiff_info(out)["foreground"] == "unet"  # auto: the model has a background
    ids = read_volume(out, kind="labels").array()
    assert im.matched_f1(truth, ids)["f1"] == 1.0


def test_models_with_a_membrane_class_split_cells_along_it(tmp_path, monkeypatch):
    """`vemcell cells` and `vemcell run` use the card's cell_boundary_class on dense tissue."""
    from vemcell.cards.card import load_card

    monkeypatch.delenv("VEMCELL_SAM", raising=False)
    mem, truth = _neurites(shift_px=2, size=64)
    img = np.where(mem, 40, 200).astype(np.uint8)  # dark membranes, bright neurites
    vol = tmp_path / "v.tif"
    write_tiff(vol, img, (50.0, 10.0, 10.0))
    # the stand-in's "background" channel is bright (= cytoplasm here), its other one dark
    fields = {
        "classes": [{"name": "cytoplasm"}, {"name": "membrane"}],
        "background_class": 1,
        "cell_boundary_class": 1,
        "voxel_size_nm": 10.0,
    }
    model = _threshold_unet(tmp_path, **fields)
    assert load_card(model).cell_boundary_class == 1
    assert cells.default_provider(load_card(model), sam_dir=None) == "unet"
    out = tmp_path / "cells.tif"
    assert main(["cells", str(vol), "--out", str(out), "--model", str(model),
                 "--directions", "1", "--progress", "none"]) == 0  # fmt: skip
    info = read_tiff_info(out)
    assert info["foreground"] == "unet (membrane watershed)" and info["cells"] == 9
    ids = read_volume(out, kind="labels").array()
    assert ids.dtype == np.uint16  # what `vemcell cells` promises, whichever splitter ran
    assert im.adjusted_rand_error(truth[truth > 0], ids[truth > 0]) == 0.0
    run = tmp_path / "run"
    assert main(["run", str(vol), "--model", str(model), "--directions", "1",
                 "--out", str(run), "--progress", "none"]) == 0  # fmt: skip
    import json

    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    assert report["cells"] == {
        "separated": True, "foreground": "unet (membrane watershed)", "cells": 9
    }  # fmt: skip
    bad = json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))
    bad["cell_boundary_class"] = 2
    model.with_suffix(".json").write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(VemcellError, match="cell_boundary_class 2"):
        load_card(model)
