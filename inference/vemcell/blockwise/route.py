"""Which route a run takes: in memory (small volumes, unchanged) or blockwise.

A run goes blockwise when asked (``--workers`` or ``--scheduler``) or when the in-memory
pipeline would not fit the memory budget: ``--memory-limit``, else 80 % of the memory available
now. The in-memory pipeline peaks at about :data:`BYTES_PER_VOXEL` bytes per voxel (5.06 GB at
512³ with six classes and 129 cells, docs/benchmarks.md).
"""

from __future__ import annotations

import math
import os
from typing import Any

#: Peak bytes per voxel of the in-memory pipeline (measured 37.7 at 512³; rounded up).
BYTES_PER_VOXEL = 40
#: Share of the available memory a run may plan to use when no --memory-limit is given.
AVAILABLE_SHARE = 0.8


def memory_budget(memory_limit: str | int | None = None) -> int:
    """The memory budget in bytes: ``memory_limit`` (``"6GB"``), else 80 % of what is free."""
    if memory_limit:
        from dask.utils import parse_bytes

        from vemcell.errors import VemcellError

        try:
            return (
                int(parse_bytes(memory_limit))
                if isinstance(memory_limit, str)
                else int(memory_limit)
            )
        except ValueError:
            raise VemcellError(
                f"--memory-limit must be a size such as 6GB, not {memory_limit!r}."
            ) from None
    import psutil

    return int(psutil.virtual_memory().available * AVAILABLE_SHARE)


def choose_route(
    volume_path: str | os.PathLike,
    voxel_size_nm: tuple[float, float, float] | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    memory_limit: str | int | None = None,
) -> tuple[bool, str]:
    """(blockwise?, why) for a run of ``volume_path``; opens the volume without loading it."""
    if scheduler:
        return True, f"dask scheduler {scheduler}"
    if workers:
        return True, f"{workers} local worker(s) asked for"
    from vemcell.io.lazy import open_lazy

    shape: Any = open_lazy(volume_path, voxel_size_nm).shape
    need = math.prod(shape) * BYTES_PER_VOXEL
    budget = memory_budget(memory_limit)
    if need > budget:
        return True, (
            f"the volume needs about {need / 1e9:.1f} GB in memory, more than the "
            f"{budget / 1e9:.1f} GB budget"
        )
    return False, "fits in memory"
