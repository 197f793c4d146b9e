"""Cell separation of a volume too large for memory, with the same result as in memory.

The in-memory route (:func:`vemcell.cells.separate.find_cells` with the U-Net foreground) is
reproduced step by step:

1. foreground = not background, opened with an in-plane disk: local, per block with a halo;
2. holes filled per section and in 3D, specks of foreground dropped: global connected
   components (:mod:`vemcell.blockwise.labels`; 4-connected in-plane for the section fill,
   6-connected in 3D, as scipy's defaults are);
3. the mask is resampled to the ~40 nm working grid block by block with the same linear
   interpolation ``scipy.ndimage.zoom`` uses (same coordinates, same weights);
4. the watershed of :func:`vemcell.cells.separate.separate_cells` runs on that coarse grid
   block by block, with halos and global seeds (:mod:`vemcell.blockwise.watershed`);
5. the cell ids go back to the full grid per block, lost edge voxels grown as in memory (a halo
   of as many voxels as growth steps), and the ids are renumbered over the whole volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vemcell.blockwise.labels import Labelled, read_components
from vemcell.blockwise.plan import Block, Plan


@dataclass(frozen=True)
class MaskSource:
    """How a block task reads the cleaned cell mask: a stored mask, or kept components."""

    path: str
    lab: Labelled | None = None
    keep: np.ndarray | None = None

    def read(self, plan: Plan, box: Any) -> np.ndarray:
        import zarr

        if self.lab is None:
            return np.asarray(zarr.open_array(self.path, mode="r")[box]) > 0
        return self.keep[read_components(self.lab, plan, box)]


def open_block(
    block: Block, plan: Plan, labels: str, background: int, radius: int, out: str
) -> int:
    """Foreground (labels ≠ background) opened with an in-plane disk of ``radius`` pixels."""
    import zarr
    from scipy import ndimage as ndi
    from skimage.morphology import disk

    outer = block.grown((0, 2 * radius, 2 * radius), plan.shape)
    m = np.asarray(zarr.open_array(labels, mode="r")[outer]) != background
    if radius > 0:
        m = ndi.binary_opening(m, disk(radius)[None])
    zarr.open_array(out, mode="r+")[block.box] = m[block.inner_in(outer)].astype(np.uint8)
    return 0


def fill_block(block: Block, plan: Plan, mask: str, holes: Labelled, out: str) -> int:
    """mask | the background components that touch no border (holes)."""
    import zarr

    m = np.asarray(zarr.open_array(mask, mode="r")[block.box]) > 0
    hole = ~holes.border
    hole[0] = False
    m |= hole[read_components(holes, plan, block.box)]
    zarr.open_array(out, mode="r+")[block.box] = m.astype(np.uint8)
    return 0


def zoom_coordinates(n_in: int, n_out: int, start: int, stop: int) -> np.ndarray:
    """Input coordinates of output samples ``start:stop`` as ``scipy.ndimage.zoom`` maps them."""
    ratio = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    return np.arange(start, stop, dtype=np.float64) * ratio


def coarse_block(
    cblock: Block, plan: Plan, coarse_shape: tuple[int, int, int], source: MaskSource, out: str
) -> int:
    """One block of the mask on the working grid: linear zoom of mask × 254, then > 127."""
    import zarr
    from scipy import ndimage as ndi

    coords = [
        zoom_coordinates(n, c, a, b)
        for n, c, a, b in zip(plan.shape, coarse_shape, cblock.start, cblock.stop, strict=True)
    ]
    box = tuple(
        slice(int(np.floor(c[0])), min(n, int(np.floor(c[-1])) + 2))
        for c, n in zip(coords, plan.shape, strict=True)
    )
    m = source.read(plan, box).astype(np.uint8) * np.uint8(254)
    grid = np.meshgrid(*[c - s.start for c, s in zip(coords, box, strict=True)], indexing="ij")
    zoomed = ndi.map_coordinates(m, grid, order=1) > 127
    zarr.open_array(out, mode="r+")[cblock.box] = zoomed.astype(np.uint8)
    return 0


def upsample_block(
    block: Block, plan: Plan, coarse_ids: str, source: MaskSource, steps: int, out: str
) -> np.ndarray:
    """Cell ids of one block on the full grid; returns the ids present."""
    import zarr
    from scipy import ndimage as ndi

    cids = zarr.open_array(coarse_ids, mode="r")
    ext = block.grown(steps, plan.shape)
    idx = [
        np.minimum((np.arange(n) * (s / n)).astype(np.intp), s - 1)[e]
        for n, s, e in zip(plan.shape, cids.shape, ext, strict=True)
    ]
    sub = np.asarray(cids[tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)])
    mask = source.read(plan, ext)
    ids = sub[np.ix_(*[i - i[0] for i in idx])] * mask
    for _ in range(steps):
        lost = mask & (ids == 0)
        if not lost.any() or not ids.any():
            break
        grown = ndi.grey_dilation(ids, size=(3, 3, 3))
        ids = np.where(lost, grown, ids)
    ids = ids[block.inner_in(ext)]
    zarr.open_array(out, mode="r+")[block.box] = ids.astype(np.uint16)
    return np.unique(ids)
