"""Connected components of a volume too large for memory: per block, then merged globally.

The method of cluster_tools and elf (Pape): (1) each block is labelled on its own with cc3d,
ids local to the block, and its six face slabs are kept in a small side array; (2) each block
compares its voxels on its faces with their neighbours in the adjacent blocks (the forward half
of the neighbourhood: 13 offsets for 26-connectivity, edges and corners included), read from
the neighbours' face slabs rather than their whole chunks, and returns the pairs of touching
ids; (3) one union-find over all pairs (scipy.sparse.csgraph) gives every block-local id its
global component, kept as one lookup table on disk; (4) readers map each block's ids through
its slice of the table.

Multi-label inputs (a class or an object id per voxel) are labelled per value, as cc3d does,
and only equal values join across faces (pairs of different values are dropped on the driver,
which knows every block-local id's value).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vemcell.blockwise.plan import Block, Box, Plan, Work

#: Neighbour offsets with the first non-zero component positive (half of each neighbourhood).
OFFSETS = {
    26: [o for o in itertools.product((-1, 0, 1), repeat=3) if o > (0, 0, 0)],
    6: [(1, 0, 0), (0, 1, 0), (0, 0, 1)],
    4: [(0, 1, 0), (0, 0, 1)],  # in-plane only: each Z slice labelled on its own
}


@dataclass(frozen=True)
class Labelled:
    """The global components of a blockwise labelling.

    ``local`` is the Zarr array of block-local ids, ``offsets[b]`` where block b's ids start in
    the global index, ``lut`` the .npy file mapping global index → component id (1..n).
    ``sizes``, ``values`` and ``border`` are per component id (index 0 unused): voxels, the
    input value it was labelled from, and whether it touches the volume's border (the Y and X
    sides only for in-plane labelling).
    """

    local: str
    offsets: np.ndarray
    lut: str
    n: int
    sizes: np.ndarray
    values: np.ndarray
    border: np.ndarray


def _values(src: str, box: Box, value_lut: np.ndarray | None) -> np.ndarray:
    import zarr

    v = np.asarray(zarr.open_array(src, mode="r")[box])
    return value_lut[v] if value_lut is not None else v


def label_block(
    block: Block,
    src: str,
    value_lut: np.ndarray | None,
    connectivity: int,
    out: str,
    faces: str,
    shape: tuple[int, int, int],
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Label one block; write its local ids and its six face slabs; return (n, sizes, values,
    border ids)."""
    import cc3d
    import zarr

    v = _values(src, block.box, value_lut)
    if connectivity == 4:
        ids = np.zeros(v.shape, np.uint32)
        n = 0
        for z in range(v.shape[0]):
            lab, k = cc3d.connected_components(v[z], connectivity=4, return_N=True)
            ids[z] = np.where(lab > 0, lab.astype(np.uint32) + n, 0)
            n += int(k)
    else:
        ids, n = cc3d.connected_components(
            v, connectivity=connectivity, return_N=True, out_dtype=np.uint32
        )
        n = int(n)
    zarr.open_array(out, mode="r+")[block.box] = ids
    slabs = zarr.open_array(faces, mode="r+")
    stack = np.zeros(slabs.shape[1:], np.uint32)
    for f, (ax, end) in enumerate(FACES):
        face = np.take(ids, -1 if end else 0, axis=ax)
        stack[f, : face.shape[0], : face.shape[1]] = face
    slabs[block.index] = stack
    sizes = np.bincount(ids.ravel(), minlength=n + 1)
    values = np.zeros(n + 1, v.dtype)
    values[ids.ravel()] = v.ravel()
    border_faces = []
    for ax in range(3) if connectivity != 4 else (1, 2):
        if block.start[ax] == 0:
            border_faces.append(np.take(ids, 0, axis=ax).ravel())
        if block.stop[ax] == shape[ax]:
            border_faces.append(np.take(ids, -1, axis=ax).ravel())
    border = np.unique(np.concatenate(border_faces)) if border_faces else np.zeros(0, np.uint32)
    return n, sizes, values, border[border > 0]


#: The six face slabs a block keeps: (axis, 0 = low side / 1 = high side).
FACES = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]


def global_ids(
    local: str, plan: Plan, offsets: np.ndarray, box: Box, lut: np.ndarray | None = None
) -> np.ndarray:
    """Global index (or, with ``lut``, component id) of every voxel of ``box``; 0 = none."""
    import zarr

    arr = zarr.open_array(local, mode="r")
    out = np.zeros(tuple(s.stop - s.start for s in box), np.uint64 if lut is None else np.uint32)
    for b in plan.blocks_in(box):
        inter = tuple(
            slice(max(s.start, a), min(s.stop, z))
            for s, a, z in zip(box, b.start, b.stop, strict=True)
        )
        dst = tuple(
            slice(i.start - s.start, i.stop - s.start) for i, s in zip(inter, box, strict=True)
        )
        ids = np.asarray(arr[inter])
        first = int(offsets[b.index])
        if lut is None:
            out[dst] = np.where(ids > 0, ids.astype(np.uint64) + first, 0)
        else:
            table = np.asarray(lut[first : int(offsets[b.index + 1]) + 1], dtype=np.uint32)
            table = table.copy()
            table[0] = 0
            out[dst] = table[ids]
    return out


def shell(block: Block, plan: Plan, faces: str, offsets: np.ndarray) -> np.ndarray:
    """Global indices on the block's own faces and on the one-voxel shell around it (the
    block grown by one, its interior left 0), read from the blocks' face slabs only."""
    import zarr

    slabs = zarr.open_array(faces, mode="r")
    ext = block.grown(1, plan.shape)
    g = np.zeros(tuple(s.stop - s.start for s in ext), np.uint64)
    for d in itertools.product((-1, 0, 1), repeat=3):
        nb = plan.block_at(tuple(a + b for a, b in zip(block.grid, d, strict=True)))
        if nb is None:
            continue
        stack = np.asarray(slabs[nb.index])
        first = np.uint64(offsets[nb.index])
        # this block's own six faces; of a neighbour, its face towards this block along the
        # first axis it lies off (cropped to the shell below: a slab, a row or a corner)
        if any(d):
            ax = next(a for a in range(3) if d[a])
            parts = [(ax, 1 if d[ax] < 0 else 0)]
        else:
            parts = FACES
        for ax, end in parts:
            f = FACES.index((ax, end))
            others = [a for a in range(3) if a != ax]
            face = stack[f, : nb.shape[others[0]], : nb.shape[others[1]]]
            full = np.expand_dims(face, ax)
            at = nb.stop[ax] - 1 if end else nb.start[ax]
            box = [slice(nb.start[a], nb.stop[a]) for a in range(3)]
            box[ax] = slice(at, at + 1)
            inter = [
                slice(max(b.start, e.start), min(b.stop, e.stop))
                for b, e in zip(box, ext, strict=True)
            ]
            if any(i.stop <= i.start for i in inter):
                continue
            src = tuple(
                slice(i.start - b.start, i.stop - b.start) for i, b in zip(inter, box, strict=True)
            )
            dst = tuple(
                slice(i.start - e.start, i.stop - e.start) for i, e in zip(inter, ext, strict=True)
            )
            part = full[src]
            g[dst] = np.where(part > 0, part.astype(np.uint64) + first, g[dst])
    return g


def pairs_block(
    block: Block, faces: str, connectivity: int, plan: Plan, offsets: np.ndarray
) -> np.ndarray:
    """Pairs (k, 2) of global indices that touch across this block's faces (any values)."""
    ext = block.grown(1, plan.shape)
    g = shell(block, plan, faces, offsets)
    inner = block.inner_in(ext)
    found = []
    for off in OFFSETS[connectivity]:
        for ax in range(3):
            if off[ax] == 0:
                continue
            # origins on the face the offset leaves through, neighbours shifted by it
            org = list(inner)
            org[ax] = (
                slice(inner[ax].stop - 1, inner[ax].stop)
                if off[ax] > 0
                else slice(inner[ax].start, inner[ax].start + 1)
            )
            src_box, dst_box = [], []
            ok = True
            for a in range(3):
                lo, hi = org[a].start, org[a].stop
                lo2, hi2 = lo + off[a], hi + off[a]
                if lo2 < 0:
                    lo, lo2 = lo - lo2, 0
                if hi2 > g.shape[a]:
                    hi, hi2 = hi - (hi2 - g.shape[a]), g.shape[a]
                if hi <= lo:
                    ok = False
                    break
                src_box.append(slice(lo, hi))
                dst_box.append(slice(lo2, hi2))
            if not ok:
                continue
            a_ids, b_ids = g[tuple(src_box)], g[tuple(dst_box)]
            keep = (a_ids > 0) & (b_ids > 0) & (a_ids != b_ids)
            if keep.any():
                found.append(np.stack([a_ids[keep], b_ids[keep]], axis=1))
    if not found:
        return np.zeros((0, 2), np.uint64)
    return np.unique(np.concatenate(found), axis=0)


def label(
    runner: Any,
    name: str,
    src: str,
    *,
    connectivity: int,
    value_lut: np.ndarray | None = None,
    plan: Plan | None = None,
) -> Labelled:
    """Connected components of ``src`` (a work array; 0 = nothing) over the whole volume.

    ``value_lut`` maps the stored values first (e.g. class → 0 to leave a class out); ``plan``
    is the block grid of ``src`` when it is not the run's (the coarse cell grid).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    work: Work = runner.work
    plan = plan or work.plan
    blocks = plan.blocks
    local = work.create(f"{name}-local", np.uint32, plan.shape, plan.block)
    m = max(plan.block)
    faces = work.create(f"{name}-faces", np.uint32, (len(blocks), 6, m, m), (1, 6, m, m))
    res = runner.map(
        f"{name}-label", label_block, blocks, src, value_lut, connectivity, local, faces, plan.shape
    )
    counts = np.array([r[0] for r in res], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    pairs = runner.map(f"{name}-faces", pairs_block, blocks, faces, connectivity, plan, offsets)
    total = int(offsets[-1])
    edges = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.uint64)
    gvalue = np.zeros(total + 1, np.int64)
    for b, (k, _, vals, _) in zip(blocks, res, strict=True):
        gvalue[offsets[b.index] + 1 : offsets[b.index] + k + 1] = vals[1:]
    edges = edges[gvalue[edges[:, 0].astype(np.int64)] == gvalue[edges[:, 1].astype(np.int64)]]
    graph = coo_matrix(
        (
            np.ones(len(edges), np.int8),
            (edges[:, 0].astype(np.int64), edges[:, 1].astype(np.int64)),
        ),
        shape=(total + 1, total + 1),
    )
    _, comp = connected_components(graph, directed=False)
    lut = np.zeros(total + 1, np.int64)
    if total:
        _, inverse = np.unique(comp[1:], return_inverse=True)
        lut[1:] = inverse.ravel() + 1
    n = int(lut.max(initial=0))
    sizes = np.zeros(n + 1, np.int64)
    values = np.zeros(n + 1, np.int64)
    border = np.zeros(n + 1, bool)
    for b, (k, s, vals, edge) in zip(blocks, res, strict=True):
        if k == 0:
            continue
        ids = lut[offsets[b.index] + 1 : offsets[b.index] + k + 1]
        np.add.at(sizes, ids, s[1:])
        values[ids] = vals[1:]
        border[lut[offsets[b.index] + edge.astype(np.int64)]] = True
    lut_path = str(Path(work.root) / f"{name}-lut.npy")
    np.save(lut_path, lut)
    return Labelled(local, offsets, lut_path, n, sizes, values, border)


def read_components(lab: Labelled, plan: Plan, box: Box) -> np.ndarray:
    """Component ids (uint32, 0 = none) of ``box``."""
    lut = np.load(lab.lut, mmap_mode="r")
    return global_ids(lab.local, plan, lab.offsets, box, lut)
