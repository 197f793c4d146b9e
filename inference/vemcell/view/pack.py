"""What the viewer page embeds: meshes in a compact codec, the EM volume as a JPEG atlas.

Meshes (codec ``vemcell-mesh/1``, decoded by ``static/viewer.js``): vertices are quantised to a
grid of ``step`` µm (1/32 of the finest voxel side: far below what a screen shows) from a common
``origin``, renumbered in the order the triangles first use them, and written as

* indices: for each corner, ``next - index`` as an LEB128 varint, where ``next`` is the number
  of vertices used so far (so a vertex's first use is a 0 byte and recent ones are small);
* positions: per column (X, Y, Z), the zigzag-coded differences of consecutive quantised values,
  as three byte planes (low, middle, high bytes), all low bytes first.

Every object's indices, then every object's positions, are concatenated and gzip-compressed as
one stream (the browser inflates it with ``DecompressionStream``). About 3.5 bytes a triangle.

The EM volume is resampled to at most ``max_voxels`` voxels (coarsening the finest axes first),
stretched to its 0.5–99.5 % grey range, laid out section by section in a grid (each tile padded
to a multiple of 8 pixels, so JPEG blocks never straddle two sections) and saved as one JPEG.
"""

from __future__ import annotations

import gzip
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MESH_CODEC = "vemcell-mesh/1"
#: Quantisation step as a fraction of the finest voxel side.
STEP_PER_VOXEL = 1.0 / 32.0
#: Triangles in a page above which meshes are simplified for it (the run's files are untouched).
DEFAULT_MAX_FACES = 2_000_000
#: Voxels of EM volume embedded at most (about 2.5 MB of JPEG at the default quality).
DEFAULT_EM_VOXELS = 8_000_000
#: Largest side of the embedded EM volume (WebGL2 guarantees 256; laptops take 2048).
EM_MAX_SIDE = 2048
EM_JPEG_QUALITY = 85


@dataclass
class PackedMeshes:
    """The gzip stream and, per object, where its indices and positions start in it (inflated)."""

    data: bytes
    origin: tuple[float, float, float]
    step: float
    entries: list[dict[str, int]] = field(default_factory=list)
    raw_bytes: int = 0

    def codec(self) -> dict[str, Any]:
        """The manifest's ``meshes`` entry."""
        return {
            "codec": MESH_CODEC,
            "compression": "gzip",
            "origin": [float(v) for v in self.origin],
            "step": float(self.step),
            "bytes": self.raw_bytes,
        }


def _varint(values: np.ndarray) -> np.ndarray:
    """LEB128 bytes of non-negative integers (vectorised)."""
    a = values.astype(np.uint64)
    n = np.ones(len(a), np.int64)
    for k in range(1, 10):
        more = a >= np.uint64(1 << (7 * k))
        if not more.any():
            break
        n += more
    out = np.zeros(int(n.sum()), np.uint8)
    starts = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
    for k in range(int(n.max()) if len(n) else 0):
        sel = n > k
        byte = (a[sel] >> np.uint64(7 * k)) & np.uint64(127)
        byte |= np.uint64(128) * (n[sel] > k + 1).astype(np.uint64)
        out[starts[sel] + k] = byte.astype(np.uint8)
    return out


def encode_mesh(
    vertices: np.ndarray, faces: np.ndarray, origin: Sequence[float], step: float
) -> tuple[bytes, bytes, int]:
    """One mesh's index bytes, position bytes and used-vertex count (see the module docstring)."""
    v = np.asarray(vertices, dtype=np.float64)
    flat = np.asarray(faces, dtype=np.int64).ravel()
    if flat.size == 0:
        return b"", b"", 0
    if flat.min() < 0 or flat.max() >= len(v):
        raise ValueError("a face refers to a vertex that does not exist")
    uniq, first = np.unique(flat, return_index=True)
    used = uniq[np.argsort(first, kind="stable")]  # old vertex ids in order of first use
    remap = np.empty(len(v), np.int64)
    remap[used] = np.arange(len(used))
    idx = remap[flat]
    seen = np.maximum.accumulate(idx)
    code = np.concatenate([[0], seen[:-1] + 1]) - idx
    q = np.rint((v[used] - np.asarray(origin, np.float64)) / step).astype(np.int64)
    d = np.diff(q, axis=0, prepend=np.zeros((1, 3), np.int64))
    zz = np.where(d >= 0, 2 * d, -2 * d - 1)
    if zz.max() >= 1 << 24:
        raise ValueError("the quantised coordinates do not fit 24 bits; use a coarser step")
    planes = np.stack([(zz >> (8 * p)) & 255 for p in range(3)])  # (plane, vertex, column)
    positions = planes.transpose(0, 2, 1).astype(np.uint8)  # (plane, column, vertex)
    return _varint(code).tobytes(), positions.tobytes(), len(used)


def decode_mesh(
    data: bytes, entry: dict[str, int], origin: Sequence[float], step: float
) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`encode_mesh` on the inflated stream (what the page does, in Python)."""
    buf = np.frombuffer(data, np.uint8)
    n = entry["faces"] * 3
    idx = np.empty(n, np.int64)
    p, nxt = entry["index_offset"], 0
    for k in range(n):
        b = int(buf[p])
        p += 1
        code, shift = b & 127, 7
        while b & 128:
            b = int(buf[p])
            p += 1
            code |= (b & 127) << shift
            shift += 7
        idx[k] = nxt - code
        if code == 0:
            nxt += 1
    nv = entry["vertices"]
    start = entry["position_offset"]
    planes = buf[start : start + 9 * nv].reshape(3, 3, nv).astype(np.int64)
    zz = planes[0] | (planes[1] << 8) | (planes[2] << 16)
    d = (zz >> 1) ^ -(zz & 1)
    q = np.cumsum(d, axis=1).T
    return np.asarray(origin) + q * step, idx.reshape(-1, 3)


def pack_meshes(
    meshes: Sequence[tuple[np.ndarray, np.ndarray]],
    finest_voxel_um: float | None = None,
    level: int = 6,
) -> PackedMeshes:
    """Encode every (vertices, faces) pair into one gzip stream (order kept)."""
    if not meshes:
        raise ValueError("there are no meshes to pack")
    lo = np.min([np.asarray(v).min(axis=0) for v, _ in meshes if len(v)], axis=0)
    hi = np.max([np.asarray(v).max(axis=0) for v, _ in meshes if len(v)], axis=0)
    extent = float(max((hi - lo).max(), 1e-9))
    step = (finest_voxel_um or extent / 4096.0) * STEP_PER_VOXEL
    step = max(step, extent / float((1 << 23) - 1))  # absolute first values fit 24 bits too
    origin = tuple(float(x) for x in lo)
    parts = [encode_mesh(v, f, origin, step) for v, f in meshes]
    index_size = sum(len(i) for i, _, _ in parts)
    entries, io_off, po_off = [], 0, index_size
    for (ib, pb, nv), (_, f) in zip(parts, meshes, strict=True):
        entries.append(
            {
                "index_offset": io_off,
                "position_offset": po_off,
                "vertices": nv,
                "faces": len(f),
            }
        )
        io_off += len(ib)
        po_off += len(pb)
    raw = b"".join(i for i, _, _ in parts) + b"".join(p for _, p, _ in parts)
    data = gzip.compress(raw, compresslevel=level, mtime=0)
    return PackedMeshes(data=data, origin=origin, step=step, entries=entries, raw_bytes=len(raw))


def simplify_to_budget(
    meshes: list[tuple[np.ndarray, np.ndarray]], max_faces: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Meshes reduced by one common fraction so that together they have about ``max_faces``."""
    total = sum(len(f) for _, f in meshes)
    if max_faces <= 0 or total <= max_faces:
        return meshes
    import fast_simplification

    keep = max_faces / total
    out = []
    for v, f in meshes:
        if len(f) < 400:  # small organelles stay as they are: they cost little
            out.append((v, f))
            continue
        pts, tri = fast_simplification.simplify(
            np.asarray(v, np.float32), np.asarray(f, np.int32), target_reduction=1.0 - keep
        )
        out.append((np.asarray(pts), np.asarray(tri)))
    return out


# ---- EM volume ---------------------------------------------------------------------------------


def em_target_shape(
    shape_zyx: Sequence[int],
    voxel_nm_zyx: Sequence[float],
    max_voxels: int = DEFAULT_EM_VOXELS,
    max_side: int = EM_MAX_SIDE,
) -> tuple[int, int, int]:
    """Sizes to resample to: the finest axes are coarsened first, none upsampled."""
    n = np.asarray(shape_zyx, float)
    ext = n * np.asarray(voxel_nm_zyx, float)

    def size(t: float) -> np.ndarray:
        return np.minimum(n, np.maximum(1, np.minimum(max_side, np.ceil(ext / t))))

    if np.prod(size(min(voxel_nm_zyx))) <= max_voxels and n.max() <= max_side:
        return tuple(int(v) for v in n)  # type: ignore[return-value]
    lo, hi = min(voxel_nm_zyx), float(ext.max())
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if np.prod(size(mid)) > max_voxels:
            lo = mid
        else:
            hi = mid
    return tuple(int(v) for v in size(hi))  # type: ignore[return-value]


def _resample_axis(a: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Box-filtered linear resampling of one axis to ``n_out`` samples (voxel centres kept)."""
    n_in = a.shape[axis]
    if n_out == n_in:
        return a
    from scipy.ndimage import uniform_filter1d

    ratio = n_in / n_out
    width = round(ratio)
    if width > 1:
        a = uniform_filter1d(a, size=width, axis=axis, mode="nearest")
    pos = (np.arange(n_out) + 0.5) * ratio - 0.5
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, n_in - 1)
    i1 = np.clip(i0 + 1, 0, n_in - 1)
    w = (pos - i0).astype(np.float32)
    shape = [1] * a.ndim
    shape[axis] = n_out
    w = w.reshape(shape)
    return np.take(a, i0, axis=axis) * (1 - w) + np.take(a, i1, axis=axis) * w


def em_atlas(
    volume: Any,
    voxel_nm_zyx: Sequence[float],
    max_voxels: int = DEFAULT_EM_VOXELS,
    quality: int = EM_JPEG_QUALITY,
) -> tuple[bytes, dict[str, Any]]:
    """A JPEG atlas of the resampled, contrast-stretched volume and its manifest entry."""
    from PIL import Image

    shape = tuple(int(s) for s in volume.shape)
    target = em_target_shape(shape, voxel_nm_zyx, max_voxels)
    # coarsen z first, reading the volume a slab at a time, so a large volume never sits in
    # memory as floats in full
    nz = target[0]
    slabs = []
    ratio = shape[0] / nz
    for j in range(nz):
        a0 = math.floor(j * ratio)
        a1 = max(a0 + 1, math.floor((j + 1) * ratio))
        slab = np.asarray(volume[a0:a1], dtype=np.float32).mean(axis=0)
        slab = _resample_axis(_resample_axis(slab, 0, target[1]), 1, target[2])
        slabs.append(slab.astype(np.float32))
    arr = np.stack(slabs)
    sample = arr.ravel()[:: max(1, arr.size // 2_000_000)]
    lo, hi = np.percentile(sample, [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    grey = np.clip((arr - lo) * (255.0 / (hi - lo)), 0, 255).round().astype(np.uint8)

    nz, ny, nx = grey.shape
    tw, th = -(-nx // 8) * 8, -(-ny // 8) * 8
    cols = max(1, math.ceil(math.sqrt(nz * th / tw)))
    rows = math.ceil(nz / cols)
    atlas = np.zeros((rows * th, cols * tw), np.uint8)
    for k in range(nz):
        r, c = divmod(k, cols)
        tile = np.pad(grey[k], ((0, th - ny), (0, tw - nx)), mode="edge")
        atlas[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = tile
    buf = io.BytesIO()
    Image.fromarray(atlas, mode="L").save(buf, "JPEG", quality=quality, optimize=True)

    vz = np.asarray(voxel_nm_zyx, float) / 1000.0  # µm, (z, y, x)
    ratio_zyx = np.asarray(shape, float) / np.asarray(grey.shape, float)
    # output voxel j sits at input index (j + 0.5)·ratio − 0.5 (the slab means keep it)
    origin_zyx = (0.5 * ratio_zyx - 0.5) * vz
    spacing_zyx = ratio_zyx * vz
    meta = {
        "mime": "image/jpeg",
        "shape_zyx": [nz, ny, nx],
        "source_shape_zyx": list(shape),
        "origin": [float(v) for v in origin_zyx[::-1]],  # X, Y, Z
        "spacing": [float(v) for v in spacing_zyx[::-1]],
        "tile": [tw, th],
        "columns": cols,
        "grey_range": [float(lo), float(hi)],
        "quality": quality,
    }
    return buf.getvalue(), meta
