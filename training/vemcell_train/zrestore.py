"""Train the ``learned`` sparse-section method on the user's own stack, on CPU, in minutes.

Self-supervised from the imaged sections alone (CARE / IsoVEM style): each section is sharp in
X and Y, so it is resampled along one in-plane axis to the restored Z step (area-averaged when
the step is coarser than the pixel, as a section integrates its thickness), every K-th row is
kept, the others are filled in linearly, and a small U-Net learns the residual that restores
them. At inference (:mod:`vemcell.sparse.learned`) the same network fills the missing Z rows of
every XZ and YZ plane of the sparse stack. Sections that will be scored are never seen: with
``--keep-every K`` a full stack is thinned to every K-th section before anything is learned.

    python -m vemcell_train.zrestore SPARSE.tif --factor K --out zrestore_k4.onnx
    python -m vemcell_train.zrestore FULL.tif --keep-every 4 --factor 4 --out zrestore_k4.onnx
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from vemcell.io.volumes import atomic_path, read_volume
from vemcell.sparse.learned import CARD_FORMAT, _robust_range, plane_inputs
from vemcell_train.model import AttentionUNet


def resample_rows(section: np.ndarray, pixel_nm: float, step_nm: float) -> np.ndarray:
    """``section`` (H, W) resampled along its rows (axis 0) from ``pixel_nm`` to ``step_nm``."""
    zoom = pixel_nm / step_nm
    if abs(zoom - 1.0) < 1e-3:
        return section.astype(np.float32)
    src = section.astype(np.float32)
    if zoom < 1.0:  # a section integrates its thickness: average before sampling
        src = ndimage.uniform_filter1d(src, max(1, round(1.0 / zoom)), axis=0, mode="reflect")
    return ndimage.zoom(src, (zoom, 1.0), order=1, mode="reflect", grid_mode=True)


def linear_fill(planes: np.ndarray, factor: int) -> np.ndarray:
    """Rows ``0, K, 2K, ...`` of planes (N, H, W) kept and the rows between filled linearly;
    H must be a multiple of K plus one."""
    out = planes.copy()
    for j in range(1, factor):
        t = j / factor
        out[:, j::factor] = (1 - t) * planes[:, 0:-1:factor] + t * planes[:, factor::factor]
    return out


class PlaneSampler:
    """Random training planes from the imaged sections: (input, target, missing-row mask)."""

    def __init__(
        self,
        sections: np.ndarray,
        pixel_nm: float,
        step_nm: float,
        factor: int,
        rows: int,
        cols: int,
        seed: int,
    ) -> None:
        self.factor, self.rows, self.cols = factor, rows, cols
        self.rng = np.random.default_rng(seed)
        self.pool = []
        for sec in sections:
            for view in (sec, sec.T):  # rows along Y, then along X
                r = resample_rows(view, pixel_nm, step_nm)
                if r.shape[0] >= rows and r.shape[1] >= cols:
                    self.pool.append(r)
        if not self.pool:
            raise SystemExit(
                f"The sections are too small for {rows} rows of {step_nm:g} nm by {cols} pixels."
            )

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        planes = np.empty((n, self.rows, self.cols), np.float32)
        for i in range(n):
            src = self.pool[self.rng.integers(len(self.pool))]
            y = self.rng.integers(src.shape[0] - self.rows + 1)
            x = self.rng.integers(src.shape[1] - self.cols + 1)
            p = src[y : y + self.rows, x : x + self.cols]
            if self.rng.random() < 0.5:
                p = p[::-1]
            if self.rng.random() < 0.5:
                p = p[:, ::-1]
            planes[i] = p
        filled = linear_fill(planes, self.factor)
        x, h, w = plane_inputs(filled, self.factor, 8)
        target = np.zeros((n, 1, x.shape[2], x.shape[3]), np.float32)
        target[:, 0, :h, :w] = planes
        weight = np.zeros_like(target)
        weight[:, 0, :h, :w] = 1.0
        weight[:, 0, : h : self.factor] = 0.0  # imaged rows are kept as they are
        return x, target, weight


class ResidualNet(nn.Module):
    """The U-Net predicting the residual over the linear fill (what ONNX ships)."""

    def __init__(self, base: int = 16, depth: int = 3) -> None:
        super().__init__()
        self.net = AttentionUNet(n_classes=1, base=base, depth=depth, dropout=0.0, in_channels=2)

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        return self.net(planes)


def train(
    sections: np.ndarray,
    pixel_nm: float,
    step_nm: float,
    factor: int,
    *,
    steps: int = 600,
    batch: int = 16,
    cols: int = 96,
    base: int = 16,
    lr: float = 2e-3,
    threads: int = 2,
    seed: int = 0,
    log: Any = print,
) -> tuple[ResidualNet, dict[str, Any]]:
    """Train on the imaged ``sections`` (N, Y, X) normalised to about 0..1; the last fifth of
    them (at least one) validates."""
    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    rows = 8 * factor + 1
    n_val = max(1, len(sections) // 5)
    train_s = PlaneSampler(sections[:-n_val], pixel_nm, step_nm, factor, rows, cols, seed)
    val_s = PlaneSampler(sections[-n_val:], pixel_nm, step_nm, factor, rows, cols, seed + 1)
    val = val_s.batch(64)
    net = ResidualNet(base=base)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)

    def l1(x: np.ndarray, tgt: np.ndarray, w: np.ndarray, model: nn.Module | None) -> float:
        with torch.no_grad():
            xt = torch.from_numpy(x)
            res = model(xt) if model is not None else torch.zeros_like(xt[:, :1])
            pred = xt[:, :1] + res
            return float(
                (torch.abs(pred - torch.from_numpy(tgt)) * torch.from_numpy(w)).sum() / w.sum()
            )

    base_l1 = l1(*val, None)
    t0 = time.perf_counter()
    best = (float("inf"), None)
    for step in range(1, steps + 1):
        net.train()
        x, tgt, w = (torch.from_numpy(a) for a in train_s.batch(batch))
        pred = x[:, :1] + net(x)
        loss = (torch.abs(pred - tgt) * w).sum() / w.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps:
            net.eval()
            v = l1(*val, net)
            if v < best[0]:
                best = (v, {k: t.clone() for k, t in net.state_dict().items()})
            log(
                f"step {step}/{steps}: train L1 {loss.item():.4f}, validation L1 {v:.4f} "
                f"(linear {base_l1:.4f}), {time.perf_counter() - t0:.0f} s"
            )
    net.load_state_dict(best[1])
    net.eval()
    facts = {
        "steps": steps,
        "batch": batch,
        "plane_rows": rows,
        "plane_cols": cols,
        "base": base,
        "depth": 3,
        "lr": lr,
        "seed": seed,
        "threads": threads,
        "seconds": round(time.perf_counter() - t0, 1),
        "validation_l1": round(best[0], 5),
        "validation_l1_linear": round(base_l1, 5),
        "training_sections": int(len(sections) - n_val),
        "validation_sections": int(n_val),
    }
    return net, facts


def export(net: ResidualNet, path: Path, card: dict[str, Any]) -> Path:
    """Write the network as ONNX (input ``planes`` [N, 2, H, W], output ``residual``) and its
    card beside it."""
    x = torch.zeros(1, 2, 32, 64)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net.eval(),
            (x,),
            str(tmp),
            input_names=["planes"],
            output_names=["residual"],
            dynamic_axes={"planes": {0: "N", 2: "H", 3: "W"}, "residual": {0: "N", 2: "H", 3: "W"}},
            opset_version=17,
            dynamo=False,
            do_constant_folding=True,
        )
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("volume", help="the sparse stack (or a full one with --keep-every)")
    ap.add_argument("--factor", type=int, required=True, help="restore K - 1 sections between two")
    ap.add_argument("--keep-every", type=int, help="thin a full stack to every N-th section first")
    ap.add_argument("--crop", help="Z0:Z1,Y0:Y1,X0:X1 of the stack to read (before thinning)")
    ap.add_argument("--out", required=True, help="the .onnx to write (card beside it)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--base", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from vemcell.sparse.core import parse_crop

    vol = read_volume(args.volume)
    arr = vol.array()
    crop = parse_crop(args.crop, arr.shape)
    if crop is not None:
        arr = arr[crop]
    dz, dy, _ = vol.voxel_size_nm
    if args.keep_every:
        arr, dz = arr[:: args.keep_every], dz * args.keep_every
    step = dz / args.factor
    lo, hi = _robust_range(arr)
    sections = ((arr.astype(np.float32) - lo) / (hi - lo)).astype(np.float32)
    print(f"{len(sections)} sections, Z step {dz:g} nm -> {step:g} nm, pixel {dy:g} nm")
    net, facts = train(
        sections,
        float(dy),
        step,
        args.factor,
        steps=args.steps,
        batch=args.batch,
        base=args.base,
        threads=args.threads,
        seed=args.seed,
    )
    card = {
        "format": CARD_FORMAT,
        "factor": args.factor,
        "step_nm": step,
        "pixel_nm": float(dy),
        "divisor": 8,
        "trained_on": {
            "volume": str(Path(args.volume).resolve()),
            "crop": args.crop,
            "keep_every": args.keep_every,
            "sections_used": len(sections),
        },
        "training": facts,
        "note": "self-supervised from the imaged sections only (rows of XY sections); "
        "sections dropped by --keep-every were never read into training",
    }
    export(net, Path(args.out), card)
    print(
        f"wrote {args.out} ({facts['seconds']} s; validation L1 {facts['validation_l1']} vs "
        f"linear {facts['validation_l1_linear']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
