"""Write docs/images/synth_vs_real.png: the embedded synthetic sample next to real EM slices.

Left to right: a slice of the sample (``vemcell.synth.sample_dir()``), the same slice with its
ground-truth labels in the paper's Figure-1 colours, an orthogonal (XZ) slice of the sample, and
real serial-section EM slices from ``../shared/data`` (ISBI 2012 and the Drosophila VNC stack of
Gerhard et al. 2013) when that folder is present.

Run: ``.venv/bin/python docs/make_synth_figure.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB image with every organelle class tinted in its Figure-1 colour."""
    from vemcell.synth.generator import CLASS_COLORS

    colours = np.array(CLASS_COLORS, float)[:, :3]
    rgb = np.repeat(image[..., None].astype(float) / 255.0, 3, axis=-1)
    a = np.where(labels >= 2, alpha, 0.0)[..., None]
    rgb = rgb * (1 - a) + colours[labels] * a
    # cytoplasm: a faint white veil, as in the paper's figures
    veil = (labels == 1)[..., None] * 0.12
    return np.clip(rgb * (1 - veil) + veil, 0, 1)


def pixel_noise(img: np.ndarray) -> float:
    """Standard deviation of horizontal neighbour differences / √2 (noise plus finest texture)."""
    d = np.diff(img.astype(float), axis=1)
    return float(d.std() / np.sqrt(2))


def detail(img: np.ndarray) -> float:
    """Standard deviation after removing a σ = 2 px Gaussian blur (membranes, texture, noise)."""
    from scipy import ndimage as ndi

    f = img.astype(float)
    return float((f - ndi.gaussian_filter(f, 2)).std())


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tifffile

    from vemcell.io.volumes import read_volume
    from vemcell.synth.generator import sample_dir

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sample", type=Path, default=sample_dir(), help="synthetic volume folder")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "synth_vs_real.png")
    p.add_argument("--z", type=int, help="slice index (default: the sample's, else the middle)")
    args = p.parse_args(argv)

    vol = read_volume(args.sample / "image.tif")
    image = vol.array()
    labels = read_volume(args.sample / "labels.tif", kind="labels").array()
    z = args.z
    meta = args.sample / "sample.json"
    if z is None and meta.exists():
        z = json.loads(meta.read_text()).get("display_slice")
    if z is None:
        z = image.shape[0] // 2
    vz, _, vx = vol.voxel_size_nm
    panels = [
        (image[z], f"synthetic, slice {z} ({vx:g} nm/px)", "gray"),
        (overlay(image[z], labels[z]), "ground truth", None),
        (image[:, image.shape[1] // 2, :], f"synthetic XZ ({vz:g} nm steps)", "gray"),
    ]
    real = [
        ("isbi2012_sstem", "real ssTEM, ISBI 2012 (4 nm/px)", 12, (0, 0), 320),
        ("vnc_sstem", "real ssTEM, Drosophila VNC (4.6 nm/px)", 7, (300, 0), 320),
    ]
    for folder, title, zi, (y0, x0), size in real:
        path = SHARED / folder / "image.tif"
        if path.exists():
            with tifffile.TiffFile(path) as tif:
                sl = tif.pages[zi].asarray()
            panels.append((sl[y0 : y0 + size, x0 : x0 + size], title, "gray"))
    print(f"{'slice':44s} {'p1':>4s} {'p50':>4s} {'p99':>4s} {'noise':>6s} {'detail':>6s}")
    for img, title, cmap in panels:
        if cmap:
            print(
                f"{title:44s} "
                + " ".join(f"{v:4.0f}" for v in np.percentile(img, [1, 50, 99]))
                + f" {pixel_noise(img):6.1f} {detail(img):6.1f}"
            )
    fig, axes = plt.subplots(1, len(panels), figsize=(3.1 * len(panels), 3.3), dpi=100)
    for ax, (img, title, cmap) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(img, cmap=cmap, vmin=0, vmax=255 if cmap else None, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
