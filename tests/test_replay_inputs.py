"""``replay`` bounds its input as ``route`` does: only regular files, lines of bounded
length, and records whose event is not complete are completed or refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import eventrouter._deadletter_read as reading
from eventrouter import RoutingBackend
from eventrouter.backends.memory import MemoryBackend
from eventrouter.replay import replay


def tree() -> tuple[RoutingBackend, MemoryBackend]:
    memory = MemoryBackend()
    return RoutingBackend(backends={"archive": memory}), memory


def record(event: dict[str, object]) -> str:
    return json.dumps({"destination": "archive", "error": "X", "attempts": 1, "event": event})


@pytest.mark.parametrize("kind", ["fifo", "directory", "missing"])
def test_an_input_that_is_not_a_regular_file_is_refused_before_anything_is_read(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "input.dl"
    if kind == "fifo":
        os.mkfifo(path)  # opening it would wait for a writer forever
    elif kind == "directory":
        path.mkdir()
    root, memory = tree()
    with pytest.raises(ValueError, match=r"input\.dl"):
        replay(root, [path], dead_letter=tmp_path / "new.dl")
    assert not (tmp_path / "input.dl.replayed").exists()  # never renamed
    assert kind == "missing" or path.exists()
    assert memory.events == []


def test_a_line_longer_than_the_bound_is_damaged_and_read_past(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reading, "MAX_RECORD_BYTES", 1000)
    path = tmp_path / "input.dl"
    kept = record({"id": "2", "name": "after", "data": {}, "context": {}})
    path.write_bytes(b"\0" * 5000 + b"\n" + kept.encode() + b"\n" + b"0" * 3000)
    root, memory = tree()
    report = replay(root, [path], dead_letter=tmp_path / "new.dl")
    assert report.damaged == 2  # the zeros, then the unterminated tail
    assert [e["id"] for e in memory.events] == ["2"]


def test_an_envelope_with_missing_keys_is_completed(tmp_path: Path) -> None:
    path = tmp_path / "input.dl"
    path.write_text(record({"name": "bare", "data": {"x": 1}}) + "\n")
    root, memory = tree()
    report = replay(root, [path], dead_letter=tmp_path / "new.dl")
    assert report.ok
    [event] = memory.events
    assert event["name"] == "bare"
    assert event["data"] == {"x": 1}
    assert event["context"] == {}
    assert event["timestamp"] is None
    assert isinstance(event["id"], str)
    assert event["id"]


@pytest.mark.parametrize(
    "event",
    [
        {"data": {}},
        {"name": "", "data": {}},
        {"name": "a", "data": [1]},
        {"name": "a", "context": 3},
    ],
    ids=["no-name", "empty-name", "data-list", "context-int"],
)
def test_an_envelope_that_cannot_be_an_event_is_refused_and_counted(
    tmp_path: Path, event: dict[str, object]
) -> None:
    path = tmp_path / "input.dl"
    path.write_text(record(event) + "\n" + record({"id": "ok", "name": "good"}) + "\n")
    root, memory = tree()
    report = replay(root, [path], dead_letter=tmp_path / "new.dl")
    assert report.damaged == 1
    assert not report.ok
    assert [e["id"] for e in memory.events] == ["ok"]
