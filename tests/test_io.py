"""Volume reading: every format, its voxel size, and one clear sentence for every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from conftest import shared_data
from vemcell.cli.main import main
from vemcell.errors import VemcellError
from vemcell.io.volumes import read_tiff_info, read_volume, write_tiff


def stack(shape=(5, 12, 16), dtype=np.uint8, seed=0):
    return np.random.default_rng(seed).integers(0, 200, shape).astype(dtype)


def test_imagej_tiff_roundtrip_keeps_voxel_size(tmp_path):
    data = stack()
    write_tiff(tmp_path / "a.tif", data, (40.0, 5.0, 6.0), metadata={"k": 1})
    vol = read_volume(tmp_path / "a.tif")
    np.testing.assert_array_equal(vol.array(), data)
    assert vol.voxel_size_nm == pytest.approx((40.0, 5.0, 6.0))
    assert vol.voxel_size_source == "metadata"
    assert read_tiff_info(tmp_path / "a.tif") == {"k": 1}


def test_imagej_micron_units(tmp_path):
    tifffile.imwrite(
        tmp_path / "um.tif",
        stack(),
        imagej=True,
        resolution=(1 / 0.008, 1 / 0.008),
        metadata={"spacing": 0.03, "unit": "micron", "axes": "ZYX"},
    )
    assert read_volume(tmp_path / "um.tif").voxel_size_nm == pytest.approx((30.0, 8.0, 8.0))


def test_ome_tiff_voxel_size(tmp_path):
    tifffile.imwrite(
        tmp_path / "a.ome.tif",
        stack(dtype=np.uint16),
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 0.004,
            "PhysicalSizeY": 0.004,
            "PhysicalSizeZ": 0.05,
        },
    )
    vol = read_volume(tmp_path / "a.ome.tif")
    assert vol.voxel_size_nm == pytest.approx((50.0, 4.0, 4.0))
    assert vol.format == "OME-TIFF"


def test_bigtiff(tmp_path):
    tifffile.imwrite(tmp_path / "big.tif", stack(), bigtiff=True)
    vol = read_volume(tmp_path / "big.tif")
    assert vol.shape == (5, 12, 16)
    assert vol.voxel_size_source == "default"
    assert "no voxel size" in vol.notes[0]


def test_override_voxel_size(tmp_path):
    write_tiff(tmp_path / "a.tif", stack(), (40.0, 5.0, 5.0))
    vol = read_volume(tmp_path / "a.tif", voxel_size_nm=(10, 10, 10))
    assert vol.voxel_size_nm == (10.0, 10.0, 10.0) and vol.voxel_size_source == "user"
    with pytest.raises(VemcellError, match="positive"):
        read_volume(tmp_path / "a.tif", voxel_size_nm=(0, 1, 1))


def test_folder_of_slices_in_natural_order(tmp_path):
    import skimage.io

    data = stack((12, 10, 9))
    folder = tmp_path / "slices"
    folder.mkdir()
    for i, s in enumerate(data):
        ext = "png" if i % 2 else "tif"
        skimage.io.imsave(folder / f"slice_{i}.{ext}", s, check_contrast=False)
    (folder / "notes.txt").write_text("ignored")
    vol = read_volume(folder)
    np.testing.assert_array_equal(vol.array(), data)  # slice_10 after slice_9


def test_folder_errors(tmp_path):
    import skimage.io

    (tmp_path / "empty").mkdir()
    with pytest.raises(VemcellError, match="no TIFF or PNG"):
        read_volume(tmp_path / "empty")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    skimage.io.imsave(mixed / "a1.png", stack((1, 8, 8))[0], check_contrast=False)
    skimage.io.imsave(mixed / "a2.png", stack((1, 9, 8))[0], check_contrast=False)
    with pytest.raises(VemcellError, match="same size"):
        read_volume(mixed)


def test_mrc(tmp_path):
    import mrcfile

    data = stack(dtype=np.int16)
    with mrcfile.new(tmp_path / "a.mrc") as mrc:
        mrc.set_data(data)
        mrc.voxel_size = (60.0, 50.0, 400.0)  # Å, x y z
    vol = read_volume(tmp_path / "a.mrc")
    np.testing.assert_array_equal(vol.array(), data)
    assert vol.voxel_size_nm == pytest.approx((40.0, 5.0, 6.0))


def test_ome_zarr_is_lazy_and_has_voxel_size(tmp_path):
    import zarr

    data = stack((6, 20, 24))
    root = zarr.open_group(str(tmp_path / "a.ome.zarr"), mode="w")
    kw = {"shape": (1, 1, *data.shape), "dtype": data.dtype, "chunks": (1, 1, 2, 20, 24)}
    arr = root.create_array("0", **kw) if hasattr(root, "create_array") else root.create("0", **kw)
    arr[...] = data[None, None]
    root.attrs["multiscales"] = [
        {
            "axes": [
                {"name": "t", "type": "time"},
                {"name": "c", "type": "channel"},
                {"name": "z", "type": "space", "unit": "nanometer"},
                {"name": "y", "type": "space", "unit": "nanometer"},
                {"name": "x", "type": "space", "unit": "nanometer"},
            ],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [1, 1, 30.0, 8.0, 8.0]}
                    ],
                }
            ],
        }
    ]
    vol = read_volume(tmp_path / "a.ome.zarr")
    assert not isinstance(vol.data, np.ndarray)  # read on demand
    assert vol.shape == (6, 20, 24)
    assert vol.voxel_size_nm == pytest.approx((30.0, 8.0, 8.0))
    np.testing.assert_array_equal(vol.array(), data)
    np.testing.assert_array_equal(np.asarray(vol.data[2:4]), data[2:4])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: tifffile.imwrite(p, stack((4, 8, 8, 3))), "RGB"),
        (lambda p: tifffile.imwrite(p, stack((8, 8))), "single 2D image"),
        (lambda p: p.write_bytes(b"II*\x00garbage-not-a-tiff"), "could not be read|no images"),
        (
            lambda p: tifffile.imwrite(
                p, np.zeros((3, 4, 4), np.complex64), photometric="minisblack"
            ),
            "complex64",
        ),
    ],
)
def test_bad_inputs_get_one_sentence(tmp_path, make, message):
    p = tmp_path / "bad.tif"
    make(p)
    with pytest.raises(VemcellError, match=message):
        read_volume(p)


def test_truncated_tiff(tmp_path):
    p = tmp_path / "t.tif"
    write_tiff(p, stack((20, 64, 64)), (10, 10, 10))
    p.write_bytes(p.read_bytes()[:3000])
    with pytest.raises(VemcellError, match="could not be read"):
        read_volume(p)


def test_unknown_and_missing(tmp_path):
    (tmp_path / "a.xyz").write_text("x")
    with pytest.raises(VemcellError, match="not a format"):
        read_volume(tmp_path / "a.xyz")
    with pytest.raises(VemcellError, match="does not exist"):
        read_volume(tmp_path / "nope.tif")


def test_write_tiff_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "labels.tif"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", boom)
    with pytest.raises(OSError):
        write_tiff(target, stack(), (1, 1, 1))
    assert list(tmp_path.iterdir()) == []


def test_cli_info_json_and_errors(tmp_path, capsys):
    write_tiff(tmp_path / "a.tif", stack(), (40.0, 5.0, 5.0))
    assert main(["info", str(tmp_path / "a.tif"), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["shape_zyx"] == [5, 12, 16] and facts["voxel_size_nm_zyx"] == [40.0, 5.0, 5.0]
    assert main(["info", str(tmp_path / "nope.tif")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


def test_info_on_real_em():
    path = shared_data("isbi2012_sstem", "image.tif")
    vol = read_volume(path)
    assert vol.shape == (24, 512, 512)
    assert vol.voxel_size_nm == pytest.approx((50.0, 4.0, 4.0))


def test_written_files_have_ordinary_permissions(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        write_tiff(tmp_path / "a.tif", stack(), (1, 1, 1))
    finally:
        os.umask(old)
    assert (tmp_path / "a.tif").stat().st_mode & 0o777 == 0o644
