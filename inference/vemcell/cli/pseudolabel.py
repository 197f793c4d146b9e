"""``vemcell pseudolabel VOLUME --model M --out labels.tif``: a model's sure labels, for training.

Unlabelled stacks of the same tissue are plentiful; a model's confident predictions on them
(pseudo-labels) add training data, and voxels where it is unsure are written as 255 ("not
labelled"), which ``vemcell train`` leaves out of the loss. The same file is a starting point
for proofreading: correct it, then train on it.
"""

from __future__ import annotations

import argparse

import numpy as np

from vemcell.cli.run_options import add_segmentation_arguments
from vemcell.cli.segment import read_and_segment
from vemcell.errors import VemcellError
from vemcell.progress import Progress

HELP = "label a stack with a model's confident predictions (255 where unsure) to train on"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume", help="TIFF stack, folder of slices, MRC file or Zarr store")
    p.add_argument("--out", required=True, help="label TIFF to write (uint8, 255 = not labelled)")
    p.add_argument(
        "--min-confidence",
        type=float,
        default=0.7,
        metavar="P",
        help="probability of the chosen class below which a voxel is left unlabelled "
        "(default 0.7; 0 labels every voxel)",
    )
    add_segmentation_arguments(p)


def check_min_confidence(p: float) -> float:
    """``p`` if it is a probability, else one error sentence."""
    if not 0.0 <= p <= 1.0:
        raise VemcellError(f"--min-confidence must be between 0 and 1, not {p:g}.")
    return p


def pseudo_labels(labels: np.ndarray, confidence: np.ndarray, min_confidence: float) -> np.ndarray:
    """``labels`` with :data:`~vemcell.metrics.UNLABELLED` where ``confidence`` (uint8, 255 =
    certain) is below ``min_confidence`` × 255."""
    from vemcell.evaluation.metrics import UNLABELLED

    check_min_confidence(min_confidence)
    out = np.array(labels, dtype=np.uint8, copy=True)
    out[confidence < round(min_confidence * 255)] = UNLABELLED
    return out


def run(args: argparse.Namespace) -> int:
    from vemcell.evaluation.metrics import UNLABELLED
    from vemcell.io.volumes import write_tiff
    from vemcell.segmentation import segment

    check_min_confidence(args.min_confidence)
    prog = Progress(args.progress, [("read", 3), ("segment", 95), ("write", 2)])
    vol, card, result = read_and_segment(args, prog, confidence=True)
    labels = pseudo_labels(result.labels, result.confidence, args.min_confidence)
    with prog.stage("write", "writing labels"):
        info = segment.label_info(card)
        info["unlabelled_value"] = UNLABELLED
        info["min_confidence"] = args.min_confidence
        write_tiff(args.out, labels, vol.voxel_size_nm, metadata=info)
    prog.done(f"wrote {args.out}")
    if args.progress != "json":
        counts = np.bincount(labels.ravel(), minlength=256)
        total = labels.size
        print(f"wrote {args.out}")
        for i, name in enumerate(card.class_names):
            print(f"  {name:<20} {100 * counts[i] / total:5.1f} %")
        print(f"  {'not labelled (255)':<20} {100 * counts[UNLABELLED] / total:5.1f} %")
    return 0
