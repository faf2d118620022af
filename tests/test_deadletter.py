"""Events a backend fails on are written to the dead-letter file, not lost."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from eventrouter import MemoryBackend, RoutingBackend, Tracker, build_event
from eventrouter.deadletter import DeadLetterFile, read_dead_letters
from eventrouter.typing import Event


class Down:
    def send(self, event: Event) -> None:
        raise ConnectionError("server down")


def test_a_failed_delivery_is_written_with_the_backend_and_error(tmp_path: Path) -> None:
    path = tmp_path / "dead" / "letters.jsonl"
    good = MemoryBackend()
    router = RoutingBackend({"down": Down(), "good": good}, dead_letter=path)
    event = build_event("video.played", {"at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)})
    router.send(event)
    [record] = list(read_dead_letters(path))
    assert record["backend"] == "down"
    assert record["error"] == "ConnectionError"
    assert record["event"]["id"] == event["id"]
    assert record["event"]["data"] == {"at": "2026-01-01T00:00:00+00:00"}
    assert len(good.events) == 1
    assert router.stats()["dead_letter"] == {"written": 1, "write_errors": 0}


def test_the_tracker_passes_its_dead_letter_file_to_the_root_router(tmp_path: Path) -> None:
    tracker = Tracker(backends={"down": Down()}, dead_letter=tmp_path / "dl.jsonl")
    tracker.emit("a")
    tracker.emit("b")
    assert [r["event"]["name"] for r in read_dead_letters(tmp_path / "dl.jsonl")] == ["a", "b"]


def test_a_dead_letter_path_that_is_a_folder_is_counted_not_raised(tmp_path: Path) -> None:
    router = RoutingBackend({"down": Down()}, dead_letter=tmp_path)
    router.send(build_event("a"))
    assert router.stats()["dead_letter"] == {"written": 0, "write_errors": 1}


def test_write_many_appends_every_event(tmp_path: Path) -> None:
    dead = DeadLetterFile(tmp_path / "dl.jsonl")
    dead.write_many([build_event("a"), build_event("b")], backend="segment", error="HTTP 500")
    dead.write(build_event("c"), backend="segment", error=TimeoutError())
    records = list(read_dead_letters(tmp_path / "dl.jsonl"))
    assert [(r["event"]["name"], r["error"]) for r in records] == [
        ("a", "HTTP 500"),
        ("b", "HTTP 500"),
        ("c", "TimeoutError"),
    ]


def test_reading_a_corrupt_line_names_its_number(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    path.write_text('{"event": {}}\n\nnot json\n')
    with pytest.raises(ValueError, match=r"dl.jsonl:3: not JSON"):
        list(read_dead_letters(path))
