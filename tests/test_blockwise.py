"""Blockwise runs on dask.distributed equal the in-memory pipeline; killed workers and reruns.

Every test shares one LocalCluster of 2 single-threaded worker processes and uses small blocks,
so objects span several blocks: touching cells joined by a neck, a U-shaped and a spiral
organelle, specks on block faces. The band model is pointwise, so the segmentation itself is
exact and any difference would come from the blockwise steps.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tiny_models import make_band_model
from vemcell.errors import VemcellError
from vemcell.io.volumes import write_tiff
from vemcell.options import RunOptions

pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")
cc3d = pytest.importorskip("cc3d")

pytestmark = pytest.mark.slow

SHAPE = (64, 96, 128)


def cells_volume(path: Path, shape=SHAPE, seed: int = 0) -> Path:
    """Two touching cells joined by a neck and a small third one, 20 nm voxels: a nucleus, a
    U-shaped and a spiral organelle, noise, and 3-4 voxel specks (some on block faces)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    img = np.full(shape, 0.1, np.float32)
    for cz, cy, cx, r in ((32, 40, 34, 22), (32, 40, 74, 20), (34, 78, 104, 16)):
        img[((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) < r * r] = 0.5
    img[((z - 32) ** 2 + (y - 40) ** 2 + (x - 34) ** 2) < 64] = 0.9
    arms = (abs(x - 66) < 3) | (abs(x - 82) < 3)
    u = (abs(z - 32) < 3) & (
        (arms & (abs(y - 44) < 10)) | ((abs(y - 53) < 3) & (x > 63) & (x < 85))
    )
    img[u] = 0.65
    for t in np.linspace(0, 4 * np.pi, 400):
        pz, py, px = int(22 + t * 1.5), int(40 + 12 * np.sin(t)), int(34 + 12 * np.cos(t))
        img[pz - 1 : pz + 2, py - 1 : py + 2, px - 1 : px + 2] = 0.65
    for _ in range(40):
        pz, py, px = (int(rng.integers(5, n - 5)) for n in shape)
        k = int(rng.integers(3, 5))
        img[pz : pz + k, py : py + k, px : px + k] = 0.65
    img += rng.normal(0, 0.02, shape).astype(np.float32)
    write_tiff(path, (np.clip(img, 0, 1) * 255).astype(np.uint8), (20.0, 20.0, 20.0))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("blockwise")
    card = make_band_model(
        d / "models",
        name="band4",
        centres=(0.1, 0.5, 0.65, 0.9),
        class_names=("background", "cytoplasm", "mitochondrion", "nucleus"),
        tile=64,
        voxel_size_nm=20.0,
        normalisation={"method": "scale"},
    )
    c = json.loads(card.read_text())
    c["min_size_um3"] = {"mitochondrion": 100 * 8000 / 1e9}  # 100 voxels
    card.write_text(json.dumps(c))
    vol = cells_volume(d / "cells.tif")
    from vemcell import pipeline

    opt = RunOptions(model=str(card), threads=1)
    report = pipeline.run(vol, d / "memory", opt)
    return {"dir": d, "card": card, "volume": vol, "options": opt, "memory": report}


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit="2GB",
            dashboard_address="127.0.0.1:0",
        ) as lc,
        Client(lc) as client,
    ):
        yield lc, client


def read_zarr(path: Path) -> np.ndarray:
    return np.asarray(zarr.open_array(str(path), mode="r")[...])


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def assert_equal_to_memory(setup, out: Path) -> None:
    mem = setup["dir"] / "memory"
    la, lb = tifffile.imread(mem / "labels.tif"), read_zarr(out / "labels.ome.zarr" / "0")
    assert (la == lb).mean() >= 0.999
    ca, cb = tifffile.imread(mem / "cells.tif"), read_zarr(out / "cells.ome.zarr" / "0")
    assert ca.max() == cb.max() >= 2
    for i in range(1, int(ca.max()) + 1):  # one to one at IoU ≥ 0.99
        a = ca == i
        j = np.bincount(cb[a]).argmax()
        b = cb == j
        assert (a & b).sum() / (a | b).sum() >= 0.99
    ra, rb = rows(mem / "measurements.csv"), rows(out / "measurements.csv")
    assert len(ra) == len(rb) >= 4
    for a, b in zip(ra, rb, strict=True):
        assert (a["cell"], a["class_name"], a["components"]) == (
            b["cell"],
            b["class_name"],
            b["components"],
        )
        for k in ("voxels", "volume_um3", "surface_area_um2"):
            assert float(b[k]) == pytest.approx(float(a[k]), rel=0.005), (a, b, k)
    report = json.loads((out / "report.json").read_text())
    assert report["watertight"] == report["meshes"] == len(rb)
    assert (
        report["segmentation"]["specks_removed"]
        == setup["memory"]["segmentation"]["specks_removed"]
    )
    assert report["segmentation"]["specks_removed"]["mitochondrion"] > 10


@pytest.mark.parametrize("block", [(24, 32, 40), (16, 48, 24), (64, 96, 128)])
def test_blockwise_equals_in_memory(setup, cluster, tmp_path, block):
    from vemcell.blockwise import run_blockwise

    out = tmp_path / "run"
    report = run_blockwise(
        setup["volume"],
        out,
        setup["options"],
        scheduler=cluster[0].scheduler_address,
        block=block,
    )
    assert report["mode"] == "blockwise"
    assert report["blockwise"]["blocks"] == int(
        np.prod([-(-n // b) for n, b in zip(SHAPE, block, strict=True)])
    )
    assert_equal_to_memory(setup, out)
    assert not (out / ".work").exists()
    # every cell has its own glb, the scene shows the largest, neuroglancer meshes and names
    scene = json.loads((out / "scene.json").read_text())
    assert len(scene["cell_glbs"]) == 2
    for rel in scene["cell_glbs"].values():
        assert (out / rel).is_file()
    info = json.loads((out / "neuroglancer/mesh/segment_properties/info").read_text())
    assert len(info["inline"]["ids"]) == len(scene["objects"])
    import zmesh

    for sid in info["inline"]["ids"]:
        manifest = json.loads((out / f"neuroglancer/mesh/{sid}:0").read_text())
        frag = (out / "neuroglancer/mesh" / manifest["fragments"][0]).read_bytes()
        mesh = zmesh.Mesh.from_precomputed(frag)
        assert len(mesh.faces) > 0 and mesh.vertices.max() > 100  # nm, not µm


def test_ome_zarr_metadata_and_levels(setup, cluster, tmp_path):
    from vemcell.blockwise import run_blockwise
    from vemcell.blockwise.ngff import read_level
    from vemcell.meshes.scene import cells_by_size

    out = tmp_path / "run"
    run_blockwise(
        setup["volume"],
        out,
        setup["options"],
        scheduler=cluster[0].scheduler_address,
        block=(32, 48, 64),
    )
    attrs = dict(zarr.open_group(str(out / "labels.ome.zarr"), mode="r").attrs)["ome"]
    ms = attrs["multiscales"][0]
    assert [a["unit"] for a in ms["axes"]] == ["nanometer"] * 3
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [20.0, 20.0, 20.0]
    assert [p["class"] for p in attrs["image-label"]["properties"]] == [
        "background",
        "cytoplasm",
        "mitochondrion",
        "nucleus",
    ]
    full, voxel = read_level(out / "labels.ome.zarr", max_voxels=10**9)
    assert full.shape == SHAPE and voxel == (20.0, 20.0, 20.0)
    small, voxel = read_level(out / "labels.ome.zarr", max_voxels=200_000)
    assert small.shape == (32, 48, 64) and voxel == (40.0, 40.0, 40.0)
    assert np.array_equal(small, full[::2, ::2, ::2])
    em, voxel = read_level(out / "em.ome.zarr", max_voxels=10**9)  # the EM for viewers
    assert voxel == (40.0, 40.0, 40.0) and not (out / "em.ome.zarr" / "0").exists()
    assert np.array_equal(em, tifffile.imread(setup["volume"])[::2, ::2, ::2])
    assert json.loads((out / "report.json").read_text())["em_preview"] == "em.ome.zarr"
    listed = cells_by_size(out)
    assert [c["cell"] for c in listed] == [1, 2]  # cell 1 is the larger
    assert listed[0]["volume_um3"] > listed[1]["volume_um3"] > 0
    assert all((out / c["glb"]).is_file() for c in listed)


def test_connected_components_match_cc3d_over_block_shapes(cluster, tmp_path):
    from scipy import ndimage as ndi

    from vemcell.blockwise import labels
    from vemcell.blockwise.engine import Runner
    from vemcell.blockwise.plan import Plan, Work

    rng = np.random.default_rng(1)
    vol = ndi.gaussian_filter(rng.random((30, 34, 38)), 1.5)
    cls = np.digitize(vol, [0.48, 0.52]).astype(np.uint8)
    for k, block in enumerate([(8, 8, 8), (9, 17, 11), (30, 10, 38)]):
        plan = Plan.make(cls.shape, block)
        work = Work(tmp_path / str(k), plan)
        src = work.create("cls", np.uint8)
        zarr.open_array(src, mode="r+")[...] = cls
        runner = Runner(cluster[1], work)
        for conn in (26, 6):
            lab = labels.label(runner, f"c{conn}", src, connectivity=conn)
            got = labels.read_components(lab, plan, tuple(slice(0, n) for n in cls.shape))
            ref = cc3d.connected_components(cls, connectivity=conn)
            pairs = np.unique(np.stack([got.ravel(), ref.ravel()]), axis=1)
            assert lab.n == ref.max() == pairs.shape[1] - 1  # the same partition
            assert np.array_equal(np.bincount(got.ravel(), minlength=lab.n + 1), lab.sizes) or (
                np.array_equal(np.bincount(got.ravel(), minlength=lab.n + 1)[1:], lab.sizes[1:])
            )


def packed_cells(shape=(56, 80, 88), n=26, seed=3) -> np.ndarray:
    """Touching balls of 8-13 voxels (0.3-0.5 µm at 40 nm), many across block faces, a long
    tube (longer than the watershed's halo, seeded only at its bulge) and a speck-sized cell."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    mask = np.zeros(shape, bool)
    for _ in range(n):
        r = rng.uniform(8, 13)
        c = [rng.uniform(r / 2, s - r / 2) for s in shape]
        mask |= (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r * r
    tube = np.zeros(shape, bool)
    tube[(z - 8) ** 2 + (y - 8) ** 2 < 36] = True  # radius 6 along X: no seed of its own
    tube |= (z - 10) ** 2 + (y - 10) ** 2 + (x - 8) ** 2 < 100
    mask[:, :20, :] = False
    mask |= tube
    mask[50:53, 70:73, 2:5] = True
    return mask


@pytest.mark.parametrize(
    ("block", "strays"), [((16, 16, 16), True), ((20, 27, 13), True), ((56, 32, 88), False)]
)
def test_blockwise_watershed_equals_in_memory_over_block_shapes(cluster, tmp_path, block, strays):
    """Seeds, flooding and small-region merging agree with separate_cells on the coarse grid,
    including a tube longer than the halo (its far end is flooded on in later passes) and a
    region flooded inside a halo that misses the seed winning there globally (made stray)."""
    from vemcell.blockwise import watershed
    from vemcell.blockwise.engine import Runner
    from vemcell.blockwise.plan import Plan, Work
    from vemcell.cells.separate import separate_cells

    mask, voxel = packed_cells(), (40.0, 40.0, 40.0)
    ref = separate_cells(mask, voxel, work_nm=None)
    assert ref.max() >= 8
    plan = Plan.make(mask.shape, block)
    work = Work(tmp_path, plan)
    src = work.create("mask", np.uint8)
    zarr.open_array(src, mode="r+")[...] = mask
    out = work.create("cells", np.uint16)
    report = watershed.separate(
        Runner(cluster[1], work), plan, src, watershed.Settings.defaults(voxel), out
    )
    got = read_zarr(Path(out))
    assert report["cells"] == ref.max()
    assert max(report["halo_voxels"]) < max(mask.shape)  # the halo does not cover the volume
    assert (report["stray_voxels"] > 0) == strays
    assert report["stray_voxels_merged"] == 0
    assert np.array_equal(got, ref), (got != ref).mean()


def test_the_em_preview_takes_every_second_voxel_whatever_the_block_shape(tmp_path):
    from vemcell.blockwise import ngff
    from vemcell.blockwise import segment as bseg
    from vemcell.blockwise.plan import Plan

    full = np.random.default_rng(4).integers(0, 255, (21, 130, 17), dtype=np.uint8)
    src = tmp_path / "v.tif"
    write_tiff(src, full, (20.0, 20.0, 20.0))
    (level1,) = ngff.create(str(tmp_path / "em.ome.zarr"), full.shape, (8, 9, 11), np.uint8, 1)
    for block in Plan.make(ngff.level_shapes(full.shape)[1], (8, 9, 11)).blocks:
        bseg.preview_block(block, str(src), (20.0, 20.0, 20.0), level1)
    assert np.array_equal(read_zarr(Path(level1)), full[::2, ::2, ::2])


def test_zoom_by_blocks_equals_scipy_zoom():
    from scipy import ndimage as ndi

    from vemcell.blockwise.cells import zoom_coordinates

    a = (np.random.default_rng(2).random((17, 13, 11)) > 0.5).astype(np.uint8) * 254
    shape = (9, 7, 6)
    ref = ndi.zoom(a, np.asarray(shape) / np.asarray(a.shape), order=1)
    coords = [zoom_coordinates(n, s, 0, s) for n, s in zip(a.shape, shape, strict=True)]
    got = ndi.map_coordinates(a, np.meshgrid(*coords, indexing="ij"), order=1)
    assert np.array_equal(ref, got)


class _Stop(Exception):
    pass


class _StopAfter:
    """A progress that stops the run after ``n`` block updates of the segmentation."""

    def __init__(self, n: int) -> None:
        self.n = n

    def stage(self, name, message=""):
        import contextlib

        self.name = name
        return contextlib.nullcontext(self)

    def update(self, fraction, message="", force=False):
        if self.name == "segment" and message.startswith("segment:"):
            self.n -= 1
            if self.n <= 0:
                raise _Stop

    def done(self, message=""):
        pass


def test_a_rerun_resumes_from_the_blocks_already_done(setup, cluster, tmp_path):
    from vemcell.blockwise import run_blockwise

    out = tmp_path / "run"
    kw = {"scheduler": cluster[0].scheduler_address, "block": (32, 48, 64)}
    with pytest.raises(_Stop):
        run_blockwise(setup["volume"], out, setup["options"], progress=_StopAfter(3), **kw)
    done = list((out / ".work" / "done" / "segment").glob("*.pkl"))
    assert len(done) >= 3 and not (out / "report.json").exists()
    report = run_blockwise(setup["volume"], out, setup["options"], **kw)
    assert report["blockwise"]["resumed"] is True
    assert_equal_to_memory(setup, out)


def test_a_killed_worker_loses_nothing(setup, tmp_path):
    from distributed import Client, LocalCluster

    from vemcell.blockwise import run_blockwise

    out = tmp_path / "run"
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit="2GB",
            dashboard_address="127.0.0.1:0",
        ) as lc,
        Client(lc) as client,
    ):
        pids = list(client.run(os.getpid).values())
        killed: list[int] = []

        def kill_when_started() -> None:
            ledger = out / ".work" / "done" / "segment"
            for _ in range(600):
                if ledger.exists() and len(list(ledger.glob("*.pkl"))) >= 2:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                    return
                time.sleep(0.05)

        t = threading.Thread(target=kill_when_started)
        t.start()
        report = run_blockwise(
            setup["volume"],
            out,
            setup["options"],
            scheduler=lc.scheduler_address,
            block=(16, 24, 32),
        )
        t.join()
    assert killed, "the worker was not killed during the run"
    assert report["blockwise"]["blocks"] == 64
    assert_equal_to_memory(setup, out)


def test_blockwise_refuses_what_it_cannot_do(setup, tmp_path):
    from vemcell.blockwise import run_blockwise

    vol = tmp_path / "coarse.tif"
    write_tiff(vol, np.zeros((32, 32, 32), np.uint8), (40.0, 40.0, 40.0))
    with pytest.raises(VemcellError, match="model's grid"):
        run_blockwise(vol, tmp_path / "a", setup["options"], workers=1)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(VemcellError, match="not a vemcell run"):
        run_blockwise(setup["volume"], foreign, setup["options"], workers=1)
    with pytest.raises(VemcellError, match="leaves each"):
        run_blockwise(setup["volume"], tmp_path / "c", setup["options"], memory_limit="100MB")
    with pytest.raises(VemcellError, match="--block"):
        run_blockwise(setup["volume"], tmp_path / "b", setup["options"], block=(4, 4, 4))


def test_cli_goes_blockwise_when_the_volume_does_not_fit(setup, tmp_path, capsys, monkeypatch):
    from vemcell.blockwise import route
    from vemcell.cli.main import main

    vol = setup["volume"]
    assert route.choose_route(vol) == (False, "fits in memory")
    assert route.choose_route(vol, memory_limit="1MB")[0] is True
    monkeypatch.setattr(route, "BYTES_PER_VOXEL", 10_000)  # as if it were 8 GB in memory
    out = tmp_path / "run"
    args = ["run", str(vol), "--out", str(out), "--model", str(setup["card"]), "--threads", "1"]
    rc = main([*args, "--memory-limit", "4GB", "--block", "32", "48", "64", "--progress", "json"])
    assert rc == 0, capsys.readouterr().err
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert any(x["message"] == "segment: block 8/8" for x in lines)
    assert lines[-1]["stage"] == "result"
    fractions = [x["fraction"] for x in lines]
    assert fractions == sorted(fractions)  # the bar never goes back
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "blockwise" and report["blockwise"]["workers"] == 2
    assert_equal_to_memory(setup, out)


def test_lazy_readers_read_regions_like_the_whole_volume(tmp_path):
    from vemcell.io.lazy import open_lazy
    from vemcell.io.volumes import read_volume

    a = np.random.default_rng(3).integers(0, 255, (6, 20, 24), dtype=np.uint8)
    folder = tmp_path / "slices"
    folder.mkdir()
    for z in range(a.shape[0]):
        tifffile.imwrite(folder / f"s{z}.tif", a[z])
    tifffile.imwrite(tmp_path / "packed.tif", a, compression="zlib")
    write_tiff(tmp_path / "plain.tif", a, (5.0, 4.0, 4.0))
    box = (slice(1, 5), slice(3, 17), slice(2, 23))
    for path in (folder, tmp_path / "packed.tif", tmp_path / "plain.tif"):
        vol = open_lazy(path)
        assert vol.shape == a.shape
        assert np.array_equal(np.asarray(vol.data[box]), a[box]), path
    assert (
        open_lazy(tmp_path / "plain.tif").voxel_size_nm
        == read_volume(tmp_path / "plain.tif").voxel_size_nm
        == (5.0, 4.0, 4.0)
    )


def test_the_distance_halo_stops_at_its_cap_in_resin_free_tissue(tmp_path, monkeypatch):
    """A block deep inside resin-free tissue does not grow its halo to the whole volume."""
    from vemcell.blockwise import watershed
    from vemcell.blockwise.plan import Plan, Work

    mask = np.ones((48, 48, 48), bool)
    mask[:, :, :2] = False  # resin only along one side, far from the middle block
    plan = Plan.make(mask.shape, (16, 16, 16))
    work = Work(tmp_path, plan)
    src = work.create("mask", np.uint8)
    zarr.open_array(src, mode="r+")[...] = mask
    out = work.create("dist", np.float32)
    s = watershed.Settings.defaults((40.0, 40.0, 40.0))
    middle = plan.block_at((1, 1, 1))
    top, capped = watershed.distance_block(middle, plan.shape, src, s, 2, out)
    assert not capped and top == pytest.approx(0.040 * 30)  # x = 16..31, the resin at x = 1
    monkeypatch.setattr(watershed, "MAX_OUTER_VOXELS", 20**3)
    top, capped = watershed.distance_block(middle, plan.shape, src, s, 2, out)
    assert capped and top == pytest.approx(0.040 * 2)  # only up to the halo it could afford


def test_the_watershed_halo_shrinks_to_the_budget_and_stops():
    """A block over the voxel budget on its own gets a halo of 1 instead of looping forever."""
    from vemcell.blockwise import watershed

    s = watershed.Settings.defaults((40.0, 40.0, 40.0))
    halo, shrunk = watershed.flood_halo(0.7, s, (96, 96, 96))
    assert not shrunk and halo == (44, 44, 44)
    halo, shrunk = watershed.flood_halo(0.7, s, (400, 400, 400))  # 64 M voxels > 48 M
    assert shrunk and halo == (1, 1, 1)
