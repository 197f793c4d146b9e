"""Neuroglancer itself reads a blockwise run: the real client (the ``neuroglancer`` package's
bundled build) in Debian's headless Chromium, the run folder served with CORS by the package's
``StaticFileServer`` as docs/blockwise.md tells users to.

Checked through the client, not through our own readers: the precomputed legacy meshes render
where the voxels of their objects are (nm, x/y/z, every object), the segment properties give
every id its label, class tag and volume (and Neuroglancer's segment queries use them, also for
class names with spaces), and ``cells.ome.zarr`` and ``labels.ome.zarr`` (Zarr v3, OME-NGFF 0.5)
are decoded voxel for voxel. No console errors about the served files are allowed."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import headless_chromium
from tiny_models import make_cells_model, two_cells_image

pytestmark = pytest.mark.slow

BLOCK = (32, 32, 32)  # the 48×64×96 volume in 2×2×3 blocks: every object crosses blocks
PX_NM = 10.0  # screenshots at 10 nm a pixel: a 20 nm voxel is 2×2 pixels
COLOURS = ("#ff0000", "#0000ff")  # cell 1 red, cell 2 blue


def _why_not() -> str | None:
    gone = headless_chromium.missing()
    try:
        import neuroglancer  # noqa: F401
    except ImportError:
        gone.append("the neuroglancer package")
    if gone:
        return (
            f"Neuroglancer cannot run here ({', '.join(gone)} missing): apt-get install "
            "chromium chromium-driver, and pip install selenium neuroglancer."
        )
    return None


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    if reason := _why_not():
        pytest.skip(reason)
    pytest.importorskip("distributed")
    from vemcell.blockwise import run_blockwise
    from vemcell.io.volumes import write_tiff
    from vemcell.options import RunOptions

    d = tmp_path_factory.mktemp("neuroglancer")
    card = make_cells_model(d / "models")
    write_tiff(d / "cells.tif", two_cells_image(), (20.0, 20.0, 20.0))
    out = d / "run"
    run_blockwise(
        d / "cells.tif", out, RunOptions(model=str(card), threads=1), workers=2, block=BLOCK
    )
    return out


class Client:
    """A Neuroglancer viewer (Python side) and the browser that runs its client."""

    def __init__(self, viewer, driver, data: str) -> None:
        self.viewer, self.driver, self.data = viewer, driver, data
        self.log: list[dict] = []

    def errors(self) -> list[str]:
        """Console errors so far about the served run (or from Neuroglancer's code), but the
        404s of ``zarr://`` probing for Zarr v2 metadata before it reads ``zarr.json``."""
        self.log += self.driver.get_log("browser")
        host = self.data.split("/")[2]
        return [
            e["message"]
            for e in self.log
            if e["level"] == "SEVERE"
            and (host in e["message"] or e.get("source") == "javascript")
            and not re.search(r"/\.z(array|attrs|group) - .* 404 ", e["message"])
        ]

    def screenshot(self, size: tuple[int, int], timeout: float = 30.0) -> np.ndarray:
        """RGB pixels of the data panel at ``size``, of the current state with every visible
        chunk loaded (as ``neuroglancer.webdriver``'s ``sync``: the reply's state is ours)."""
        config = self.viewer.config_state
        prior = config.state
        with config.txn() as s:
            s.show_ui_controls = False
            s.show_panel_borders = False
            s.viewer_size = list(size)
        end = time.monotonic() + timeout
        try:
            while time.monotonic() < end:
                reply = self._screenshot_reply(end - time.monotonic())
                if reply is None:
                    break
                shot = reply.screenshot
                if (shot.width, shot.height) == tuple(size) and (
                    reply.viewer_state == self.viewer.state
                ):
                    return np.asarray(shot.image_pixels)[..., :3].astype(np.int16)
                time.sleep(0.1)
            pytest.fail(f"Neuroglancer never drew the state at {size}: {self.errors()}")
        finally:
            config.set_state(prior)

    def _screenshot_reply(self, timeout: float):
        done = threading.Event()
        got = []

        def take(reply) -> None:
            got.append(reply)
            done.set()

        self.viewer.async_screenshot(take)
        return got[0] if done.wait(max(0.0, timeout)) else None

    def segment_lists(
        self, query: str, want: dict, layer: str = "objects", timeout: float = 20.0
    ) -> list[dict]:
        """The layer panel's two segment lists (query matches, then visible): id -> label text,
        once the first is ``want`` (or at the timeout)."""
        script = """
        return [...document.querySelectorAll('.neuroglancer-segment-list')].map((list) =>
          Object.fromEntries([...list.querySelectorAll('.neuroglancer-segment-list-entry')]
            .map((e) => [e.querySelector('.neuroglancer-segment-list-entry-id'),
                         e.querySelector('.neuroglancer-segment-list-entry-name')])
            .filter(([i, n]) => i && n && /^[0-9]+$/.test(i.textContent))
            .map(([i, n]) => [i.textContent, n.textContent.trim()])));"""
        with self.viewer.txn() as s:
            s.layers[layer].segment_query = query
        end = time.monotonic() + timeout
        while True:
            lists = self.driver.execute_script(script)
            if (len(lists) == 2 and lists[0] == want) or time.monotonic() > end:
                return lists
            time.sleep(0.2)


@pytest.fixture(scope="module")
def client(run):
    import neuroglancer
    from neuroglancer.static_file_server import StaticFileServer

    server = StaticFileServer(str(run), bind_address="127.0.0.1", daemon=True)
    driver = headless_chromium.start(
        (1000, 700), 60, console_log=True, extra_flags=[headless_chromium.LOOPBACK_ONLY]
    )
    try:
        viewer = neuroglancer.Viewer()  # its server binds 127.0.0.1 by default
        driver.get(viewer.get_viewer_url())
        c = Client(viewer, driver, server.url)
        with viewer.txn() as s:
            s.dimensions = neuroglancer.CoordinateSpace(
                names=["x", "y", "z"], units="nm", scales=[1, 1, 1]
            )
            s.layers["objects"] = neuroglancer.SegmentationLayer(
                source=f"precomputed://{c.data}/neuroglancer/mesh"
            )
            for name in ("cells", "labels"):
                s.layers[name] = neuroglancer.SegmentationLayer(
                    source=f"zarr://{c.data}/{name}.ome.zarr"
                )
                s.layers[name].visible = False
            s.show_slices = False
            s.show_axis_lines = False
            s.show_scale_bar = False
            s.cross_section_background_color = "#000000"
            s.projection_background_color = "#000000"
        yield c
    finally:
        driver.quit()
        server.stop()


@pytest.fixture(scope="module")
def volumes(run):
    import zarr

    return {
        name: np.asarray(zarr.open_array(str(run / f"{name}.ome.zarr" / "0"), mode="r")[...])
        for name in ("cells", "labels")
    }


@pytest.fixture(scope="module")
def objects(run) -> list[dict]:
    return json.loads((run / "scene.json").read_text())["objects"]


def _frame(client, layout, shape, z: int | None = None) -> None:
    """Centre the view on the volume (voxel centres at i × 20 nm) at :data:`PX_NM`."""
    nz, ny, nx = shape
    with client.viewer.txn() as s:
        s.layout = layout
        s.position = [(nx - 1) * 10.0, (ny - 1) * 10.0, (z if z is not None else nz // 2) * 20.0]
        s.cross_section_scale = PX_NM
        s.projection_scale = ny * 20.0  # the panel's height in nm


def _size(shape) -> tuple[int, int]:
    return int(shape[2] * 20 / PX_NM), int(shape[1] * 20 / PX_NM)


def _upsample(a: np.ndarray) -> np.ndarray:
    k = int(20 / PX_NM)
    return np.repeat(np.repeat(a, k, 0), k, 1)


def test_meshes_render_where_their_voxels_are(client, volumes, objects):
    """Each class's meshes, cell 1 red and cell 2 blue, seen along z in an orthographic 3D view:
    every object's silhouette is the z projection of its voxels, centred on it to a quarter
    pixel (2.5 nm: a half-voxel slip between meshes and volume would be 10 nm)."""
    import neuroglancer

    cells, labels = volumes["cells"], volumes["labels"]
    _frame(client, neuroglancer.DataPanelLayout("3d", orthographic_projection=True), cells.shape)
    for class_name in sorted({o["class_name"] for o in objects}):
        mine = {o["cell"]: o for o in objects if o["class_name"] == class_name}
        assert sorted(mine) == [1, 2]
        with client.viewer.txn() as s:
            layer = s.layers["objects"]
            layer.segments = [mine[c]["neuroglancer_id"] for c in (1, 2)]
            layer.segment_colors = {mine[c]["neuroglancer_id"]: COLOURS[c - 1] for c in (1, 2)}
        px = client.screenshot(_size(cells.shape))
        r, b = px[..., 0], px[..., 2]
        seen = {1: (r > 40) & (r > 2 * b), 2: (b > 40) & (b > 2 * r)}
        for c in (1, 2):
            cls = mine[c]["class_index"]
            want = _upsample(((cells == c) & (labels == cls)).any(axis=0))
            iou = (want & seen[c]).sum() / (want | seen[c]).sum()
            assert iou > 0.9, f"{class_name} of cell {c}: silhouette IoU {iou:.3f}"
            shift = np.argwhere(seen[c]).mean(axis=0) - np.argwhere(want).mean(axis=0)
            assert np.abs(shift).max() < 0.25, f"{class_name} of cell {c}: off by {shift} px"
    assert client.errors() == []


def test_segment_properties_label_tag_and_query(client, objects):
    """The layer's segment list names every id from segment_properties; tag and numerical
    queries select by class and by volume; the selected segments are the visible list."""
    names = {str(o["neuroglancer_id"]): f"{o['name']} #{o['class_name']}" for o in objects}
    chosen = [o["neuroglancer_id"] for o in objects if o["cell"] == 1]
    with client.viewer.txn() as s:
        s.layout = "xy"
        s.layers["objects"].segments = chosen
        s.layers["objects"].tab = "segments"
        s.selected_layer.layer = "objects"
        s.selected_layer.visible = True
    matches, visible = client.segment_lists("", names)
    assert matches == names
    assert visible == {str(i): names[str(i)] for i in chosen}

    nucleus = {k: v for k, v in names.items() if v.endswith("#nucleus")}
    assert 0 < len(nucleus) < len(names)
    assert client.segment_lists("#nucleus", nucleus)[0] == nucleus

    vols = {str(o["neuroglancer_id"]): o["measurements"]["volume_um3"] for o in objects}
    cut = (min(vols.values()) + max(vols.values())) / 2
    big = {k: names[k] for k, v in vols.items() if v > cut}
    assert 0 < len(big) < len(names)
    assert client.segment_lists(f"volume_um3>{cut:.6g}", big)[0] == big
    with client.viewer.txn() as s:
        s.selected_layer.visible = False
        s.layers["objects"].segment_query = ""
    assert client.errors() == []


def test_tags_have_no_spaces_and_differ_ignoring_case():
    from vemcell.blockwise.meshes import neuroglancer_tags

    assert neuroglancer_tags(["lipid droplet", "Lipid_Droplet", "#er", "ER"]) == {
        "lipid droplet": "lipid_droplet",
        "Lipid_Droplet": "Lipid_Droplet_2",
        "#er": "er",
        "ER": "ER_2",
    }


def test_class_names_with_spaces_are_tags_neuroglancer_can_query(run, client, objects):
    """Neuroglancer's tags may not contain spaces (its query ``#lipid droplet`` is "Invalid tag:
    lipid"): the writer joins them with ``_``, and the client finds the class by that tag."""
    import neuroglancer

    from vemcell.blockwise.meshes import write_neuroglancer_info

    spaced = [
        {**o, "oid": o["neuroglancer_id"], "class_name": o["class_name"].replace("nuc", "Nuc  ")}
        for o in objects
    ]
    write_neuroglancer_info(str(run / "spaced"), spaced)  # properties only: no fragments needed
    want = {
        str(o["oid"]): f"{o['name']} #{o['class_name'].replace('  ', '_')}"
        for o in spaced
        if o["class_name"].startswith("Nuc")
    }
    assert want and all("#Nuc_leus" in v for v in want.values())
    with client.viewer.txn() as s:
        s.layers["spaced"] = neuroglancer.SegmentationLayer(
            source=f"precomputed://{client.data}/spaced/neuroglancer/mesh"
        )
        s.layers["spaced"].tab = "segments"
        s.selected_layer.layer = "spaced"
        s.selected_layer.visible = True
    try:
        assert client.segment_lists("#nuc_leus", want, layer="spaced")[0] == want
    finally:
        with client.viewer.txn() as s:
            s.selected_layer.visible = False
            del s.layers["spaced"]
    assert client.errors() == []


@pytest.mark.parametrize("name", ["cells", "labels"])
def test_ome_zarr_is_read_voxel_for_voxel(client, volumes, name):
    """A cross-section through the middle of the volume, ids 1 and 2 (cells; cytoplasm and
    nucleus) in their colours: every pixel is the colour of the voxel under it (the frame's
    one-pixel edge aside)."""
    vol = volumes[name]
    z = vol.shape[0] // 2
    _frame(client, "xy", vol.shape, z=z)
    with client.viewer.txn() as s:
        s.layers["objects"].segments = []
        for other in ("cells", "labels"):
            s.layers[other].visible = other == name
        s.layers[name].segments = [1, 2]
        s.layers[name].segment_colors = {1: COLOURS[0], 2: COLOURS[1]}
    px = client.screenshot(_size(vol.shape))
    seen = np.where(px[..., 0] > 128, 1, np.where(px[..., 2] > 128, 2, 0))
    want = _upsample(vol[z])
    assert set(np.unique(want)) == {0, 1, 2}
    inner = (slice(1, -1), slice(1, -1))
    assert np.array_equal(seen[inner], want[inner])
    assert client.errors() == []
