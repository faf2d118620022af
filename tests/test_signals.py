"""Signals: receivers see exactly what the counters count, per outcome and node path."""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from metrics_tree import run_tree

from eventrouter import signals
from eventrouter.backends.memory import MemoryBackend
from eventrouter.backends.routing import RoutingBackend
from eventrouter.deadletter import read_dead_letters
from eventrouter.metrics import tree
from eventrouter.typing import Event


class Record:
    """A receiver on every signal: (signal, sender, reason, thread) per event id."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None, str, str]] = []
        self.errors: list[signals.ErrorInfo] = []
        self.lock = threading.Lock()
        self.receivers: list[Any] = []
        for signal in signals.SIGNALS:
            receiver = self._receiver(signal.name)
            signal.connect(receiver)
            self.receivers.append((signal, receiver))

    def _receiver(self, name: str) -> Any:
        def receive(sender: str, *, events: list[Event], **kwargs: Any) -> None:
            reason = kwargs.get("reason")
            thread = threading.current_thread().name
            with self.lock:
                if kwargs.get("error") is not None:
                    self.errors.append(kwargs["error"])
                for event in events:
                    self.seen.append((name, sender, reason, event["id"], thread))

        return receive

    def disconnect(self) -> None:
        for signal, receiver in self.receivers:
            signal.disconnect(receiver)

    def counts(self) -> dict[tuple[str, str], int]:
        out: collections.Counter[tuple[str, str]] = collections.Counter()
        for name, sender, _, _, _ in self.seen:
            out[(tree.label(sender), name)] += 1
        return dict(out)

    def ids(self, name: str, sender: str) -> list[str]:
        return [i for n, s, _, i, _ in self.seen if n == name and s == sender]


@pytest.fixture
def record() -> Iterator[Record]:
    recorder = Record()
    try:
        yield recorder
    finally:
        recorder.disconnect()


def test_receivers_see_exactly_what_the_counters_count_per_node(
    tmp_path: Path, record: Record
) -> None:
    tracker, _ = run_tree(tmp_path)
    counters = {key: value for key, value in tree.read(tracker.stats()).events.items() if value}
    assert record.counts() == counters
    # every outcome of the issue happened, so the comparison covers each of them
    outcomes = {outcome for _, outcome in counters}
    assert outcomes >= {
        "emitted",
        "vetoed",
        "delivered",
        "retried",
        "failed",
        "dead_lettered",
        "dropped",
    }


def test_dead_lettered_signals_name_the_events_in_the_file(tmp_path: Path, record: Record) -> None:
    _, dead_letter = run_tree(tmp_path)
    in_file = collections.Counter(
        (letter["destination"], letter["event"]["id"])
        for letter in read_dead_letters(dead_letter.path)
    )
    signalled = collections.Counter(
        (sender, event_id)
        for name, sender, _, event_id, _ in record.seen
        if name == "dead_lettered"
    )
    assert signalled == in_file


def test_drops_are_signalled_under_the_stats_reason(tmp_path: Path, record: Record) -> None:
    tracker, _ = run_tree(tmp_path)
    tiny = tracker.stats()["backends"]["analytics"]["stats"]["backends"]["tiny"]["stats"]
    reasons = collections.Counter(
        reason
        for name, sender, reason, _, _ in record.seen
        if sender == "analytics.tiny"
        if name == "dropped"
    )
    assert reasons == tiny["dropped"] == {"drop_newest": 9}  # 1 in flight, 2 queued
    full = collections.Counter(
        reason
        for name, sender, reason, _, _ in record.seen
        if sender == "analytics.full" and name == "dead_lettered"
    )
    assert full == {"queue_full": 10}  # 1 in flight, 1 queued


def test_failures_carry_the_error_type_and_permanence_never_the_message(
    tmp_path: Path, record: Record
) -> None:
    run_tree(tmp_path)
    assert signals.ErrorInfo("RuntimeError", True) in record.errors
    assert signals.ErrorInfo("DeliveryError", False) in record.errors  # the retry
    assert signals.ErrorInfo("DeliveryError", True) in record.errors  # the poison event
    assert all("secret" not in repr(error) for error in record.errors)
    broken = {r for n, s, r, _, _ in record.seen if s == "broken" and n == "failed"}
    assert broken == {signals.Reason.BACKEND_ERROR}


def test_buffered_outcomes_run_on_the_worker_never_the_callers_thread(
    tmp_path: Path, record: Record
) -> None:
    run_tree(tmp_path)
    caller = threading.current_thread().name
    buffered = [
        (name, thread)
        for name, sender, _, _, thread in record.seen
        if sender in ("analytics.tiny", "analytics.full", "analytics.flaky")
    ]
    assert {name for name, _ in buffered} >= {"delivered", "dropped", "dead_lettered"}
    assert [name for name, thread in buffered if thread == caller] == []


def test_a_raising_receiver_changes_no_delivery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    quiet, _ = run_tree(tmp_path / "quiet")

    heard: list[int] = []

    def explode(sender: str, **kwargs: Any) -> None:
        heard.append(len(kwargs["events"]))
        raise ValueError("a receiver's bug")

    for signal in signals.SIGNALS:
        signal.connect(explode)
    before = signals.receiver_errors()
    try:
        with caplog.at_level(logging.ERROR, logger="eventrouter.signals"):
            loud, _ = run_tree(tmp_path / "loud")
    finally:
        for signal in signals.SIGNALS:
            signal.disconnect(explode)
    expected = tree.read(quiet.stats()).events
    assert tree.read(loud.stats()).events == expected
    raised = signals.receiver_errors() - before
    assert raised == len(heard)
    assert sum(heard) == sum(expected.values())
    assert any("raised ValueError" in r.getMessage() for r in caplog.records)
    assert all("a receiver's bug" not in r.getMessage() for r in caplog.records)


def test_a_raising_receiver_does_not_stop_the_next_one() -> None:
    heard: list[str] = []

    def explode(sender: str, **kwargs: Any) -> None:
        raise ValueError("bug")

    def listen(sender: str, **kwargs: Any) -> None:
        heard.append(sender)

    signals.emitted.connect(explode)
    signals.emitted.connect(listen)
    try:
        RoutingBackend({"m": MemoryBackend()}).send({"id": "1", "name": "a", "data": {}})
    finally:
        signals.emitted.disconnect(explode)
        signals.emitted.disconnect(listen)
    assert heard == [""]


def test_a_receiver_for_one_node_hears_only_that_node(tmp_path: Path) -> None:
    heard: list[str] = []

    def listen(sender: str, **kwargs: Any) -> None:
        heard.append(sender)

    signals.delivered.connect(listen, sender="analytics.sink")
    try:
        run_tree(tmp_path)
    finally:
        signals.delivered.disconnect(listen, sender="analytics.sink")
    assert heard == ["analytics.sink"] * 12


def test_watched_is_true_only_while_a_receiver_is_connected() -> None:
    def listen(sender: str, **kwargs: Any) -> None:
        pass

    assert signals.watched is False
    signals.dropped.connect(listen)
    assert signals.watched is True
    signals.dropped.disconnect(listen)
    assert signals.watched is False


def test_every_reason_is_its_own_lowercase_name() -> None:
    assert [reason.value for reason in signals.Reason] == [
        reason.name.lower() for reason in signals.Reason
    ]
    assert {"drop_oldest", "drop_newest"} <= {reason.value for reason in signals.Reason}
