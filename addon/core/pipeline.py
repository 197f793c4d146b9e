"""Building blocks shared by the operators and the headless script: importing a run folder,
peeking at a volume's voxel size, the embedded sample and the shipped models."""

from __future__ import annotations

import os
from pathlib import Path

import bpy

from . import backend, cutplanes
from . import scene as vscene


def load_result(
    scene: bpy.types.Scene,
    run_dir: str | os.PathLike,
    colours: dict[str, tuple[float, float, float, float]] | None = None,
    fast_cuts: bool = True,
    max_cells: int | None = None,
) -> bpy.types.Collection:
    """Import a run folder (replacing the previous result) and re-apply existing cut planes;
    of a blockwise run's many cells only the ``max_cells`` largest."""
    root = vscene.import_run_dir(run_dir, scene, colours, max_cells)
    cutplanes.apply_to_objects(scene, fast=fast_cuts)
    return root


def read_voxel_size(path: str) -> tuple[tuple[float, float, float], str] | None:
    """The voxel size (nm, z y x) a volume file declares and where it came from.

    TIFF headers are read without loading the pixels; other formats go through
    ``vemcell.io.read_volume``. None when the backend is unavailable or the file unreadable.
    """
    backend.ensure_importable()
    try:
        from vemcell.io import volumes as vio
    except ImportError:
        return None
    p = Path(path)
    if not p.exists():
        return None
    try:
        if p.is_file() and p.name.lower().endswith(vio.TIFF_SUFFIXES):
            import tifffile

            with tifffile.TiffFile(p) as tif:
                voxel, _ = vio.tiff_metadata(tif)
            if voxel is None:
                return vio.DEFAULT_VOXEL_NM, "default"
            return tuple(float(v) for v in voxel), "metadata"  # type: ignore[return-value]
        vol = vio.read_volume(p)
        return vol.voxel_size_nm, vol.voxel_size_source
    except Exception:
        return None


def sample_volume() -> str:
    """The embedded sample's image.tif ('' when this backend version has no sample)."""
    backend.ensure_importable()
    try:
        from vemcell.synth import generator as synth

        folder = Path(synth.sample_dir())
    except Exception:
        return ""
    image = folder / "image.tif"
    return str(image) if image.exists() else ""


def shipped_models() -> list[tuple[str, str]]:
    """(name, title) of every model whose card the backend finds."""
    backend.ensure_importable()
    try:
        from vemcell.cards.card import list_models

        return [(c.name, c.title or c.name) for c in list_models()]
    except Exception:
        return []
