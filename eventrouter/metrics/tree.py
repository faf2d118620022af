"""Read a tree's ``stats()`` into per-node numbers: the one source both exporters use.

A node is labelled with its dotted path in the tree (:data:`ROOT` for the root router).
Outcomes per node, counted the way :mod:`eventrouter.signals` sends them:

* a router: ``emitted`` (events received), ``vetoed`` (by its processors), ``failed``
  (its own internal errors);
* a synchronous backend: ``delivered``, ``vetoed`` (it raised a veto), ``failed`` (it
  raised), then ``dead_lettered`` or ``dropped`` (no dead-letter file could keep them);
* a buffered node: ``delivered``, ``retried``, ``failed``, then ``dead_lettered`` or
  ``dropped`` (by ``when_full``, or lost), and its queue's gauges and delivery histogram;
* a celery node: a router's outcomes and its buffered publisher's (``delivered`` means
  published); on a worker, also ``task_delivered``, ``task_retried`` and
  ``task_dead_lettered`` for the events its tasks delivered there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ROOT", "Histogram", "Reading", "read"]

ROOT = "(root)"
"""The ``node`` label of the root router (whose path is ``""``)."""


@dataclass
class Histogram:
    """Delivery durations of one node: cumulative ``counts`` per upper bound in ``bounds``."""

    bounds: list[float]
    counts: list[int]
    sum: float
    count: int


@dataclass
class Reading:
    """A tree's numbers at one moment, keyed by node label."""

    events: dict[tuple[str, str], int] = field(default_factory=dict)
    """(node, outcome) -> events, a counter."""
    dropped: dict[tuple[str, str], int] = field(default_factory=dict)
    """(node, reason) -> events dropped or lost, a counter."""
    queue_events: dict[str, int] = field(default_factory=dict)
    queue_bytes: dict[str, int] = field(default_factory=dict)
    oldest_queued_seconds: dict[str, float] = field(default_factory=dict)
    delivery_seconds: dict[str, Histogram] = field(default_factory=dict)

    def add(self, node: str, outcome: str, value: object) -> None:
        if type(value) is int and value >= 0:
            key = (node, outcome)
            self.events[key] = self.events.get(key, 0) + value


def label(path: str) -> str:
    """The ``node`` label of a dotted node path."""
    return path or ROOT


def read(stats: Mapping[str, Any]) -> Reading:
    """The numbers of the tree whose root router's ``stats()`` is ``stats``."""
    reading = Reading()
    _router(reading, stats, "")
    return reading


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else str(name)


def _router(reading: Reading, stats: Mapping[str, Any], path: str) -> None:
    node = label(path)
    reading.add(node, "emitted", stats.get("received"))
    reading.add(node, "vetoed", stats.get("vetoed"))
    reading.add(node, "failed", stats.get("internal_errors", 0))
    buffer = stats.get("buffer")
    if isinstance(buffer, Mapping):  # a celery node: its publisher, and its worker's tasks
        _buffered(reading, buffer, path)
        for outcome in ("delivered", "retried", "dead_lettered"):
            reading.add(node, f"task_{outcome}", stats.get(outcome))
    backends = stats.get("backends")
    if not isinstance(backends, Mapping):
        return
    for name, entry in backends.items():
        if not isinstance(entry, Mapping) or entry.get("delivered") is None:
            continue  # a celery node's backends, which run on workers
        child = _join(path, name)
        own = entry.get("stats")
        if isinstance(own, Mapping) and isinstance(own.get("backends"), Mapping):
            _router(reading, own, child)
        elif isinstance(own, Mapping) and "queued" in own:
            _buffered(reading, own, child)
        else:
            _leaf(reading, entry, child)


def _leaf(reading: Reading, entry: Mapping[str, Any], path: str) -> None:
    node = label(path)
    for outcome in ("delivered", "vetoed", "failed", "dead_lettered"):
        reading.add(node, outcome, entry.get(outcome))
    lost = entry.get("lost")
    reading.add(node, "dropped", lost)
    if type(lost) is int and lost:
        reading.dropped[(node, "lost")] = lost


def _buffered(reading: Reading, stats: Mapping[str, Any], path: str) -> None:
    node = label(path)
    for outcome in ("delivered", "retried", "failed", "dead_lettered"):
        reading.add(node, outcome, stats.get(outcome))
    drops: dict[str, int] = {}
    by_mode = stats.get("dropped")
    if isinstance(by_mode, Mapping):
        drops.update({str(k): v for k, v in by_mode.items() if type(v) is int})
    lost = stats.get("lost")
    if type(lost) is int:
        drops["lost"] = lost
    reading.add(node, "dropped", sum(drops.values()))
    for reason, count in drops.items():
        if count:
            reading.dropped[(node, reason)] = count
    for key, gauge in (
        ("depth", reading.queue_events),
        ("bytes", reading.queue_bytes),
        ("oldest_age", reading.oldest_queued_seconds),
    ):
        value = stats.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            gauge[node] = value  # type: ignore[assignment]
    timings = stats.get("delivery_seconds")
    if isinstance(timings, Mapping):
        reading.delivery_seconds[node] = Histogram(
            bounds=list(timings.get("bounds", [])),
            counts=list(timings.get("counts", [])),
            sum=float(timings.get("sum", 0.0)),
            count=int(timings.get("count", 0)),
        )
