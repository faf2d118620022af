"""MemoryBackend: keeps the events it receives in a list (tests, notebooks, debugging)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from eventrouter import _fork
from eventrouter.errors import OptionError
from eventrouter.typing import Event

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """Collects every event it is sent in :attr:`events`, oldest first.

    Args:
        max_events: keep at most this many (the oldest are discarded and counted in
            ``stats()["discarded"]``); ``None`` keeps all.

    The events are stored as received: a router hands its backends its own copy, so they are
    not affected by later processing elsewhere in the tree.
    """

    def __init__(self, max_events: int | None = None) -> None:
        if max_events is not None and (type(max_events) is not int or max_events < 1):
            raise OptionError(
                "max_events", f"max_events must be a positive int or None, not {max_events!r}"
            )
        self.max_events = max_events
        self.events: list[Event] = []
        self._discarded = 0
        self._lock = threading.Lock()
        _fork.register(self)

    def send(self, event: Event) -> None:
        """Keep ``event``."""
        if self.max_events is None:
            self.events.append(event)  # list.append is atomic
            return
        with self._lock:
            self.events.append(event)
            overflow = len(self.events) - self.max_events
            if overflow > 0:
                del self.events[:overflow]
                self._discarded += overflow

    def send_batch(self, events: Sequence[Event]) -> None:
        """Keep every event of ``events``."""
        for event in events:
            self.send(event)

    def names(self) -> list[str]:
        """The names of the kept events, in order (handy in assertions)."""
        return [event.get("name", "") for event in self.events]

    def find(self, predicate: Callable[[Event], bool]) -> list[Event]:
        """The kept events for which ``predicate(event)`` is true."""
        return [event for event in self.events if predicate(event)]

    def clear(self) -> None:
        """Forget every kept event."""
        with self._lock:
            self.events.clear()

    def stats(self) -> dict[str, Any]:
        """``{"kept": n, "discarded": n}``."""
        return {"kept": len(self.events), "discarded": self._discarded}

    def __repr__(self) -> str:
        return f"MemoryBackend({len(self.events)} events)"
