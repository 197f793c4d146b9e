"""Sparse sections: the restore contract, the methods, the shape route, sparse-eval, video and
the one-sentence errors."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from tiny_models import make_band_model
from vemcell import sparse
from vemcell.cli.main import main
from vemcell.errors import VemcellError
from vemcell.io.volumes import read_tiff_info, read_volume, write_tiff


def _blobs(n: int = 9, size: int = 48, shift: float = 1.5, seed: int = 0) -> np.ndarray:
    """A textured stack whose blobs drift ``shift`` pixels per section (uint8)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(10, size - 10, (6, 2))
    radii = rng.uniform(4, 8, 6)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((n, size, size), np.uint8)
    for z in range(n):
        img = np.full((size, size), 60.0, np.float32)
        for (cy, cx), r in zip(centres, radii, strict=True):
            d = np.hypot(yy - cy, xx - (cx + shift * z))
            img += 140.0 / (1.0 + np.exp(np.minimum((d - r) * 1.5, 50.0)))
        out[z] = np.clip(img, 0, 255).astype(np.uint8)
    return out


# --- the contract ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", sparse.METHODS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_restored_stack_keeps_the_kept_sections_and_dtype(method, dtype, factor):
    kept = (_blobs(4, 32).astype(np.float32) * (200.0 if dtype == np.uint16 else 1.0)).astype(dtype)
    out = sparse.reconstruct(kept, factor, method)
    assert out.shape == ((4 - 1) * factor + 1, 32, 32)
    assert out.dtype == kept.dtype
    assert np.array_equal(out[::factor], kept)  # bit for bit
    lo, hi = kept.min(), kept.max()
    assert out.min() >= lo - 1 and out.max() <= hi + 1  # nothing invented outside the range


def test_restore_volume_divides_the_z_step():
    from vemcell.io.volumes import Volume

    vol = Volume(data=_blobs(3, 32), voxel_size_nm=(60.0, 5.0, 5.0), path="s.tif")
    full = sparse.restore_volume(vol, 3, "linear")
    assert full.shape == (7, 32, 32) and full.voxel_size_nm == (20.0, 5.0, 5.0)
    assert np.array_equal(full.data[::3], vol.data) and full.path == "s.tif"


def test_linear_is_the_distance_weighted_average():
    a = np.zeros((8, 8), np.float32)
    b = np.full((8, 8), 100.0, np.float32)
    out = sparse.reconstruct(np.stack([a, b]), 4, "linear")
    assert np.allclose(out[:, 0, 0], [0, 25, 50, 75, 100])


def test_cli_writes_z_step_over_k_and_the_method(tmp_path):
    src = tmp_path / "sparse.tif"
    write_tiff(src, _blobs(5, 32), (100.0, 5.0, 5.0))
    out = tmp_path / "full.tif"
    assert (
        main(["reconstruct", str(src), "--out", str(out), "--factor", "4", "--progress", "none"])
        == 0
    )
    vol = read_volume(out)
    assert vol.shape == (17, 32, 32) and vol.dtype == np.uint8
    assert vol.voxel_size_nm == pytest.approx((25.0, 5.0, 5.0))
    assert np.array_equal(vol.array()[::4], read_volume(src).array())
    info = read_tiff_info(out)
    from vemcell.sparse.learned import default_method

    assert info["factor"] == 4 and info["method"] == default_method((100.0, 5.0, 5.0), 4)
    assert not list(tmp_path.glob(".*partial"))  # written through a temporary name


def test_cli_json_progress_reaches_done(tmp_path, capsys):
    src = tmp_path / "sparse.tif"
    write_tiff(src, _blobs(3, 32), (50.0, 5.0, 5.0))
    args = ["reconstruct", str(src), "--out", str(tmp_path / "f.tif"), "--factor", "2"]
    assert main([*args, "--progress", "json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"read", "reconstruct", "write"} <= {r["stage"] for r in lines}
    assert lines[-1]["fraction"] == 1.0


# --- the methods ----------------------------------------------------------------------------


def test_flow_recovers_a_moving_edge_better_than_linear():
    full = _blobs(9, 48, shift=2.0)
    for k in (2, 4):
        kept = full[::k]
        dropped = np.arange(full.shape[0]) % k != 0
        err = {
            m: np.abs(sparse.reconstruct(kept, k, m)[dropped].astype(float) - full[dropped]).mean()
            for m in ("nearest", "linear", "flow")
        }
        assert err["flow"] < 0.5 * err["linear"], err
        assert err["flow"] < 0.5 * err["nearest"], err


@pytest.mark.parametrize("method", ["flow", "learned"])
def test_sections_too_small_for_optical_flow_blend_linearly(method):
    kept = (np.random.default_rng(0).random((3, 3, 5)) * 255).astype(np.uint8)
    out = sparse.reconstruct(kept, 2, method, voxel_size_nm=(40.0, 20.0, 20.0))
    assert out.shape == (5, 3, 5) and np.array_equal(out[::2], kept)
    if method == "flow":
        assert np.abs(out.astype(int) - sparse.reconstruct(kept, 2, "linear")).max() <= 1


def test_flow_on_still_sections_changes_nothing():
    a = _blobs(1, 32)[0]
    out = sparse.reconstruct(np.stack([a, a]), 4, "flow")
    assert np.abs(out.astype(int) - a).max() <= 1


# --- the shape route ------------------------------------------------------------------------


def _disc(r: float, size: int = 64, cx: float = 32.0) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return (np.hypot(yy - 32, xx - cx) < r).astype(np.uint8)


def test_shape_route_two_discs_give_the_intermediate_radius():
    kept = np.stack([_disc(10), _disc(20)])
    out = sparse.shape_interpolate(kept, 4, 2)
    assert out.shape == (5, 64, 64) and out.dtype == kept.dtype
    assert np.array_equal(out[0], kept[0]) and np.array_equal(out[4], kept[1])
    radii = [np.sqrt(s.sum() / np.pi) for s in out]
    for j, r in enumerate(radii):
        assert r == pytest.approx(10 + 10 * j / 4, abs=0.75)


def test_shape_route_moves_a_disc_and_lets_a_lone_one_vanish():
    # overlapping discs: the in-between one sits half-way (signed distances only blend, so a
    # shape that moves further than its own size between kept sections vanishes half-way)
    moving = sparse.shape_interpolate(np.stack([_disc(8, cx=28), _disc(8, cx=36)]), 2, 2)
    _, xs = np.nonzero(moving[1])
    assert xs.mean() == pytest.approx(32, abs=0.5) and np.sqrt(len(xs) / np.pi) > 5
    lone = sparse.shape_interpolate(np.stack([_disc(10), np.zeros((64, 64), np.uint8)]), 4, 2)
    areas = [int(s.sum()) for s in lone]
    assert areas[0] > areas[1] > areas[2] >= areas[3] == 0 == areas[4]


def test_shape_route_along_the_flow_follows_moving_shapes():
    full = _blobs(9, 64, shift=3.0)  # blobs drift 12 pixels between kept sections
    truth = (full > 130).astype(np.uint8)
    dropped = np.arange(9) % 4 != 0

    def iou(pred):
        p, t = pred[dropped] == 1, truth[dropped] == 1
        return (p & t).sum() / (p | t).sum()

    plain = sparse.shape_interpolate(truth[::4], 4, 2)
    moved = sparse.shape_interpolate(truth[::4], 4, 2, images=full[::4])
    assert np.array_equal(moved[::4], truth[::4])
    assert iou(moved) > 0.85 and iou(moved) > iou(plain) + 0.15


def test_shape_route_keeps_several_classes_apart():
    kept = np.zeros((2, 64, 64), np.uint8)
    kept[:, 10:30, 10:30] = 1
    kept[:, 34:54, 34:54] = 2
    out = sparse.shape_interpolate(kept, 3)
    for z in range(out.shape[0]):
        assert np.array_equal(out[z], kept[0])


# --- routes and sparse-eval with a tiny model -----------------------------------------------


def _band_stack(n: int = 9, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Float image at the band model's centres and its exact labels (a drifting sphere)."""
    zz, yy, xx = np.mgrid[0:n, 0:size, 0:size]
    labels = np.zeros((n, size, size), np.uint8)
    labels[np.hypot(yy - 16, xx - 10 - 1.0 * zz) < 7] = 1
    labels[np.hypot(yy - 8, xx - 24) < 4] = 2
    centres = np.array([0.1, 0.5, 0.9], np.float32)
    return centres[labels], labels


def test_image_and_shape_routes_give_full_resolution_labels(tmp_path):
    from vemcell.cards.card import load_card
    from vemcell.io.volumes import Volume
    from vemcell.sparse.route import image_route, shape_route

    card = load_card(make_band_model(tmp_path, tile=32, voxel_size_nm=10.0))
    image, labels = _band_stack()
    vol = Volume(data=image[::2], voxel_size_nm=(20.0, 10.0, 10.0))
    full, res = image_route(vol, card, 2, "linear", median=0, min_size={})
    assert full.shape == image.shape and res.labels.shape == image.shape
    shapes, res1 = shape_route(vol, card, 2, median=0, min_size={})
    assert shapes.shape == image.shape and res1.directions == 1
    assert np.array_equal(shapes[::2], labels[::2])
    assert (shapes == labels).mean() > 0.97


def test_sparse_eval_writes_its_json_and_chart(tmp_path, capsys):
    card = make_band_model(tmp_path / "m", tile=32, voxel_size_nm=10.0)
    image, labels = _band_stack()
    write_tiff(tmp_path / "image.tif", image, (10.0, 10.0, 10.0))
    write_tiff(tmp_path / "labels.tif", labels, (10.0, 10.0, 10.0))
    out = tmp_path / "eval.json"
    args = ["sparse-eval", str(tmp_path / "image.tif"), "--labels", str(tmp_path / "labels.tif")]
    args += ["--model", str(card), "--factors", "2", "4", "--methods", "linear", "flow"]
    args += ["--json", str(out), "--chart", str(tmp_path / "eval.png"), "--progress", "none"]
    assert main(args) == 0
    rep = json.loads(out.read_text())
    assert rep["format"] == "vemcell-sparse-eval/1"
    assert set(rep["factors"]) == {"2", "4"}
    f4 = rep["factors"]["4"]
    assert f4["dropped_sections"] == 6 and f4["kept_sections"] == 3
    rows = {(r["route"], r["method"]): r for r in f4["rows"]}
    assert set(rows) == {
        ("image", "nearest"),
        ("image", "linear"),
        ("image", "flow"),
        ("shape", "signed-distance"),
        ("shape", "signed-distance+flow"),
    }
    assert set(rows["image", "flow"]["by_distance"]) == {"1", "2"}
    for r in rows.values():
        assert set(r["iou_vs_labels"]) == {"class0", "class1", "class2"}
        assert r["seconds_restore"] >= 0
    assert rows["shape", "signed-distance"]["iou_vs_labels"]["class1"] > 0.8
    assert f4["real_sections"]["iou_vs_labels"]["class1"] > 0.95
    assert (tmp_path / "eval.png").stat().st_size > 1000
    assert "| 4 | image | flow |" in capsys.readouterr().out


# --- video ----------------------------------------------------------------------------------


def test_video_writes_the_frames_asked_for(tmp_path):
    import cv2

    card = make_band_model(tmp_path / "m", tile=32)
    image, labels = _band_stack()
    write_tiff(tmp_path / "image.tif", (image * 255).astype(np.uint8), (20.0, 10.0, 10.0))
    write_tiff(tmp_path / "labels.tif", labels, (20.0, 10.0, 10.0))
    out = tmp_path / "movie.mp4"
    args = ["video", str(tmp_path / "image.tif"), "--out", str(out), "--frames", "12"]
    args += ["--overlay", "--labels", str(tmp_path / "labels.tif"), "--model", str(card)]
    assert main([*args, "--sparse", "2", "--progress", "none"]) == 0
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    ok, frame = cap.read()
    assert ok and frame.shape == (512, 512, 3)
    cap.release()
    assert not list(tmp_path.glob(".*partial*"))


# --- errors: one sentence, exit 2 -----------------------------------------------------------


def _one_line_error(capsys, argv: list[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "internal error" not in err
    return err


@pytest.mark.parametrize("factor", ["1", "0", "-2", "1.5", "two", "inf"])
def test_bad_factor_is_one_sentence(tmp_path, capsys, factor):
    src = tmp_path / "s.tif"
    write_tiff(src, _blobs(3, 32), (50.0, 5.0, 5.0))
    err = _one_line_error(
        capsys, ["reconstruct", str(src), "--out", str(tmp_path / "o.tif"), "--factor", factor]
    )
    assert "factor" in err


def test_fewer_than_two_sections(tmp_path, capsys):
    zarr = pytest.importorskip("zarr")
    store = tmp_path / "one.zarr"
    z = zarr.open(str(store), mode="w", shape=(1, 16, 16), dtype="u1")
    z[:] = 7
    err = _one_line_error(
        capsys, ["reconstruct", str(store), "--out", str(tmp_path / "o.tif"), "--factor", "2"]
    )
    assert "at least 2" in err
    with pytest.raises(VemcellError, match="at least 2"):
        sparse.reconstruct(np.zeros((1, 4, 4), np.uint8), 2)


def test_result_larger_than_memory(tmp_path, capsys, monkeypatch):
    import psutil

    src = tmp_path / "s.tif"
    write_tiff(src, _blobs(3, 64), (50.0, 5.0, 5.0))
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=100_000))
    err = _one_line_error(
        capsys, ["reconstruct", str(src), "--out", str(tmp_path / "o.tif"), "--factor", "8"]
    )
    assert "memory" in err
    assert not (tmp_path / "o.tif").exists()


def test_sections_already_finer_than_the_pixels(tmp_path, capsys):
    src = tmp_path / "s.tif"
    write_tiff(src, _blobs(3, 32), (2.0, 5.0, 5.0))
    err = _one_line_error(
        capsys, ["reconstruct", str(src), "--out", str(tmp_path / "o.tif"), "--factor", "2"]
    )
    assert "finer than" in err
    err = _one_line_error(
        capsys, ["video", str(src), "--out", str(tmp_path / "o.mp4"), "--sparse", "2"]
    )
    assert "finer than" in err


def test_other_errors_are_one_sentence(tmp_path, capsys):
    src = tmp_path / "s.tif"
    write_tiff(src, _blobs(5, 32), (50.0, 5.0, 5.0))
    _one_line_error(capsys, ["video", str(src), "--out", str(tmp_path / "o.mp4"), "--overlay"])
    _one_line_error(capsys, ["video", str(src), "--out", str(tmp_path / "o.avi")])
    _one_line_error(capsys, ["video", str(src), "--out", str(tmp_path / "o.mp4"), "--frames", "x"])
    _one_line_error(capsys, ["sparse-eval", str(src), "--factors", "4"])  # too few sections
    _one_line_error(capsys, ["sparse-eval", str(src), "--factors", "2", "--crop", "0:9"])


# --- the learned method ---------------------------------------------------------------------


def _channel_model(folder, weights=(0.0, 0.0, 0.0, 0.0)):
    """A restoration ONNX whose residual is a fixed mix of its four input channels."""
    from onnx import TensorProto, helper, numpy_helper, save

    w = numpy_helper.from_array(np.array(weights, np.float32).reshape(1, 4, 1, 1), "W")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W"], ["residual"])],
        "mix",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, "H", "W"])],
        [helper.make_tensor_value_info("residual", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    save(model, folder / "z.onnx")
    (folder / "z.json").write_text(json.dumps({"format": "vemcell-zinterp/1", "divisor": 8}))
    return folder / "z.onnx"


def test_learned_method_adds_its_residual_to_the_flow_blend(tmp_path, monkeypatch):
    from vemcell.sparse import learned
    from vemcell.sparse.flow import robust_range

    kept = _blobs(4, 40, shift=2.0)
    zero = _channel_model(tmp_path / "zero")
    out = sparse.reconstruct(kept, 3, "learned", model=str(zero))
    flow = sparse.reconstruct(kept, 3, "flow")
    assert out.shape == flow.shape and out.dtype == kept.dtype
    assert np.array_equal(out[::3], kept)
    assert np.abs(out.astype(int) - flow).max() <= 1  # residual 0: the flow blend
    # residual = t (the fourth channel), in tiles far smaller than the section
    monkeypatch.setattr(learned, "TILE", 16)
    monkeypatch.setattr(learned, "MARGIN", 4)
    depth = _channel_model(tmp_path / "depth", (0.0, 0.0, 0.0, 1.0))
    lo, hi = robust_range(kept)
    fl = sparse.reconstruct(kept.astype(np.float32), 3, "flow")
    got = sparse.reconstruct(kept.astype(np.float32), 3, "learned", model=str(depth))
    for j in (1, 2):
        assert np.allclose(got[j::3], fl[j::3] + j / 3 * (hi - lo), atol=1e-3)


def test_learned_method_errors_are_one_sentence(tmp_path):
    kept = _blobs(3, 24)
    with pytest.raises(VemcellError, match="No section-restoration model named 'nope'"):
        sparse.reconstruct(kept, 2, "learned", model="nope")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    (tmp_path / "bad.json").write_text(json.dumps({"format": "vemcell-zinterp/1"}))
    with pytest.raises(VemcellError, match="not a readable ONNX model"):
        sparse.reconstruct(kept, 2, "learned", model=str(tmp_path / "bad.onnx"))
    (tmp_path / "bad.json").write_text(json.dumps({"format": "vemcell-model-card/1"}))
    with pytest.raises(VemcellError, match="not a section-restoration card"):
        sparse.reconstruct(kept, 2, "learned", model=str(tmp_path / "bad.onnx"))


def test_shipped_restoration_model_has_a_card_and_restores_motion():
    from vemcell.cards.card import list_models
    from vemcell.sparse.learned import find_model

    onnx_path, card = find_model(None)
    assert onnx_path.stat().st_size < 30e6
    for key in ("trained_on", "training", "validation", "licence", "factors"):
        assert card.get(key), key
    assert not {"zinterp_fib", "zinterp_sstem"} & {c.name for c in list_models()}
    assert card["judges"] == ["cmerolae6"] and card["default"] is True
    # a synthetic C. merolae stack like its training data (another seed), every 4th section:
    # what its judge makes of the restored sections, against the labels
    from vemcell.cards.card import resolve_model
    from vemcell.sparse.evaluate import sparse_eval
    from vemcell.synth.generator import generate

    synth = generate((41, 128, 128), seed=5)
    rep = sparse_eval(
        synth.image, (20.0, 20.0, 20.0), resolve_model("cmerolae6"), [4], ["linear", "learned"],
        synth.labels, shape_route=False, directions=1, segment_options={"precision": "fp32"},
    )  # fmt: skip
    iou = {r["method"]: r["mean_iou_vs_labels"] for r in rep["factors"]["4"]["rows"]}
    assert iou["learned"] > iou["linear"], iou


def test_learned_training_pretrains_adapts_and_exports(tmp_path, capsys):
    pytest.importorskip("torch")
    from vemcell_train import zinterp

    full = _blobs(14, 48, shift=1.5)
    write_tiff(tmp_path / "full.tif", full, (20.0, 20.0, 20.0))
    stack = zinterp.load_stack(str(tmp_path / "full.tif"), (2, 4), None, 32)
    samples = zinterp.build_samples(stack, (0, 14))
    assert len(samples) == 12 * 1 + 10 * 3  # gap 2: one between, gap 4: three
    x, z = samples[0]
    assert x.shape == (4, 48, 48) and z == 1 and np.allclose(x[3], 0.5)
    rng = np.random.default_rng(0)
    xb, tb, jb = zinterp._crop_batch(stack, samples, [0, 5], rng, 45, augment=True)
    assert xb.shape == (2, 4, 40, 40) and tb.shape == (2, 1, 40, 40) and jb is None  # 8 | 40
    out = tmp_path / "m.onnx"
    args = ["--steps", "4", "--batch", "2", "--crop", "32", "--threads", "1"]
    spec = f"{tmp_path / 'full.tif'}:2,4"
    assert zinterp.main(["pretrain", "--stack", spec, "--out", str(out), *args]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["format"] == "vemcell-zinterp/1" and card["training"]["steps"] == 4
    restored = sparse.reconstruct(full[::2], 2, "learned", model=str(out))
    assert np.array_equal(restored[::2], full[::2])
    adapted = tmp_path / "a.onnx"
    a_args = ["adapt", str(tmp_path / "full.tif"), "--keep-every", "2", "--init", str(out)]
    assert zinterp.main([*a_args, "--out", str(adapted), *args]) == 1  # 7 sections: too few
    assert "too few to learn" in capsys.readouterr().err
    assert not adapted.exists()
    a_args += ["--val-sections", "2", "--val-at", "end"]
    assert zinterp.main([*a_args, "--out", str(adapted), *args]) == 0
    assert json.loads(adapted.with_suffix(".json").read_text())["adapted_from"]
    assert sparse.reconstruct(full[::2], 2, "learned", model=str(adapted)).shape == (13, 48, 48)


def test_learned_training_judge_is_the_shipped_segmentation_model():
    pytest.importorskip("torch")
    import torch

    from vemcell.cards.card import resolve_model
    from vemcell_train.zinterp import SegmentationJudge

    card = resolve_model("cmerolae6")
    judge = SegmentationJudge("cmerolae6", 20.0, 10.0, 250.0)
    img = _blobs(1, 64)[0]
    x = torch.from_numpy(((img.astype(np.float32) - 10.0) / 240.0)[None, None])
    import onnxruntime as ort

    sess = ort.InferenceSession(str(card.onnx_path))
    ref = sess.run(None, {sess.get_inputs()[0].name: (img / 255.0).astype(np.float32)[None, None]})[
        0
    ]
    with torch.no_grad():
        got = torch.softmax(judge.logits(x), 1).numpy()
    assert np.abs(got - ref).max() < 1e-3


def test_learned_model_card_records_sparse_eval_and_wins_default_only_by_measurement(
    tmp_path, monkeypatch
):
    pytest.importorskip("torch")
    from vemcell.sparse.learned import default_method
    from vemcell_train.zinterp import record

    model = _channel_model(tmp_path / "m")
    model = model.rename(model.with_name("zinterp_fib.onnx"))
    model.with_name("z.json").write_text(
        json.dumps({"format": "vemcell-zinterp/1", "divisor": 8, "judges": ["seg1"]})
    )
    model.with_name("z.json").rename(model.with_suffix(".json"))
    monkeypatch.setenv("VEMCELL_MODELS", str(model.parent))

    def report(name, learned, flow, linear=0.1):
        rows = [
            {"route": "image", "method": m, "mean_iou_vs_labels": v, "iou_vs_labels": {"a": v}}
            for m, v in (("linear", linear), ("flow", flow), ("learned", learned))
        ]
        rows[-1]["model"] = str(model)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"name": name, "factors": {"2": {"rows": rows}}}))
        return str(path)

    card = record(str(model), [report("a", 0.6, 0.5), report("b", 0.56, 0.55)])
    gain = card["validation"]["mean_iou_gain_per_stack"]
    assert gain == {"flow": {"a": 0.1, "b": 0.01}, "linear": {"a": 0.5, "b": 0.46}}
    assert card["default"] is True and card["validation"]["sparse_eval"][1]["flow"]["a"] == 0.55
    assert default_method((40.0, 20.0, 20.0), 2, "seg1") == "learned"  # it won, for seg1
    assert default_method((40.0, 20.0, 20.0), 2, "other") == "flow"  # not trained for it
    assert default_method((40.0, 20.0, 20.0), 2) == "flow"  # no segmentation named
    kept = _blobs(3, 24)
    assert np.array_equal(
        sparse.reconstruct(kept, 2, "auto", voxel_size_nm=(40.0, 20.0, 20.0)),
        sparse.reconstruct(kept, 2, "flow"),
    )
    card = record(str(model), [report("a", 0.7, 0.5), report("b", 0.5, 0.6)])  # loses on b
    assert card["default"] is False
    card = record(str(model), [report("a", 0.7, 0.5), report("b", 0.599, 0.6)])  # a tie on b
    assert card["default"] is True
    card = record(str(model), [report("a", 0.7, 0.5), report("b", 0.597, 0.6)])
    assert card["default"] is False
    assert json.loads(model.with_suffix(".json").read_text())["default"] is False
    assert default_method((40.0, 20.0, 20.0), 2, "seg1") == "flow"  # it lost: flow
