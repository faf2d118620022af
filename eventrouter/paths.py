"""Dotted paths that address nested fields of an event, the same way everywhere.

A path such as ``context.user_id`` names the value ``event["context"]["user_id"]``. Every
processor (and any backend or config option that points into an event) uses this module, so
the rules are the same everywhere:

- Segments are separated by ``.``; no segment may be empty (``a..b``, ``.a``, ``a.`` and ``""``
  are rejected with :class:`ValueError`).
- A key that contains a dot is written with a backslash before the dot: ``data.user\\.name``
  is the key ``user.name`` inside ``data``. ``\\\\`` is a literal backslash; any other
  backslash escape is an error. In Python you may also pass the segments as a list or tuple
  of strings (``["data", "user.name"]``), which are taken literally.
- A segment made only of ASCII digits (``data.items.0.id``) is a list index when the value it
  is applied to is a list or tuple, and a plain string key (``"0"``) when it is a mapping.
  Negative indexes are not supported.
- Reading never raises: a missing key, an index out of range, or a step into a value that is
  neither a mapping nor a list is "missing" (:data:`MISSING`, or the default given).
- Writing (:func:`set_path`) creates missing intermediate **dicts** (never lists); it raises
  :class:`TypeError` when an intermediate value exists but cannot hold the next segment, and
  :class:`IndexError` for an index past the end of a list.

Parse a path once with :func:`parse_path` (at construction time); the operations take the
parsed tuple so that the per-event work is a plain loop with no string handling.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, MutableMapping, MutableSequence, Sequence
from typing import Any, Final, NamedTuple, TypeAlias

__all__ = [
    "MISSING",
    "ParsedPath",
    "Segment",
    "delete_path",
    "format_path",
    "get_path",
    "has_path",
    "parse_path",
    "pop_path",
    "set_path",
]


class _Missing(enum.Enum):
    MISSING = enum.auto()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing.MISSING
"""Returned by :func:`get_path` and :func:`pop_path` when the path is absent (and no default
is given). Test for it with ``is MISSING``; it is falsy."""


class Segment(NamedTuple):
    """One step of a parsed path.

    Attributes:
        key: the mapping key this step looks up.
        list_index: the list index this step uses on a list or tuple, or ``None`` when the segment
            is not made of digits (then it never addresses a list element).
    """

    key: str
    list_index: int | None


ParsedPath: TypeAlias = tuple[Segment, ...]
"""A path parsed by :func:`parse_path`."""


def _segment(key: str) -> Segment:
    return Segment(key, int(key) if key.isascii() and key.isdigit() else None)


def parse_path(path: str | Sequence[str]) -> ParsedPath:
    """Parse a dotted path into the tuple the other functions take.

    Args:
        path: a dotted path (``"context.user_id"``, ``"data.user\\.name"``) or a sequence of
            literal segments (``["data", "user.name"]``).

    Returns:
        The parsed path, a tuple of :class:`Segment`.

    Raises:
        TypeError: ``path`` is neither a string nor a sequence of strings.
        ValueError: the path is empty, has an empty segment or a bad backslash escape; the
            message names the path.
    """
    if isinstance(path, str):
        keys = _split(path)
    elif isinstance(path, Sequence) and all(isinstance(key, str) for key in path):
        keys = list(path)
        if not keys or any(key == "" for key in keys):
            raise ValueError(f"invalid path {list(path)!r}: segments must be non-empty strings")
    else:
        raise TypeError(f"a path must be a dotted string, not {type(path).__name__}: {path!r}")
    return tuple(_segment(key) for key in keys)


def _split(path: str) -> list[str]:
    if "\\" not in path:
        keys = path.split(".")
    else:
        keys = []
        current: list[str] = []
        chars = iter(path)
        for char in chars:
            if char == "\\":
                escaped = next(chars, "")
                if escaped not in (".", "\\"):
                    raise ValueError(
                        f"invalid path {path!r}: a backslash must be followed by '.' or '\\'"
                    )
                current.append(escaped)
            elif char == ".":
                keys.append("".join(current))
                current = []
            else:
                current.append(char)
        keys.append("".join(current))
    if any(key == "" for key in keys):
        raise ValueError(
            f"invalid path {path!r}: segments are separated by single dots and may not be empty"
        )
    return keys


def format_path(path: ParsedPath | Sequence[str | int]) -> str:
    """Write a path back as a dotted string, escaping dots and backslashes in keys.

    Accepts a parsed path or a plain sequence of keys and indexes (as found in
    e.g. ``jsonschema`` error locations). ``format_path(parse_path(s)) == s`` for any valid
    path ``s``.
    """
    parts = []
    for step in path:
        key = step.key if isinstance(step, Segment) else str(step)
        parts.append(key.replace("\\", "\\\\").replace(".", "\\."))
    return ".".join(parts)


def get_path(obj: Any, path: ParsedPath, default: Any = MISSING) -> Any:
    """Return the value at ``path`` inside ``obj``, or ``default`` when it is absent.

    Never raises for a missing or unreachable value.

    Args:
        obj: the event (or any nested mapping / list).
        path: a path from :func:`parse_path`.
        default: what to return when the path is absent; :data:`MISSING` unless given.
    """
    current = obj
    for key, index in path:
        if type(current) is dict:
            try:
                current = current[key]
            except KeyError:
                return default
        elif isinstance(current, Mapping):
            # .get, not [], so reading never runs a defaultdict's __missing__ (which would
            # insert the key, and make the path look present).
            current = current.get(key, MISSING)
            if current is MISSING:
                return default
        elif index is not None and isinstance(current, (list, tuple)):
            if index >= len(current):
                return default
            current = current[index]
        else:
            return default
    return current


def has_path(obj: Any, path: ParsedPath) -> bool:
    """Whether ``path`` is present inside ``obj`` (a present ``None`` counts)."""
    return get_path(obj, path) is not MISSING


def _parent(obj: Any, path: ParsedPath) -> Any:
    """The container holding the last segment of ``path``, or MISSING."""
    return get_path(obj, path[:-1]) if len(path) > 1 else obj


def set_path(obj: Any, path: ParsedPath, value: Any) -> None:
    """Set the value at ``path`` inside ``obj``, creating missing intermediate dicts.

    Args:
        obj: the event (or any nested mutable mapping / list).
        path: a path from :func:`parse_path`.
        value: the value to store.

    Raises:
        TypeError: a value on the way exists but is neither a mutable mapping nor a list the
            segment can index (e.g. ``data.x.y`` where ``data.x`` is a string).
        IndexError: a list index is past the end of the list (lists are never extended).
    """
    current = obj
    last = len(path) - 1
    for position, (key, index) in enumerate(path):
        if type(current) is dict or isinstance(current, MutableMapping):
            if position == last:
                current[key] = value
                return
            child = current.get(key, MISSING)
            if child is MISSING:
                child = current[key] = {}
            current = child
        elif index is not None and isinstance(current, MutableSequence):
            if index >= len(current):
                raise IndexError(
                    f"cannot set {format_path(path)!r}: index {index} is past the end of a "
                    f"list of {len(current)}"
                )
            if position == last:
                current[index] = value
                return
            current = current[index]
        else:
            where = format_path(path[:position]) or "the root"
            raise TypeError(
                f"cannot set {format_path(path)!r}: {where} holds a {type(current).__name__}, "
                f"which cannot hold {key!r}"
            )


def pop_path(obj: Any, path: ParsedPath, default: Any = MISSING) -> Any:
    """Remove the value at ``path`` and return it, or return ``default`` when absent.

    A list index removes the element (the following elements shift down). Values inside
    immutable containers (tuples, read-only mappings) cannot be removed: ``TypeError``.
    """
    parent = _parent(obj, path)
    key, index = path[-1]
    if type(parent) is dict:
        return parent.pop(key, default)
    if isinstance(parent, Mapping):
        if key not in parent:
            return default
        if not isinstance(parent, MutableMapping):
            raise TypeError(f"cannot remove {format_path(path)!r}: its mapping is read-only")
        return parent.pop(key)
    if index is not None and isinstance(parent, (list, tuple)):
        if index >= len(parent):
            return default
        if not isinstance(parent, MutableSequence):
            raise TypeError(f"cannot remove {format_path(path)!r}: it is inside a tuple")
        return parent.pop(index)
    return default


def delete_path(obj: Any, path: ParsedPath) -> bool:
    """Remove the value at ``path``; return whether there was one."""
    return pop_path(obj, path) is not MISSING
