"""Segmentation: tiling, 3-direction fusion, the median filter, preprocessing and model cards."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from tiny_models import make_band_model, make_context_model, make_lopsided_model
from vemcell.cards.card import load_card, resolve_model
from vemcell.errors import VemcellError
from vemcell.io.volumes import Volume
from vemcell.segmentation import preprocess, segment


@pytest.fixture()
def band_card(tmp_path):
    return load_card(make_band_model(tmp_path, tile=64))


def banded_volume(shape=(40, 70, 90), seed=0):
    """Three intensity classes in blobs: background 0.1, a block 0.5, a ball 0.9."""
    z, y, x = np.indices(shape)
    img = np.full(shape, 0.1, np.float32)
    truth = np.zeros(shape, np.uint8)
    block = (z > 5) & (z < 35) & (y > 10) & (y < 60) & (x > 10) & (x < 80)
    img[block], truth[block] = 0.5, 1
    ball = (z - 20) ** 2 + (y - 35) ** 2 + (x - 45) ** 2 < 12**2
    img[ball], truth[ball] = 0.9, 2
    return img, truth


def test_predict_slices_are_probabilities(band_card):
    seg = segment.Segmenter(band_card, threads=1)
    x = np.random.default_rng(0).random((3, 37, 50), dtype=np.float32)
    p = seg.predict_slices(x)
    assert p.shape == (3, 3, 37, 50)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_tiled_prediction_matches_untiled(tmp_path):
    small = load_card(make_band_model(tmp_path / "a", tile=32))
    big = load_card(make_band_model(tmp_path / "b", tile=256))
    x = np.random.default_rng(1).random((2, 150, 205), dtype=np.float32)
    tiled = segment.Segmenter(small, threads=1, batch_size=5, tile=32).predict_slices(x)
    whole = segment.Segmenter(big, threads=1).predict_slices(x)
    assert tiled.shape == whole.shape == (2, 3, 150, 205)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


def test_tta_predictions_turn_and_mirror_with_the_slice(tmp_path):
    seg = segment.Segmenter(load_card(make_lopsided_model(tmp_path, tile=32)), threads=1)
    x = np.random.default_rng(2).random((2, 40, 56), dtype=np.float32)
    turn = lambda a: np.ascontiguousarray(np.rot90(a, 1, axes=(-2, -1)))  # noqa: E731
    mirror = lambda a: np.ascontiguousarray(a[..., ::-1])  # noqa: E731
    plain = seg.predict_slices(x)
    assert np.abs(turn(plain) - seg.predict_slices(turn(x))).max() > 0.05  # the model alone
    tta = seg.predict_slices(x, tta=True)
    assert tta.shape == plain.shape
    np.testing.assert_allclose(tta.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(turn(tta), seg.predict_slices(turn(x), tta=True), atol=1e-5)
    np.testing.assert_allclose(mirror(tta), seg.predict_slices(mirror(x), tta=True), atol=1e-5)


def test_direction_slices_bring_neighbours_repeated_at_the_faces():
    vol = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    for axis in range(3):
        n = vol.shape[axis]
        plain = segment.direction_slices(vol, axis, 0, n)
        stacks = segment.direction_slices(vol, axis, 0, n, context=1)
        assert stacks.shape == (n, 3, *plain.shape[1:])
        np.testing.assert_array_equal(stacks[:, 1], plain)
        np.testing.assert_array_equal(stacks[1:, 0], plain[:-1])
        np.testing.assert_array_equal(stacks[:-1, 2], plain[1:])
        np.testing.assert_array_equal(stacks[0, 0], plain[0])  # beyond the face: repeated
        np.testing.assert_array_equal(stacks[-1, 2], plain[-1])
    part = segment.direction_slices(vol, 0, 1, 3, context=2)  # neighbours outside the range
    assert part.shape == (2, 5, 5, 6)
    np.testing.assert_array_equal(part[:, 2], vol[1:3])
    np.testing.assert_array_equal(part[1, 0], vol[0])
    np.testing.assert_array_equal(part[0, 4], vol[3])


def test_a_model_with_slice_context_gets_each_slice_with_its_neighbours(tmp_path):
    card = load_card(make_context_model(tmp_path, tile=32))
    seg = segment.Segmenter(card, threads=1)
    assert seg.in_channels == 3 and seg.context == 1
    vol = np.zeros((6, 40, 52), np.float32)
    vol[2] = 1.0  # the model marks the slice after a bright one
    for confidence in (False, True):  # labels straight from the model, or via fused scores
        result = segment.segment(
            Volume(vol, (50.0, 5.0, 5.0)), card, directions=1, median=0, confidence=confidence
        )
        assert result.labels[3].all() and not np.delete(result.labels, 3, axis=0).any()
    stacks = segment.direction_slices(vol, 0, 0, 6, context=1)
    plain = seg.predict_slices(stacks)
    np.testing.assert_allclose(seg.predict_slices(stacks, tta=True), plain, atol=1e-5)
    with pytest.raises(VemcellError, match="takes 3 slice"):
        seg.predict_slices(vol)  # single slices for a model that needs three


def test_logits_output_gets_softmax(tmp_path):
    card = load_card(make_band_model(tmp_path, output="logits"))
    assert card.output == "logits"
    p = segment.Segmenter(card, threads=1).predict_slices(np.full((1, 16, 16), 0.5, np.float32))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert p[0, 1].min() > 0.9


@pytest.mark.parametrize("directions", [1, 3])
@pytest.mark.parametrize("fuse", ["mean", "max"])
def test_segment_volume_recovers_truth(band_card, directions, fuse):
    img, truth = banded_volume()
    labels = segment.segment_volume(
        img, band_card, directions=directions, median=0, fuse=fuse, threads=1
    )
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, truth)


def test_three_directions_outvote_one_wrong_direction(tmp_path):
    """When one slice direction is completely wrong, the other two out-vote it everywhere."""
    card = load_card(make_band_model(tmp_path, tile=64))
    img, truth = banded_volume((32, 48, 56))
    seg = segment.Segmenter(card, threads=1)
    real = seg.predict_slices
    seen = set()

    def wrong_on_xz(slices, tta=False):
        seen.add(slices.shape[1:])
        p = real(slices, tta)
        return p[:, ::-1].copy() if slices.shape[1:] == (32, 56) else p

    seg.predict_slices = wrong_on_xz  # type: ignore[method-assign]
    labels = segment.segment_volume(img, card, directions=3, median=0, segmenter=seg)
    assert seen == {(48, 56), (32, 56), (32, 48)}
    np.testing.assert_array_equal(labels, truth)


def test_median_filter_removes_speckle_and_keeps_shapes(band_card):
    img, truth = banded_volume()
    rng = np.random.default_rng(3)
    noisy = img.copy()
    idx = rng.random(img.shape) < 0.01
    noisy[idx] = 0.9
    raw = segment.segment_volume(noisy, band_card, directions=1, median=0, threads=1)
    clean = segment.segment_volume(noisy, band_card, directions=1, median=3, threads=1)
    err_raw = (raw != truth).mean()
    err_clean = (clean != truth).mean()
    assert err_raw > 0.005
    assert err_clean < err_raw / 4


def test_majority_filter_is_binary_median():
    from scipy import ndimage

    rng = np.random.default_rng(5)
    labels = (rng.random((12, 13, 14)) < 0.4).astype(np.uint8)
    ours = segment.majority_filter(labels, 3, 2)
    ref = ndimage.median_filter(labels, size=3, mode="nearest")
    np.testing.assert_array_equal(ours, ref)


def test_majority_filter_box_skips_thick_axes():
    from scipy import ndimage

    rng = np.random.default_rng(6)
    labels = (rng.random((5, 13, 14)) < 0.4).astype(np.uint8)
    ours = segment.majority_filter(labels, (1, 3, 3), 2)
    ref = np.stack([ndimage.median_filter(s, size=3, mode="nearest") for s in labels])
    np.testing.assert_array_equal(ours, ref)
    assert segment.median_box(3, (50.0, 4.6, 4.6)) == (1, 3, 3)
    assert segment.median_box(3, (20.0, 10.0, 10.0)) == (3, 3, 3)
    with pytest.raises(VemcellError, match="3 sizes"):
        segment.majority_filter(labels, (3, 3), 2)


def test_one_direction_keeps_thick_sections(tmp_path):
    """Serial sections thicker than the model's voxel are segmented as they are, not interpolated.

    A structure present in one 50 nm section only survives: no made-up in-between slices and
    no vote across sections erase it.
    """
    card = load_card(
        make_band_model(tmp_path, voxel_size_nm=10.0, normalisation={"method": "scale"})
    )
    img, truth = banded_volume((6, 80, 80))
    img[:], truth[:] = 0.1, 0
    img[3, 20:60, 20:60], truth[3, 20:60, 20:60] = 0.9, 2
    vol = Volume(
        data=(img * 255).astype(np.uint8), voxel_size_nm=(50.0, 10.0, 10.0), voxel_size_source="x"
    )
    result = segment.segment(vol, card, directions=1, median=3, threads=1)
    assert result.working_voxel_nm == (50.0, 10.0, 10.0)
    assert result.working_shape == (6, 80, 80)
    # only the square's 4 corners fall to the in-plane 3 × 3 vote
    assert (result.labels != truth).sum() == 4
    iso = segment.segment(vol, card, directions=3, median=3, threads=1)
    assert iso.working_voxel_nm == (10.0, 10.0, 10.0)


def test_volume_smaller_than_model_needs(band_card):
    with pytest.raises(VemcellError, match="smaller than the model needs"):
        segment.segment_volume(np.zeros((8, 40, 40), np.float32), band_card, directions=3)
    # one direction does not slice along Z, so a thin stack is fine
    segment.segment_volume(np.zeros((4, 40, 40), np.float32), band_card, directions=1)


def test_card_class_count_mismatch_is_clear(tmp_path):
    card = load_card(make_band_model(tmp_path, card_classes=4))
    with pytest.raises(VemcellError, match="lists 4 classes"):
        segment.segment_volume(np.zeros((20, 20, 20), np.float32), card, directions=1)


def test_cuda_provider_chosen_when_available():
    assert segment.choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert segment.choose_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_session_never_spins():
    so = segment.session_options(2)
    assert so.intra_op_num_threads == 2
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_segment_maps_anisotropic_volume_back(tmp_path):
    card = load_card(
        make_band_model(tmp_path, voxel_size_nm=10.0, normalisation={"method": "scale"})
    )
    img, truth = banded_volume((40, 80, 80))
    # the same scene sampled with 20 nm slices: every second Z plane
    raw = (img[::2] * 255).astype(np.uint8)
    vol = Volume(data=raw, voxel_size_nm=(20.0, 10.0, 10.0), voxel_size_source="metadata")
    result = segment.segment(vol, card, directions=3, median=3, threads=1)
    assert result.labels.shape == raw.shape
    assert result.working_shape == (40, 80, 80)
    assert (result.labels == truth[::2]).mean() > 0.97


def test_card_errors(tmp_path):
    card_path = make_band_model(tmp_path)
    (tmp_path / "band.onnx").unlink()
    with pytest.raises(VemcellError, match="missing"):
        load_card(card_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(VemcellError, match="not valid JSON"):
        load_card(bad)
    bad.write_text(json.dumps({"classes": ["only"]}), encoding="utf-8")
    with pytest.raises(VemcellError, match="at least two classes"):
        load_card(bad)
    with pytest.raises(VemcellError, match="No model named"):
        resolve_model("no-such-model")


def test_normalise_rules():
    with pytest.raises(VemcellError, match="NaN"):
        preprocess.normalise(np.array([[[0.0, np.nan]]]))
    with pytest.raises(VemcellError, match="constant"):
        preprocess.normalise(np.full((3, 3, 3), 7, np.uint8))
    u8 = np.arange(256, dtype=np.uint8).reshape(4, 8, 8)
    np.testing.assert_allclose(preprocess.normalise(u8).ravel(), np.arange(256) / 255.0)
    u16 = np.random.default_rng(0).integers(1000, 3000, (10, 20, 20)).astype(np.uint16)
    u16[0, 0, 0] = 65000  # one hot pixel must not squash the contrast
    out = preprocess.normalise(u16)
    assert out.min() == 0.0 and out.max() == 1.0
    assert 0.4 < float(np.median(out)) < 0.6


def test_resample_shapes_and_labels_stay_labels():
    arr = np.zeros((10, 40, 40), np.uint8)
    arr[3:7, 10:30, 10:30] = 4
    up = preprocess.resample(arr, (40.0, 10.0, 10.0), 10.0, order=0)
    assert up.shape == (40, 40, 40)
    assert set(np.unique(up)) == {0, 4}
    back = preprocess.resize(up, arr.shape, order=0)
    np.testing.assert_array_equal(back, arr)


def test_labels_mapped_back_by_coverage_follow_the_fine_boundary():
    """A disc labelled on a 4× coarser grid comes back closer to the fine disc than blocks do."""
    yy, xx = np.mgrid[:240, :240]
    fine = np.zeros((4, 240, 240), np.uint8)
    fine[:, (yy - 120) ** 2 + (xx - 110) ** 2 < 70**2] = 1
    fine[:, (yy - 120) ** 2 + (xx - 150) ** 2 < 25**2] = 2  # a touching second class
    coarse = preprocess.resize(fine, (4, 60, 60), order=0)
    smooth = preprocess.resize_labels(coarse, fine.shape)
    blocks = preprocess.resize(coarse, fine.shape, order=0)
    assert smooth.dtype == np.uint8 and smooth.shape == fine.shape
    assert set(np.unique(smooth)) == {0, 1, 2}
    for c in (1, 2):
        iou_smooth = ((smooth == c) & (fine == c)).sum() / ((smooth == c) | (fine == c)).sum()
        iou_blocks = ((blocks == c) & (fine == c)).sum() / ((blocks == c) | (fine == c)).sum()
        assert iou_smooth > iou_blocks
    assert preprocess.resize_labels(fine, fine.shape) is fine  # nothing to do


def test_interpolated_probabilities_place_boundaries_between_coarse_voxels():
    """Soft scores on a 4× coarser grid recover a disc better than their argmax mapped back."""
    yy, xx = np.mgrid[:240, :240]
    fine = np.zeros((4, 240, 240), np.uint8)
    fine[:, (yy - 117) ** 2 + (xx - 109) ** 2 < 70**2] = 1
    # scores as a model would give them: the fraction of each coarse voxel the disc covers
    frac = fine.reshape(4, 60, 4, 60, 4).mean(axis=(2, 4))
    scores = [np.rint(255 * (1 - frac)).astype(np.uint8), np.rint(255 * frac).astype(np.uint8)]
    soft = preprocess.argmax_resized(scores, fine.shape)
    hard = preprocess.resize_labels((frac > 0.5).astype(np.uint8), fine.shape)
    iou = {
        k: ((v == 1) & (fine == 1)).sum() / ((v == 1) | (fine == 1)).sum()
        for k, v in (("soft", soft), ("hard", hard))
    }
    assert iou["soft"] > iou["hard"] > 0.95
    assert iou["soft"] > 0.99
    with pytest.raises(VemcellError, match="No class scores"):
        preprocess.argmax_resized([], (2, 2, 2))


def test_segment_on_a_finer_grid_uses_interpolated_probabilities(tmp_path):
    """A volume 2× finer than the model's voxel: labels come from interpolated scores."""
    card = load_card(
        make_band_model(tmp_path, voxel_size_nm=20.0, normalisation={"method": "scale"})
    )
    img, truth = banded_volume((40, 80, 80))
    vol = Volume(
        data=(img * 255).astype(np.uint8), voxel_size_nm=(10.0,) * 3, voxel_size_source="x"
    )
    result = segment.segment(vol, card, directions=3, median=3, threads=1)
    assert result.working_shape == (20, 40, 40)
    assert result.labels.shape == truth.shape
    assert (result.labels == truth).mean() > 0.98


def test_auto_directions_reslice_only_what_can_be_resliced(tmp_path):
    """auto = 3 for near-isotropic volumes, 1 for thick sections, thin stacks and XY-only models."""
    card = load_card(make_band_model(tmp_path, voxel_size_nm=20.0))
    vol = Volume(np.zeros((40, 64, 64), np.uint8), (20.0, 20.0, 20.0))
    assert segment.auto_directions(vol, card) == 3
    assert segment.auto_directions(Volume(vol.data, (30.0, 16.0, 16.0)), card) == 3
    assert segment.auto_directions(Volume(vol.data, (50.0, 5.0, 5.0)), card) == 1  # ssTEM
    assert segment.auto_directions(Volume(vol.data[:8], (20.0, 20.0, 20.0)), card) == 1
    card.raw["training"] = {"directions": 1}  # a model that only ever saw XY slices
    assert segment.auto_directions(vol, card) == 1
    assert segment.resolve_directions("auto", vol, card) == 1
    assert segment.resolve_directions(3, vol, card) == 3
    with pytest.raises(VemcellError, match="auto, 1 or 3"):
        segment.resolve_directions(2, vol, card)


def test_segment_reports_the_directions_it_used(band_card):
    img, _ = banded_volume((40, 64, 64))
    vol = Volume(img, (10.0, 10.0, 10.0))
    assert segment.segment(vol, band_card, median=0, threads=1).directions == 3
    thick = Volume(vol.data[15:21], (60.0, 10.0, 10.0))
    assert segment.segment(thick, band_card, median=0, threads=1).directions == 1


def test_confidence_is_the_chosen_class_probability_and_marks_unsure_voxels(tmp_path):
    from vemcell.cli.pseudolabel import pseudo_labels

    card = load_card(make_band_model(tmp_path, tile=64, k=20.0))
    img, truth = banded_volume((24, 48, 56))
    vol = Volume(img, (20.0, 20.0, 20.0))
    sure = segment.segment(vol, card, directions=3, median=0, confidence=True)
    plain = segment.segment(vol, card, directions=3, median=0)
    np.testing.assert_array_equal(sure.labels, plain.labels)
    assert plain.confidence is None and sure.confidence.dtype == np.uint8
    # the pointwise model's probability of the ball's class at intensity 0.9, as uint8
    expect = 1 / (1 + np.exp(-20 * 0.16) + np.exp(-20 * 0.64))
    assert abs(int(sure.confidence[truth == 2].min()) - 255 * expect) <= 3
    by_max = segment.segment(vol, card, directions=3, median=0, fuse="max", confidence=True)
    assert abs(int(by_max.confidence[truth == 2].min()) - 255 * expect) <= 3
    # with the median box the probabilities are averaged, so class boundaries become unsure
    boxed = segment.segment(vol, card, directions=3, median=3, confidence=True)
    labels = pseudo_labels(boxed.labels, boxed.confidence, 0.8)
    unsure = labels == 255
    assert 0 < unsure.mean() < 0.5
    edges = np.zeros_like(unsure)
    for ax in range(3):
        edges |= np.diff(truth, axis=ax, prepend=truth.take([0], axis=ax)) != 0
    assert ndimage.binary_dilation(edges, iterations=2)[unsure].all()
    np.testing.assert_array_equal(labels[~unsure], boxed.labels[~unsure])
    assert not (pseudo_labels(boxed.labels, boxed.confidence, 0.0) == 255).any()
    with pytest.raises(VemcellError, match="between 0 and 1"):
        pseudo_labels(boxed.labels, boxed.confidence, 70)


def test_small_pieces_go_to_the_class_around_them(band_card):
    labels = np.zeros((20, 30, 30), np.uint8)
    labels[2:18, 2:28, 2:15] = 1
    labels[5:15, 5:25, 18:28] = 2  # a large class-2 object, kept
    labels[8:10, 8:10, 8] = 2  # a 4-voxel speck inside class 1
    labels[17, 17, 17] = labels[18, 18, 18] = 2  # two voxels touching at a corner: one piece
    labels[0, 0, 0] = 1  # a class-1 speck in the background corner
    before = labels.copy()
    out, removed = segment.remove_small_pieces(labels, {2: 5, 1: 2}, band_card)
    np.testing.assert_array_equal(labels, before)  # the input is left alone
    assert (out[8:10, 8:10, 8] == 1).all()
    assert out[17, 17, 17] == 0 and out[18, 18, 18] == 0 and out[0, 0, 0] == 0
    assert (out[5:15, 5:25, 18:28] == 2).all() and (out[2:18, 2:28, 2:15] == 1).all()
    assert removed == {"class2": 2, "class1": 1}
    kept, removed = segment.remove_small_pieces(labels, {2: 2}, band_card)
    assert kept[17, 17, 17] == 2 and kept[8, 8, 8] == 2 and removed == {}
    assert segment.remove_small_pieces(labels, {}, band_card)[0] is labels


def test_segment_applies_the_cards_minimum_sizes_in_um3(tmp_path):
    card_path = make_band_model(tmp_path, tile=64, k=20.0, class_names=("bg", "cyto", "dot"))
    raw = json.loads(card_path.read_text())
    raw["min_size_um3"] = {"dot": 0.001}  # 125 voxels of 20 nm
    card_path.write_text(json.dumps(raw))
    card = load_card(card_path)
    assert card.min_size_um3 == {"dot": 0.001} and card.to_dict()["min_size_um3"]["dot"] == 0.001
    img, truth = banded_volume((24, 48, 56))
    img[2:5, 2:5, 2:5] = 0.9  # 27 voxels: a speck in the background
    img[10:13, 20:23, 20:23] = 0.9  # and one in class 1
    vol = Volume(img, (20.0, 20.0, 20.0))
    kept = segment.segment(vol, card, directions=1, median=0, min_size={}, confidence=True)
    assert (kept.labels[2:5, 2:5, 2:5] == 2).all() and kept.specks_removed == {}
    res = segment.segment(vol, card, directions=1, median=0, confidence=True)
    assert res.min_size_um3 == {"dot": 0.001} and res.specks_removed == {"dot": 2}
    assert (res.labels[2:5, 2:5, 2:5] == 0).all() and (res.labels[10:13, 20:23, 20:23] == 1).all()
    np.testing.assert_array_equal(res.labels[truth == 2], 2)  # the ball (7 k voxels) stays
    changed = res.labels != kept.labels
    assert changed.sum() == 54 and (res.confidence[changed] == 0).all()
    # on 10 nm voxels the same specks are 27 voxels of 0.001 µm³ / 8: smaller still
    fine = segment.segment(Volume(img, (10.0, 10.0, 10.0)), card, directions=1, median=0)
    assert fine.specks_removed == {"dot": 2}
    assert segment.min_size_voxels(card, {"dot": 0.001}, (10.0, 10.0, 10.0)) == {2: 1000}


def test_min_size_options_and_card_field_are_checked(tmp_path):
    card_path = make_band_model(tmp_path, class_names=("bg", "cyto", "dot"))
    card = load_card(card_path)
    assert segment.parse_min_size(None, card) is None
    assert segment.parse_min_size(["dot=0.002"], card) == {"dot": 0.002}
    assert segment.parse_min_size(["dot=0.002", "off"], card) == {}
    assert segment.parse_min_size(["off", "cyto=1e-3"], card) == {"cyto": 0.001}
    for bad, msg in [("dot", "CLASS=VOLUME"), ("dot=-1", "CLASS=VOLUME"), ("dot=x", "CLASS=")]:
        with pytest.raises(VemcellError, match=msg):
            segment.parse_min_size([bad], card)
    with pytest.raises(VemcellError, match="'nuc', which is not a class of model band"):
        segment.parse_min_size(["nuc=0.1"], card)
    raw = json.loads(card_path.read_text())
    for value, msg in [
        ({"nuc": 0.1}, "not one of the classes"),
        ({"dot": -0.1}, "volume ≥ 0"),
        ({"dot": "big"}, "volume ≥ 0"),
        ([0.1], "map class names"),
    ]:
        raw["min_size_um3"] = value
        card_path.write_text(json.dumps(raw))
        with pytest.raises(VemcellError, match=msg):
            load_card(card_path)


def test_providers_follow_the_environment(monkeypatch):
    both = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.delenv("VEMCELL_PROVIDERS", raising=False)
    assert segment.choose_providers(both) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert segment.choose_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    monkeypatch.setenv("VEMCELL_PROVIDERS", "cpu")
    assert segment.choose_providers(both) == ["CPUExecutionProvider"]
    monkeypatch.setenv("VEMCELL_PROVIDERS", "tensorrt,cuda")
    assert segment.choose_providers(both) == both
    assert segment.choose_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    monkeypatch.setenv("VEMCELL_PROVIDERS", "cuda,tpu")
    with pytest.raises(VemcellError, match="tpu"):
        segment.choose_providers(both)


def test_whole_slices_are_predicted_in_one_piece(band_card):
    """One slice per call and no overlapping tiles up to WHOLE_SLICE pixels (the fast way)."""
    seg = segment.Segmenter(band_card, threads=1)
    assert seg.batch_size == 1 and seg.tile == segment.WHOLE_SLICE
    calls = []
    run = seg._run
    seg._run = lambda x: calls.append(x.shape) or run(x)
    seg.predict_slices(np.random.default_rng(3).random((2, 300, 200), dtype=np.float32))
    assert calls == [(1, 1, 304, 208)] * 2


def test_precision_int8_where_the_card_ships_it_and_the_cpu_runs_it(band_card, tmp_path):
    from dataclasses import replace

    cpu, gpu = ["CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with_int8 = replace(band_card, int8_path=tmp_path / "m_int8.onnx")
    assert segment.choose_precision("auto", with_int8, cpu) == "int8"
    assert segment.choose_precision("auto", with_int8, gpu) == "fp32"
    assert segment.choose_precision("fp32", with_int8, cpu) == "fp32"
    assert segment.choose_precision("auto", band_card, cpu) == "fp32"
    with pytest.raises(VemcellError, match="no INT8 weights"):
        segment.choose_precision("int8", band_card, cpu)
    with pytest.raises(VemcellError, match="--precision"):
        segment.choose_precision("fp16", band_card, cpu)


def test_the_default_model_runs_its_int8_weights_on_cpus(monkeypatch):
    monkeypatch.setenv("VEMCELL_PROVIDERS", "cpu")
    card = resolve_model(None)
    assert card.int8_path is not None and card.int8_path.parent == card.onnx_path.parent
    assert segment.Segmenter(card, threads=1).precision == "int8"
    assert segment.Segmenter(card, threads=1, precision="fp32").precision == "fp32"


def test_piece_sizes_counts_slab_by_slab_like_bincount():
    from scipy import ndimage

    rng = np.random.default_rng(1)
    pieces, n = ndimage.label(rng.random((17, 12, 9)) > 0.6)
    expect = np.bincount(pieces.ravel(), minlength=n + 1)
    for chunk in (1, 100, 108, 10_000):  # under a slab, a slab, whole slabs, everything
        assert np.array_equal(segment.piece_sizes(pieces, n, chunk_voxels=chunk), expect)
