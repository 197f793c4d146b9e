"""``vemcell reconstruct SPARSE --out FULL.tif --factor K``: restore the sections never imaged.

The input is a stack of sections imaged every K-th; the output has ``(n - 1)·K + 1`` sections
(input section ``i`` is output section ``i·K``, bit for bit), the Z step divided by K and the
input's dtype. Methods: ``flow`` (motion-compensated, default), ``linear`` (distance-weighted
average of the two neighbours) and ``nearest`` (the nearest kept section, a baseline).
"""

from __future__ import annotations

import argparse
import sys
import time

from vemcell.cli.arguments import add_voxel_argument
from vemcell.progress import Progress

HELP = "restore the sections between those imaged every K-th (Z step / K), as a TIFF stack"


def add_method_arguments(p: argparse.ArgumentParser) -> None:
    """``--method`` and ``--learned-model``."""
    from vemcell.sparse import AUTO, IMAGE_METHODS

    p.add_argument(
        "--method",
        choices=[AUTO, *IMAGE_METHODS],
        default=AUTO,
        help="auto: the method measured best for this kind of stack (default); flow: optical "
        "flow both ways, warped and blended; linear: "
        "distance-weighted average of the two neighbours; nearest: copy the nearest kept "
        "section; learned: a network that corrects flow (shipped model zinterp, or "
        "--learned-model)",
    )
    p.add_argument(
        "--learned-model",
        metavar="M",
        help="restoration model for --method learned: a shipped name or an .onnx with its card "
        "(default zinterp; adapt it to a stack with python -m vemcell_train.zinterp adapt)",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume", help="the sparse stack: TIFF, folder of slices, MRC or Zarr")
    p.add_argument("--out", required=True, help="TIFF stack to write")
    # a string, so that a bad factor is reported in one sentence like every other error
    p.add_argument(
        "--factor",
        required=True,
        metavar="K",
        help="the sections were imaged every K-th (K ≥ 2): K - 1 are restored between each two",
    )
    add_method_arguments(p)
    add_voxel_argument(p)


def run(args: argparse.Namespace) -> int:
    from vemcell import sparse
    from vemcell.io.volumes import read_volume, write_tiff

    k = sparse.check_factor(args.factor)
    prog = Progress(args.progress, [("read", 5), ("reconstruct", 85), ("write", 10)])
    with prog.stage("read", "reading the sparse stack"):
        vol = read_volume(args.volume, voxel_size_nm=args.voxel_size)
    sparse.check_sections(vol.shape[0])
    sparse.check_sparse_spacing(vol.voxel_size_nm)
    sparse.check_memory(vol.shape, k, vol.dtype.itemsize)
    for note in vol.notes:
        print(f"note: {note}", file=sys.stderr)
    voxel = sparse.sparse_voxel_size(vol.voxel_size_nm, k)
    if voxel[0] < min(voxel[1:]) * 0.999:
        print(
            f"note: at factor {k} the restored sections are {voxel[0]:g} nm apart, finer than "
            f"the {min(voxel[1:]):g} nm pixels.",
            file=sys.stderr,
        )
    from vemcell.sparse.learned import model_used, resolve_method

    method = resolve_method(args.method, vol.voxel_size_nm, k)
    t0 = time.perf_counter()
    with prog.stage("reconstruct", f"restoring sections ({method}, factor {k})"):
        full = sparse.reconstruct(
            vol.array(),
            k,
            method,
            progress=prog,
            model=args.learned_model,
            voxel_size_nm=vol.voxel_size_nm,
        )
    seconds = time.perf_counter() - t0
    info = {
        "vemcell": "reconstruct/1",
        "source": vol.path,
        "factor": k,
        "method": method,
        "learned_model": (
            model_used(args.learned_model, vol.voxel_size_nm, k) if method == "learned" else None
        ),
        "kept_sections": f"every {k}-th, from section 0",
        "source_voxel_size_nm_zyx": list(vol.voxel_size_nm),
        "seconds": round(seconds, 3),
    }
    with prog.stage("write", f"writing {full.shape[0]} sections"):
        write_tiff(args.out, full, voxel, metadata=info)
    prog.done(f"wrote {args.out}")
    if args.progress != "json":
        print(
            f"wrote {args.out}: {vol.shape[0]} -> {full.shape[0]} sections, Z step "
            f"{vol.voxel_size_nm[0]:g} -> {voxel[0]:g} nm ({method}, {seconds:.1f} s)"
        )
    return 0
