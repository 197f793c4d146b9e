"""The Blender add-on in-process with the bpy module: import, colours, cuts, EM slices, renders,
error and cancel paths. Skipped when bpy (Blender as a Python module) is not installed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="bpy (Blender as a Python module) is not installed")

from blender_helpers import make_fake_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.blender


def _load_addon():
    """The add-on package from addon/ (as headless.py loads it), registered once."""
    init = ROOT / "addon" / "__init__.py"
    name = "vemcell_blender"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[str(init.parent)]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def addon():
    mod = _load_addon()
    mod.register()
    yield mod
    mod.unregister()


@pytest.fixture
def core(addon):
    from importlib import import_module

    names = ("animation", "backend", "cutplanes", "emslice", "materials", "pipeline")
    names += ("render", "scene")
    return {n: import_module(f"{addon.__name__}.core.{n}") for n in names}


@pytest.fixture
def clean_scene(addon):
    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
    yield bpy.context.scene
    bpy.ops.wm.read_homefile(app_template="", use_empty=True)


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    return make_fake_run(tmp_path_factory.mktemp("fake"))


def _snapshot():
    return (
        sorted(o.name for o in bpy.data.objects),
        sorted(c.name for c in bpy.data.collections),
        sorted(m.name for m in bpy.data.meshes),
    )


def test_import_collections_names_colours_measurements(core, clean_scene, fake_run):
    scene = clean_scene
    bpy.ops.vemcell.import_run(directory=str(fake_run))
    root = core["scene"].find_root(scene)
    assert root is not None
    assert sorted(c.name for c in root.children) == ["cell_01", "cell_02"]
    cell1 = bpy.data.collections["cell_01"]
    assert sorted(o.name for o in cell1.objects) == [
        "cell_01 / cytoplasm",
        "cell_01 / mitochondrion",
        "cell_01 / nucleus",
        "cell_01 / plastid",
    ]
    mito = bpy.data.objects["cell_01 / mitochondrion"]
    # physical scale: the mesh is a 0.08 µm sphere at (0.55, 0.25, 0.4) µm
    co = np.array([v.co[:] for v in mito.data.vertices])
    assert np.allclose(co.mean(axis=0), (0.55, 0.25, 0.4), atol=0.01)
    assert np.allclose(np.linalg.norm(co - co.mean(axis=0), axis=1), 0.08, atol=0.005)
    # the manifest's (the model card's) colours, one material per class shared by all cells
    colours = {
        o.get("vemcell_class"): tuple(o.active_material.diffuse_color) for o in root.all_objects
    }
    r, g, b, a = colours["mitochondrion"]
    assert r > 0.9 and g > 0.7 and b < 0.2 and a == 1.0
    r, g, b, _ = colours["plastid"]
    assert g > r + 0.3 and g > b + 0.3
    r, g, b, _ = colours["peroxisome"]
    assert r > 0.9 and 0.2 < g < 0.6 and b < 0.1
    r, g, b, a = colours["cytoplasm"]
    assert min(r, g, b) > 0.9 and a < 0.5
    r, g, b, _ = colours["nucleus"]
    assert abs(r - g) < 0.05 and abs(g - b) < 0.05 and 0.2 < r < 0.8
    assert (
        bpy.data.objects["cell_01 / cytoplasm"].active_material
        is bpy.data.objects["cell_02 / cytoplasm"].active_material
    )
    # measurements as custom properties
    manifest = json.loads((fake_run / "scene.json").read_text())
    entry = next(e for e in manifest["objects"] if e["name"] == "cell_01/mitochondrion")
    assert mito["volume_um3"] == pytest.approx(entry["measurements"]["volume_um3"])
    assert mito["surface_area_um2"] == pytest.approx(entry["measurements"]["surface_area_um2"])
    assert mito["vemcell_cell"] == 1 and mito["vemcell_class"] == "mitochondrion"
    assert "volume_um3" in mito["vemcell_measured"].split(",")
    # the panel's class list and its visibility control
    settings = scene.vemcell
    assert {c.name for c in settings.classes} == set(colours)
    item = next(c for c in settings.classes if c.name == "mitochondrion")
    item.visible = False
    assert mito.hide_render and mito.hide_viewport
    item.colour = (0.0, 0.0, 1.0, 1.0)
    assert tuple(mito.active_material.diffuse_color) == pytest.approx((0, 0, 1, 1))


def test_a_class_can_be_coloured_by_cell(core, clean_scene, fake_run):
    scene = clean_scene
    bpy.ops.vemcell.import_run(directory=str(fake_run))
    cyto = [bpy.data.objects[f"cell_0{c} / cytoplasm"] for c in (1, 2)]
    shared = cyto[0].active_material
    item = next(c for c in scene.vemcell.classes if c.name == "cytoplasm")
    item.by_cell = True
    mats = [o.active_material for o in cyto]
    assert mats[0] is not mats[1] and shared not in mats
    hues = [tuple(m.diffuse_color[:3]) for m in mats]
    assert max(abs(a - b) for a, b in zip(*hues, strict=True)) > 0.2  # clearly different
    assert all(m.diffuse_color[3] == pytest.approx(shared.diffuse_color[3]) for m in mats)
    mito = bpy.data.objects["cell_01 / mitochondrion"]
    assert mito.active_material.name == "vemcell mitochondrion"  # other classes untouched
    # the class's opacity and the reveal animation reach every cell's copy
    item.colour = (*item.colour[:3], 0.5)
    assert all(m.diffuse_color[3] == pytest.approx(0.5) for m in mats)
    assert tuple(mats[0].diffuse_color[:3]) == pytest.approx(hues[0])
    core["animation"].reveal(scene, frames=10)
    assert all(m.animation_data and m.animation_data.action for m in mats)
    # a re-run keeps the choice; turning it off gives the class material back
    bpy.ops.vemcell.import_run(directory=str(fake_run))
    item = next(c for c in scene.vemcell.classes if c.name == "cytoplasm")
    assert item.by_cell
    cyto = [bpy.data.objects[f"cell_0{c} / cytoplasm"] for c in (1, 2)]
    assert cyto[0].active_material is not cyto[1].active_material
    item.by_cell = False
    assert all(o.active_material is shared for o in cyto)
    assert not [m for m in bpy.data.materials if m.get("vemcell_cell") is not None]


def test_reimport_replaces_previous_result(core, clean_scene, fake_run):
    bpy.ops.vemcell.import_run(directory=str(fake_run))
    first = _snapshot()
    bpy.ops.vemcell.import_run(directory=str(fake_run))
    assert _snapshot() == first
    assert len([c for c in bpy.data.collections if c.get("vemcell_root")]) == 1


def test_cut_plane_leaves_closed_capped_meshes(core, clean_scene, fake_run):
    scene = clean_scene
    bpy.ops.vemcell.import_run(directory=str(fake_run))
    bpy.ops.vemcell.add_cut(axis="X")
    empty = core["cutplanes"].cut_planes(scene)[0]
    empty.location.x = 0.5  # through cell 1: cytoplasm, nucleus, mitochondrion
    cyto = bpy.data.objects["cell_01 / cytoplasm"]
    for solver in ("fast", "exact"):
        with core["cutplanes"].render_solvers(scene, core["cutplanes"].solver_choice(solver)):
            dg = bpy.context.evaluated_depsgraph_get()
            dg.update()
            for name in ("cell_01 / cytoplasm", "cell_01 / nucleus", "cell_01 / mitochondrion"):
                obj = bpy.data.objects[name]
                assert core["cutplanes"].evaluated_mesh_is_closed(obj, dg), (solver, name)
            ev = cyto.evaluated_get(dg)
            xs = np.array([v.co.x for v in ev.data.vertices])
            assert xs.max() == pytest.approx(0.5, abs=1e-3)  # clipped at the plane
            # the cap: faces lying in the plane, with the organelle's material
            caps = [p for p in ev.data.polygons if abs(p.center.x - 0.5) < 1e-4]
            assert caps and all(
                ev.data.materials[p.material_index].name == "vemcell cytoplasm" for p in caps
            )
            # cell 2 lies wholly on the removed side
            ev2 = bpy.data.objects["cell_02 / peroxisome"].evaluated_get(dg)
            assert len(ev2.data.polygons) == 0
    bpy.ops.vemcell.remove_cut(plane=empty.name)
    assert not core["cutplanes"].cut_planes(scene)
    assert not any(m.type == "BOOLEAN" for m in cyto.modifiers)


def test_em_slice_follows_the_plane(core, clean_scene, fake_run):
    scene = clean_scene
    bpy.ops.vemcell.import_run(directory=str(fake_run))
    bpy.ops.vemcell.add_cut(axis="Z")
    empty = core["cutplanes"].cut_planes(scene)[0]
    bpy.ops.vemcell.toggle_slice(plane=empty.name)
    plane = core["emslice"].slice_plane(empty)
    image = bpy.data.images[plane["vemcell_slice"]]
    res = image.size[0]

    def pixels():
        px = np.empty(res * res * 4, dtype=np.float32)
        image.pixels.foreach_get(px)
        return px.reshape(res, res, 4)

    empty.location.z = 0.1
    core["emslice"].on_depsgraph_update(scene, bpy.context.evaluated_depsgraph_get())
    low = pixels()
    empty.location.z = 0.6
    core["emslice"].on_depsgraph_update(scene, bpy.context.evaluated_depsgraph_get())
    high = pixels()
    inside = low[..., 3] > 0
    assert inside.sum() > 0.05 * res * res  # the volume's footprint is opaque
    assert not np.allclose(low[..., 0], high[..., 0])  # the volume's intensity grows with z
    # the bright disc of the synthetic volume (centre x=y=0.4 µm) shows at the right place
    mw = np.array(empty.matrix_world)
    co = np.array([mw @ np.array([*v.co, 1.0]) for v in plane.data.vertices])[:, :3]
    lo, hi = co.min(axis=0), co.max(axis=0)
    col = int((0.4 - lo[0]) / (hi[0] - lo[0]) * res)
    row = int((0.4 - lo[1]) / (hi[1] - lo[1]) * res)
    assert high[row, col, 0] > 0.95
    scene.vemcell.slice_opacity = 0.5
    assert pixels()[..., 3].max() == pytest.approx(0.5, abs=0.01)  # 8-bit image
    bpy.ops.vemcell.toggle_slice(plane=empty.name)
    assert core["emslice"].slice_plane(empty) is None


def test_workbench_frame_shows_organelle_colours(core, clean_scene, fake_run, tmp_path):
    from bpy_extras.object_utils import world_to_camera_view

    scene = clean_scene
    bpy.ops.vemcell.import_run(directory=str(fake_run))
    for item in scene.vemcell.classes:  # nothing in front of the organelles checked
        item.visible = item.name not in ("cytoplasm", "nucleus")
    core["animation"].setup_camera(scene)
    scene.frame_start = scene.frame_end = 1
    core["render"].apply_preset(scene, "preview", (240, 160))
    out = tmp_path / "frame.png"
    assert core["render"].render(scene, out) == [out]
    img = bpy.data.images.load(str(out))
    w, h = img.size
    px = np.empty(w * h * 4, dtype=np.float32)
    img.pixels.foreach_get(px)
    px = px.reshape(h, w, 4)
    checks = {
        "cell_01 / mitochondrion": lambda r, g, b: r > 0.5 and g > 0.4 and b < 0.5 * g,
        "cell_01 / plastid": lambda r, g, b: g > 1.5 * r and g > 1.5 * b,
        # orange (scene.json's 1, 0.5, 0): red well above green, green well above blue
        "cell_02 / peroxisome": lambda r, g, b: r > 0.5 and r > g + 0.1 and b < 0.6 * g,
    }
    for name, ok in checks.items():
        obj = bpy.data.objects[name]
        centre = sum((v.co for v in obj.data.vertices), obj.data.vertices[0].co * 0) / len(
            obj.data.vertices
        )
        uv = world_to_camera_view(scene, scene.camera, obj.matrix_world @ centre)
        x, y = int(uv.x * w), int(uv.y * h)
        r, g, b, _ = px[y, x]
        assert ok(r, g, b), (name, (r, g, b))


def test_cycles_final_preset_still(core, clean_scene, fake_run, tmp_path):
    scene = clean_scene
    bpy.ops.vemcell.import_run(directory=str(fake_run))
    core["animation"].setup_camera(scene)
    scene.frame_start = scene.frame_end = 1
    core["render"].apply_preset(scene, "final", (64, 48), samples=4)
    assert scene.render.engine == "CYCLES" and scene.cycles.use_denoising
    out = tmp_path / "final.png"
    core["render"].render(scene, out)
    img = bpy.data.images.load(str(out))
    assert tuple(img.size) == (64, 48)


@pytest.mark.parametrize("kind", ["turntable", "cut-sweep", "reveal", "flythrough"])
def test_animations_key_the_scene(core, clean_scene, fake_run, kind):
    scene = clean_scene
    bpy.ops.vemcell.import_run(directory=str(fake_run))
    operator = getattr(bpy.ops.vemcell, kind.replace("-", "_"))
    assert operator(frames=10) == {"FINISHED"}
    assert (scene.frame_start, scene.frame_end) == (1, 10)
    keyed = [
        idb
        for idb in [*bpy.data.objects, *bpy.data.materials]
        if idb.animation_data and idb.animation_data.action
    ]
    assert keyed, "nothing was keyed"
    if kind in ("cut-sweep", "flythrough"):
        empty = core["cutplanes"].cut_planes(scene)[0]
        scene.frame_set(1)
        z1 = empty.matrix_world.translation.z
        scene.frame_set(10)
        assert empty.matrix_world.translation.z < z1
    if kind == "reveal":
        mat = bpy.data.materials["vemcell cytoplasm"]
        scene.frame_set(1)
        a1 = mat.diffuse_color[3]
        scene.frame_set(10)
        assert a1 == pytest.approx(1.0) and mat.diffuse_color[3] < 0.5
    if kind == "turntable":
        pivot = bpy.data.objects["vemcell pivot"]
        scene.frame_set(6)
        assert pivot.rotation_euler.z == pytest.approx(np.pi, rel=1e-3)


def test_failing_backend_reports_one_error_and_leaves_scene(core, clean_scene, fake_run, tmp_path):
    scene = clean_scene
    bpy.ops.vemcell.import_run(directory=str(fake_run))
    before = _snapshot()
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"this is not a TIFF file")
    scene.vemcell.volume = str(bad)
    # the operator's one error is the backend CLI's own one-line message
    cli = subprocess.run(
        [sys.executable, "-m", "vemcell", "run", str(bad), "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert cli.returncode != 0
    message = cli.stderr.strip().splitlines()[-1].split("error:", 1)[1].strip()
    with pytest.raises(RuntimeError) as err:
        bpy.ops.vemcell.build()
    assert message in str(err.value) and "Traceback" not in str(err.value)
    assert _snapshot() == before
    scene.vemcell.volume = str(tmp_path / "missing.tif")
    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.vemcell.build()
    assert _snapshot() == before


def test_cancel_stops_the_subprocess(core, tmp_path):
    backend = core["backend"]
    job_dir, _ = backend.new_run_dir(tmp_path, "volume.tif")
    script = (
        "import json, time\n"
        "rec = {'stage': 'segment', 'fraction': 0.25, 'message': 'slices'}\n"
        "print(json.dumps(rec), flush=True)\n"
        "time.sleep(60)\n"
    )
    job = backend.BackendJob([], command=[sys.executable, "-c", script])
    deadline = time.monotonic() + 20
    events = []
    while not events and time.monotonic() < deadline:
        events = job.poll()
        time.sleep(0.05)
    assert events and events[0].stage == "segment" and events[0].fraction == 0.25
    t0 = time.monotonic()
    job.cancel()
    assert not job.running and time.monotonic() - t0 < 10
    job.finish()  # cancelled: no error
    backend.discard(job_dir)
    assert not job_dir.exists()


def test_backend_error_message_is_the_cli_line(core):
    backend = core["backend"]
    script = (
        "import sys; print('vemcell run: error: The volume is empty.', file=sys.stderr); "
        "sys.exit(2)"
    )
    job = backend.BackendJob([], command=[sys.executable, "-c", script])
    with pytest.raises(backend.BackendError, match=r"^The volume is empty\.$"):
        job.wait()


def test_the_addon_sends_the_shared_run_options(addon, core, clean_scene, tmp_path):
    """The panel builds vemcell.options.RunOptions; the backend's command line reads them back."""
    from vemcell.cli.main import build_parser
    from vemcell.cli.run_options import options_from_args
    from vemcell.options import RunOptions

    backend = core["backend"]
    assert backend.RunOptions is RunOptions  # one definition, not a copy
    settings = clean_scene.vemcell
    settings.directions, settings.median, settings.tta = "1", 5, True
    settings.remove_specks, settings.separate_cells, settings.foreground = False, False, "threshold"
    settings.smooth, settings.decimate = 4, 0.3
    settings.voxel_size, settings.voxel_source = (30.0, 10.0, 10.0), "default"
    opts = addon.ui.ops._options(settings)
    argv = backend.run_arguments("v.tif", tmp_path / "run", opts)
    args = build_parser().parse_args(argv)
    assert args.command == "run" and args.volume == "v.tif" and args.progress == "json"
    assert args.out == str(tmp_path / "run")
    assert args.voxel_size == [30.0, 10.0, 10.0] and args.directions == 1 and args.median == 5
    assert args.smooth == 4 and args.decimate == pytest.approx(0.3)
    assert args.separate_cells == "off" and args.tta is True and args.min_size == ["off"]
    assert options_from_args(args) == opts
    default = build_parser().parse_args(backend.run_arguments("v.tif", tmp_path, RunOptions()))
    assert default.directions == "auto" and default.tta is False
    assert default.min_size is None  # the model card's sizes
    assert options_from_args(default) == RunOptions()


def _headless():
    """addon/headless.py as a module (it finds the add-on already loaded by these tests)."""
    name = "vemcell_headless"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "addon" / "headless.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[name] = mod
    return sys.modules[name]


def test_headless_takes_the_run_options_of_vemcell_run(addon, tmp_path):
    """headless.py's pipeline options are `vemcell run`'s: the same arguments, the same options."""
    from vemcell.cli.run_options import options_from_args
    from vemcell.options import RunOptions

    opts = RunOptions(
        model="cmerolae6",
        directions=3,
        median=0,
        fuse="max",
        tta=True,
        min_size={"peroxisome": 0.002},
        voxel_size_nm=(25.0, 8.5, 8.5),
        smooth=0,
        decimate=0.25,
        mesh_format="obj",
        separate_cells="on",
        foreground="unet",
        threads=2,
    )
    headless = _headless()
    args = headless.parse_args(["v.tif", "--out", str(tmp_path / "o.png"), *opts.to_arguments()])
    assert options_from_args(args) == opts
    assert options_from_args(headless.parse_args(["v.tif", "--out", "o.mp4"])) == RunOptions()


def test_one_list_of_animations(addon, core, tmp_path):
    """The add-on keys exactly vemcell.options.ANIMATIONS; renders add 'still', headless 'none'."""
    from vemcell.cli.main import build_parser
    from vemcell.options import ANIMATIONS, RENDER_ANIMATIONS

    animation = core["animation"]
    assert animation.ANIMATIONS is ANIMATIONS
    assert tuple(animation.KEYERS) == ANIMATIONS
    assert RENDER_ANIMATIONS == (*ANIMATIONS, "still")
    enum = bpy.ops.vemcell.animate.get_rna_type().properties["kind"].enum_items
    assert tuple(e.identifier for e in enum) == ANIMATIONS
    render = next(
        a
        for a in build_parser()._subparsers._group_actions[0].choices["render"]._actions
        if a.dest == "animation"
    )
    assert tuple(render.choices) == RENDER_ANIMATIONS
    headless = _headless()
    out = str(tmp_path / "o.png")
    for name in (*RENDER_ANIMATIONS, "none"):
        assert headless.parse_args(["r", "--out", out, "--animation", name]).animation == name
    with pytest.raises(SystemExit):
        headless.parse_args(["r", "--out", out, "--animation", "spin"])


@pytest.fixture(scope="module")
def card_run(tmp_path_factory):
    """`vemcell run` on the embedded sample with the shipped cmerolae6 model."""
    from vemcell.cards.card import resolve_model
    from vemcell.options import RunOptions
    from vemcell.pipeline import run
    from vemcell.synth.generator import sample_dir

    try:
        card = resolve_model("cmerolae6")
    except Exception as exc:
        pytest.skip(f"the cmerolae6 model is not available: {exc}")
    out = tmp_path_factory.mktemp("card_run") / "run"
    run(Path(sample_dir()) / "image.tif", out, RunOptions(model="cmerolae6", threads=2))
    return card, out


def _glb_materials(path):
    """Node name -> baseColorFactor of its mesh's material, read from the .glb's JSON chunk."""
    import struct

    data = path.read_bytes()
    (length,) = struct.unpack("<I", data[12:16])
    gltf = json.loads(data[20 : 20 + length])
    out = {}
    for node in gltf["nodes"]:
        if "mesh" in node:
            prim = gltf["meshes"][node["mesh"]]["primitives"][0]
            material = gltf["materials"][prim["material"]]
            out[node["name"]] = material["pbrMetallicRoughness"]["baseColorFactor"]
    return out


def test_glb_scene_json_and_blender_wear_the_cards_colours(core, clean_scene, card_run):
    """One palette: the model card's colour of each class is what scene.json records, what the
    .glb's materials carry and what the Blender materials show."""
    card, run_dir = card_run
    classes = json.loads(card.path.read_text())["classes"]  # the card file itself
    card_colours = {c["name"]: c["color"] for c in classes}
    assert len(card_colours) == len(classes)
    manifest = json.loads((run_dir / "scene.json").read_text())
    meshed = {o["class_name"] for o in manifest["objects"]}
    background = card.class_names[card.background_class]
    assert meshed == set(card_colours) - {background}, meshed  # every class, on the sample
    for entry in manifest["objects"]:
        assert entry["color"] == pytest.approx(card_colours[entry["class_name"]], abs=1e-4)
    for cls in manifest["classes"]:
        assert cls["color"] == pytest.approx(card_colours[cls["name"]], abs=1e-4)
    glb = _glb_materials(run_dir / "scene.glb")
    assert set(glb) == {o["name"] for o in manifest["objects"]}
    for entry in manifest["objects"]:
        # glTF colours go through trimesh as 8-bit RGBA: equal to within half a step
        assert glb[entry["name"]] == pytest.approx(card_colours[entry["class_name"]], abs=0.5 / 255)
    core["scene"].import_run_dir(run_dir, clean_scene)
    objs = core["scene"].result_objects(clean_scene)
    assert {o["vemcell_class"] for o in objs} == meshed
    for obj in objs:
        colour = card_colours[obj["vemcell_class"]]
        mat = obj.active_material
        assert tuple(mat.diffuse_color) == pytest.approx(colour, abs=1e-6)
        principled = next(
            n for n in mat.node_tree.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled"
        )
        base = tuple(principled.inputs["Base Color"].default_value)
        assert base[:3] == pytest.approx(colour[:3], abs=1e-6)
        assert principled.inputs["Alpha"].default_value == pytest.approx(colour[3], abs=1e-6)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    try:
        from blender_helpers import make_sample_run

        return make_sample_run(tmp_path_factory.mktemp("sample"))
    except (ImportError, FileNotFoundError) as exc:
        pytest.skip(f"the embedded sample or the meshing backend is not available: {exc}")


def test_sample_scene_cut_open_stays_closed(core, clean_scene, sample_run):
    """The backend's own meshes of the embedded sample, cut by two planes for rendering."""
    scene = clean_scene
    bpy.ops.vemcell.import_run(directory=str(sample_run))
    manifest = json.loads((sample_run / "scene.json").read_text())
    objs = core["scene"].result_objects(scene)
    assert len(objs) == len(manifest["objects"])
    assert {c.name for c in core["scene"].find_root(scene).children} == {
        f"cell_{c:02d}" for c in manifest["cells"]
    }
    for entry in manifest["objects"]:
        obj = bpy.data.objects[entry["name"].replace("/", " / ")]
        assert obj["volume_um3"] == pytest.approx(entry["measurements"]["volume_um3"])
        assert obj["sphericity"] == pytest.approx(entry["measurements"]["sphericity"])
    bpy.ops.vemcell.add_cut(axis="Z")
    bpy.ops.vemcell.add_cut(axis="FREE")
    cp = core["cutplanes"]
    with cp.render_solvers(scene, cp.solver_choice("exact")):
        dg = bpy.context.evaluated_depsgraph_get()
        dg.update()
        cut = [o for o in objs if len(o.evaluated_get(dg).data.polygons)]
        assert len(cut) >= len(objs) // 2
        open_meshes = [o.name for o in cut if not cp.evaluated_mesh_is_closed(o, dg)]
        assert not open_meshes
        # the cytoplasm of some cell really was cut (fewer vertices above the Z plane)
        z_plane = cp.cut_planes(scene)[0].matrix_world.translation.z
        cyto = [o for o in cut if o["vemcell_class"] == "cytoplasm"]
        top = max(max(v.co.z for v in o.evaluated_get(dg).data.vertices) for o in cyto)
        assert top <= z_plane + 1e-3


def test_one_click_build_on_embedded_sample(core, clean_scene):
    """The Build operator, synchronously, through the real backend subprocess."""
    from vemcell.cards.card import list_models

    if not list_models():
        pytest.skip("no shipped model in models/ yet")
    scene = clean_scene
    bpy.ops.vemcell.sample()
    assert scene.vemcell.volume.endswith("image.tif")
    assert tuple(scene.vemcell.voxel_size) == pytest.approx((20.0, 20.0, 20.0))
    scene.vemcell.directions = "1"
    assert bpy.ops.vemcell.build() == {"FINISHED"}
    objs = core["scene"].result_objects(scene)
    assert objs and all(" / " in o.name or o.get("vemcell_cell") == -1 for o in objs)
    classes = {o["vemcell_class"] for o in objs}
    assert classes & {"cytoplasm", "nucleus", "plastid", "mitochondrion", "peroxisome"}
    assert all("volume_um3" in o for o in objs)
    run_dir = Path(core["scene"].find_root(scene)["vemcell_run_dir"])
    assert (run_dir / "viewer.html").is_file()  # every run writes its browser page
    (run_dir / "viewer.html").unlink()  # "Open in browser" on an older run writes it on demand
    assert bpy.ops.vemcell.open_in_browser(open_page=False) == {"FINISHED"}
    assert (run_dir / "viewer.html").stat().st_size > 100_000
    timings = dict(core["scene"].run_timings(scene))  # what the Timings panel lists
    assert {"segment", "mesh", "total"} <= set(timings) and timings["total"] > 0
    assert list(timings)[-1] == "total"


def test_drop_tiff_sets_input_and_voxel_size(addon, core, clean_scene, fake_run, tmp_path):
    """The FileHandler's operator takes a dropped stack; the voxel size comes from its header."""
    from blender_helpers import VOXEL_NM

    assert bpy.types.FileHandler.bl_rna_get_subclass_py("VEMCELL_FH_volume") is not None
    assert hasattr(bpy.types, "VEMCELL_PT_main")
    volume = fake_run.parent / "volume.tif"
    assert bpy.ops.vemcell.drop_volume(filepath=str(volume)) == {"FINISHED"}
    settings = clean_scene.vemcell
    assert settings.volume == str(volume)
    assert tuple(settings.voxel_size) == pytest.approx(VOXEL_NM)
    assert settings.voxel_source == "metadata"
    ops = addon.ui.ops
    assert ops._options(settings).voxel_size_nm is None  # the file's own size: not overridden
    settings.voxel_size = (40.0, 10.0, 10.0)
    assert ops._options(settings).voxel_size_nm == (40.0, 10.0, 10.0)
    with pytest.raises(RuntimeError, match="tif"):
        bpy.ops.vemcell.drop_volume(filepath=str(tmp_path / "notes.txt"))


class _FakeOperator:
    """Stands in for the operator instance so the modal handler can be driven without a window
    (background mode has no event loop): the same ``modal`` code the UI runs."""

    def __init__(self, cls):
        self._timer = None
        self.reports = []
        self._cls = cls

    def report(self, kind, message):
        self.reports.append((next(iter(kind)), message))

    def _stop(self, context):
        self._cls._stop(self, context)

    def modal(self, context, event_type):
        return self._cls.modal(self, context, type("Event", (), {"type": event_type})())


def _modal_job(addon, core, tmp_path, script):
    ops = addon.ui.ops
    job_dir, run_dir = core["backend"].new_run_dir(tmp_path / "runs", "volume.tif")
    job = core["backend"].BackendJob([], command=[sys.executable, "-c", script, str(run_dir)])
    ops._JOB.update(job=job, job_dir=job_dir, run_dir=run_dir, cancel=False)
    return _FakeOperator(ops.VEMCELL_OT_build), job_dir


def _drive(op, context, limit_s=30.0):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        result = op.modal(context, "TIMER")
        if result != {"PASS_THROUGH"}:
            return result
        time.sleep(0.05)
    raise AssertionError("the modal operator never finished")


def test_modal_build_reports_progress_then_imports(addon, core, clean_scene, fake_run, tmp_path):
    script = (
        "import json, shutil, sys, time\n"
        "for f in (0.2, 0.6):\n"
        "    print(json.dumps({'stage': 'segment', 'fraction': f, 'message': 'm'}), flush=True)\n"
        "    time.sleep(0.2)\n"
        f"shutil.copytree({str(fake_run)!r}, sys.argv[1])\n"
        "print(json.dumps({'stage': 'done', 'fraction': 1.0, 'message': 'done'}), flush=True)\n"
    )
    op, _ = _modal_job(addon, core, tmp_path, script)
    context = bpy.context
    assert op.modal(context, "MOUSEMOVE") == {"PASS_THROUGH"}
    assert _drive(op, context) == {"FINISHED"}
    assert not addon.ui.ops._JOB and not clean_scene.vemcell.running
    assert clean_scene.vemcell.progress == 1.0
    assert "cell_01 / mitochondrion" in bpy.data.objects


def test_modal_escape_kills_backend_and_keeps_scene(addon, core, clean_scene, fake_run, tmp_path):
    bpy.ops.vemcell.import_run(directory=str(fake_run))
    before = _snapshot()
    script = (
        "import json, time\n"
        "print(json.dumps({'stage': 'segment', 'fraction': 0.3, 'message': 'm'}), flush=True)\n"
        "time.sleep(60)\n"
    )
    op, job_dir = _modal_job(addon, core, tmp_path, script)
    job = addon.ui.ops._JOB["job"]
    context = bpy.context
    while clean_scene.vemcell.progress == 0.0:
        assert op.modal(context, "TIMER") == {"PASS_THROUGH"}
        time.sleep(0.05)
    assert clean_scene.vemcell.status.startswith("segment")
    assert op.modal(context, "ESC") == {"CANCELLED"}
    assert not job.running and not job_dir.exists()
    assert _snapshot() == before and not addon.ui.ops._JOB
    assert op.reports and op.reports[-1][0] == "WARNING"


def test_modal_backend_failure_is_one_error(addon, core, clean_scene, fake_run, tmp_path):
    bpy.ops.vemcell.import_run(directory=str(fake_run))
    before = _snapshot()
    script = (
        "import sys\n"
        "print('vemcell run: error: The model card is not valid JSON.', file=sys.stderr)\n"
        "sys.exit(2)\n"
    )
    op, job_dir = _modal_job(addon, core, tmp_path, script)
    assert _drive(op, bpy.context) == {"CANCELLED"}
    assert op.reports == [("ERROR", "vemcell: The model card is not valid JSON.")]
    assert _snapshot() == before and not job_dir.exists()


class _Layout:
    """Records a panel's draw calls and checks every property and operator it names exists."""

    def __init__(self, log):
        self.log = log

    def __getattr__(self, name):
        if name in ("column", "row", "box", "grid_flow", "split"):
            return lambda *a, **k: _Layout(self.log)
        if name in ("label", "separator", "progress"):
            return lambda *a, **k: self.log.append((name, k.get("text", "")))
        raise AttributeError(name)

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)

    def prop(self, data, name, **kwargs):
        key = name.strip('["]')
        assert name in data.bl_rna.properties or key in data, name
        self.log.append(("prop", name))

    def operator(self, idname, **kwargs):
        category, op = idname.split(".")
        rna = getattr(getattr(bpy.ops, category), op).get_rna_type()
        self.log.append(("operator", idname))
        props = {p.identifier for p in rna.properties}

        class _Props:
            def __setattr__(self, key, value):
                assert key in props, (idname, key)

        return _Props()


def test_panels_draw_with_existing_properties_and_operators(addon, core, clean_scene, fake_run):
    bpy.ops.vemcell.import_run(directory=str(fake_run))
    bpy.ops.vemcell.add_cut(axis="FREE")
    obj = bpy.data.objects["cell_01 / mitochondrion"]
    bpy.context.view_layer.objects.active = obj
    panel_mod = addon.ui.panel
    log = []
    for cls in panel_mod.CLASSES:
        panel = type("P", (), {"layout": _Layout(log)})()
        if hasattr(cls, "poll"):
            assert cls.poll(bpy.context), cls.__name__
        cls.draw(panel, bpy.context)
    names = {entry[1] for entry in log}
    assert {"vemcell.build", "vemcell.sample", "vemcell.add_cut", "vemcell.render"} <= names
    assert {"vemcell.turntable", "vemcell.cut_sweep", "vemcell.reveal"} <= names
    assert "volume_um3" in names  # the measurements list of the active organelle
    assert ("prop", "sparse_method") not in log  # only once sections are sparse
    clean_scene.vemcell.sparse = 4
    log.clear()
    panel_mod.VEMCELL_PT_main.draw(type("P", (), {"layout": _Layout(log)})(), bpy.context)
    assert ("prop", "sparse_method") in log
    clean_scene.vemcell.running = True
    log.clear()
    panel_mod.VEMCELL_PT_main.draw(type("P", (), {"layout": _Layout(log)})(), bpy.context)
    assert ("operator", "vemcell.cancel") in log and any(e[0] == "progress" for e in log)


def test_panel_sparse_sections_reach_the_backend(addon, clean_scene):
    """'Sections imaged every K-th' becomes --sparse K; the panel suggests K from the voxel size."""
    settings = clean_scene.vemcell
    ops, props = addon.ui.ops, addon.ui.props
    assert ops._options(settings).sparse is None
    settings.sparse = 4
    opts = ops._options(settings)
    assert opts.sparse == 4 and opts.to_arguments()[-6:][:2] == ["--sparse", "4"]
    assert opts.sparse_method == "auto" and opts.to_arguments()[-2:] == ["--sparse-method", "auto"]
    settings.sparse_method = "learned"
    assert ops._options(settings).to_arguments()[-1] == "learned"
    assert props.suggested_sparse((80.0, 20.0, 20.0)) == 4
    assert props.suggested_sparse((20.0, 20.0, 20.0)) is None
    assert props.suggested_sparse((50.0, 4.6, 4.6)) is None  # thick serial sections


def test_a_blockwise_run_imports_its_largest_cells(core, clean_scene, fake_run):
    """Of a blockwise run (many cells) the panel imports the largest N; 20 by default."""
    report = json.loads((fake_run / "report.json").read_text())
    (fake_run / "report.json").write_text(json.dumps({**report, "mode": "blockwise"}))
    settings = clean_scene.vemcell
    assert settings.max_cells == 20
    settings.max_cells = 1
    assert bpy.ops.vemcell.import_run(directory=str(fake_run)) == {"FINISHED"}
    cells = {o["vemcell_cell"] for o in core["scene"].result_objects(clean_scene)}
    assert cells == {1}  # cell 1 (cytoplasm, nucleus, plastid, mitochondrion) is the larger
    root = core["scene"].find_root(clean_scene)
    assert (root["vemcell_cells_shown"], root["vemcell_cells_total"]) == (1, 2)
    settings.max_cells = 20
    assert bpy.ops.vemcell.import_run(directory=str(fake_run)) == {"FINISHED"}
    assert {o["vemcell_cell"] for o in core["scene"].result_objects(clean_scene)} == {1, 2}


def test_a_volume_too_large_for_the_cut_planes_is_read_every_few_voxels(
    core, fake_run, monkeypatch
):
    """The EM section of a large volume comes from every step-th voxel, not all; of a run with
    an OME-Zarr EM pyramid (a blockwise run's em.ome.zarr), from the level that fits."""
    emslice = core["emslice"]
    volume = str(fake_run.parent / "volume.tif")  # 40 x 80 x 160
    emslice._VOLUMES.clear()
    monkeypatch.setattr(emslice, "MAX_VOXELS", 64_000)
    data, lo, hi, voxel = emslice.load_volume(volume, (10.0, 10.0, 10.0))
    assert voxel == (20.0, 20.0, 20.0) and data.shape == (20, 40, 80) and hi > lo
    emslice._VOLUMES.clear()

    zarr = pytest.importorskip("zarr")
    from vemcell.blockwise import ngff

    em = fake_run.parent / "em.ome.zarr"
    full = np.random.default_rng(0).integers(0, 255, (64, 128, 256), dtype=np.uint8)
    paths = ngff.create(str(em), full.shape, (32, 32, 32), full.dtype, first=1)
    assert len(paths) == 2  # levels 1 and 2, no full-resolution copy
    for k, path in enumerate(paths, start=1):
        zarr.open_array(path, mode="r+")[...] = full[:: 2**k, :: 2**k, :: 2**k]
    ngff.write_metadata(str(em), (10.0, 10.0, 10.0), None, name="em")
    monkeypatch.setattr(emslice, "MAX_VOXELS", 100_000)  # level 1 holds 262,144: level 2 fits
    data, lo, hi, voxel = emslice.load_volume(str(em), (10.0, 10.0, 10.0))
    assert voxel == (40.0, 40.0, 40.0) and np.array_equal(data, full[::4, ::4, ::4])
    emslice._VOLUMES.clear()
