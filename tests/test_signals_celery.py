"""A celery node's subtree (delivered in process with memory://): signals match counters."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest
from metrics_tree import WAIT

from eventrouter import signals
from eventrouter.backends.celery import CeleryRouter
from eventrouter.backends.memory import MemoryBackend
from eventrouter.errors import DeliveryError
from eventrouter.metrics import tree
from eventrouter.tracker import Tracker
from eventrouter.typing import Event


class RejectsOdd:
    def send(self, event: Event) -> None:
        if event["data"]["i"] % 2:
            raise DeliveryError("no", retryable=False)


def run(dead_letter: Path | None) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    heard: collections.Counter[tuple[str, str]] = collections.Counter()

    def hear(name: str) -> Any:
        def receive(sender: str, *, events: list[Event], **_: Any) -> None:
            heard[(tree.label(sender), name)] += len(events)

        return receive

    receivers = [(signal, hear(signal.name)) for signal in signals.SIGNALS]
    for signal, receiver in receivers:
        signal.connect(receiver)
    try:
        node = CeleryRouter(
            {"ok": MemoryBackend(), "bad": RejectsOdd()},
            broker="memory://",
            task_retry={"max_retries": 0},
            dead_letter=dead_letter,
        )
        tracker = Tracker({"scale": node})
        for i in range(6):
            tracker.emit("x", {"i": i})
        tracker.close(WAIT)
    finally:
        for signal, receiver in receivers:
            signal.disconnect(receiver)
    counted = {k: v for k, v in tree.read(tracker.stats()).events.items() if v}
    return counted, dict(heard)


def test_a_celery_subtree_signals_what_its_counters_count(tmp_path: Path) -> None:
    counted, heard = run(tmp_path / "dead.jsonl")
    for key in (("scale.ok", "delivered"), ("scale.bad", "failed"), ("scale.bad", "dead_lettered")):
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
