"""The ``learned`` image method: a small network corrects the ``flow`` interpolation (ONNX).

For every missing section the two kept neighbours are warped to its depth along the optical
flow (as ``flow`` does); the network sees the blend, the two warped neighbours and the depth
``t`` and predicts what to add to the blend: where motion explains a change it keeps the
warp, where flow blends two different things into a ghost it decides between them. It was
trained on real triplets of sections (:mod:`vemcell_train.zinterp`): sections ``z`` and
``z + K`` in, the real ones between as targets, with a loss on the images and on what the
segmentation model makes of them. Two models are shipped (cards beside them, format
``vemcell-zinterp/1``): ``zinterp_sstem`` for serial sections (restored Z step at least
three pixels) and ``zinterp_fib`` for near-isotropic stacks (FIB-SEM); ``python -m
vemcell_train.zinterp adapt`` fine-tunes either on a user's own sparse stack.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from vemcell.errors import VemcellError
from vemcell.sparse.core import AUTO
from vemcell.sparse.flow import FlowMaker, PairFlow, robust_range

CARD_FORMAT = "vemcell-zinterp/1"
SECTIONS_MODEL, ISOTROPIC_MODEL = "zinterp_sstem", "zinterp_fib"
SECTIONS_ANISOTROPY = 3.0  # restored Z step / pixel from which a stack counts as serial sections
TILE = 512  # sections are refined in tiles of this side (plus MARGIN) to bound memory
MARGIN = 48


def default_model(voxel_size_nm: tuple[float, float, float] | None, factor: int) -> str:
    """The shipped model for a sparse stack of this voxel size (Z step between the imaged
    sections) restored by ``factor``: serial sections or near-isotropic."""
    if voxel_size_nm is None:
        return ISOTROPIC_MODEL
    dz, dy, dx = (float(v) for v in voxel_size_nm)
    return SECTIONS_MODEL if dz / factor >= SECTIONS_ANISOTROPY * min(dy, dx) else ISOTROPIC_MODEL


def find_model(
    model: str | os.PathLike | None = None,
    voxel_size_nm: tuple[float, float, float] | None = None,
    factor: int = 2,
) -> tuple[Path, dict[str, Any]]:
    """(onnx path, card) of a restoration model: a path to its ``.onnx`` or card, or the name
    of a shipped one (``None``: the shipped one for this voxel size and factor)."""
    from vemcell.cards.card import models_dirs

    spec = default_model(voxel_size_nm, factor) if model is None else str(model)
    p = Path(spec)
    if p.suffix.lower() not in (".onnx", ".json") and not p.exists():
        found = [d / f"{spec}.onnx" for d in models_dirs() if (d / f"{spec}.onnx").exists()]
        if not found:
            raise VemcellError(
                f"No section-restoration model named '{spec}' (train one with "
                "python -m vemcell_train.zinterp, or give its .onnx)."
            )
        p = found[0]
    onnx_path = p if p.suffix.lower() == ".onnx" else p.with_suffix(".onnx")
    card_path = onnx_path.with_suffix(".json")
    if not onnx_path.exists() or not card_path.exists():
        raise VemcellError(
            f"The learned method needs a model: '{onnx_path}' and its card '{card_path.name}'."
        )
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise VemcellError(f"'{card_path}' is not a readable model card.") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise VemcellError(f"'{card_path}' is not a section-restoration card ({CARD_FORMAT}).")
    return onnx_path, card


def default_method(
    voxel_size_nm: tuple[float, float, float] | None,
    factor: int,
    segmentation_model: str | None = None,
) -> str:
    """``learned`` where the shipped model for this stack is marked as measured better than
    ``flow`` (its card's ``default``) *and* the sections are to be segmented by a model it was
    trained to serve (its card's ``judges``); ``flow`` otherwise. The network was trained to
    make sections that its judge reads like real ones; on other images it can change grey
    levels that flow had right (docs/sparse/learned.md), so nothing else gets it unasked."""
    try:
        _, card = find_model(None, voxel_size_nm, factor)
    except VemcellError:
        return "flow"
    served = segmentation_model is not None and segmentation_model in card.get("judges", [])
    return "learned" if card.get("default") is True and served else "flow"


def resolve_method(
    method: str,
    voxel_size_nm: tuple[float, float, float] | None,
    factor: int,
    segmentation_model: str | None = None,
) -> str:
    """``method`` as given, or for ``auto`` the one :func:`default_method` picks."""
    return default_method(voxel_size_nm, factor, segmentation_model) if method == AUTO else method


def model_used(
    model: str | os.PathLike | None, voxel_size_nm: tuple[float, float, float] | None, factor: int
) -> str:
    """The restoration model the learned method runs with: the one given, or the shipped one."""
    return str(model) if model else default_model(voxel_size_nm, factor)


def refiner_input(
    pair: PairFlow, a: np.ndarray, b: np.ndarray, t: float, lo: float, hi: float
) -> np.ndarray:
    """The network's input for depth ``t`` between sections ``a`` and ``b`` (float32):
    (4, H, W) = flow blend, ``a`` warped, ``b`` warped (grey levels mapped by ``lo``..``hi`` to
    0..1) and ``t`` everywhere."""
    wa, wb, blend = pair.warped(a, b, t)
    scale = 1.0 / (hi - lo)
    x = np.empty((4, *a.shape), np.float32)
    x[0] = (blend - lo) * scale
    x[1] = (wa - lo) * scale
    x[2] = (wb - lo) * scale
    x[3] = t
    return x


def _padded(x: np.ndarray, divisor: int) -> np.ndarray:
    h, w = x.shape[-2:]
    ph, pw = -(-h // divisor) * divisor - h, -(-w // divisor) * divisor - w
    mode = "reflect" if ph < h and pw < w else "edge"  # reflect needs the pad inside the image
    return np.pad(x, ((0, 0), (0, ph), (0, pw)), mode=mode)


class Refiner:
    """The restoration network as an onnxruntime session: residual (H, W) for one input."""

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        threads: int | None = None,
        voxel_size_nm: tuple[float, float, float] | None = None,
        factor: int = 2,
    ) -> None:
        import onnxruntime as ort

        from vemcell.segmentation.segment import session_options

        self.onnx_path, self.card = find_model(model, voxel_size_nm, factor)
        self.divisor = int(self.card.get("divisor", 8))
        try:
            self.session = ort.InferenceSession(
                str(self.onnx_path),
                sess_options=session_options(threads),
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own types for bad files
            raise VemcellError(
                f"{self.onnx_path.name} is not a readable ONNX model ({exc})."
            ) from None
        self.name = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Residual (H, W) for an input (4, H, W), in tiles of ``TILE`` with ``MARGIN``."""
        _, h, w = x.shape
        out = np.empty((h, w), np.float32)
        for y0 in range(0, h, TILE):
            for x0 in range(0, w, TILE):
                y1, x1 = min(h, y0 + TILE), min(w, x0 + TILE)
                ya, xa = max(0, y0 - MARGIN), max(0, x0 - MARGIN)
                yb, xb = min(h, y1 + MARGIN), min(w, x1 + MARGIN)
                tile = _padded(x[:, ya:yb, xa:xb], self.divisor)
                res = self.session.run(None, {self.name: tile[None]})[0][0, 0]
                out[y0:y1, x0:x1] = res[y0 - ya : y1 - ya, x0 - xa : x1 - xa]
        return out


class LearnedBetween:
    """The sections between two kept ones by the restoration network, for
    :func:`vemcell.sparse.image.reconstruct`: ``(a, b, ts) -> [float32 section per t]``."""

    def __init__(
        self,
        arr: np.ndarray,
        factor: int,
        model: str | os.PathLike | None = None,
        voxel_size_nm: tuple[float, float, float] | None = None,
        threads: int | None = None,
    ) -> None:
        self.refine = Refiner(model, threads, voxel_size_nm, factor)
        self.lo, self.hi = robust_range(arr)
        self.flow_maker = FlowMaker(self.lo, self.hi)

    def __call__(self, a: np.ndarray, b: np.ndarray, ts: list[float]) -> list[np.ndarray]:
        a, b = a.astype(np.float32), b.astype(np.float32)
        pair = PairFlow(a, b, self.flow_maker)
        out = []
        for t in ts:
            x = refiner_input(pair, a, b, t, self.lo, self.hi)
            out.append((x[0] + self.refine(x)) * (self.hi - self.lo) + self.lo)
        return out
