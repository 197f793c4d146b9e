"""Clean-up of cell masks (open, close, fill holes, drop specks), shared by every foreground."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from vemcell.io.volumes import check_voxel_size


def clean_mask(
    mask: np.ndarray,
    voxel_size_nm: Any,
    *,
    open_nm: float = 30.0,
    close_nm: float = 0.0,
    min_object_um3: float = 0.05,
) -> np.ndarray:
    """Morphological clean-up of a cell mask: open, close, fill holes, drop specks.

    Opening and closing use an in-plane disk (sections are often much thicker than pixels);
    holes are filled per slice (organelles cut open at the volume's top/bottom would escape a
    3D fill) and in 3D.
    """
    from skimage.morphology import disk

    v = np.asarray(check_voxel_size(voxel_size_nm), dtype=float)
    m = np.asarray(mask, dtype=bool)
    r_open = round(open_nm / v[1])
    r_close = round(close_nm / v[1])
    if r_close > 0:
        fp = disk(r_close)[None]
        m = ndi.binary_closing(np.pad(m, ((0, 0), (r_close, r_close), (r_close, r_close))), fp)
        m = m[:, r_close:-r_close, r_close:-r_close]
    if r_open > 0:
        m = ndi.binary_opening(m, disk(r_open)[None])
    for z in range(m.shape[0]):
        m[z] = ndi.binary_fill_holes(m[z])
    m = ndi.binary_fill_holes(m)
    min_vox = int(min_object_um3 * 1e9 / float(np.prod(v)))
    if min_vox > 1:
        comps, _ = ndi.label(m)
        sizes = np.bincount(comps.ravel())
        m = (sizes >= min_vox)[comps] & m
    return m
