"""The dead-letter file: whole records or none, never raising, read back past damage."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import needs_fork, run_in_fork

from eventrouter import MemoryBackend, RoutingBackend, Tracker, build_event, deadletter
from eventrouter.deadletter import DeadLetterFile, read_dead_letters
from eventrouter.typing import Event


class Down:
    def send(self, event: Event) -> None:
        raise ConnectionError("server down")


def test_a_failed_delivery_is_written_with_its_destination_and_error(tmp_path: Path) -> None:
    path = tmp_path / "dead" / "letters.jsonl"
    good = MemoryBackend()
    router = RoutingBackend({"down": Down(), "good": good}, dead_letter=path)
    event = build_event("video.played", {"at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)})
    router.send(event)
    [record] = list(read_dead_letters(path))
    assert record["destination"] == "down"
    assert record["error"] == "ConnectionError"
    assert record["event"]["id"] == event["id"]
    assert record["event"]["data"] == {"at": "2026-01-01T00:00:00+00:00"}
    assert len(good.events) == 1
    assert router.stats()["dead_letter"] == {"written": 1, "write_errors": 0, "lossy": 0}


def test_a_record_has_the_contract_keys_in_order(tmp_path: Path) -> None:
    dead = DeadLetterFile(tmp_path / "dl.jsonl")
    first = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert dead.write(
        build_event("a"),
        destination="analytics.segment",
        error=TimeoutError("quoting data: secret"),
        attempts=4,
        first_failure=first,
        last_failure=dt.datetime(2026, 1, 1, 11),
    )
    line = (tmp_path / "dl.jsonl").read_text()
    assert line.startswith(
        '{"destination":"analytics.segment","error":"TimeoutError","attempts":4,'
    )
    assert "secret" not in line
    [record] = list(read_dead_letters(tmp_path / "dl.jsonl"))
    assert record["first_failure"] == "2026-01-01T10:00:00.000000+00:00"
    assert record["last_failure"] == "2026-01-01T11:00:00.000000+00:00"
    assert "lossy" not in record


def test_the_tracker_passes_its_dead_letter_file_to_the_root_router(tmp_path: Path) -> None:
    tracker = Tracker(backends={"down": Down()}, dead_letter=tmp_path / "dl.jsonl")
    tracker.emit("a")
    tracker.emit("b")
    assert [r["event"]["name"] for r in read_dead_letters(tmp_path / "dl.jsonl")] == ["a", "b"]


def test_a_dead_letter_path_that_is_a_folder_is_counted_not_raised(tmp_path: Path) -> None:
    router = RoutingBackend({"down": Down()}, dead_letter=tmp_path)
    router.send(build_event("a"))
    assert router.stats()["dead_letter"] == {"written": 0, "write_errors": 1, "lossy": 0}


def test_write_many_appends_every_event_and_backend_is_an_alias(tmp_path: Path) -> None:
    dead = DeadLetterFile(tmp_path / "dl.jsonl")
    dead.write_many([build_event("a"), build_event("b")], destination="segment", error="HTTP 500")
    dead.write(build_event("c"), backend="mongo", error=TimeoutError())
    records = list(read_dead_letters(tmp_path / "dl.jsonl"))
    assert [(r["event"]["name"], r["destination"], r["error"]) for r in records] == [
        ("a", "segment", "HTTP 500"),
        ("b", "segment", "HTTP 500"),
        ("c", "mongo", "TimeoutError"),
    ]


# -- values the encoding cannot take -----------------------------------------------------


class RaisingTz(dt.tzinfo):
    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        raise RuntimeError("no offset")

    def dst(self, when: dt.datetime | None) -> dt.timedelta:
        raise RuntimeError("no dst")

    def tzname(self, when: dt.datetime | None) -> str:
        raise RuntimeError("no name")


class RaisingKey:
    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparing")

    def __str__(self) -> str:
        raise RuntimeError("no str")


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        10**5000,
        dt.datetime(2026, 1, 1, tzinfo=RaisingTz()),
        {RaisingKey(): 1},
    ],
    ids=["datetime-overflowing-in-utc", "int-over-4300-digits", "raising-tzinfo", "raising-key"],
)
def test_a_value_the_encoder_cannot_take_is_written_lossily(tmp_path: Path, value: object) -> None:
    dead = DeadLetterFile(tmp_path / "dl.jsonl")
    event = build_event("hostile", {"value": value, "kept": "yes"})
    assert dead.write(event, destination="x", error="DeliveryError") is True
    [record] = list(read_dead_letters(tmp_path / "dl.jsonl"))
    assert record["lossy"] is True
    assert record["event"]["id"] == event["id"]
    assert record["event"]["data"]["kept"] == "yes"
    assert dead.stats() == {"written": 1, "write_errors": 0, "lossy": 1}


def test_nothing_after_build_event_raises_into_emit_with_hostile_values(tmp_path: Path) -> None:
    tracker = Tracker(backends={"down": Down()}, dead_letter=tmp_path / "dl.jsonl")
    tracker.emit("hostile", {"when": dt.datetime(2026, 1, 1, tzinfo=RaisingTz()), "n": 10**5000})
    [record] = list(read_dead_letters(tmp_path / "dl.jsonl"))
    assert record["event"]["name"] == "hostile"


# -- a full disk ---------------------------------------------------------------------------


def test_a_short_write_counts_only_whole_records_and_the_reader_skips_the_fragment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "dl.jsonl"
    dead = DeadLetterFile(path)
    real_write = os.write
    budget: list[int | None] = [None]  # whole; then (below) cut short; disk full; space again

    def short(fd: int, data: bytes) -> int:
        limit = budget.pop(0) if budget else None
        if limit == 0:
            raise OSError(28, "No space left on device")
        return real_write(fd, data if limit is None else data[:limit])

    monkeypatch.setattr(deadletter, "_write", short)
    events = [build_event("e", {"n": n, "pad": "x" * 100}) for n in range(4)]
    assert dead.write(events[0], destination="d", error="E") is True
    one = path.stat().st_size  # the records are all about this long
    budget.extend([one + one // 2, 0])
    assert dead.write_many(events[1:3], destination="d", error="E") == 1  # events[1:2]
    assert dead.stats()["written"] == 2  # the first record of the pair fitted whole
    assert dead.write(events[3], destination="d", error="E") is True
    reader = read_dead_letters(path)
    assert [r["event"]["data"]["n"] for r in reader] == [0, 1, 3]
    assert reader.damaged == 1
    assert dead.stats() == {"written": 3, "write_errors": 1, "lossy": 0}


def test_dev_full_is_counted_not_raised() -> None:
    if not Path("/dev/full").exists():
        pytest.skip("this system has no /dev/full")
    dead = DeadLetterFile("/dev/full")
    assert dead.write(build_event("a"), destination="d", error="E") is False
    assert dead.stats()["write_errors"] == 1
    dead.close()


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the short-write fake covers it")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_a_real_full_filesystem_loses_no_counted_record(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "fs", "64k") as folder:
        path = folder / "dl.jsonl"
        dead = DeadLetterFile(path)
        results = [
            dead.write_many(
                [build_event("e", {"n": n, "i": i, "pad": "x" * 700}) for i in range(3)],
                destination="d",
                error="E",
            )
            for n in range(60)
        ]
        dead.close()
        assert sum(results) < 180  # the disk did fill up
        reader = read_dead_letters(path)
        records = list(reader)
        stats = dead.stats()
        assert len(records) == stats["written"] == sum(results)
        assert stats["written"] + stats["write_errors"] == 180
        assert reader.damaged <= 1


# -- rotation, reading, fork ----------------------------------------------------------------


def test_rotation_by_size_keeps_the_given_number_of_backups(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    dead = DeadLetterFile(path, max_bytes=1000, backups=2)
    for n in range(12):
        assert dead.write(build_event("e", {"n": n, "pad": "x" * 300}), destination="d", error="E")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dl.jsonl", "dl.jsonl.1", "dl.jsonl.2"]
    for file in tmp_path.iterdir():
        assert file.stat().st_size <= 1000
    kept = [
        r["event"]["data"]["n"]
        for name in (".2", ".1", "")
        for r in read_dead_letters(f"{path}{name}")
    ]
    assert kept == sorted(kept)
    assert kept[-1] == 11


def test_a_file_rotated_by_another_writer_is_reopened(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    dead = DeadLetterFile(path)
    dead.write(build_event("a"), destination="d", error="E")
    path.rename(tmp_path / "moved.jsonl")
    dead.write(build_event("b"), destination="d", error="E")
    assert [r["event"]["name"] for r in read_dead_letters(path)] == ["b"]


def test_the_reader_skips_and_counts_damaged_lines(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    dead = DeadLetterFile(path)
    dead.write(build_event("a"), destination="d", error="E")
    with path.open("a") as handle:
        handle.write('not json\n\n{"no": "event"}\n\xff\n{"destination":"d","event":{"na')
    dead.write(build_event("b"), destination="d", error="E")  # glued to the fragment
    reader = read_dead_letters(path)
    assert [r["event"]["name"] for r in reader] == ["a", "b"]
    assert reader.damaged == 4
    assert reader.damaged_lines == [2, 4, 5, 6]


def test_records_of_the_former_format_are_read_with_the_current_keys(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text(
        '{"failed_at":"2026-01-01T00:00:00+00:00","backend":"seg","error":"E","event":{"id":"1"}}\n'
    )
    [record] = list(read_dead_letters(path))
    assert (record["destination"], record["attempts"], record["last_failure"]) == (
        "seg",
        1,
        "2026-01-01T00:00:00+00:00",
    )


@needs_fork
def test_a_forked_child_writes_through_its_own_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    dead = DeadLetterFile(path)
    dead.write(build_event("parent"), destination="d", error="E")

    def child() -> int:
        ok = dead.write(build_event("child"), destination="d", error="E")
        return 0 if ok and dead.stats()["written"] == 1 else 1

    assert run_in_fork(child) == 0
    dead.write(build_event("parent again"), destination="d", error="E")
    names = [r["event"]["name"] for r in read_dead_letters(path)]
    assert names == ["parent", "child", "parent again"]


def test_a_buffered_node_counts_a_partly_written_batch_record_by_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventrouter.backends.buffered import BufferedBackend
    from eventrouter.errors import DeliveryError

    class Down:  # retryable, no retries: each batch of 50 is dead-lettered in one write
        def send_batch(self, events: list[Event]) -> None:
            raise DeliveryError("down")

        def send(self, event: Event) -> None:
            raise DeliveryError("down")

    real_write = os.write
    room = [3000]  # bytes left on the "disk"

    def short(fd: int, data: bytes) -> int:
        if room[0] <= 0:
            raise OSError(28, "No space left on device")
        done = real_write(fd, data[: room[0]])
        room[0] -= done
        return done

    monkeypatch.setattr(deadletter, "_write", short)
    path = tmp_path / "dl.jsonl"
    node = BufferedBackend(
        Down(), batch_size=50, flush_interval=0.01, max_retries=0, dead_letter=path
    )
    for n in range(100):
        node.send(build_event("e", {"n": n, "pad": "x" * 100}))
    node.close(30)
    stats = node.stats()
    on_disk = list(read_dead_letters(path))
    assert 0 < len(on_disk) < 100
    assert stats["dead_lettered"] == len(on_disk)
    assert stats["dead_lettered"] + stats["lost"] == 100
