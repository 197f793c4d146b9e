"""Render presets (Workbench preview, denoised Cycles final) and writing PNG/MP4 files.

Rendering switches every cut to the exact Boolean solver and refreshes the EM slices per
frame, then puts the viewport settings back. Files appear only when complete (rendered under a
temporary name, renamed at the end).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import bpy

from . import cutplanes, emslice

PRESETS = ("preview", "final")
ENGINES = {"workbench": "preview", "cycles": "final", "preview": "preview", "final": "final"}


def apply_preset(
    scene: bpy.types.Scene,
    preset: str = "preview",
    resolution: tuple[int, int] = (1280, 720),
    samples: int = 16,
) -> None:
    """Configure ``scene`` for a preview (Workbench) or final (Cycles CPU, denoised) render."""
    preset = ENGINES.get(preset, preset)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; one of {PRESETS}")
    r = scene.render
    r.resolution_x, r.resolution_y = int(resolution[0]), int(resolution[1])
    r.resolution_percentage = 100
    r.film_transparent = False
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    if preset == "preview":
        r.engine = "BLENDER_WORKBENCH"
        shading = scene.display.shading
        shading.light = "STUDIO"
        has_slices = any(e.get("vemcell_em") for e in cutplanes.cut_planes(scene))
        shading.color_type = "TEXTURE" if has_slices else "MATERIAL"
        shading.show_specular_highlight = True
        scene.display.render_aa = "FXAA"  # 8x AA costs ~8x per frame in software OpenGL
    else:
        r.engine = "CYCLES"
        cy = scene.cycles
        cy.device = "CPU"
        cy.samples = int(samples)
        cy.use_adaptive_sampling = True
        cy.use_denoising = True
        cy.denoiser = "OPENIMAGEDENOISE"
        cy.transparent_max_bounces = 16
        cy.max_bounces = 6


def _movie_output(scene: bpy.types.Scene) -> None:
    ims = scene.render.image_settings
    if hasattr(ims, "media_type"):
        ims.media_type = "VIDEO"
    ims.file_format = "FFMPEG"
    ff = scene.render.ffmpeg
    ff.format = "MPEG4"
    ff.codec = "H264"
    ff.constant_rate_factor = "MEDIUM"
    ff.ffmpeg_preset = "GOOD"
    ff.audio_codec = "NONE"


def _png_output(scene: bpy.types.Scene) -> None:
    ims = scene.render.image_settings
    if hasattr(ims, "media_type"):
        ims.media_type = "IMAGE"
    ims.file_format = "PNG"
    ims.color_mode = "RGBA"


def _encode_movie(scene: bpy.types.Scene, frames: list[Path], movie: Path) -> None:
    """Encode PNG frames as an H.264 MP4 with Blender's built-in FFmpeg (a sequencer scene)."""
    enc = bpy.data.scenes.new("vemcell encode")
    try:
        enc.render.resolution_x = scene.render.resolution_x
        enc.render.resolution_y = scene.render.resolution_y
        enc.render.resolution_percentage = 100
        enc.render.fps = scene.render.fps
        enc.render.fps_base = scene.render.fps_base
        enc.view_settings.view_transform = "Standard"
        enc.view_settings.look = "None"
        ed = enc.sequence_editor_create()
        strips = ed.strips if hasattr(ed, "strips") else ed.sequences
        strip = strips.new_image(name="frames", filepath=str(frames[0]), channel=1, frame_start=1)
        for f in frames[1:]:
            strip.elements.append(f.name)
        enc.frame_start, enc.frame_end = 1, len(frames)
        enc.render.use_sequencer = True
        _movie_output(enc)
        enc.render.filepath = str(movie.with_suffix("")) + "_"
        bpy.ops.render.render(animation=True, scene=enc.name)
        produced = sorted(movie.parent.glob(movie.with_suffix("").name + "_*.mp4"))
        if not produced:
            raise RuntimeError("Blender wrote no movie (FFmpeg output failed).")
        os.replace(produced[0], movie)
    finally:
        bpy.data.scenes.remove(enc)


def render(
    scene: bpy.types.Scene,
    out: str | os.PathLike,
    on_frame: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Render ``scene``'s frame range to ``out``: ``.mp4`` or ``.png``.

    A ``.png`` with a one-frame range is one still; with more frames it is a sequence
    ``<stem>_0001.png``... Frames are rendered one at a time (each after the EM slices were
    resampled for it: image textures changed by a handler during an animation render are not
    re-uploaded), then an MP4 is encoded from them. Returns the files written.
    """
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix not in (".mp4", ".png"):
        raise ValueError("the output must end in .mp4 or .png")
    first, last = scene.frame_start, scene.frame_end
    n_frames = last - first + 1
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", dir=out.parent))
    saved = (scene.render.filepath, scene.frame_current)
    try:
        with cutplanes.render_solvers(scene, cutplanes.solver_choice("exact")):
            _png_output(scene)
            frames = []
            for i, frame in enumerate(range(first, last + 1), start=1):
                scene.frame_set(frame)
                emslice.update_all(scene)
                path = tmp / f"frame_{frame:04d}.png"
                scene.render.filepath = str(path)
                bpy.ops.render.render(write_still=True, scene=scene.name)
                if not path.is_file():
                    raise RuntimeError(f"Blender wrote no image for frame {frame}.")
                frames.append(path)
                if on_frame:
                    on_frame(i, n_frames)
        if suffix == ".mp4":
            _encode_movie(scene, frames, tmp / "movie.mp4")
            os.replace(tmp / "movie.mp4", out)
            written = [out]
        elif n_frames == 1:
            os.replace(frames[0], out)
            written = [out]
        else:
            written = []
            for i, f in enumerate(frames, start=first):
                dest = out.with_name(f"{out.stem}_{i:04d}.png")
                os.replace(f, dest)
                written.append(dest)
    finally:
        scene.render.filepath = saved[0]
        scene.frame_set(saved[1])
        shutil.rmtree(tmp, ignore_errors=True)
    return written


def save_blend(path: str | os.PathLike) -> Path:
    """Save the current file (EM-slice images packed so the .blend is self-contained)."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    for img in bpy.data.images:
        if img.name.startswith("vemcell slice") and img.packed_file is None:
            img.pack()
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True, compress=True)
    return path


def export_glb(path: str | os.PathLike) -> Path:
    """Export the visible result (cuts applied) as binary glTF."""
    import addon_utils

    addon_utils.enable("io_scene_gltf2", default_set=False)
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.export_scene.gltf(
        filepath=str(path), export_format="GLB", export_apply=True, use_visible=True
    )
    return path
