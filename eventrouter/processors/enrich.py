"""Enrich: add fields to every event (static values, callables, or facts about the process)."""

from __future__ import annotations

import importlib.metadata
import os
import socket
from collections.abc import Mapping
from typing import Any, Literal

from eventrouter import _fork
from eventrouter._options import refusing
from eventrouter.errors import OptionError, OptionTypeError
from eventrouter.event import IMMUTABLE_TYPES, copy_event
from eventrouter.paths import MISSING, ParsedPath, format_path, get_path, parse_path, set_path
from eventrouter.typing import Event

__all__ = ["SOURCES", "Enrich"]

SOURCES = ("hostname", "pid", "version:<distribution>", "env:<NAME>", "env:<NAME>:-<default>")
"""The forms accepted as values of ``Enrich(sources=...)``."""

_pid = os.getpid()


def _refresh_pid() -> None:
    global _pid  # noqa: PLW0603 - one process-wide fact, refreshed in forked children
    _pid = os.getpid()


_fork.at_fork_in_child(_refresh_pid)

_Kind = Literal["value", "copy", "call", "pid"]


def _resolve_source(path: str, source: object) -> tuple[_Kind, Any]:
    """Turn a ``sources`` entry into what to set per event, reading it now (at load time)."""
    if not isinstance(source, str):
        raise OptionTypeError(
            "sources",
            f"sources[{path!r}] must be a string, not {type(source).__name__}",
            where=(path,),
        )
    if source == "hostname":
        return "value", socket.gethostname()
    if source == "pid":
        return "pid", None
    if source.startswith("version:"):
        distribution = source[len("version:") :]
        try:
            return "value", importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            raise OptionError(
                "sources",
                f"sources[{path!r}]: no installed distribution is named {distribution!r}",
                where=(path,),
            ) from None
    if source.startswith("env:"):
        name, has_default, default = source[len("env:") :].partition(":-")
        value = os.environ.get(name)
        if value is None and not has_default:
            raise OptionError(
                "sources",
                f"sources[{path!r}]: the environment variable {name!r} is not set; set it, or "
                f"give a default: 'env:{name}:-<default>'",
                where=(path,),
            )
        return "value", value if value is not None else default
    raise OptionError(
        "sources",
        f"sources[{path!r}]: unknown source {source!r}; expected one of {', '.join(SOURCES)}",
        where=(path,),
    )


class Enrich:
    """Set fields on every event.

    YAML short name ``enrich``.

    ``fields`` maps dotted paths (:mod:`eventrouter.paths`) to values. A value that is
    callable is called with no arguments for every event and its result is set (in Python:
    ``Enrich({"context.request_id": current_request_id})``); any other value is set as it is
    (a mutable value, such as a dict or a list, is copied for each event so that events never
    share it).

    ``sources`` maps dotted paths to facts about the running process, read once at load time
    (so YAML, which cannot hold callables, can ask for them):

    - ``hostname``: the machine's host name (``socket.gethostname()``);
    - ``pid``: the current process id (kept right in forked children);
    - ``version:<distribution>``: the installed version of a distribution, e.g.
      ``version:my-lms``; an unknown distribution is an error at load time;
    - ``env:<NAME>``: an environment variable, an error at load time when it is not set;
      ``env:<NAME>:-<default>`` falls back to ``<default>``. (In YAML, the loader's
      ``${NAME}`` / ``${NAME:-default}`` expansion works in ``fields`` values too.)

    Intermediate dicts are created as needed. Fields are set in order, ``fields`` first.

    Args:
        fields: dotted path -> static value or zero-argument callable.
        sources: dotted path -> one of the source forms above.
        overwrite: when ``False``, a field already present in the event is left as it is.

    Raises:
        OptionError: a path is invalid, a source is unknown or cannot be read, or nothing is
            given to set (a :class:`ValueError` naming the option and the entry).
    """

    __slots__ = ("_steps", "overwrite")

    def __init__(
        self,
        fields: Mapping[str, Any] | None = None,
        sources: Mapping[str, str] | None = None,
        overwrite: bool = True,
    ) -> None:
        steps: list[tuple[ParsedPath, _Kind, Any]] = []
        for path, value in (fields or {}).items():
            if callable(value):
                kind: _Kind = "call"
            elif type(value) in IMMUTABLE_TYPES:
                kind = "value"
            else:
                kind = "copy"
            with refusing("fields", path):
                steps.append((parse_path(path), kind, value))
        for path, source in (sources or {}).items():
            kind, value = _resolve_source(path, source)
            with refusing("sources", path):
                steps.append((parse_path(path), kind, value))
        if not steps:
            raise OptionError("fields", "Enrich needs `fields`, `sources`, or both: nothing to add")
        self._steps: tuple[tuple[ParsedPath, _Kind, Any], ...] = tuple(steps)
        self.overwrite = overwrite

    def __call__(self, event: Event) -> Event:
        """Set the fields on ``event`` in place and return it.

        Raises:
            TypeError: a path runs through a value that is not a mapping (e.g. ``data.x.y``
                when ``data.x`` is a string); the router logs and counts it.
        """
        for path, kind, value in self._steps:
            if not self.overwrite and get_path(event, path) is not MISSING:
                continue
            if kind == "value":
                set_path(event, path, value)
            elif kind == "call":
                set_path(event, path, value())
            elif kind == "pid":
                set_path(event, path, _pid)
            else:
                set_path(event, path, copy_event(value))
        return event

    def __repr__(self) -> str:
        paths = ", ".join(format_path(path) for path, _, _ in self._steps)
        return f"Enrich(<{paths}>)"
