"""Synthetic FIB-SEM volumes of *C. merolae* cells with exact ground truth.

Why: the paper's labelled FIB-SEM data is not public, so the default 6-class model is trained on
volumes drawn from a geometric model of the cell, the demo runs on one, and the tests can compare
predictions with labels that are right by construction.

The model follows Kousaka et al. (Figures 1–2): every cell is 1.5–2.0 µm across and holds one
nucleus, one cup-shaped plastid (the largest organelle, with thylakoid banding), one mitochondrion
and one peroxisome. Five cell-cycle stages divide the organelles in the paper's order — plastid
(stage 2), mitochondrion (3), nucleus (4, when the cell has constricted into two touching
daughters), peroxisome (5). Each shape is an implicit function (an approximate signed distance in
nm, negative inside) in the cell's own rotated frame, so labels are exact and membranes are drawn
where the labels change.

The image imitates inverted back-scatter FIB-SEM, which reads like TEM: unstained resin is light
and uniform, ribosome-dense cytoplasm is mid-grey and granular, membranes are dark, the nucleus,
mitochondrion and peroxisome are close to the resin (the paper's reason they are hard) and
starch granules, labelled cytoplasm, are light distractors. Then come beam blur, Poisson–Gaussian
noise, curtaining stripes from the ion beam and a slow brightness drift along Z.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial.transform import Rotation

from vemcell.errors import VemcellError

GENERATOR_VERSION = "synth/4"

CLASS_NAMES = ("background", "cytoplasm", "nucleus", "plastid", "mitochondrion", "peroxisome")
# Figure 1 of the paper: cytoplasm white (semi-transparent), nucleus grey, plastid green,
# mitochondrion yellow, peroxisome orange.
CLASS_COLORS = (
    (0.0, 0.0, 0.0, 0.0),
    (1.0, 1.0, 1.0, 0.25),
    (0.55, 0.55, 0.55, 1.0),
    (0.20, 0.70, 0.25, 1.0),
    (0.95, 0.85, 0.15, 1.0),
    (1.00, 0.55, 0.10, 1.0),
)
BACKGROUND, CYTOPLASM, NUCLEUS, PLASTID, MITOCHONDRION, PEROXISOME = range(6)
ORGANELLES = {"nucleus": NUCLEUS, "plastid": PLASTID, "mitochondrion": MITOCHONDRION}
ORGANELLES["peroxisome"] = PEROXISOME
# daughters' organelles are laid out at this fraction of the parent cell's scale
DAUGHTER_SCALE = 0.82

# Which organelles are divided at each stage (the paper's order: plastid, mitochondrion,
# nucleus, peroxisome).
DIVIDED = {
    1: (),
    2: ("plastid",),
    3: ("plastid", "mitochondrion"),
    4: ("plastid", "mitochondrion", "nucleus"),
    5: ("plastid", "mitochondrion", "nucleus", "peroxisome"),
}

LABEL_INFO: dict[str, Any] = {
    "vemcell": "labels/1",
    "model": "synthetic ground truth",
    "classes": [
        {"name": n, "color": list(c)} for n, c in zip(CLASS_NAMES, CLASS_COLORS, strict=True)
    ],
    "background_class": 0,
}
INSTANCE_INFO: dict[str, Any] = {"vemcell": "instances/1"}

_SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"


@dataclass
class Imaging:
    """How the microscope renders the cells (grey levels on 0..255, lengths in nm)."""

    background: float = 196.0
    cytoplasm: float = 128.0
    nucleus: float = 182.0
    plastid: float = 126.0
    mitochondrion: float = 176.0
    peroxisome: float = 182.0
    starch: float = 212.0
    vesicle: float = 165.0
    membrane: float = 22.0
    membrane_strength: float = 1.0
    membrane_width_nm: float = 12.0
    cytoplasm_texture: float = 14.0
    nucleus_texture: float = 14.0
    background_texture: float = 4.0
    thylakoid_contrast: float = 60.0
    thylakoid_period_nm: float = 75.0
    cristae_contrast: float = 25.0
    cristae_period_nm: float = 70.0
    blur_xy_nm: float = 11.0
    blur_z_nm: float = 12.0
    gain: float = 0.35
    read_noise: float = 3.0
    curtain_amplitude: float = 7.0
    curtain_width_nm: float = 40.0
    drift_amplitude: float = 0.05
    cell_contrast_jitter: float = 5.0

    @classmethod
    def randomised(cls, rng: np.random.Generator) -> Imaging:
        """Draw imaging parameters around the defaults, for training data."""
        d = cls()
        shift = rng.normal(0.0, 10.0)  # overall brightness
        scale = rng.uniform(0.8, 1.2)  # overall contrast around mid-grey

        def grey(v: float, spread: float = 8.0) -> float:
            return float(np.clip(128 + (v - 128) * scale + shift + rng.normal(0, spread), 15, 240))

        return cls(
            background=grey(d.background),
            cytoplasm=grey(d.cytoplasm),
            nucleus=grey(d.nucleus),
            plastid=grey(d.plastid),
            mitochondrion=grey(d.mitochondrion),
            peroxisome=grey(d.peroxisome),
            starch=grey(d.starch),
            vesicle=grey(d.vesicle),
            membrane=grey(d.membrane, 10.0),
            membrane_strength=float(rng.uniform(0.7, 1.0)),
            membrane_width_nm=float(rng.uniform(8.0, 16.0)),
            cytoplasm_texture=float(rng.uniform(8.0, 24.0)),
            nucleus_texture=float(rng.uniform(5.0, 18.0)),
            background_texture=float(rng.uniform(1.0, 8.0)),
            thylakoid_contrast=float(rng.uniform(30.0, 80.0)),
            thylakoid_period_nm=float(rng.uniform(60.0, 95.0)),
            cristae_contrast=float(rng.uniform(10.0, 40.0)),
            cristae_period_nm=float(rng.uniform(55.0, 95.0)),
            blur_xy_nm=float(rng.uniform(6.0, 24.0)),
            blur_z_nm=float(rng.uniform(6.0, 30.0)),
            gain=float(rng.uniform(0.15, 1.0)),
            read_noise=float(rng.uniform(1.0, 8.0)),
            curtain_amplitude=float(rng.uniform(0.0, 14.0)),
            curtain_width_nm=float(rng.uniform(25.0, 90.0)),
            drift_amplitude=float(rng.uniform(0.0, 0.12)),
            cell_contrast_jitter=float(rng.uniform(2.0, 10.0)),
        )


@dataclass
class SynthResult:
    """A generated volume and its exact ground truth.

    ``image`` is uint8 (Z, Y, X); ``labels`` uint8 semantic classes in :data:`CLASS_NAMES`
    order; ``cells`` uint16 instance ids (0 = no cell, each daughter of a dividing pair has its
    own id); ``voxel_size_nm`` is (z, y, x); ``info`` describes every cell and the parameters.
    """

    image: np.ndarray
    labels: np.ndarray
    cells: np.ndarray
    voxel_size_nm: tuple[float, float, float]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Body:
    """One cell (or one daughter of a dividing pair) in world coordinates (µm, x y z)."""

    cell_id: int
    unit: int
    stage: int
    role: str  # "whole", "daughter_a" or "daughter_b"
    centre: np.ndarray  # (x, y, z) µm
    frame: np.ndarray  # 3x3, columns = local x, y, z axes in world coordinates
    radii: np.ndarray  # local (x, y, z) µm
    layout_scale: float
    layout_angle: float
    jitter: dict[str, np.ndarray]
    partner: int | None = None
    bbox: tuple[slice, slice, slice] = (slice(0), slice(0), slice(0))
    f: np.ndarray | None = None  # body implicit function on bbox (nm)


# ---------------------------------------------------------------------------------------------
# implicit shapes (approximate signed distances in nm; negative inside)


def _ellipsoid(lx: np.ndarray, ly: np.ndarray, lz: np.ndarray, c, r) -> np.ndarray:
    """First-order signed distance (nm) to an axis-aligned ellipsoid in local µm coordinates."""
    qx, qy, qz = (lx - c[0]) / r[0], (ly - c[1]) / r[1], (lz - c[2]) / r[2]
    q2 = qx * qx + qy * qy + qz * qz
    grad = np.sqrt(qx * qx / r[0] ** 2 + qy * qy / r[1] ** 2 + qz * qz / r[2] ** 2)
    return (q2 - 1.0) / (2.0 * np.maximum(grad, 1e-3 / min(r))) * 1000.0


def _round_max(a: np.ndarray, b: np.ndarray, rounding_nm: float) -> np.ndarray:
    """Intersection of two shapes with the edge where they meet rounded off (a smooth max)."""
    return 0.5 * (a + b + np.sqrt((a - b) ** 2 + rounding_nm**2))


def _smooth_noise(
    shape: tuple[int, ...], voxel_nm: tuple[float, ...], scale_nm: float, rng: np.random.Generator
) -> np.ndarray:
    """Unit-variance smooth random field with features of about ``scale_nm``.

    White noise on a coarse grid (one node per ``scale_nm``) is spread to every voxel with
    separable Gaussian weights: a few small matrix products instead of a large 3D filter.
    """
    out = None
    weights = []
    for s, v in zip(shape, voxel_nm, strict=True):
        n = max(2, math.ceil(s * v / scale_nm) + 3)
        pos = (np.arange(s) + 0.5) * v / scale_nm + 1.5  # voxel centres in coarse-node units
        w = np.exp(-0.5 * ((pos[:, None] - np.arange(n)[None, :]) / 0.7) ** 2)
        weights.append((w / w.sum(axis=1, keepdims=True)).astype(np.float32))
    out = rng.standard_normal(tuple(w.shape[1] for w in weights)).astype(np.float32)
    for axis, w in enumerate(weights):
        out = np.moveaxis(np.tensordot(w, out, axes=([1], [axis])), 0, axis)
    out = out - out.mean()
    return np.ascontiguousarray(out / max(float(out.std()), 1e-6), dtype=np.float32)


def _fine_noise(
    shape: tuple[int, ...], voxel_nm: tuple[float, ...], sigma_nm: float, rng: np.random.Generator
) -> np.ndarray:
    """Unit-variance band-limited noise with grain ``sigma_nm`` (ribosomes, chromatin)."""
    sig = [max(0.3, sigma_nm / v) for v in voxel_nm]
    out = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sig)
    return out / max(float(out.std()), 1e-6)


# ---------------------------------------------------------------------------------------------
# cell layout


def _unit_ellipsoids(
    stage: int, scale: float, frames: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets from the unit centre and local radii (µm) of each cell body of one unit.

    For K candidate ``frames`` (K, 3, 3) returns offsets (K, B, 3) and radii (K, B, 3), B = 1
    body in stages 1–3 (one cell, longer along the division axis, local x, as it grows) and
    B = 2 daughters in stages 4–5, along that axis, overlapping in a wide furrow in stage 4 and
    barely touching in stage 5.
    """
    k = len(frames)
    if stage <= 3:
        radii = np.array([0.88 + 0.09 * (stage - 1), 0.84, 0.80]) * scale
        return np.zeros((k, 1, 3)), radii * rng.uniform(0.95, 1.05, (k, 1, 3))
    offset = (0.50 if stage == 4 else 0.66) * scale
    radii = np.array([0.70, 0.72, 0.69]) * scale
    offsets = frames[:, None, :, 0] * (np.array([1.0, -1.0]) * offset)[None, :, None]
    return offsets, radii * rng.uniform(0.96, 1.04, (k, 2, 3))


def _make_bodies(
    unit: int,
    stage: int,
    centre: np.ndarray,
    frame: np.ndarray,
    scale: float,
    shapes: list[tuple[np.ndarray, np.ndarray]],
    next_id: int,
    rng: np.random.Generator,
) -> list[_Body]:
    """The cell body (stages 1–3) or the two daughters (stages 4–5) of one dividing unit."""

    def jitter() -> dict[str, np.ndarray]:
        d = {
            name: np.concatenate([rng.normal(0.0, 0.025, 3), rng.uniform(0.92, 1.08, 3)])
            for name in ("nucleus", "plastid", "cavity", "mitochondrion", "peroxisome")
        }
        # the mitochondrion curves around the nucleus by this much (1/µm)
        d["bend"] = np.array([rng.uniform(0.0, 0.8)])
        # the peroxisome is irregular (the paper's reason it is hardest): two random waves
        d["px_shape"] = np.concatenate(
            [rng.uniform(0.75, 1.35, 3), rng.standard_normal(6), rng.uniform(0, 2 * np.pi, 2)]
        )
        return d

    angle = float(rng.uniform(0, 2 * np.pi))
    if stage <= 3:
        radii = shapes[1][0]
        return [_Body(next_id, unit, stage, "whole", centre, frame, radii, scale, angle, jitter())]
    bodies = []
    for k, (role, sign) in enumerate((("daughter_a", 1.0), ("daughter_b", -1.0))):
        # daughter b is the mirror image of a: its local +x also points at the furrow
        f = frame @ np.diag([sign, 1.0, 1.0])
        offset, radii = shapes[0][k], shapes[1][k]
        layout_angle = angle + float(rng.normal(0, 0.4))
        bodies.append(
            _Body(
                next_id + k,
                unit,
                stage,
                role,
                centre + offset,
                f,
                radii,
                DAUGHTER_SCALE * scale,
                layout_angle,
                jitter(),
            )
        )
    bodies[0].partner, bodies[1].partner = bodies[1].cell_id, bodies[0].cell_id
    return bodies


def _organelle_fields(
    body: _Body, lx: np.ndarray, ly: np.ndarray, lz: np.ndarray, cell_f: np.ndarray, noise
) -> list[tuple[str, int, np.ndarray]]:
    """Implicit functions of this body's organelles: list of (name, class, f in nm)."""
    k = body.layout_scale
    stage, role = body.stage, body.role
    # the layout turns around the division axis, so organelles sit at different sides per cell
    ca, sa = math.cos(body.layout_angle), math.sin(body.layout_angle)
    my, mz = ca * ly - sa * lz, sa * ly + ca * lz
    j = body.jitter

    def ell(name: str, c, r, bend: float = 0.0) -> np.ndarray:
        cc = np.asarray(c, float) * k + j[name][:3] * k
        rr = np.asarray(r, float) * k * j[name][3:]
        return _ellipsoid(lx, my, mz - bend * lx * lx if bend else mz, cc, rr)

    margin = 35.0  # nm of cytoplasm kept between organelles and the cell membrane
    inside = cell_f + margin
    gap = 30.0  # nm between organelles
    split_gap = 90.0  # nm between the halves of a divided organelle
    whole = role == "whole"
    out: list[tuple[str, int, np.ndarray]] = []

    nucleus_r = (0.40 if stage == 3 else 0.33, 0.33, 0.33)
    f_nuc = np.maximum(ell("nucleus", (0, 0.30, 0), nucleus_r) + 25.0 * noise[0], inside)
    out.append(("nucleus", NUCLEUS, f_nuc))

    plastid_r = (0.62 * (1.3 if whole and stage >= 2 else 1.0), 0.50, 0.60)
    f_pl = ell("plastid", (0, -0.18, 0), plastid_r) + 30.0 * noise[1]
    f_pl = np.maximum(f_pl, -ell("cavity", (0, 0.30, 0), (0.42, 0.42, 0.42)))
    f_pl = np.maximum(np.maximum(f_pl, inside), -(f_nuc - gap))
    if whole and stage >= 2:
        out.append(("plastid", PLASTID, _round_max(f_pl, split_gap / 2 - lx * 1000.0, 120.0)))
        out.append(("plastid", PLASTID, _round_max(f_pl, split_gap / 2 + lx * 1000.0, 120.0)))
    else:
        out.append(("plastid", PLASTID, f_pl))
    f_pl_all = f_pl

    mito_rx = 0.66 if whole and stage >= 3 else 0.50
    bend = float(j["bend"][0]) * (0.50 / mito_rx) ** 2 / k
    f_mi = ell("mitochondrion", (0, 0.30, -0.55), (mito_rx, 0.15, 0.15), bend) + 18.0 * noise[2]
    f_mi = np.maximum(f_mi, inside)
    f_mi = np.maximum(f_mi, -np.minimum(f_nuc - gap, f_pl_all - gap))
    if whole and stage >= 3:
        out.append(
            ("mitochondrion", MITOCHONDRION, _round_max(f_mi, split_gap / 2 - lx * 1000.0, 120.0))
        )
        out.append(
            ("mitochondrion", MITOCHONDRION, _round_max(f_mi, split_gap / 2 + lx * 1000.0, 120.0))
        )
    else:
        out.append(("mitochondrion", MITOCHONDRION, f_mi))

    if role != "daughter_b" or stage == 5:
        # in stage 4 the single peroxisome stays in daughter a, near the furrow; it has not
        # divided yet, so it keeps the parent cell's size rather than a daughter's
        c_px = (0.25, 0.42, 0.46) if stage == 4 else (0.0, 0.42, 0.46)
        ps = j["px_shape"]
        r_px = np.array([0.11, 0.10, 0.10]) * ps[:3] / (DAUGHTER_SCALE if stage == 4 else 1.0)
        f_px = ell("peroxisome", c_px, r_px) + 10.0 * noise[3]
        for wave in range(2):
            u = ps[3 + 3 * wave : 6 + 3 * wave] / 0.18  # wavelength ≈ 0.18 µm
            phase = u[0] * lx + u[1] * my + u[2] * mz
            f_px += 18.0 * np.cos(2 * np.pi * phase + ps[9 + wave]).astype(np.float32)
        f_px = np.maximum(f_px, inside)
        others = np.minimum(np.minimum(f_nuc, f_pl_all), f_mi) - gap
        out.append(("peroxisome", PEROXISOME, np.maximum(f_px, -others)))
    return out


# ---------------------------------------------------------------------------------------------
# the generator


def _place_units(
    n: int,
    stages: list[int],
    extent: np.ndarray,
    rng: np.random.Generator,
    allow_partial: bool,
) -> list[tuple[np.ndarray, int, float, np.ndarray, tuple[np.ndarray, np.ndarray]]]:
    """Place the cells; start again (a few times, fewer for many cells) until all fit."""
    best: list = []
    for _ in range(max(2, 120 // max(n, 1))):
        got = _place_once(n, stages, extent, rng, allow_partial)
        if len(got) > len(best):
            best = got
        if len(best) == n:
            break
    return best


def _place_once(
    n: int,
    stages: list[int],
    extent: np.ndarray,
    rng: np.random.Generator,
    allow_partial: bool,
    tries: int = 1000,
) -> list[tuple[np.ndarray, int, float, np.ndarray, tuple[np.ndarray, np.ndarray]]]:
    """Centre (µm, x y z), stage, scale, frame and body shapes of each cell; some touch.

    Cells stay inside the volume unless ``allow_partial`` (or the volume is too small) and do
    not overlap much. ``tries`` random orientations and positions are drawn at once per cell;
    a cell that fits nowhere is left out (``info`` lists what was made).
    """
    placed: dict[int, tuple] = {}
    centres = np.zeros((0, 3))  # bodies placed so far
    mean_radii = np.zeros(0)
    unit_stages = [stages[i % len(stages)] for i in range(n)]
    scales = [float(v) for v in rng.uniform(0.9, 1.08, n)]
    margin = 0.35 if allow_partial else 1.0
    # dividing pairs are the hardest to fit: place them first
    for i in sorted(range(n), key=lambda i: -unit_stages[i]):
        stage, scale = unit_stages[i], scales[i]
        frames = Rotation.random(tries, random_state=rng).as_matrix()
        offsets, radii = _unit_ellipsoids(stage, scale, frames, rng)
        # axis-aligned half extent of each rotated ellipsoid, plus room for the shape noise
        half = np.sqrt(np.einsum("kij,kbj->kbi", frames**2, radii**2)) + 0.15
        lo = np.max(half * margin - offsets, axis=1)
        hi = extent - np.max(half * margin + offsets, axis=1)
        fits = np.all(lo <= hi, axis=1)
        mid = (lo + hi) / 2
        lo, hi = np.where(lo <= hi, lo, mid), np.where(lo <= hi, hi, mid)
        centre = rng.uniform(lo, hi)
        body_r = np.exp(np.log(radii).mean(axis=2))  # (K, B)
        if len(centres):
            # most tries start next to a placed cell, so that cells touch
            near = rng.random(tries) < 0.6
            j = rng.integers(len(centres), size=tries)
            d = rng.standard_normal((tries, 3))
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            reach = body_r[:, 0] + (0.0 if stage <= 3 else 0.66 * scale)
            step = (reach + mean_radii[j]) * rng.uniform(0.97, 1.03, tries)
            beside = np.clip(centres[j] + d * step[:, None], lo, hi)
            centre = np.where(near[:, None], beside, centre)
            bc = centre[:, None, :] + offsets  # (K, B, 3)
            dist = np.linalg.norm(bc[:, :, None, :] - centres[None, None], axis=-1)
            clash = np.any(dist < 0.95 * (body_r[:, :, None] + mean_radii[None, None]), axis=(1, 2))
        else:
            clash = np.zeros(tries, bool)
        ok = np.flatnonzero(fits & ~clash)
        if not len(ok):
            ok = np.flatnonzero(~clash)  # too small a volume: a cell cut by the border
        if not len(ok):
            continue
        k = int(ok[0])
        placed[i] = (centre[k], stage, scale, frames[k], (offsets[k], radii[k]))
        centres = np.concatenate([centres, centre[k] + offsets[k]])
        mean_radii = np.concatenate([mean_radii, body_r[k]])
    return [placed[i] for i in sorted(placed)]


def _seed_rngs(seed: int) -> list[np.random.Generator]:
    """The independent streams a seed drives: layout, cells, shapes, image noise, imaging."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(5)]


def randomised_imaging(seed: int) -> Imaging:
    """The imaging parameters :func:`generate` draws for ``seed`` with ``randomise=True``.

    Passed as ``imaging`` without ``randomise``, it renders the same microscope with the cells
    kept whole inside the volume.
    """
    return Imaging.randomised(_seed_rngs(seed)[4])


def generate(
    shape: tuple[int, int, int] = (128, 128, 128),
    voxel_nm: float = 20.0,
    cells: int | None = None,
    stages: list[int] | None = None,
    seed: int = 0,
    z_step_nm: float | None = None,
    randomise: bool = False,
    imaging: Imaging | None = None,
) -> SynthResult:
    """Generate a synthetic FIB-SEM volume of *C. merolae* cells with exact labels.

    Parameters
    ----------
    shape : (Z, Y, X)
        Volume size in voxels.
    voxel_nm : float
        In-plane (Y, X) pixel size in nm; also the Z step unless ``z_step_nm`` is given.
    cells : int, optional
        Number of cells (a dividing pair of daughters counts as one). Default: as many as the
        volume holds comfortably (at least one), or ``len(stages)``.
    stages : list of int (1–5), optional
        Cell-cycle stage of each cell, cycled if shorter than ``cells``; random by default.
    seed : int
        Everything is a deterministic function of the arguments and the seed.
    z_step_nm : float, optional
        Distance between slices (anisotropic FIB-SEM stacks); defaults to ``voxel_nm``.
    randomise : bool
        Draw imaging parameters (grey levels, noise, blur, curtaining, drift) and allow cells
        cut by the volume border — the setting for training data.
    imaging : Imaging, optional
        Exact imaging parameters; they replace the default or randomised ones.

    Returns
    -------
    SynthResult
    """
    shape = _check_shape(shape)
    if not (np.isfinite(voxel_nm) and 2.0 <= voxel_nm <= 500.0):
        raise VemcellError(f"The voxel size must be between 2 and 500 nm, got {voxel_nm}.")
    vz = float(z_step_nm) if z_step_nm is not None else float(voxel_nm)
    if not (np.isfinite(vz) and 2.0 <= vz <= 500.0):
        raise VemcellError(f"The Z step must be between 2 and 500 nm, got {z_step_nm}.")
    if stages is not None:
        stages = [int(s) for s in stages]
        if not stages or any(s not in DIVIDED for s in stages):
            raise VemcellError(f"Cell-cycle stages must be 1 to 5, got {stages}.")
    asked = {"cells": cells, "stages": stages}  # as given, so that regenerate() repeats the draws
    if cells is not None and not (1 <= int(cells) <= 500):
        raise VemcellError(f"The number of cells must be between 1 and 500, got {cells}.")
    voxel = (vz, float(voxel_nm), float(voxel_nm))  # z, y, x
    extent = np.array([shape[2] * voxel[2], shape[1] * voxel[1], shape[0] * voxel[0]]) / 1000.0

    rng_layout, rng_cells, rng_shape, rng_img, rng_par = _seed_rngs(seed)
    drawn = Imaging.randomised(rng_par) if randomise else Imaging()
    custom = imaging is not None
    imaging = imaging if imaging is not None else drawn

    if cells is None and stages is None:
        unit_vol = 4.0 / 3.0 * np.pi * 0.95**3
        # cells cut by the border (randomise) let a volume hold more of them
        fill = 0.6 if randomise else 0.3
        n = int(np.clip(round(float(np.prod(extent)) / unit_vol * fill), 1, 200))
    else:
        n = int(cells) if cells is not None else len(stages)  # type: ignore[arg-type]
    if stages is None:
        stages = [int(s) for s in rng_layout.integers(1, 6, n)]
    units = _place_units(n, stages, extent, rng_layout, allow_partial=randomise)

    bodies: list[_Body] = []
    for u, (c, stage, scale, frame, shapes) in enumerate(units):
        bodies += _make_bodies(u + 1, stage, c, frame, scale, shapes, len(bodies) + 1, rng_cells)

    labels = np.zeros(shape, np.uint8)
    cell_ids = np.zeros(shape, np.uint16)
    membrane = np.zeros(shape, np.float32)
    detail = np.zeros(shape, np.float32)  # thylakoid and cristae banding, grey levels
    inclusions = np.zeros(shape, np.uint8)  # 1 starch granule, 2 vesicle lumen
    # clipped so that no cell bulges past the room _place_units leaves for it
    n0, n1 = (np.clip(_smooth_noise(shape, voxel, 260.0, rng_shape), -2.5, 2.5) for _ in range(2))

    # world coordinates (µm) of voxel centres along each axis
    axes_um = [
        (np.arange(s, dtype=np.float32) + 0.5) * v / 1000.0
        for s, v in zip(shape, voxel, strict=True)
    ]
    for b in bodies:
        reach = float(b.radii.max()) * 1.15 + 0.05
        sl = []
        for axis, w in ((0, b.centre[2]), (1, b.centre[1]), (2, b.centre[0])):
            v = voxel[axis] / 1000.0
            lo = max(0, math.floor((w - reach) / v))
            hi = min(shape[axis], math.ceil((w + reach) / v) + 1)
            sl.append(slice(lo, max(lo, hi)))
        b.bbox = (sl[0], sl[1], sl[2])
        lx, ly, lz = _local_coords(b, axes_um)
        b.f = _ellipsoid(lx, ly, lz, (0.0, 0.0, 0.0), b.radii) + 35.0 * n0[b.bbox]
        del lx, ly, lz

    for b in bodies:
        f_cell = _territory(b, bodies)
        inside = f_cell < 0
        sub_l = labels[b.bbox]
        sub_c = cell_ids[b.bbox]
        sub_l[inside] = CYTOPLASM
        sub_c[inside] = b.cell_id
        lx, ly, lz = _local_coords(b, axes_um)
        a0, a1 = n0[b.bbox], n1[b.bbox]
        noise = [a0, a1, (a0 + a1) * np.float32(0.7071), (a0 - a1) * np.float32(0.7071)]
        fields = _organelle_fields(b, lx, ly, lz, f_cell, noise)
        fields_kept = []
        for name, cls, f in fields:
            mask = _largest_component(f < 0)
            if not mask.any():
                continue
            sub_l[mask] = cls
            fields_kept.append((name, cls, f, mask))
        # membranes: a thin dark line just inside every surface, so that the membrane belongs
        # to the object it bounds (as annotators draw it) and grazing cuts stay labelled
        w = imaging.membrane_width_nm
        memb = np.exp(-0.5 * ((f_cell + 0.7 * w) / w) ** 2)
        memb[f_cell > 3 * w] = 0.0
        for name, _cls, f, _mask in fields_kept:
            m = np.exp(-0.5 * ((f + 0.7 * w) / w) ** 2)
            m[~inside] = 0.0
            if name in ("nucleus", "plastid"):
                # double envelopes read thicker than the single membrane of a peroxisome
                m = np.maximum(m, np.exp(-0.5 * ((f + 2.1 * w) / w) ** 2) * 0.9 * inside)
            memb = np.maximum(memb, m)
        sub_m = membrane[b.bbox]
        np.maximum(sub_m, memb, out=sub_m)
        _add_banding(b, fields_kept, lx, ly, lz, detail[b.bbox], imaging, noise)
        _add_inclusions(b, sub_l, inclusions[b.bbox], sub_m, lx, ly, lz, rng_cells, voxel, w)

    # what the volumes hold, counted, not what was intended
    organelle_counts = {
        b.cell_id: _count_organelles(labels[b.bbox], cell_ids[b.bbox], b.cell_id) for b in bodies
    }
    for b in bodies:
        b.f = None

    del n0, n1
    image = _render(labels, cell_ids, membrane, detail, inclusions, voxel, imaging, rng_img)
    info = _describe(
        bodies,
        labels,
        cell_ids,
        organelle_counts,
        voxel,
        shape,
        seed,
        randomise,
        z_step_nm,
        voxel_nm,
        asked["cells"],
        asked["stages"],
        imaging,
        custom,
    )
    return SynthResult(image=image, labels=labels, cells=cell_ids, voxel_size_nm=voxel, info=info)


def _local_coords(b: _Body, axes_um: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates (µm) of the voxels of ``b.bbox`` in the body's own frame."""
    zs, ys, xs = axes_um
    dz = zs[b.bbox[0], None, None] - np.float32(b.centre[2])
    dy = ys[None, b.bbox[1], None] - np.float32(b.centre[1])
    dx = xs[None, None, b.bbox[2]] - np.float32(b.centre[0])
    fr = b.frame.astype(np.float32)
    return tuple(fr[0, i] * dx + fr[1, i] * dy + fr[2, i] * dz for i in range(3))  # type: ignore[return-value]


def _territory(b: _Body, bodies: list[_Body]) -> np.ndarray:
    """The body's implicit function cut where it meets other cells (on b.bbox).

    Touching cells meet on the surface where their implicit functions are equal, so their
    territories never overlap and their membranes coincide.
    """
    f = b.f.copy()  # type: ignore[union-attr]
    for o in bodies:
        if o is b:
            continue
        inter = tuple(
            slice(max(s.start, t.start), min(s.stop, t.stop))
            for s, t in zip(b.bbox, o.bbox, strict=True)
        )
        if any(s.stop <= s.start for s in inter):
            continue
        ib = tuple(
            slice(s.start - t.start, s.stop - t.start) for s, t in zip(inter, b.bbox, strict=True)
        )
        io = tuple(
            slice(s.start - t.start, s.stop - t.start) for s, t in zip(inter, o.bbox, strict=True)
        )
        f[ib] = np.maximum(f[ib], (b.f[ib] - o.f[io]) / 2.0)  # type: ignore[index]
    return f


def _check_shape(shape: Any) -> tuple[int, int, int]:
    try:
        t = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise VemcellError("The shape must be three whole numbers Z Y X.") from None
    # about 40 bytes of working memory per voxel: 512³ needs some 5 GB
    if len(t) != 3 or min(t) < 8 or max(t) > 4096 or int(np.prod(t)) > 512**3:
        raise VemcellError(
            f"The shape must be three sizes Z Y X between 8 and 4096 voxels (at most 512³ "
            f"voxels in all), got {shape}."
        )
    return t  # type: ignore[return-value]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of ``mask`` (organelles are single pieces)."""
    if not mask.any():
        return mask
    lab, n = ndi.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(sizes.argmax())


def _add_banding(body, fields, lx, ly, lz, detail, imaging: Imaging, noise) -> None:
    """Thylakoid lamellae in the plastid (parallel to the cup) and cristae in the mitochondrion."""
    k = body.layout_scale
    ca, sa = math.cos(body.layout_angle), math.sin(body.layout_angle)
    for name, _cls, _f, mask in fields:
        if name == "plastid":
            cav = body.jitter["cavity"][:3] * k + np.array([0.0, 0.30 * k, 0.0])
            my = ca * ly[mask] - sa * lz[mask]
            mz = sa * ly[mask] + ca * lz[mask]
            d = np.sqrt((lx[mask] - cav[0]) ** 2 + (my - cav[1]) ** 2 + (mz - cav[2]) ** 2) * 1000
            d = d + 25.0 * noise[3][mask]
            phase = 2 * np.pi * d / imaging.thylakoid_period_nm
            # thin dark lamellae: a sharpened cosine
            band = np.clip(np.cos(phase), 0, 1) ** 3
            detail[mask] -= imaging.thylakoid_contrast * band
        elif name == "mitochondrion":
            d = lx[mask] * 1000 + 30.0 * noise[1][mask]
            band = np.clip(np.cos(2 * np.pi * d / imaging.cristae_period_nm), 0, 1) ** 4
            detail[mask] -= imaging.cristae_contrast * band


def _add_inclusions(
    body, sub_l, sub_inc, sub_memb, lx, ly, lz, rng: np.random.Generator, voxel, width_nm: float
) -> None:
    """Starch granules (light, no membrane) and small vesicles (membrane-bound) in the cytoplasm.

    Both stay labelled cytoplasm: they are the distractors the paper names (starch has the grey
    level of the nucleus, mitochondrion and resin).
    """
    voxel = np.asarray(voxel)
    # bbox-relative voxel index of the body centre, to cut a small window around each one
    origin = np.array([s.start for s in body.bbox])
    centre_zyx = body.centre[::-1] * 1000.0 / voxel - 0.5 - origin
    n_starch, n_vesicles = int(rng.integers(2, 7)), int(rng.integers(3, 11))
    for kind in [1] * n_starch + [2] * n_vesicles:
        for _attempt in range(10):
            u = rng.standard_normal(3)
            u /= np.linalg.norm(u)
            c = u * body.radii * rng.uniform(0.5, 0.88)
            if kind == 1:
                r = rng.uniform(0.04, 0.08) * np.array([1.0, *rng.uniform(0.7, 1.0, 2)])
            else:
                r = np.full(3, rng.uniform(0.02, 0.045))
            pos = centre_zyx + (body.frame @ c)[::-1] * 1000.0 / voxel
            half = 0.12 * 1000.0 / voxel
            lo = np.maximum(np.floor(pos - half).astype(int), 0)
            hi = np.minimum(np.ceil(pos + half).astype(int) + 1, sub_l.shape)
            if np.any(hi <= lo):
                continue
            w = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
            f = _ellipsoid(lx[w], ly[w], lz[w], c, r)
            m = f < 0
            if not m.any() or not np.all(sub_l[w][f < 30.0] == CYTOPLASM):
                continue
            if np.any(sub_inc[w][f < 30.0]):
                continue
            sub_inc[w][m] = kind
            if kind == 2:
                rim = np.exp(-0.5 * ((f + 0.7 * width_nm) / width_nm) ** 2)
                np.maximum(sub_memb[w], rim, out=sub_memb[w])
            break


def _count_organelles(sub_l: np.ndarray, sub_c: np.ndarray, cell_id: int) -> dict[str, int]:
    mine = sub_c == cell_id
    out = {}
    for name, cls in ORGANELLES.items():
        _, n = ndi.label((sub_l == cls) & mine)
        out[name] = int(n)
    return out


def _render(labels, cell_ids, membrane, detail, inclusions, voxel, im: Imaging, rng) -> np.ndarray:
    """Grey levels, texture, membranes, beam blur, drift, curtaining and shot noise -> uint8."""
    shape = labels.shape
    means = np.array(
        [im.background, im.cytoplasm, im.nucleus, im.plastid, im.mitochondrion, im.peroxisome],
        np.float32,
    )
    img = means[labels]
    # each cell stains a little differently
    n_cells = int(cell_ids.max())
    if n_cells:
        per_cell = np.concatenate([[0.0], rng.normal(0, im.cell_contrast_jitter, n_cells)])
        img += per_cell.astype(np.float32)[cell_ids]
    img[inclusions == 1] = im.starch
    img[inclusions == 2] = im.vesicle
    # skewed noise: ribosome-like dark puncta in the cytoplasm, heterochromatin in the nucleus
    # (computed in place: this is the memory peak of the generator)
    tex = _fine_noise(shape, voxel, 22.0, rng)
    coarse = _fine_noise(shape, voxel, 60.0, rng)
    cyto = labels == CYTOPLASM
    tex[cyto] -= 1.5 * np.maximum(-tex[cyto] - 1.0, 0)
    del cyto
    nuc = labels == NUCLEUS
    c = coarse[nuc]
    del coarse
    tex[nuc] = c - 1.5 * np.maximum(c - 0.6, 0)
    del nuc, c
    amp = np.array(
        [im.background_texture, im.cytoplasm_texture, im.nucleus_texture, 6.0, 6.0, 3.0],
        np.float32,
    )
    tex *= amp[labels]
    img += tex
    del tex
    img += detail
    dark = img - np.float32(im.membrane)
    dark *= membrane
    dark *= np.float32(im.membrane_strength)
    img -= dark
    del dark
    sig = [im.blur_z_nm / voxel[0], im.blur_xy_nm / voxel[1], im.blur_xy_nm / voxel[2]]
    img = ndi.gaussian_filter(img, [max(0.0, s) for s in sig])
    # slow brightness drift along Z (charging, beam current)
    z = np.arange(shape[0], dtype=np.float32) * voxel[0] / 1000.0
    phase, period = rng.uniform(0, 2 * np.pi), rng.uniform(1.5, 4.0)
    drift = 1.0 + im.drift_amplitude * np.sin(2 * np.pi * z / period + phase)
    img *= drift[:, None, None]
    # curtaining: vertical stripes (along Y) from uneven milling, changing slowly with Z
    if im.curtain_amplitude > 0:
        # a stripe keeps its place for about 1 µm of milling (50 slices of 20 nm)
        z_stretch = im.curtain_width_nm / 1000.0
        stripes = _smooth_noise(
            (shape[0], shape[2]), (voxel[0] * z_stretch, voxel[2]), im.curtain_width_nm, rng
        )
        fade = 0.6 + 0.4 * _smooth_noise((shape[1], 1), (voxel[1], 1.0), 400.0, rng).clip(-1, 1)
        img += im.curtain_amplitude * stripes[:, None, :] * fade[None, :, :]
    # Poisson (shot) noise on the detected signal, Gaussian read noise on top; in slabs, since
    # numpy draws Poisson counts as int64
    out = np.empty(shape, np.uint8)
    for z0 in range(0, shape[0], 16):
        sig_slab = np.clip(img[z0 : z0 + 16], 0, 255) / im.gain
        slab = rng.poisson(sig_slab).astype(np.float32) * im.gain
        slab += rng.standard_normal(slab.shape, dtype=np.float32) * np.float32(im.read_noise)
        out[z0 : z0 + 16] = np.clip(np.rint(slab), 0, 255)
    return out


def _describe(
    bodies,
    labels,
    cell_ids,
    counts,
    voxel,
    shape,
    seed,
    randomise,
    z_step_nm,
    voxel_nm,
    cells,
    stages,
    imaging,
    custom=False,
) -> dict[str, Any]:
    vol = np.bincount(cell_ids.ravel(), minlength=len(bodies) + 1)
    border = np.zeros(len(bodies) + 1, bool)
    for face in (
        cell_ids[0],
        cell_ids[-1],
        cell_ids[:, 0],
        cell_ids[:, -1],
        cell_ids[:, :, 0],
        cell_ids[:, :, -1],
    ):
        border[np.unique(face)] = True
    class_vox = np.bincount(labels.ravel(), minlength=len(CLASS_NAMES))
    cell_rows = []
    for b in bodies:
        cell_rows.append(
            {
                "id": b.cell_id,
                "unit": b.unit,
                "stage": b.stage,
                "role": b.role,
                "partner": b.partner,
                "centre_um_xyz": [round(float(v), 4) for v in b.centre],
                "radii_um_xyz": [round(float(v), 4) for v in b.radii],
                "frame_xyz": [[round(float(v), 6) for v in row] for row in b.frame.T],
                "voxels": int(vol[b.cell_id]) if b.cell_id < len(vol) else 0,
                "complete": not bool(border[b.cell_id]) and int(vol[b.cell_id]) > 0,
                "organelles": counts[b.cell_id],
                "divided": list(DIVIDED[b.stage]),
            }
        )
    return {
        "generator": GENERATOR_VERSION,
        "parameters": {
            "shape": list(shape),
            "voxel_nm": float(voxel_nm),
            "z_step_nm": None if z_step_nm is None else float(z_step_nm),
            "cells": None if cells is None else int(cells),
            "stages": list(stages) if stages is not None else None,
            "seed": int(seed),
            "randomise": bool(randomise),
            "imaging": asdict(imaging) if custom else None,
        },
        "voxel_size_nm_zyx": list(voxel),
        "classes": [
            {"name": n, "color": list(c)} for n, c in zip(CLASS_NAMES, CLASS_COLORS, strict=True)
        ],
        "class_fractions": {
            n: round(float(v) / labels.size, 5) for n, v in zip(CLASS_NAMES, class_vox, strict=True)
        },
        "imaging": asdict(imaging),
        "cells": cell_rows,
        "pairs": [[b.cell_id, b.partner] for b in bodies if b.role == "daughter_a" and b.partner],
    }


def write(result: SynthResult, out_dir: str | Path, json_name: str = "synth.json") -> Path:
    """Write ``image.tif``, ``labels.tif``, ``cells.tif`` and ``json_name`` into ``out_dir``.

    Every file appears only when complete (temporary name, then rename).
    """
    from vemcell.io.volumes import atomic_path, write_tiff

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise VemcellError(f"'{out}' exists and is not a folder.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VemcellError(f"Cannot create the folder '{out}' ({exc.strerror}).") from None
    vs = result.voxel_size_nm
    write_tiff(
        out / "image.tif", result.image, vs, metadata={"vemcell": "image/1", "synthetic": True}
    )
    write_tiff(out / "labels.tif", result.labels, vs, metadata=LABEL_INFO)
    write_tiff(out / "cells.tif", result.cells.astype(np.uint16), vs, metadata=INSTANCE_INFO)
    with atomic_path(out / json_name) as tmp:
        tmp.write_text(json.dumps(result.info, indent=1) + "\n")
    return out


def regenerate(info: dict[str, Any]) -> SynthResult:
    """Run :func:`generate` again with the parameters recorded in a result's ``info``."""
    p = info["parameters"]
    return generate(
        shape=tuple(p["shape"]),
        voxel_nm=p["voxel_nm"],
        cells=p["cells"],
        stages=p["stages"],
        seed=p["seed"],
        z_step_nm=p["z_step_nm"],
        randomise=p["randomise"],
        imaging=Imaging(**p["imaging"]) if p.get("imaging") else None,
    )


# The embedded sample: a stage-1 cell, a stage-3 cell (plastid and mitochondrion divided) and a
# stage-5 pair of daughters; slice 58 cuts through all of them.
SAMPLE_PARAMETERS: dict[str, Any] = {
    "shape": (112, 192, 192),
    "voxel_nm": 20.0,
    "stages": [1, 3, 5],
    "seed": 5,
}
SAMPLE_DISPLAY_SLICE = 58


def make_sample(out_dir: str | Path | None = None) -> Path:
    """(Re)write the embedded sample (``sample.json`` records how, for exact regeneration)."""
    result = generate(**SAMPLE_PARAMETERS)
    result.info["display_slice"] = SAMPLE_DISPLAY_SLICE
    return write(result, out_dir if out_dir is not None else _SAMPLE_DIR, json_name="sample.json")


def sample_dir() -> Path:
    """The folder of the embedded sample (image.tif, labels.tif, cells.tif, sample.json)."""
    return _SAMPLE_DIR
