"""OME-Zarr label volumes: level 0 written block by block, a pyramid, NGFF metadata.

zarr writes the arrays (Zarr v3, one chunk per block, so block tasks never share a chunk);
ome-zarr-py writes the OME-NGFF 0.5 metadata (``multiscales`` with the voxel size in nm, and
``image-label`` with each class's colour and name), so napari, neuroglancer, webknossos and
Fiji (MoBIE) open the result. Lower levels take every second voxel of the level above (labels
are never averaged). :func:`read_level` is what a viewer (the Blender add-on) calls to read the
level that fits a voxel budget.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from vemcell.blockwise.plan import Block, Plan
from vemcell.errors import VemcellError

#: Levels are added until the largest side is below this many voxels.
SMALLEST = 64


def level_shapes(shape: Sequence[int]) -> list[tuple[int, int, int]]:
    """Shapes of the pyramid levels: halved (rounded up) until the largest side < SMALLEST."""
    shapes = [tuple(int(s) for s in shape)]
    while max(shapes[-1]) >= 2 * SMALLEST:
        shapes.append(tuple(math.ceil(s / 2) for s in shapes[-1]))
    return shapes  # type: ignore[return-value]


def create(
    path: str, shape: Sequence[int], block: Sequence[int], dtype: Any, first: int = 0
) -> list[str]:
    """Create (or keep) the group and the arrays of every level from ``first`` on (1: no
    full-resolution copy, as for the EM preview); returns their paths."""
    import zarr

    root = zarr.open_group(path, mode="a", zarr_format=3)
    paths = []
    for k, s in enumerate(level_shapes(shape)):
        if k < first:
            continue
        chunks = tuple(min(b, n) for b, n in zip(block, s, strict=True))
        name = str(k)
        if name in root:
            a = root[name]
            if tuple(a.shape) == s and tuple(a.chunks) == chunks and a.dtype == dtype:
                paths.append(os.path.join(path, name))
                continue
        root.create_array(name, shape=s, chunks=chunks, dtype=dtype, fill_value=0, overwrite=True)
        paths.append(os.path.join(path, name))
    return paths


def downsample_block(block: Block, src: str, dst: str) -> int:
    """One block of a lower level: every second voxel of the level above."""
    import zarr

    box = tuple(slice(2 * a, 2 * b) for a, b in zip(block.start, block.stop, strict=True))
    data = np.asarray(zarr.open_array(src, mode="r")[box])[::2, ::2, ::2]
    zarr.open_array(dst, mode="r+")[block.box] = data
    return 0


def pyramid(runner: Any, name: str, paths: list[str], block: Sequence[int]) -> None:
    """Fill each level after the first from the one above, one task per block of each level."""
    import zarr

    for k in range(1, len(paths)):
        shape = zarr.open_array(paths[k], mode="r").shape
        plan = Plan.make(shape, block)
        runner.map(f"{name}-level{k}", downsample_block, plan.blocks, paths[k - 1], paths[k])


def write_metadata(
    path: str,
    voxel_nm: Sequence[float],
    classes: Sequence[dict[str, Any]] | None = None,
    name: str = "labels",
) -> None:
    """NGFF 0.5 ``multiscales`` (and ``image-label`` when ``classes`` are given) on ``path``."""
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import add_metadata, write_multiscales_metadata

    fmt = FormatV05()
    root = zarr.open_group(path, mode="a", zarr_format=3)
    levels = sorted((k for k in root.array_keys() if k.isdigit()), key=int)
    datasets = [
        {
            "path": k,
            "coordinateTransformations": [
                {"type": "scale", "scale": [float(v) * 2 ** int(k) for v in voxel_nm]}
            ],
        }
        for k in levels
    ]
    axes = [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    write_multiscales_metadata(root, datasets, fmt=fmt, axes=axes, name=name)
    if classes is not None:
        add_metadata(
            root,
            {
                "image-label": {
                    "version": fmt.version,
                    "colors": [
                        {
                            "label-value": c["value"],
                            "rgba": [round(255 * float(x)) for x in c["color"]],
                        }
                        for c in classes
                    ],
                    "properties": [
                        {"label-value": c["value"], "class": c["name"]} for c in classes
                    ],
                }
            },
            fmt=fmt,
        )


def read_level(path: str | os.PathLike, max_voxels: int = 64_000_000) -> tuple[np.ndarray, tuple]:
    """The finest level of an OME-Zarr (or plain Zarr) volume with at most ``max_voxels``.

    Returns the array and its voxel size in nm (Z, Y, X). For viewers that cannot hold the
    whole volume: the Blender add-on reads the section it shows from the level that fits.
    """
    import zarr

    root = zarr.open(str(path), mode="r")
    if hasattr(root, "shape"):
        return np.asarray(root[...]), (1.0, 1.0, 1.0)
    attrs = dict(root.attrs)
    ms = (attrs.get("ome") or attrs).get("multiscales")
    if not ms:
        raise VemcellError(f"'{path}' is not an OME-Zarr image (no multiscales metadata).")
    for ds in ms[0]["datasets"]:
        arr = root[ds["path"]]
        if math.prod(arr.shape[-3:]) <= max_voxels or ds is ms[0]["datasets"][-1]:
            scale = next(
                (
                    t["scale"]
                    for t in ds.get("coordinateTransformations", [])
                    if t["type"] == "scale"
                ),
                [1.0, 1.0, 1.0],
            )
            data = np.asarray(arr[...])
            while data.ndim > 3:
                data = data[0]
            return data, tuple(float(s) for s in scale[-3:])
    raise VemcellError(f"'{path}' holds no levels.")  # pragma: no cover
