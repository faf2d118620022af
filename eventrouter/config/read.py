"""Reading a configuration: YAML with the position of everything in it.

Only ``yaml.safe_load`` semantics: any tag SafeLoader does not know (``!!python/object``,
``!!python/name``, ``!include`` ...) is not constructed; it becomes an :class:`UnsafeTag`
marker that the validator reports with its path and line.

Positions live on the loaded containers: mappings are :class:`LineDict`, sequences
:class:`LineList`. :func:`key_line`, :func:`value_line`, :func:`line_of` and
:func:`line_within` are the one way to ask for a line; they answer ``None`` for plain
containers (a configuration given as a mapping in code has no lines).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from eventrouter.errors import ConfigError, ConfigIssue

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "LineDict",
    "LineList",
    "UnsafeTag",
    "YamlProblem",
    "key_line",
    "line_of",
    "line_within",
    "load_yaml",
    "read_file",
    "value_line",
]


MAX_CONFIG_BYTES = 8 * 1024 * 1024
"""The largest configuration file read (a routing tree is a few kilobytes)."""

MAX_DEPTH = 200
"""The deepest nesting of mappings and lists a configuration may have."""


class LineDict(dict[Any, Any]):
    """A dict that knows the 1-based line of each key and of each value.

    Attributes:
        line: the line the mapping starts on.
        key_lines: the line of each key.
        value_lines: the line of each value.
    """

    key_lines: dict[Any, int]
    value_lines: dict[Any, int]
    line: int | None

    def __init__(self) -> None:
        super().__init__()
        self.key_lines = {}
        self.value_lines = {}
        self.line = None


class LineList(list[Any]):
    """A list that knows the 1-based line of each item.

    Attributes:
        line: the line the sequence starts on.
        item_lines: the line of each item.
    """

    item_lines: list[int]
    line: int | None

    def __init__(self) -> None:
        super().__init__()
        self.item_lines = []
        self.line = None


def key_line(container: Any, key: Any) -> int | None:
    """The line of ``key`` in a loaded mapping (the mapping's own line if it has no such
    key); ``None`` for anything not loaded from YAML."""
    if isinstance(container, LineDict):
        return container.key_lines.get(key, container.line)
    return None


def value_line(container: Any, key: Any) -> int | None:
    """The line of the value under ``key`` (a mapping key or a list index) in a loaded
    container (the container's own line if there is no such value); ``None`` for anything
    not loaded from YAML."""
    if isinstance(container, LineDict):
        return container.value_lines.get(key, container.line)
    if isinstance(container, LineList) and isinstance(key, int):
        return container.item_lines[key] if 0 <= key < len(container) else container.line
    return None


def line_of(value: Any, fallback: int | None) -> int | None:
    """The line a loaded mapping or list starts on, else ``fallback``."""
    if isinstance(value, LineDict | LineList) and value.line is not None:
        return value.line
    return fallback


def line_within(value: Any, steps: Iterable[Any], line: int | None) -> int | None:
    """The line of the item reached from ``value`` (which is on ``line``) by ``steps``
    (mapping keys and list indexes); the line of the deepest item found on the way."""
    for step in steps:
        if isinstance(value, LineList) and isinstance(step, int) and 0 <= step < len(value):
            line, value = value.item_lines[step], value[step]
        elif isinstance(value, LineDict) and _hashable(step) and step in value:
            line, value = value.value_lines[step], value[step]
        else:
            break
    return line


@dataclass(frozen=True, slots=True)
class UnsafeTag:
    """Stands for a node whose tag was refused; nothing was constructed."""

    tag: str
    line: int


@dataclass(slots=True)
class YamlProblem:
    """A problem found while reading (not validating) the YAML text."""

    message: str
    line: int | None


def _short_tag(tag: str) -> str:
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix) :] if tag.startswith(prefix) else tag


_MAP_TAG = "tag:yaml.org,2002:map"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _LineLoader(yaml.SafeLoader):
    """SafeLoader building :class:`LineDict` / :class:`LineList` and refusing unknown tags."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.problems: list[YamlProblem] = []

    def construct_line_mapping(self, node: yaml.MappingNode) -> LineDict:
        result = LineDict()
        result.line = node.start_mark.line + 1
        explicit = 0
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self._check_merge_source(value_node)
            else:
                explicit += 1
        # flatten_mapping puts the merged pairs first, in an order where a later pair wins;
        # explicit keys follow and override them, as yaml.safe_load does.
        self.flatten_mapping(node)
        merged = len(node.value) - explicit
        explicit_lines: dict[Any, int] = {}
        for index, (key_node, value_node) in enumerate(node.value):
            key = self.construct_object(key_node, deep=True)
            key_line = key_node.start_mark.line + 1
            if isinstance(key, UnsafeTag) or not _hashable(key):
                self.problems.append(YamlProblem("a mapping key must be a plain string", key_line))
                continue
            if index >= merged:
                if key in explicit_lines:
                    self.problems.append(
                        YamlProblem(
                            f"duplicate key {key!r} (first given on line {explicit_lines[key]})",
                            key_line,
                        )
                    )
                    continue
                explicit_lines[key] = key_line
            result[key] = self.construct_object(value_node, deep=True)
            result.key_lines[key] = key_line
            result.value_lines[key] = value_node.start_mark.line + 1
        return result

    def _check_merge_source(self, node: yaml.Node) -> None:
        """Report a tag on what ``<<`` merges: flatten_mapping would silently drop it."""
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for source in sources:
            if isinstance(source, yaml.MappingNode) and source.tag != _MAP_TAG:
                self.problems.append(
                    YamlProblem(
                        f"the YAML tag {_short_tag(source.tag)} is not allowed: configurations "
                        "are loaded with safe semantics only",
                        source.start_mark.line + 1,
                    )
                )

    def construct_line_sequence(self, node: yaml.SequenceNode) -> LineList:
        result = LineList()
        result.line = node.start_mark.line + 1
        for child in node.value:
            result.append(self.construct_object(child, deep=True))
            result.item_lines.append(child.start_mark.line + 1)
        return result

    def construct_refused(self, node: yaml.Node) -> UnsafeTag:
        return UnsafeTag(_short_tag(node.tag), node.start_mark.line + 1)


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_line_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_line_sequence)
_LineLoader.add_constructor(None, _LineLoader.construct_refused)


def load_yaml(text: str) -> tuple[Any, list[YamlProblem]]:
    """Parse one YAML document safely, keeping line numbers.

    Args:
        text: the YAML text.

    Returns:
        The data (mappings as :class:`LineDict`, sequences as :class:`LineList`, refused tags
        as :class:`UnsafeTag`) and the problems found while reading. On a syntax error the
        data is ``None`` and the single problem names the line.
    """
    too_deep = _too_deep(text)
    if too_deep is not None:
        return None, [too_deep]
    try:
        loader = _LineLoader(text)  # checks that every character is printable
    except yaml.reader.ReaderError as exc:
        where = text.count("\n", 0, exc.position) + 1
        return None, [YamlProblem(f"YAML error: {exc.reason} (character {exc.character!r})", where)]
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        return None, [YamlProblem(f"YAML syntax error: {problem}", line)]
    except yaml.YAMLError as exc:
        return None, [YamlProblem(f"YAML error: {exc}", None)]
    except RecursionError:  # aliases nesting what _too_deep counted once
        return None, [YamlProblem(f"nested more than {MAX_DEPTH} levels deep", None)]
    finally:
        loader.dispose()
    return data, loader.problems


_EVENT_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser when PyYAML has it (the events are the same, faster)."""


def _too_deep(text: str) -> YamlProblem | None:
    """The problem of mappings and lists nested deeper than :data:`MAX_DEPTH` (where the
    parser, which recurses, would fail), found by walking the parser's events, which does
    not recurse; ``None`` when not too deep or not YAML (the loader then says why)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_EVENT_LOADER):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark is not None else None
                    return YamlProblem(
                        f"nested more than {MAX_DEPTH} levels deep: a routing configuration "
                        "is a few levels of mappings and lists",
                        line,
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return None
    return None


class _Refused(Exception):
    """A file that is not read: not a regular file, or too large."""


def _read_text(name: str) -> str:
    """The text of a regular file of at most :data:`MAX_CONFIG_BYTES`.

    A FIFO would block until someone writes to it and a device (``/dev/zero``) never ends:
    both are refused before being opened.
    """
    mode = os.stat(name).st_mode
    if not stat.S_ISREG(mode):
        kind = (
            "a directory"
            if stat.S_ISDIR(mode)
            else "a FIFO (named pipe)"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file"
        )
        raise _Refused(f"cannot read the configuration from {kind}: give a YAML file")
    with open(name, "rb") as handle:
        data = handle.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise _Refused(
            f"the file is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB: a routing "
            "configuration is a few kilobytes"
        )
    return data.decode("utf-8")


def read_file(file: str | os.PathLike[str]) -> tuple[Any, list[ConfigIssue]]:
    """Read and parse a YAML configuration file.

    Returns:
        The data (as :func:`load_yaml` gives it) and the problems found while reading, as
        issues naming the file and line.

    Raises:
        ConfigError: the file cannot be read, is not a regular file, is too large, is not
            UTF-8, is not YAML, or is empty.
    """
    name = os.fspath(file)
    try:
        text = _read_text(name)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError([ConfigIssue(f"cannot read the file: {reason}", "", name)]) from None
    except _Refused as exc:
        raise ConfigError([ConfigIssue(str(exc), "", name)]) from None
    except UnicodeDecodeError as exc:
        where = f" (byte {exc.start + 1})"
        raise ConfigError([ConfigIssue(f"the file is not UTF-8 text{where}", "", name)]) from None
    data, problems = load_yaml(text)
    issues = [ConfigIssue(p.message, "", name, p.line) for p in problems]
    if data is None and not issues:
        issues.append(
            ConfigIssue("the configuration is empty: it needs at least `backends`", "", name, 1)
        )
    if data is None:
        raise ConfigError(issues)
    return data, issues
