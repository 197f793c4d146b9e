"""Training data: image/label volume pairs, 3-direction slice sampling and augmentation.

The paper cuts training slices along XY, XZ and YZ of isotropic volumes; here every sample is a
2D crop through a chosen voxel along one of the allowed directions. Half of the crops (by
default) are centred near a voxel of a class drawn uniformly from the classes present, so small
organelles (peroxisomes) are seen as often as the cytoplasm. Rotation, flips, scaling,
translation and intensity jitter are applied in torch on whole batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from vemcell.errors import VemcellError
from vemcell.evaluation.metrics import UNLABELLED, apply_label_map
from vemcell.io.volumes import read_volume
from vemcell.segmentation import preprocess
from vemcell.segmentation.segment import direction_slices

IGNORE = UNLABELLED  # label value left out of the loss and the validation scores


@dataclass
class VolumePair:
    """One normalised image volume (float32 in [0, 1]) and its class-index labels (uint8)."""

    image: np.ndarray
    labels: np.ndarray
    name: str = ""
    voxel_size_nm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    class_voxels: dict[int, np.ndarray] = field(default_factory=dict)


def prepare_pair(
    image: np.ndarray,
    labels: np.ndarray,
    voxel_size_nm: Sequence[float],
    *,
    normalisation: dict,
    target_nm: float | None,
    directions: int,
    n_classes: int,
    label_map: dict[str, int] | None = None,
    name: str = "",
) -> VolumePair:
    """Normalise and resample a pair exactly as inference (:func:`vemcell.segment.prepare`) does.

    With ``directions == 1`` only the XY plane is resampled (only XY slices are used), which
    keeps thick serial sections from being interpolated into many artificial slices.
    """
    if image.shape != labels.shape:
        raise VemcellError(
            f"{name}: image shape {image.shape} and label shape {labels.shape} differ."
        )
    lab = apply_label_map(labels, label_map, n_classes)
    img = preprocess.normalise(
        image,
        normalisation.get("method", "auto"),
        normalisation.get("low", 0.5),
        normalisation.get("high", 99.5),
    )
    vs = tuple(float(v) for v in voxel_size_nm)
    if target_nm is not None:
        target = (vs[0] if directions == 1 else target_nm, target_nm, target_nm)
        img = preprocess.resample(img, vs, target, order=1)
        lab = preprocess.resample(lab, vs, target, order=0)
        vs = tuple(float(t) for t in target)
    return VolumePair(img.astype(np.float32), lab, name, vs)  # type: ignore[arg-type]


def load_pair(
    image_path: str | Path,
    label_path: str | Path,
    *,
    normalisation: dict,
    target_nm: float | None,
    directions: int,
    n_classes: int,
    label_map: dict[str, int] | None = None,
    voxel_size_nm: Sequence[float] | None = None,
) -> VolumePair:
    """Read an image TIFF and its label TIFF and prepare them for training."""
    vol = read_volume(image_path, voxel_size_nm=voxel_size_nm)
    lab = read_volume(label_path, kind="labels")
    return prepare_pair(
        vol.array(),
        lab.array(),
        vol.voxel_size_nm,
        normalisation=normalisation,
        target_nm=target_nm,
        directions=directions,
        n_classes=n_classes,
        label_map=label_map,
        name=Path(image_path).name,
    )


def with_channels(x):
    """Slices (N, H, W) as (N, 1, H, W); slices with neighbours (N, K, H, W) as they are.

    Works on numpy arrays and torch tensors alike: what every network input goes through.
    """
    return x[:, None] if x.ndim == 3 else x


def _plane(vol: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2D slice of a (Z, Y, X) volume perpendicular to ``axis`` at ``index``."""
    return vol[(slice(None),) * axis + (index,)]


class SliceSampler:
    """Draws 2D training crops through the volumes along the allowed directions.

    Parameters
    ----------
    volumes : list of VolumePair
    crop : int
        Side of the (square) crops returned; the augmentation then cuts the final tile out.
    directions : {1, 3}
        1: XY slices only; 3: XY, XZ and YZ slices (the paper's augmentation).
    balance : float
        Fraction of crops centred near a voxel of a drawn class.
    n_classes : int
    class_weights : sequence of float, optional
        Relative odds of drawing each class for the centred crops (default: uniform over the
        classes present); e.g. more weight on small organelles shows them more often.
    context : int
        Neighbouring slices on each side given with each crop as channels (0: none); crops
        are then (2·context + 1, S, S), cut as inference cuts them
        (:func:`vemcell.segment.direction_slices`).
    """

    def __init__(
        self,
        volumes: list[VolumePair],
        crop: int,
        directions: int = 3,
        balance: float = 0.5,
        n_classes: int = 6,
        max_index: int = 200_000,
        seed: int = 0,
        class_weights: Sequence[float] | None = None,
        context: int = 0,
    ) -> None:
        if not volumes:
            raise VemcellError("No training volumes were given.")
        self.volumes, self.crop, self.balance = volumes, int(crop), float(balance)
        self.context = int(context)
        self.axes = (0,) if directions == 1 else (0, 1, 2)
        rng = np.random.default_rng(seed)
        present: set[int] = set()
        for v in volumes:
            flat = v.labels.reshape(-1)
            for c in range(n_classes):
                idx = np.flatnonzero(flat == c)
                if idx.size:
                    if idx.size > max_index:
                        idx = np.sort(rng.choice(idx, max_index, replace=False))
                    v.class_voxels[c] = idx
                    present.add(c)
        self.classes = sorted(present)
        self.class_p = None
        if class_weights is not None:
            if len(class_weights) != n_classes or min(class_weights) < 0:
                raise VemcellError(
                    f"class weights need {n_classes} non-negative values, got {class_weights}."
                )
            w = np.array([float(class_weights[c]) for c in self.classes])
            if w.sum() <= 0:
                raise VemcellError("class weights are zero for every class present.")
            self.class_p = w / w.sum()
        # Volumes too thin to slice along an axis (e.g. 7 serial sections) only give XY crops.
        self._min_side = 16

    def _axes_for(self, v: VolumePair) -> list[int]:
        return [a for a in self.axes if a == 0 or v.labels.shape[0] >= self._min_side] or [0]

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One (image, labels) crop of ``crop × crop`` pixels (reflect-padded at borders)."""
        if self.balance > 0 and rng.random() < self.balance:
            c = int(rng.choice(self.classes, p=self.class_p))
            owners = [i for i, v in enumerate(self.volumes) if c in v.class_voxels]
            v = self.volumes[int(rng.choice(owners))]
            flat = v.class_voxels[c][rng.integers(len(v.class_voxels[c]))]
            centre = np.unravel_index(int(flat), v.labels.shape)
        else:
            v = self.volumes[int(rng.integers(len(self.volumes)))]
            centre = tuple(int(rng.integers(s)) for s in v.labels.shape)
        axis = int(rng.choice(self._axes_for(v)))
        index = int(centre[axis])
        img = direction_slices(v.image, axis, index, index + 1, self.context)[0]
        lab = _plane(v.labels, axis, index)
        cy, cx = (int(c) for i, c in enumerate(centre) if i != axis)
        jitter = self.crop // 6
        cy += int(rng.integers(-jitter, jitter + 1))
        cx += int(rng.integers(-jitter, jitter + 1))
        return _crop(img, cy, cx, self.crop), _crop(lab, cy, cx, self.crop)

    def batch(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """``size`` crops stacked: images (B, S, S) float32 (with context (B, K, S, S)) and
        labels (B, S, S) uint8."""
        pairs = [self.sample(rng) for _ in range(size)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _crop(plane: np.ndarray, cy: int, cx: int, size: int) -> np.ndarray:
    """A ``size``² window centred at (cy, cx) of the last two axes; reflected where it leaves
    the plane.

    Reflection keeps textures continuous; for labels the reflected part is real (mirrored)
    structure too, so it is kept rather than ignored.
    """
    h, w = plane.shape[-2:]
    y0, x0 = cy - size // 2, cx - size // 2
    ys = np.arange(y0, y0 + size)
    xs = np.arange(x0, x0 + size)
    ys = _reflect(ys, h)
    xs = _reflect(xs, w)
    return plane[..., ys[:, None], xs[None, :]]


def _reflect(idx: np.ndarray, n: int) -> np.ndarray:
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.abs(idx) % period
    return np.where(idx >= n, period - idx, idx)


@dataclass
class Augment:
    """Random geometry (rotation, flips, scale, translation) and intensity jitter.

    Every parameter range is symmetric; ``scale`` is the maximum zoom factor (1.25 allows
    0.8×–1.25×).
    """

    rotate: bool = True
    flip: bool = True
    scale: float = 1.25
    translate: float = 0.1
    contrast: float = 0.2
    brightness: float = 0.08
    gamma: float = 0.25
    noise: float = 0.03
    blur: float = 0.5

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, tile: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cut augmented ``tile``² patches from (B, S, S) or (B, K, S, S) crops; returns
        (B, K, T, T) images (K = 1 for the former) and (B, T, T) labels."""
        images = with_channels(images)
        b, k, s, _ = images.shape
        u = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
        theta_angle = (u(b) * 2 * math.pi) if self.rotate else torch.zeros(b)
        log_s = math.log(self.scale)
        zoom = torch.exp((u(b) * 2 - 1) * log_s)
        sx = torch.where(u(b) < 0.5, -1.0, 1.0) if self.flip else torch.ones(b)
        frac = tile / s  # the tile's half-extent in the crop's normalised coordinates
        cos, sin = torch.cos(theta_angle), torch.sin(theta_angle)
        a = frac / zoom
        mat = torch.zeros(b, 2, 3)
        mat[:, 0, 0] = a * cos * sx
        mat[:, 0, 1] = -a * sin
        mat[:, 1, 0] = a * sin * sx
        mat[:, 1, 1] = a * cos
        mat[:, :, 2] = (u(b, 2) * 2 - 1) * self.translate
        grid = F.affine_grid(mat, [b, k, tile, tile], align_corners=False)
        x = F.grid_sample(
            images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )
        y = F.grid_sample(
            labels[:, None].float(),
            grid,
            mode="nearest",
            padding_mode="reflection",
            align_corners=False,
        )[:, 0].long()
        if self.blur > 0:
            sigma = u(b) * self.blur
            x = _blur(x, sigma)
        c = 1 + (u(b, 1, 1, 1) * 2 - 1) * self.contrast
        br = (u(b, 1, 1, 1) * 2 - 1) * self.brightness
        g = torch.exp((u(b, 1, 1, 1) * 2 - 1) * self.gamma)
        x = x.clamp(0, 1).pow(g)
        x = (x - 0.5) * c + 0.5 + br
        if self.noise > 0:
            x = x + torch.randn(x.shape, generator=gen) * (u(b, 1, 1, 1) * self.noise)
        return x.clamp(0, 1), y


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-sample Gaussian blur with a 5-tap kernel (sigma 0 leaves the image as it is)."""
    r = torch.arange(-2, 3, dtype=x.dtype)
    k = torch.exp(-0.5 * (r[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    k = k / k.sum(1, keepdim=True)
    b, c = x.shape[:2]
    k = k.repeat_interleave(c, dim=0)  # every channel of a sample gets that sample's blur
    xr = x.reshape(1, b * c, *x.shape[2:])
    xr = F.pad(xr, (2, 2, 2, 2), mode="reflect")
    xr = F.conv2d(xr, k[:, None, None, :], groups=b * c)
    xr = F.conv2d(xr, k[:, None, :, None], groups=b * c)
    return xr.reshape_as(x)
