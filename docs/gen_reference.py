"""Generate the YAML and CLI reference pages from the code, so they cannot drift.

The YAML reference lists every short name the registry knows (the ``eventrouter.backends``
and ``eventrouter.processors`` entry points), each with its options as its constructor
declares them: name, type, default, and the meaning its docstring's ``Args:`` section gives.
The CLI reference is argparse's own help of every command.

MkDocs runs this through ``hooks: [docs/gen_reference.py]`` (``on_page_markdown`` replaces
the ``<!-- generated: NAME -->`` marker of a page); ``python docs/gen_reference.py yaml``
(or ``cli``) prints a page's generated part.
"""

from __future__ import annotations

import argparse
import html
import inspect
import re
import sys
import textwrap
from typing import Any

MARKER = re.compile(r"<!-- generated: (\w+) -->")


# -- YAML reference ------------------------------------------------------------------------


def _args_section(doc: str) -> dict[str, str]:
    """The ``Args:`` entries of a Google-style docstring, joined onto one line each."""
    entries: dict[str, str] = {}
    lines = inspect.cleandoc(doc).splitlines()
    try:
        start = next(n for n, line in enumerate(lines) if line.strip() == "Args:")
    except StopIteration:
        return entries
    current: str | None = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            break
        found = re.match(r"\s{4}(\*{0,2}\w+)(?: \([^)]*\))?:\s*(.*)", line)
        if found and indent == 4:
            current = found.group(1).lstrip("*")
            entries[current] = found.group(2)
        elif current is not None:
            entries[current] += " " + line.strip()
    return entries


def _summary(doc: str) -> str:
    """The first paragraph of a docstring, on one line."""
    first = inspect.cleandoc(doc).split("\n\n", 1)[0]
    return " ".join(first.split())


def _rst_to_md(text: str) -> str:
    """Turn the docstrings' reST roles and double backquotes into Markdown code spans."""
    text = re.sub(r":\w+:`~?([^`]+)`", lambda m: f"`{m.group(1).split('.')[-1]}`", text)
    return text.replace("``", "`")


def code(text: str) -> str:
    """``text`` as an HTML code span that a Markdown table cell keeps whole (``|`` included)."""
    return "<code>" + html.escape(text, quote=False).replace("|", "&#124;") + "</code>"


def _cell(text: str) -> str:
    """Markdown text for a table cell: its code spans in HTML, so ``|`` cannot split it."""
    parts = re.split(r"`([^`]*)`", text)
    return "".join(
        code(part) if n % 2 else html.escape(part, quote=False).replace("|", "&#124;")
        for n, part in enumerate(parts)
    )


def _type_of(parameter: inspect.Parameter) -> str:
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        return ""
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    return code(text)


def _default_of(parameter: inspect.Parameter) -> str:
    if parameter.default is inspect.Parameter.empty:
        return "**required**"
    return code(repr(parameter.default))


def _options_table(target: Any) -> list[str]:
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return ["Options cannot be read from this class's signature.", ""]
    meanings = _args_section(inspect.getdoc(target) or "")
    if isinstance(target, type):
        meanings = {**_args_section(inspect.getdoc(target.__init__) or ""), **meanings}
    rows = ["| Option | Type | Default | Meaning |", "|---|---|---|---|"]
    extra: str | None = None
    for name, parameter in signature.parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            extra = meanings.get(name, "")
            continue
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL or name in ("self",):
            continue
        meaning = _cell(_rst_to_md(meanings.get(name, "")))
        rows.append(f"| `{name}` | {_type_of(parameter)} | {_default_of(parameter)} | {meaning} |")
    if len(rows) == 2:
        rows = ["It takes no options."]
    if extra is not None:
        rows += ["", f"Any other option is accepted: {_rst_to_md(extra) or 'see the class.'}"]
    return [*rows, ""]


def yaml_reference() -> str:
    """The Markdown of every backend and processor short name and its options."""
    from eventrouter import registry
    from eventrouter.config.buffering import buffered_by_default
    from eventrouter.errors import MissingExtraError

    out: list[str] = []
    for kind, title in (("backend", "Backends"), ("processor", "Processors")):
        out += [f"## {title}", ""]
        seen: dict[str, str] = {}
        for name in registry.known_names(kind):
            out += [f"### `{name}`", ""]
            try:
                target = registry.resolve(kind, name)
            except MissingExtraError as exc:
                out += [f"Needs an extra that is not installed here: {exc}", ""]
                continue
            qualified = f"{target.__module__}.{getattr(target, '__qualname__', name)}"
            if qualified in seen:
                anchor = seen[qualified]
                out += [f"Another name for [`{anchor}`](#{anchor}).", ""]
                continue
            seen[qualified] = name
            out += [f"`{qualified}`: {_rst_to_md(_summary(inspect.getdoc(target) or ''))}", ""]
            if kind == "backend" and buffered_by_default(target):
                out += [
                    "Buffered by default in a YAML tree (give `buffered: false` to deliver "
                    "in the caller's thread).",
                    "",
                ]
            out += _options_table(target)
    return "\n".join(out)


# -- CLI reference -------------------------------------------------------------------------


def cli_reference() -> str:
    """argparse's help of ``eventrouter`` and of each of its commands, as Markdown."""
    from eventrouter import cli

    parser: argparse.ArgumentParser = cli._parser()
    width = "100"
    out = ["```text", _help(parser, width), "```", ""]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += [f"## `eventrouter {name}`", "", "```text", _help(sub, width), "```", ""]
    return "\n".join(out)


def _help(parser: argparse.ArgumentParser, width: str) -> str:
    import os

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = width
    try:
        return textwrap.dedent(parser.format_help()).rstrip()
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


GENERATORS = {"yaml": yaml_reference, "cli": cli_reference}


def expand(markdown: str) -> str:
    """Replace each ``<!-- generated: NAME -->`` marker by what its generator writes."""
    return MARKER.sub(lambda m: GENERATORS[m.group(1)](), markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """MkDocs hook: expand the markers of every page."""
    return expand(markdown)


if __name__ == "__main__":
    print(GENERATORS[sys.argv[1]]())
