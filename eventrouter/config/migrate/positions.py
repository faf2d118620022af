"""Where things are: paths in the settings and in the translated configuration.

Lines of settings read from a YAML file are asked for with :mod:`eventrouter.config.read`'s
``key_line``, ``value_line`` and ``line_of``, the one API for positions (re-exported here for
the other modules of this package).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eventrouter.config.read import key_line, line_of, value_line

__all__ = ["Where", "is_engine", "join", "key_line", "line_of", "location", "value_line"]


@dataclass(frozen=True)
class Where:
    """A node's options: their path in the settings, the translated node's path, the line."""

    path: str
    to: str
    line: int | None


def is_engine(value: Any) -> bool:
    """Whether ``value`` is an event-tracking node: a mapping with an ``ENGINE`` key."""
    return isinstance(value, Mapping) and "ENGINE" in value


def join(path: str, key: Any) -> str:
    """The dotted path of ``key`` inside the node at ``path`` (``""`` for the root)."""
    return f"{path}.{key}" if path else str(key)


def location(where: Where) -> tuple[str, int | None]:
    """The settings path and line of ``where``, as problems are reported."""
    return where.path, where.line
