"""The house rules, checked: imports point down only, no cycles, the runtime stays light, and the
small holes stay closed (one sentence and a nonzero exit each)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vemcell.cards.card import load_card
from vemcell.cli.main import main
from vemcell.errors import VemcellError

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "inference" / "vemcell"
TRAINING = REPO / "training" / "vemcell_train"


def _module_name(path: Path) -> str:
    root = path.parents[len(path.relative_to(REPO).parts) - 2]
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (absolute names)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    files = [*RUNTIME.rglob("*.py"), *TRAINING.rglob("*.py")]
    modules = {_module_name(f): f for f in files}
    return {m: {i for i in _imports(f) if i in modules and i != m} for m, f in modules.items()}


def test_runtime_never_imports_training_torch_or_bpy() -> None:
    for f in RUNTIME.rglob("*.py"):
        bad = {i for i in _imports(f) if i.split(".")[0] in ("vemcell_train", "torch", "bpy")}
        assert not bad, f"{f.relative_to(REPO)} imports {sorted(bad)}"


def test_libraries_never_import_cli_modules() -> None:
    """Library code (runtime and training alike) sits below the command line, never above it."""
    for f in [*RUNTIME.rglob("*.py"), *TRAINING.rglob("*.py")]:
        rel = f.relative_to(REPO).parts
        if "cli" in rel or f.name == "__main__.py":
            continue
        bad = {i for i in _imports(f) if i.startswith(("vemcell.cli", "vemcell_train.cli"))}
        assert not bad, f"{f.relative_to(REPO)} imports CLI modules {sorted(bad)}"


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = [*stack[stack.index(n) :], n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_every_subpackage_says_what_it_is_for() -> None:
    for init in [*RUNTIME.rglob("__init__.py"), *TRAINING.rglob("__init__.py")]:
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc.splitlines()[0]) > 20, f"{init.relative_to(REPO)} has no docstring"


def test_importing_everything_and_help_loads_neither_bpy_nor_torch() -> None:
    """A fresh interpreter imports every runtime module and prints ``vemcell --help``."""
    code = """
import importlib, pkgutil, sys, contextlib, io
import vemcell
for m in pkgutil.walk_packages(vemcell.__path__, "vemcell."):
    importlib.import_module(m.name)
from vemcell.cli.main import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        main(["--help"])
    except SystemExit:
        pass
assert "train" in out.getvalue() and "run" in out.getvalue(), out.getvalue()
print(sorted(m for m in ("bpy", "torch", "torchvision") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "argv",
    [
        ["segment", "in.tif", "--out", "out.tif", "--threads", "-3"],
        ["run", "in.tif", "--out", "run", "--threads", "0"],
        ["evaluate", "--image", "a.tif", "--labels", "b.tif", "--threads", "-1"],
        ["cells", "in.tif", "--out", "c.tif", "--threads", "two"],
    ],
)
def test_threads_must_be_at_least_one(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--threads" in err and ("1 or more" in err or "whole number" in err)
    assert "Traceback" not in capsys.readouterr().err


def test_a_model_card_cannot_name_a_file_outside_its_folder(tmp_path: Path) -> None:
    card = {"name": "escape", "classes": ["background", "thing"], "onnx": "../../etc/passwd"}
    path = tmp_path / "escape.json"
    path.write_text(json.dumps(card))
    with pytest.raises(VemcellError, match="card's own folder"):
        load_card(path)


def test_training_recipes_take_their_data_from_a_flag_or_variable(monkeypatch) -> None:
    pytest.importorskip("torch")
    from vemcell_train.recipes import dataset_dir

    monkeypatch.delenv("VEMCELL_DATA", raising=False)
    with pytest.raises(VemcellError, match="VEMCELL_DATA"):
        dataset_dir("vnc_sstem")
    monkeypatch.setenv("VEMCELL_DATA", "/nonexistent-data-root")
    with pytest.raises(VemcellError, match="not a folder"):
        dataset_dir("vnc_sstem")


def test_a_card_int8_file_stays_in_the_folder_too(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"")
    card = {"name": "m", "classes": ["a", "b"], "onnx": "m.onnx", "onnx_int8": "/etc/passwd"}
    (tmp_path / "m.json").write_text(json.dumps(card))
    with pytest.raises(VemcellError, match="onnx_int8"):
        load_card(tmp_path / "m.json")


#: The runtime's layers, as docs/architecture.md draws them: a package imports only from lower
#: layers (layer 0's small modules may import each other).
LAYERS = {
    "errors": 0,
    "progress": 0,
    "options": 0,
    "io": 1,
    "cards": 1,
    "segmentation": 2,
    "cells": 2,
    "meshes": 2,
    "synth": 2,
    "evaluation": 3,
    "view": 3,
    "sparse": 4,
    "pipeline": 5,
    "render": 5,
    "blockwise": 6,
    "cli": 7,
    "__main__": 8,
}


def test_runtime_imports_point_down_the_layers() -> None:
    for f in RUNTIME.rglob("*.py"):
        rel = f.relative_to(RUNTIME).parts
        here = rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")
        if here == "__init__":
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "vemcell":
                    targets = [a.name for a in node.names if a.name in LAYERS]
                elif node.module.startswith("vemcell."):
                    targets = [node.module.split(".")[1]]
            elif isinstance(node, ast.Import):
                targets = [
                    a.name.split(".")[1] for a in node.names if a.name.startswith("vemcell.")
                ]
            for there in targets:
                if there == here:
                    continue
                ok = LAYERS[there] < LAYERS[here] or LAYERS[here] == LAYERS[there] == 0
                assert ok, f"{f.relative_to(REPO)} ({here}) imports {there}, a layer up or beside"
