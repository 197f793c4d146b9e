"""Lazy readers: volumes opened without loading them, read block by block.

:func:`open_lazy` returns the same :class:`~vemcell.io.volumes.Volume` as
:func:`~vemcell.io.volumes.read_volume`, but its ``data`` reads only the voxels a slice asks
for: Zarr and OME-Zarr through zarr (any chunking), TIFF stacks through tifffile's Zarr view
of the file (a memory map for uncompressed files, page by page otherwise), folders of slices one
file per Z section, MRC files through mrcfile's memory map.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vemcell.errors import VemcellError
from vemcell.io import volumes
from vemcell.io.volumes import Volume, check_voxel_size


class SliceFolder:
    """A folder of 2D slices as a lazy (Z, Y, X) array: only the sections asked for are read."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        first = self._read(0)
        self.shape = (len(files), *first.shape)
        self.dtype = first.dtype
        self.ndim = 3

    def _read(self, z: int) -> np.ndarray:
        f = self.files[z]
        if f.name.lower().endswith(".png"):
            import skimage.io

            img = skimage.io.imread(f)
        else:
            import tifffile

            img = tifffile.imread(f)
        if img.ndim == 3 and img.shape[-1] in (3, 4):
            img = img[..., 0]
        if img.ndim != 2:
            raise VemcellError(f"Slice {f.name} is not a 2D image (shape {img.shape}).")
        return img

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        zs = range(*key[0].indices(self.shape[0])) if isinstance(key[0], slice) else [key[0]]
        out = np.stack([self._read(z)[key[1], key[2]] for z in zs])
        return out if isinstance(key[0], slice) else out[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self[:, :, :]
        return a.astype(dtype) if dtype is not None else a


def open_lazy(
    path: str | os.PathLike, voxel_size_nm: tuple[float, float, float] | None = None
) -> Volume:
    """Open a volume for blockwise reading (nothing is loaded until it is sliced).

    Zarr/OME-Zarr, TIFF (plain, BigTIFF, OME-TIFF, ImageJ), folders of TIFF/PNG slices and MRC.
    The voxel size comes from the metadata as :func:`read_volume` reads it, or ``voxel_size_nm``.
    """
    p = Path(path)
    if not p.exists():
        raise VemcellError(f"'{p}' does not exist.")
    name = p.name.lower()
    is_zarr = p.is_dir() and (
        name.endswith(volumes.ZARR_SUFFIXES)
        or any((p / f).exists() for f in (".zgroup", ".zarray", "zarr.json"))
    )
    if is_zarr:
        return volumes.read_volume(p, voxel_size_nm=voxel_size_nm)
    try:
        if p.is_dir():
            vol = _folder(p)
        elif name.endswith(volumes.TIFF_SUFFIXES):
            vol = _tiff(p)
        elif name.endswith(volumes.MRC_SUFFIXES):
            import mrcfile

            mrc = mrcfile.mmap(p, mode="r", permissive=True)
            vol = Volume(data=mrc.data, format="MRC")
            voxel = volumes.mrc_voxel(mrc)
            if voxel is not None:
                vol.voxel_size_nm, vol.voxel_size_source = voxel, "metadata"
        else:
            return volumes.read_volume(p, voxel_size_nm=voxel_size_nm)
    except VemcellError:
        raise
    except Exception as exc:
        raise VemcellError(f"'{p}' could not be opened for blockwise reading ({exc}).") from None
    vol.path = str(p)
    if len(vol.shape) != 3:
        raise VemcellError(f"{p.name} has {len(vol.shape)} dimensions; vemcell needs a 3D stack.")
    if voxel_size_nm is not None:
        vol.voxel_size_nm = check_voxel_size(voxel_size_nm, "--voxel-size")
        vol.voxel_size_source = "user"
    return vol


def _tiff(p: Path) -> Volume:
    import tifffile
    import zarr

    with tifffile.TiffFile(p) as tif:
        voxel, fmt = volumes.tiff_metadata(tif)
    try:
        data: Any = tifffile.memmap(p, mode="r")
    except ValueError:  # compressed or tiled: read page by page through tifffile's Zarr view
        data = zarr.open_array(tifffile.imread(p, aszarr=True), mode="r")
    while data.ndim > 3 and data.shape[0] == 1:
        data = data[0]
    return volumes.with_metadata_voxel(Volume(data=data, format=fmt), voxel, p.name)


def _folder(p: Path) -> Volume:
    files = volumes.slice_files(p)
    return Volume(data=SliceFolder(files), format=f"folder of {len(files)} slices")
