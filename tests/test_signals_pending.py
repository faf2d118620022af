"""What a buffered node holds for signals it has yet to send: bounded, and only when heard."""

from __future__ import annotations

import threading
from typing import Any

from metrics_tree import WAIT

from eventrouter import signals
from eventrouter.backends.buffered import MAX_NOTICE_EVENTS, BufferedBackend
from eventrouter.errors import DeliveryError
from eventrouter.tracker import Tracker
from eventrouter.typing import Event


class Stuck:
    """A backend whose first call hangs until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def send(self, event: Event) -> None:
        self.entered.set()
        self.release.wait(WAIT)


class Down:
    """A service that is down: every call fails with a recoverable error."""

    def __init__(self) -> None:
        self.calls = threading.Event()

    def send(self, event: Event) -> None:
        self.calls.set()
        raise DeliveryError("down")


def _stuck_node() -> tuple[Tracker, BufferedBackend, Stuck]:
    stuck = Stuck()
    node = BufferedBackend(stuck, max_queue=2, batch_size=1, when_full="drop_newest")
    tracker = Tracker({"slow": node})
    tracker.emit("first", {})
    assert stuck.entered.wait(WAIT)
    return tracker, node, stuck


def test_a_stuck_node_holds_a_bounded_number_of_dropped_events_for_receivers() -> None:
    heard = {"failed": 0, "dropped": 0}

    def on_failed(sender: str, *, events: list[Event], **_: Any) -> None:
        heard["failed"] += len(events)

    def on_dropped(sender: str, *, events: list[Event], **_: Any) -> None:
        heard["dropped"] += len(events)

    signals.failed.connect(on_failed)
    signals.dropped.connect(on_dropped)
    tracker, node, stuck = _stuck_node()
    try:
        for i in range(3 * MAX_NOTICE_EVENTS):
            tracker.emit("e", {"i": i})
        held = sum(len(events) for events in node._notices.values())
        assert held <= MAX_NOTICE_EVENTS
        stats = node.stats()
        dropped = stats["dropped"]["drop_newest"]
        assert dropped > MAX_NOTICE_EVENTS
        assert stats["unannounced"] > 0
        stuck.release.set()
        tracker.close(WAIT)
        # every drop is heard or counted as unannounced, for each of the two signals
        assert heard["failed"] + heard["dropped"] + node.stats()["unannounced"] == 2 * dropped
    finally:
        stuck.release.set()
        signals.failed.disconnect(on_failed)
        signals.dropped.disconnect(on_dropped)


def test_drops_keep_no_events_while_only_delivered_has_receivers() -> None:
    def on_delivered(sender: str, **_: Any) -> None:
        pass

    signals.delivered.connect(on_delivered)
    tracker, node, stuck = _stuck_node()
    try:
        for i in range(50):
            tracker.emit("e", {"i": i})
        assert node.stats()["dropped"]["drop_newest"] == 48
        assert node._notices == {}
        assert node.stats()["unannounced"] == 0
    finally:
        stuck.release.set()
        tracker.close(WAIT)
        signals.delivered.disconnect(on_delivered)


def test_drops_are_signalled_while_the_worker_waits_to_retry() -> None:
    heard = threading.Event()

    def on_dropped(sender: str, **_: Any) -> None:
        heard.set()

    down = Down()
    # the first retry waits an hour: only a signal sent during the pause can be heard
    node = BufferedBackend(
        down,
        max_queue=2,
        batch_size=1,
        flush_interval=0,
        backoff=(3600, 3600),
        retry_deadline=7200,
        when_full="drop_oldest",
    )
    tracker = Tracker({"down": node})
    signals.dropped.connect(on_dropped)
    try:
        tracker.emit("first", {})
        assert down.calls.wait(WAIT)
        for i in range(5):
            tracker.emit("e", {"i": i})
        assert heard.wait(WAIT)
        stats = node.stats()
        assert stats["delivered"] == 0
        assert stats["dropped"]["drop_oldest"] == 3
    finally:
        signals.dropped.disconnect(on_dropped)
        tracker.close(0.5)
