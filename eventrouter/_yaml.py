"""A safe YAML loader that remembers where every key, value and list item came from.

Only ``yaml.safe_load`` semantics: any tag SafeLoader does not know (``!!python/object``,
``!!python/name``, ``!include`` ...) is not constructed; it becomes an :class:`UnsafeTag`
marker that the configuration validator reports with its path and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["LineDict", "LineList", "UnsafeTag", "YamlProblem", "load_yaml"]


class LineDict(dict[Any, Any]):
    """A dict that knows the 1-based line of each key and of each value."""

    key_lines: dict[Any, int]
    value_lines: dict[Any, int]
    line: int | None

    def __init__(self) -> None:
        super().__init__()
        self.key_lines = {}
        self.value_lines = {}
        self.line = None


class LineList(list[Any]):
    """A list that knows the 1-based line of each item."""

    item_lines: list[int]
    line: int | None

    def __init__(self) -> None:
        super().__init__()
        self.item_lines = []
        self.line = None


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
    finally:
        loader.dispose()
    return data, loader.problems
