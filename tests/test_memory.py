"""MemoryBackend keeps what it is sent."""

from __future__ import annotations

import pytest

from eventrouter import MemoryBackend, build_event


def test_keeps_events_in_order() -> None:
    sink = MemoryBackend()
    sink.send_batch([build_event("a"), build_event("b")])
    sink.send(build_event("c"))
    assert sink.names() == ["a", "b", "c"]
    assert sink.find(lambda e: e["name"] == "b")[0]["name"] == "b"


def test_max_events_discards_the_oldest_and_counts_them() -> None:
    sink = MemoryBackend(max_events=2)
    for name in "abcd":
        sink.send(build_event(name))
    assert sink.names() == ["c", "d"]
    assert sink.stats() == {"kept": 2, "discarded": 2}


def test_clear_forgets_events() -> None:
    sink = MemoryBackend()
    sink.send(build_event("a"))
    sink.clear()
    assert sink.events == []


def test_invalid_max_events_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_events"):
        MemoryBackend(max_events=0)
