"""SAM through onnxruntime (tiny exported fixture) and the export itself (needs the sam extra)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from vemcell.cells import sam
from vemcell.cells import separate as cells
from vemcell.cli.main import main
from vemcell.errors import VemcellError
from vemcell.io.volumes import read_tiff_info, read_volume, write_tiff

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_sam"
HAVE_SAM_EXTRA = (
    importlib.util.find_spec("segment_anything") is not None
    and importlib.util.find_spec("torch") is not None
)
# The tiny model's weights are random: its predicted IoUs and stability scores mean nothing,
# so the plumbing tests accept every candidate mask.
PERMISSIVE = {"pred_iou_thresh": -1e9, "stability_score_thresh": 0.0}


@pytest.fixture(scope="module")
def tiny():
    return sam.SamOnnx(FIXTURE)


def test_fixture_is_small_and_complete():
    total = sum(f.stat().st_size for f in FIXTURE.iterdir())
    assert total < 2_000_000
    card = sam.load_sam_card(FIXTURE)
    assert card.img_size == 128 and card.mask_input_size == (32, 32)
    assert card.raw["source"]["tiny"] is True


def test_encoder_and_decoder_shapes_with_any_prompt_batch_and_aspect(tiny):
    rng = np.random.default_rng(0)
    for hw in ((50, 80), (96, 40)):
        img = rng.uniform(0, 255, hw).astype(np.float32)
        emb = tiny.embed(img)
        assert emb.shape == (1, 32, 8, 8)
        for b in (1, 5):
            pts = rng.uniform(0, min(hw), (b, 2))
            logits, iou = tiny.predict(emb, pts, hw)
            assert logits.shape == (b, 3, *hw) and iou.shape == (b, 3)
            assert np.isfinite(logits).all()
    # the prompt is what changes the answer
    a, _ = tiny.predict(emb, np.array([[5.0, 5.0]]), (96, 40))
    b, _ = tiny.predict(emb, np.array([[35.0, 90.0]]), (96, 40))
    assert not np.allclose(a, b)


def test_point_grid_stability_and_nms():
    pts = sam.point_grid((100, 200), 2)
    assert np.allclose(pts, [[50, 25], [150, 25], [50, 75], [150, 75]])
    with pytest.raises(VemcellError):
        sam.point_grid((10, 10), 0)
    logits = np.full((1, 10, 10), -5.0, np.float32)
    logits[0, :4, :5] = 5.0  # 20 px above +1
    logits[0, 4:6, :5] = 0.5  # 10 px between -1 and +1
    assert sam.stability_score(logits, 0.0, 1.0)[0] == pytest.approx(20 / 30)
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], float)
    assert sam.box_nms(boxes, np.array([0.5, 0.9, 0.1]), 0.7) == [1, 2]


def test_merge_keeps_cells_and_drops_backdrop_and_resin_pockets():
    yy, xx = np.mgrid[:100, :100]
    grey = np.full((100, 100), 200.0, np.float32)
    cell_a = (yy - 30) ** 2 + (xx - 30) ** 2 < 15**2
    cell_b = (yy - 70) ** 2 + (xx - 70) ** 2 < 12**2
    pocket = (yy - 20) ** 2 + (xx - 80) ** 2 < 8**2
    grey[cell_a | cell_b] = 100.0
    grey += np.random.default_rng(0).normal(0, 3, grey.shape).astype(np.float32)
    backdrop = ~(cell_a | cell_b)
    tiny_speck = (yy == 90) & (xx == 5)
    opt = sam.SamOptions(min_cell_area_um2=0.01)
    out = sam.merge_cell_masks(
        [backdrop, cell_a, cell_b, pocket, tiny_speck], grey, pixel_area_um2=0.02**2 * 4, opt=opt
    )
    assert np.array_equal(out, cell_a | cell_b)
    # with no backdrop mask, the pixels no mask covers tell the resin's grey level
    out = sam.merge_cell_masks([cell_a, cell_b, pocket], grey, pixel_area_um2=0.0016, opt=opt)
    assert np.array_equal(out, cell_a | cell_b)


def test_interpolation_between_key_slices_morphs_the_shape():
    yy, xx = np.mgrid[:80, :80]
    small = (yy - 40) ** 2 + (xx - 40) ** 2 <= 10**2
    big = (yy - 40) ** 2 + (xx - 40) ** 2 <= 30**2
    vol = sam.interpolate_slices({1: small, 5: big}, 7, (10.0, 10.0))
    assert np.array_equal(vol[0], small) and np.array_equal(vol[6], big)
    radius_mid = vol[3, 40, 40:].sum()
    assert 18 <= radius_mid <= 22  # halfway between radius 10 and 30


def test_automatic_masks_on_the_tiny_model(tiny):
    grey = np.random.default_rng(1).uniform(0, 255, (48, 64)).astype(np.float32)
    opt = sam.SamOptions(points_per_side=3, points_per_batch=4, box_nms_thresh=1.0, **PERMISSIVE)
    masks, scores = sam.automatic_masks(tiny, grey, opt)
    emb = tiny.embed(grey)
    logits, _ = tiny.predict(emb, sam.point_grid((48, 64), 3), (48, 64))
    nonempty = [(logits[b, k] > 0).any() for b in range(9) for k in range(3)]
    assert len(masks) == sum(nonempty)  # NMS at IoU 1.0 keeps every candidate
    assert all(m.shape == (48, 64) and m.dtype == bool for m in masks)
    assert scores == sorted(scores, reverse=True)
    strict = sam.SamOptions(points_per_side=3, pred_iou_thresh=1e9)
    assert sam.automatic_masks(tiny, grey, strict) == ([], [])


class OracleSam:
    """A stand-in with SamOnnx's interface that answers each point prompt with the true
    region under it (cell or resin), so the merge and 3D logic are tested against truth."""

    class card:
        mask_threshold = 0.0

    def __init__(self, truth, image):
        self.truth = truth
        self.grey = sam.to_sam_grey(image)  # what sam_foreground hands to embed()

    def embed(self, slice255):
        # the "embedding" is the slice itself; predict() finds which slice it is
        return slice255

    def predict(self, emb, points_xy, hw):
        from scipy import ndimage as ndi

        z = next(z for z in range(len(self.grey)) if np.array_equal(self.grey[z], emb))
        lab = self.truth[z]
        regions, _ = ndi.label(lab == 0)
        out = np.full((len(points_xy), 3, *hw), -10.0, np.float32)
        for i, (x, y) in enumerate(np.asarray(points_xy).astype(int)):
            cid = lab[y, x]
            region = (lab == cid) if cid else (regions == regions[y, x])
            out[i, :, region] = 10.0
        return out, np.full((len(points_xy), 3), 0.99, np.float32)


def test_sam_merge_and_watershed_recover_touching_cells_with_an_oracle_model():
    from test_cells import balls

    voxel = (40.0, 40.0, 40.0)
    truth = balls((36, 64, 112), voxel, [(1.3, 1.3, 0.7), (2.75, 1.3, 0.7)], [0.65, 0.8])
    # slightly different grey per slice so the oracle can tell slices apart
    image = np.where(truth > 0, 90, 190).astype(np.uint8)
    image += np.arange(36, dtype=np.uint8)[:, None, None]
    oracle = OracleSam(truth, image)
    mask = sam.sam_foreground(image, voxel, FIXTURE, model=oracle, points_per_side=12, slice_step=2)
    fg = truth > 0
    assert (mask & fg).sum() / (mask | fg).sum() > 0.95
    ids = cells.separate_cells(mask, voxel)
    assert int(ids.max()) == 2


def test_sam_foreground_end_to_end_on_the_tiny_model(tmp_path):
    from test_cells import balls

    voxel = (40.0, 40.0, 40.0)
    truth = balls((9, 40, 56), voxel, [(1.1, 0.8, 0.2)], [0.6])
    image = np.where(truth > 0, 90, 190).astype(np.uint8)
    calls = []
    mask, used = cells.foreground(
        image,
        voxel,
        provider="sam",
        sam_dir=FIXTURE,
        sam_options={"points_per_side": 4, "slice_step": 4, **PERMISSIVE},
        progress=lambda f, m: calls.append((f, m)),
    )
    assert used == "sam" and mask.shape == image.shape and mask.dtype == bool
    assert [m for _, m in calls if m.startswith("SAM slice")] == [
        "SAM slice 1/9",
        "SAM slice 5/9",
        "SAM slice 9/9",
    ]
    with pytest.raises(VemcellError):
        cells.foreground(image, voxel, provider="sam", sam_dir=FIXTURE,
                         sam_options={"no_such_option": 1})  # fmt: skip
    # the CLI with --foreground sam writes a cell-id TIFF that says SAM made it
    vol = tmp_path / "v.tif"
    write_tiff(vol, image, voxel)
    out = tmp_path / "cells.tif"
    code = main(["cells", str(vol), "--out", str(out), "--foreground", "sam", "--sam",
                 str(FIXTURE), "--slice-step", "4", "--points-per-side", "4",
                 "--progress", "none"])  # fmt: skip
    assert code == 0
    assert read_tiff_info(out)["foreground"] == "sam"
    assert read_volume(out, kind="labels").dtype == np.uint16


def test_bad_sam_folders_are_one_sentence_errors(tmp_path):
    with pytest.raises(VemcellError, match="no exported SAM"):
        sam.load_sam_card(tmp_path)
    (tmp_path / "sam.json").write_text("{not json")
    with pytest.raises(VemcellError, match="not valid JSON"):
        sam.load_sam_card(tmp_path)
    card = json.loads((FIXTURE / "sam.json").read_text())
    (tmp_path / "sam.json").write_text(json.dumps(card))
    with pytest.raises(VemcellError, match="missing"):
        sam.load_sam_card(tmp_path)


@pytest.mark.skipif(HAVE_SAM_EXTRA, reason="checks the message shown without the sam extra")
def test_sam_export_without_the_extra_says_how_to_install(tmp_path, capsys):
    code = main(["sam-export", "--checkpoint", str(tmp_path / "x.pth"), "--model-type",
                 "vit_b", "--out", str(tmp_path / "sam")])  # fmt: skip
    assert code == 2
    assert "sam" in capsys.readouterr().err
    assert not (tmp_path / "sam").exists()


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.skipif(
    not HAVE_SAM_EXTRA,
    reason="segment_anything + torch not importable (install the 'sam' extra, see README)",
)
def test_export_reproduces_the_fixture_and_checks_checkpoints(tmp_path):
    import torch

    from vemcell_train import sam_export

    card_path = sam_export.export_tiny(tmp_path / "tiny")
    card = json.loads(card_path.read_text())
    assert max(card["export_check"].values()) < 1e-4
    fresh, committed = sam.SamOnnx(tmp_path / "tiny"), sam.SamOnnx(FIXTURE)
    grey = np.random.default_rng(2).uniform(0, 255, (40, 60)).astype(np.float32)
    pts = np.array([[10.0, 10.0], [30.0, 20.0]])
    a = fresh.predict(fresh.embed(grey), pts, (40, 60))
    b = committed.predict(committed.embed(grey), pts, (40, 60))
    assert np.allclose(a[0], b[0], atol=1e-4) and np.allclose(a[1], b[1], atol=1e-5)

    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(VemcellError, match="not a readable"):
        sam_export.load_checkpoint(bogus, "vit_b")
    wrong = tmp_path / "tiny.pth"
    torch.save(sam_export.tiny_sam().state_dict(), wrong)
    with pytest.raises(VemcellError, match="not a SAM vit_b checkpoint"):
        sam_export.load_checkpoint(wrong, "vit_b")
    with pytest.raises(VemcellError):
        sam_export.load_checkpoint(wrong, "vit_x")
