"""IoU (the paper's eq. 1), boundary offsets and label maps: no torch needed."""

from __future__ import annotations

import numpy as np
import pytest

from vemcell.errors import VemcellError
from vemcell.evaluation.metrics import (
    apply_label_map,
    boundary_offset,
    boundary_offset_sums,
    confusion_matrix,
    iou_per_class,
    iou_report,
    parse_label_map,
)


def _cube(shape=(20, 30, 40), lo=(5, 5, 5), side=10, value=1) -> np.ndarray:
    a = np.zeros(shape, np.uint8)
    z, y, x = lo
    a[z : z + side, y : y + side, x : x + side] = value
    return a


def test_perfect_prediction_scores_one() -> None:
    truth = _cube()
    truth[0, 0, :3] = 2
    iou = iou_per_class(truth, truth, 3)
    np.testing.assert_array_equal(iou, [1.0, 1.0, 1.0])
    assert iou_report(iou, ["bg", "a", "b"])["mean_iou"] == 1.0


def test_shifted_prediction_scores_overlap_over_union() -> None:
    side, d = 10, 3
    truth = _cube(side=side)
    pred = np.roll(truth, d, axis=2)
    iou = iou_per_class(pred, truth, 2)
    inter = side * side * (side - d)
    union = side * side * (side + d)
    assert iou[1] == pytest.approx(inter / union)
    n = truth.size
    bg_inter = n - side**3 - side * side * d  # background in both
    bg_union = n - inter
    assert iou[0] == pytest.approx(bg_inter / bg_union)


def test_absent_class_is_nan_and_left_out_of_the_mean() -> None:
    truth = _cube()
    iou = iou_per_class(truth, truth, 4)
    assert np.isnan(iou[2]) and np.isnan(iou[3])
    report = iou_report(iou, ["a", "b", "c", "d"])
    assert report["iou"]["c"] is None and report["mean_iou"] == 1.0


def test_missed_class_scores_zero() -> None:
    truth = _cube()
    pred = np.zeros_like(truth)
    assert iou_per_class(pred, truth, 2)[1] == 0.0


def test_confusion_ignores_value_and_checks_range() -> None:
    truth = np.array([0, 1, 255, 1])
    pred = np.array([0, 1, 1, 0])
    cm = confusion_matrix(pred, truth, 2, ignore=255)
    assert cm.tolist() == [[1, 0], [1, 1]]
    with pytest.raises(VemcellError, match="outside"):
        confusion_matrix(pred, np.array([0, 1, 7, 1]), 2, ignore=None)
    with pytest.raises(VemcellError, match="shape"):
        confusion_matrix(pred[:2], truth, 2)


def test_label_map_maps_instances_to_a_class() -> None:
    inst = np.array([[0, 5, 17], [300, 0, 5]], np.uint16)
    mapped = apply_label_map(inst, parse_label_map("0=0,*=1"), 2)
    assert mapped.dtype == np.uint8
    assert mapped.tolist() == [[0, 1, 1], [1, 0, 1]]
    assert apply_label_map(np.array([0, 1, 2]), parse_label_map("2=1,1=0"), 2).tolist() == [0, 0, 1]


@pytest.mark.parametrize("spec", ["0:1", "a=1", "1=x", "=2"])
def test_bad_label_map_is_one_sentence(spec: str) -> None:
    with pytest.raises(VemcellError, match="VALUE=CLASS"):
        parse_label_map(spec)


def test_labels_beyond_the_classes_need_a_map() -> None:
    with pytest.raises(VemcellError, match="--label-map"):
        apply_label_map(np.array([0, 1, 9]), None, 6)


def test_unlabelled_voxels_stay_255_and_a_binary_mask_needs_a_map() -> None:
    partial = np.array([0, 1, 255, 2, 255])
    assert apply_label_map(partial, None, 3).tolist() == [0, 1, 255, 2, 255]
    # a map leaves 255 alone unless it names it
    assert apply_label_map(partial, parse_label_map("2=1"), 3).tolist() == [0, 1, 255, 1, 255]
    for mask in (np.array([0, 255, 255]), np.array([255, 255])):
        with pytest.raises(VemcellError, match="255=1"):
            apply_label_map(mask, None, 2)
    assert apply_label_map(np.array([0, 255]), parse_label_map("255=1"), 2).tolist() == [0, 1]


def test_evaluation_leaves_unlabelled_voxels_out() -> None:
    truth = _cube()
    pred = np.roll(truth, 3, axis=2)
    partial = truth.copy()
    partial[:, :, 20:] = 255  # only the left half was labelled
    full = iou_per_class(pred[:, :, :20], truth[:, :, :20], 2)
    np.testing.assert_allclose(iou_per_class(pred, partial, 2), full)


def _ball(radius: float, shape=(40, 64, 64), centre=(20, 32, 32)) -> np.ndarray:
    z, y, x = np.indices(shape)
    c = centre
    return (((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) <= radius**2).astype(np.uint8)


def test_boundary_offset_measures_how_much_wider_the_prediction_is() -> None:
    truth = _ball(12)
    assert boundary_offset(truth, truth, 1, (10, 10, 10)) == 0.0
    radius = lambda ball: (3 * ball.sum() / (4 * np.pi)) ** (1 / 3)  # noqa: E731
    for grow in (1.5, -1.5, 3.0):  # radius 1.5 or 3 voxels of 10 nm larger (or smaller)
        pred = _ball(12 + grow)
        got = boundary_offset(pred, truth, 1, (10, 10, 10))
        # within a third of a voxel of the digital balls' difference in radius
        assert got == pytest.approx(10 * (radius(pred) - radius(truth)), abs=3.3), grow
        # the other class sees the same outline from outside: the opposite sign
        assert boundary_offset(pred, truth, 0, (10, 10, 10)) == pytest.approx(-got, abs=1.0)
    # a whole extra object far from any labelled one is not an offset of the outline
    pred = _ball(13.5)
    pred[2:6, 2:6, 2:6] = 1
    assert boundary_offset(pred, truth, 1, (10, 10, 10)) == pytest.approx(
        boundary_offset(_ball(13.5), truth, 1, (10, 10, 10))
    )


def test_boundary_offset_within_serial_sections_and_unlabelled_voxels() -> None:
    truth = _ball(12)
    wider = _ball(14)
    # 50 nm sections of 5 nm pixels: measured in the plane, so 2 pixels = 10 nm (not 3D)
    flat = boundary_offset(
        np.repeat(wider[20:21], 3, 0), np.repeat(truth[20:21], 3, 0), 1, (50, 5, 5)
    )
    assert flat == pytest.approx(10.0, abs=1.5)
    # voxels nobody labelled are left out: labelling the outer rim 255 hides the offset there
    hidden = truth.copy()
    hidden[(wider == 1) & (truth == 0)] = 255
    assert abs(boundary_offset(wider, hidden, 1, (10, 10, 10))) < abs(
        boundary_offset(wider, truth, 1, (10, 10, 10))
    )
    assert np.isnan(boundary_offset(truth, truth, 2, (10, 10, 10)))  # class in neither
    assert np.isnan(boundary_offset(np.zeros_like(truth), truth, 1, (10, 10, 10)))
    with pytest.raises(VemcellError, match="3D shape"):
        boundary_offset(truth[0], truth[0], 1, (10, 10, 10))


def test_boundary_offset_in_slabs_equals_the_whole_volume() -> None:
    """Large volumes are measured slab by slab (bounded memory) with the same result."""
    truth = _ball(12) + _ball(5, centre=(8, 12, 50))
    pred = np.roll(_ball(13), 2, axis=0) + _ball(4, centre=(9, 12, 50))
    for cls in (0, 1):
        whole = boundary_offset_sums(pred, truth, cls, (10, 10, 10))
        slabs = boundary_offset_sums(pred, truth, cls, (10, 10, 10), slab_voxels=64 * 64 * 3)
        assert whole.shape == slabs.shape == (1, 2)
        np.testing.assert_allclose(slabs, whole)
    # serial sections: one (sum, count) per section
    assert boundary_offset_sums(pred, truth, 1, (50, 5, 5)).shape == (40, 2)
