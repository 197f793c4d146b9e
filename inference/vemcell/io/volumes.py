"""Reading and writing volumes with their voxel size.

Readers return a :class:`Volume` whatever the source format (multi-page/BigTIFF with ImageJ or
OME metadata, a folder of 2D slices, MRC, Zarr/OME-Zarr), so the rest of the pipeline never
cares where the voxels came from. Every problem becomes a :class:`VemcellError` with one
sentence a biologist can act on.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vemcell.errors import VemcellError

DEFAULT_VOXEL_NM = (10.0, 10.0, 10.0)
SLICE_SUFFIXES = (".tif", ".tiff", ".png")
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
MRC_SUFFIXES = (".mrc", ".rec", ".st", ".map")
ZARR_SUFFIXES = (".zarr", ".ome.zarr")

_UNIT_TO_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "micron": 1e3,
    "micrometer": 1e3,
    "mm": 1e6,
    "millimeter": 1e6,
    "a": 0.1,
    "å": 0.1,
    "angstrom": 0.1,
    "pm": 1e-3,
}


@dataclass
class Volume:
    """A 3D volume (Z, Y, X) with its voxel size in nanometres.

    ``data`` is a numpy array, or a lazily indexed array (Zarr) that supports slicing and
    ``np.asarray``. ``voxel_size_source`` says where the voxel size came from: ``"metadata"``,
    ``"user"`` or ``"default"`` (missing; :data:`DEFAULT_VOXEL_NM` assumed).
    """

    data: Any
    voxel_size_nm: tuple[float, float, float] = DEFAULT_VOXEL_NM
    voxel_size_source: str = "default"
    path: str = ""
    format: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    def array(self) -> np.ndarray:
        """The whole volume as an in-memory numpy array."""
        return np.asarray(self.data[...] if not isinstance(self.data, np.ndarray) else self.data)


def _unit_factor(unit: str | None) -> float | None:
    if unit is None:
        return None
    key = str(unit).strip().lower().replace("\\u00b5", "µ")
    return _UNIT_TO_NM.get(key)


def _describe(path: Path) -> str:
    return f"'{path}'"


def read_volume(
    path: str | os.PathLike,
    voxel_size_nm: tuple[float, float, float] | None = None,
    kind: str = "image",
) -> Volume:
    """Read a 3D volume from a TIFF stack, a folder of slices, an MRC file or a Zarr store.

    Parameters
    ----------
    path : path-like
        File or folder to read.
    voxel_size_nm : (z, y, x), optional
        Overrides whatever the file says.
    kind : {"image", "labels"}
        Labels must be integer; images may be uint8, uint16 or float.
    """
    p = Path(path)
    if not p.exists():
        raise VemcellError(f"{_describe(p)} does not exist.")
    name = p.name.lower()
    try:
        if p.is_dir() and (
            name.endswith(ZARR_SUFFIXES)
            or (p / ".zgroup").exists()
            or (p / ".zarray").exists()
            or (p / "zarr.json").exists()
        ):
            vol = _read_zarr(p)
        elif p.is_dir():
            vol = _read_folder(p)
        elif name.endswith(TIFF_SUFFIXES):
            vol = _read_tiff(p)
        elif name.endswith(MRC_SUFFIXES):
            vol = _read_mrc(p)
        elif name.endswith(".png"):
            raise VemcellError(
                f"{_describe(p)} is a single 2D image; give a folder of slices or a 3D stack."
            )
        else:
            raise VemcellError(
                f"{_describe(p)} is not a format vemcell reads (TIFF, a folder of TIFF/PNG "
                "slices, MRC or Zarr)."
            )
    except VemcellError:
        raise
    except MemoryError:
        raise VemcellError(f"{_describe(p)} is too large to load into memory.") from None
    except Exception as exc:  # any reader failure means the file is damaged or not what it says
        raise VemcellError(
            f"{_describe(p)} could not be read (truncated or not a valid file: {exc})."
        ) from None
    vol.path = str(p)
    _validate(vol, kind)
    if voxel_size_nm is not None:
        vol.voxel_size_nm = check_voxel_size(voxel_size_nm, "--voxel-size")
        vol.voxel_size_source = "user"
    elif vol.voxel_size_source == "default":
        vol.notes.append(
            f"{p.name} has no voxel size in its metadata; assuming "
            f"{DEFAULT_VOXEL_NM[0]:g} nm isotropic (override with --voxel-size Z Y X)."
        )
    return vol


def check_voxel_size(v: Any, what: str = "The voxel size") -> tuple[float, float, float]:
    """``v`` as three positive finite floats (Z, Y, X in nm), or one sentence naming ``what``.

    The one voxel-size check: readers, cells and meshes all call it.
    """
    try:
        t = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        raise VemcellError(f"{what} must be three numbers (Z Y X, in nm).") from None
    if len(t) != 3 or not all(np.isfinite(t)) or min(t) <= 0:
        raise VemcellError(f"{what} must be three positive numbers (Z Y X, in nm), got {v}.")
    return t  # type: ignore[return-value]


def _validate(vol: Volume, kind: str) -> None:
    data = vol.data
    shape = tuple(int(s) for s in data.shape)
    name = Path(vol.path).name
    if len(shape) > 3:
        squeezed = tuple(s for s in shape if s != 1)
        if len(squeezed) == 3 and shape[-1] not in (3, 4):
            data = np.asarray(data).reshape(squeezed)
            vol.data, shape = data, squeezed
    if len(shape) == 4 and shape[-1] in (3, 4):
        raise VemcellError(
            f"{name} is an RGB(A) stack; vemcell needs single-channel (greyscale) EM data."
        )
    if len(shape) == 2:
        raise VemcellError(f"{name} is a single 2D image; vemcell needs a 3D stack of slices.")
    if len(shape) != 3:
        raise VemcellError(
            f"{name} has {len(shape)} dimensions; vemcell needs a 3D (Z, Y, X) stack."
        )
    if min(shape) == 0:
        raise VemcellError(f"{name} is empty (shape {shape}).")
    dt = np.dtype(data.dtype)
    if kind == "labels":
        if dt.kind not in "uib":
            raise VemcellError(f"{name} holds {dt} values; a label volume must hold integers.")
    elif dt.kind not in "uibf":
        raise VemcellError(f"{name} holds {dt} values; vemcell reads integer or float images.")


def voxel_from_imagej(tif: Any) -> tuple[float, float, float] | None:
    """The voxel size (Z, Y, X nm) an ImageJ TIFF records, or None (also read by io.lazy)."""
    ij = tif.imagej_metadata or {}
    page = tif.pages[0]
    unit = ij.get("unit")
    factor = _unit_factor(unit) if unit else None
    if factor is None:
        return None
    try:
        xres = page.tags["XResolution"].value
        yres = page.tags["YResolution"].value
        x = xres[1] / xres[0] if xres[0] else None
        y = yres[1] / yres[0] if yres[0] else None
    except KeyError:
        return None
    z = ij.get("spacing")
    if x is None or y is None:
        return None
    if z is None:
        z = x
    vals = (float(z) * factor, float(y) * factor, float(x) * factor)
    if vals == (factor, factor, factor) and unit in (None, "pixel"):
        return None
    return vals


def voxel_from_ome(tif: Any) -> tuple[float, float, float] | None:
    """The voxel size (Z, Y, X nm) an OME-TIFF records, or None (also read by io.lazy)."""
    xml = tif.ome_metadata
    if not xml:
        return None

    def attr(name: str) -> str | None:
        m = re.search(rf'\b{name}="([^"]+)"', xml)
        return m.group(1) if m else None

    out = []
    for ax in ("Z", "Y", "X"):
        val = attr(f"PhysicalSize{ax}")
        unit = attr(f"PhysicalSize{ax}Unit") or "µm"
        factor = _unit_factor(unit)
        if val is None or factor is None:
            out.append(None)
        else:
            out.append(float(val) * factor)
    if out[1] is None or out[2] is None:
        return None
    if out[0] is None:
        out[0] = out[2]
    return (out[0], out[1], out[2])


def _read_tiff(p: Path) -> Volume:
    import tifffile

    with tifffile.TiffFile(p) as tif:
        if len(tif.pages) == 0 or not tif.series:
            raise VemcellError(f"'{p}' holds no images (damaged, or not really a TIFF).")
        data = tif.asarray()
        voxel, fmt = tiff_metadata(tif)
        if data.ndim == 3 and tif.series and tif.series[0].axes.endswith("S"):
            data = data[..., None] if data.shape[-1] not in (3, 4) else data
    return with_metadata_voxel(Volume(data=data, format=fmt), voxel, p.name)


def tiff_metadata(tif: Any) -> tuple[tuple[float, float, float] | None, str]:
    """The voxel size (Z, Y, X nm) an open TIFF declares, OME metadata first, then ImageJ's
    (None when neither does), and its flavour: what every TIFF reader here takes from the header."""
    voxel = voxel_from_ome(tif) if tif.is_ome else None
    if voxel is None and tif.is_imagej:
        voxel = voxel_from_imagej(tif)
    fmt = "OME-TIFF" if tif.is_ome else ("ImageJ TIFF" if tif.is_imagej else "TIFF")
    return voxel, fmt


def with_metadata_voxel(vol: Volume, voxel: Any, name: str) -> Volume:
    """``vol`` with the voxel size its file declares (checked), when it declares one."""
    if voxel is not None:
        vol.voxel_size_nm = check_voxel_size(voxel, f"The voxel size in {name}")
        vol.voxel_size_source = "metadata"
    return vol


def slice_files(folder: Path) -> list[Path]:
    """The TIFF/PNG slices of a folder in natural order (slice_2 before slice_10)."""
    files = sorted(
        (f for f in folder.iterdir() if f.is_file() and f.name.lower().endswith(SLICE_SUFFIXES)),
        key=lambda f: natural_key(f.name),
    )
    if not files:
        raise VemcellError(f"Folder '{folder}' holds no TIFF or PNG slices.")
    return files


def mrc_voxel(mrc: Any) -> tuple[float, float, float] | None:
    """The voxel size (Z, Y, X nm) an open MRC file declares in its header (Å), or None."""
    vs = mrc.voxel_size
    voxel = (float(vs.z) / 10.0, float(vs.y) / 10.0, float(vs.x) / 10.0)
    return voxel if min(voxel) > 0 else None


def natural_key(s: str) -> list:
    """Sort key that puts slice_2 before slice_10 (folders of slices)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def _read_folder(p: Path) -> Volume:
    files = slice_files(p)
    slices = []
    voxel = None
    for f in files:
        if f.name.lower().endswith(".png"):
            import skimage.io

            img = skimage.io.imread(f)
        else:
            import tifffile

            with tifffile.TiffFile(f) as tif:
                img = tif.asarray()
                if voxel is None and tif.is_imagej:
                    voxel = voxel_from_imagej(tif)
        if img.ndim == 3 and img.shape[-1] in (3, 4):
            if img.shape[-1] == 4 or not (
                np.array_equal(img[..., 0], img[..., 1])
                and np.array_equal(img[..., 0], img[..., 2])
            ):
                raise VemcellError(
                    f"Slice {f.name} is colour (RGB); vemcell needs greyscale EM slices."
                )
            img = img[..., 0]
        if img.ndim != 2:
            raise VemcellError(f"Slice {f.name} is not a 2D image (shape {img.shape}).")
        if slices and img.shape != slices[0].shape:
            raise VemcellError(
                f"Slice {f.name} is {img.shape[1]}×{img.shape[0]} but the first slice is "
                f"{slices[0].shape[1]}×{slices[0].shape[0]}; all slices must be the same size."
            )
        slices.append(img)
    data = np.stack(slices)
    vol = Volume(data=data, format=f"folder of {len(files)} slices")
    if voxel is not None:
        vol.voxel_size_nm = voxel
        vol.voxel_size_source = "metadata"
    return vol


def _read_mrc(p: Path) -> Volume:
    import mrcfile

    with mrcfile.open(p, mode="r", permissive=True) as mrc:
        if mrc.data is None:
            raise VemcellError(f"'{p}' is not a valid MRC file.")
        data = np.array(mrc.data)
        voxel = mrc_voxel(mrc)
    vol = Volume(data=data, format="MRC")
    if voxel is not None:
        vol.voxel_size_nm = voxel
        vol.voxel_size_source = "metadata"
    return vol


def _read_zarr(p: Path) -> Volume:
    import zarr

    node = zarr.open(str(p), mode="r")
    voxel = None
    if hasattr(node, "shape"):
        arr = node
    else:
        attrs = dict(node.attrs)
        ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
        if ms:
            m0 = ms[0]
            ds0 = m0["datasets"][0]
            arr = node[ds0["path"]]
            axes = m0.get("axes", [])
            scale = None
            for t in ds0.get("coordinateTransformations", []):
                if t.get("type") == "scale":
                    scale = t["scale"]
            if scale is not None and len(scale) >= 3:
                units = [a.get("unit") if isinstance(a, dict) else None for a in axes][-3:]
                factors = [_unit_factor(u) if u else None for u in units] or [None] * 3
                if len(factors) == 3 and all(f is not None for f in factors):
                    voxel = tuple(float(s) * f for s, f in zip(scale[-3:], factors, strict=True))
            # OME-Zarr images are (t, c, z, y, x) at most; keep the spatial part.
            while arr.ndim > 3 and arr.shape[0] == 1:
                arr = arr[0] if not hasattr(arr, "oindex") else _Squeezed(arr)
        else:
            keys = list(node.array_keys())
            if not keys:
                raise VemcellError(f"Zarr store '{p}' holds no arrays.")
            arr = node[keys[0]]
    vol = Volume(data=arr, format="OME-Zarr" if voxel else "Zarr")
    if voxel is not None:
        vol.voxel_size_nm = voxel  # type: ignore[assignment]
        vol.voxel_size_source = "metadata"
    return vol


class _Squeezed:
    """A lazy view of a Zarr array with its leading singleton axes dropped."""

    def __init__(self, arr: Any) -> None:
        self._arr = arr
        self._lead = 0
        while arr.ndim - self._lead > 3 and arr.shape[self._lead] == 1:
            self._lead += 1
        self.shape = tuple(arr.shape[self._lead :])
        self.dtype = arr.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        return np.asarray(self._arr[(0,) * self._lead + key])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self[...]
        return a.astype(dtype) if dtype is not None else a


def ordinary_mode(directory: bool = False) -> int:
    """Permissions a plain ``open``/``mkdir`` would give under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, ordinary_mode())  # mkstemp makes 0600; results are ordinary files
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_tiff(
    path: str | os.PathLike,
    data: np.ndarray,
    voxel_size_nm: tuple[float, float, float],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a 3D stack as a zlib-compressed ImageJ TIFF with the voxel size (Fiji/napari read it).

    The file appears only when complete.
    """
    import tifffile

    data = np.asarray(data)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    if data.dtype.kind in "iu" and data.dtype not in (np.uint8, np.uint16):
        if data.min() >= 0 and data.max() < 256:
            data = data.astype(np.uint8)
        elif data.min() >= 0 and data.max() < 65536:
            data = data.astype(np.uint16)
        else:
            data = data.astype(np.float32)
    elif data.dtype.kind == "f" and data.dtype != np.float32:
        data = data.astype(np.float32)
    z, y, x = (float(v) for v in voxel_size_nm)
    md: dict[str, Any] = {"spacing": z, "unit": "nm", "axes": "ZYX"}
    if metadata:
        md["Info"] = json.dumps(metadata)
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            data,
            imagej=True,
            resolution=(1.0 / x, 1.0 / y),
            metadata=md,
            compression="zlib",
        )
    return Path(path)


def value_range(vol: Volume) -> tuple[float, float]:
    """Minimum and maximum value of the volume (reads it slab by slab for lazy arrays)."""
    lo, hi = np.inf, -np.inf
    step = max(1, int(2**26 // max(1, vol.shape[1] * vol.shape[2])))
    for z0 in range(0, vol.shape[0], step):
        slab = np.asarray(vol.data[z0 : z0 + step])
        lo = min(lo, float(np.nanmin(slab)))
        hi = max(hi, float(np.nanmax(slab)))
    return lo, hi


def read_tiff_info(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON stored by :func:`write_tiff`'s ``metadata`` (ImageJ ``Info``), if any.

    vemcell label volumes carry their class names and colours this way, so ``vemcell mesh``
    and the Blender add-on can name and colour them without the model card.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            info = (tif.imagej_metadata or {}).get("Info")
    except Exception:
        return None
    if not info:
        return None
    try:
        data = json.loads(info)
    except (TypeError, ValueError):
        return None
    return data if isinstance(data, dict) else None
