"""The tree the signal and metric tests share: every outcome happens in it, at known nodes."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from eventrouter.backends.buffered import BufferedBackend
from eventrouter.backends.memory import MemoryBackend
from eventrouter.backends.routing import RoutingBackend
from eventrouter.deadletter import DeadLetterFile
from eventrouter.errors import DeliveryError, EventEmissionExit
from eventrouter.tracker import Tracker
from eventrouter.typing import Event

WAIT = 60.0
"""A bound only a bug reaches (tests never assert on timing)."""

EMITTED = 13
"""Events run_tree emits: 12 pass the filters, 1 is vetoed at the root."""


def veto_skipped(event: Event) -> None:
    if event["name"].startswith("skip."):
        raise EventEmissionExit


class Exploding:
    def send(self, event: Event) -> None:
        raise RuntimeError("secret data must never reach a signal")


class Gate:
    """A batch backend that holds every call until released, then keeps the ids."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.ids: list[str] = []

    def send(self, event: Event) -> None:
        self.send_batch([event])

    def send_batch(self, events: Sequence[Event]) -> None:
        self.entered.set()
        self.gate.wait(WAIT)
        self.ids.extend(e["id"] for e in events)


class Flaky:
    """Fails the first call with a recoverable error; rejects ``poison`` events for good."""

    def __init__(self) -> None:
        self.calls = 0

    def send(self, event: Event) -> None:
        self.calls += 1
        if self.calls == 1:
            raise DeliveryError("down for a moment")
        if event["data"].get("poison"):
            raise DeliveryError("rejected", retryable=False)


def build_tree(dead_letter: DeadLetterFile) -> tuple[Tracker, Gate]:
    """The tree of the issue: a vetoing filter, a failing backend, a buffered node with a
    tiny queue that drops, one that dead-letters when full, one that retries and rejects."""
    gate = Gate()
    tiny = BufferedBackend(gate, max_queue=2, batch_size=1, when_full="drop_newest")
    full = BufferedBackend(
        Gate(), max_queue=1, batch_size=1, when_full="dead_letter", dead_letter=dead_letter
    )
    flaky = BufferedBackend(
        Flaky(), batch_size=1, backoff=(0.0, 0.0), flush_interval=0.0, dead_letter=dead_letter
    )
    analytics = RoutingBackend(
        {"tiny": tiny, "full": full, "flaky": flaky, "sink": MemoryBackend()},
        processors=[veto_skipped],
    )
    tracker = Tracker(
        {"archive": MemoryBackend(), "broken": Exploding(), "analytics": analytics},
        processors=[veto_skipped],
        dead_letter=dead_letter,
    )
    return tracker, gate


def run_tree(tmp_path: Path) -> tuple[Tracker, DeadLetterFile]:
    dead_letter = DeadLetterFile(tmp_path / "dead.jsonl")
    tracker, gate = build_tree(dead_letter)
    full = tracker.router.backends["analytics"].backends["full"].backend
    for i in range(12):
        tracker.emit("video.play", {"i": i, "poison": i == 5})
        if i == 0:  # both gated nodes hold their first event: the counts are the same each run
            assert gate.entered.wait(WAIT)
            assert full.entered.wait(WAIT)
    tracker.emit("skip.me", {})
    gate.gate.set()
    full.gate.set()
    tracker.close(WAIT)
    return tracker, dead_letter
