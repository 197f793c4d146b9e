"""One definition each: the run options (CLI <-> RunOptions <-> arguments), their validation, the
progress protocol and bar, and the class palette of the synthetic generator."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vemcell.cli.main import build_parser
from vemcell.cli.run_options import options_from_args
from vemcell.errors import VemcellError
from vemcell.options import RunOptions
from vemcell.progress import Progress

REPO = Path(__file__).resolve().parents[1]

ROUND_TRIPS = [
    RunOptions(),
    RunOptions(
        model="cmerolae6",
        directions=1,
        median=0,
        fuse="max",
        denoise="bilateral",
        tta=True,
        min_size={"peroxisome": 0.0008, "mitochondrion": 0.1},
        voxel_size_nm=(30.0, 10.0, 10.0),
        smooth=0,
        decimate=0.0,
        mesh_format="stl",
        separate_cells="off",
        foreground="threshold",
        threads=3,
    ),
    RunOptions(model="cmerolae6", directions=3, min_size={}, voxel_size_nm=(0.1, 1 / 3, 7.25)),
    RunOptions(decimate=0.3, smooth=12, separate_cells="on", foreground="unet", mesh_format="obj"),
]


@pytest.mark.parametrize("opts", ROUND_TRIPS)
def test_run_options_round_trip_through_the_command_line(opts, tmp_path):
    """options -> arguments -> `vemcell run`'s parser -> options_from_args: equal options."""
    argv = ["run", "v.tif", "--out", str(tmp_path / "run"), *opts.to_arguments()]
    assert options_from_args(build_parser().parse_args(argv)) == opts
    # `vemcell render VOLUME` takes the same options
    argv = ["render", "v.tif", "--out", "o.png", *opts.to_arguments()]
    assert options_from_args(build_parser().parse_args(argv)) == opts


def test_segment_reads_the_segmentation_part_of_the_same_options():
    opts = RunOptions(model="cmerolae6", directions=1, median=5, tta=True, min_size={}, threads=2)
    args = opts.to_arguments()
    run_only = {"--smooth", "--decimate", "--format", "--cells", "--foreground"}
    keep = [a for i, a in enumerate(args) if a not in run_only and args[i - 1] not in run_only]
    argv = ["segment", "v.tif", "--out", "l.tif", *keep]
    assert options_from_args(build_parser().parse_args(argv)) == opts


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"threads": 0}, "--threads must be 1 or more"),
        ({"threads": -3}, "--threads must be 1 or more"),
        ({"decimate": 1.0}, "--decimate must be a fraction"),
        ({"decimate": -0.1}, "--decimate must be a fraction"),
        ({"decimate": float("nan")}, "--decimate must be a fraction"),
        ({"smooth": -1}, "--smooth must be 0 or more"),
        ({"mesh_format": "fbx"}, "--format must be ply, obj or stl"),
    ],
)
def test_run_options_are_validated_in_one_place(change, words, tmp_path):
    opts = RunOptions(**change)
    with pytest.raises(VemcellError, match=words) as exc:
        opts.validate()
    assert len(str(exc.value).splitlines()) == 1 and str(exc.value).endswith(".")
    from vemcell.pipeline import run  # the library checks the same before touching anything

    with pytest.raises(VemcellError, match=words):
        run(tmp_path / "missing.tif", tmp_path / "run", opts)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("verb", ["run", "segment"])
def test_negative_threads_fail_on_the_command_line(verb, tmp_path):
    """`vemcell run|segment --threads -3`: exit code 2, the reason in one line, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "vemcell", verb, "in.tif", "--out", str(tmp_path / "o")]
        + ["--threads", "-3"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = [ln for ln in done.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "--threads" in errors[0] and "1 or more" in errors[0], done.stderr
    assert errors[0] == done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "o").exists()


def _tty() -> io.StringIO:
    stream = io.StringIO()
    stream.isatty = lambda: True  # type: ignore[method-assign]
    return stream


def _job(prog: Progress) -> None:
    with prog.stage("read", "reading"):
        pass
    with prog.stage("segment", "segmenting"):
        prog.update(0.5, "tile 1/2", force=True)
    prog.done("wrote out")


def test_progress_json_lines_are_the_addons_protocol():
    out = io.StringIO()
    _job(Progress("json", [("read", 1), ("segment", 3)], stream=out))
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"stage": "read", "fraction": 0.0, "message": "reading"},
        {"stage": "read", "fraction": 0.25, "message": "reading"},
        {"stage": "segment", "fraction": 0.25, "message": "segmenting"},
        {"stage": "segment", "fraction": 0.625, "message": "tile 1/2"},
        {"stage": "segment", "fraction": 1.0, "message": "segmenting"},
        {"stage": "done", "fraction": 1.0, "message": "wrote out"},
    ]
    # key order and spacing as the add-on's reader and `vemcell render` have always seen them
    assert out.getvalue().splitlines()[0] == (
        '{"stage": "read", "fraction": 0.0, "message": "reading"}'
    )


def test_progress_text_lines_for_logs():
    out = io.StringIO()
    _job(Progress("text", [("read", 1), ("segment", 3)], stream=out))
    lines = out.getvalue().splitlines()
    assert lines[3] == "vemcell:  62.5% segment: tile 1/2"
    assert lines[-1] == "vemcell: 100.0% done: wrote out"


def test_progress_bar_is_tqdm_on_a_terminal_and_silent_elsewhere():
    tty = _tty()
    _job(Progress("bar", [("read", 1), ("segment", 3)], stream=tty))
    drawn = tty.getvalue()
    assert "\r" in drawn and drawn.endswith("\n")
    assert " 62.5%|" in drawn and "segment: tile 1/2" in drawn and "100.0%|" in drawn
    assert "done: wrote out" in drawn
    piped = io.StringIO()
    _job(Progress("bar", [("read", 1), ("segment", 3)], stream=piped))
    assert piped.getvalue() == ""


def test_progress_bar_ends_its_line_when_a_stage_fails():
    tty = _tty()
    prog = Progress("bar", [("read", 1)], stream=tty)
    with pytest.raises(VemcellError), prog.stage("read", "reading"):
        raise VemcellError("broken file.")
    assert tty.getvalue().endswith("\n")  # the CLI's error line starts on a line of its own


def test_synthetic_palette_is_the_cmerolae6_cards():
    """The generator's class colours (and the embedded sample's) are the model card's."""
    from vemcell.synth.generator import CLASS_COLORS, CLASS_NAMES, sample_dir

    card = json.loads((REPO / "models" / "cmerolae6.json").read_text())
    card_colours = {c["name"]: list(c["color"]) for c in card["classes"]}
    assert dict(zip(CLASS_NAMES, map(list, CLASS_COLORS), strict=True)) == card_colours
    sample = json.loads((Path(sample_dir()) / "sample.json").read_text())
    assert {c["name"]: c["color"] for c in sample["classes"]} == card_colours
