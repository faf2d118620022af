"""Helpers for testing code that emits events.

from eventrouter.testing import capture_events

def test_play_emits_an_event():
    with capture_events() as events:
        player.play("intro")
    assert [e["name"] for e in events] == ["video.played"]
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from eventrouter import tracker as _tracker_module
from eventrouter.backends.routing import RoutingBackend
from eventrouter.event import copy_event
from eventrouter.tracker import Tracker, _registry
from eventrouter.typing import Event

__all__ = ["capture_events"]


class _CapturingRouter(RoutingBackend):
    """Stands in for a tracker's root router: records each event, optionally routes it on."""

    def __init__(self, original: RoutingBackend, events: list[Event], passthrough: bool) -> None:
        super().__init__()
        self.original = original
        self.captured = events
        self.passthrough = passthrough
        self.backends = original.backends
        self.processors = original.processors

    def send(self, event: Event) -> None:
        self.captured.append(copy_event(event))
        if self.passthrough:
            self.original.send(event)

    def stats(self) -> dict[str, object]:
        return self.original.stats()


@contextmanager
def capture_events(
    tracker: Tracker | str = "default", *, passthrough: bool = False
) -> Iterator[list[Event]]:
    """Collect the events a tracker emits inside the ``with`` block.

    Args:
        tracker: a :class:`Tracker`, or the name it is registered under. When no tracker is
            registered under that name, a bare one is registered for the block (and removed
            afterwards), so code calling ``eventrouter.tracker.emit`` works in tests.
        passthrough: also route the events through the tracker's real tree. By default they
            are only captured, so tests send nothing anywhere.

    Yields:
        The list the emitted envelopes are appended to (copies, as emitted: before any
        processor runs). Events emitted inside ``tracker.muted()`` (an ignored request
        path) are not emitted, so not captured.
    """
    events: list[Event] = []
    temporary: str | None = None
    if isinstance(tracker, str):
        with _tracker_module._registry_lock:
            found = _registry.get(tracker)
            if found is None:
                found = _registry[tracker] = Tracker()
                temporary = tracker
        target = found
    else:
        target = tracker
    original = target.router
    target.router = _CapturingRouter(original, events, passthrough)
    try:
        yield events
    finally:
        target.router = original
        if temporary is not None:
            with _tracker_module._registry_lock:
                if _registry.get(temporary) is target:
                    del _registry[temporary]
