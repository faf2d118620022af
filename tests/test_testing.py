"""eventrouter.testing.capture_events, the helper for users' own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eventrouter import MemoryBackend, Tracker, TrackerNotRegisteredError
from eventrouter import tracker as tracker_module
from eventrouter.testing import capture_events


@pytest.fixture
def sink() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def registered(sink: MemoryBackend) -> Iterator[Tracker]:
    tracker = Tracker(backends={"sink": sink})
    tracker_module.register_tracker(tracker)
    yield tracker
    tracker_module.unregister_tracker()


def test_capture_events_collects_emitted_events_without_routing_them(
    registered: Tracker, sink: MemoryBackend
) -> None:
    with capture_events() as events:
        tracker_module.emit("video.played", {"v": 1})
    assert [e["name"] for e in events] == ["video.played"]
    assert sink.events == []
    tracker_module.emit("after")
    assert sink.names() == ["after"]


def test_capture_events_can_pass_events_through(registered: Tracker, sink: MemoryBackend) -> None:
    with capture_events(registered, passthrough=True) as events:
        registered.emit("a")
    assert len(events) == 1
    assert sink.names() == ["a"]


def test_capture_events_works_with_no_tracker_registered() -> None:
    tracker_module.unregister_tracker()
    with capture_events() as events:
        tracker_module.emit("a", {"x": 1})
    assert events[0]["data"] == {"x": 1}
    with pytest.raises(TrackerNotRegisteredError):
        tracker_module.get_tracker()


def test_captured_events_are_copies_the_code_under_test_cannot_change() -> None:
    data = {"items": [1]}
    with capture_events() as events:
        tracker_module.emit("a", data)
    data["items"].append(2)
    assert events[0]["data"] == {"items": [1]}


def test_the_real_router_is_back_after_the_block_even_on_error(
    registered: Tracker, sink: MemoryBackend
) -> None:
    original = registered.router
    with pytest.raises(RuntimeError), capture_events():
        raise RuntimeError("test failed")
    assert registered.router is original
