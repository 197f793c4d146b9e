"""The cell watershed of a volume too large for memory: block by block, with halos and global seeds.

:func:`vemcell.cells.separate.separate_cells` on the coarse (~40 nm) cell grid, in passes over
blocks of that grid, so no task ever holds more than a block and its halo:

1. **distance**: the Euclidean distance to the resin per block, read with a halo that doubles
   until every voxel's nearest resin lies inside what was read, so it is exact;
2. **seeds**: the smoothed distance and its h-maxima per block, read with a halo of twice the
   largest distance found (the widest cell) plus the smoothing's reach;
3. seeds and mask pieces labelled over the whole grid (:mod:`vemcell.blockwise.labels`) and
   numbered by their first voxel in raster order, as ``skimage.measure.label`` numbers them in
   memory; a piece with no seed is one marker of its own;
4. **watershed** per block with the same halo and the global markers. Mask voxels no marker
   reaches inside the halo (a cell longer than the halo) are flooded on from the regions around
   them, one halo further per pass; a region flooded where the seed that wins there globally
   lay outside the halo can be cut off from its own seed, and such parts (a global labelling
   of the regions finds them) are flooded again; whatever is still unreached after
   :data:`MAX_REFLOODS` passes joins the region it touches most;
5. small regions merged along the face graph summed over blocks, by the function the in-memory
   run uses (:func:`vemcell.cells.separate.small_region_targets`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

import vemcell.blockwise.labels as blabels
from vemcell.blockwise.plan import Block, Box, Plan

#: A block task's halo never makes it read more than this many coarse voxels.
MAX_OUTER_VOXELS = 48_000_000
#: The smallest coarse block edge a run uses. Seeds and flooding read each block with a halo of
#: twice the widest cell (~44 voxels for 0.7 µm cells at 40 nm), so small blocks would redo
#: most of their neighbours' work: with 96³ a task reads (96 + 88)³, 6.6× its block.
MIN_BLOCK = 96
#: Passes that flood stray voxels on, one halo further each, before the rest are merged.
MAX_REFLOODS = 32


@dataclass(frozen=True)
class Settings:
    """The watershed settings of :func:`separate_cells` (µm), and the coarse voxel (nm)."""

    voxel_nm: tuple[float, float, float]
    smooth_um: float
    h_um: float
    min_radius_um: float
    min_cell_um3: float

    @classmethod
    def defaults(cls, voxel_nm: tuple[float, float, float]) -> Settings:
        from vemcell.cells import separate as sep

        return cls(
            voxel_nm,
            sep.DEFAULT_SEED_SMOOTH_UM,
            sep.DEFAULT_SEED_H_UM,
            sep.DEFAULT_MIN_SEED_RADIUS_UM,
            sep.DEFAULT_MIN_CELL_UM3,
        )

    @property
    def smooth_reach(self) -> tuple[int, int, int]:
        """Voxels the Gaussian reaches per axis (scipy's radius at truncate 4)."""
        if self.smooth_um <= 0:
            return (0, 0, 0)
        return tuple(int(4.0 * self.smooth_um * 1000.0 / v + 0.5) for v in self.voxel_nm)  # type: ignore[return-value]


def _read(path: str, box: Box) -> np.ndarray:
    import zarr

    return np.asarray(zarr.open_array(path, mode="r")[box])


def _write(path: str, box: Box, value: np.ndarray) -> None:
    import zarr

    zarr.open_array(path, mode="r+")[box] = value


def _whole(outer: Box, shape: tuple[int, ...]) -> list[bool]:
    return [o.start == 0 and o.stop == n for o, n in zip(outer, shape, strict=True)]


def distance_block(
    block: Block, shape: tuple[int, int, int], mask: str, s: Settings, halo: int, out: str
) -> tuple[float, bool]:
    """Exact distance to the resin (µm) of one block; returns its largest value and whether
    the halo hit its cap first (then the distance is exact only up to the halo).

    A voxel's nearest resin is at most its computed distance away, so once the largest
    distance inside the block is shorter than the halo (on every side that does not end at
    the volume's edge) every nearest resin was read and the block is exact. The halo doubles
    until then, but never past :data:`MAX_OUTER_VOXELS` (a block deep inside resin-free
    tissue would otherwise end up reading the whole volume).
    """
    from vemcell.cells.separate import distance_um

    h = max(1, halo)
    while True:
        outer = block.grown(h, shape)
        m = _read(mask, outer) > 0
        d = distance_um(m, np.asarray(s.voxel_nm))
        inner = d[block.inner_in(outer)]
        whole = _whole(outer, shape)
        top = float(inner.max(initial=0.0))
        reach = min(
            (h * v / 1000.0 for v, w in zip(s.voxel_nm, whole, strict=True) if not w),
            default=math.inf,
        )
        if all(whole) or (not m.all() and top < reach):
            capped = False
            break
        if math.prod(b.stop - b.start for b in block.grown(2 * h, shape)) > MAX_OUTER_VOXELS:
            # no resin read at all: scipy measures to a phantom corner, so take the plateau
            inner = np.full_like(inner, reach) if m.all() else np.minimum(inner, np.float32(reach))
            top, capped = min(top, reach), True
            break
        h *= 2
    _write(out, block.box, inner)
    return top, capped


def seeds_block(
    block: Block,
    shape: tuple[int, int, int],
    mask: str,
    dist: str,
    s: Settings,
    halo: tuple[int, int, int],
    smooth_out: str,
    seeds_out: str,
) -> int:
    """The smoothed distance and the seeds (h-maxima) of one block; returns its seed voxels."""
    from vemcell.cells.separate import seed_maxima, smooth_distance

    g = s.smooth_reach
    outer = block.grown(tuple(a + b for a, b in zip(halo, g, strict=True)), shape)
    mid = block.grown(halo, shape)
    m = _read(mask, outer) > 0
    ds = smooth_distance(_read(dist, outer), m, np.asarray(s.voxel_nm), s.smooth_um)
    _write(smooth_out, block.box, ds[block.inner_in(outer)].astype(np.float32))
    in_mid = tuple(
        slice(a.start - o.start, a.stop - o.start) for a, o in zip(mid, outer, strict=True)
    )
    peaks = seed_maxima(ds[in_mid], s.h_um, s.min_radius_um)
    inner = peaks[block.inner_in(mid)]
    _write(seeds_out, block.box, inner.astype(np.uint8))
    return int(inner.sum())


def first_block(
    block: Block, plan: Plan, seeds: blabels.Labelled, pieces: blabels.Labelled
) -> dict[str, np.ndarray]:
    """Each seed's and each piece's first voxel (raster index) in this block, and the pieces
    that hold a seed."""
    sd = blabels.read_components(seeds, plan, block.box)
    pc = blabels.read_components(pieces, plan, block.box)

    def firsts(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # inside one block, block-local raster order is the global raster order
        u, idx = np.unique(ids.ravel(), return_index=True)
        keep = u > 0
        local = np.unravel_index(idx[keep], ids.shape)
        glob = np.ravel_multi_index(
            tuple(c + a for c, a in zip(local, block.start, strict=True)), plan.shape
        )
        return u[keep], glob.astype(np.int64)

    s_ids, s_first = firsts(sd)
    p_ids, p_first = firsts(pc)
    seeded = np.unique(pc[sd > 0])
    return {"s": s_ids, "sf": s_first, "p": p_ids, "pf": p_first, "seeded": seeded}


def _by_first(n: int, parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Each id's first raster index over all blocks (index = id)."""
    first = np.full(n + 1, np.iinfo(np.int64).max, np.int64)
    for ids, f in parts:
        np.minimum.at(first, ids.astype(np.int64), f)
    return first


def markers_luts(
    seeds: blabels.Labelled, pieces: blabels.Labelled, firsts: list[dict[str, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Marker id of every seed and of every unseeded piece, numbered as in memory: seeds by
    first voxel, then unseeded pieces by first voxel. Returns (seed lut, piece lut, markers)."""
    s_first = _by_first(seeds.n, [(f["s"], f["sf"]) for f in firsts])
    p_first = _by_first(pieces.n, [(f["p"], f["pf"]) for f in firsts])
    seed_lut = np.zeros(seeds.n + 1, np.int64)
    order = np.argsort(s_first[1:], kind="stable") + 1
    seed_lut[order] = np.arange(1, seeds.n + 1)
    seeded = np.zeros(pieces.n + 1, bool)
    for f in firsts:
        seeded[f["seeded"].astype(np.int64)] = True
    seeded[0] = True
    unseeded = np.flatnonzero(~seeded)
    unseeded = unseeded[np.argsort(p_first[unseeded], kind="stable")]
    piece_lut = np.zeros(pieces.n + 1, np.int64)
    piece_lut[unseeded] = np.arange(seeds.n + 1, seeds.n + 1 + len(unseeded))
    return seed_lut, piece_lut, seeds.n + len(unseeded)


@dataclass(frozen=True)
class FloodJob:
    """What a watershed block task reads: the mask, the smoothed distance, the markers."""

    plan: Plan
    mask: str
    smooth: str
    seeds: blabels.Labelled
    pieces: blabels.Labelled
    seed_lut: np.ndarray
    piece_lut: np.ndarray
    n_markers: int
    halo: tuple[int, int, int]
    out: str


def flood_block(block: Block, job: FloodJob) -> int:
    """Watershed of one block among the global markers; returns its stray voxels.

    Mask voxels that no marker reaches inside the halo (stray) keep ``n_markers + piece``.
    """
    from skimage.segmentation import watershed

    outer = block.grown(job.halo, job.plan.shape)
    inner = block.inner_in(outer)
    m = _read(job.mask, outer) > 0
    sd = blabels.read_components(job.seeds, job.plan, outer)
    pc = blabels.read_components(job.pieces, job.plan, outer)
    markers = np.where(sd > 0, job.seed_lut[sd], job.piece_lut[pc])
    ws = watershed(-_read(job.smooth, outer), markers, mask=m)[inner].astype(np.int64)
    stray = m[inner] & (ws == 0)
    ws[stray] = job.n_markers + pc[inner][stray].astype(np.int64)
    _write(job.out, block.box, ws.astype(np.uint32))
    return int(stray.sum())


def reflood_block(block: Block, job: FloodJob, regions: str, out: str) -> int:
    """Flood a block's stray voxels from the regions around them (read with the halo, so
    the flood goes on where the last pass stopped); writes the block to ``out``; returns the
    stray voxels left."""
    from skimage.segmentation import watershed

    outer = block.grown(job.halo, job.plan.shape)
    inner = block.inner_in(outer)
    ids = _read(regions, outer).astype(np.int64)
    markers = np.where(ids > job.n_markers, 0, ids)
    ws = watershed(-_read(job.smooth, outer), markers, mask=ids > 0)[inner].astype(np.int64)
    mine = ids[inner]
    ws = np.where((mine > job.n_markers) & (ws > 0), ws, mine)
    _write(out, block.box, ws.astype(np.uint32))
    return int((ws > job.n_markers).sum())


def copy_block(block: Block, src: str, dst: str) -> int:
    """Copy one block of a work array into another."""
    _write(dst, block.box, _read(src, block.box))
    return 0


def faces_block(
    block: Block, shape: tuple[int, int, int], regions: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face counts (k, 3: low id, high id, faces) between regions, for faces whose first voxel
    lies in this block (so every face of the volume is counted once); the block's region ids
    and their voxels."""
    from vemcell.cells.separate import face_pairs

    found = []
    for ax in range(3):
        box = list(block.box)
        box[ax] = slice(block.start[ax], min(shape[ax], block.stop[ax] + 1))
        pairs, counts = face_pairs(_read(regions, tuple(box)), axes=(ax,))
        if len(pairs):
            found.append(np.column_stack([pairs, counts]))
    table = np.concatenate(found) if found else np.zeros((0, 3), np.int64)
    ids, counts = np.unique(_read(regions, block.box), return_counts=True)
    return table, ids.astype(np.int64), counts


def relabel_block(block: Block, regions: str, lut: np.ndarray, out: str) -> int:
    """Final cell ids (uint16) of one block."""
    _write(out, block.box, lut[_read(regions, block.box).astype(np.int64)].astype(np.uint16))
    return 0


def flood_halo(
    largest_um: float, s: Settings, block: tuple[int, int, int]
) -> tuple[tuple[int, int, int], bool]:
    """The seeds' and watershed's halo per axis: twice the largest distance (the widest cell)
    plus the smoothing's reach, shrunk when a task would read more than MAX_OUTER_VOXELS.
    Returns (halo, whether it was shrunk)."""
    want = [
        math.ceil(2.0 * largest_um * 1000.0 / v) + g + 1
        for v, g in zip(s.voxel_nm, s.smooth_reach, strict=True)
    ]
    halo = list(want)
    while (
        np.prod([b + 2 * h for b, h in zip(block, halo, strict=True)]) > MAX_OUTER_VOXELS
        and max(halo) > 1
    ):  # a block over the budget on its own keeps a halo of 1 (the flooding passes go on)
        halo = [max(1, int(h * 0.9)) for h in halo]
    return tuple(halo), halo != want  # type: ignore[return-value]


def _reflood(runner: Any, job: FloodJob, stray: list[int], passes: int) -> tuple[list[int], int]:
    """Flood stray voxels on from the regions around them, one halo further per pass, until
    none is left or a pass changes nothing. Returns the strays per block and the passes."""
    if not sum(stray):
        return stray, passes
    blocks = job.plan.blocks
    update = runner.work.create("cells-reflood", np.uint32, job.plan.shape, job.plan.block)
    for _ in range(MAX_REFLOODS):
        if not sum(stray):
            break
        todo = [b for b, k in zip(blocks, stray, strict=True) if k]
        left = runner.map(f"cells-reflood-{passes}", reflood_block, todo, job, job.out, update)
        runner.map(f"cells-reflood-{passes}-apply", copy_block, todo, update, job.out)
        passes += 1
        now = list(stray)
        for b, k in zip(todo, left, strict=True):
            now[b.index] = k
        if sum(now) == sum(stray):
            return now, passes
        stray = now
    return stray, passes


def anchored_block(block: Block, plan: Plan, parts: blabels.Labelled, peaks: str) -> np.ndarray:
    """The region parts of this block that hold a seed voxel."""
    pid = blabels.read_components(parts, plan, block.box)
    return np.unique(pid[_read(peaks, block.box) > 0])


def orphan_block(block: Block, job: FloodJob, parts: blabels.Labelled, orphan: np.ndarray) -> int:
    """Make the voxels of orphaned parts stray again; returns how many."""
    pid = blabels.read_components(parts, job.plan, block.box)
    cut = orphan[pid]
    if not cut.any():
        return 0
    ids = _read(job.out, block.box).astype(np.int64)
    pc = blabels.read_components(job.pieces, job.plan, block.box)
    ids[cut] = job.n_markers + pc[cut].astype(np.int64)
    _write(job.out, block.box, ids.astype(np.uint32))
    return int(cut.sum())


def _orphans(runner: Any, job: FloodJob, peaks: str, n_seeds: int, k: int) -> list[int]:
    """Seeded regions' parts that hold none of their seed's voxels, made stray; per block."""
    blocks = job.plan.blocks
    parts = blabels.label(runner, f"cells-parts-{k}", job.out, connectivity=6, plan=job.plan)
    anchored = np.zeros(parts.n + 1, bool)
    for found in runner.map(f"cells-anchors-{k}", anchored_block, blocks, job.plan, parts, peaks):
        anchored[found.astype(np.int64)] = True
    orphan = (parts.values > 0) & (parts.values <= n_seeds) & ~anchored
    orphan[0] = False
    if not orphan.any():
        return []
    return runner.map(f"cells-orphans-{k}", orphan_block, blocks, job, parts, orphan)


def separate(runner: Any, plan: Plan, mask: str, s: Settings, out: str) -> dict[str, Any]:
    """Cells of the coarse ``mask`` (a work array on ``plan``) written to ``out`` (uint16);
    returns what the report says of it (cells, largest distance, halo, stray voxels)."""
    from vemcell.cells.separate import check_cell_count, small_region_targets

    work, shape, blocks = runner.work, plan.shape, plan.blocks
    dist = work.create("cells-distance", np.float32, shape, plan.block)
    start = max(1, math.ceil(1000.0 / min(s.voxel_nm)))  # 1 µm, doubled where needed
    tops = runner.map("cells-distance", distance_block, blocks, shape, mask, s, start, dist)
    largest = float(max((t for t, _ in tops), default=0.0))
    capped = sum(c for _, c in tops)
    halo, shrunk = flood_halo(largest, s, plan.block)
    smooth = work.create("cells-smooth", np.float32, shape, plan.block)
    peaks = work.create("cells-peaks", np.uint8, shape, plan.block)
    runner.map("cells-seeds", seeds_block, blocks, shape, mask, dist, s, halo, smooth, peaks)
    seeds = blabels.label(runner, "cells-seedlab", peaks, connectivity=26, plan=plan)
    pieces = blabels.label(runner, "cells-pieces", mask, connectivity=6, plan=plan)
    firsts = runner.map("cells-first", first_block, blocks, plan, seeds, pieces)
    seed_lut, piece_lut, n_markers = markers_luts(seeds, pieces, firsts)
    regions = work.create("cells-regions", np.uint32, shape, plan.block)
    job = FloodJob(plan, mask, smooth, seeds, pieces, seed_lut, piece_lut, n_markers, halo, regions)
    stray = runner.map("cells-flood", flood_block, blocks, job)
    initial_stray, passes, orphans = int(sum(stray)), 0, 0
    for round_ in range(MAX_REFLOODS):
        stray, passes = _reflood(runner, job, stray, passes)
        # a region flooded inside a halo without the seed that wins there globally can leave
        # a part cut off from its seed: such parts become stray and are flooded again
        found = _orphans(runner, job, peaks, seeds.n, round_)
        if not found:
            break
        orphans += int(sum(found))
        stray = [a + b for a, b in zip(stray, found, strict=True)]
    n_all = n_markers + pieces.n
    res = runner.map("cells-faces", faces_block, blocks, shape, regions)
    sizes = np.zeros(n_all + 1, np.int64)
    for _, ids, counts in res:
        np.add.at(sizes, ids, counts)
    sizes[0] = 0
    left_stray = int(sizes[n_markers + 1 :].sum())
    faces = [r[0] for r in res]
    table = np.concatenate(faces) if faces else np.zeros((0, 3), np.int64)
    pairs, inverse = np.unique(table[:, :2], axis=0, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights=table[:, 2], minlength=len(pairs)).astype(
        np.int64
    )
    # stray voxels first join the region they touch most, then small regions merge as in memory
    only_stray = np.where(np.arange(n_all + 1) > n_markers, 1, 2)
    first = small_region_targets(np.where(sizes > 0, only_stray, 0), pairs, counts, 2)
    sizes2 = np.bincount(first, weights=sizes, minlength=n_all + 1).astype(np.int64)
    sizes2[0] = 0
    p2 = first[pairs]
    keep = p2[:, 0] != p2[:, 1]
    p2 = np.sort(p2[keep], axis=1)
    pairs2, inv2 = np.unique(p2, axis=0, return_inverse=True)
    counts2 = np.bincount(inv2.ravel(), weights=counts[keep], minlength=len(pairs2)).astype(
        np.int64
    )
    min_vox = max(1, round(s.min_cell_um3 * 1e9 / float(np.prod(s.voxel_nm))))
    target = small_region_targets(sizes2, pairs2, counts2, min_vox)[first]
    target[sizes == 0] = 0
    kept = np.unique(target[target > 0])
    final = np.zeros(n_all + 1, np.int64)
    final[kept] = np.arange(1, len(kept) + 1)
    lut = final[target]
    check_cell_count(len(kept))
    runner.map("cells-relabel", relabel_block, blocks, regions, lut, out)
    return {
        "cells": len(kept),
        "largest_distance_um": round(largest, 4),
        "halo_voxels": list(halo),
        "halo_shrunk": bool(shrunk),
        "distance_capped_blocks": int(capped),
        "stray_voxels": initial_stray,
        "reflood_passes": passes,
        "orphan_voxels": orphans,
        "stray_voxels_merged": left_stray,
    }
