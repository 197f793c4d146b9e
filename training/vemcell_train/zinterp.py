"""Train the ``learned`` sparse-section method: a U-Net that corrects flow interpolation.

Training pairs are real: in a full stack, sections ``z`` and ``z + K`` go in (warped along
their optical flow to each depth between, as :mod:`vemcell.sparse.learned` does at run time)
and the real sections between are the targets. The loss is the L1 error of the grey levels
plus, optionally, the cross-entropy between what a frozen segmentation model (a shipped ONNX
model turned back into torch, :mod:`vemcell_train.onnx_weights`) makes of the restored section
and of the real one: the restoration is judged by what the segmentation sees.

    # the shipped model: full stacks that are never scored
    python -m vemcell_train.zinterp pretrain --stack STACK.tif:2:vnc5 \
        --stack 'synth/*/image.tif:2,4,8:cmerolae6' --out models/zinterp.onnx
    # adapt it to a user's own sparse stack (kept sections only: z, z + 2 -> z + 1)
    python -m vemcell_train.zinterp adapt SPARSE.tif --out mine.onnx
    # what it measured (vemcell sparse-eval --json) into its card; default only if it wins
    python -m vemcell_train.zinterp record models/zinterp.onnx report1.json report2.json
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vemcell.errors import VemcellError
from vemcell.io.volumes import atomic_path, read_volume
from vemcell.sparse.flow import FlowMaker, PairFlow, robust_range
from vemcell.sparse.learned import CARD_FORMAT, find_model, refiner_input
from vemcell_train.model import AttentionUNet

TIE = 0.002  # mean-IoU differences this small are rounding, not a win or a loss
ARCH = {"n_classes": 1, "base": 16, "depth": 3, "dropout": 0.0, "in_channels": 4}


def new_network() -> AttentionUNet:
    """The restoration U-Net, its last layer zeroed so that it starts out as ``flow``."""
    net = AttentionUNet(**ARCH)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
    return net


class SegmentationJudge:
    """A shipped segmentation model, frozen, in torch: logits of a restored section."""

    def __init__(self, name: str, pixel_nm: float, lo: float, hi: float) -> None:
        from vemcell.cards.card import resolve_model
        from vemcell_train.onnx_weights import recover_network

        card = resolve_model(name)
        raw = card.raw
        a = raw["architecture"]
        arch = {
            "n_classes": int(a.get("n_classes", len(raw["classes"]))),
            "base": int(a["base"]),
            "depth": int(a.get("depth", 4)),
            "dropout": 0.0,
            "in_channels": int(a.get("in_channels", 1)),
        }
        self.net = recover_network(card.onnx_path, arch).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.name = name
        self.context = int(raw.get("input", {}).get("context_slices", 0))
        norm = raw.get("input", {}).get("normalisation", {}).get("method", "percentile")
        # inputs are grey levels mapped lo..hi -> 0..1; the model's own normalisation from there
        self.scale, self.offset = (1.0, 0.0)
        if norm == "scale":
            self.scale, self.offset = (hi - lo) / 255.0, lo / 255.0
        self.clip = norm != "scale"
        voxel = float(raw.get("voxel_size_nm") or pixel_nm)
        self.pool = max(1, round(voxel / pixel_nm))
        self.divisor = 2 ** arch["depth"] * self.pool

    def logits(self, slices: torch.Tensor) -> torch.Tensor:
        """Logits for (B, 2·context + 1, H, W) normalised slices, the centre one judged."""
        x = slices * self.scale + self.offset
        if self.clip:
            x = x.clamp(0.0, 1.0)
        if self.pool > 1:
            x = F.avg_pool2d(x, self.pool)
        return self.net(x)


@dataclass
class Stack:
    """A full stack for training: its normalised sections, the gaps K to learn, a judge."""

    name: str
    sections: np.ndarray  # (Z, Y, X) float32, grey levels mapped lo..hi -> 0..1
    gaps: tuple[int, ...]
    judge: SegmentationJudge | None
    crop: int
    samples: list[tuple[np.ndarray, int]] = field(default_factory=list)  # (input, target z)


def build_samples(stack: Stack, z_range: tuple[int, int]) -> list[tuple[np.ndarray, int]]:
    """Every (input, target z) with both kept sections and the target inside ``z_range``."""
    secs = stack.sections
    fm = FlowMaker(0.0, 1.0)
    out = []
    z0, z1 = z_range
    for k in stack.gaps:
        for i in range(z0, z1 - k):
            a, b = secs[i], secs[i + k]
            pair = PairFlow(a, b, fm)
            for j in range(1, k):
                out.append((refiner_input(pair, a, b, j / k, 0.0, 1.0).astype(np.float16), i + j))
    return out


def _crop_batch(stack: Stack, samples, idx, rng, crop: int, augment: bool):
    """(inputs (B, 4, S, S), targets (B, 1, S, S), judge slices (B, C, S, S) or None)."""
    ctx = stack.judge.context if stack.judge is not None else 0
    divisor = math.lcm(2 ** ARCH["depth"], stack.judge.divisor if stack.judge else 1)
    xs, ts, js = [], [], []
    secs = stack.sections
    for n in idx:
        x, z = samples[n]
        h, w = x.shape[1:]
        s = min(crop, h, w) // divisor * divisor  # both networks need whole multiples
        if s == 0:
            raise VemcellError(f"{stack.name}: sections smaller than {divisor} pixels.")
        y0, x0 = rng.integers(h - s + 1), rng.integers(w - s + 1)
        sl = (slice(y0, y0 + s), slice(x0, x0 + s))
        xi = x[:, sl[0], sl[1]].astype(np.float32)
        zs = np.clip(np.arange(z - ctx, z + ctx + 1), 0, len(secs) - 1)
        ji = secs[zs][:, sl[0], sl[1]]
        if augment:
            if rng.random() < 0.5:  # the other way round: b first, depth 1 - t
                xi = xi[[0, 2, 1, 3]]
                xi[3] = 1.0 - xi[3]
                ji = ji[::-1]
            r = int(rng.integers(4))
            xi, ji = np.rot90(xi, r, axes=(1, 2)), np.rot90(ji, r, axes=(1, 2))
            if rng.random() < 0.5:
                xi, ji = xi[:, :, ::-1], ji[:, :, ::-1]
        xs.append(np.ascontiguousarray(xi))
        js.append(np.ascontiguousarray(ji))
        ts.append(np.ascontiguousarray(ji[ctx : ctx + 1]))
    x, t, j = (torch.from_numpy(np.stack(v)) for v in (xs, ts, js))
    return x, t, (j if stack.judge is not None else None)


def _judged(judge: SegmentationJudge, slices: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    c = judge.context
    return judge.logits(torch.cat([slices[:, :c], centre, slices[:, c + 1 :]], dim=1))


def _loss(net, stack, x, t, j, seg_weight, balance=0.0):
    """L1 of the grey levels + ``seg_weight`` × the judge's cross-entropy against its own
    reading of the real section, each class weighted by (its share of the batch)^-balance."""
    pred = x[:, :1] + net(x)
    l1 = torch.abs(pred - t).mean()
    if j is None or seg_weight <= 0:
        return l1
    judge = stack.judge
    with torch.no_grad():
        p_real = torch.softmax(_judged(judge, j, t), dim=1)
        share = p_real.mean(dim=(0, 2, 3)) + 1e-3
        w = share**-balance
        w = (w / (w * share).sum()).view(1, -1, 1, 1)
    ce = -(w * p_real * torch.log_softmax(_judged(judge, j, pred), dim=1)).sum(1).mean()
    return l1 + seg_weight * ce


def _agreement(judge, j, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Per class: pixels both sections give it, and pixels either gives it."""
    with torch.no_grad():
        ca, cb = _judged(judge, j, a).argmax(1), _judged(judge, j, b).argmax(1)
    n = judge.net.head.out_channels
    inter = np.array([float(((ca == c) & (cb == c)).sum()) for c in range(n)])
    union = np.array([float(((ca == c) | (cb == c)).sum()) for c in range(n)])
    return np.stack([inter, union])


def validate(net, val) -> dict[str, Any]:
    """L1 and segmentation agreement (mean IoU over classes present) of flow and the net."""
    out = {}
    net.eval()
    for stack, (x, t, j) in val:
        with torch.no_grad():
            pred = x[:, :1] + net(x)
        row = {
            "l1_flow": float(torch.abs(x[:, :1] - t).mean()),
            "l1_net": float(torch.abs(pred - t).mean()),
        }
        if j is not None:
            for key, img in (("iou_flow", x[:, :1]), ("iou_net", pred)):
                iu = _agreement(stack.judge, j, img, t)
                present = iu[1] > 0
                row[key] = float(np.mean(iu[0][present] / iu[1][present]))
                row[key + "_per_class"] = [round(float(v), 4) for v in iu[0] / np.maximum(iu[1], 1)]
        out[stack.name] = row
    return out


def _score(report: dict[str, Any]) -> float:
    """Higher is better: mean over stacks of (IoU gain over flow, or L1 gain if unjudged)."""
    vals = []
    for row in report.values():
        if "iou_net" in row:
            vals.append(row["iou_net"] - row["iou_flow"])
        else:
            vals.append(row["l1_flow"] - row["l1_net"])
    return float(np.mean(vals))


def train(
    stacks: list[Stack],
    val_batches: list,
    *,
    steps: int,
    batch: int = 8,
    lr: float = 1e-3,
    seg_weight: float = 1.0,
    balance: float = 0.0,
    init: nn.Module | None = None,
    seed: int = 0,
    eval_every: int = 50,
    log: Any = print,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train (or fine-tune ``init``) on the stacks: one batch a step, the judges' groups of
    stacks in turn; ``val_batches`` are (stack, batch) pairs."""
    torch.manual_seed(seed)
    by_judge: dict[str, list[Stack]] = {}
    for s in stacks:
        by_judge.setdefault(s.judge.name if s.judge else "", []).append(s)
    groups = list(by_judge.values())
    rng = np.random.default_rng(seed)
    net = init if init is not None else new_network()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    start = validate(net, val_batches) if init is not None else None
    best = (
        _score(start) if start else -np.inf,
        {k: v.clone() for k, v in net.state_dict().items()},
    )
    best_report = start
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        net.train()
        if init is not None:  # fine-tuning: keep the batch norms as recovered from ONNX
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        group = groups[step % len(groups)]
        stack = group[int(rng.integers(len(group)))]
        idx = rng.integers(len(stack.samples), size=batch)
        x, t, j = _crop_batch(stack, stack.samples, idx, rng, stack.crop, augment=True)
        loss = _loss(net, stack, x, t, j, seg_weight, balance)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % eval_every == 0 or step == steps:
            report = validate(net, val_batches)
            score = _score(report)
            if score > best[0]:
                best = (score, {k: v.clone() for k, v in net.state_dict().items()})
                best_report = report
            summary = ", ".join(
                f"{n}: L1 {r['l1_net']:.4f} (flow {r['l1_flow']:.4f})"
                + (f", IoU {r['iou_net']:.4f} (flow {r['iou_flow']:.4f})" if "iou_net" in r else "")
                for n, r in report.items()
            )
            log(f"step {step}/{steps} {time.perf_counter() - t0:.0f} s  {summary}")
    if best_report is start and start is not None:
        log("no step beat the starting model on the validation sections: it is kept as it was")
    net.load_state_dict(best[1])
    net.eval()
    facts = {
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "seg_weight": seg_weight,
        "class_balance": balance,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 1),
        "validation": best_report,
        "chosen_score": round(float(best[0]), 5),
        "kept_starting_weights": best_report is start and start is not None,
    }
    return net, facts


def export(net: nn.Module, path: Path, card: dict[str, Any]) -> Path:
    """The network as ONNX (input ``x`` [N, 4, H, W], output ``residual``) and its card."""
    x = torch.zeros(1, 4, 32, 64)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net.eval(),
            (x,),
            str(tmp),
            input_names=["x"],
            output_names=["residual"],
            dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}, "residual": {0: "N", 2: "H", 3: "W"}},
            opset_version=17,
            dynamo=False,
            do_constant_folding=True,
        )
    _write_card(path, card)
    return path


def _write_card(onnx_path: Path, card: dict[str, Any]) -> None:
    """The card as JSON beside its ``.onnx``, written through a temporary name."""
    with atomic_path(onnx_path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


def load_stack(
    path: str, gaps: tuple[int, ...], judge: str | None, crop: int, keep_every: int = 1
) -> Stack:
    """A stack normalised by its robust grey range, with its judge (a shipped model name)."""
    vol = read_volume(path)
    arr = vol.array()[::keep_every]
    lo, hi = robust_range(arr)
    secs = ((arr.astype(np.float32) - lo) / (hi - lo)).astype(np.float32)
    pixel = float(vol.voxel_size_nm[1])
    j = SegmentationJudge(judge, pixel, lo, hi) if judge else None
    if j is not None:
        crop = -(-crop // j.divisor) * j.divisor
    return Stack(Path(path).parent.name + "/" + Path(path).stem, secs, gaps, j, crop)


def _split(stack: Stack, val_sections: int, val_crops: int, seed: int, at: str = "middle"):
    """Training samples from the sections on either side of a block (in the middle, or at the
    end), a fixed validation batch from that block (no section of the one is in the other).
    The middle by default, because the ends of a stack are often empty resin."""
    n = len(stack.sections)
    size = max(val_sections, max(stack.gaps) + 2)
    lo = (n - size) // 2 if at == "middle" else n - size
    hi = lo + size
    stack.samples = build_samples(stack, (0, lo)) + build_samples(stack, (hi, n))
    val_samples = build_samples(stack, (lo, hi))
    if not stack.samples or not val_samples:
        raise VemcellError(
            f"{stack.name} has {n} sections: too few to learn gaps of {max(stack.gaps)} and "
            f"keep {size} for validation (--val-sections)."
        )
    return _val_batch(stack, val_samples, val_crops, seed)


def _held_out(stack: Stack, val_crops: int, seed: int):
    """A fixed validation batch from a whole stack that is not trained on."""
    return _val_batch(stack, build_samples(stack, (0, len(stack.sections))), val_crops, seed)


def _val_batch(stack: Stack, samples, val_crops: int, seed: int):
    """(stack, a fixed batch of ``val_crops`` crops of ``samples``, unaugmented)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(len(samples), size=val_crops)
    return stack, _crop_batch(stack, samples, idx, rng, stack.crop, augment=False)


def _parse_stack_spec(spec: str) -> list[tuple[str, tuple[int, ...], str | None]]:
    """``PATH[:K1,K2[:MODEL]]`` (PATH may be a glob) as (path, gaps, judge) per file."""
    parts = spec.rsplit(":", 2) if spec.count(":") >= 2 else spec.rsplit(":", 1)
    path = parts[0]
    gaps = tuple(int(k) for k in parts[1].split(",")) if len(parts) > 1 else (2,)
    judge = parts[2] if len(parts) > 2 and parts[2] else None
    files = sorted(glob.glob(path)) or [path]
    return [(f, gaps, judge) for f in files]


def record(model: str, reports: list[str]) -> dict[str, Any]:
    """Write ``vemcell sparse-eval`` results (JSON reports with a ``learned`` row, scored with
    this model or a twin trained without the scored stack) into the model's card, and mark it
    the default (``auto`` picks it) only if on no stack its mean IoU on the dropped sections
    (averaged over the factors) is below ``flow``'s or ``linear``'s by more than ``TIE`` (a
    stack where every method scores the same is a tie), and on average it beats both."""
    onnx_path, card = find_model(model)
    rows: list[dict[str, Any]] = []
    gains: dict[str, dict[str, list[float]]] = {"flow": {}, "linear": {}}
    for path in reports:
        rep = json.loads(Path(path).read_text(encoding="utf-8"))
        for k, entry in rep["factors"].items():
            by = {r["method"]: r for r in entry["rows"] if r["route"] == "image"}
            if "learned" not in by:
                raise VemcellError(f"{path} has no learned row for factor {k}.")
            score = "iou_vs_labels" if "iou_vs_labels" in by["learned"] else "iou_vs_full_stack"
            row = {
                "stack": rep["name"],
                "factor": int(k),
                "scored_against": score[7:],
                "model": Path(str(by["learned"].get("model", onnx_path))).stem,
            }
            for m in ("linear", "flow", "learned"):
                if m in by:
                    row[m] = {"mean_iou": by[m]["mean_" + score], **by[m][score]}
            for m, per_stack in gains.items():
                if m in by:
                    gain = row["learned"]["mean_iou"] - row[m]["mean_iou"]
                    per_stack.setdefault(rep["name"], []).append(gain)
            rows.append(row)
    per_stack = {
        m: {name: round(float(np.mean(g)), 4) for name, g in by_stack.items()}
        for m, by_stack in gains.items()
        if by_stack
    }
    card.setdefault("validation", {})["sparse_eval"] = rows
    card["validation"]["mean_iou_gain_per_stack"] = per_stack
    all_gains = [g for by_stack in per_stack.values() for g in by_stack.values()]
    card["default"] = (
        bool(all_gains)
        and min(all_gains) >= -TIE
        and all(np.mean(list(b.values())) > 0 for b in per_stack.values())
    )
    _write_card(onnx_path, card)
    return card


def main(argv: list[str] | None = None) -> int:
    """The command line; a bad input is one sentence on stderr and exit status 1."""
    try:
        return _main(argv)
    except VemcellError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    pre = sub.add_parser("pretrain", help="train on full stacks (never on scored ones)")
    pre.add_argument("--stack", action="append", required=True, help="PATH[:K1,K2[:MODEL]]")
    pre.add_argument("--val-sections", type=int, default=6)
    ad = sub.add_parser("adapt", help="fine-tune on a sparse stack's own kept sections")
    ad.add_argument("volume", help="the sparse stack (or a full one with --keep-every)")
    ad.add_argument("--keep-every", type=int, default=1, help="thin a full stack first")
    ad.add_argument("--init", default=None, help="the model to start from (default: zinterp)")
    ad.add_argument("--judge", default=None, help="segmentation model judging the restoration")
    ad.add_argument("--val-sections", type=int, default=3)
    rec = sub.add_parser("record", help="write sparse-eval results into a model's card")
    rec.add_argument("model", help="the restoration model (.onnx or shipped name)")
    rec.add_argument("reports", nargs="+", help="vemcell sparse-eval --json reports")
    for p in (pre, ad):
        p.add_argument("--out", required=True, help="the .onnx to write (card beside it)")
        p.add_argument("--steps", type=int, default=1500)
        p.add_argument("--batch", type=int, default=8)
        p.add_argument("--crop", type=int, default=160)
        p.add_argument("--lr", type=float, default=1e-3)
        p.add_argument("--seg-weight", type=float, default=1.0)
        p.add_argument(
            "--class-balance", type=float, default=0.0, help="weight classes by share^-B"
        )
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument(
            "--val-at",
            choices=["middle", "end"],
            default="middle",
            help="where a stack that is split keeps its validation sections",
        )
        p.add_argument("--title", default="Restores missing sections by correcting optical flow")
        p.add_argument("--licence", default="", help="licence note of the training data")
    args = ap.parse_args(argv)
    if args.cmd == "record":
        card = record(args.model, args.reports)
        gain = card["validation"]["mean_iou_gain_per_stack"]
        print(f"{card['name']}: mean IoU gain {gain}; default: {card['default']}")
        return 0
    torch.set_num_threads(max(1, args.threads))
    init = None
    if args.cmd == "pretrain":
        specs = [_parse_stack_spec(spec) for spec in args.stack]
        stacks, val = [], []
        for group in specs:  # the last file of each --stack validates (its end, if alone)
            for n, (f, g, j) in enumerate(group):
                stack = load_stack(f, g, j, args.crop)
                if n < len(group) - 1:
                    stack.samples = build_samples(stack, (0, len(stack.sections)))
                    stacks.append(stack)
                elif len(group) == 1:
                    val.append(_split(stack, args.val_sections, 32, args.seed, args.val_at))
                    stacks.append(stack)
                else:
                    val.append(_held_out(stack, 32, args.seed))
        trained_on = [
            {"path": str(Path(f).resolve()), "gaps": list(g), "judge": j}
            for group in specs
            for f, g, j in group
        ]
    else:
        from vemcell_train.onnx_weights import recover_network

        onnx_path, _ = find_model(args.init)
        init = recover_network(onnx_path, ARCH)
        stack = load_stack(args.volume, (2,), args.judge, args.crop, args.keep_every)
        val = [_split(stack, args.val_sections, 32, args.seed, args.val_at)]
        stacks = [stack]
        trained_on = [
            {"path": str(Path(args.volume).resolve()), "keep_every": args.keep_every, "gaps": [2]}
        ]
    for s in stacks:
        print(
            f"{s.name}: {len(s.samples)} training inputs, gaps {s.gaps}, "
            f"judge {s.judge and s.judge.name}"
        )
    net, facts = train(
        stacks,
        val,
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        seg_weight=args.seg_weight,
        balance=args.class_balance,
        init=init,
        seed=args.seed,
    )
    validation = facts.pop("validation")
    card = {
        "format": CARD_FORMAT,
        "name": Path(args.out).stem,
        "title": args.title,
        "factors": sorted({k for s in stacks for k in s.gaps}),
        "architecture": ARCH,
        "divisor": 2 ** ARCH["depth"],
        "inputs": ["flow blend", "section before, warped", "section after, warped", "depth t"],
        "normalisation": "the stack's 0.5-99.5 percentile grey range mapped to 0..1",
        "trained_on": trained_on,
        "judges": sorted({s.judge.name for s in stacks if s.judge is not None}),
        "training": facts,
        "validation": {"held_out_sections": validation},
        "licence": args.licence,
    }
    if init is not None:
        card["adapted_from"] = str(onnx_path)
    export(net, Path(args.out), card)
    print(f"wrote {args.out} ({facts['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
