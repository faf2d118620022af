"""Redact: replace personal or secret values before events leave the process."""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

from eventrouter._options import each_item, refuse_bare_string
from eventrouter.errors import EventEmissionExit, OptionError
from eventrouter.event import IMMUTABLE_TYPES
from eventrouter.paths import ParsedPath, format_path, parse_path
from eventrouter.patterns import PatternSet
from eventrouter.typing import Event

__all__ = ["Redact"]

logger = logging.getLogger(__name__)

_LEAVES = IMMUTABLE_TYPES
"""Exact types that hold no keys (strings, numbers, datetimes...): never walked into."""
_CONTAINERS: frozenset[type] = frozenset({dict, list})
_ABSENT: Any = object()
_MAX_DECISIONS = 4096
"""How many distinct keys' decisions a Redact remembers before starting afresh."""


class Redact:
    """Replace the values at given paths, and under keys matching patterns, keeping the keys.

    YAML short name ``redact``.

    - ``fields`` are dotted paths (:mod:`eventrouter.paths`); a missing path is fine. When a
      path meets a list where it expects a mapping key, the rest of the path is applied to
      every element, so ``data.students.email`` redacts the ``email`` of every student in a
      list. A digit segment on a list still addresses that one element.
    - ``patterns`` are name patterns (:mod:`eventrouter.patterns`) matched, **ignoring case**,
      against every string key at any depth, in mappings, lists and tuples, including the
      envelope's own keys: ``["*password*", "*token*"]`` redacts ``password``,
      ``resetToken``, ``data.users.0.api_token`` and a key with dots in it such as
      ``user.password`` (in key patterns ``*`` matches any characters, dots included).
    - The whole value is replaced, even when it is a mapping or a list, so nothing of it
      remains. Tuples on the way are rebuilt.
    - It fails closed: if redaction cannot complete (a read-only mapping on the way, data
      nested past Python's recursion limit...), the event is vetoed rather than passed on
      unredacted, and a warning names the event's ``name`` and ``id``.

    Args:
        fields: dotted paths whose values are replaced.
        replacement: the value put in place of each redacted value.
        patterns: key patterns; any key matching one has its value replaced, at any depth.

    Raises:
        TypeError: ``fields`` or ``patterns`` is a bare string.
        ValueError: a path or pattern is invalid, or neither ``fields`` nor ``patterns`` is
            given.
    """

    __slots__ = ("_decisions", "_fields", "_keys", "_paths", "replacement")

    def __init__(
        self,
        fields: list[str] | None = None,
        replacement: str | None = "[REDACTED]",
        patterns: list[str] | None = None,
    ) -> None:
        for option, value in (("fields", fields), ("patterns", patterns)):
            refuse_bare_string(option, value)
        self._paths: tuple[ParsedPath, ...] = tuple(each_item("fields", fields or (), parse_path))
        # Each path as (the keys leading to its last key, its last key, the parsed path): the
        # walk through plain dicts needs nothing else.
        self._fields = tuple(
            (tuple(segment.key for segment in path[:-1]), path[-1].key, path)
            for path in self._paths
        )
        self._keys = (
            PatternSet(patterns, ignore_case=True, dotted=False, cache_size=0) if patterns else None
        )
        self._decisions: dict[Any, bool] = {}
        if not self._paths and self._keys is None:
            raise OptionError(
                "fields", "Redact needs `fields`, `patterns`, or both: nothing to redact"
            )
        self.replacement = replacement

    def __call__(self, event: Event) -> Event:
        """Redact ``event`` in place and return it.

        Raises:
            EventEmissionExit: redaction could not complete (the event is not passed on).
        """
        try:
            replacement = self.replacement
            for leading, last, path in self._fields:
                node: Any = event
                for key in leading:  # the common case: dicts all the way
                    if type(node) is not dict:
                        break
                    node = node.get(key, _ABSENT)
                else:
                    if type(node) is dict:
                        if last in node:
                            node[last] = replacement
                        continue
                if node is _ABSENT or type(node) in _LEAVES:
                    continue  # the path is not in this event
                self._redact_path(event, path, 0)  # lists, tuples or other mappings on the way
            if self._keys is not None:
                self._redact_keys(event, set())
        except Exception as exc:
            logger.warning(
                "could not redact event %r (id %r): %s; the event is vetoed",
                event.get("name") if isinstance(event, Mapping) else None,
                event.get("id") if isinstance(event, Mapping) else None,
                type(exc).__name__,
            )
            raise EventEmissionExit("redaction failed") from exc
        return event

    def _redact_path(self, node: Any, path: ParsedPath, position: int) -> Any:
        """Redact ``path[position:]`` inside ``node``; return node, or its replacement tuple."""
        key, list_index = path[position]
        last = position == len(path) - 1
        if type(node) is dict or isinstance(node, Mapping):
            if key not in node:
                return node
            child = node[key]
            new = self.replacement if last else self._redact_path(child, path, position + 1)
            if new is not child:
                _assign(node, key, new, path)
            return node
        if isinstance(node, (list, tuple)):
            if list_index is not None:
                if list_index >= len(node):
                    return node
                child = node[list_index]
                new = self.replacement if last else self._redact_path(child, path, position + 1)
                return _replace_item(node, list_index, child, new)
            for item_index, child in enumerate(node):  # fan out over the elements
                new = self._redact_path(child, path, position)
                node = _replace_item(node, item_index, child, new)
        return node

    def _redact_keys(self, node: Any, seen: set[int]) -> Any:
        """Redact matching keys anywhere in ``node``; return node, or its replacement tuple."""
        if id(node) in seen:
            return node
        if type(node) is dict or isinstance(node, Mapping):
            seen.add(id(node))
            decisions = self._decisions
            changes: list[tuple[Any, Any]] | None = None
            for key, value in node.items():
                hit = decisions.get(key)
                if hit is None:
                    hit = self._decide(key)
                if hit:
                    new = self.replacement
                elif type(value) in _CONTAINERS or (
                    type(value) not in _LEAVES and isinstance(value, (Mapping, list, tuple))
                ):
                    new = self._redact_keys(value, seen)
                else:
                    continue
                if new is not value:
                    if changes is None:
                        changes = []
                    changes.append((key, new))
            for key, new in changes or ():
                _assign(node, key, new, None)
        elif isinstance(node, (list, tuple)):
            seen.add(id(node))
            for item_index, child in enumerate(node):
                if type(child) in _CONTAINERS or (
                    type(child) not in _LEAVES and isinstance(child, (Mapping, list, tuple))
                ):
                    node = _replace_item(node, item_index, child, self._redact_keys(child, seen))
        return node

    def _decide(self, key: Any) -> bool:
        """Whether ``key`` is redacted, remembered for the next events (keys repeat)."""
        assert self._keys is not None
        hit = self._keys.matches(key)
        decisions = self._decisions
        if len(decisions) >= _MAX_DECISIONS:
            decisions.clear()
        decisions[key] = hit
        return hit

    def __repr__(self) -> str:
        fields = [format_path(path) for path in self._paths]
        patterns = list(self._keys.patterns) if self._keys is not None else None
        return f"Redact(fields={fields!r}, replacement={self.replacement!r}, patterns={patterns!r})"


def _assign(node: Mapping[Any, Any], key: Any, value: Any, path: ParsedPath | None) -> None:
    if type(node) is not dict and not isinstance(node, MutableMapping):
        where = format_path(path) if path is not None else repr(key)
        raise TypeError(f"cannot redact {where}: {type(node).__name__} is read-only")
    node[key] = value


def _replace_item(node: Any, index: int, old: Any, new: Any) -> Any:
    """Put ``new`` at ``index`` of a list (in place) or tuple (rebuilt); return the sequence."""
    if new is old:
        return node
    if isinstance(node, list):
        node[index] = new
        return node
    return (*node[:index], new, *node[index + 1 :])
