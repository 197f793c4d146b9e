"""The per-volume implicit neural field for missing sections (vemcell_train.inr; needs torch)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vemcell import sparse  # noqa: E402
from vemcell.io.volumes import read_volume, write_tiff  # noqa: E402
from vemcell_train.inr import INRSettings, level_shapes, main, reconstruct_inr  # noqa: E402

FAST = INRSettings(steps=120, batch=1024, levels=3, hidden=32, lr_grid=3e-2, lr_mlp=3e-3)


def _smooth(n: int = 17, size: int = 20) -> np.ndarray:
    """A stack whose grey levels change smoothly with depth (and are textured in-plane)."""
    z, y, x = np.mgrid[0:n, 0:size, 0:size].astype(np.float32)
    img = 70.0 + 7.0 * z + 25.0 * np.sin(x / 3.0) * np.cos(y / 4.0)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def test_levels_never_finer_than_the_kept_sections() -> None:
    shapes = level_shapes(25, 160, 160, (80.0, 20.0, 20.0), levels=6)
    assert shapes[0] == (5, 8, 8) and shapes[-1] == (25, 160, 160)
    assert all(2 <= rz <= 25 for rz, _, _ in shapes)


def test_inr_keeps_the_kept_sections_and_beats_nearest() -> None:
    full = _smooth()
    k = 4
    kept = full[::k]
    restored, facts = reconstruct_inr(kept, k, (4.0, 1.0, 1.0), FAST)
    assert restored.shape == full.shape and restored.dtype == full.dtype
    assert np.array_equal(restored[::k], kept)
    dropped = [z for z in range(full.shape[0]) if z % k]
    nearest = sparse.reconstruct(kept, k, "nearest")

    def err(r: np.ndarray) -> float:
        return float(np.mean(np.abs(r[dropped].astype(float) - full[dropped])))

    assert err(restored) < 0.5 * err(nearest), (err(restored), err(nearest), facts)


def test_cli_contract(tmp_path) -> None:
    full = _smooth(n=9, size=16)
    src, out = tmp_path / "sparse.tif", tmp_path / "full.tif"
    write_tiff(src, full[::2], (40.0, 10.0, 10.0))
    assert main([str(src), "--factor", "2", "--out", str(out), "--steps", "20"]) == 0
    vol = read_volume(out)
    arr = vol.array()
    assert arr.shape == (9, 16, 16) and arr.dtype == np.uint8
    assert tuple(vol.voxel_size_nm) == pytest.approx((20.0, 10.0, 10.0))
    assert np.array_equal(arr[::2], full[::2])
