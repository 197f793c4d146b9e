"""The docs: the site builds with ``mkdocs build --strict``, its command-line reference lists every
verb, and the README stays a short user's guide whose relative links all lead somewhere."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vemcell.cli.main import build_parser

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _verbs() -> list[str]:
    import argparse

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed (it comes with the 'dev' extra: pip install -e '.[dev]')",
)
def test_docs_site_builds_strictly_with_every_verb_in_the_cli_reference(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    html = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    verbs = _verbs()
    assert {"run", "render", "segment", "train"} <= set(verbs)  # training verbs registered
    missing = [v for v in verbs if f'id="vemcell-{v}"' not in html or f"vemcell {v}" not in html]
    assert not missing, f"the CLI reference lacks {missing}"
    assert (site / "index.html").is_file() and (site / "changelog" / "index.html").is_file()
    assert not (site / "hooks").exists()


def test_readme_is_a_short_guide() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; keep it at 300 or fewer"


def test_every_relative_link_in_the_readme_leads_to_a_file() -> None:
    broken = []
    for target in LINK.findall(README.read_text(encoding="utf-8")):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a web address or a heading of the README itself
        path = target.split("#", 1)[0]
        if not (REPO / path).is_file():
            broken.append(target)
    assert not broken, f"README.md links to files that do not exist: {broken}"
