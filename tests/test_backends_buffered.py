"""A buffered node delivers from its own thread; every event ends delivered or dead-lettered."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path

import pytest
from buffered_helpers import (
    WAIT,
    Down,
    OneByOne,
    Poisoned,
    Recorder,
    Stalled,
    assert_accounted,
    dead_ids,
)

from eventrouter import build_event
from eventrouter.backends.buffered import BufferedBackend
from eventrouter.deadletter import read_dead_letters
from eventrouter.errors import DeliveryError, OptionError
from eventrouter.typing import Event

FAST = {"backoff": (0.001, 0.005), "flush_interval": 0.01}


def emit(node: BufferedBackend, count: int, **data: object) -> list[str]:
    ids = []
    for n in range(count):
        event = build_event("test.event", {"n": n, **data})
        ids.append(event["id"])
        node.send(event)
    return ids


def test_events_are_delivered_in_batches_by_the_worker(tmp_path: Path) -> None:
    backend = Recorder()
    node = BufferedBackend(backend, batch_size=10, dead_letter=tmp_path / "dl", **FAST)
    ids = emit(node, 95)
    assert node.flush(WAIT)
    assert backend.ids == ids
    assert backend.calls <= 95 // 10 + 5  # batched, not one call per event
    node.close(WAIT)
    assert_accounted(node, ids, backend.ids, tmp_path / "dl")


def test_a_lone_event_is_sent_when_the_timer_fires_without_flush(tmp_path: Path) -> None:
    backend = Recorder()
    node = BufferedBackend(backend, batch_size=100, flush_interval=0.01)
    [event_id] = emit(node, 1)
    done = threading.Event()

    def watch() -> None:
        while not backend.ids:
            done.wait(0.005)
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    assert done.wait(WAIT)
    assert backend.ids == [event_id]
    node.close(WAIT)


def test_the_backend_receives_an_equal_snapshot_not_the_callers_dict() -> None:
    seen: list[Event] = []

    class Keep:
        def send(self, event: Event) -> None:
            seen.append(event)

    node = BufferedBackend(Keep(), **FAST)
    event = build_event("a", {"at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "items": [1]})
    node.send(event)
    event["data"]["items"].append(2)  # a mutation after send does not reach the backend
    node.close(WAIT)
    assert seen[0]["data"] == {"at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "items": [1]}


def test_a_backend_failing_n_times_then_recovering_delivers_everything(tmp_path: Path) -> None:
    backend = Recorder(fail_times=3)
    node = BufferedBackend(backend, batch_size=20, dead_letter=tmp_path / "dl", **FAST)
    ids = emit(node, 50)
    node.close(WAIT)
    stats = assert_accounted(node, ids, backend.ids, tmp_path / "dl")
    assert sorted(backend.ids) == sorted(ids)
    assert stats["retried"] >= 3
    assert stats["dead_lettered"] == 0


def test_retry_after_from_the_error_is_honoured(tmp_path: Path) -> None:
    backend = Recorder(fail_times=1, retry_after=0.05)
    node = BufferedBackend(backend, backoff=(0.0, 0.0), flush_interval=0.0)
    waits: list[float] = []
    original = node._pause

    def spy(delay: float) -> bool:
        waits.append(delay)
        return original(delay)

    node._pause = spy  # type: ignore[method-assign]
    emit(node, 1)
    node.close(WAIT)
    assert waits == [0.05]
    assert len(backend.ids) == 1


def test_an_always_failing_backend_dead_letters_each_event_once(tmp_path: Path) -> None:
    backend = Down()
    node = BufferedBackend(
        backend, batch_size=7, max_retries=2, dead_letter=tmp_path / "dl", **FAST
    )
    ids = emit(node, 30)
    node.close(WAIT)
    stats = assert_accounted(node, ids, [], tmp_path / "dl")
    assert stats["dead_lettered"] == 30
    records = list(read_dead_letters(tmp_path / "dl"))
    assert {r["attempts"] for r in records} == {3}  # the first try and 2 retries
    assert {r["error"] for r in records} == {"DeliveryError"}
    first = dt.datetime.fromisoformat(records[0]["first_failure"])
    last = dt.datetime.fromisoformat(records[0]["last_failure"])
    assert first <= last
    assert first.utcoffset() == dt.timedelta(0)


def test_a_permanent_error_is_not_retried(tmp_path: Path) -> None:
    node = BufferedBackend(Poisoned(), dead_letter=tmp_path / "dl", **FAST)
    ids = emit(node, 1, poison=True)
    node.close(WAIT)
    stats = assert_accounted(node, ids, [], tmp_path / "dl")
    assert stats["retried"] == 0
    assert node.backend.calls == 1  # type: ignore[attr-defined]


def test_a_poison_event_does_not_take_its_batch_down(tmp_path: Path) -> None:
    backend = Poisoned()
    node = BufferedBackend(backend, batch_size=64, dead_letter=tmp_path / "dl", **FAST)
    ids = emit(node, 30)
    poison = build_event("test.poison", {"poison": True})
    node.send(poison)
    ids += [poison["id"], *emit(node, 33)]
    node.close(WAIT)
    assert_accounted(node, ids, backend.ids, tmp_path / "dl")
    assert dead_ids(tmp_path / "dl") == [poison["id"]]
    assert backend.calls <= 2 * 7 + 2  # bisecting: about 2 log2(64) calls, not 64
    [record] = list(read_dead_letters(tmp_path / "dl"))
    assert record["attempts"] >= 6  # every call it took part in, from the whole batch down


def test_a_backend_without_send_batch_is_sent_event_by_event(tmp_path: Path) -> None:
    backend = OneByOne()
    node = BufferedBackend(backend, dead_letter=tmp_path / "dl", **FAST)
    ids = emit(node, 5)
    poison = build_event("test.poison", {"poison": True})
    node.send(poison)
    ids += [poison["id"], *emit(node, 5)]
    node.close(WAIT)
    assert_accounted(node, ids, backend.ids, tmp_path / "dl")
    assert dead_ids(tmp_path / "dl") == [poison["id"]]


def test_send_never_raises_and_an_unencodable_event_is_dead_lettered(tmp_path: Path) -> None:
    class Unencodable:
        def __reduce__(self) -> object:
            raise TypeError("no pickling")

        def __str__(self) -> str:
            raise RuntimeError("no str either")

    class Key:
        def __hash__(self) -> int:
            return 1

        def __eq__(self, other: object) -> bool:
            raise RuntimeError("no comparing")

    backend = Recorder()
    node = BufferedBackend(backend, dead_letter=tmp_path / "dl", **FAST)
    good = emit(node, 2)
    bad = build_event("test.bad", {Key(): Unencodable(), "n": 10**5000})
    node.send(bad)
    node.close(WAIT)
    # An object pickle refuses is kept by reference; JSON sizing then fails: dead letter.
    assert_accounted(node, [*good, bad["id"]], backend.ids, tmp_path / "dl")
    [record] = list(read_dead_letters(tmp_path / "dl"))
    assert record["error"] == "Unencodable"
    assert record["lossy"] is True


def test_an_event_larger_than_max_bytes_goes_to_the_dead_letter(tmp_path: Path) -> None:
    backend = Recorder()
    node = BufferedBackend(backend, max_bytes=2000, dead_letter=tmp_path / "dl", **FAST)
    ids = emit(node, 1, blob="x" * 5000)
    node.close(WAIT)
    assert_accounted(node, ids, [], tmp_path / "dl")
    assert [r["error"] for r in read_dead_letters(tmp_path / "dl")] == ["TooLarge"]


# -- a stalled backend and a tiny queue, under each when_full ------------------------------


def stalled_node(tmp_path: Path, when_full: str, **options: object) -> BufferedBackend:
    node = BufferedBackend(
        Stalled(),
        max_queue=5,
        batch_size=2,
        when_full=when_full,
        dead_letter=tmp_path / "dl",
        **{**FAST, **options},  # type: ignore[arg-type]
    )
    first = build_event("test.first")
    node.send(first)
    assert node.backend.entered.wait(WAIT)  # type: ignore[attr-defined]
    node._emitted = [first["id"]]  # type: ignore[attr-defined]
    return node


@pytest.mark.slow
@pytest.mark.parametrize("when_full", ["dead_letter", "block"])
def test_a_full_queue_dead_letters_what_does_not_fit(tmp_path: Path, when_full: str) -> None:
    node = stalled_node(tmp_path, when_full, block_timeout=0.01)
    ids = node._emitted + emit(node, 20)  # type: ignore[attr-defined]
    stats = node.stats()
    assert stats["depth"] == 5
    assert stats["dead_lettered"] == 15
    assert dead_ids(tmp_path / "dl") == ids[6:]  # the newest ones did not fit
    assert {r["error"] for r in read_dead_letters(tmp_path / "dl")} == {"QueueFull"}
    node.backend.release()  # type: ignore[attr-defined]
    node.close(WAIT)
    assert_accounted(node, ids, node.backend.ids, tmp_path / "dl")  # type: ignore[attr-defined]
    assert node.backend.ids == ids[:6]  # type: ignore[attr-defined]


def test_block_waits_for_room_when_the_backend_catches_up(tmp_path: Path) -> None:
    node = stalled_node(tmp_path, "block", block_timeout=WAIT)
    ids = node._emitted + emit(node, 5)  # type: ignore[attr-defined]
    threading.Timer(0.05, node.backend.release).start()  # type: ignore[attr-defined]
    ids += emit(node, 10)  # blocks until the worker makes room, then fits
    node.close(WAIT)
    assert_accounted(node, ids, node.backend.ids, tmp_path / "dl")  # type: ignore[attr-defined]
    assert dead_ids(tmp_path / "dl") == []


@pytest.mark.parametrize(
    ("when_full", "kept"), [("drop_newest", slice(0, 6)), ("drop_oldest", None)]
)
def test_drops_are_counted_by_mode(tmp_path: Path, when_full: str, kept: slice | None) -> None:
    node = stalled_node(tmp_path, when_full)
    ids = node._emitted + emit(node, 20)  # type: ignore[attr-defined]
    assert node.stats()["dropped"] == {when_full: 15}
    node.backend.release()  # type: ignore[attr-defined]
    node.close(WAIT)
    assert_accounted(node, ids, node.backend.ids, tmp_path / "dl")  # type: ignore[attr-defined]
    expected = ids[kept] if kept else [ids[0], *ids[-5:]]
    assert node.backend.ids == expected  # type: ignore[attr-defined]


def test_drops_are_logged_at_most_once_per_ten_seconds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = stalled_node(tmp_path, "drop_newest")
    with caplog.at_level(logging.WARNING, logger="eventrouter.buffered"):
        emit(node, 50)
    assert len([r for r in caplog.records if "queue full" in r.getMessage()]) == 1
    node.backend.release()  # type: ignore[attr-defined]
    node.close(WAIT)


def test_the_queue_is_bounded_by_bytes_too(tmp_path: Path) -> None:
    node = stalled_node(tmp_path, "dead_letter", max_bytes=4000)
    node.max_queue = 10_000
    emit(node, 20, blob="x" * 900)
    stats = node.stats()
    assert 0 < stats["bytes"] <= 4000
    assert stats["depth"] < 5
    node.backend.release()  # type: ignore[attr-defined]
    node.close(WAIT)


def test_stats_report_depth_bytes_and_the_oldest_age(tmp_path: Path) -> None:
    node = stalled_node(tmp_path, "dead_letter")
    emit(node, 3)
    stats = node.stats()
    assert (stats["depth"], stats["in_flight"], stats["queued"]) == (3, 1, 4)
    assert stats["bytes"] > 0
    assert stats["oldest_age"] >= 0.0
    node.backend.release()  # type: ignore[attr-defined]
    node.close(WAIT)
    assert node.stats()["delivered"] == 4


# -- flush and close -----------------------------------------------------------------------


def test_flush_times_out_and_keeps_the_events_queued(tmp_path: Path) -> None:
    node = stalled_node(tmp_path, "dead_letter")
    ids = node._emitted + emit(node, 3)  # type: ignore[attr-defined]
    assert node.flush(0.01) is False
    assert node.stats()["depth"] == 3
    node.backend.release()  # type: ignore[attr-defined]
    assert node.flush(WAIT) is True
    node.close(WAIT)
    assert_accounted(node, ids, node.backend.ids, tmp_path / "dl")  # type: ignore[attr-defined]


def test_close_dead_letters_the_queue_and_the_batch_in_flight_after_its_timeout(
    tmp_path: Path,
) -> None:
    node = stalled_node(tmp_path, "dead_letter")
    ids = node._emitted + emit(node, 4)  # type: ignore[attr-defined]
    node.close(0.05)
    stats = assert_accounted(node, ids, [], tmp_path / "dl")
    assert stats["dead_lettered"] == 5
    errors = {r["event"]["id"]: r["error"] for r in read_dead_letters(tmp_path / "dl")}
    assert errors[ids[0]] == "InFlightAtClose"
    assert {errors[i] for i in ids[1:]} == {"Closed"}
    node.backend.release()  # type: ignore[attr-defined]  # the hung call ends and succeeds:
    node._worker.join(WAIT)  # type: ignore[union-attr]
    assert node.stats()["delivered"] == 0  # it was dead-lettered: not counted twice


def test_close_gives_up_retrying_at_its_timeout(tmp_path: Path) -> None:
    node = BufferedBackend(
        Down(), backoff=(WAIT, WAIT), dead_letter=tmp_path / "dl", flush_interval=0.0
    )
    ids = emit(node, 3)
    node.close(0.05)
    stats = assert_accounted(node, ids, [], tmp_path / "dl")
    assert stats["dead_lettered"] == 3


def test_send_after_close_goes_to_the_dead_letter(tmp_path: Path) -> None:
    node = BufferedBackend(Recorder(), dead_letter=tmp_path / "dl", **FAST)
    node.close(WAIT)
    ids = emit(node, 2)
    assert [r["error"] for r in read_dead_letters(tmp_path / "dl")] == ["Closed", "Closed"]
    assert_accounted(node, ids, [], tmp_path / "dl")


def test_close_closes_the_wrapped_backend_with_the_time_left() -> None:
    seen: list[float | None] = []

    class Closable(Recorder):
        def close(self, timeout: float | None = None) -> None:
            seen.append(timeout)

    node = BufferedBackend(Closable())
    node.close(WAIT)
    node.close(WAIT)  # closing twice is harmless
    assert len(seen) == 1
    assert seen[0] is not None
    assert 0 <= seen[0] <= WAIT


def test_without_a_dead_letter_file_given_up_events_are_counted_as_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = BufferedBackend(Down(), max_retries=0, **FAST)
    with caplog.at_level(logging.ERROR, logger="eventrouter.buffered"):
        emit(node, 2)
        node.close(WAIT)
    assert node.stats()["lost"] == 2
    assert "give the node a dead_letter file" in caplog.text
    assert "test.event" in caplog.text
    assert "'n'" not in caplog.text  # names and ids only, never the data


def test_bind_path_names_the_destination_and_reaches_the_wrapped_node(tmp_path: Path) -> None:
    bound: list[str] = []

    class Inner(Down):
        def bind_path(self, path: str) -> None:
            bound.append(path)

    node = BufferedBackend(Inner(), max_retries=0, dead_letter=tmp_path / "dl", **FAST)
    node.bind_path("analytics.segment")
    emit(node, 1)
    node.close(WAIT)
    assert bound == ["analytics.segment"]
    assert [r["destination"] for r in read_dead_letters(tmp_path / "dl")] == ["analytics.segment"]


@pytest.mark.slow
def test_many_threads_sending_lose_nothing(tmp_path: Path) -> None:
    backend = Recorder(fail_times=2)
    node = BufferedBackend(backend, max_queue=50, dead_letter=tmp_path / "dl", **FAST)
    ids: list[list[str]] = [[] for _ in range(4)]
    threads = [
        threading.Thread(target=lambda n=n: ids[n].extend(emit(node, 500))) for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    node.close(WAIT)
    assert_accounted(node, [i for part in ids for i in part], backend.ids, tmp_path / "dl")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_queue", 0),
        ("max_bytes", -1),
        ("batch_size", 1.5),
        ("max_retries", -1),
        ("flush_interval", -1),
        ("retry_deadline", "soon"),
        ("block_timeout", True),
        ("backoff", (2.0, 1.0)),
        ("backoff", "0.5"),
        ("when_full", "wait"),
    ],
)
def test_bad_options_raise_an_option_error_naming_them(option: str, value: object) -> None:
    with pytest.raises(OptionError) as caught:
        BufferedBackend(Recorder(), **{option: value})  # type: ignore[arg-type]
    assert caught.value.option == option


def test_a_backend_without_send_is_refused() -> None:
    with pytest.raises(ValueError, match="send"):
        BufferedBackend(object())  # type: ignore[arg-type]


def test_delivery_error_carries_retry_after() -> None:
    error = DeliveryError("slow down", retry_after=2.5)
    assert (error.retryable, error.retry_after) == (True, 2.5)


class _CountingCondition(threading.Condition):
    """A condition that counts its ``notify`` calls (each one can hand the worker the GIL)."""

    notified = 0

    def notify(self, n: int = 1) -> None:
        self.notified += 1
        super().notify(n)


def test_send_wakes_the_worker_only_when_it_waits_for_an_event(tmp_path: Path) -> None:
    # While the worker is busy (here: stalled in the backend), waking it is wasted work on
    # the caller's thread, and a GIL hand-off in the middle of the caller's request.
    backend = Stalled()
    dead = tmp_path / "dl"
    node = BufferedBackend(
        backend, batch_size=10, max_queue=5000, flush_interval=WAIT, dead_letter=dead
    )
    wake = _CountingCondition(node._lock)
    node._wake = wake
    ids = emit(node, 10)  # a full batch: the worker takes it and stalls in the backend
    assert backend.entered.wait(WAIT)
    before = wake.notified
    ids += emit(node, 1000)
    assert wake.notified == before
    backend.release()
    node.close(WAIT)
    assert_accounted(node, ids, backend.ids, dead)
    assert sorted(backend.ids) == sorted(ids)


def test_plain_events_are_copied_on_send_and_only_odd_ones_pickled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Unpickling on the worker held the GIL for each event, stalling the callers' threads
    # once per batch: events of dicts, lists and immutable values are copied instead.
    import pickle
    import types

    from eventrouter.backends import buffered

    calls = {"dumps": 0, "loads": 0}

    def dumps(value: object, protocol: int) -> bytes:
        calls["dumps"] += 1
        return pickle.dumps(value, protocol)

    def loads(data: bytes) -> object:
        calls["loads"] += 1
        return pickle.loads(data)

    monkeypatch.setattr(
        buffered, "pickle", types.SimpleNamespace(dumps=dumps, loads=loads, HIGHEST_PROTOCOL=5)
    )
    backend = Recorder()
    node = BufferedBackend(backend, dead_letter=tmp_path / "dl", **FAST)
    plain = emit(node, 50, nested={"list": [1, "two", None, dt.datetime.now(dt.UTC)]})
    odd = build_event("test.odd", {"pair": (1, 2)})
    node.send(odd)
    node.close(WAIT)
    assert_accounted(node, [*plain, odd["id"]], backend.ids, tmp_path / "dl")
    assert calls == {"dumps": 1, "loads": 1}


def test_a_copied_event_counts_the_memory_its_values_hold(tmp_path: Path) -> None:
    import sys

    backend = Stalled()
    node = BufferedBackend(backend, batch_size=1, dead_letter=tmp_path / "dl", **FAST)
    ids = emit(node, 1)  # the worker takes it and stalls
    assert backend.entered.wait(WAIT)
    text = "é" * 10_000
    ids += emit(node, 1, items=[text, {"again": text}])
    assert node.stats()["bytes"] >= 2 * sys.getsizeof(text)
    backend.release()
    node.close(WAIT)
    assert_accounted(node, ids, backend.ids, tmp_path / "dl")
