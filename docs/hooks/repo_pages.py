"""MkDocs hook: pages made from files outside docs/, so nothing is written down twice.

* ``index.md`` is README.md and ``changelog.md`` is CHANGELOG.md, with their relative links
  rewritten for the site (``docs/x`` becomes ``x``; a link to a repository file outside docs/
  keeps its text and loses the link).
* ``<!-- modules: inference/vemcell -->`` in a page becomes a table of that folder's modules and
  subpackages, each with its line count and the first paragraph of its docstring, read from the code
  at every build.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
PAGES = {"README.md": "index.md", "CHANGELOG.md": "changelog.md"}
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)((?:\s+\"[^\"]*\")?)\)")
PLACEHOLDER = re.compile(r"<!--\s*modules:\s*(\S+)\s*-->")


def rewrite_links(markdown: str) -> str:
    """Relative links of a top-level file, made to work from the docs site's root."""

    def sub(m: re.Match[str]) -> str:
        bang, text, target, title = m.groups()
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            return m.group(0)
        path, hash_, frag = target.partition("#")
        if path.startswith("docs/"):
            new = path[len("docs/") :]
        elif path in PAGES:
            new = PAGES[path]
        else:  # a repository file the site does not hold: keep the words, drop the link
            return text if not bang else ""
        return f"{bang}[{text}]({new}{hash_}{frag}{title})"

    return LINK.sub(sub, markdown)


def _summary(path: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except SyntaxError:
        return ""
    return " ".join(doc.strip().split("\n\n")[0].split()) if doc else ""  # first paragraph


def _lines(path: Path) -> int:
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return sum(len(f.read_text(encoding="utf-8").splitlines()) for f in files)


def module_table(folder: str) -> str:
    """One row per module or subpackage of ``folder`` (relative to the repository)."""
    base = ROOT / folder
    if not base.is_dir():
        raise FileNotFoundError(f"modules placeholder names {folder}, which is not a folder")
    rows = ["| module | lines | what it is for |", "|---|---|---|"]
    entries = sorted(
        p
        for p in base.iterdir()
        if (p.suffix == ".py" and p.name != "__init__.py")
        or (p.is_dir() and (p / "__init__.py").is_file())
    )
    for p in entries:
        doc = _summary(p / "__init__.py" if p.is_dir() else p)
        name = f"`{p.name}/`" if p.is_dir() else f"`{p.name}`"
        doc = doc.replace("|", "\\|")
        rows.append(f"| {name} | {_lines(p):,} | {doc} |")
    return "\n".join(rows)


def on_files(files: Files, config) -> Files:
    for src, dest in PAGES.items():
        text = (ROOT / src).read_text(encoding="utf-8")
        files.append(File.generated(config, dest, content=rewrite_links(text)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    return PLACEHOLDER.sub(lambda m: module_table(m.group(1)), markdown)
