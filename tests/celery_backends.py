"""Backends the Celery tests put under celery nodes; workers import them by dotted path.

Each writes the events it accepts as JSON lines to a file the test reads, so the test counts
deliveries at the sink whatever process (a worker child, a restarted worker) delivered them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eventrouter.encoding import dumps
from eventrouter.errors import DeliveryError


class FileSink:
    """Appends each event of a batch as one JSON line (one ``write`` per batch).

    Args:
        path: the file.
        delay: seconds to sleep before writing each batch (a slow destination).
        fail_first: fail this many calls (counted in ``<path>.calls``, across processes)
            with a retryable error, then succeed.
        fail_always: every call fails, retryably.
        poison: events whose ``data`` has ``poison: true`` fail permanently.
        stop_redis: a Redis URL whose server this sink shuts down before it fails (the broker
            gone at the moment a worker schedules a retry).
    """

    def __init__(
        self,
        path: str,
        delay: float = 0.0,
        fail_first: int = 0,
        fail_always: bool = False,
        poison: bool = False,
        stop_redis: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.delay = delay
        self.fail_first = fail_first
        self.fail_always = fail_always
        self.poison = poison
        self.stop_redis = stop_redis

    def _call_number(self) -> int:
        calls = Path(f"{self.path}.calls")
        fd = os.open(calls, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b".")
        finally:
            os.close(fd)
        return calls.stat().st_size

    def send(self, event: dict[str, Any]) -> None:
        self.send_batch([event])

    def send_batch(self, events: Sequence[dict[str, Any]]) -> None:
        if self.stop_redis:
            import redis

            with contextlib.suppress(redis.ConnectionError):
                redis.Redis.from_url(self.stop_redis).shutdown(nosave=True)
        if self.fail_always or (self.fail_first and self._call_number() <= self.fail_first):
            raise DeliveryError("the test sink is failing on purpose")
        if self.poison and any(e.get("data", {}).get("poison") for e in events):
            raise DeliveryError("the test sink refuses poison", retryable=False)
        if self.delay:
            time.sleep(self.delay)
        text = "".join(dumps(event) + "\n" for event in events)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, text.encode("utf-8"))
        finally:
            os.close(fd)


def stamp(event: dict[str, Any]) -> dict[str, Any]:
    """A processor that counts, in ``data.stamps``, how many times it ran on the event."""
    event["data"]["stamps"] = event["data"].get("stamps", 0) + 1
    return event
