"""Training, export and evaluation of the U-Net (needs torch; small and fast)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vemcell.cards.card import load_card  # noqa: E402
from vemcell.cli.main import main  # noqa: E402
from vemcell.errors import VemcellError  # noqa: E402
from vemcell.io.volumes import write_tiff  # noqa: E402
from vemcell_train.data import IGNORE, Augment, SliceSampler, VolumePair  # noqa: E402
from vemcell_train.losses import TverskyLoss, distillation_loss  # noqa: E402
from vemcell_train.model import (  # noqa: E402
    AttentionUNet,
    add_context_into,
    count_parameters,
    widen_into,
)
from vemcell_train.onnx_export import calibration_slices, export_checkpoint  # noqa: E402
from vemcell_train.train import TrainConfig, load_checkpoint, train  # noqa: E402

CARD = {
    "name": "tiny",
    "classes": [{"name": "background"}, {"name": "blob"}, {"name": "dot"}],
    "background_class": 0,
    "normalisation": {"method": "scale"},
    "voxel_size_nm": 20.0,
    "tile": 32,
}


def blobs(seed: int, shape=(32, 48, 48)) -> tuple[np.ndarray, np.ndarray]:
    """Bright spheres (class 1) with a few small dark dots (class 2) on a grey background."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(shape)
    labels = np.zeros(shape, np.uint8)
    for _ in range(4):
        c = rng.uniform(6, np.array(shape) - 6)
        r = rng.uniform(5, 9)
        labels[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 < r * r] = 1
    for _ in range(6):
        c = rng.uniform(3, np.array(shape) - 3)
        labels[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 < 4] = 2
    grey = np.array([120, 200, 40], np.float32)[labels]
    image = np.clip(grey + rng.normal(0, 12, shape), 0, 255).astype(np.uint8)
    return image, labels


def pair(seed: int) -> VolumePair:
    image, labels = blobs(seed)
    return VolumePair(image.astype(np.float32) / 255, labels, f"blobs{seed}", (20.0,) * 3)


def tiny_config(**kw) -> TrainConfig:
    base = dict(epochs=2, steps_per_epoch=6, batch_size=4, tile=32, base=4, lr=5e-3, val_slices=3)
    base.update(kw)
    return TrainConfig(**base)


def test_network_follows_the_paper_layout() -> None:
    net = AttentionUNet(n_classes=6, base=64)
    assert len(net.down) == 5 and len(net.up) == 4  # four down and four up stages
    assert net.down[-1][0].out_channels == 1024  # 64-128-256-512-1024 as Table 2
    assert net.head.out_channels == 6 and net.head.kernel_size == (1, 1)
    small = AttentionUNet(n_classes=6, base=16)
    assert count_parameters(small) < count_parameters(net) / 10
    out = small.eval()(torch.zeros(1, 1, 48, 80))
    assert out.shape == (1, 6, 48, 80)


def test_tversky_loss_is_zero_for_a_perfect_prediction_and_weights_misses() -> None:
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:5, 2:5] = 1
    perfect = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float() * 40
    assert TverskyLoss(0.5, 0.5, smooth=0.0)(perfect, target).item() < 1e-6
    under = target.clone()
    under[0, 4, 2:5] = 0  # misses 3 of the 9 object pixels
    over = target.clone()
    over[0, 5, 2:5] = 1  # adds 3 pixels beside the object

    def logits(lab: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(lab, 2).permute(0, 3, 1, 2).float() * 40

    fn_heavy = TverskyLoss(alpha=0.1, beta=0.9, smooth=0.0)
    assert fn_heavy(logits(under), target) > fn_heavy(logits(over), target)
    dice = TverskyLoss(alpha=0.5, beta=0.5, smooth=0.0)
    assert dice(logits(under), target) > 0 and dice(logits(over), target) > 0


def test_unlabelled_pixels_are_left_out_of_the_loss() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 12, generator=g)
    target = torch.randint(0, 3, (2, 8, 12), generator=g)
    partial = target.clone()
    partial[..., 6:] = IGNORE  # the right half was never labelled
    for loss in (TverskyLoss(0.4, 0.6), TverskyLoss(0.5, 0.5, ce_weight=0.5)):
        whole = loss(logits[..., :6].contiguous(), target[..., :6].contiguous())
        torch.testing.assert_close(loss(logits, partial), whole)
    nothing = torch.full_like(target, IGNORE)
    assert TverskyLoss(0.5, 0.5, ce_weight=0.5)(logits, nothing).item() == 0.0  # not NaN


def test_train_cli_trains_on_partly_labelled_volumes(tmp_path: Path, capsys) -> None:
    image, labels = blobs(4)
    labels = labels.copy()
    labels[:, :, labels.shape[2] // 2 :] = IGNORE  # only the left half was labelled
    write_tiff(tmp_path / "img.tif", image, (20.0, 20.0, 20.0))
    write_tiff(tmp_path / "lab.tif", labels, (20.0, 20.0, 20.0))
    (tmp_path / "classes.json").write_text(json.dumps(["bg", "blob", "dot"]))
    args = ["--images", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif")]
    args += ["--classes", str(tmp_path / "classes.json"), "--out", str(tmp_path / "run")]
    args += ["--epochs", "2", "--steps", "4", "--batch-size", "4", "--tile", "32"]
    assert main(["train", *args, "--width", "4", "--progress", "none"]) == 0
    assert "img.tif: 50.0 % of voxels not labelled" in capsys.readouterr().err
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)
    assert (tmp_path / "run" / "best.pt").exists()


def test_sampler_balances_classes_and_augment_keeps_labels_aligned() -> None:
    v = pair(0)
    sampler = SliceSampler([v], crop=48, directions=3, balance=1.0, n_classes=3)
    rng = np.random.default_rng(0)
    imgs, labs = sampler.batch(rng, 60)
    assert imgs.shape == (60, 48, 48) and labs.shape == (60, 48, 48)
    dot_fraction = (labs == 2).mean()
    assert dot_fraction > 2 * (v.labels == 2).mean()  # small class is over-sampled
    x, y = Augment()(
        torch.from_numpy(imgs),
        torch.from_numpy(labs.astype(np.int64)),
        32,
        torch.Generator().manual_seed(0),
    )
    assert x.shape == (60, 1, 32, 32) and y.shape == (60, 32, 32)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    # spheres stay bright after geometry changes (labels move with the image)
    assert float(x[:, 0][y == 1].mean()) > float(x[:, 0][y == 0].mean())


def test_tiny_network_learns_and_resume_reproduces_the_run(tmp_path: Path) -> None:
    vols, val = [pair(1), pair(2)], [pair(3)]
    cfg = tiny_config(epochs=3)
    full = train(cfg, vols, tmp_path / "a", card=CARD, val_volumes=val, log=lambda m: None)
    losses = [h["loss"] for h in full["history"]]
    assert losses[-1] < losses[0]
    # the same seed, stopped after one epoch and resumed, ends where the full run ended
    train(
        tiny_config(epochs=1), vols, tmp_path / "b", card=CARD, val_volumes=val, log=lambda m: None
    )
    resumed = train(
        cfg, vols, tmp_path / "b", card=CARD, val_volumes=val, resume=True, log=lambda m: None
    )
    assert [h["loss"] for h in resumed["history"]] == pytest.approx(losses, rel=1e-5)
    a = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    with pytest.raises(VemcellError, match="different settings"):
        train(tiny_config(epochs=3, lr=1e-2), vols, tmp_path / "b", card=CARD, resume=True)


def test_a_trained_network_widens_without_changing_its_output(tmp_path: Path) -> None:
    vols = [pair(1)]
    log: list[str] = []
    train(tiny_config(epochs=1), vols, tmp_path / "narrow", card=CARD, log=log.append)
    src = load_checkpoint(tmp_path / "narrow" / "best.pt")
    narrow = AttentionUNet(n_classes=3, base=4)
    narrow.load_state_dict(src["model"])
    wide = AttentionUNet(n_classes=3, base=6)
    widen_into(wide, narrow)
    x = torch.from_numpy(blobs(5)[0][:4, None, :32, :32].astype(np.float32) / 255)
    with torch.no_grad():
        torch.testing.assert_close(wide.eval()(x), narrow.eval()(x), rtol=0, atol=1e-5)
    assert count_parameters(wide) > 2 * count_parameters(narrow)

    def start_from_narrow(base: int) -> dict:
        cfg = tiny_config(epochs=1, base=base)
        ckpt = tmp_path / "narrow" / "best.pt"
        return train(cfg, vols, tmp_path / f"b{base}", card=CARD, init_from=ckpt, log=log.append)

    # training starts from the widened weights; the new channels learn
    assert start_from_narrow(6)["history"]
    assert any("widened from base 4 to 6" in m for m in log)
    tuned = load_checkpoint(tmp_path / "b6" / "last.pt")["model"]
    assert tuned["head.weight"][:, 4:].abs().sum() > 0  # zero at the start, trained since
    with pytest.raises(VemcellError, match="more than a larger width"):
        start_from_narrow(2)
    with pytest.raises(ValueError, match="narrower"):
        widen_into(narrow, wide)


def test_a_narrower_student_distils_a_trained_teacher(tmp_path: Path) -> None:
    logits = torch.randn(2, 3, 8, 8)
    assert distillation_loss(logits, logits, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(logits, torch.randn(2, 3, 8, 8), 2.0).item() > 0
    vols = [pair(1)]
    quick = dict(epochs=1, steps_per_epoch=2, threads=1)
    train(tiny_config(**quick), vols, tmp_path / "teacher", card=CARD, log=lambda m: None)
    teacher = str(tmp_path / "teacher" / "best.pt")
    log: list[str] = []
    cfg = tiny_config(**quick, base=2, teacher=teacher, kd_weight=0.5, kd_temperature=2.0)
    run = train(cfg, vols, tmp_path / "student", card=CARD, log=log.append)
    assert run["history"][0]["loss"] > 0
    assert any("distilling from" in m for m in log)
    assert load_checkpoint(tmp_path / "student" / "best.pt")["arch"]["base"] == 2
    with pytest.raises(VemcellError, match="n_classes"):
        four = {**CARD, "classes": CARD["classes"] + [{"name": "extra"}]}
        train(tiny_config(**quick, teacher=teacher), vols, tmp_path / "x", card=four)


def test_sampler_and_augment_carry_neighbouring_slices_along() -> None:
    v = pair(0)
    plain = SliceSampler([v], crop=40, directions=3, balance=0.5, n_classes=3)
    stacked = SliceSampler([v], crop=40, directions=3, balance=0.5, n_classes=3, context=1)
    imgs, labs = plain.batch(np.random.default_rng(3), 20)
    imgs3, labs3 = stacked.batch(np.random.default_rng(3), 20)
    assert imgs3.shape == (20, 3, 40, 40)
    np.testing.assert_array_equal(imgs3[:, 1], imgs)  # the same crops, neighbours added
    np.testing.assert_array_equal(labs3, labs)
    assert np.abs(imgs3[:, 0] - imgs3[:, 1]).max() > 0
    same = torch.from_numpy(np.repeat(imgs[:, None], 3, axis=1))  # one geometry for all channels
    x, y = Augment(noise=0)(same, torch.from_numpy(labs.astype(np.int64)), 32, torch.Generator())
    assert x.shape == (20, 3, 32, 32) and y.shape == (20, 32, 32)
    torch.testing.assert_close(x[:, 0], x[:, 2], rtol=0, atol=0)


def test_a_network_gains_slice_context_without_changing_its_output(tmp_path: Path, capsys) -> None:
    vols = [pair(1)]
    log: list[str] = []
    train(tiny_config(epochs=1), vols, tmp_path / "single", card=CARD, log=log.append)
    single_ckpt = tmp_path / "single" / "best.pt"
    single = AttentionUNet(n_classes=3, base=4)
    single.load_state_dict(load_checkpoint(single_ckpt)["model"])
    stacked = AttentionUNet(n_classes=3, base=4, in_channels=3)
    add_context_into(stacked, single)
    x = torch.from_numpy(blobs(5)[0][:4, None, :32, :32].astype(np.float32) / 255)
    x3 = torch.cat([torch.rand_like(x), x, torch.rand_like(x)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(stacked.eval()(x3), single.eval()(x), rtol=0, atol=1e-5)
    # fine-tuning with --context starts from the single-slice weights; export and run it
    image, labels = blobs(6)
    write_tiff(tmp_path / "img.tif", image, (20.0, 20.0, 20.0))
    write_tiff(tmp_path / "lab.tif", labels, (20.0, 20.0, 20.0))
    (tmp_path / "classes.json").write_text(json.dumps(["bg", "blob", "dot"]))
    args = ["--images", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif")]
    args += ["--classes", str(tmp_path / "classes.json"), "--epochs", "1", "--steps", "2"]
    args += ["--batch-size", "2", "--tile", "32", "--progress", "none"]
    assert (
        main(
            [
                "train",
                *args,
                "--out",
                str(tmp_path / "c"),
                "--init",
                str(single_ckpt),
                "--context",
                "1",
            ]
        )
        == 0
    )
    assert "now with 1 neighbouring slice(s) on each side" in capsys.readouterr().err
    ckpt = tmp_path / "c" / "best.pt"
    assert load_checkpoint(ckpt)["arch"]["in_channels"] == 3
    # fine-tuning again keeps the checkpoint's context unless told otherwise
    assert main(["train", *args, "--out", str(tmp_path / "d"), "--init", str(ckpt)]) == 0
    assert load_checkpoint(tmp_path / "d" / "best.pt")["arch"]["in_channels"] == 3
    assert main(["train", *args, "--out", str(tmp_path / "e"), "--context", "-1"]) == 2
    assert "--context must be 0 or more slices" in capsys.readouterr().err
    onnx = tmp_path / "c.onnx"
    assert (
        main(
            [
                "export",
                str(ckpt),
                "--out",
                str(onnx),
                "--int8",
                "--calibration",
                str(tmp_path / "img.tif"),
            ]
        )
        == 0
    )
    card = load_card(onnx)
    assert card.raw["input"]["context_slices"] == 1
    assert json.loads(onnx.with_name("c_int8.json").read_text())["export"]["comparison"]
    rc = main(
        [
            "evaluate",
            "--model",
            str(onnx),
            "--image",
            str(tmp_path / "img.tif"),
            "--labels",
            str(tmp_path / "lab.tif"),
            "--directions",
            "3",
            "--progress",
            "none",
        ]
    )
    assert rc == 0
    work = np.random.default_rng(0).random((40, 40, 40), dtype=np.float32)
    assert calibration_slices(work, 6, 16, 32, context=1).shape == (6, 3, 32, 32)


def test_export_matches_torch_and_evaluate_scores_it(tmp_path: Path) -> None:
    vols = [pair(1)]
    train(
        tiny_config(epochs=1, steps_per_epoch=2),
        vols,
        tmp_path / "run",
        card=CARD,
        log=lambda m: None,
    )
    facts = export_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "m.onnx")
    assert facts["max_abs_diff"] < 1e-4
    card = load_card(tmp_path / "m.onnx")
    assert card.n_classes == 3 and card.divisor == 16 and card.normalisation["method"] == "scale"
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((3, 1, 48, 80), dtype=np.float32)
    ref = torch.softmax(facts["net"](torch.from_numpy(x)), 1).detach().numpy()
    got = sess.run(["probabilities"], {"image": x})[0]
    assert got.shape == (3, 3, 48, 80)
    assert np.abs(got - ref).max() < 1e-4
    # evaluate through the user-facing segmentation, against the labels and against itself
    image, labels = blobs(5)
    write_tiff(tmp_path / "img.tif", image, (20.0, 20.0, 20.0))
    write_tiff(tmp_path / "lab.tif", labels, (20.0, 20.0, 20.0))
    out = tmp_path / "iou.json"
    rc = main(
        [
            "evaluate",
            "--model",
            str(tmp_path / "m.onnx"),
            "--image",
            str(tmp_path / "img.tif"),
            "--labels",
            str(tmp_path / "lab.tif"),
            "--directions",
            "1",
            "--json",
            str(out),
            "--progress",
            "none",
        ]
    )
    assert rc == 0
    report = json.loads(out.read_text())
    assert set(report["iou"]) == {"background", "blob", "dot"}
    assert 0.0 <= report["mean_iou"] <= 1.0
    assert report["min_size_um3"] == {}
    # minimum piece sizes go into the card; a class the network lacks is one sentence
    sized = tmp_path / "sized.onnx"
    facts = export_checkpoint(tmp_path / "run" / "last.pt", sized, min_size=["dot=0.002"])
    assert load_card(sized).min_size_um3 == {"dot": 0.002}
    with pytest.raises(VemcellError, match="'golgi', which is not a class of this checkpoint"):
        export_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "x.onnx", min_size=["golgi=1"])
    assert not (tmp_path / "x.onnx").exists()


def test_training_commands_explain_a_missing_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    from vemcell_train.cli.common import require_training

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(VemcellError, match=r"pip install 'vemcell\[train\]'"):
        require_training("train")


def test_train_cli_rejects_mismatched_inputs(tmp_path: Path, capsys) -> None:
    image, _ = blobs(0)
    write_tiff(tmp_path / "img.tif", image, (20.0, 20.0, 20.0))
    (tmp_path / "classes.json").write_text(json.dumps(["bg", "blob", "dot"]))
    rc = main(
        [
            "train",
            "--images",
            str(tmp_path / "img.tif"),
            "--labels",
            str(tmp_path / "img.tif"),
            str(tmp_path / "img.tif"),
            "--classes",
            str(tmp_path / "classes.json"),
            "--out",
            str(tmp_path / "run"),
            "--progress",
            "none",
        ]
    )
    assert rc == 2
    assert "one label volume per image" in capsys.readouterr().err


def test_crossval_writes_the_table_in_the_papers_layout(tmp_path: Path, capsys) -> None:
    paths = []
    for seed in (1, 2):
        image, labels = blobs(seed)
        write_tiff(tmp_path / f"v{seed}.tif", image, (20.0, 20.0, 20.0))
        write_tiff(tmp_path / f"v{seed}_labels.tif", labels, (20.0, 20.0, 20.0))
        paths.append((str(tmp_path / f"v{seed}.tif"), str(tmp_path / f"v{seed}_labels.tif")))
    (tmp_path / "classes.json").write_text(json.dumps(["background", "blob", "dot"]))
    out = tmp_path / "cv"
    cv_args = [
        "crossval",
        "--images",
        paths[0][0],
        paths[1][0],
        "--labels",
        paths[0][1],
        paths[1][1],
        "--classes",
        str(tmp_path / "classes.json"),
        "--out",
        str(out),
        "--stage-names",
        "early",
        "late",
        "--epochs",
        "1",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--tile",
        "32",
        "--width",
        "4",
        "--progress",
        "none",
    ]
    assert main(cv_args) == 0
    md = (out / "crossval.md").read_text().splitlines()
    assert md[0] == ("| Class | early (1 dir) | early (3 dir) | late (1 dir) | late (3 dir) |")
    assert [row.split("|")[1].strip() for row in md[2:]] == ["background", "blob", "dot", "Mean"]
    assert (out / "crossval.csv").exists() and (out / "crossval.png").stat().st_size > 0
    results = json.loads((out / "crossval.json").read_text())
    assert {r["fold"] for r in results} == {1, 2} and len(results) == 4
    # every fold can fine-tune given weights (without --width: the checkpoint's width, so no
    # widening); a missing checkpoint fails before any training
    args = [a if a != str(out) else str(tmp_path / "cv2") for a in cv_args]
    at = args.index("--width")
    args = args[:at] + args[at + 2 :]
    capsys.readouterr()
    assert main([*args, "--init", str(out / "fold1" / "last.pt")]) == 0
    err = capsys.readouterr().err
    assert "starting from the weights" in err and "widened" not in err
    args = [a if a != str(out) else str(tmp_path / "cv3") for a in cv_args]
    assert main([*args, "--init", str(tmp_path / "nope.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "cv3" / "fold1").exists()


def test_crossval_folds_follow_the_papers_cases() -> None:
    """Six cases of five stages: every fold validates one volume of each stage, and the table
    shows each stage's mean over its cases."""
    from vemcell.evaluation.crossval import assign_folds, stage_means

    stages = [f"stage {s}" for s in range(1, 6) for _ in range(6)]
    folds = assign_folds(stages, 6)
    for f in range(6):
        assert sorted(st for st, k in zip(stages, folds, strict=True) if k == f) == sorted(
            set(stages)
        )
    assert assign_folds(["a", "b", "c", "d", "e"], 2) == [0, 1, 0, 1, 0]  # one volume a stage
    assert assign_folds(["a", "b", "a", "b"], 2) == [0, 0, 1, 1]
    results = [
        {"stage": "a", "directions": 1, "iou": {"x": 0.5, "y": None}, "mean_iou": 0.5},
        {"stage": "a", "directions": 1, "iou": {"x": 0.7, "y": 0.2}, "mean_iou": 0.45},
        {"stage": "a", "directions": 3, "iou": {"x": 0.9, "y": 0.4}, "mean_iou": 0.65},
    ]
    means = stage_means(results, ["x", "y"])
    assert [(m["stage"], m["directions"], m["cases"]) for m in means] == [("a", 1, 2), ("a", 3, 1)]
    assert means[0]["iou"] == {"x": pytest.approx(0.6), "y": 0.2}
    assert means[0]["mean_iou"] == pytest.approx(0.4)


def test_crossval_with_several_volumes_a_stage(tmp_path: Path) -> None:
    images, labels = [], []
    for seed in (1, 2, 3, 4):
        image, lab = blobs(seed)
        images.append(str(tmp_path / f"v{seed}.tif"))
        labels.append(str(tmp_path / f"v{seed}_labels.tif"))
        write_tiff(images[-1], image, (20.0, 20.0, 20.0))
        write_tiff(labels[-1], lab, (20.0, 20.0, 20.0))
    (tmp_path / "classes.json").write_text(json.dumps(["background", "blob", "dot"]))
    out = tmp_path / "cv"
    args = ["crossval", "--images", *images, "--labels", *labels, "--out", str(out)]
    args += ["--classes", str(tmp_path / "classes.json"), "--folds", "2", "--progress", "none"]
    args += ["--stage-names", "early", "late", "early", "late"]
    args += ["--epochs", "1", "--steps", "1", "--batch-size", "2", "--tile", "32", "--width", "4"]
    assert main(args) == 0
    md = (out / "crossval.md").read_text().splitlines()
    assert md[0] == "| Class | early (1 dir) | early (3 dir) | late (1 dir) | late (3 dir) |"
    assert "mean over that stage's 2 cases" in md[-1]
    results = json.loads((out / "crossval.json").read_text())
    held = {(r["fold"], r["stage"]) for r in results}
    assert held == {(1, "early"), (1, "late"), (2, "early"), (2, "late")}
    with open(out / "crossval_cases.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and {r["volume"] for r in rows} == set(images)
    assert {r["fold"] for r in rows} == {"1", "2"}
    early_1dir = [
        float(r["blob"]) for r in rows if r["stage"] == "early" and r["directions"] == "1"
    ]
    table = {row.split("|")[1].strip(): row.split("|")[2].strip() for row in md[2:6]}
    assert float(table["blob"]) == pytest.approx(sum(early_1dir) / 2, abs=1e-3)


def test_train_cli_rejects_class_weights_of_the_wrong_length(tmp_path: Path, capsys) -> None:
    image, labels = blobs(0)
    write_tiff(tmp_path / "img.tif", image, (20.0, 20.0, 20.0))
    write_tiff(tmp_path / "lab.tif", labels, (20.0, 20.0, 20.0))
    (tmp_path / "classes.json").write_text(json.dumps(["bg", "blob", "dot"]))
    args = ["train", "--images", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif")]
    args += ["--classes", str(tmp_path / "classes.json"), "--out", str(tmp_path / "run")]
    rc = main([*args, "--class-draw", "1,3", "--progress", "none"])
    assert rc == 2
    assert "--class-draw needs 3 non-negative weights" in capsys.readouterr().err
    rc = main([*args, "--ce-class-weights", "1,x,2", "--progress", "none"])
    assert rc == 2
    assert "not a comma-separated list of numbers" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # rejected before anything was written


def test_validation_planes_are_never_repeated() -> None:
    from vemcell_train.train import _val_planes

    one = VolumePair(np.zeros((1, 32, 32), np.float32), np.zeros((1, 32, 32), np.uint8))
    assert _val_planes([one], 12, 1) == [(0, 0, 0)]
    five = VolumePair(np.zeros((5, 32, 32), np.float32), np.zeros((5, 32, 32), np.uint8))
    assert _val_planes([five], 12, 1) == [(0, 0, i) for i in range(5)]


@pytest.mark.parametrize("recipe", ["plastid", "vnc5"])
def test_serial_section_recipes_refuse_three_directions(recipe: str, tmp_path: Path) -> None:
    from vemcell_train import recipes

    with pytest.raises(VemcellError, match="only give XY slices"):
        recipes.main([recipe, str(tmp_path / "run"), "--set", "directions=3"])
    assert not (tmp_path / "run").exists()


def test_recipes_take_extra_pseudo_labelled_sections(tmp_path: Path) -> None:
    from vemcell_train import recipes

    image, labels = blobs(6)
    labels = labels.copy()
    labels[:, :8] = IGNORE  # an unsure strip, as `vemcell pseudolabel` writes
    write_tiff(tmp_path / "u.tif", image[:4], (50.0, 4.6, 4.6))
    write_tiff(tmp_path / "u_labels.tif", labels[:4], (50.0, 4.6, 4.6))
    pairs, note = recipes.extra_pairs(
        [(tmp_path / "u.tif", tmp_path / "u_labels.tif")], recipes.VNC_NORMALISATION, 9.2, 3
    )
    (v,) = pairs
    assert v.voxel_size_nm == (50.0, 9.2, 9.2)  # sections kept, resampled in the plane only
    assert v.labels.shape == (4, labels.shape[1] // 2, labels.shape[2] // 2)
    assert set(np.unique(v.labels)) == {0, 1, 2, IGNORE} and (v.labels[:, :3] == IGNORE).all()
    assert "u.tif with the labels u_labels.tif" in note
    with pytest.raises(SystemExit):
        recipes.main(["cmerolae6", str(tmp_path / "run"), "--extra", "a.tif", "b.tif"])


def test_cmerolae6_scoring_repeats_average_every_volume(tmp_path: Path) -> None:
    """score-cmerolae6 --repeats 2: two sets of five fresh volumes, each scored, and the means
    over all ten per class (absent classes left out) in validation.json."""
    from tiny_models import make_band_model
    from vemcell_train.recipes import main as recipes_main

    card = make_band_model(tmp_path, centres=(0.8, 0.5, 0.7, 0.45, 0.68, 0.7), tile=32)
    out = tmp_path / "score"
    args = ["score-cmerolae6", str(out), "--model", str(card), "--shape", "24", "40", "40"]
    assert recipes_main([*args, "--voxel-nm", "100", "--seed0", "50", "--repeats", "2"]) == 0
    v = json.loads((out / "validation.json").read_text())
    assert v["means"]["volumes"] == 10 and v["means"]["seeds"] == "51–55, 151–155"
    runs = [json.loads((out / f"s{s}" / "validation.json").read_text()) for s in (50, 150)]
    for key, d in (("iou_3_directions", 3), ("iou_1_direction", 1)):
        for name, mean in v["means"][key].items():
            vals = [
                r["iou"][name]
                for run in runs
                for r in run["per_stage"]
                if r["directions"] == d and r["iou"][name] is not None
            ]
            assert mean == pytest.approx(sum(vals) / len(vals), abs=1e-4), name
    with pytest.raises(VemcellError, match="--repeats must be at least 1"):
        recipes_main([*args, "--repeats", "0"])


def test_whole_cell_scoring_volumes_keep_every_stage_whole_with_the_same_imaging() -> None:
    """score-cmerolae6 --whole-cells: the paper's one whole cell per cube, imaged as the
    default (cut-cell) volume of the same seed; too small a volume is refused in one sentence."""
    from vemcell_train.recipes import scoring_volume

    for stage in range(1, 6):
        whole = scoring_volume(stage, 50 + stage, (72, 72, 72), 40.0, whole_cells=True)
        cut = scoring_volume(stage, 50 + stage, (72, 72, 72), 40.0, whole_cells=False)
        assert all(c["complete"] for c in whole.info["cells"]), stage
        assert len(whole.info["cells"]) == (1 if stage <= 3 else 2)
        assert whole.info["imaging"] == cut.info["imaging"]
    with pytest.raises(VemcellError, match="does not fit whole"):
        scoring_volume(4, 54, (24, 40, 40), 40.0, whole_cells=True)
