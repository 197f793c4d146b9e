"""``vemcell measure LABELS --out measurements.csv``: volume, area, sphericity per organelle."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vemcell.cli.mesh import add_label_arguments, load_inputs
from vemcell.errors import VemcellError
from vemcell.progress import Progress

HELP = "measure voxels, volume, surface area, sphericity and pieces of every organelle (CSV)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_label_arguments(p)
    p.add_argument(
        "--out",
        required=True,
        help="CSV to write; a JSON summary is written beside it (same name, .json)",
    )


def run(args: argparse.Namespace) -> int:
    from vemcell.meshes import measure
    from vemcell.meshes.scene import write_file

    if Path(args.out).suffix.lower() == ".json":
        raise VemcellError("--out names the CSV to write; the JSON summary goes beside it.")
    prog = Progress(args.progress, [("read", 5), ("measure", 95)])
    with prog.stage("read", "reading labels"):
        vol, instances, classes, source = load_inputs(args)
    with prog.stage("measure", "meshing and measuring"):
        rows = measure.measure(vol.data, vol.voxel_size_nm, classes, instances=instances)
    out = Path(args.out)
    measure.write_csv(rows, out)
    summary = measure.summary(rows)
    summary["voxel_size_nm"] = list(vol.voxel_size_nm)
    summary["classes_from"] = source
    json_path = out.with_suffix(".json")
    write_file(json_path, (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
    prog.done(f"wrote {out}")
    if args.progress != "json":
        print(
            f"{'cell':>5}  {'class':<20} {'volume µm³':>12} {'area µm²':>12} {'spher.':>7} pieces"
        )
        for r in rows:
            area = r["surface_area_um2"]
            sph = r["sphericity"]
            print(
                f"{r['cell']!s:>5}  {r['class_name'][:20]:<20} {r['volume_um3']:>12.4g} "
                f"{(area if area is not None else float('nan')):>12.4g} "
                f"{(sph if sph is not None else float('nan')):>7.3f} {r['components']:>6}"
            )
        print(f"wrote {out} and {json_path} (classes: {source})")
    return 0
