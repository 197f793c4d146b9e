"""The pipeline on volumes larger than memory: block tasks on dask.distributed, OME-Zarr out."""

from vemcell.blockwise.run import run_blockwise

__all__ = ["run_blockwise"]
