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


def _rst_to_md(text: str, module: str | None = None) -> str:
    """Turn the docstrings' reST roles and double backquotes into Markdown code spans.

    A ``:data:`NAME``` role naming a constant of ``module`` (``DEFAULT_HOST``) becomes its
    value (``'https://api.segment.io'``): a reader of the YAML reference cannot look it up.
    """

    def role(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2).lstrip("~")
        short = name.split(".")[-1]
        if kind == "data" and module is not None:
            owner = sys.modules.get(module)
            if "." in name:
                owner = sys.modules.get(name.rsplit(".", 1)[0], owner)
            if owner is not None and hasattr(owner, short):
                return f"`{getattr(owner, short)!r}`"
        return f"`{short}`"

    text = re.sub(r":(\w+):`([^`]+)`", role, text)
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


def _options_table(target: Any, *, leave_out: tuple[str, ...] = ()) -> list[str]:
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
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL or name in ("self", *leave_out):
            continue
        meaning = _cell(_rst_to_md(meanings.get(name, ""), getattr(target, "__module__", None)))
        rows.append(f"| `{name}` | {_type_of(parameter)} | {_default_of(parameter)} | {meaning} |")
    if len(rows) == 2:
        rows = ["It takes no options."]
    if extra is not None:
        rows += ["", f"Any other option is accepted: {_rst_to_md(extra) or 'see the class.'}"]
    return [*rows, ""]


def yaml_reference() -> str:
    """The Markdown of every backend and processor short name and its options."""
    from eventrouter import registry
    from eventrouter.backends.buffered import BufferedBackend
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
            if kind == "backend" and target is BufferedBackend:
                out += [*_buffered_key(), *_options_table(target, leave_out=("backend",))]
                continue
            if kind == "backend" and buffered_by_default(target):
                out += [
                    "Buffered by default in a YAML tree (give `buffered: false` to deliver "
                    "in the caller's thread).",
                    "",
                ]
            out += _extra_sections(target)
            out += _options_table(target)
    return "\n".join(out)


def _buffered_key() -> list[str]:
    """How a YAML tree buffers a node: with its ``buffered:`` key, not a ``buffered`` node
    (whose required ``backend``, an instance, no YAML can give)."""
    return [
        "In a YAML tree this is **not a node class but a key of a backend node**: "
        "`buffered: true` (the defaults), `buffered: false`, or `buffered:` with a mapping of "
        "the options below wraps that node in a buffered node. In Python, "
        "`BufferedBackend(backend, ...)` wraps any backend instance.",
        "",
        "```yaml",
        "backends:",
        "  analytics:",
        "    class: segment",
        "    buffered: {max_queue: 50000, when_full: drop_oldest}",
        '    options: {write_key: "${SEGMENT_WRITE_KEY}"}',
        "```",
        "",
        "Options of the `buffered:` mapping (the tree's `dead_letter` is the default "
        "`dead_letter`):",
        "",
    ]


def _extra_sections(target: Any) -> list[str]:
    """Module-level lists a class's options refer to (``SOURCES`` of ``enrich``), as the
    values an option accepts."""
    module = sys.modules.get(getattr(target, "__module__", ""))
    sources = getattr(module, "SOURCES", None)
    if not isinstance(sources, tuple):
        return []
    forms = ", ".join(code(form) for form in sources)
    return [
        f"The source forms a `sources` value may take: {forms}. "
        "`hostname` is the machine's host name, `pid` the current process id, "
        "`version:<distribution>` an installed distribution's version, `env:<NAME>` an "
        "environment variable (an error at load time when it is not set, unless given "
        "`:-<default>`). Each is read once, at load time.",
        "",
    ]


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
