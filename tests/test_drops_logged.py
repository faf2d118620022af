"""Drops are never silent: counted under their reason, logged once per 10 s per node and reason."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from metrics_tree import WAIT, Gate

from eventrouter.backends import buffered
from eventrouter.backends.buffered import BufferedBackend
from eventrouter.errors import DeliveryError
from eventrouter.typing import Event


class Rejecting:
    """Fails every event for good."""

    def send_batch(self, events: Sequence[Event]) -> None:
        raise DeliveryError("rejected", retryable=False)

    def send(self, event: Event) -> None:
        self.send_batch([event])


def event(n: int, size: int = 10) -> Event:
    return {"id": str(n), "name": "video.play", "data": {"pad": "x" * size}}


@pytest.fixture(autouse=True)
def one_line_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """No second line within a test, however slow the machine (tests never assert on time)."""
    monkeypatch.setattr(buffered, "LOG_EVERY", 3600.0)


def test_each_reason_gets_its_own_line(caplog: pytest.LogCaptureFixture) -> None:
    gate = Gate()
    node = BufferedBackend(gate, max_queue=1, batch_size=1, max_bytes=2000, when_full="drop_newest")
    node.bind_path("analytics.tiny")
    with caplog.at_level(logging.WARNING, logger="eventrouter.buffered"):
        node.send(event(0))
        assert gate.entered.wait(WAIT)
        for n in range(1, 6):
            node.send(event(n))  # one queued, then four dropped
        node.send(event(9, size=5000))  # too large: its own reason, its own line
        gate.gate.set()
        node.close(WAIT)
    stats = node.stats()
    assert stats["dropped"] == {"drop_newest": 4}
    assert stats["lost"] == 1  # the large one, with no dead-letter file
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "dropping new events" in m]) == 1
    assert len([m for m in messages if "(TooLarge)" in m]) == 1
    assert all("analytics.tiny" in m for m in messages)


def test_lost_events_are_logged_once_with_a_count_of_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = BufferedBackend(Rejecting(), batch_size=1, flush_interval=0.0)
    node.bind_path("archive")
    with caplog.at_level(logging.ERROR, logger="eventrouter.buffered"):
        for n in range(5):
            node.send(event(n))
            node.flush(WAIT)
        lost = [r.getMessage() for r in caplog.records if "LOST" in r.getMessage()]
        assert len(lost) == 1
        node._throttle("no_dead_letter").next = 0.0  # 10 s on: the next line reports the rest
        node.send(event(5))
        node.flush(WAIT)
    lost = [r.getMessage() for r in caplog.records if "LOST" in r.getMessage()]
    assert node.stats()["lost"] == 6
    assert len(lost) == 2
    assert "4 more such lines held back" in lost[1]
    node.close(WAIT)
