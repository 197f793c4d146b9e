"""The options of a pipeline run and the animation names: one definition for every door.

The CLI builds :class:`RunOptions` from its arguments (``vemcell.cli.run.options_from_args``),
the Blender add-on and its headless script turn them back into ``vemcell run`` arguments
(:meth:`RunOptions.to_arguments`) for the backend subprocess, and :func:`vemcell.pipeline.run`
takes them. This module imports nothing heavy (no numpy, no bpy), so the add-on reads it inside
Blender.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vemcell.errors import VemcellError

MESH_FORMATS = ("ply", "obj", "stl")
PRECISIONS = ("auto", "fp32", "int8")
#: How a sparse stack (every K-th section imaged) is brought to full resolution: the image
#: route restores the sections then segments (the better by measurement, docs/sparse), the
#: shape route segments the kept sections and interpolates the shapes.
SPARSE_ROUTES = ("image", "shape")
SPARSE_METHODS = ("auto", "nearest", "linear", "flow", "learned")

#: The one-click animations (the add-on's ``core/animation.py`` keys each one).
ANIMATIONS = ("turntable", "cut-sweep", "reveal", "flythrough")
#: A single picture with a cut plane instead of an animation (``vemcell render``).
STILL = "still"
#: What ``vemcell render`` can make: an animation or the still.
RENDER_ANIMATIONS = (*ANIMATIONS, STILL)


@dataclass
class RunOptions:
    """Every knob of a pipeline run (recorded verbatim in report.json)."""

    model: str | None = None
    directions: int | str = "auto"
    median: int = 3
    fuse: str = "mean"
    denoise: str = "none"
    tta: bool = False  # average 8 rotations / mirror images of each slice
    min_size: dict[str, float] | None = None  # class -> µm³ below which pieces go; None: card's
    voxel_size_nm: tuple[float, float, float] | None = None
    smooth: int | None = None  # None: iterations chosen from the voxel anisotropy
    decimate: float = 0.5
    mesh_format: str = "ply"
    separate_cells: str = "auto"
    foreground: str = "auto"
    threads: int | None = None
    precision: str = "auto"  # the model's float or INT8 weights (auto: INT8 on CPUs if shipped)
    viewer: bool = True  # write viewer.html, the model as one page for any browser
    sparse: int | None = None  # sections imaged every K-th: restore the rest first
    sparse_route: str = "image"  # image: restore the sections, then segment; shape: the labels
    sparse_method: str = "auto"  # how the image route restores sections (auto: measured best)

    def validate(self) -> RunOptions:
        """Raise :class:`VemcellError` (one sentence) on a value no run can use; returns self."""
        if self.threads is not None and self.threads < 1:
            raise VemcellError(f"--threads must be 1 or more, not {self.threads}.")
        if self.mesh_format not in MESH_FORMATS:
            raise VemcellError(f"--format must be ply, obj or stl, not {self.mesh_format!r}.")
        if not 0.0 <= self.decimate < 1.0:
            raise VemcellError(f"--decimate must be a fraction in [0, 1), not {self.decimate}.")
        if self.smooth is not None and self.smooth < 0:
            raise VemcellError(f"--smooth must be 0 or more iterations, not {self.smooth}.")
        if self.sparse is not None:
            if isinstance(self.sparse, bool) or not isinstance(self.sparse, int) or self.sparse < 2:
                raise VemcellError(
                    f"--sparse must be a whole number of 2 or more (every K-th section imaged), "
                    f"not {self.sparse}."
                )
        if self.sparse_route not in SPARSE_ROUTES:
            raise VemcellError(f"--sparse-route must be image or shape, not {self.sparse_route!r}.")
        if self.sparse_method not in SPARSE_METHODS:
            raise VemcellError(
                f"--sparse-method must be one of {', '.join(SPARSE_METHODS)}, "
                f"not {self.sparse_method!r}."
            )
        if self.precision not in PRECISIONS:
            raise VemcellError(f"--precision must be auto, fp32 or int8, not {self.precision!r}.")
        return self

    def segmentation_kwargs(self) -> dict[str, Any]:
        """The options :func:`vemcell.segmentation.segment.segment` takes."""
        return {
            "directions": self.directions,
            "median": self.median,
            "fuse": self.fuse,
            "denoise": self.denoise,
            "tta": self.tta,
            "min_size": self.min_size,
            "precision": self.precision,
        }

    def to_arguments(self) -> list[str]:
        """These options as ``vemcell run`` arguments (after ``run VOLUME --out DIR``).

        Parsing them back (``vemcell.cli.run.options_from_args``) gives equal options.
        """
        args: list[str] = []
        if self.model:
            args += ["--model", str(self.model)]
        if self.voxel_size_nm is not None:
            args += ["--voxel-size", *(_number(v) for v in self.voxel_size_nm)]
        args += ["--directions", str(self.directions), "--median", str(int(self.median))]
        args += ["--fuse", self.fuse, "--denoise", self.denoise]
        if self.tta:
            args.append("--tta")
        if self.min_size is not None:  # exactly these sizes: none of the card's besides
            args += ["--min-size", "off"]
            for name, um3 in self.min_size.items():
                args += ["--min-size", f"{name}={_number(um3)}"]
        if self.smooth is not None:
            args += ["--smooth", str(int(self.smooth))]
        args += ["--decimate", _number(self.decimate), "--format", self.mesh_format]
        args += ["--cells", self.separate_cells, "--foreground", self.foreground]
        if self.threads is not None:
            args += ["--threads", str(int(self.threads))]
        if self.precision != "auto":
            args += ["--precision", self.precision]
        if not self.viewer:
            args.append("--no-viewer")
        if self.sparse is not None:
            args += ["--sparse", str(int(self.sparse)), "--sparse-route", self.sparse_route]
            args += ["--sparse-method", self.sparse_method]
        return args


def _number(value: float) -> str:
    """A float as short text that reads back to the same float (30.0 -> '30', 0.1 -> '0.1')."""
    short = f"{float(value):g}"
    return short if float(short) == float(value) else repr(float(value))
