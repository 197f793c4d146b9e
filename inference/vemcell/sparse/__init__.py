"""Sparse sections: a full-resolution stack (or its organelle shapes) from every K-th one."""

from vemcell.sparse.core import (
    AUTO,
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
from vemcell.sparse.route import ROUTES, image_route, restore_volume, shape_route
from vemcell.sparse.shape import shape_interpolate

__all__ = [
    "AUTO",
    "IMAGE_METHODS",
    "METHODS",
    "ROUTES",
    "check_factor",
    "check_memory",
    "check_sections",
    "check_sparse_spacing",
    "image_route",
    "interpolate_pair",
    "kept_indices",
    "output_sections",
    "reconstruct",
    "restore_volume",
    "shape_interpolate",
    "shape_route",
    "sparse_voxel_size",
]
