#!/usr/bin/env python3
"""Build the vemcell Blender extension: one validated ``.zip`` per platform.

Each package holds the add-on (``addon/``), the backend package ``vemcell`` (as
``backend/vemcell``, with the shipped models from ``models/`` in ``backend/vemcell/models``),
and the wheels of every runtime dependency except numpy (Blender bundles numpy) for Python 3.11
(Blender 4.2-5.0) and 3.13 (Blender 5.1+). The manifest's ``platforms`` and ``wheels`` are
written per package, then Blender's own ``blender_ext.py build`` packs it and ``validate``
checks it.

Wheels are resolved with pip for the target platform (``pip install --dry-run --report``) and
downloaded with ``pip download --only-binary=:all: --no-deps`` into ``build/wheels/<platform>``;
a lock file there lets later builds run without the network.

Usage::

    python build.py                                   # all platforms, Python 3.11 and 3.13
    python build.py --platforms linux-x64 --python 3.11
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent
BUILD = ROOT / "build"
DIST = ROOT / "dist"
EXCLUDED = {"numpy"}  # Blender ships numpy; a second copy would clash with it
PYTHONS = ("3.11", "3.13")


def _mac(arch: str, majors: range) -> list[str]:
    tags = []
    for major in majors:
        minors = range(9, 16) if major == 10 else (0,)
        for minor in minors:
            tags += [f"macosx_{major}_{minor}_{arch}", f"macosx_{major}_{minor}_universal2"]
    return tags


# pip matches --platform tags exactly, so every tag a platform accepts is listed.
PLATFORMS: dict[str, list[str]] = {
    "linux-x64": [
        "manylinux_2_28_x86_64",
        "manylinux_2_27_x86_64",
        "manylinux_2_24_x86_64",
        "manylinux2014_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2010_x86_64",
        "manylinux1_x86_64",
    ],
    "windows-x64": ["win_amd64"],
    "macos-arm64": _mac("arm64", range(11, 16)),
    "macos-x64": _mac("x86_64", range(10, 16)),
}


class BuildError(Exception):
    """A build step failed; the message says which and why."""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def runtime_requirements() -> list[str]:
    """``[project.dependencies]`` of pyproject.toml, without numpy."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    reqs = []
    for req in data["project"]["dependencies"]:
        name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
        if _norm(name) not in EXCLUDED:
            reqs.append(req)
    return reqs


def _pip_target_args(platform: str, python: str) -> list[str]:
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", python]
    for tag in PLATFORMS[platform]:
        args += ["--platform", tag]
    return args


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise BuildError(f"{what} failed:\n" + "\n".join(tail))


def wheels_for(platform: str, python: str, offline: bool = False) -> list[Path]:
    """The dependency wheels for one platform and Python, downloading any that are missing."""
    cache = BUILD / "wheels" / platform
    cache.mkdir(parents=True, exist_ok=True)
    reqs = runtime_requirements()
    lock = cache / f"lock-cp{python.replace('.', '')}.json"
    if lock.exists():
        data = json.loads(lock.read_text())
        files = [cache / f for f in data["wheels"]]
        if data.get("requirements") == reqs and all(f.is_file() for f in files):
            return files
    if offline:
        raise BuildError(f"No cached wheels for {platform} / Python {python} (run online once).")
    print(f"resolving wheels for {platform}, Python {python} ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--dry-run",
                "--ignore-installed",
                "--target",
                str(Path(tmp) / "target"),
                "--report",
                str(report),
                *_pip_target_args(platform, python),
                *reqs,
            ],
            f"resolving dependencies for {platform} / Python {python}",
        )
        installs = json.loads(report.read_text())["install"]
    pins = []
    for item in installs:
        meta = item["metadata"]
        if _norm(meta["name"]) not in EXCLUDED:
            pins.append((meta["name"], meta["version"]))
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--dest",
            str(cache),
            *_pip_target_args(platform, python),
            *(f"{n}=={v}" for n, v in pins),
        ],
        f"downloading wheels for {platform} / Python {python}",
    )
    py = f"cp{python.replace('.', '')}"
    files = []
    for name, version in pins:
        prefix = f"{_norm(name)}-{version}-"
        matches = [
            f
            for f in cache.glob("*.whl")
            if _norm(f.name.split("-")[0]) + "-" + f.name.split("-")[1] + "-" == prefix
        ]
        # prefer the wheel for this Python over abi3/py3 ones when several are cached
        matches.sort(key=lambda f: (py not in f.name, f.name))
        compatible = [f for f in matches if _wheel_fits(f.name, platform, python)]
        if not compatible:
            raise BuildError(f"pip downloaded no wheel of {name} {version} for {platform}.")
        files.append(compatible[0])
    lock.write_text(
        json.dumps({"requirements": reqs, "wheels": [f.name for f in files]}, indent=1) + "\n"
    )
    return files


def _wheel_fits(filename: str, platform: str, python: str) -> bool:
    parts = filename[:-4].split("-")
    pytag, abitag, plattag = parts[-3], parts[-2], parts[-1]
    py = f"cp{python.replace('.', '')}"
    py_ok = any(
        t in (py, "py3", "py2.py3", "abi3") or t.startswith("py3") for t in pytag.split(".")
    )
    py_ok = py_ok or (abitag == "abi3" and pytag.startswith("cp3"))
    plat_ok = plattag == "any" or any(_tag_fits(t, platform) for t in plattag.split("."))
    return py_ok and plat_ok


def _tag_fits(tag: str, platform: str) -> bool:
    """Whether a wheel platform tag runs on ``platform`` (pip may pick older macOS/glibc tags)."""
    if platform == "linux-x64":
        return tag.startswith("manylinux") and tag.endswith("_x86_64")
    if platform == "windows-x64":
        return tag == "win_amd64"
    arch = {"macos-arm64": ("_arm64", "_universal2"), "macos-x64": ("_x86_64", "_universal2")}
    return tag.startswith("macosx_") and tag.endswith(arch[platform])


def _copytree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))


def write_manifest(dest: Path, platform: str, wheels: list[str]) -> None:
    """The template manifest with this package's ``platforms`` and ``wheels``."""
    text = (ROOT / "blender_manifest.toml").read_text(encoding="utf-8")
    lines = text.splitlines()
    first_table = next(i for i, ln in enumerate(lines) if ln.startswith("["))
    extra = [f'platforms = ["{platform}"]', "wheels = ["]
    extra += [f'  "./wheels/{w}",' for w in wheels]
    extra += ["]", ""]
    lines[first_table:first_table] = extra
    dest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tomllib.loads(dest.read_text(encoding="utf-8"))  # must still parse


def stage(platform: str, wheels: list[Path]) -> Path:
    """Assemble the package folder for one platform under build/extension/<platform>."""
    out = BUILD / "extension" / platform
    if out.exists():
        shutil.rmtree(out)
    _copytree(ROOT / "addon", out)
    _copytree(ROOT / "inference" / "vemcell", out / "backend" / "vemcell")
    models = out / "backend" / "vemcell" / "models"
    models.mkdir(exist_ok=True)
    for f in sorted((ROOT / "models").glob("*")):
        if f.suffix in (".onnx", ".json") and f.is_file():
            shutil.copy2(f, models / f.name)
    (out / "wheels").mkdir()
    names = []
    for w in wheels:
        if w.name not in names:
            shutil.copy2(w, out / "wheels" / w.name)
            names.append(w.name)
    write_manifest(out / "blender_manifest.toml", platform, sorted(names))
    return out


def blender_ext() -> Path:
    """Blender's extension builder/validator (shipped in Blender and in the bpy wheel)."""
    env = os.environ.get("BLENDER_EXT")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError(
            "blender_ext.py not found: install bpy (pip install bpy) or set BLENDER_EXT to "
            "<blender>/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py."
        )
    base = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(base.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise BuildError(f"blender_ext.py not found under {base}.")
    return found[-1]


def package(platform: str, source: Path, version: str) -> Path:
    """Pack and validate one platform's zip."""
    DIST.mkdir(exist_ok=True)
    out = DIST / f"vemcell-{version}-{platform.replace('-', '_')}.zip"
    if out.exists():
        out.unlink()
    tool = blender_ext()
    _run(
        [
            sys.executable,
            str(tool),
            "build",
            "--source-dir",
            str(source),
            "--output-filepath",
            str(out),
        ],
        f"blender_ext build ({platform})",
    )
    _run([sys.executable, str(tool), "validate", str(out)], f"blender_ext validate ({platform})")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--platforms",
        nargs="+",
        choices=sorted(PLATFORMS),
        default=list(PLATFORMS),
        help="platforms to build (default: all)",
    )
    p.add_argument(
        "--python",
        nargs="+",
        default=list(PYTHONS),
        help="Python versions to bundle wheels for (default: 3.11 3.13)",
    )
    p.add_argument("--offline", action="store_true", help="use only cached wheels")
    args = p.parse_args(argv)
    version = tomllib.loads((ROOT / "blender_manifest.toml").read_text())["version"]
    try:
        for platform in args.platforms:
            wheels: list[Path] = []
            for py in args.python:
                wheels += wheels_for(platform, py, args.offline)
            src = stage(platform, wheels)
            zip_path = package(platform, src, version)
            size = zip_path.stat().st_size / 1e6
            print(f"{zip_path} ({size:.1f} MB, {len(set(wheels))} wheels)", flush=True)
    except BuildError as exc:
        print(f"build.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
