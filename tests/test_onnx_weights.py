"""Recovering trainable weights from an ONNX model; options for rare classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from vemcell.errors import VemcellError  # noqa: E402
from vemcell_train.data import SliceSampler, VolumePair  # noqa: E402
from vemcell_train.losses import TverskyLoss  # noqa: E402
from vemcell_train.model import AttentionUNet  # noqa: E402
from vemcell_train.onnx_export import export_onnx  # noqa: E402
from vemcell_train.onnx_weights import (  # noqa: E402
    calibration_slices,
    checkpoint_from_onnx,
    main,
    recover_network,
)
from vemcell_train.train import load_checkpoint  # noqa: E402

ARCH = {"n_classes": 3, "base": 4, "depth": 2, "dropout": 0.1, "in_channels": 1}


def _trained_looking_net() -> AttentionUNet:
    """A tiny network whose batch norms are far from identity (so folding changes weights)."""
    torch.manual_seed(0)
    net = AttentionUNet(**ARCH)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
    return net.eval()


def test_weights_recovered_from_onnx_give_the_same_outputs(tmp_path: Path) -> None:
    net = _trained_looking_net()
    path = export_onnx(net, tmp_path / "tiny.onnx", example_size=32)
    rng = np.random.default_rng(0)
    calib = rng.random((6, 32, 48), dtype=np.float32)
    back = recover_network(path, ARCH, calib)
    x = torch.from_numpy(rng.random((2, 1, 48, 64), dtype=np.float32))
    with torch.no_grad():
        torch.testing.assert_close(back(x), net(x), rtol=1e-4, atol=1e-4)
    # batch norms now hold the statistics of their inputs, so training mode is close too
    bn = back.down[0][1]
    with torch.no_grad():
        z = back.down[0][0](torch.from_numpy(calib[:, None]))
    torch.testing.assert_close(bn.running_mean, z.mean((0, 2, 3)), rtol=1e-3, atol=1e-4)
    with pytest.raises(VemcellError, match=r"shape|convolutions"):
        recover_network(path, {**ARCH, "base": 8})

    # as a checkpoint that --init accepts, with the card next to the ONNX file
    card = {"name": "tiny", "classes": [{"name": n} for n in ("bg", "a", "b")]}
    card.update({"onnx": "tiny.onnx", "architecture": ARCH, "format": "vemcell-model-card/1"})
    path.with_suffix(".json").write_text(json.dumps(card), encoding="utf-8")
    ckpt = checkpoint_from_onnx(path, tmp_path / "tiny.pt")
    assert ckpt["max_abs_diff"] < 1e-4
    assert load_checkpoint(tmp_path / "tiny.pt")["arch"] == ARCH


def test_a_network_with_slice_context_is_recovered_too(tmp_path: Path) -> None:
    arch = {**ARCH, "in_channels": 3}
    torch.manual_seed(2)
    net = AttentionUNet(**arch).eval()
    path = export_onnx(net, tmp_path / "ctx.onnx", example_size=32)
    card = {"name": "ctx", "classes": [{"name": n} for n in ("bg", "a", "b")]}
    card.update({"onnx": "ctx.onnx", "architecture": arch, "format": "vemcell-model-card/1"})
    path.with_suffix(".json").write_text(json.dumps(card), encoding="utf-8")
    calib = np.random.default_rng(1).random((4, 3, 32, 32), dtype=np.float32)
    for c in (None, calib):  # noise or slice stacks for the batch-norm statistics
        ckpt = checkpoint_from_onnx(path, tmp_path / "ctx.pt", c)
        assert ckpt["max_abs_diff"] < 1e-4 and ckpt["arch"]["in_channels"] == 3


def test_batch_norm_statistics_from_a_volume_of_the_models_own_data(tmp_path: Path, capsys) -> None:
    """--calibrate VOLUME: XY slices prepared as the card says, with the model's context."""
    from vemcell.io.volumes import write_tiff

    arch = {**ARCH, "in_channels": 3}
    torch.manual_seed(3)
    path = export_onnx(AttentionUNet(**arch).eval(), tmp_path / "ctx.onnx", example_size=32)
    card = {"name": "ctx", "classes": [{"name": n} for n in ("bg", "a", "b")]}
    card.update({"onnx": "ctx.onnx", "architecture": arch, "format": "vemcell-model-card/1"})
    card.update({"voxel_size_nm": 20.0, "input": {"tile": 32, "divisor": 4}})
    card["input"]["normalisation"] = {"method": "scale"}
    path.with_suffix(".json").write_text(json.dumps(card), encoding="utf-8")
    vol = np.zeros((12, 50, 70), np.uint8)
    vol[:, 10:40, 20:60] = 200
    vol[5] = 255  # one bright section: its neighbours carry it as context
    write_tiff(tmp_path / "vol.tif", vol, (40.0, 10.0, 10.0))  # resampled to 20 nm in the plane
    calib = calibration_slices(path, tmp_path / "vol.tif")
    assert calib.shape == (8, 3, 24, 24)  # 25 × 35 pixels at 20 nm: a centre tile of 24²
    assert calib.max() == pytest.approx(1.0) and calib.min() == 0.0
    # sections 0, 1, 3, 4, 6, 7, 9, 11: section 4 (the 4th) has the bright one after it
    assert calib[3, 2].min() == pytest.approx(1.0) and calib[3, 1].max() < 1.0
    out = tmp_path / "ctx.pt"
    assert main([str(path), str(out), "--calibrate", str(tmp_path / "vol.tif")]) == 0
    assert load_checkpoint(out)["arch"]["in_channels"] == 3
    capsys.readouterr()
    assert main([str(path), str(out), "--calibrate", str(tmp_path / "none.tif")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


def test_class_draw_and_cross_entropy_class_weights() -> None:
    labels = np.zeros((16, 40, 40), np.uint8)
    labels[:, 5:15, 5:15] = 1
    labels[8, 30, 30] = 2  # a single voxel of a rare class
    v = VolumePair(np.zeros(labels.shape, np.float32), labels, "v")
    rng = np.random.default_rng(0)
    only_rare = SliceSampler([v], 16, 1, 1.0, 3, class_weights=[0, 0, 1])
    assert all((lab == 2).any() for lab in only_rare.batch(rng, 10)[1])
    with pytest.raises(VemcellError, match="3 non-negative"):
        SliceSampler([v], 16, 1, 1.0, 3, class_weights=[1, 1])
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0, 0] = 1
    logits = torch.zeros(1, 2, 4, 4)
    logits[:, 0] = 2.0  # every pixel called class 0: the rare class-1 pixel is the costly miss
    plain = TverskyLoss(ce_weight=1.0)(logits, target)
    weighted = TverskyLoss(ce_weight=1.0, ce_class_weights=[1.0, 10.0])(logits, target)
    assert weighted > plain + 0.5


def test_class_offsets_are_tuned_on_fused_directions_and_folded_into_the_bias() -> None:
    from vemcell_train.class_bias import apply_offsets, direction_logits, tune_offsets

    torch.manual_seed(0)
    net = AttentionUNet(**ARCH).eval()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (16, 32, 32)).astype(np.uint8)
    v = VolumePair(rng.random(labels.shape, dtype=np.float32), labels, "v")
    zs = np.array([3, 9])
    lg = direction_logits(net, v, zs)
    assert lg.shape == (3, 3, 2, 32, 32)
    with torch.no_grad():  # the XY pass at z = 9 is the network on that slice
        ref = net(torch.from_numpy(v.image[9])[None, None])[0].numpy()
    np.testing.assert_allclose(lg[0, :, 1], ref, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # the XZ pass, read back at z = 3, y = 5
        xz = net(torch.from_numpy(v.image[:, 5].copy())[None, None])[0].numpy()
    np.testing.assert_allclose(lg[1, :, 0, 5], xz[:, 3], rtol=1e-4, atol=1e-5)
    offsets, iou = tune_offsets([(lg, labels[zs])], 3, [2], grid=(0.0, 1.0, 5.0))
    assert set(offsets) == {2} and np.nanmean(iou["after"]) >= np.nanmean(iou["before"])
    state = apply_offsets(net.state_dict(), {2: 1.5})
    assert float(state["head.bias"][2] - net.state_dict()["head.bias"][2]) == pytest.approx(1.5)
    stacked = AttentionUNet(**{**ARCH, "in_channels": 3}).eval()  # neighbouring-slice context
    with torch.no_grad():  # its XY pass at z = 9 sees z = 8, 9 and 10
        ref = stacked(torch.from_numpy(v.image[8:11])[None])[0].numpy()
    np.testing.assert_allclose(direction_logits(stacked, v, zs)[0, :, 1], ref, atol=1e-5)
