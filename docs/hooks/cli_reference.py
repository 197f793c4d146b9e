"""MkDocs hook: the command-line reference page, generated from the argparse definitions.

``vemcell.cli.main.build_parser()`` is the one definition of every sub-command (the runtime's
own and the training verbs registered as ``vemcell.commands`` entry points), so the page is
built from it at every docs build and never committed: it cannot drift from the code.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mkdocs.structure.files import File, Files

PAGE = "reference/cli.md"
ROOT = Path(__file__).resolve().parents[2]


def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser; a source checkout works even when the package is not installed."""
    for sub in ("inference", "training"):
        path = str(ROOT / sub)
        if path not in sys.path:
            sys.path.append(path)
    from vemcell.cli.main import build_parser as build

    return build()


def _md(text: str) -> str:
    """Plain help text made safe for a Markdown table cell."""
    text = " ".join(text.split())
    for a, b in (("\\", "\\\\"), ("|", "\\|"), ("*", "\\*"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(a, b)
    return text


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    return parser._get_formatter()._expand_help(action)


def _flags(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """``--out OUT`` / ``volume``: the option strings with their metavar, as --help shows them."""
    formatter = parser._get_formatter()
    if not action.option_strings:
        return f"`{formatter._get_default_metavar_for_positional(action)}`"
    if action.nargs == 0:
        return ", ".join(f"`{s}`" for s in action.option_strings)
    args = formatter._format_args(action, formatter._get_default_metavar_for_optional(action))
    return ", ".join(f"`{s} {args}`" for s in action.option_strings)


def _default(action: argparse.Action) -> str:
    d = action.default
    if action.nargs == 0 or d is None or d == argparse.SUPPRESS or d == []:
        return ""
    if isinstance(d, list | tuple):
        d = " ".join(str(x) for x in d)
    return f"`{d}`"


def _key(parser: argparse.ArgumentParser, action: argparse.Action) -> tuple[str, str]:
    return (_flags(parser, action), _help(parser, action))


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
    ]


def _table(parser: argparse.ArgumentParser, actions: list[argparse.Action]) -> list[str]:
    lines = ["| argument | what it does | default |", "|---|---|---|"]
    for a in actions:
        help_text = _md(_help(parser, a))
        if a.required and a.option_strings:
            help_text = "**required** " + help_text
        if a.choices is not None and not a.option_strings:
            help_text += f" (one of {', '.join(f'`{c}`' for c in a.choices)})"
        lines.append(f"| {_flags(parser, a)} | {help_text} | {_default(a)} |")
    return lines


def render(parser: argparse.ArgumentParser) -> str:
    """The reference page as Markdown: usage, common options, then one section per verb."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # usage lines wrap the same wherever the docs are built
    try:
        return _render(parser)
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _render(parser: argparse.ArgumentParser) -> str:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help or "" for c in sub._choices_actions}
    verbs: dict[str, argparse.ArgumentParser] = dict(sub.choices)
    # options every verb takes with the same help (--debug, --progress) are listed once
    keysets = [{_key(p, a) for a in _actions(p)} for p in verbs.values()]
    common_keys = set.intersection(*keysets) if keysets else set()
    first = next(iter(verbs.values()))
    common = [a for a in _actions(first) if _key(first, a) in common_keys]

    out = [
        "# Command-line reference",
        "",
        "<!-- Generated from vemcell.cli.main.build_parser() at every docs build; do not edit. -->",
        "",
        "This page is generated from the command line's own definitions each time the docs are",
        "built, so it always matches the installed `vemcell`. `vemcell COMMAND --help` prints",
        "the same on a terminal. Verbs marked as needing an extra come from the training",
        "package (`pip install 'vemcell[train]'`), which registers them with the command line.",
        "",
        "```text",
        parser.format_usage().strip(),
        "```",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    for name in verbs:
        anchor = "vemcell-" + name
        out.append(f"| [`{name}`](#{anchor}) | {_md(helps.get(name, ''))} |")
    out += ["", "## Options every command takes", "", *_table(first, common), ""]
    for name, p in verbs.items():
        out += [f"## vemcell {name} {{#vemcell-{name}}}", "", _md(helps.get(name, "")), ""]
        out += ["```text", p.format_usage().strip(), "```", ""]
        for group in p._action_groups:
            acts = [
                a
                for a in group._group_actions
                if a in _actions(p) and _key(p, a) not in common_keys
            ]
            if not acts:
                continue
            title = {"options": "Options", "positional arguments": "Arguments"}.get(
                group.title or "", group.title or "Options"
            )
            out += [f"**{_md(title)}**", ""]
            if group.description:
                out += [_md(group.description), ""]
            out += [*_table(p, acts), ""]
    return "\n".join(out)


def on_files(files: Files, config) -> Files:
    """Add the generated reference page to the site's files (nothing is written to docs/)."""
    files.append(File.generated(config, PAGE, content=render(build_parser())))
    return files
