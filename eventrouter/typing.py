"""Types for code that works with eventrouter: structural, so nothing needs inheriting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

__all__ = ["Backend", "BatchBackend", "Closable", "Event", "Flushable", "Processor"]

Event: TypeAlias = dict[str, Any]
"""An event envelope: ``id``, ``name``, ``timestamp``, ``data``, ``context``."""


@runtime_checkable
class Backend(Protocol):
    """Anything with ``send(event)``; it must not mutate the event it is given."""

    def send(self, event: Event) -> None: ...


@runtime_checkable
class BatchBackend(Backend, Protocol):
    """A backend that can also take many events in one call."""

    def send_batch(self, events: Sequence[Event]) -> None: ...


@runtime_checkable
class Flushable(Protocol):
    """Optional hook: deliver what is buffered, waiting at most ``timeout`` seconds."""

    def flush(self, timeout: float | None = None) -> None: ...


@runtime_checkable
class Closable(Protocol):
    """Optional hook: release connections and threads; the node is not used afterwards."""

    def close(self) -> None: ...


class Processor(Protocol):
    """A callable that may mutate the event, return a replacement, or ``None`` to keep it.

    This is the one statement of the processor contract. Raising
    :class:`eventrouter.EventEmissionExit` vetoes the event for this branch; any other
    exception is logged and counted, and the chain goes on. A processor class checks its
    options in its constructor and refuses a bad one with
    :class:`~eventrouter.errors.OptionError` naming it, so that a configuration file reports
    the problem at that option's line.
    """

    def __call__(self, event: Event) -> Event | None: ...
