"""The proposal's "cellular video": a movie through a stack, section by section.

Frames are spaced evenly through the stack (about 100 by default); a frame that falls between
two sections is interpolated between them (the proposal's average frame, or motion-compensated
with ``method="flow"``). With ``sparse=K`` the stack is first restored to every section
(:func:`vemcell.sparse.reconstruct`) and its labels, if they are those of the kept sections,
interpolated by shape. Organelle colours can be laid over the EM. MP4 (MPEG-4 part 2) through
OpenCV's video writer; the file appears only when complete.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vemcell.errors import VemcellError
from vemcell.progress import advance
from vemcell.sparse.core import check_factor, check_memory, check_sections
from vemcell.sparse.flow import robust_range
from vemcell.sparse.image import interpolate_pair, reconstruct
from vemcell.sparse.shape import shape_interpolate


def _to_u8(section: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scale = 255.0 / max(hi - lo, 1e-12)
    return np.clip((section.astype(np.float32) - lo) * scale, 0, 255).astype(np.uint8)


def colour_table(colors: Sequence[Sequence[float]], strength: float = 0.5) -> np.ndarray:
    """(C, 4) float table of RGB (0..255) and the opacity each class is laid over the EM with."""
    table = np.zeros((len(colors), 4), np.float32)
    for i, c in enumerate(colors):
        rgba = list(c) + [1.0] * (4 - len(c))
        table[i, :3] = np.asarray(rgba[:3], np.float32) * 255.0
        table[i, 3] = float(rgba[3]) * strength
    return table


def overlay(grey: np.ndarray, labels: np.ndarray | None, table: np.ndarray | None) -> np.ndarray:
    """An RGB frame: the grey section, with each class's colour blended in at its opacity."""
    rgb = np.repeat(grey[..., None].astype(np.float32), 3, axis=-1)
    if labels is not None and table is not None:
        idx = np.clip(labels.astype(np.int64), 0, len(table) - 1)
        a = table[idx, 3][..., None]
        rgb = rgb * (1.0 - a) + table[idx, :3] * a
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _temp_beside(final: Path) -> Path:
    # OpenCV picks the container from the extension, so the temporary name keeps ".mp4"
    return final.with_name(f".{final.stem}.{os.getpid()}.partial{final.suffix}")


def make_video(
    image: np.ndarray,
    out: str | os.PathLike,
    *,
    frames: int = 100,
    labels: np.ndarray | None = None,
    colors: Sequence[Sequence[float]] | None = None,
    sparse: int | None = None,
    method: str | None = None,
    fps: float = 10.0,
    max_size: int = 1024,
    z_step_nm: float | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Write an MP4 through ``image`` (Z, Y, X); returns facts about it (frames, size, ...).

    ``labels`` (same sections as ``image``, or as the restored stack with ``sparse``) and
    ``colors`` (RGBA per class, 0..1) lay the organelles over the EM. ``method`` interpolates
    frames between sections: ``linear`` (default), ``flow`` (default with ``sparse``) or
    ``nearest``.
    """
    import cv2

    image = np.asarray(image)
    if image.ndim != 3:
        raise VemcellError(f"A video needs a 3D (Z, Y, X) stack, not shape {image.shape}.")
    frames = int(frames)
    if frames < 2:
        raise VemcellError(f"A video needs at least 2 frames, not {frames}.")
    if not (fps > 0):
        raise VemcellError(f"The frame rate must be positive, not {fps}.")
    if labels is not None and colors is None:
        raise VemcellError("Colouring the organelles needs their colours (a model or label info).")
    method = method or ("flow" if sparse else "linear")
    lo, hi = robust_range(image)
    step_nm = z_step_nm
    if sparse is not None:
        k = check_factor(sparse)
        check_sections(image.shape[0])
        extra = 1.0 if labels is not None else 0.0
        check_memory(image.shape, k, image.dtype.itemsize, extra_bytes_per_voxel=extra)
        if labels is not None and labels.shape[0] == image.shape[0]:
            labels = shape_interpolate(labels, k, len(colors))  # type: ignore[arg-type]
        image = reconstruct(image, k, method, progress=lambda f, m: advance(progress, 0.3 * f, m))
        step_nm = z_step_nm / k if z_step_nm else None
        base = 0.3
    else:
        base = 0.0
    n = image.shape[0]
    if labels is not None and labels.shape != image.shape:
        raise VemcellError(
            f"The labels ({' × '.join(map(str, labels.shape))}) do not match the stack "
            f"({' × '.join(map(str, image.shape))}); give the labels of these sections."
        )
    table = colour_table(colors) if labels is not None else None
    h, w = image.shape[1:]
    # small stacks are enlarged (to 512 pixels on the longer side) so the movie is watchable
    scale = min(float(max_size) / max(h, w), max(1.0, 512.0 / max(h, w)))
    ow, oh = max(2, round(w * scale) // 2 * 2), max(2, round(h * scale) // 2 * 2)
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(final)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (ow, oh))
    if not writer.isOpened():
        tmp.unlink(missing_ok=True)
        raise VemcellError(f"Could not write a video to '{final}' (is it an .mp4 path?).")
    positions = [float(p) for p in np.linspace(0.0, n - 1.0, frames)]
    try:
        for f, z in enumerate(positions):
            z0 = min(int(np.floor(z)), n - 2) if n > 1 else 0
            t = float(z - z0)
            if n == 1 or t < 1e-6:
                sec = image[z0]
            elif t > 1 - 1e-6:
                sec = image[z0 + 1]
            else:
                sec = interpolate_pair(image[z0], image[z0 + 1], [t], method)[0]
            lab = labels[round(z)] if labels is not None else None
            rgb = overlay(_to_u8(sec, lo, hi), lab, table)
            if (ow, oh) != (w, h):
                rgb = cv2.resize(
                    rgb, (ow, oh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
                )
            text = f"section {z:.1f} / {n - 1}"
            if step_nm:
                text += f"   z = {z * step_nm / 1000.0:.3f} um"
            size = max(0.45, ow / 1000.0)
            cv2.putText(rgb, text, (8, oh - 10), cv2.FONT_HERSHEY_SIMPLEX, size, (255, 255, 0), 1)
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            advance(progress, base + (1 - base) * (f + 1) / frames, f"frame {f + 1}/{frames}")
        writer.release()
        os.replace(tmp, final)
    finally:
        writer.release()
        tmp.unlink(missing_ok=True)
    return {
        "path": str(final),
        "frames": frames,
        "fps": float(fps),
        "size_xy": [ow, oh],
        "sections": n,
        "method": method,
        "sparse": sparse,
        "overlay": labels is not None,
    }
