"""``vemcell models``: the shipped models, their classes and validation scores."""

from __future__ import annotations

import argparse
import json

from vemcell.cards.card import DEFAULT_MODEL, list_models, models_dirs

HELP = "list the shipped models with their classes, voxel size and validation IoU"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the model cards as JSON")


def run(args: argparse.Namespace) -> int:
    cards = list_models()
    if args.json:
        print(json.dumps([c.to_dict() | {"path": str(c.path)} for c in cards], indent=2))
        return 0
    if not cards:
        where = ", ".join(str(d) for d in models_dirs()) or "no models folder found"
        print(f"No models installed ({where}).")
        return 0
    for c in cards:
        mark = " (default)" if c.name == DEFAULT_MODEL else ""
        voxel = f"{c.voxel_size_nm:g} nm" if c.voxel_size_nm else "any voxel size"
        print(f"{c.name}{mark}: {c.title}")
        print(f"    classes  {', '.join(c.class_names)}")
        print(f"    voxel    {voxel}, tile {c.tile}, file {c.onnx_path}")
        context = (c.raw.get("input") or {}).get("context_slices")
        if context:
            print(f"    input    each slice with the {context} on either side of it")
        if c.min_size_um3:
            sizes = ", ".join(f"{k} < {v:g} µm³" for k, v in c.min_size_um3.items() if v > 0)
            print(f"    specks   removed: {sizes} (--min-size)")
        iou = (c.raw.get("validation") or {}).get("iou")
        if isinstance(iou, dict):
            scores = ", ".join(f"{k} {v:.3f}" for k, v in iou.items() if isinstance(v, float))
            print(f"    IoU      {scores}")
    return 0
