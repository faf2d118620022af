"""Backends with scripted failures, and the accounting every delivery test asserts."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eventrouter.backends.buffered import BufferedBackend
from eventrouter.deadletter import read_dead_letters
from eventrouter.errors import DeliveryError
from eventrouter.typing import Event

WAIT = 60.0
"""A bound only a bug reaches (tests never assert on timing)."""


class Recorder:
    """A batch backend that keeps the ids it acknowledged, and can fail on cue."""

    def __init__(self, *, fail_times: int = 0, retry_after: float | None = None) -> None:
        self.ids: list[str] = []
        self.calls = 0
        self.fail_times = fail_times
        self.retry_after = retry_after
        self.lock = threading.Lock()

    def send(self, event: Event) -> None:
        self.send_batch([event])

    def send_batch(self, events: Sequence[Event]) -> None:
        with self.lock:
            self.calls += 1
            if self.fail_times:
                self.fail_times -= 1
                raise DeliveryError("down", retry_after=self.retry_after)
            self.ids.extend(event["id"] for event in events)


class Down(Recorder):
    """Never delivers: a server that stays down."""

    def send_batch(self, events: Sequence[Event]) -> None:
        with self.lock:
            self.calls += 1
        raise DeliveryError("down")


class Stalled(Recorder):
    """Hangs in every call until ``release()``; then delivers."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def send_batch(self, events: Sequence[Event]) -> None:
        self.entered.set()
        self.gate.wait(WAIT)
        super().send_batch(events)

    def release(self) -> None:
        self.gate.set()


class Poisoned(Recorder):
    """Rejects, for good, any batch holding an event whose data says ``poison``."""

    def send_batch(self, events: Sequence[Event]) -> None:
        with self.lock:
            self.calls += 1
            if any(event["data"].get("poison") for event in events):
                raise DeliveryError("rejected", retryable=False)
            self.ids.extend(event["id"] for event in events)


class OneByOne:
    """A backend with ``send`` only; fails for good on events whose data says ``poison``."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def send(self, event: Event) -> None:
        if event["data"].get("poison"):
            raise ValueError("cannot take it")
        self.ids.append(event["id"])


def dead_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [record["event"]["id"] for record in read_dead_letters(path)]


def assert_accounted(
    node: BufferedBackend, emitted: Sequence[str], delivered: Sequence[str], dead: Path
) -> dict[str, Any]:
    """Every emitted id ends delivered, dead-lettered or counted as dropped; none twice."""
    stats = node.stats()
    dead_letters = dead_ids(dead)
    dropped = sum(stats["dropped"].values())
    assert stats["depth"] == 0
    assert stats["in_flight"] == 0
    assert stats["lost"] == 0
    assert stats["received"] == len(emitted)
    assert stats["delivered"] == len(delivered)
    assert stats["dead_lettered"] == len(dead_letters)
    assert len(delivered) + len(dead_letters) + dropped == len(emitted)
    seen = Counter([*delivered, *dead_letters])
    assert [key for key, n in seen.items() if n > 1] == []
    assert set(seen) <= set(emitted)
    return stats


class Refuses:
    """A backend that rejects every event for good (for replays that fail again)."""

    def send(self, event: Event) -> None:
        raise DeliveryError("rejected", retryable=False)


class SlowFile:
    """A backend writing each id to a file, a few milliseconds a batch (for the CLI tests)."""

    def __init__(self, path: str, pause: float = 0.002) -> None:
        self.path = path
        self.pause = pause
        self.lock = threading.Lock()

    def send(self, event: Event) -> None:
        self.send_batch([event])

    def send_batch(self, events: Sequence[Event]) -> None:
        threading.Event().wait(self.pause)
        with self.lock, open(self.path, "a") as handle:
            handle.write("".join(f"{event['id']}\n" for event in events))
