"""``vemcell mesh LABELS --out DIR``: closed meshes of every organelle, a glTF scene and numbers."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vemcell.cli.arguments import add_voxel_argument
from vemcell.errors import VemcellError
from vemcell.options import MESH_FORMATS
from vemcell.progress import Progress

HELP = "mesh a label TIFF into scene.glb, per-organelle PLY/OBJ/STL, scene.json and measurements"

#: Colours for classes that have no name or colour anywhere (Okabe–Ito, colour-blind safe).
DEFAULT_PALETTE = [
    (0.902, 0.624, 0.0, 1.0),
    (0.337, 0.706, 0.914, 1.0),
    (0.0, 0.620, 0.451, 1.0),
    (0.941, 0.894, 0.259, 1.0),
    (0.0, 0.447, 0.698, 1.0),
    (0.835, 0.369, 0.0, 1.0),
    (0.800, 0.475, 0.655, 1.0),
    (0.6, 0.6, 0.6, 1.0),
]


def add_label_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by ``mesh`` and ``measure``."""
    p.add_argument("labels", help="label TIFF (uint8/uint16 class per voxel, 0 = background)")
    p.add_argument(
        "--instances",
        metavar="CELLS",
        help="cell id TIFF of the same shape (0 = no cell): one object per cell and class",
    )
    p.add_argument(
        "--model",
        help="model card naming the classes when the label TIFF does not (name or path)",
    )
    add_voxel_argument(p)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_label_arguments(p)
    p.add_argument("--out", required=True, help="folder to write the scene and meshes into")
    from vemcell.meshes.mesh import DEFAULT_DECIMATE, DEFAULT_SMOOTH

    p.add_argument(
        "--smooth",
        type=int,
        default=None,
        metavar="N",
        help=f"Taubin smoothing iterations (0 = voxel staircase; default {DEFAULT_SMOOTH} "
        "× the voxel anisotropy, at most 4×)",
    )
    p.add_argument(
        "--decimate",
        type=float,
        default=DEFAULT_DECIMATE,
        metavar="R",
        help="fraction of faces to remove (0 keeps all), or a face count per mesh when ≥ 1 "
        f"(default {DEFAULT_DECIMATE})",
    )
    p.add_argument(
        "--format",
        choices=MESH_FORMATS,
        default="ply",
        dest="mesh_format",
        help="format of the per-organelle files (default ply)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes for marching cubes (default: every CPU on volumes of 48 M voxels or more)",
    )


def _classes_from_text(text: str) -> dict[int, str] | None:
    """Parse an ImageJ Info string like ``0 none,1 mitochondrion,2 lysosome``."""
    parts = [s.strip() for s in text.split(",") if s.strip()]
    out: dict[int, str] = {}
    for part in parts:
        m = re.fullmatch(r"(\d+)\s*[:=]?\s+(.+)", part)
        if not m:
            return None
        out[int(m.group(1))] = m.group(2).strip()
    return out or None


def _raw_info(path: str) -> str | None:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            info = (tif.imagej_metadata or {}).get("Info")
    except Exception:
        return None
    return info if isinstance(info, str) else None


def _from_list(entries: list[Any], background: Any) -> tuple[list[tuple], int | None]:
    from vemcell.meshes.mesh import norm_color

    bg = None if background is None else int(background)
    classes = []
    for i, c in enumerate(entries):
        if isinstance(c, str):
            c = {"name": c}
        name = str(c.get("name") or f"class_{i}")
        color = c.get("color") or DEFAULT_PALETTE[i % len(DEFAULT_PALETTE)]
        classes.append((i, name, norm_color(color)))
    return classes, bg


def resolve_classes(
    labels_path: str, labels: np.ndarray, model: str | None
) -> tuple[list[tuple[int, str, tuple]], str]:
    """The (index, name, colour) of every foreground class, and where they came from.

    Order of preference: the label TIFF's vemcell metadata, ``--model``'s card, a plain
    ImageJ Info list ("0 none,1 mitochondrion,..."), then ``class_1``, ``class_2``, ...
    """
    from vemcell.cards.card import resolve_model
    from vemcell.io.volumes import read_tiff_info

    max_label = int(labels.max()) if labels.size else 0
    info = read_tiff_info(labels_path)
    source = ""
    classes: list[tuple] = []
    bg: int | None = 0
    if isinstance(info, dict) and isinstance(info.get("classes"), list) and info["classes"]:
        classes, bg = _from_list(info["classes"], info.get("background_class", 0))
        source = f"{Path(labels_path).name} metadata"
    elif model is not None:
        card = resolve_model(model)
        classes = [(i, c.name, c.color) for i, c in enumerate(card.classes)]
        bg, source = card.background_class, f"model {card.name}"
    else:
        text = _raw_info(labels_path) if info is None else None
        names = _classes_from_text(text) if text else None
        if names:
            n = max(max(names) + 1, max_label + 1)
            classes = [
                (i, names.get(i, f"class_{i}"), DEFAULT_PALETTE[(i - 1) % len(DEFAULT_PALETTE)])
                for i in range(n)
            ]
            bg, source = 0, f"{Path(labels_path).name} ImageJ info"
    if classes and max_label >= len(classes):
        raise VemcellError(
            f"{Path(labels_path).name} holds label {max_label} but the {source} names only "
            f"{len(classes)} classes (0–{len(classes) - 1})."
        )
    if not classes:
        classes = [
            (i, f"class_{i}", DEFAULT_PALETTE[(i - 1) % len(DEFAULT_PALETTE)])
            for i in range(max_label + 1)
        ]
        bg, source = 0, "generic names (no class names in the file; use --model to name them)"
    return [c for c in classes if c[0] != bg], source


def load_inputs(args: argparse.Namespace) -> tuple[Any, np.ndarray | None, list[tuple], str]:
    """Read the labels (and cells), check them and resolve the class names."""
    from vemcell.io.volumes import read_volume

    vol = read_volume(args.labels, voxel_size_nm=args.voxel_size, kind="labels")
    labels = vol.array()
    for note in vol.notes:
        print(f"note: {note}", file=sys.stderr)
    if labels.dtype.kind == "i" and labels.min() < 0:
        raise VemcellError(f"{Path(args.labels).name} holds negative labels.")
    instances = None
    if args.instances:
        cells = read_volume(args.instances, voxel_size_nm=vol.voxel_size_nm, kind="labels")
        instances = cells.array()
        if instances.shape != labels.shape:
            raise VemcellError(
                f"{Path(args.instances).name} is {'×'.join(map(str, instances.shape))} voxels "
                f"but {Path(args.labels).name} is {'×'.join(map(str, labels.shape))}; "
                "the cell volume must have the labels' shape."
            )
    classes, source = resolve_classes(args.labels, labels, args.model)
    wanted = np.zeros(int(labels.max()) + 1, dtype=bool)
    wanted[[c[0] for c in classes if c[0] < len(wanted)]] = True
    if not wanted[labels].any():
        raise VemcellError(
            f"{Path(args.labels).name} has no foreground: every voxel is background, so there "
            "is nothing to mesh or measure."
        )
    return vol, instances, classes, source


def run(args: argparse.Namespace) -> int:
    from vemcell.meshes import measure, mesh, scene

    if args.smooth is not None and args.smooth < 0:
        raise VemcellError(f"--smooth must be 0 or more iterations, not {args.smooth}.")
    if args.decimate < 0:
        raise VemcellError(
            f"--decimate must be a fraction in [0, 1) or a face count ≥ 1, not {args.decimate}."
        )
    if args.workers is not None and args.workers < 1:
        raise VemcellError(f"--workers must be 1 or more, not {args.workers}.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise VemcellError(f"--out '{out}' is a file; give a folder to write the scene into.")
    prog = Progress(args.progress, [("read", 5), ("mesh", 80), ("measure", 5), ("write", 10)])
    with prog.stage("read", "reading labels"):
        vol, instances, classes, source = load_inputs(args)
    with prog.stage("mesh", "building meshes"):
        items = mesh.mesh_labels(
            vol.data,
            vol.voxel_size_nm,
            classes,
            instances=instances,
            smooth=args.smooth,
            decimate=args.decimate,
            progress=prog,
            workers=args.workers,
        )
    with prog.stage("measure", "measuring"):
        rows = measure.measure(
            vol.data, vol.voxel_size_nm, classes, instances=instances, meshes=items
        )
    with prog.stage("write", "writing the scene"):
        scene.write_outputs(out, items, rows, mesh_format=args.mesh_format, classes=classes)
        measure.write_csv(rows, out / "measurements.csv")
        summary = measure.summary(rows)
        summary["voxel_size_nm"] = list(vol.voxel_size_nm)
        summary["classes_from"] = source
        scene.write_file(
            out / "measurements.json", (json.dumps(summary, indent=2) + "\n").encode("utf-8")
        )
    prog.done(f"wrote {out}")
    if args.progress != "json":
        faces = sum(len(m.faces) for m in items)
        print(
            f"{len(items)} meshes ({faces:,} faces) from {Path(args.labels).name} "
            f"(classes: {source}) → {out}/scene.glb, scene.json, meshes/, measurements.csv"
        )
    return 0
