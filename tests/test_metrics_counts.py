"""What tree.read counts per node: deliveries, drops inside leaves, and every reason."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from metrics_tree import WAIT

from eventrouter import signals
from eventrouter.backends.buffered import BufferedBackend
from eventrouter.backends.logger import LoggerBackend
from eventrouter.backends.memory import MemoryBackend
from eventrouter.backends.routing import RoutingBackend
from eventrouter.deadletter import DeadLetterFile
from eventrouter.errors import DeliveryError
from eventrouter.metrics import tree
from eventrouter.tracker import Tracker
from eventrouter.typing import Event


class Refusing:
    """A synchronous client that raises on every event and counts it in its own ``failed``,
    as Segment's backend does when it is not buffered."""

    def __init__(self) -> None:
        self.failed = 0

    def send(self, event: Event) -> None:
        self.failed += 1
        raise DeliveryError("refused")

    def stats(self) -> dict[str, int]:
        return {"failed": self.failed}


def test_a_backend_registered_later_is_credited_only_with_what_it_was_sent() -> None:
    tracker = Tracker({"archive": MemoryBackend()})
    tracker.emit("before", {})
    tracker.emit("before", {})
    late = MemoryBackend()
    tracker.router.register_backend("late", late)
    tracker.emit("after", {})
    events = tree.read(tracker.stats()).events
    assert events[("late", "delivered")] == len(late.events) == 1
    assert events[("archive", "delivered")] == 3


def test_a_replaced_backend_starts_with_counters_of_its_own() -> None:
    router = RoutingBackend({"x": Refusing()})
    router.send({"id": "1", "name": "n", "data": {}})
    router.register_backend("x", MemoryBackend())
    router.send({"id": "2", "name": "n", "data": {}})
    entry = router.stats()["backends"]["x"]
    assert (entry["delivered"], entry["failed"]) == (1, 0)


def test_a_synchronous_backend_failure_is_counted_once() -> None:
    refusing = Refusing()
    tracker = Tracker({"client": refusing})
    for i in range(4):
        tracker.emit("e", {"i": i})
    entry = tracker.stats()["backends"]["client"]
    assert (entry["failed"], entry["delivered"]) == (4, 0)


def test_jsonlog_drops_are_dropped_under_their_reason_not_delivered(tmp_path: Path) -> None:
    log = LoggerBackend(path=str(tmp_path / "events.log"), max_event_size=200, oversize="drop")
    tracker = Tracker({"log": log})
    for _ in range(3):
        tracker.emit("big", {"pad": "x" * 2000})
    tracker.emit("small", {})
    tracker.close(WAIT)
    reading = tree.read(tracker.stats())
    assert reading.events[("log", "delivered")] == 1
    assert reading.events[("log", "dropped")] == 3
    assert reading.dropped == {("log", "too_large"): 3}


def test_a_buffered_nodes_inner_drops_are_not_delivered(tmp_path: Path) -> None:
    log = LoggerBackend(path=str(tmp_path / "events.log"), max_event_size=200, oversize="drop")
    tracker = Tracker({"log": BufferedBackend(log, flush_interval=0)})
    tracker.emit("big", {"pad": "x" * 2000})
    tracker.emit("small", {})
    tracker.close(WAIT)
    reading = tree.read(tracker.stats())
    assert reading.events[("log", "delivered")] == 1
    assert reading.dropped == {("log", "too_large"): 1}


class Permanent:
    def send(self, event: Event) -> None:
        raise DeliveryError("no", retryable=False)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (a full disk)")
def test_every_loss_reason_of_a_buffered_node_is_exported() -> None:
    tracker = Tracker(
        {
            "nodl": BufferedBackend(Permanent(), flush_interval=0),
            "full": BufferedBackend(
                Permanent(), flush_interval=0, dead_letter=DeadLetterFile("/dev/full")
            ),
        }
    )
    for i in range(3):
        tracker.emit("e", {"i": i})
    tracker.close(WAIT)
    reading = tree.read(tracker.stats())
    assert reading.dropped == {
        ("nodl", "no_dead_letter"): 3,
        ("full", "dead_letter_unwritable"): 3,
    }
    assert reading.failed == {("nodl", "permanent"): 3, ("full", "permanent"): 3}


def test_a_routers_losses_are_exported_under_their_reason() -> None:
    tracker = Tracker({"down": Refusing()})
    tracker.emit("e", {})
    assert tree.read(tracker.stats()).dropped == {("down", "no_dead_letter"): 1}


def test_queue_full_rejections_are_failed_under_their_reason(tmp_path: Path) -> None:
    class Hold:
        def __init__(self) -> None:
            self.gate = threading.Event()
            self.entered = threading.Event()

        def send(self, event: Event) -> Any:
            self.entered.set()
            self.gate.wait(WAIT)

    hold = Hold()
    node = BufferedBackend(
        hold, max_queue=1, batch_size=1, dead_letter=DeadLetterFile(tmp_path / "dl.jsonl")
    )
    tracker = Tracker({"q": node})
    tracker.emit("first", {})
    assert hold.entered.wait(WAIT)
    for i in range(4):
        tracker.emit("e", {"i": i})
    hold.gate.set()
    tracker.close(WAIT)
    reading = tree.read(tracker.stats())
    assert reading.failed == {("q", "queue_full"): 3}
    assert reading.events[("q", "dead_lettered")] == 3


def test_a_jsonlog_drop_is_signalled_as_dropped_never_delivered(tmp_path: Path) -> None:
    heard: list[tuple[str, str, int]] = []

    def hear(name: str) -> Any:
        def receive(sender: str, *, events: list[Event], **kwargs: Any) -> None:
            heard.append((name, str(kwargs.get("reason")), len(events)))

        return receive

    receivers = {signal: hear(signal.name) for signal in (signals.delivered, signals.dropped)}
    for signal, receiver in receivers.items():
        signal.connect(receiver)
    try:
        log = LoggerBackend(path=str(tmp_path / "events.log"), max_event_size=200, oversize="drop")
        tracker = Tracker({"log": log})
        tracker.emit("big", {"pad": "x" * 2000})
        tracker.emit("small", {})
        tracker.close(WAIT)
    finally:
        for signal, receiver in receivers.items():
            signal.disconnect(receiver)
    assert heard == [("dropped", "too_large", 1), ("delivered", "None", 1)]


def test_jsonlog_drops_are_logged_once_per_interval_with_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = LoggerBackend(path=str(tmp_path / "events.log"), max_event_size=200, oversize="drop")
    tracker = Tracker({"log": log})
    with caplog.at_level(logging.WARNING, logger="eventrouter"):
        for _ in range(5):
            tracker.emit("big", {"pad": "secret" * 400})
    tracker.close(WAIT)
    lines = [r.getMessage() for r in caplog.records if "over max_event_size" in r.getMessage()]
    assert len(lines) == 1
    assert "secret" not in caplog.text
    assert log.stats()["dropped"] == 5


def test_the_drop_log_counts_what_it_held_back() -> None:
    throttle = signals.DropLog(every=3600.0)
    assert throttle.due("too_large") == 0
    assert throttle.due("too_large") is None
    assert throttle.due("too_large") is None
    assert throttle.due("skipped") == 0  # each reason has its own interval
    throttle._next["too_large"] = 0.0  # the interval is over
    assert throttle.due("too_large") == 2
