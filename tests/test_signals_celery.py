"""A celery node's subtree (delivered in process with memory://): signals match counters."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from metrics_tree import WAIT

from eventrouter import deadletter, signals
from eventrouter.backends.celery import CeleryRouter
from eventrouter.backends.memory import MemoryBackend
from eventrouter.backends.routing import RoutingBackend
from eventrouter.errors import DeliveryError
from eventrouter.metrics import tree
from eventrouter.tracker import Tracker
from eventrouter.typing import Event


class RejectsOdd:
    def send(self, event: Event) -> None:
        if event["data"]["i"] % 2:
            raise DeliveryError("no", retryable=False)


class Down:
    """Every batch fails in a way worth retrying."""

    def send_batch(self, events: list[Event]) -> None:
        raise DeliveryError("down")

    def send(self, event: Event) -> None:
        raise DeliveryError("down")


Heard = collections.Counter[tuple[str, str]]


@contextlib.contextmanager
def listening() -> Iterator[tuple[Heard, Heard]]:
    """Per (sender, signal): the events heard, and the events heard per reason."""
    heard: Heard = collections.Counter()
    reasons: Heard = collections.Counter()

    def hear(name: str) -> Any:
        def receive(sender: str, *, events: list[Event], **kwargs: Any) -> None:
            heard[(sender, name)] += len(events)
            if "reason" in kwargs:
                reasons[(f"{sender} {name}", str(kwargs["reason"]))] += len(events)

        return receive

    receivers = [(signal, hear(signal.name)) for signal in signals.SIGNALS]
    for signal, receiver in receivers:
        signal.connect(receiver)
    try:
        yield heard, reasons
    finally:
        for signal, receiver in receivers:
            signal.disconnect(receiver)


def emit_through(backends: dict[str, Any], dead_letter: Path | None, count: int = 6) -> Tracker:
    node = CeleryRouter(
        backends, broker="memory://", task_retry={"max_retries": 0}, dead_letter=dead_letter
    )
    tracker = Tracker({"scale": node})
    for i in range(count):
        tracker.emit("x", {"i": i})
    tracker.close(WAIT)
    return tracker


def run(dead_letter: Path | None) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    with listening() as (heard, _):
        tracker = emit_through({"ok": MemoryBackend(), "bad": RejectsOdd()}, dead_letter)
    counted = {k: v for k, v in tree.read(tracker.stats()).events.items() if v}
    return counted, {(tree.label(sender), name): n for (sender, name), n in heard.items()}


def test_a_celery_subtree_signals_what_its_counters_count(tmp_path: Path) -> None:
    counted, heard = run(tmp_path / "dead.jsonl")
    keys = (
        ("scale.ok", "delivered"),
        ("scale.bad", "delivered"),
        ("scale.bad", "failed"),
        ("scale.bad", "dead_lettered"),
    )
    for key in keys:
        assert heard.get(key) == counted.get(key)
        assert counted[key] > 0
    assert counted[("scale.bad", "dead_lettered")] == 3


@pytest.mark.filterwarnings("ignore")
def test_without_a_dead_letter_a_celery_subtree_counts_losses_as_dropped() -> None:
    counted, heard = run(None)
    assert counted[("scale.bad", "dropped")] == heard[("scale.bad", "dropped")] == 3
    assert counted[("scale", "task_dropped")] == 3
    assert ("scale.bad", "dead_lettered") not in counted
    assert ("scale", "task_dead_lettered") not in counted


def test_a_nested_subtree_signals_and_counts_per_leaf(tmp_path: Path) -> None:
    sub = RoutingBackend({"ok": MemoryBackend(), "bad": RejectsOdd()})
    with listening() as (heard, _):
        tracker = emit_through({"sub": sub}, tmp_path / "dead.jsonl")
    assert {k: v for k, v in heard.items() if k[0].startswith("scale.sub.")} == {
        ("scale.sub.ok", "delivered"): 6,
        ("scale.sub.bad", "delivered"): 3,
        ("scale.sub.bad", "failed"): 3,
        ("scale.sub.bad", "dead_lettered"): 3,
    }
    stats = tracker.get_backend("scale").stats()
    assert stats["destinations"] == {
        "sub.bad": {"delivered": 3, "failed": 3, "dead_lettered": 3, "lost": 0},
        "sub.ok": {"delivered": 6, "failed": 0, "dead_lettered": 0, "lost": 0},
    }
    assert stats["backends"] == {
        "sub": {"delivered": 9, "failed": 3, "dead_lettered": 3, "lost": 0},
    }


@pytest.mark.filterwarnings("ignore")
def test_a_dead_letter_filling_up_counts_the_rest_as_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk takes 2 records, then is full: 2 dead-lettered, 4 lost (and dropped)."""
    room = [2]
    real_write = deadletter._write

    def filling(fd: int, data: bytes) -> int:
        if room[0] == 0:
            raise OSError(28, "No space left on device")
        lines = data.splitlines(keepends=True)
        fits, room[0] = lines[: room[0]], max(room[0] - len(lines), 0)
        return real_write(fd, b"".join(fits))

    monkeypatch.setattr(deadletter, "_write", filling)
    with listening() as (heard, reasons):
        tracker = emit_through({"down": Down()}, tmp_path / "dead.jsonl")
    stats = tracker.get_backend("scale").stats()
    assert (stats["delivered"], stats["dead_lettered"], stats["lost"]) == (0, 2, 4)
    assert stats["backends"] == {
        "down": {"delivered": 0, "failed": 6, "dead_lettered": 2, "lost": 4},
    }
    assert heard[("scale.down", "failed")] == 6
    assert heard[("scale.down", "dead_lettered")] == 2
    assert heard[("scale.down", "dropped")] == 4
    assert reasons[("scale.down dropped", "dead_letter_unwritable")] == 4
    assert reasons[("scale.down failed", "retries_exhausted")] == 6
    assert len((tmp_path / "dead.jsonl").read_bytes().splitlines()) == 2
