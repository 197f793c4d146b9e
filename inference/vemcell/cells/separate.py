"""Separate the cells of a multi-cell volume: foreground (cell vs resin), 3D watershed, crops.

The paper (Kousaka et al.) first tells cells from the embedding resin with SAM, then splits
the cell mask into single cells with a 3D watershed and cuts one SBF crop per cell. Here the
foreground comes from one of three interchangeable providers behind :func:`foreground`:

``sam``
    Segment Anything through onnxruntime (:mod:`vemcell.cells.sam`), automatic point-grid prompting
    per slice, when an exported SAM is installed (``vemcell sam-export``).
``unet``
    The organelle U-Net's background class: everything the model does not call background.
``threshold``
    Classical: Gaussian smoothing, Otsu's threshold (or a given one), morphological clean-up.

:func:`separate_cells` then runs an anisotropy-aware watershed on the distance transform of the
mask (seeds at the h-maxima of the smoothed distance, so touching cells and dividing daughters
joined by a constriction get one seed each), and :func:`cell_boxes` gives per-cell crops.
All sizes are physical (nm / µm) so defaults hold whatever the voxel size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from vemcell.cells.masks import clean_mask
from vemcell.errors import VemcellError
from vemcell.io.volumes import check_voxel_size
from vemcell.progress import Span, advance

PROVIDERS = ("auto", "sam", "unet", "threshold")

#: C. merolae cells are 1.5–2 µm across; these defaults are set for cells of roughly 1–5 µm.
DEFAULT_MIN_CELL_UM3 = 0.2
DEFAULT_SEED_SMOOTH_UM = 0.08
DEFAULT_SEED_H_UM = 0.03
DEFAULT_MIN_SEED_RADIUS_UM = 0.25
DEFAULT_WORK_NM = 40.0

ProgressLike = Any  # a vemcell.progress.Progress, a callable(fraction, message) or None


def _voxel(voxel_size_nm: Any) -> np.ndarray:
    return np.asarray(check_voxel_size(voxel_size_nm), dtype=float)


def _check_volume(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 3:
        raise VemcellError(f"{what} must be a 3D (Z, Y, X) array, not {a.ndim}D.")
    if min(a.shape) == 0:
        raise VemcellError(f"{what} is empty (shape {a.shape}).")
    return a


# --------------------------------------------------------------------------------------------
# Which provider


def find_sam(sam_dir: str | os.PathLike | None = None) -> Path | None:
    """The directory of an installed, exported SAM, or None.

    Looked for in ``sam_dir`` when given (it must then hold one), else ``$VEMCELL_SAM``, else
    ``sam/`` in each model directory (:func:`vemcell.modelcard.models_dirs`).
    """
    from vemcell.cells.sam import CARD_NAME

    if sam_dir is not None:
        d = Path(sam_dir)
        if not (d / CARD_NAME).exists():
            raise VemcellError(
                f"'{d}' holds no exported SAM ({CARD_NAME} missing); create one with "
                "`vemcell sam-export`."
            )
        return d
    candidates = []
    env = os.environ.get("VEMCELL_SAM")
    if env:
        candidates.append(Path(env))
    from vemcell.cards.card import models_dirs

    candidates += [d / "sam" for d in models_dirs()]
    for d in candidates:
        if (d / CARD_NAME).exists():
            return d
    return None


def membrane_split(card: Any, provider: str | None) -> str | None:
    """How a membrane split is reported (``"unet (membrane watershed)"``) when the U-Net
    provider is used with a card that names a ``cell_boundary_class``; None otherwise."""
    cb = getattr(card, "cell_boundary_class", None)
    if provider != "unet" or cb is None:
        return None
    return f"unet ({card.class_names[cb]} watershed)"


def default_provider(card: Any = None, sam_dir: str | os.PathLike | None = None) -> str:
    """``"unet"`` for a model that splits cells along its membrane class, else ``"sam"`` when
    an exported SAM is installed, else ``"unet"`` when the model has a background class, else
    ``"threshold"``."""
    if card is not None and getattr(card, "cell_boundary_class", None) is not None:
        return "unet"
    if find_sam(sam_dir) is not None:
        return "sam"
    if card is not None and getattr(card, "background_class", None) is not None:
        return "unet"
    return "threshold"


# --------------------------------------------------------------------------------------------
# Foreground providers


def _smooth(image: np.ndarray, voxel: np.ndarray, smooth_nm: float) -> np.ndarray:
    img = image.astype(np.float32, copy=False)
    if smooth_nm <= 0:
        return img
    sigma = smooth_nm / voxel
    sigma[sigma < 0.3] = 0.0
    return ndi.gaussian_filter(img, sigma)


def _border_fraction(mask: np.ndarray) -> float:
    """Fraction of the volume's outer faces (Y and X sides of every slice) that ``mask`` covers."""
    sides = [mask[:, 0, :], mask[:, -1, :], mask[:, :, 0], mask[:, :, -1]]
    return float(sum(s.sum() for s in sides) / sum(s.size for s in sides))


def threshold_foreground(
    image: np.ndarray,
    voxel_size_nm: Any,
    *,
    threshold: float | None = None,
    polarity: str = "auto",
    smooth_nm: float = 20.0,
    open_nm: float = 30.0,
    close_nm: float = 60.0,
    min_object_um3: float = 0.05,
) -> np.ndarray:
    """Classical cell mask: Gaussian smoothing, Otsu's threshold (or ``threshold``), clean-up.

    Parameters
    ----------
    threshold : float, optional
        Intensity (in the image's own units) that separates cells from resin; Otsu's when None.
    polarity : {"auto", "dark", "bright"}
        Whether cells are darker or brighter than the resin. ``auto`` takes the side that
        covers less of the volume's sides as the cells (the resin surrounds the cells in a
        multi-cell block).
    """
    from skimage.filters import threshold_otsu

    v = _voxel(voxel_size_nm)
    image = _check_volume(image, "The image")
    if polarity not in ("auto", "dark", "bright"):
        raise VemcellError(f"polarity must be auto, dark or bright, not {polarity!r}.")
    sm = _smooth(image, v, smooth_nm)
    if threshold is None:
        step = max(1, round((sm.size / 4e6) ** (1 / 3)))
        sample = sm[::step, ::step, ::step]
        if float(sample.max()) == float(sample.min()):
            raise VemcellError("The volume is constant; there are no cells to separate.")
        t = float(threshold_otsu(sample))
    else:
        t = float(threshold)
        if not np.isfinite(t):
            raise VemcellError(f"The threshold must be a finite number, not {threshold}.")
    bright = sm > t
    if polarity == "bright":
        mask = bright
    elif polarity == "dark":
        mask = ~bright
    else:
        mask = bright if _border_fraction(bright) <= _border_fraction(~bright) else ~bright
    return clean_mask(mask, v, open_nm=open_nm, close_nm=close_nm, min_object_um3=min_object_um3)


def unet_foreground(
    voxel_size_nm: Any,
    *,
    labels: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    background_class: int = 0,
    open_nm: float = 30.0,
    min_object_um3: float = 0.05,
) -> np.ndarray:
    """Cell mask from the organelle U-Net: every voxel not labelled background.

    Parameters
    ----------
    labels : (Z, Y, X) uint8, optional
        The segmentation's class labels; foreground = ``labels != background_class``.
    probabilities : (Z, Y, X) or (Z, C, Y, X) float, optional
        Either the background probability or all class probabilities (class axis 1, as
        :meth:`vemcell.segment.Segmenter.predict_slices` returns them); foreground where the
        background probability is below 0.5.
    """
    v = _voxel(voxel_size_nm)
    if labels is not None:
        labels = _check_volume(labels, "The U-Net labels")
        mask = labels != background_class
    elif probabilities is not None:
        p = np.asarray(probabilities)
        if p.ndim == 4:
            if not 0 <= background_class < p.shape[1]:
                raise VemcellError(
                    f"Background class {background_class} is not among the {p.shape[1]} "
                    "probability channels."
                )
            p = p[:, background_class]
        p = _check_volume(p, "The U-Net background probability")
        mask = p < 0.5
    else:
        raise VemcellError("The U-Net foreground needs the segmentation's labels or probabilities.")
    return clean_mask(mask, v, open_nm=open_nm, min_object_um3=min_object_um3)


def foreground(
    image_zyx: np.ndarray,
    voxel_size_nm: Any,
    *,
    provider: str = "auto",
    card: Any = None,
    unet_labels: np.ndarray | None = None,
    unet_probabilities: np.ndarray | None = None,
    threshold: float | None = None,
    polarity: str = "auto",
    sam_dir: str | os.PathLike | None = None,
    sam_options: dict[str, Any] | None = None,
    progress: ProgressLike = None,
) -> tuple[np.ndarray, str]:
    """Cell-versus-resin mask of a volume from the chosen provider.

    Parameters
    ----------
    image_zyx : (Z, Y, X) array
        The EM volume (any numeric dtype).
    voxel_size_nm : (z, y, x)
        Voxel size in nm.
    provider : {"auto", "sam", "unet", "threshold"}
        ``auto`` = :func:`default_provider`.
    card : ModelCard, optional
        The organelle model's card (its ``background_class`` for the U-Net provider).
    unet_labels, unet_probabilities : array, optional
        The U-Net's output for the ``unet`` provider (see :func:`unet_foreground`).
    threshold : float, optional
        Fixed intensity threshold for the ``threshold`` provider (Otsu's when None).
    polarity : {"auto", "dark", "bright"}
        Whether cells are darker or brighter than resin, for the ``threshold`` provider.
    sam_dir : path, optional
        Exported SAM to use (see :func:`find_sam`).
    sam_options : dict, optional
        Keyword arguments for :func:`vemcell.sam.sam_foreground` (grid density, filters, ...).
    progress : Progress or callable, optional
        Receives the fraction of this step done.

    Returns
    -------
    (mask, provider_used)
        Boolean (Z, Y, X) mask and the provider that produced it.
    """
    if provider not in PROVIDERS:
        raise VemcellError(
            f"Unknown foreground provider {provider!r}; use one of {', '.join(PROVIDERS)}."
        )
    image = _check_volume(image_zyx, "The image")
    v = _voxel(voxel_size_nm)
    if provider == "auto":
        provider = default_provider(card, sam_dir)
    if provider == "sam":
        from vemcell.cells import sam

        model_dir = find_sam(sam_dir)
        if model_dir is None:
            raise VemcellError(
                "No exported SAM is installed; run `vemcell sam-export` (see the README) or "
                "choose --foreground unet or threshold."
            )
        mask = sam.sam_foreground(
            image, tuple(v), model_dir, progress=progress, **(sam_options or {})
        )
    elif provider == "unet":
        bg = getattr(card, "background_class", 0) if card is not None else 0
        if bg is None:
            raise VemcellError(
                "This model has no background class, so it cannot tell cells from resin; "
                "use --foreground threshold or sam."
            )
        for what, a in (("labels", unet_labels), ("probabilities", unet_probabilities)):
            if a is not None and np.asarray(a).shape[-2:] != image.shape[-2:]:
                raise VemcellError(f"The U-Net {what} do not match the image's shape.")
        mask = unet_foreground(
            v, labels=unet_labels, probabilities=unet_probabilities, background_class=int(bg)
        )
    else:
        mask = threshold_foreground(image, v, threshold=threshold, polarity=polarity)
    advance(progress, 1.0, f"foreground from {provider}")
    return mask, provider


def find_cells(
    image_zyx: np.ndarray,
    voxel_size_nm: Any,
    *,
    provider: str,
    card: Any = None,
    unet_labels: np.ndarray | None = None,
    threshold: float | None = None,
    polarity: str = "auto",
    sam_dir: str | os.PathLike | None = None,
    sam_options: dict[str, Any] | None = None,
    progress: ProgressLike = None,
    **watershed: Any,
) -> tuple[np.ndarray, str]:
    """Cell ids (uint16, 0 = resin) and how the cells were found: the one definition that
    ``vemcell cells`` and the pipeline share.

    A model with a membrane class splits cells along its membranes (:func:`membrane_cells`);
    otherwise the chosen provider's foreground is split by :func:`separate_cells`, which takes
    ``watershed``'s keyword arguments.
    """
    membrane = membrane_split(card, provider) if unet_labels is not None else None
    if membrane:
        ids = membrane_cells(
            unet_labels, voxel_size_nm, card.cell_boundary_class, progress=progress
        )
        return ids, membrane
    mask, used = foreground(
        image_zyx,
        voxel_size_nm,
        provider=provider,
        card=card,
        unet_labels=unet_labels,
        threshold=threshold,
        polarity=polarity,
        sam_dir=sam_dir,
        sam_options=sam_options,
        progress=None if progress is None else Span(progress, 0.0, 0.6),
    )
    ids = separate_cells(
        mask,
        voxel_size_nm,
        progress=None if progress is None else Span(progress, 0.6, 1.0),
        **watershed,
    )
    return ids, used


# --------------------------------------------------------------------------------------------
# Watershed


def _resample_factors(voxel: np.ndarray, work_nm: float | None) -> np.ndarray:
    if not work_nm:
        return np.ones(3)
    return np.maximum(1.0, np.floor(work_nm / voxel))


def face_pairs(
    ids: np.ndarray, axes: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (k, 2) of different non-zero ids that share voxel faces, each once (low, high),
    with how many faces they share (along ``axes``, default all): the region graph that small
    regions are merged along."""
    found = []
    for ax in range(ids.ndim) if axes is None else axes:
        a = np.moveaxis(ids, ax, 0)
        u, v = a[:-1].ravel(), a[1:].ravel()
        keep = (u != v) & (u > 0) & (v > 0)
        if keep.any():
            u, v = u[keep], v[keep]
            found.append(np.stack([np.minimum(u, v), np.maximum(u, v)], axis=1))
    if not found:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64)
    pairs, counts = np.unique(np.concatenate(found).astype(np.int64), axis=0, return_counts=True)
    return pairs, counts


def small_region_targets(
    sizes: np.ndarray, pairs: np.ndarray, counts: np.ndarray, min_voxels: int
) -> np.ndarray:
    """Where each region goes (index = id; 0 = removed) when every region smaller than
    ``min_voxels`` joins the neighbour it shares most faces with, smallest first.

    A region that earlier small regions joined brings their faces along; one with no
    neighbour left is removed. Works on the region graph only, so a blockwise run merges with
    the sizes and face counts summed over its blocks, exactly as in memory.
    """
    n = len(sizes)
    target = np.arange(n, dtype=np.int64)
    small = [
        int(i) for i in np.argsort(sizes, kind="stable") if i > 0 and 0 < sizes[i] < min_voxels
    ]
    if not small:
        return target
    neighbours: dict[int, dict[int, int]] = {}
    for (a, b), c in zip(pairs.tolist(), counts.tolist(), strict=True):
        neighbours.setdefault(a, {})[b] = neighbours.setdefault(a, {}).get(b, 0) + c
        neighbours.setdefault(b, {})[a] = neighbours.setdefault(b, {}).get(a, 0) + c
    members = {i: [i] for i in small}
    for lab in small:
        if target[lab] != lab:
            continue
        group = members.get(lab, [lab])
        touch: dict[int, int] = {}
        for m in group:
            for nb, c in neighbours.get(m, {}).items():
                t = int(target[nb])
                if t != lab and t > 0:
                    touch[t] = touch.get(t, 0) + c
        # the most faces; equal counts go to the lower id, as bincount().argmax() does
        dest = min(touch, key=lambda t: (-touch[t], t)) if touch else 0
        target[group] = dest
        if dest:
            members.setdefault(dest, [dest]).extend(group)
    return target


def merge_small_regions(ids: np.ndarray, min_voxels: int) -> np.ndarray:
    """Merge every region smaller than ``min_voxels`` into the neighbour it shares most faces
    with; regions with no neighbour are removed. Smallest regions go first."""
    sizes = np.bincount(ids.ravel())
    if not np.any((sizes[1:] > 0) & (sizes[1:] < min_voxels)):
        return ids.copy()
    pairs, counts = face_pairs(ids)
    return small_region_targets(sizes, pairs, counts, min_voxels)[ids].astype(ids.dtype)


def distance_um(mask: np.ndarray, voxel_nm: np.ndarray) -> np.ndarray:
    """Distance of every mask voxel to the nearest non-mask voxel, in µm (float32)."""
    return ndi.distance_transform_edt(mask, sampling=voxel_nm).astype(np.float32) / 1000.0


def smooth_distance(
    dist: np.ndarray, mask: np.ndarray, voxel_nm: np.ndarray, smooth_um: float
) -> np.ndarray:
    """The distance map smoothed with a Gaussian of ``smooth_um`` (zero outside the mask)."""
    if smooth_um <= 0:
        return dist
    return ndi.gaussian_filter(dist, smooth_um * 1000.0 / voxel_nm) * mask


def seed_maxima(dist: np.ndarray, h: float, min_radius: float) -> np.ndarray:
    """h-maxima of ``dist`` that are at least ``min_radius`` high.

    A maximum of height ``p >= min_radius`` whose saddle lies below ``min_radius - h`` passes
    the h test whatever the saddle's exact height, so the distance map can be clamped at that
    floor and h-maxima computed only inside each core above it: the same seeds, at a fraction
    of the cost of a whole-volume grey reconstruction.
    """
    from skimage.morphology import h_maxima

    peaks = np.zeros(dist.shape, bool)
    if h <= 0:
        peaks = (dist == ndi.maximum_filter(dist, size=3)) & (dist > 0)
        return peaks & (dist >= min_radius)
    floor = max(min_radius - h, 0.0)
    cores, _ = ndi.label(dist > floor)
    for i, box in enumerate(ndi.find_objects(cores), start=1):
        if box is None:
            continue
        inside = cores[box] == i
        sub = np.where(inside, dist[box], floor).astype(np.float64)
        if sub.max() < min_radius:
            continue
        peaks[box] |= h_maxima(sub, h).astype(bool) & inside
    return peaks & (dist >= min_radius)


def separate_cells(
    mask: np.ndarray,
    voxel_size_nm: Any,
    *,
    min_cell_um3: float = DEFAULT_MIN_CELL_UM3,
    seed_smooth_um: float = DEFAULT_SEED_SMOOTH_UM,
    seed_h_um: float = DEFAULT_SEED_H_UM,
    min_seed_radius_um: float = DEFAULT_MIN_SEED_RADIUS_UM,
    work_nm: float | None = DEFAULT_WORK_NM,
    progress: ProgressLike = None,
) -> np.ndarray:
    """Split a cell mask into single cells with a 3D watershed on its distance transform.

    Parameters
    ----------
    mask : (Z, Y, X) bool
        Cell-versus-resin foreground.
    voxel_size_nm : (z, y, x)
        The distance transform is computed in nm with this sampling (anisotropy-aware).
    min_cell_um3 : float
        Watershed fragments smaller than this are merged into the neighbour they touch most,
        or removed when isolated.
    seed_smooth_um : float
        Gaussian sigma applied to the distance map before seeding; removes ridge noise from a
        ragged mask.
    seed_h_um : float
        A seed is a maximum of the smoothed distance at least this much higher than the
        saddle joining it to a higher maximum (h-maxima). Two touching cells or dividing
        daughters get two seeds when each is thicker than their contact/constriction by
        more than ``seed_h_um``.
    min_seed_radius_um : float
        Seeds thinner than this (distance to the resin) are ignored.
    work_nm : float or None
        Work on a grid of about this voxel size (never finer than the input) for speed; the
        ids are mapped back to the full grid inside the mask. None = the input grid.

    Returns
    -------
    uint16 (Z, Y, X)
        Cell ids 1..N (0 = not a cell), numbered in order of first appearance.
    """
    from skimage.measure import label as cc_label
    from skimage.segmentation import relabel_sequential, watershed

    mask = _check_volume(mask, "The cell mask").astype(bool, copy=False)
    v = _voxel(voxel_size_nm)
    for name, val in (
        ("min_cell_um3", min_cell_um3),
        ("seed_smooth_um", seed_smooth_um),
        ("seed_h_um", seed_h_um),
        ("min_seed_radius_um", min_seed_radius_um),
    ):
        if not np.isfinite(val) or val < 0:
            raise VemcellError(f"{name} must be zero or positive, not {val}.")
    if not mask.any():
        return np.zeros(mask.shape, np.uint16)
    f = _resample_factors(v, work_nm)
    if np.any(f > 1):
        shape = tuple(int(np.ceil(n / k)) for n, k in zip(mask.shape, f, strict=True))
        zoom = np.asarray(shape) / np.asarray(mask.shape)
        work = ndi.zoom(mask.astype(np.uint8) * np.uint8(254), zoom, order=1) > 127
        wv = v * np.asarray(mask.shape) / np.asarray(shape)
    else:
        work, wv = mask, v
    advance(progress, 0.1, "distance transform")
    dist_s = smooth_distance(distance_um(work, wv), work, wv, seed_smooth_um)
    advance(progress, 0.4, "seeds")
    peaks = seed_maxima(dist_s, seed_h_um, min_seed_radius_um)
    markers = cc_label(peaks, connectivity=3)
    # Components of the mask that got no seed (thin cells) still become a cell each.
    comps = cc_label(work, connectivity=1)
    seeded = np.unique(comps[markers > 0])
    unseeded = np.setdiff1d(np.unique(comps[comps > 0]), seeded)
    if unseeded.size:
        extra = np.isin(comps, unseeded)
        markers = np.where(extra, comps + markers.max(), markers)
    advance(progress, 0.6, "watershed")
    ids = watershed(-dist_s, markers, mask=work)
    min_vox = max(1, round(min_cell_um3 * 1e9 / float(np.prod(wv))))
    ids = merge_small_regions(ids.astype(np.int32), min_vox)
    if work is not mask:
        idx = [
            np.minimum((np.arange(n) * (s / n)).astype(np.intp), s - 1)
            for n, s in zip(mask.shape, ids.shape, strict=True)
        ]
        ids = ids[np.ix_(*idx)] * mask
        # Mask voxels lost at the coarse grid's edges take a neighbouring cell's id, growing
        # one voxel at a time (a full nearest-label transform would need 3 index volumes).
        for _ in range(int(f.max()) + 1):
            lost = mask & (ids == 0)
            if not lost.any() or not ids.any():
                break
            grown = ndi.grey_dilation(ids, size=(3, 3, 3))
            ids = np.where(lost, grown, ids)
    ids, _, _ = relabel_sequential(ids)
    ids = _cell_ids(ids)
    advance(progress, 1.0, f"{int(ids.max())} cells")
    return ids


def _cell_ids(ids: np.ndarray) -> np.ndarray:
    """Sequential ids as the uint16 cell volume every splitter returns (refused beyond 65535)."""
    check_cell_count(int(ids.max(initial=0)))
    return ids.astype(np.uint16)


def check_cell_count(n: int) -> None:
    """Refuse more cells than a uint16 cell volume holds, in one sentence."""
    if n > np.iinfo(np.uint16).max:
        raise VemcellError(
            f"{n} cells found, more than a uint16 cell volume can hold; crop the volume."
        )


def boundary_watershed(
    boundary_prob: np.ndarray,
    voxel_size_nm: Any,
    *,
    threshold: float = 0.5,
    smooth_nm: float = 0.0,
    seed_h_nm: float = 20.0,
    min_region_um2: float = 0.01,
    per_slice: bool = True,
) -> np.ndarray:
    """Cells of densely packed tissue from a membrane (boundary) probability map.

    The boundary-based variant of :func:`separate_cells` for tissue with no resin between
    cells: interiors are where the (optionally smoothed) probability is below ``threshold``;
    seeds are the h-maxima of the interiors' distance transform (so interiors joined through a
    gap in a membrane still get one seed each) and the watershed floods the probability map,
    so every voxel, membranes included, gets the id of the nearest interior across the lowest
    boundary.

    Parameters
    ----------
    boundary_prob : (Z, Y, X) float
        Membrane probability (or any map that is high on cell boundaries).
    per_slice : bool
        Segment each slice in 2D (thick serial sections, as the ISBI 2012 challenge scores
        them); False runs one 3D watershed with anisotropic distances.
    min_region_um2 : float
        Regions of fewer voxels than this in-plane area holds merge into their neighbour.

    Returns
    -------
    int32 (Z, Y, X)
        Region ids 1..N, unique across the whole stack.
    """
    p = _check_volume(boundary_prob, "The boundary probability").astype(np.float32)
    v = _voxel(voxel_size_nm)
    if not np.isfinite(threshold):
        raise VemcellError(f"The boundary threshold must be a number, not {threshold}.")
    if smooth_nm > 0:
        sigma = smooth_nm / v
        if per_slice:
            sigma[0] = 0.0
        p = ndi.gaussian_filter(p, np.where(sigma < 0.3, 0.0, sigma))
    min_vox = max(1, round(min_region_um2 * 1e6 / float(v[1] * v[2])))
    if not per_slice:
        return _boundary_block(p, v, threshold, seed_h_nm, min_vox)
    out = np.zeros(p.shape, np.int32)
    offset = 0
    for z in range(p.shape[0]):
        ids = _boundary_block(p[z], v[1:], threshold, seed_h_nm, min_vox)
        out[z] = np.where(ids > 0, ids + offset, 0)
        offset = int(out[z].max(initial=offset))
    return out


def link_sections(ids: np.ndarray, min_overlap: float = 0.5) -> np.ndarray:
    """Join per-slice regions into 3D objects where consecutive slices overlap by majority.

    Regions ``a`` (slice z) and ``b`` (slice z + 1) become one object when their overlap is
    more than ``min_overlap`` of each (thick serial sections shift cells between sections, so
    3D flooding would leak across them). From 0.5 up a region joins at most one on each side,
    so two neighbours are never joined through a third; lower values keep more of each neurite
    together at the risk of joining two through a region that one section under-split.

    Returns
    -------
    int32 (Z, Y, X)
        Object ids 1..N (0 stays 0).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from skimage.segmentation import relabel_sequential

    ids = np.asarray(ids)
    if ids.ndim != 3:
        raise VemcellError(f"The region ids must be a 3D (Z, Y, X) array, not {ids.ndim}D.")
    if not 0.0 <= min_overlap < 1.0:
        raise VemcellError(f"min_overlap must be in [0, 1), not {min_overlap}.")
    ids, _, _ = relabel_sequential(ids.astype(np.int64, copy=False))
    n = int(ids.max())
    sizes = np.bincount(ids.ravel(), minlength=n + 1)
    joined = []
    for z in range(ids.shape[0] - 1):
        a, b = ids[z].ravel(), ids[z + 1].ravel()
        both = (a > 0) & (b > 0)
        pairs, counts = np.unique(a[both] * (n + 1) + b[both], return_counts=True)
        ia, ib = np.divmod(pairs, n + 1)
        keep = (counts > min_overlap * sizes[ia]) & (counts > min_overlap * sizes[ib])
        joined.append(np.stack([ia[keep], ib[keep]]))
    edges = np.concatenate(joined, axis=1) if joined else np.zeros((2, 0), np.int64)
    graph = coo_matrix((np.ones(edges.shape[1]), (edges[0], edges[1])), shape=(n + 1, n + 1))
    _, component = connected_components(graph, directed=False)
    component = component + 1
    component[0] = 0  # the background joins nothing
    out, _, _ = relabel_sequential(component[ids])
    return out.astype(np.int32)


def membrane_cells(
    labels: np.ndarray,
    voxel_size_nm: Any,
    boundary_class: int,
    *,
    seed_h_nm: float = 50.0,
    min_region_um2: float = 0.01,
    min_overlap: float = 0.3,
    progress: ProgressLike = None,
) -> np.ndarray:
    """Cells of dense tissue (neurites) from a segmentation whose ``boundary_class`` is membrane.

    Thick serial sections (Z over twice the in-plane pixel) are split slice by slice with
    :func:`boundary_watershed` and the slices joined by :func:`link_sections`; finer Z gets one
    3D watershed. Every voxel, membranes included, gets the id of the cell it borders; the ids
    come back as uint16, like :func:`separate_cells`'s.
    """
    labels = _check_volume(labels, "The labels")
    v = _voxel(voxel_size_nm)
    if not 0 <= int(boundary_class) <= 255:
        raise VemcellError(f"The boundary class must be a class index, not {boundary_class}.")
    membrane = (labels == int(boundary_class)).astype(np.float32)
    thick = v[0] > 2.0 * max(v[1], v[2])
    advance(progress, 0.1, "watershed on the membranes")
    ids = boundary_watershed(
        membrane,
        v,
        seed_h_nm=seed_h_nm,
        min_region_um2=min_region_um2,
        smooth_nm=0.0 if thick else float(v.max()),
        per_slice=thick,
    )
    if thick:
        advance(progress, 0.8, "joining the sections")
        ids = link_sections(ids, min_overlap)
    ids = _cell_ids(ids)
    advance(progress, 1.0, f"{int(ids.max())} cells")
    return ids


def _boundary_block(
    p: np.ndarray, v: np.ndarray, threshold: float, seed_h_nm: float, min_vox: int
) -> np.ndarray:
    from skimage.segmentation import watershed

    interior = p < threshold
    dist = ndi.distance_transform_edt(interior, sampling=v).astype(np.float32)
    markers, n = ndi.label(seed_maxima(dist, seed_h_nm, 0.0))
    if n == 0:
        return np.ones(p.shape, np.int32)
    ids = watershed(p, markers)
    return merge_small_regions(ids.astype(np.int32), min_vox)


# --------------------------------------------------------------------------------------------
# Crops


def cell_boxes(
    ids: np.ndarray, margin_voxels: int | tuple[int, int, int] = 0
) -> dict[int, tuple[slice, slice, slice]]:
    """Bounding box of each cell, grown by a margin and clipped to the volume.

    These are the single-cell SBF crops the paper segments one by one. ``margin_voxels`` is
    one number or one per axis (z, y, x).
    """
    ids = _check_volume(ids, "The cell ids")
    if ids.dtype.kind not in "ui":
        raise VemcellError(f"Cell ids must be integers, not {ids.dtype}.")
    m = (margin_voxels,) * 3 if np.isscalar(margin_voxels) else tuple(margin_voxels)
    if len(m) != 3 or any(int(x) < 0 for x in m):
        raise VemcellError("The crop margin must be one or three non-negative voxel counts.")
    out: dict[int, tuple[slice, slice, slice]] = {}
    for i, box in enumerate(ndi.find_objects(ids.astype(np.int64, copy=False)), start=1):
        if box is None:
            continue
        out[i] = tuple(  # type: ignore[assignment]
            slice(max(0, s.start - int(k)), min(n, s.stop + int(k)))
            for s, k, n in zip(box, m, ids.shape, strict=True)
        )
    return out


def crop_margin_voxels(voxel_size_nm: Any, margin_um: float = 0.2) -> tuple[int, int, int]:
    """A physical crop margin in voxels per axis (at least one voxel)."""
    v = _voxel(voxel_size_nm)
    return tuple(max(1, int(np.ceil(margin_um * 1000.0 / x))) for x in v)  # type: ignore[return-value]


def summarise(ids: np.ndarray, voxel_size_nm: Any) -> list[dict[str, float]]:
    """Per-cell voxel count, volume (µm³) and centroid (µm, X Y Z) for reports."""
    v = _voxel(voxel_size_nm)
    n = int(ids.max()) if ids.size else 0
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    counts = ndi.sum_labels(np.ones(ids.shape, np.int32), ids, index)
    cents = ndi.center_of_mass(ids > 0, ids, index)
    rows = []
    for i, c, ctr in zip(index, counts, cents, strict=True):
        if c == 0:
            continue
        z, y, x = (float(a) * float(b) / 1000.0 for a, b in zip(ctr, v, strict=True))
        rows.append(
            {
                "cell": int(i),
                "voxels": int(c),
                "volume_um3": float(c) * float(np.prod(v)) / 1e9,
                "centroid_um_xyz": [round(x, 4), round(y, 4), round(z, 4)],
            }
        )
    return rows
