"""Where things are: paths in the settings and in the translated configuration, and the
lines of settings read from a YAML file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eventrouter.config.read import LineDict, LineList


@dataclass(frozen=True)
class Where:
    """A node's options: their path in the settings, the translated node's path, the line."""

    path: str
    to: str
    line: int | None


def key_line(container: Any, key: Any) -> int | None:
    if isinstance(container, LineDict):
        return container.key_lines.get(key, container.line)
    return None


def value_line(container: Any, key: Any) -> int | None:
    if isinstance(container, LineDict):
        return container.value_lines.get(key, container.line)
    if isinstance(container, LineList) and isinstance(key, int) and key < len(container):
        return container.item_lines[key]
    return None


def line_of(value: Any, fallback: int | None) -> int | None:
    if isinstance(value, LineDict | LineList) and value.line is not None:
        return value.line
    return fallback


def is_engine(value: Any) -> bool:
    return isinstance(value, Mapping) and "ENGINE" in value


def join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def location(where: Where) -> tuple[str, int | None]:
    return where.path, where.line
