"""A per-volume implicit neural field (INR) that restores sections never imaged (issue 18).

The field ``f(z, y, x) → intensity`` is fitted, per volume, to the pixels of the **kept**
sections only and then rendered at the depths of the missing ones; it is an experiment measured
against ``nearest``/``linear``/``flow`` (docs/sparse/inr.md), not a runtime method.

Design (Instant-NGP-style multiresolution feature grid and a tiny MLP, CPU-friendly):

- ``levels`` dense 3D grids of ``features`` learnable values per node, their in-plane
  resolution growing geometrically from 8 nodes to one node per pixel; along Z each level is
  as fine as the in-plane one in nanometres but never finer than the kept sections (the
  finest levels have one node plane per kept section, so nothing in the field can vary
  between two kept sections except through the decoder and the coarser levels). The volume is
  small enough that the grids are dense (no hashing, so no collisions); each level is a flat
  ``nn.Embedding`` read at the 8 corners of a point (trilinear weights), so gradients and
  the (lazy, ``SparseAdam``) updates touch only the nodes a batch reads.
- A decoder MLP (the levels' features concatenated → 64 → 64 → 1, ReLU) maps features to
  the normalised intensity. Training: random batches of kept-section pixels, mean squared
  error, a few thousand steps (one thread).
- Rendering: each missing section at its fractional depth between the two kept ones. Output
  section ``i·K`` is input section ``i`` bit for bit (the field is only asked for the rest),
  the dtype is kept (rounded and clipped) and the Z spacing is divided by K: the contract of
  ``vemcell reconstruct``.

Why not a residual over ``linear`` or ``flow``: both reproduce every kept section exactly, so
a field fitted to the kept sections only would learn a residual of zero there and nothing
anywhere else. Why not a plain Fourier-feature / SIREN MLP over (z, y, x): on one thread a few
thousand steps of an MLP small enough to be fast cannot hold the texture of 25 sections of
160 × 160 pixels (it blurs them); the feature grid holds it in its nodes and keeps each step
cheap. What the field can contribute between kept sections is the nonlinear decoding of
features interpolated along Z (interpolation in a learned feature space rather than in grey
levels) and the coarse levels' 3D context; it has no notion of motion (which ``flow`` has).

    python -m vemcell_train.inr SPARSE.tif --factor 4 --out FULL.tif [--steps 2000]
    python -m vemcell_train.inr FULL.tif --keep-every 4 --factor 4 --out RESTORED.tif
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from vemcell.sparse.core import cast_to, check_factor, check_sections, output_sections
from vemcell.sparse.flow import robust_range


@dataclass
class INRSettings:
    """Settings of the field and its fit (defaults: those measured in docs/sparse/inr.md)."""

    steps: int = 2000
    batch: int = 8192
    levels: int = 6
    features: int = 2
    min_res: int = 8
    hidden: int = 64
    lr_grid: float = 1e-2
    lr_mlp: float = 1e-3
    seed: int = 0
    threads: int = 1


def level_shapes(
    n_kept: int,
    h: int,
    w: int,
    voxel_nm: tuple[float, float, float],
    levels: int = 6,
    min_res: int = 8,
) -> list[tuple[int, int, int]]:
    """Node counts (Z, Y, X) of each level: in-plane from ``min_res`` to one node per pixel
    (geometric), along Z isotropic in nanometres but at most one node plane per kept section."""
    dz, dy, dx = (float(v) for v in voxel_nm)
    depth = max(n_kept - 1, 1) * dz
    extent = max((h - 1) * dy, (w - 1) * dx, 1e-9)
    finest = max(h, w)
    shapes = []
    for lv in range(levels):
        frac = lv / max(levels - 1, 1)
        r = min_res * (finest / min_res) ** frac if finest > min_res else finest
        ry = max(2, min(h, round(r * h / finest)))
        rx = max(2, min(w, round(r * w / finest)))
        rz = max(2, min(n_kept, round(depth / (extent / max(r - 1, 1))) + 1))
        shapes.append((rz, ry, rx))
    return shapes


class GridField(nn.Module):
    """Multiresolution dense feature grids (one ``nn.Embedding`` each) and a small MLP.

    Coordinates are normalised to [0, 1] on each axis (0 = first kept section / pixel,
    1 = last); the grids are node-aligned (``align_corners``) so the finest levels' node planes
    lie exactly on the kept sections.
    """

    def __init__(self, shapes: list[tuple[int, int, int]], features: int, hidden: int) -> None:
        super().__init__()
        self.shapes = [tuple(int(v) for v in s) for s in shapes]
        self.features = int(features)
        self.grids = nn.ModuleList(
            nn.Embedding(int(np.prod(s)), features, sparse=True) for s in self.shapes
        )
        for g in self.grids:
            nn.init.uniform_(g.weight, -1e-4, 1e-4)
        c = torch.arange(8)
        self.register_buffer("_corners", torch.stack([c >> 2 & 1, c >> 1 & 1, c & 1], dim=1))
        self.mlp = nn.Sequential(
            nn.Linear(len(shapes) * features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def encode(self, p: torch.Tensor) -> torch.Tensor:
        """Features (N, levels·features) at points ``p`` (N, 3) in [0, 1]."""
        out = []
        for (rz, ry, rx), grid in zip(self.shapes, self.grids, strict=True):
            res = torch.tensor([rz - 1, ry - 1, rx - 1], dtype=p.dtype)
            q = p * res
            i0 = torch.minimum(q.floor(), (res - 1).clamp(min=0)).long()
            f = q - i0
            corners = self._corners
            idx3 = i0[:, None, :] + corners[None]  # (N, 8, 3)
            w3 = torch.where(corners[None].bool(), f[:, None, :], 1 - f[:, None, :])
            weight = w3.prod(dim=2)  # (N, 8)
            idx = (idx3[..., 0] * ry + idx3[..., 1]) * rx + idx3[..., 2]
            acc = torch.einsum("nc,ncf->nf", weight, grid(idx))
            out.append(acc)
        return torch.cat(out, dim=1)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.encode(p))[:, 0]


def _coords(z: float | np.ndarray, h: int, w: int, n_kept: int) -> torch.Tensor:
    """All pixels of the section(s) at kept-section depth(s) ``z`` as normalised points."""
    zs = np.atleast_1d(np.asarray(z, np.float32)) / max(n_kept - 1, 1)
    gy = np.arange(h, dtype=np.float32) / max(h - 1, 1)
    gx = np.arange(w, dtype=np.float32) / max(w - 1, 1)
    zz, yy, xx = np.meshgrid(zs, gy, gx, indexing="ij")
    return torch.from_numpy(np.stack([zz.ravel(), yy.ravel(), xx.ravel()], axis=1))


def fit(
    kept: np.ndarray,
    voxel_nm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    settings: INRSettings | None = None,
    log: Any = None,
) -> tuple[GridField, dict[str, Any]]:
    """Fit the field to the kept sections ``kept`` (n, H, W) only; returns it and facts
    (settings, final training loss, seconds). ``voxel_nm`` is the sparse stack's voxel size."""
    s = settings or INRSettings()
    torch.set_num_threads(max(1, s.threads))
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    kept = np.asarray(kept)
    n, h, w = kept.shape
    lo, hi = robust_range(kept)
    target = torch.from_numpy(((kept.astype(np.float32) - lo) / (hi - lo)).reshape(-1))
    shapes = level_shapes(n, h, w, voxel_nm, s.levels, s.min_res)
    field = GridField(shapes, s.features, s.hidden)
    opt_grid = torch.optim.SparseAdam(list(field.grids.parameters()), lr=s.lr_grid)
    opt_mlp = torch.optim.Adam(field.mlp.parameters(), lr=s.lr_mlp)
    scale = torch.tensor(
        [1.0 / max(n - 1, 1), 1.0 / max(h - 1, 1), 1.0 / max(w - 1, 1)], dtype=torch.float32
    )
    t0 = time.perf_counter()
    losses: list[float] = []
    for step in range(s.steps):
        # cosine decay of both learning rates to a tenth
        decay = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(s.steps, 1)))
        for opt, base in ((opt_grid, s.lr_grid), (opt_mlp, s.lr_mlp)):
            for g in opt.param_groups:
                g["lr"] = base * decay
        flat = rng.integers(0, n * h * w, s.batch)
        iz, rem = np.divmod(flat, h * w)
        iy, ix = np.divmod(rem, w)
        p = torch.from_numpy(np.stack([iz, iy, ix], axis=1).astype(np.float32)) * scale
        loss = torch.mean((field(p) - target[torch.from_numpy(flat)]) ** 2)
        opt_grid.zero_grad()
        opt_mlp.zero_grad()
        loss.backward()
        opt_grid.step()
        opt_mlp.step()
        losses.append(float(loss.detach()))
        if log is not None and (step + 1) % max(1, s.steps // 10) == 0:
            log(f"step {step + 1}/{s.steps}: mse {np.mean(losses[-50:]):.5f}")
    facts = {
        "settings": asdict(s),
        "level_shapes_zyx": [list(x) for x in shapes],
        "parameters": int(sum(p.numel() for p in field.parameters())),
        "range": [lo, hi],
        "final_train_mse": round(float(np.mean(losses[-50:])), 6),
        "seconds_fit": round(time.perf_counter() - t0, 2),
    }
    field.range = (lo, hi)  # type: ignore[assignment]
    return field, facts


@torch.no_grad()
def render(field: GridField, z: float, h: int, w: int, n_kept: int) -> np.ndarray:
    """The field's section at kept-section depth ``z`` (float, in grey levels), (H, W)."""
    lo, hi = field.range  # type: ignore[misc]
    p = _coords(z, h, w, n_kept)
    vals = torch.cat([field(chunk) for chunk in torch.split(p, 1 << 16)])
    return (vals.numpy().reshape(h, w) * (hi - lo) + lo).astype(np.float32)


def reconstruct_inr(
    kept: np.ndarray,
    factor: int,
    voxel_nm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    settings: INRSettings | None = None,
    log: Any = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """``(n - 1)·K + 1`` sections from ``n`` kept ones: section ``i·K`` is kept section ``i``
    bit for bit, the rest rendered by a field fitted to the kept sections; dtype kept.
    Returns the stack and the fit's facts (with ``seconds`` for fit + render)."""
    k = check_factor(factor)
    kept = np.asarray(kept)
    if kept.ndim != 3:
        raise ValueError(f"The INR needs a 3D (Z, Y, X) stack, not shape {kept.shape}.")
    n, h, w = kept.shape
    check_sections(n)
    t0 = time.perf_counter()
    field, facts = fit(kept, voxel_nm, settings, log)
    out = np.empty((output_sections(n, k), h, w), kept.dtype)
    out[::k] = kept
    for i in range(n - 1):
        for j in range(1, k):
            out[i * k + j] = cast_to(render(field, i + j / k, h, w, n), kept.dtype)
    facts["seconds"] = round(time.perf_counter() - t0, 2)
    return out, facts


def main(argv: list[str] | None = None) -> int:
    from vemcell.io.volumes import read_volume, write_tiff
    from vemcell.sparse.core import sparse_voxel_size

    d = INRSettings()
    ap = argparse.ArgumentParser(
        prog="python -m vemcell_train.inr",
        description="Restore missing sections with a per-volume implicit neural field.",
    )
    ap.add_argument("volume", help="the sparse stack (every K-th section imaged)")
    ap.add_argument("--factor", type=int, required=True, help="K: sections imaged every K-th")
    ap.add_argument("--out", required=True, help="TIFF stack to write")
    ap.add_argument(
        "--keep-every",
        type=int,
        default=0,
        help="thin a full stack to every N-th section first (for measuring)",
    )
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--batch", type=int, default=d.batch)
    ap.add_argument("--levels", type=int, default=d.levels)
    ap.add_argument("--features", type=int, default=d.features)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--threads", type=int, default=d.threads)
    args = ap.parse_args(argv)
    vol = read_volume(args.volume)
    arr = vol.array()
    voxel = tuple(float(v) for v in vol.voxel_size_nm)
    if args.keep_every:
        arr = arr[:: args.keep_every]
        voxel = (voxel[0] * args.keep_every, voxel[1], voxel[2])
    settings = INRSettings(
        steps=args.steps,
        batch=args.batch,
        levels=args.levels,
        features=args.features,
        seed=args.seed,
        threads=args.threads,
    )
    full, facts = reconstruct_inr(arr, args.factor, voxel, settings, log=print)
    out_voxel = sparse_voxel_size(voxel, args.factor)
    info = {
        "vemcell": "reconstruct/1",
        "source": str(vol.path),
        "factor": int(args.factor),
        "method": "inr (vemcell_train.inr, experimental)",
        "kept_sections": f"every {args.factor}-th, from section 0",
        "source_voxel_size_nm_zyx": list(voxel),
        "inr": facts,
        "seconds": facts["seconds"],
    }
    write_tiff(args.out, full, out_voxel, metadata=json.loads(json.dumps(info)))
    print(
        f"wrote {args.out}: {arr.shape[0]} -> {full.shape[0]} sections, Z step {voxel[0]:g} -> "
        f"{out_voxel[0]:g} nm (inr, {facts['seconds']:.1f} s, train mse {facts['final_train_mse']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
