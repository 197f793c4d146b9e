"""Operators: thin wrappers over :mod:`..core` (the headless script calls the same functions)."""

from __future__ import annotations

from pathlib import Path

import bpy

from ..core import animation, backend, cutplanes, emslice, pipeline, render
from ..core import scene as vscene
from . import pref, props

# The one backend job that may run at a time (a modal operator owns it).
_JOB: dict[str, object] = {}


def _options(settings: props.VemcellSettings) -> backend.RunOptions:
    """The panel's choices as the backend's run options (the volume goes beside them)."""
    if settings.model == "CUSTOM":
        model = bpy.path.abspath(settings.custom_model)
    else:
        model = "" if settings.model == "DEFAULT" else settings.model
    from_file = settings.voxel_source == "metadata" and all(
        abs(a - b) < 1e-6 for a, b in zip(settings.voxel_size, settings.voxel_file, strict=True)
    )
    return backend.RunOptions(
        model=model or None,
        voxel_size_nm=None if from_file else tuple(settings.voxel_size),
        directions="auto" if settings.directions == "AUTO" else int(settings.directions),
        median=settings.median,
        tta=settings.tta,
        min_size=None if settings.remove_specks else {},  # None: the card's sizes; {}: none
        separate_cells="auto" if settings.separate_cells else "off",
        foreground=settings.foreground,
        smooth=settings.smooth,
        decimate=settings.decimate,
        sparse=settings.sparse if settings.sparse > 1 else None,
        sparse_method=settings.sparse_method,
    )


def _check_input(settings: props.VemcellSettings) -> str | None:
    volume = bpy.path.abspath(settings.volume)
    if not settings.volume:
        return "Choose an input volume first (or press Try the sample)."
    if not Path(volume).exists():
        return f"The input volume '{volume}' does not exist."
    if settings.model == "CUSTOM" and not Path(bpy.path.abspath(settings.custom_model)).is_file():
        return "Choose the custom .onnx model file."
    return None


def _import(context: bpy.types.Context, run_dir: Path) -> bpy.types.Collection:
    settings = context.scene.vemcell
    root = pipeline.load_result(
        context.scene,
        run_dir,
        props.chosen_colours(context.scene),
        settings.fast_cuts,
        settings.max_cells,
    )
    props.sync_classes(context.scene)
    return root


def _redraw(context: bpy.types.Context) -> None:
    wm = context.window_manager
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


class VEMCELL_OT_build(bpy.types.Operator):
    """Segment the volume, mesh and measure every cell and organelle, and import the result"""

    bl_idname = "vemcell.build"
    bl_label = "Build cell model"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012

    _timer = None

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not _JOB

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Synchronous run (scripts, background mode: no timers tick there)."""
        settings = context.scene.vemcell
        problem = _check_input(settings)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}

        from vemcell.progress import Progress

        prog = Progress("text", [("pipeline", 1.0)])

        def on_progress(ev: backend.ProgressEvent) -> None:
            prog.update(ev.fraction, f"{ev.stage}: {ev.message}", force=True)

        try:
            with prog.stage("pipeline", "running the pipeline"):
                run_dir = backend.run_sync(
                    bpy.path.abspath(settings.volume),
                    _options(settings),
                    pref.runs_dir(context),
                    pref.python_path(context),
                    on_progress,
                )
            _import(context, run_dir)
        except (backend.BackendError, vscene.SceneError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        settings.status = f"Done: {run_dir}"
        self.report({"INFO"}, f"vemcell: imported {run_dir}")
        return {"FINISHED"}

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if bpy.app.background:
            return self.execute(context)
        settings = context.scene.vemcell
        problem = _check_input(settings)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        try:
            python = backend.backend_python(pref.python_path(context))
            job_dir, run_dir = backend.new_run_dir(pref.runs_dir(context), settings.volume)
            arguments = backend.run_arguments(
                bpy.path.abspath(settings.volume), run_dir, _options(settings)
            )
            job = backend.BackendJob(arguments, python, backend.backend_env(python))
        except (backend.BackendError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _JOB.update(job=job, job_dir=job_dir, run_dir=run_dir, cancel=False)
        settings.running, settings.progress, settings.status = True, 0.0, "Starting"
        self._timer = context.window_manager.event_timer_add(0.2, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _stop(self, context: bpy.types.Context) -> None:
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        settings = context.scene.vemcell
        settings.running = False
        _JOB.clear()
        _redraw(context)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        job: backend.BackendJob = _JOB["job"]  # type: ignore[assignment]
        settings = context.scene.vemcell
        if event.type == "ESC" or _JOB.get("cancel"):
            job.cancel()
            backend.discard(_JOB["job_dir"])  # type: ignore[arg-type]
            settings.status = "Cancelled"
            self._stop(context)
            self.report({"WARNING"}, "vemcell: cancelled; the scene is unchanged.")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        for ev in job.poll():
            settings.progress = ev.fraction
            settings.status = f"{ev.stage}: {ev.message}" if ev.message else ev.stage
        _redraw(context)
        if job.running:
            return {"PASS_THROUGH"}
        run_dir: Path = _JOB["run_dir"]  # type: ignore[assignment]
        try:
            job.finish()
            _import(context, run_dir)
        except (backend.BackendError, vscene.SceneError) as exc:
            backend.discard(_JOB["job_dir"])  # type: ignore[arg-type]
            settings.status = f"Failed: {exc}"
            self._stop(context)
            self.report({"ERROR"}, f"vemcell: {exc}")
            return {"CANCELLED"}
        settings.progress, settings.status = 1.0, f"Done: {run_dir}"
        self._stop(context)
        self.report({"INFO"}, f"vemcell: imported {run_dir}")
        return {"FINISHED"}


class VEMCELL_OT_cancel(bpy.types.Operator):
    """Stop the running pipeline; the scene stays exactly as it was"""

    bl_idname = "vemcell.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(_JOB)

    def execute(self, context: bpy.types.Context) -> set[str]:
        _JOB["cancel"] = True
        return {"FINISHED"}


class VEMCELL_OT_import_run(bpy.types.Operator):
    """Import a finished vemcell run folder (scene.json), replacing the current result"""

    bl_idname = "vemcell.import_run"
    bl_label = "Import run folder"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012

    directory: bpy.props.StringProperty(subtype="DIR_PATH")  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            _import(context, Path(bpy.path.abspath(self.directory)))
        except vscene.SceneError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}


class VEMCELL_OT_open_in_browser(bpy.types.Operator):
    """Open the result as one page in the web browser: rotate, scale and slice it there, or send
    the file to a colleague (it needs nothing installed)"""

    bl_idname = "vemcell.open_in_browser"
    bl_label = "Open in browser"

    open_page: bpy.props.BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        root = vscene.find_root(context.scene)
        return root is not None and bool(root.get("vemcell_run_dir"))

    def execute(self, context: bpy.types.Context) -> set[str]:
        import webbrowser

        run_dir = Path(vscene.find_root(context.scene)["vemcell_run_dir"])
        python = pref.python_path(context)
        try:
            page = backend.viewer_page(run_dir, python)
        except backend.BackendError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if self.open_page:
            webbrowser.open(page.resolve().as_uri())
        self.report({"INFO"}, f"vemcell: {page}")
        return {"FINISHED"}


class VEMCELL_OT_sample(bpy.types.Operator):
    """Use the small EM sample shipped with vemcell as the input volume"""

    bl_idname = "vemcell.sample"
    bl_label = "Try the sample"

    def execute(self, context: bpy.types.Context) -> set[str]:
        path = pipeline.sample_volume()
        if not path:
            self.report({"ERROR"}, "This vemcell backend has no embedded sample.")
            return {"CANCELLED"}
        context.scene.vemcell.volume = path
        return {"FINISHED"}


class VEMCELL_OT_drop_volume(bpy.types.Operator):
    """Use a dropped .tif/.tiff stack as the input volume"""

    bl_idname = "vemcell.drop_volume"
    bl_label = "Use as vemcell input"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})  # type: ignore[valid-type]
    directory: bpy.props.StringProperty(subtype="DIR_PATH", options={"SKIP_SAVE"})  # type: ignore[valid-type]
    files: bpy.props.CollectionProperty(  # type: ignore[valid-type]
        type=bpy.types.OperatorFileListElement, options={"SKIP_SAVE"}
    )

    def execute(self, context: bpy.types.Context) -> set[str]:
        path = self.filepath
        if not path and self.files and self.directory:
            path = str(Path(self.directory) / self.files[0].name)
        if not path.lower().endswith((".tif", ".tiff")):
            self.report({"ERROR"}, "Drop a .tif or .tiff stack.")
            return {"CANCELLED"}
        context.scene.vemcell.volume = path
        self.report({"INFO"}, f"vemcell input: {Path(path).name}")
        return {"FINISHED"}

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if self.filepath or self.files:
            return self.execute(context)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}


class VEMCELL_FH_volume(bpy.types.FileHandler):
    bl_idname = "VEMCELL_FH_volume"
    bl_label = "vemcell volume"
    bl_import_operator = "vemcell.drop_volume"
    bl_file_extensions = ".tif;.tiff"

    @classmethod
    def poll_drop(cls, context: bpy.types.Context) -> bool:
        return context.area is not None and context.area.type == "VIEW_3D"


class VEMCELL_OT_add_cut(bpy.types.Operator):
    """Add a cut plane (clips every organelle with filled cross-sections)"""

    bl_idname = "vemcell.add_cut"
    bl_label = "Add cut plane"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012

    axis: bpy.props.EnumProperty(  # type: ignore[valid-type]
        items=[(a, a, "") for a in cutplanes.AXES], default="Z"
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return len(cutplanes.cut_planes(context.scene)) < cutplanes.MAX_PLANES

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            empty = cutplanes.add_cut_plane(
                context.scene, self.axis, context.scene.vemcell.fast_cuts
            )
        except RuntimeError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if context.view_layer.objects.get(empty.name):
            for o in context.view_layer.objects.selected:
                o.select_set(False)
            empty.select_set(True)
            context.view_layer.objects.active = empty
        return {"FINISHED"}


def _plane(context: bpy.types.Context, name: str) -> bpy.types.Object | None:
    obj = context.scene.objects.get(name)
    return obj if obj is not None and obj.get(cutplanes.CUT_TAG) else None


class VEMCELL_OT_remove_cut(bpy.types.Operator):
    """Remove this cut plane (the organelles become whole again)"""

    bl_idname = "vemcell.remove_cut"
    bl_label = "Remove cut plane"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012

    plane: bpy.props.StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        empty = _plane(context, self.plane)
        if empty is None:
            self.report({"ERROR"}, f"No cut plane named {self.plane!r}.")
            return {"CANCELLED"}
        cutplanes.remove_cut_plane(context.scene, empty)
        return {"FINISHED"}


class VEMCELL_OT_toggle_slice(bpy.types.Operator):
    """Show or hide the original EM slice on this cut plane"""

    bl_idname = "vemcell.toggle_slice"
    bl_label = "EM slice"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012

    plane: bpy.props.StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        empty = _plane(context, self.plane)
        if empty is None:
            self.report({"ERROR"}, f"No cut plane named {self.plane!r}.")
            return {"CANCELLED"}
        if empty.get("vemcell_em"):
            emslice.disable(empty)
            return {"FINISHED"}
        root = vscene.find_root(context.scene)
        source = str(root.get("vemcell_input", "")) if root else ""
        if not source or not Path(source).exists():
            self.report({"ERROR"}, "The input volume of this result is not available.")
            return {"CANCELLED"}
        prefs = pref.preferences(context)
        res = prefs.slice_resolution if prefs else 256
        emslice.enable(
            context.scene, empty, resolution=res, opacity=context.scene.vemcell.slice_opacity
        )
        return {"FINISHED"}


class _Animate:
    """Shared body of the animation operators: :func:`..core.animation.animate` by name."""

    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012
    kind = "turntable"

    frames: bpy.props.IntProperty(name="Frames", default=120, min=1)  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(vscene.result_objects(context.scene))

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            animation.animate(context.scene, self.kind, self.frames)
        except RuntimeError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class VEMCELL_OT_turntable(_Animate, bpy.types.Operator):
    """Key a turntable: the camera circles the cell once"""

    bl_idname = "vemcell.turntable"
    bl_label = "Turntable"
    kind = "turntable"


class VEMCELL_OT_cut_sweep(_Animate, bpy.types.Operator):
    """Key a cut-plane sweep: a plane travels through the cell, exposing cross-sections"""

    bl_idname = "vemcell.cut_sweep"
    bl_label = "Cut sweep"
    kind = "cut-sweep"


class VEMCELL_OT_reveal(_Animate, bpy.types.Operator):
    """Key an organelle reveal: the cytoplasm fades to glass"""

    bl_idname = "vemcell.reveal"
    bl_label = "Reveal"
    kind = "reveal"


class VEMCELL_OT_flythrough(_Animate, bpy.types.Operator):
    """Key an EM-slice fly-through: a plane showing the original EM slice travels down"""

    bl_idname = "vemcell.flythrough"
    bl_label = "Fly-through"
    kind = "flythrough"


class VEMCELL_OT_animate(_Animate, bpy.types.Operator):
    """Key the scene for an animation (turntable, cut sweep, reveal, fly-through)"""

    bl_idname = "vemcell.animate"
    bl_label = "Animate"

    kind: bpy.props.EnumProperty(  # type: ignore[valid-type]
        items=[(a, a, "") for a in animation.ANIMATIONS], default="turntable"
    )


class VEMCELL_OT_render(bpy.types.Operator):
    """Render the animation (MP4 or PNG frames) with the preview or final preset"""

    bl_idname = "vemcell.render"
    bl_label = "Render"

    preset: bpy.props.EnumProperty(  # type: ignore[valid-type]
        items=[(p, p, "") for p in render.PRESETS], default="preview"
    )
    filepath: bpy.props.StringProperty(subtype="FILE_PATH")  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene = context.scene
        out = bpy.path.abspath(self.filepath or scene.vemcell.output)
        if not out.lower().endswith((".mp4", ".png")):
            self.report({"ERROR"}, "The output must end in .mp4 or .png.")
            return {"CANCELLED"}
        if scene.camera is None:
            animation.setup_camera(scene)
        r = scene.render
        render.apply_preset(
            scene, self.preset, (r.resolution_x, r.resolution_y), scene.vemcell.samples
        )
        try:
            files = render.render(scene, out)
        except (RuntimeError, OSError) as exc:
            self.report({"ERROR"}, f"Render failed: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"vemcell: wrote {files[0]}" + (" ..." if len(files) > 1 else ""))
        return {"FINISHED"}


CLASSES = (
    VEMCELL_OT_build,
    VEMCELL_OT_cancel,
    VEMCELL_OT_import_run,
    VEMCELL_OT_open_in_browser,
    VEMCELL_OT_sample,
    VEMCELL_OT_drop_volume,
    VEMCELL_FH_volume,
    VEMCELL_OT_add_cut,
    VEMCELL_OT_remove_cut,
    VEMCELL_OT_toggle_slice,
    VEMCELL_OT_turntable,
    VEMCELL_OT_cut_sweep,
    VEMCELL_OT_reveal,
    VEMCELL_OT_flythrough,
    VEMCELL_OT_animate,
    VEMCELL_OT_render,
)
