"""``vemcell render`` (and the shipped headless script it runs): MP4/PNG of a run folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("bpy", reason="bpy (Blender as a Python module) is not installed")

from blender_helpers import make_fake_run

pytestmark = pytest.mark.blender


def _vemcell(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vemcell", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    return make_fake_run(tmp_path_factory.mktemp("fake"))


def test_render_writes_mp4_of_requested_length(fake_run, tmp_path):
    import bpy

    out = tmp_path / "turntable.mp4"
    proc = _vemcell(
        "render",
        str(fake_run),
        "--out",
        str(out),
        "--animation",
        "turntable",
        "--frames",
        "5",
        "--resolution",
        "96",
        "64",
        "--progress",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    fractions = [r["fraction"] for r in records]
    assert fractions == sorted(fractions) and records[-1]["stage"] == "done"
    assert any("frame 5/5" in r["message"] for r in records)
    movie = bpy.data.images.load(str(out))
    assert movie.source == "MOVIE" and movie.frame_duration == 5
    assert tuple(movie.size) == (96, 64)
    assert not list(tmp_path.glob(".turntable*"))  # no temporary leftovers


def test_render_still_with_blend_and_glb(fake_run, tmp_path):
    from vemcell.cli.render import render_run_dir

    out = tmp_path / "still.png"
    summary = render_run_dir(
        fake_run,
        out,
        animation="still",
        engine="workbench",
        resolution=(80, 60),
        blend=tmp_path / "scene.blend",
        glb=tmp_path / "scene.glb",
        colour_by_cell=["cytoplasm"],
    )
    assert out.is_file() and summary["files"] == [str(out)]
    assert (tmp_path / "scene.blend").stat().st_size > 10_000
    assert (tmp_path / "scene.glb").read_bytes()[:4] == b"glTF"
    import bpy

    with bpy.data.libraries.load(str(tmp_path / "scene.blend")) as (saved, _):
        names = set(saved.materials)
    assert {"vemcell cytoplasm cell 01", "vemcell cytoplasm cell 02"} <= names


def test_render_errors_are_one_line(fake_run, tmp_path):
    from vemcell.cli.render import render_run_dir
    from vemcell.errors import VemcellError

    proc = _vemcell("render", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.mp4"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr
    proc = _vemcell("render", str(fake_run), "--out", str(tmp_path / "x.gif"))
    assert proc.returncode == 2 and ".mp4 or .png" in proc.stderr
    with pytest.raises(VemcellError, match="not a vemcell run folder"):
        render_run_dir(tmp_path, tmp_path / "x.png")
    with pytest.raises(VemcellError, match="colour-by-cell neurite: the result has no such class"):
        render_run_dir(fake_run, tmp_path / "x.png", colour_by_cell=["neurite"])
    # a broken run folder: the headless script's error comes back as one VemcellError
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "scene.json").write_text('{"vemcell": "scene/1", "objects": [{"name": "a"}]}')
    with pytest.raises(VemcellError, match="has no mesh"):
        render_run_dir(broken, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_render_volume_runs_pipeline_then_mp4(tmp_path):
    """VOLUME input: the pipeline on the embedded sample, then a 3-frame turntable."""
    from vemcell.cards.card import list_models
    from vemcell.synth.generator import sample_dir

    image = sample_dir() / "image.tif"
    if not image.is_file() or not list_models():
        pytest.skip("the embedded sample or a shipped model is missing")
    import bpy

    out = tmp_path / "sample.mp4"
    proc = _vemcell(
        "render",
        str(image),
        "--out",
        str(out),
        "--frames",
        "3",
        "--resolution",
        "64",
        "48",
        "--directions",
        "1",
        "--progress",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    stages = [json.loads(ln)["stage"] for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert "segment" in stages and "render" in stages and stages[-1] == "done"
    assert (tmp_path / "sample_run" / "scene.json").is_file()
    assert bpy.data.images.load(str(out)).frame_duration == 3
