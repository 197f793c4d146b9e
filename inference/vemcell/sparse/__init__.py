"""Sparse sections: a full-resolution stack (or its organelle shapes) from every K-th one."""

from vemcell.sparse.core import (
    IMAGE_METHODS,
    METHODS,
    check_factor,
    check_memory,
    check_sections,
    check_sparse_spacing,
    kept_indices,
    output_sections,
    sparse_voxel_size,
)
from vemcell.sparse.image import interpolate_pair, reconstruct
from vemcell.sparse.shape import shape_interpolate

__all__ = [
    "IMAGE_METHODS",
    "METHODS",
    "check_factor",
    "check_memory",
    "check_sections",
    "check_sparse_spacing",
    "interpolate_pair",
    "kept_indices",
    "output_sections",
    "reconstruct",
    "shape_interpolate",
    "sparse_voxel_size",
]
