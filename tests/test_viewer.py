"""The viewer page (``vemcell view``): what goes into it, and the page itself in a real browser.

The browser tests drive Debian's ``chromium`` through ``chromedriver`` (selenium), headless with
software WebGL2 (SwiftShader), from ``file://`` with every host name unresolvable, on one run of
the shipped model over a crop of the embedded sample (made once for the module, ~2 s).

``VEMCELL_DOCS_IMAGES=1 pytest tests/test_viewer.py -k docs_image`` rewrites
``docs/images/viewer.png`` (the README's picture of the page) from the same test.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import headless_chromium
from conftest import REPO
from vemcell.cli.main import main
from vemcell.view import pack
from vemcell.view.page import STATIC, build_viewer, write_viewer, write_viewer_stats

MODEL = REPO / "models" / "cmerolae6.onnx"
SAMPLE = REPO / "inference" / "vemcell" / "data" / "sample" / "image.tif"
DOCS_IMAGE = REPO / "docs" / "images" / "viewer.png"


# ---- the run and its page -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real run folder: the shipped model on an 80×96×96 crop of the embedded sample."""
    import tifffile

    from vemcell.io.volumes import write_tiff
    from vemcell.pipeline import RunOptions, run

    tmp = tmp_path_factory.mktemp("viewer")
    crop = tifffile.imread(SAMPLE)[16:96, 16:112, 80:176]
    write_tiff(tmp / "crop.tif", crop, (20.0, 20.0, 20.0))
    out = tmp / "run"
    # decimated harder than by default: the browser renders it in software, many times
    options = RunOptions(model=str(MODEL), threads=2, directions=1, decimate=0.85)
    run(tmp / "crop.tif", out, options)
    return out


@pytest.fixture(scope="module")
def page(run_dir):
    return write_viewer(run_dir)


@pytest.fixture(scope="module")
def scene(run_dir):
    return json.loads((run_dir / "scene.json").read_text(encoding="utf-8"))


def _manifest(html: str) -> dict:
    m = re.search(
        r'<script type="application/json" id="vemcell-manifest">(.*?)</script>', html, re.S
    )
    assert m, "no manifest in the page"
    return json.loads(m.group(1))


def _block(html: str, name: str) -> bytes:
    m = re.search(rf'id="vemcell-{name}">(.*?)</script>', html, re.S)
    assert m, name
    return base64.b64decode(m.group(1))


# ---- no browser needed -------------------------------------------------------------------------


def test_mesh_codec_round_trips_exactly_to_the_grid(run_dir, scene):
    import gzip

    import trimesh

    rng = np.random.default_rng(0)
    meshes = [(rng.uniform(-3, 7, (50, 3)).astype(np.float32), rng.integers(0, 50, (120, 3)))]
    for o in scene["objects"][:3]:
        m = trimesh.load(run_dir / o["mesh"], process=False)
        meshes.append((np.asarray(m.vertices, np.float32), np.asarray(m.faces)))
    packed = pack.pack_meshes(meshes, finest_voxel_um=0.02)
    data = gzip.decompress(packed.data)
    assert len(data) == packed.raw_bytes
    for (v, f), entry in zip(meshes, packed.entries, strict=True):
        dv, df = pack.decode_mesh(data, entry, packed.origin, packed.step)
        assert df.shape == f.shape
        # the same triangles, corner for corner, on renumbered vertices within half a step
        np.testing.assert_allclose(dv[df], v[f], atol=packed.step * 0.51)
        assert entry["vertices"] == len(np.unique(f))
    assert packed.step == pytest.approx(0.02 / 32)


def test_varints_of_every_size():
    values = np.array([0, 1, 127, 128, 16383, 16384, 2**21, 2**28 + 5, 2**35], np.uint64)
    raw = pack._varint(values).tobytes()
    out, p = [], 0
    while p < len(raw):
        v, shift = 0, 0
        while True:
            b = raw[p]
            p += 1
            v |= (b & 127) << shift
            shift += 7
            if not b & 128:
                break
        out.append(v)
    assert out == [int(x) for x in values]


def test_page_is_one_self_contained_file(page, scene):
    html = page.read_text(encoding="utf-8")
    assert page.name == "viewer.html"
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    # nothing is loaded from anywhere: no src/href/url() that names another file or a host
    assert not re.search(r"""\b(src|href)\s*=\s*["'](?!#|data:)""", html), "an external reference"
    assert not re.search(r"url\(\s*['\"]?(?!data:)", html.split("<script", 1)[0])
    assert html.count("</script>") == html.count("<script")  # no script element closed early
    m = _manifest(html)
    assert [o["name"] for o in m["objects"]] == [o["name"] for o in scene["objects"]]
    for mine, theirs in zip(m["objects"], scene["objects"], strict=True):
        assert {k: mine[k] for k in theirs} == theirs  # scene.json's object, untouched
    assert m["em"]["shape_zyx"] == [80, 96, 96]
    assert _block(html, "em")[:2] == b"\xff\xd8"  # a JPEG
    assert page.stat().st_size < 2_000_000


def test_every_three_name_the_viewer_uses_is_bundled():
    used = set(re.findall(r"\bT\.([A-Z][A-Za-z0-9]+)", (STATIC / "viewer.js").read_text()))
    entry = (STATIC / "three-entry.js").read_text()
    exported = set(re.findall(r"\b([A-Z][A-Za-z0-9]+)\b", entry.split("export", 1)[1]))
    assert used <= exported, sorted(used - exported)
    bundle = (STATIC / "three.bundle.min.js").read_text()
    assert bundle.startswith("/*! three.js r187") and "var THREE=" in bundle
    assert (STATIC / "LICENSE.three.txt").read_text().startswith("The MIT License")


def test_write_is_atomic_and_out_may_be_a_folder(run_dir, tmp_path):
    stats = write_viewer_stats(run_dir, tmp_path)
    assert stats.path == tmp_path / "viewer.html" and stats.path.stat().st_size == stats.bytes
    again = write_viewer(run_dir, tmp_path / "again.html")
    assert again.read_bytes() == stats.path.read_bytes()  # the same run gives the same page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.html", "viewer.html"]


def test_no_volume_no_em_section_and_the_page_says_why(run_dir, tmp_path):
    moved = tmp_path / "run"
    shutil.copytree(run_dir, moved)
    report = json.loads((moved / "report.json").read_text())
    report["input"]["path"] = str(tmp_path / "gone.tif")
    (moved / "report.json").write_text(json.dumps(report))
    html, facts = build_viewer(moved)
    m = _manifest(html)
    assert m["em"] is None and facts["em_bytes"] == 0
    assert "gone.tif was not found" in m["em_note"]
    assert 'id="vemcell-em"></script>' in html


def test_meshes_are_simplified_to_the_budget(run_dir, scene):
    total = sum(o["faces"] for o in scene["objects"])
    html, facts = build_viewer(run_dir, max_faces=total // 4, em_voxels=0)
    assert facts["faces_in_run"] == total
    assert facts["faces"] < total // 2
    m = _manifest(html)
    assert m["simplified"] == {"faces_in_run": total, "faces": facts["faces"]}
    assert m["em"] is None and "left out" in m["em_note"]


def test_em_resampling_coarsens_the_finest_axes_first():
    # serial sections: 50 nm apart, 5 nm pixels; the budget is met by coarsening x and y only
    z, y, x = pack.em_target_shape((40, 2000, 2000), (50, 5, 5), max_voxels=4_000_000)
    assert z == 40 and y == x and 310 < y and z * y * x <= 4_000_000
    assert pack.em_target_shape((64, 64, 64), (20, 20, 20)) == (64, 64, 64)
    z, y, x = pack.em_target_shape((256, 256, 256), (20, 20, 20), max_voxels=1_000_000)
    assert z == y == x and z * y * x <= 1_000_000


def test_cli_writes_the_page_and_errors_are_one_line(run_dir, tmp_path, capsys):
    out = tmp_path / "model.html"
    assert main(["view", str(run_dir), "--out", str(out), "--no-open", "--no-em"]) == 0
    assert out.is_file()
    said = capsys.readouterr().out
    assert "vemcell view: wrote" in said and "no EM section" in said
    assert main(["view", str(tmp_path), "--no-open"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has no scene.json" in err
    assert main(["view", str(run_dir), "--out", str(tmp_path / "x.png"), "--no-open"]) == 2
    assert main(["view", str(run_dir), "--max-faces", "-1", "--no-open"]) == 2


# ---- in a real browser ---------------------------------------------------------------------------


def start_browser():
    """A headless Chromium under chromedriver, or skip with the one reason there is none."""
    gone = headless_chromium.missing()
    if gone:
        pytest.skip(
            f"no headless browser ({', '.join(gone)} missing): apt-get install chromium "
            "chromium-driver, and pip install selenium"
        )
    return headless_chromium.start((1000, 760), 90, console_log=True)


class Page:
    """The loaded page, its console log so far, and helpers to drive window.vemcellViewer."""

    def __init__(self, driver, path: Path, query: str = "") -> None:
        self.driver = driver
        self.log: list[dict] = []
        driver.get(path.resolve().as_uri() + query)
        self.ready = self.call("return await v.ready;")

    def call(self, body: str, *args):
        """Run ``body`` as an async function with ``v`` = window.vemcellViewer; its result."""
        script = (
            "const done = arguments[arguments.length - 1];"
            "const args = Array.from(arguments).slice(0, -1);"
            "(async (v, args) => {" + body + "})(window.vemcellViewer, args)"
            ".then((r) => done({ok: r === undefined ? null : r}), (e) => done({error: String(e)}));"
        )
        out = self.driver.execute_async_script(script, *args)
        assert "error" not in out, out["error"]
        return out["ok"]

    def pixels(self) -> np.ndarray:
        """The canvas as an RGB array (no overlays)."""
        from PIL import Image

        url = self.call("return v.screenshot({overlays: false});")
        assert url.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        return np.asarray(img.convert("RGB")).astype(np.int16)

    def console(self) -> list[dict]:
        self.log += self.driver.get_log("browser")
        return self.log

    def reset(self) -> None:
        self.call(
            "v.setCut('none', 0.5); v.setFlip(false); v.setCaps(true); v.setEM(false);"
            "v.setOverlay(0.45);"
            "v.setOrtho(false); v.setView('home'); v.select(null);"
            "for (const n of v.objects()) v.setVisible(n, true);"
        )


@pytest.fixture(scope="module")
def browser(page):
    driver = start_browser()
    try:
        yield Page(driver, page)
    finally:
        driver.quit()


@pytest.fixture()
def viewer(browser):
    browser.reset()
    return browser


def _background(p: Page) -> np.ndarray:
    bg = p.call("return v.state().background;")
    return np.array([(bg >> 16) & 255, (bg >> 8) & 255, bg & 255], np.int16)


def _srgb8(rgba) -> np.ndarray:
    return np.round(np.asarray(rgba[:3]) * 255).astype(np.int16)


def test_page_loads_offline_with_webgl2_and_no_console_errors(viewer, scene):
    assert (
        viewer.ready["firstFrameMs"] > 0 and viewer.ready["readyMs"] >= viewer.ready["firstFrameMs"]
    )
    assert viewer.driver.current_url.startswith("file://")
    assert viewer.call("return !!document.createElement('canvas').getContext('webgl2');")
    st = viewer.call("return v.state();")
    assert st["webgl2"] and st["emAvailable"]
    assert st["software"] and not st["antialias"]  # SwiftShader: no multisampling
    assert viewer.call("return document.getElementById('status').textContent;") == ""
    remote = viewer.call(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
        ".filter((n) => !n.startsWith('data:') && !n.startsWith('blob:'));"
    )
    assert remote == []
    bad = [e for e in viewer.console() if e["level"] in ("SEVERE", "WARNING")]
    assert not bad, bad


def test_objects_are_scene_json_objects_with_their_meshes(viewer, scene):
    assert viewer.call("return v.objects();") == [o["name"] for o in scene["objects"]]
    stats = viewer.call("return v.meshStats();")
    for s, o in zip(stats, scene["objects"], strict=True):
        assert (s["faces"], s["vertices"]) == (o["faces"], o["vertices"]), o["name"]


def _biggest_opaque(scene, viewer, straddling_z=None):
    """The opaque object with the largest box (cut by the plane z = straddling_z if given)."""
    stats = {s["name"]: s for s in viewer.call("return v.meshStats();")}
    best = None
    for o in scene["objects"]:
        if o["color"][3] < 1:
            continue
        lo, hi = stats[o["name"]]["box"]
        if straddling_z is not None and not lo[2] < straddling_z < hi[2]:
            continue
        size = np.prod(np.subtract(hi, lo))
        if best is None or size > best[1]:
            best = (o, size)
    assert best, "no opaque object to look at"
    return best[0]


def test_hiding_an_object_changes_only_the_pixels_where_it_is(viewer, scene):
    obj = _biggest_opaque(scene, viewer)
    before = viewer.pixels()
    viewer.call("v.setVisible(args[0], false);", obj["name"])
    assert obj["name"] not in viewer.call("return v.state().visible;")
    hidden = viewer.pixels()
    changed = np.abs(hidden - before).max(axis=2) > 6
    assert changed.sum() > 200, "hiding the object changed nothing"
    x0, y0, x1, y1 = viewer.call("return v.screenBox(args[0]);", obj["name"])
    ys, xs = np.nonzero(changed)
    inside = (xs >= x0 - 3) & (xs <= x1 + 3) & (ys >= y0 - 3) & (ys <= y1 + 3)
    assert inside.mean() > 0.99, f"{(~inside).sum()} changed pixels outside {obj['name']}"
    viewer.call("v.setVisible(args[0], true);", obj["name"])
    assert np.abs(viewer.pixels() - before).max() <= 2


def test_the_cut_takes_away_exactly_what_lies_beyond_the_plane(viewer):
    # orthographic, looking along +Y: screen columns are X positions
    viewer.call("v.setOrtho(true); v.setView('front');")
    whole = viewer.pixels()
    bg = _background(viewer)
    viewer.call("v.setCut('x', 0.5);")
    cut = viewer.pixels()
    st = viewer.call("return v.state();")
    x_plane = st["cut"]["constant"]  # keeps x <= constant
    assert st["cut"]["normal"] == [-1, 0, 0]
    px = viewer.call("return v.project([args[0], 0, 0])[0];", x_plane)
    left, right = slice(0, int(px) - 2), slice(int(px) + 3, None)
    assert np.abs(cut[:, left] - whole[:, left]).max() <= 2, "the kept half changed"
    assert (np.abs(whole[:, right] - bg).max(axis=2) > 6).sum() > 500, "nothing to take away"
    assert np.abs(cut[:, right] - bg).max() <= 2, "something is left beyond the plane"
    # moving the plane moves the edge
    viewer.call("v.setCut('x', 0.75);")
    further = viewer.pixels()
    assert np.abs(further[:, left] - whole[:, left]).max() <= 2
    assert (np.abs(further[:, right] - cut[:, right]).max(axis=2) > 6).sum() > 200


def test_caps_fill_the_cut_with_the_class_colour(viewer, scene):
    viewer.call("v.setOrtho(true); v.setView('top'); v.setCut('z', 0.5);")
    z = viewer.call("return v.state().cut.constant;")
    obj = _biggest_opaque(scene, viewer, straddling_z=z)
    colour = _srgb8(obj["color"])
    x0, y0, x1, y1 = (round(c) for c in viewer.call("return v.screenBox(args[0]);", obj["name"]))

    def count(img):
        box = img[max(y0, 0) : y1, max(x0, 0) : x1]
        return int((np.abs(box - colour).max(axis=2) <= 3).sum())

    capped = count(viewer.pixels())
    viewer.call("v.setCaps(false);")
    open_cut = count(viewer.pixels())
    assert capped > 300 and capped > 5 * open_cut, (capped, open_cut)


def test_em_section_lies_on_the_cut(viewer):
    viewer.call("v.setOrtho(true); v.setView('top'); v.setCut('z', 0.5);")
    plain = viewer.pixels()
    viewer.call("v.setEM(true);")
    assert viewer.call("return v.state().em;")
    em = viewer.pixels()
    # the volume's box, projected: grey EM texture now fills it where it was background
    b = viewer.call("return v.manifest.bounds;")
    (xa, ya), (xb, yb) = (
        viewer.call("return v.project(args[0]);", p) for p in (b["min"], b["max"])
    )
    box = (
        slice(int(min(ya, yb)) + 3, int(max(ya, yb)) - 3),
        slice(int(min(xa, xb)) + 3, int(max(xa, xb)) - 3),
    )
    bg = _background(viewer)
    was_bg = np.abs(plain[box] - bg).max(axis=2) <= 2
    assert was_bg.sum() > 1000
    now = em[box][was_bg]
    assert (np.abs(now - bg).max(axis=1) > 6).mean() > 0.95, "no EM where the plane is"
    assert np.ptp(now[:, 0]) > 40, "the EM section has no contrast"
    assert np.abs(now[:, 0] - now[:, 2]).max() <= 2  # grey
    # moving the cut shows another section
    viewer.call("v.setCut('z', 0.3);")
    assert np.abs(viewer.pixels()[box][was_bg] - now).max(axis=1).mean() > 3


def test_caps_cover_the_em_section_cleanly_on_a_free_cut(viewer, scene):
    """Caps and the EM section share the plane: the caps must win everywhere, never flicker."""
    from scipy.ndimage import binary_erosion

    viewer.call("v.setOrtho(true); v.setView('home'); v.setCut([1, -1, 1], 0.5);")
    plain = viewer.pixels()
    best = None
    for o in scene["objects"]:
        if o["color"][3] == 1:
            mask = np.abs(plain - _srgb8(o["color"])).max(axis=2) <= 3
            if best is None or mask.sum() > best[1].sum():
                best = (o, mask)
    obj, mask = best
    inside = binary_erosion(mask, iterations=2)
    assert inside.sum() > 300, (obj["name"], inside.sum())
    viewer.call("v.setEM(true); v.setOverlay(1);")
    over_em = viewer.pixels()
    same = np.abs(over_em[inside] - _srgb8(obj["color"])).max(axis=1) <= 3
    assert same.mean() > 0.995, f"{(~same).sum()} of {inside.sum()} cap pixels show the EM"


def test_clicking_an_organelle_shows_its_measurements(viewer, scene):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    viewer.call("v.setOrtho(true); v.setView('top'); v.setCut('z', 0.5);")
    z = viewer.call("return v.state().cut.constant;")
    obj = _biggest_opaque(scene, viewer, straddling_z=z)
    img = viewer.pixels()
    ys, xs = np.nonzero(np.abs(img - _srgb8(obj["color"])).max(axis=2) <= 3)
    assert len(xs) > 50
    k = np.argmin((xs - np.median(xs)) ** 2 + (ys - np.median(ys)) ** 2)
    canvas = viewer.driver.find_element(By.ID, "scene")
    w, h = canvas.size["width"], canvas.size["height"]
    ActionChains(viewer.driver).move_to_element_with_offset(
        canvas, int(xs[k] - w // 2), int(ys[k] - h // 2)
    ).click().perform()
    st = viewer.call("return v.state();")
    assert st["selected"] == obj["name"]
    info = viewer.driver.find_element(By.ID, "info")
    assert info.is_displayed()
    text = info.text
    m = obj["measurements"]
    assert obj["name"] in text and "volume (µm³)" in text and "sphericity" in text
    assert f"{m['volume_um3']:.4g}" in text.replace(",", "")
    # a name in the list selects too; clicking empty space clears the selection
    first = viewer.driver.find_element(By.CSS_SELECTOR, "#tree .object .name")
    first.click()
    assert viewer.call("return v.state().selected;") == scene["objects"][0]["name"]
    ActionChains(viewer.driver).move_to_element_with_offset(
        canvas, -w // 2 + 3, -h // 2 + 3
    ).click().perform()
    assert viewer.call("return v.state().selected;") is None and not info.is_displayed()


def test_keyboard_shortcuts_and_help(viewer):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    body = viewer.driver.find_element(By.TAG_NAME, "body")
    help_box = viewer.driver.find_element(By.ID, "help")
    assert not help_box.is_displayed()
    body.send_keys("h")
    assert help_box.is_displayed() and "setCut(axis, fraction)" in help_box.text
    body.send_keys(Keys.ESCAPE)
    assert not help_box.is_displayed()
    body.send_keys("z")
    assert viewer.call("return v.state().cut.axis;") == "z"
    f0 = viewer.call("return v.state().cut.fraction;")
    body.send_keys("]")
    assert viewer.call("return v.state().cut.fraction;") == pytest.approx(f0 + 0.01)
    body.send_keys("e")
    assert viewer.call("return v.state().em;")
    body.send_keys("o")
    assert viewer.call("return v.state().ortho;")
    body.send_keys("z")
    assert viewer.call("return v.state().cut.axis;") == "none"


def test_screenshot_is_a_png_of_the_view_with_scale_bar(viewer):
    from PIL import Image

    url = viewer.call("return v.screenshot();")
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    size = viewer.call("const c = document.getElementById('scene'); return [c.width, c.height];")
    assert img.format == "PNG" and list(img.size) == size
    sb = viewer.call("return v.state().scaleBar;")
    assert sb["px"] > 20 and sb["label"].endswith("µm")
    assert viewer.call("return v.state().pixelsPerMicron;") * sb["um"] == pytest.approx(
        sb["px"], abs=1
    )
    bad = [e for e in viewer.console() if e["level"] in ("SEVERE", "WARNING")]
    assert not bad, bad


def test_page_without_the_volume_says_why(browser, page, run_dir, tmp_path):
    moved = tmp_path / "run"
    shutil.copytree(run_dir, moved)
    report = json.loads((moved / "report.json").read_text())
    report["input"]["path"] = str(tmp_path / "gone.tif")
    (moved / "report.json").write_text(json.dumps(report))
    other = Page(browser.driver, write_viewer(moved))
    try:
        assert not other.call("return v.state().emAvailable;")
        note = other.call("return document.getElementById('em-note').textContent;")
        assert "gone.tif was not found" in note
        assert other.call("return document.getElementById('chk-em').disabled;")
        other.call("v.setCut('z', 0.5); v.setEM(true);")  # asks for it anyway: no harm
        assert other.pixels().std() > 1
        bad = [e for e in browser.console() if e["level"] in ("SEVERE", "WARNING")]
        assert not bad, bad
    finally:
        browser.driver.get(page.resolve().as_uri())
        browser.call("await v.ready;")


def test_docs_image_of_the_page(browser, page, tmp_path):
    """The README's picture: a cut through the cells with filled caps, a plastid selected.

    Antialiased (``?antialias=1``), which the page leaves off for software renderers by itself.
    """
    viewer = Page(browser.driver, page, "?antialias=1")
    assert viewer.call("return v.state().antialias;")
    viewer.call(
        "v.setView('home'); v.setCut('z', 0.55); v.setEM(false);"
        "v.select(v.objects().find((n) => n.endsWith('/plastid')) || null);"
    )
    png = viewer.driver.get_screenshot_as_png()
    bad = [e for e in browser.console() if e["level"] in ("SEVERE", "WARNING")]
    assert not bad, bad
    # back to the page the other tests use
    browser.driver.get(page.resolve().as_uri())
    browser.call("await v.ready;")
    target = DOCS_IMAGE if os.environ.get("VEMCELL_DOCS_IMAGES") == "1" else tmp_path / "viewer.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_glb_keeps_names_and_micrometres_for_unity(run_dir, scene):
    """What docs/unity.md promises glTFast: plain glTF 2.0, one node per object by its name, µm."""
    import struct

    data = (run_dir / "scene.glb").read_bytes()
    magic, version, _ = struct.unpack("<4sII", data[:12])
    size, kind = struct.unpack("<I4s", data[12:20])
    gltf = json.loads(data[20 : 20 + size])
    assert (magic, version, kind, gltf["asset"]["version"]) == (b"glTF", 2, b"JSON", "2.0")
    assert not gltf.get("extensionsRequired") and not gltf.get("extensionsUsed")
    assert [n["name"] for n in gltf["nodes"]] == [o["name"] for o in scene["objects"]]
    # positions in µm, glTF Y up = vemcell Z: within the 80×96×96 volume of 20 nm voxels
    extent_zyx = np.array([80, 96, 96]) * 0.02
    for mesh in gltf["meshes"]:
        acc = gltf["accessors"][mesh["primitives"][0]["attributes"]["POSITION"]]
        lo, hi = np.array(acc["min"]), np.array(acc["max"])
        assert lo[0] >= -0.03 and hi[0] <= extent_zyx[2] + 0.03  # X
        assert lo[1] >= -0.03 and hi[1] <= extent_zyx[0] + 0.03  # Y up = Z
        assert -hi[2] >= -0.03 and -lo[2] <= extent_zyx[1] + 0.03  # Z = -Y
