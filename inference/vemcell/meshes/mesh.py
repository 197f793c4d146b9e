"""Closed, watertight triangle meshes of every organelle class (and every cell) in micrometres.

Surfaces come from zmesh's multi-label marching cubes: one pass over the whole volume meshes
every label at once, so a volume with many classes (or, with a cell volume, many cell × class
combinations, meshed as one combined id ``cell * n_classes + class``) costs about as much as
one class. The volume is padded by one background voxel first, so objects that touch the
volume border are closed too. Each surface is then smoothed with Taubin's λ|μ filter
(trimesh; it removes the voxel staircase without shrinking the object) and decimated with
fast-simplification's quadric edge collapse. A decimated mesh that is no longer watertight is
redone with a milder reduction, so every mesh handed on is closed.

Coordinates: the label array is (z, y, x); a voxel index (z, y, x) sits at the physical point
(x·vx, y·vy, z·vz) / 1000 µm, and vertex columns are (X, Y, Z) with Z the slice direction.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from vemcell.errors import VemcellError
from vemcell.io.volumes import check_voxel_size
from vemcell.progress import Progress

#: Taubin iterations for isotropic voxels; ``smooth=None`` scales it with the anisotropy
#: (see :func:`auto_smooth`). Also used by :func:`vemcell.measure.measure` when it meshes.
DEFAULT_SMOOTH = 20
#: Fraction of faces removed by default; 0.5 halves the marching-cubes face count.
DEFAULT_DECIMATE = 0.5
#: Taubin pass-band parameters (λ shrinks, μ re-inflates; μ slightly above λ keeps volume).
TAUBIN_LAMBDA = 0.5
TAUBIN_MU = 0.53

Color = tuple[float, float, float, float]


@dataclass
class MeshItem:
    """One organelle class (in one cell, when cells are given) as a closed triangle mesh.

    ``vertices`` are float32 (N, 3) in µm with columns X, Y, Z; ``faces`` int32 (M, 3) with
    outward-facing (counter-clockwise) winding. :attr:`area_um2` is the surface area of the
    smoothed surface before decimation, the value :mod:`vemcell.meshes.measure` reports.
    """

    name: str
    cell: int | None
    class_index: int
    class_name: str
    color: Color
    vertices: np.ndarray
    faces: np.ndarray
    #: Area of the surface before decimation; None when it was not decimated (then the area
    #: of ``vertices``/``faces`` is that value, computed on first use).
    undecimated_area_um2: float | None = None

    @property
    def area_um2(self) -> float:
        """Surface area in µm² of the smoothed surface before decimation."""
        if self.undecimated_area_um2 is None:
            self.undecimated_area_um2 = surface_area(self.vertices, self.faces)
        return self.undecimated_area_um2

    @property
    def file_stem(self) -> str:
        """A file-name-safe stem: ``cell_01__mitochondrion`` or ``mitochondrion``."""
        return safe_name(self.name.replace("/", "__"))

    def to_trimesh(self) -> Any:
        """The mesh as a :class:`trimesh.Trimesh` (no re-processing of vertices)."""
        import trimesh

        return trimesh.Trimesh(self.vertices, self.faces, process=False)


def safe_name(name: str) -> str:
    """Replace characters that are unsafe in file names with ``_``."""
    out = "".join(c if (c.isalnum() or c in "-_.") else "_" for c in name)
    return out.strip("._") or "object"


def cell_prefix(cell: int, max_cell: int) -> str:
    """``cell_01``: zero-padded to at least two digits, more when there are ≥ 100 cells."""
    width = max(2, len(str(int(max_cell))))
    return f"cell_{int(cell):0{width}d}"


def check_inputs(
    labels: np.ndarray,
    voxel_size_nm: Sequence[float],
    instances: np.ndarray | None,
) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray | None]:
    """Validate labels, voxel size and cell ids; every problem is one :class:`VemcellError`."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise VemcellError(f"A label volume must be 3D (Z, Y, X); got shape {labels.shape}.")
    if labels.dtype.kind not in "uib":
        raise VemcellError(f"A label volume must hold integers, not {labels.dtype}.")
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise VemcellError("The label volume holds negative values; labels must be 0 or more.")
    if labels.dtype == np.bool_:
        labels = labels.astype(np.uint8)
    vs = check_voxel_size(voxel_size_nm)
    if instances is not None:
        instances = np.asarray(instances)
        if instances.shape != labels.shape:
            raise VemcellError(
                f"The cell volume is {'×'.join(map(str, instances.shape))} voxels but the "
                f"labels are {'×'.join(map(str, labels.shape))}; they must be the same shape."
            )
        if instances.dtype.kind not in "uib":
            raise VemcellError(f"A cell volume must hold integer ids, not {instances.dtype}.")
        if instances.dtype.kind == "i" and instances.size and instances.min() < 0:
            raise VemcellError("The cell volume holds negative ids; cell ids must be 0 or more.")
        if instances.dtype == np.bool_:
            instances = instances.astype(np.uint8)
    return labels, vs, instances  # type: ignore[return-value]


class ObjectIds(NamedTuple):
    """Object ids of a label volume: ``cell * stride + class + shift``, 0 = not meshed."""

    ids: np.ndarray
    stride: int
    shift: int

    def split(self, oid: int) -> tuple[int, int]:
        """The ``(cell, class)`` of an object id."""
        cell, c = divmod(int(oid), self.stride)
        return cell, c - self.shift


def object_ids(
    labels: np.ndarray,
    classes: Sequence[tuple[int, str, Any]],
    instances: np.ndarray | None = None,
) -> ObjectIds:
    """One id per (cell, class) object, 0 outside the wanted classes.

    Classes are shifted by one when class 0 is wanted (a model whose class 0 is not its
    background), so id 0 still means "nothing". The id volume has the smallest unsigned dtype
    that holds it, and is the labels array itself when every label present is wanted, 0 is not,
    and there are no cells.
    """
    wanted = sorted({int(c[0]) for c in classes})
    if not wanted:
        raise VemcellError("No classes to mesh were given.")
    max_label = int(labels.max()) if labels.size else 0
    shift = 1 if wanted[0] == 0 else 0
    n = max(max(wanted), max_label) + 1 + shift
    if (
        instances is None
        and not shift
        and labels.dtype.kind == "u"
        and set(range(1, max_label + 1)) <= set(wanted)
    ):
        return ObjectIds(labels, n, 0)
    lut = np.zeros(n - shift, dtype=np.uint32 if instances is not None else _uint_for(n))
    lut[wanted] = np.asarray(wanted) + shift
    cls = lut[labels]
    if instances is None:
        return ObjectIds(cls, n, shift)
    max_id = (int(instances.max()) + 1) * n
    dtype = _uint_for(max_id)
    ids = instances.astype(dtype) * dtype.type(n)
    ids += cls.astype(dtype, copy=False)
    ids[cls == 0] = 0
    return ObjectIds(ids, n, shift)


def _uint_for(max_value: int) -> np.dtype:
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_value <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise VemcellError("Too many cells × classes to number (more than 2**64).")


def _laplacian(faces: np.ndarray, n_vertices: int) -> Any:
    """Umbrella Laplacian as a float32 CSR matrix (each row averages the vertex's neighbours).

    In a closed, consistently wound mesh (every surface :func:`mesh_labels` makes) each edge
    is one half-edge in each direction, so the half-edges ``a → b`` list every neighbour of
    ``a`` exactly once: no symmetrising or duplicate summing, ~10× faster to build than the
    symmetric COO route. On an open mesh a boundary vertex just misses a neighbour.
    """
    import scipy.sparse as sp

    a = faces.ravel()
    b = faces[:, [1, 2, 0]].ravel()
    lap = sp.csr_matrix((np.ones(a.size, dtype=np.float32), (a, b)), shape=(n_vertices, n_vertices))
    lap.sum_duplicates()
    lap.data[:] = 1.0
    deg = np.diff(lap.indptr)
    lap.data /= np.repeat(np.maximum(deg, 1), deg).astype(np.float32)
    return lap


def auto_smooth(voxel_size_nm: Sequence[float]) -> int:
    """Default Taubin iterations: :data:`DEFAULT_SMOOTH` × the voxel anisotropy (at most 4×).

    Thick slices leave taller steps, which take more iterations to flatten: a ball of radius
    20 voxels comes back within 1 % of its analytic area at 20 iterations for cubic voxels,
    but needs ~60 for 30 × 12 × 10 nm voxels to get within 2 %.
    """
    ratio = max(voxel_size_nm) / min(voxel_size_nm)
    return round(DEFAULT_SMOOTH * min(4.0, max(1.0, ratio)))


def smooth_mesh(vertices: np.ndarray, faces: np.ndarray, iterations: int) -> np.ndarray:
    """Taubin-smoothed vertex positions (float32); topology is untouched, so still closed.

    The filter of :func:`trimesh.smoothing.filter_taubin` (alternating passes: shrink by
    λ, re-inflate by μ), run here on float32 so each pass moves half the memory.
    """
    v = np.array(vertices, dtype=np.float32)
    if iterations <= 0:
        return v
    lap = _laplacian(np.asarray(faces), len(v))
    for k in range(int(iterations)):
        step = lap @ v
        step -= v
        v += np.float32(TAUBIN_LAMBDA if k % 2 == 0 else -TAUBIN_MU) * step
    return v


def _edge_keys(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each half-edge's undirected key ``min·n + max`` and whether it runs low → high."""
    f = np.asarray(faces, dtype=np.int64)
    a = f.ravel()
    b = f[:, [1, 2, 0]].ravel()
    n = int(f.max()) + 1 if f.size else 1
    return np.minimum(a, b) * n + np.maximum(a, b), a < b


def is_watertight(faces: np.ndarray) -> bool:
    """True when every edge is shared by exactly two faces with opposite directions.

    The same test as :attr:`trimesh.Trimesh.is_watertight` (closed and consistently wound),
    done with one sort of the undirected edge keys.
    """
    if len(faces) < 4:
        return False
    key, up = _edge_keys(faces)
    order = np.argsort(key, kind="stable")
    key, up = key[order], up[order]
    first, second = key[0::2], key[1::2]
    return bool(
        np.array_equal(first, second)  # every edge exactly twice ...
        and np.all(first[1:] != second[:-1])  # ... not four times
        and np.all(up[0::2] != up[1::2])  # once in each direction
    )


def _drop_fins(faces: np.ndarray) -> np.ndarray:
    """Remove faces that occur more than once (back-to-back 'fins' left by edge collapses)."""
    s = np.sort(np.asarray(faces, dtype=np.int64), axis=1)
    n = int(s.max()) + 1 if s.size else 1
    if n > 2**21:  # the packed key would overflow int64
        _, inverse, counts = np.unique(s, axis=0, return_inverse=True, return_counts=True)
        return faces[counts[inverse.ravel()] == 1]
    key = (s[:, 0] * n + s[:, 1]) * n + s[:, 2]
    order = np.argsort(key, kind="stable")
    k = key[order]
    dup = np.zeros(len(k), dtype=bool)
    same = k[1:] == k[:-1]
    dup[1:] |= same
    dup[:-1] |= same
    keep = np.ones(len(k), dtype=bool)
    keep[order] = ~dup
    return faces[keep]


def _compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no face uses and renumber the faces."""
    if faces.size * 4 < len(vertices):  # a small piece of a large mesh: sort, not count
        used, inverse = np.unique(faces, return_inverse=True)
        return vertices[used], inverse.reshape(faces.shape)
    used = np.bincount(faces.ravel(), minlength=len(vertices)) > 0
    if used.all():
        return vertices, faces
    remap = np.cumsum(used) - 1
    return vertices[used], remap[faces]


def face_components(faces: np.ndarray, n_vertices: int) -> tuple[int, np.ndarray]:
    """Connected pieces of a mesh: faces that share an edge belong to the same piece.

    Pieces that only touch at a vertex (marching cubes makes those where voxels meet at a
    corner) come out separate, so each can be decimated without affecting the other.
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n_faces = len(faces)
    key, _ = _edge_keys(faces)
    order = np.argsort(key, kind="stable")
    ks, fs = key[order], order // 3  # half-edge i belongs to face i // 3
    same = ks[1:] == ks[:-1]
    graph = sp.coo_matrix(
        (np.ones(int(same.sum()), dtype=np.int8), (fs[:-1][same], fs[1:][same])),
        shape=(n_faces, n_faces),
    )
    return connected_components(graph, directed=False)


def _simplify_closed(
    vertices: np.ndarray, faces: np.ndarray, reduction: float
) -> tuple[np.ndarray, np.ndarray]:
    """fast-simplification of one closed piece; milder reductions until it stays closed."""
    import fast_simplification

    while reduction >= 0.05 and len(faces) * (1.0 - reduction) >= 8:
        v, f = fast_simplification.simplify(vertices, faces.astype(np.int32), reduction)
        f = _drop_fins(np.asarray(f, dtype=np.int64))
        if len(f) and is_watertight(f):
            return _compact(np.asarray(v, dtype=np.float64), f)
        reduction /= 2.0
    return vertices, faces


def decimate_mesh(
    vertices: np.ndarray, faces: np.ndarray, decimate: float
) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation (fast-simplification) that keeps the mesh watertight.

    ``decimate`` in [0, 1) is the fraction of faces to remove; a value ≥ 1 is a target face
    count (meshes already that small are left alone). Each connected piece is decimated on
    its own (faster, and a piece that would come out open is redone with half the reduction,
    down to none, without holding back the others); pieces under 64 faces are kept as they are.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    n_faces = len(faces)
    if decimate >= 1.0:
        reduction = 1.0 - float(decimate) / n_faces if n_faces > decimate else 0.0
    else:
        reduction = float(decimate)
    if reduction < 0.05 or n_faces < 64:
        return vertices, faces
    n_pieces, piece = face_components(faces, len(vertices))
    if n_pieces == 1:
        return _simplify_closed(vertices, faces, reduction)
    sizes = np.bincount(piece, minlength=n_pieces)
    small = sizes[piece] < 64
    out_v, out_f, offset = [], [], 0
    if small.any():  # kept as they are, all at once
        v, f = _compact(vertices, faces[small])
        out_v.append(v)
        out_f.append(f)
        offset = len(v)
    big = np.flatnonzero(~small)
    order = big[np.argsort(piece[big], kind="stable")]
    bounds = np.flatnonzero(np.diff(piece[order], prepend=-1, append=n_pieces))
    for start, stop in itertools.pairwise(bounds):
        v, f = _compact(vertices, faces[order[start:stop]])
        v, f = _simplify_closed(v, f, reduction)
        out_v.append(v)
        out_f.append(f + offset)
        offset += len(v)
    return np.concatenate(out_v), np.concatenate(out_f)


def surface_area(vertices: np.ndarray, faces: np.ndarray, chunk: int = 1 << 20) -> float:
    """Total triangle area (float32 maths in chunks, float64 sum: fast on millions of faces)."""
    v = np.asarray(vertices, dtype=np.float32)
    total = 0.0
    for start in range(0, len(faces), chunk):
        tri = v[faces[start : start + chunk]]
        a = tri[:, 1] - tri[:, 0]
        b = tri[:, 2] - tri[:, 0]
        cx = a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1]
        cy = a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2]
        cz = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
        total += float(np.sqrt(cx * cx + cy * cy + cz * cz).sum(dtype=np.float64))
    return 0.5 * total


def norm_color(color: Any) -> Color:
    """RGBA in 0..1 from [r, g, b(, a)] given in 0..1 or 0..255."""
    parts = [float(c) for c in color]
    if any(p > 1.0 for p in parts):
        parts = [p / 255.0 for p in parts]
    if len(parts) == 3:
        parts.append(1.0)
    if len(parts) != 4:
        raise VemcellError(f"Colour {color!r} is not [r, g, b(, a)].")
    return tuple(min(1.0, max(0.0, p)) for p in parts)  # type: ignore[return-value]


#: Layers per zmesh pass: zmesh's vertex welding slows down on surfaces of millions of faces
#: (its hash map outgrows the CPU caches), so long volumes are meshed in slabs and the slab
#: seams welded afterwards: the same closed surface, 1.3–1.7× faster on such volumes.
SLAB = 8
#: Volumes with fewer voxels than this are meshed in one process: starting workers and sending
#: their surfaces back costs more than it saves (on 2 cores: even at 320³, 1.3× faster at 384³,
#: 1.5× at 512³ with UroCell labels, benchmarks/bench_mesh.py); larger ones split their slabs
#: over ``workers`` processes.
PARALLEL_MIN_VOXELS = 48_000_000
#: Share of the slabs the calling process meshes, relative to each worker's 1: the workers
#: start late (process start) and finish late (sending their surfaces back).
FIRST_SHARE = 1.3


def default_workers() -> int:
    """Worker processes for meshing: the CPUs this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def _mesh_group(
    chunk: np.ndarray, first: int, axis: int, voxel_size_nm: tuple[float, float, float]
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Mesh layers ``first…first+len-1`` (along ``axis``) of the padded volume, slab by slab.

    Runs in a worker process as well as in the caller. Vertices are in nm in the whole
    volume's frame with columns (X, Y, Z) = array axes (2, 1, 0); the seams between this
    chunk's slabs are already welded.
    """
    import zmesh

    n = chunk.shape[axis]
    col = 2 - axis
    res = np.asarray(voxel_size_nm, dtype=np.float32)[::-1]
    pieces: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    mesher = zmesh.Mesher(voxel_size_nm)
    for a0 in range(0, max(1, n - 1), SLAB):
        a1 = min(a0 + SLAB, n - 1)
        index = [slice(None)] * 3
        index[axis] = slice(a0, a1 + 1)
        for oid, verts, faces in open_surfaces(mesher, chunk[tuple(index)]):
            v = np.array(verts, dtype=np.float32)
            v[:, col] += np.float32((first + a0) * res[col])
            pieces.setdefault(oid, []).append((v, faces))
    mesher.clear()
    seams = [2 * (first + a) for a in range(SLAB, n - 1, SLAB)]
    return {oid: _join(parts, col, res, seams) for oid, parts in pieces.items()}


def open_surfaces(mesher: Any, data: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Mesh ``data`` with a zmesh ``Mesher`` without closing the surfaces at its borders and
    yield ``(id, vertices, faces)`` of every non-zero id, freeing each as it goes.

    zmesh's vertex columns are the array axes; they come reversed, as (X, Y, Z) in nm. That is a
    mirror, so the faces' winding is reversed too and normals stay outwards.
    """
    mesher.mesh(np.ascontiguousarray(data), close=False)
    for oid in mesher.ids():
        if oid == 0:
            continue
        m = mesher.get(oid, normals=False)
        mesher.erase(oid)
        if len(m.faces) == 0:
            continue
        yield int(oid), m.vertices[:, ::-1], np.asarray(m.faces)[:, ::-1]


def _zmesh_surfaces(
    padded: np.ndarray,
    voxel_size_nm: tuple[float, float, float],
    progress: Progress | None,
    workers: int | None = None,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Marching-cubes surface of every non-zero id: {id: (vertices in nm, int32 faces)}.

    ``padded`` must have a background border. It is cut along its longest axis into slabs of
    :data:`SLAB` voxel layers that share their boundary layer; zmesh meshes each slab without
    closing it, so every marching-cubes cell is meshed exactly once and the vertices on a
    shared layer come out at identical positions in both slabs, where they are merged. With
    several workers, each meshes a contiguous run of slabs in its own process (zmesh holds
    the GIL, so threads would not help) and the runs are welded the same way.
    Vertex columns are (X, Y, Z) = array axes (2, 1, 0) × voxel size, faces wound outwards.
    """
    axis = int(np.argmax(padded.shape))
    n = padded.shape[axis]
    n_slabs = max(1, -(-(n - 1) // SLAB))
    if workers is None:
        workers = default_workers() if padded.size >= PARALLEL_MIN_VOXELS else 1
    workers = max(1, min(int(workers), n_slabs))
    # Contiguous runs of whole slabs, one per worker; neighbouring runs share a layer. The
    # first run, meshed here while the workers start up, gets a larger share (see _run_groups).
    share = np.cumsum([0.0, FIRST_SHARE] + [1.0] * (workers - 1))
    starts = np.unique(np.rint(share[:-1] / share[-1] * n_slabs).astype(int))
    cuts = [int(k) * SLAB for k in starts if k < n_slabs] + [n - 1]
    chunks = []
    for a0, a1 in itertools.pairwise(cuts):
        index = [slice(None)] * 3
        index[axis] = slice(a0, a1 + 1)
        chunks.append((padded[tuple(index)], a0))
    results = _run_groups(chunks, axis, voxel_size_nm, progress)
    res = np.asarray(voxel_size_nm, dtype=np.float32)[::-1]
    seams = [2 * a for a in cuts[1:-1]]
    out = {}
    for oid in sorted({k for r in results for k in r}):
        out[oid] = _join([r.pop(oid) for r in results if oid in r], 2 - axis, res, seams)
    return out


def _run_groups(
    chunks: list[tuple[np.ndarray, int]],
    axis: int,
    voxel_size_nm: tuple[float, float, float],
    progress: Progress | None,
) -> list[dict[int, tuple[np.ndarray, np.ndarray]]]:
    """:func:`_mesh_group` on every chunk: the first here, the others in worker processes."""
    if progress is not None:
        progress.update(0.0, "marching cubes")
    results = None
    if len(chunks) > 1:
        # no processes allowed here (sandbox, limits): mesh in this one
        with contextlib.suppress(OSError):
            results = _run_in_workers(chunks, axis, voxel_size_nm)
    if results is None:
        results = [_mesh_group(c, a0, axis, voxel_size_nm) for c, a0 in chunks]
    if progress is not None:
        progress.update(0.3, "marching cubes")
    return results


#: The chunks of the call in progress, read by forked workers from the memory they inherit
#: (so a 512³ id volume is not pickled through a pipe); empty between calls.
_FORKED_CHUNKS: list[tuple[np.ndarray, int]] = []


def _mesh_forked_chunk(
    k: int, axis: int, voxel_size_nm: tuple[float, float, float]
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    chunk, a0 = _FORKED_CHUNKS[k]
    return _mesh_group(chunk, a0, axis, voxel_size_nm)


def _run_in_workers(
    chunks: list[tuple[np.ndarray, int]], axis: int, voxel_size_nm: tuple[float, float, float]
) -> list[dict[int, tuple[np.ndarray, np.ndarray]]]:
    """The first chunk here, the others in worker processes started for this call.

    On Linux the workers are forked and read their chunk from inherited memory; elsewhere
    they are spawned and the chunk is sent to them.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    fork = sys.platform.startswith("linux")
    ctx = mp.get_context("fork" if fork else "spawn")
    _FORKED_CHUNKS[:] = chunks if fork else []
    try:
        with ProcessPoolExecutor(len(chunks) - 1, mp_context=ctx) as pool:
            futures = [
                pool.submit(_mesh_forked_chunk, k, axis, voxel_size_nm)
                if fork
                else pool.submit(_mesh_group, np.ascontiguousarray(c), a0, axis, voxel_size_nm)
                for k, (c, a0) in enumerate(chunks[1:], start=1)
            ]
            first = _mesh_group(chunks[0][0], chunks[0][1], axis, voxel_size_nm)
            return [first] + [f.result() for f in futures]
    finally:
        _FORKED_CHUNKS.clear()


def _join(
    parts: list[tuple[np.ndarray, np.ndarray]], col: int, res: np.ndarray, seams: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate surface pieces and merge the duplicate vertices on their shared layers.

    ``seams`` are the shared layers in doubled voxel units along vertex column ``col``
    (``res`` is the voxel size per column): marching-cubes vertices sit on half-voxel
    positions, so doubled voxel coordinates are exact integers.
    Faces come back as int32 (a surface never has 2**31 vertices).
    """
    if len(parts) == 1 and parts[0][1].dtype == np.int32 and parts[0][1].flags.c_contiguous:
        return parts[0]  # already joined (a run meshed in one process)
    offsets = np.cumsum([0] + [len(v) for v, _ in parts])
    verts = parts[0][0] if len(parts) == 1 else np.concatenate([v for v, _ in parts])
    faces = np.empty((sum(len(f) for _, f in parts), 3), dtype=np.int32)
    row = 0
    for (_, f), o in zip(parts, offsets[:-1], strict=True):
        np.add(f, o, out=faces[row : row + len(f)], casting="unsafe")
        row += len(f)
    if len(parts) == 1 or not seams:
        return verts, faces
    along = np.rint(verts[:, col] * (2.0 / res[col])).astype(np.int64)
    is_seam = np.zeros(max(int(along.max()), max(seams)) + 1, dtype=bool)
    is_seam[seams] = True
    on_seam = np.flatnonzero(is_seam[along])
    if len(on_seam) == 0:  # separate pieces in different slabs: nothing to merge
        return verts, faces
    q = np.rint(verts[on_seam] * (2.0 / res)).astype(np.int64)
    dims = q.max(axis=0) + 1
    key = (q[:, 0] * dims[1] + q[:, 1]) * dims[2] + q[:, 2]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    remap = np.arange(len(verts), dtype=np.int32)
    remap[on_seam] = on_seam[first[inverse.ravel()]]
    keep = remap == np.arange(len(verts), dtype=np.int32)
    new_index = np.cumsum(keep, dtype=np.int32) - 1
    # The first piece keeps all its vertices, in front, so its faces need no renumbering.
    n0 = len(parts[0][1])
    faces[n0:] = np.take(new_index[remap], faces[n0:])
    return np.compress(keep, verts, axis=0), faces


def mesh_labels(
    labels: np.ndarray,
    voxel_size_nm: Sequence[float],
    classes: Sequence[tuple[int, str, Any]],
    *,
    instances: np.ndarray | None = None,
    smooth: int | None = None,
    decimate: float = DEFAULT_DECIMATE,
    progress: Progress | None = None,
    workers: int | None = None,
) -> list[MeshItem]:
    """Mesh every wanted class (per cell when ``instances`` is given) as closed surfaces.

    Parameters
    ----------
    labels : (Z, Y, X) integer array
        Semantic labels; the value is the class index.
    voxel_size_nm : (z, y, x)
        Voxel size in nm.
    classes : sequence of (index, name, color)
        Classes to mesh (the caller leaves out background); color is RGBA in 0..1 (or 0..255).
    instances : (Z, Y, X) integer array, optional
        Cell ids (0 = no cell). Each (cell, class) becomes its own mesh named
        ``cell_01/mitochondrion``; class voxels outside every cell are meshed as ``mitochondrion``
        with ``cell=None``.
    smooth : int, optional
        Taubin smoothing iterations (0 = the raw marching-cubes staircase); None picks
        :func:`auto_smooth` for the voxel size.
    decimate : float
        Fraction of faces to remove in [0, 1), or a target face count per mesh when ≥ 1.
    progress : Progress, optional
        Reports the fraction of meshes done within the caller's current stage.
    workers : int, optional
        Processes for marching cubes; None uses every available CPU (at most 8) on volumes
        of :data:`PARALLEL_MIN_VOXELS` or more and one process below that.

    Returns
    -------
    list of MeshItem
        Ordered by cell (no cell first), then class index. Classes without voxels are absent.
    """
    labels, vs, instances = check_inputs(labels, voxel_size_nm, instances)
    if smooth is None:
        smooth = auto_smooth(vs)
    if int(smooth) < 0:
        raise VemcellError(f"Smoothing must be 0 or more iterations, not {smooth}.")
    decimate = float(decimate or 0.0)
    if decimate < 0:
        raise VemcellError(
            f"Decimation must be a fraction in [0, 1) or a face count, not {decimate}."
        )
    info = {int(i): (str(name), norm_color(color)) for i, name, color in classes}
    objects = object_ids(labels, classes, instances)
    ids = objects.ids
    if not ids.any():
        raise VemcellError(
            "The label volume has no voxels of the classes to mesh (only background)."
        )
    max_cell = int(instances.max()) if instances is not None else 0

    res = np.asarray(vs, dtype=np.float64)
    surfaces = _zmesh_surfaces(np.pad(ids, 1), vs, progress, workers)
    items: list[MeshItem] = []
    for k, oid in enumerate(sorted(surfaces)):
        cell, cls = objects.split(oid)
        name, color = info[cls]
        if progress is not None:
            progress.update(0.3 + 0.7 * k / max(1, len(surfaces)), f"smoothing {name}")
        verts, faces = surfaces.pop(oid)
        # nm → µm, minus the one-voxel pad (columns X, Y, Z)
        verts -= res[::-1].astype(np.float32)
        verts /= np.float32(1000.0)
        if smooth > 0:
            verts = smooth_mesh(verts, faces, int(smooth))
        area = None  # the final mesh's own area, computed when asked for
        if decimate > 0:
            area = surface_area(verts, faces)
            verts, faces = decimate_mesh(verts, faces, decimate)
        if instances is not None and cell > 0:
            full = f"{cell_prefix(cell, max_cell)}/{name}"
        else:
            full = name
        items.append(
            MeshItem(
                name=full,
                cell=int(cell) if (instances is not None and cell > 0) else None,
                class_index=int(cls),
                class_name=name,
                color=color,
                vertices=np.ascontiguousarray(verts, dtype=np.float32),
                faces=np.ascontiguousarray(faces, dtype=np.int32),
                undecimated_area_um2=area,
            )
        )
    if progress is not None:
        progress.update(1.0, f"meshed {len(items)} objects")
    items.sort(key=lambda it: (-1 if it.cell is None else it.cell, it.class_index))
    return items
