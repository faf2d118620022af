"""Read a tree's ``stats()`` into per-node numbers: the one source both exporters use.

A node is labelled with its dotted path in the tree (:data:`ROOT` for the root router).
Outcomes per node, counted the way :mod:`eventrouter.signals` sends them:

* a router: ``emitted`` (events received), ``vetoed`` (by its processors), ``failed``
  (its own internal errors), ``processor_errors`` (a processor raised; the event went on);
* a synchronous backend: ``delivered``, ``vetoed`` (it raised a veto), ``failed`` (it
  raised), then ``dead_lettered`` or ``dropped`` (no dead-letter file could keep them);
  events it accepted but dropped itself (its own ``stats()``: a JSON log's ``dropped``,
  ``suppressed`` and ``lost``, Segment's ``skipped``) are ``dropped``, not ``delivered``;
* a buffered node: ``delivered``, ``retried``, ``failed``, then ``dead_lettered`` or
  ``dropped`` (by ``when_full``, or lost), and its queue's gauges and delivery histogram;
* a celery node: a router's outcomes and its buffered publisher's (``delivered`` means
  published); on a worker, also ``task_delivered``, ``task_retried`` and
  ``task_dead_lettered`` for the events its tasks delivered there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eventrouter.signals import Reason

__all__ = ["LEAF_DROPS", "ROOT", "Histogram", "Reading", "observations", "path_of", "read"]

log = logging.getLogger("eventrouter.metrics")

LEAF_DROPS: dict[str, str] = {
    "dropped": Reason.TOO_LARGE,
    "suppressed": Reason.SUPPRESSED,
    "lost": Reason.UNWRITABLE,
    "skipped": Reason.SKIPPED,
}
"""Counters of a backend's own ``stats()`` that count events it accepted but did not
deliver, and the reason each is exported under."""

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
    failed: dict[tuple[str, str], int] = field(default_factory=dict)
    """(node, reason) -> events a buffered node gave up on, a counter."""
    stats_errors: dict[str, int] = field(default_factory=dict)
    """node -> times its ``stats()`` raised (its own numbers were left out), a counter."""
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


def path_of(source: object) -> str:
    """The dotted path of what an exporter reads: a router's ``path``, a tracker's router's."""
    router = getattr(source, "router", source)
    path = getattr(router, "path", "")
    return path if isinstance(path, str) else ""


def read(stats: Mapping[str, Any], path: str = "") -> Reading:
    """The numbers of the tree whose top router's ``stats()`` is ``stats``; ``path`` is that
    router's dotted path (a subtree's nodes keep the labels they have in the whole tree)."""
    reading = Reading()
    _router(reading, stats, path)
    return reading


def observations(before: Histogram | None, after: Histogram) -> list[float]:
    """Durations that, observed into a histogram with the same bounds, grow it from
    ``before`` to ``after``: the right count per bucket, and the sum as far as the buckets
    allow. ``before`` is ``None`` (or larger: the node started afresh) for all of ``after``."""
    bounds = after.bounds
    old_counts, old_sum, old_count = [0] * len(bounds), 0.0, 0
    if (
        before is not None
        and before.bounds == bounds
        and before.count <= after.count
        and all(b <= a for b, a in zip(before.counts, after.counts, strict=False))
    ):
        old_counts, old_sum, old_count = list(before.counts), before.sum, before.count
    grown = [a - b for a, b in zip(after.counts, old_counts, strict=False)]
    per_bucket = [grown[0], *(grown[i] - grown[i - 1] for i in range(1, len(grown)))]
    overflow = (after.count - old_count) - (grown[-1] if grown else 0)
    total = after.sum - old_sum
    low = [0.0, *bounds[:-1]]
    base = sum(n * lo for n, lo in zip(per_bucket, low, strict=False))
    span = sum(n * (hi - lo) for n, lo, hi in zip(per_bucket, low, bounds, strict=False))
    fraction = 1.0
    if overflow > 0:
        fraction = 0.5  # the rest of the sum goes over the top bound
    elif span > 0:
        fraction = (total - base) / span
    fraction = min(max(fraction, 1e-9), 1.0)  # a value at a lower bound is the bucket below
    out: list[float] = []
    for n, lo, hi in zip(per_bucket, low, bounds, strict=False):
        out.extend([lo + fraction * (hi - lo)] * max(n, 0))
    if overflow > 0:
        top = bounds[-1] if bounds else 0.0
        rest = (total - sum(out)) / overflow
        out.extend([max(rest, top * (1 + 1e-9) + 1e-9)] * overflow)
    return out


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else str(name)


def _router(reading: Reading, stats: Mapping[str, Any], path: str) -> None:
    node = label(path)
    reading.add(node, "emitted", stats.get("received"))
    reading.add(node, "vetoed", stats.get("vetoed"))
    reading.add(node, "failed", stats.get("internal_errors", 0))
    reading.add(node, "processor_errors", stats.get("processor_errors", 0))
    buffer = stats.get("buffer")
    if isinstance(buffer, Mapping):  # a celery node: its publisher, and its worker's tasks
        _buffered(reading, buffer, path)
        for outcome in ("delivered", "retried", "dead_lettered"):
            reading.add(node, f"task_{outcome}", stats.get(outcome))
        reading.add(node, "task_dropped", stats.get("lost"))
    backends = stats.get("backends")
    if not isinstance(backends, Mapping):
        return
    for name, entry in backends.items():
        if not isinstance(entry, Mapping) or entry.get("delivered") is None:
            continue  # a celery node's backends, which run on workers
        child = _join(path, name)
        errors = entry.get("stats_errors")
        if type(errors) is int and errors:
            reading.stats_errors[label(child)] = errors
        own = entry.get("stats")
        if isinstance(own, Mapping) and isinstance(own.get("backends"), Mapping):
            _router(reading, own, child)
        elif isinstance(own, Mapping) and "queued" in own:
            _buffered(reading, own, child)
        else:
            _leaf(reading, entry, child)


def _own_drops(own: object) -> dict[str, int]:
    """The events a backend's own ``stats()`` says it accepted but did not deliver."""
    if not isinstance(own, Mapping):
        return {}
    return {
        reason: value
        for key, reason in LEAF_DROPS.items()
        if type(value := own.get(key)) is int and value > 0
    }


def _drop(reading: Reading, node: str, reason: str, count: int) -> None:
    if count:
        key = (node, str(reason))
        reading.dropped[key] = reading.dropped.get(key, 0) + count


def _leaf(reading: Reading, entry: Mapping[str, Any], path: str) -> None:
    node = label(path)
    own = _own_drops(entry.get("stats"))
    delivered = entry.get("delivered")
    if type(delivered) is int:
        reading.add(node, "delivered", max(delivered - sum(own.values()), 0))
    for outcome in ("vetoed", "failed", "dead_lettered"):
        reading.add(node, outcome, entry.get(outcome))
    reading.add(node, "failed", sum(own.values()))  # given up on, then dropped
    lost = entry.get("lost")
    lost = lost if type(lost) is int else 0
    reading.add(node, "dropped", lost + sum(own.values()))
    lost_by = entry.get("lost_by")
    if isinstance(lost_by, Mapping):
        for reason, count in lost_by.items():
            if type(count) is int:
                _drop(reading, node, str(reason), count)
    else:
        _drop(reading, node, Reason.NO_DEAD_LETTER, lost)
    for reason, count in own.items():
        _drop(reading, node, reason, count)


def _buffered(reading: Reading, stats: Mapping[str, Any], path: str) -> None:
    node = label(path)
    own = _own_drops(stats.get("backend"))  # accepted by the backend, then not delivered
    delivered = stats.get("delivered")
    if type(delivered) is int:
        reading.add(node, "delivered", max(delivered - sum(own.values()), 0))
    for outcome in ("retried", "failed", "dead_lettered"):
        reading.add(node, outcome, stats.get(outcome))
    reading.add(node, "failed", sum(own.values()))
    drops: dict[str, int] = dict(own)
    by_mode = stats.get("dropped")
    if isinstance(by_mode, Mapping):
        drops.update({str(k): v for k, v in by_mode.items() if type(v) is int})
    lost = stats.get("lost")
    lost_by = stats.get("lost_by")
    if isinstance(lost_by, Mapping):
        drops.update({str(k): v for k, v in lost_by.items() if type(v) is int})
    elif type(lost) is int:
        drops[Reason.NO_DEAD_LETTER] = lost
    reading.add(node, "dropped", sum(drops.values()))
    for reason, count in drops.items():
        _drop(reading, node, reason, count)
    failed_by = stats.get("failed_by")
    if isinstance(failed_by, Mapping):
        for reason, count in failed_by.items():
            if type(count) is int and count:
                reading.failed[(node, str(reason))] = count
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
