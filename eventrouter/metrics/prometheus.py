"""Prometheus metrics of a routing tree, read from its ``stats()`` (``eventrouter[prometheus]``).

::

    from eventrouter.metrics import prometheus
    prometheus.register(tracker)          # on prometheus_client's default registry
    prometheus.serve(9464)                # or your framework's /metrics view

Exposes, per node (its dotted path; ``(root)`` for the root router):
``eventrouter_events_total{node,outcome}``, ``eventrouter_dropped_total{node,reason}``,
``eventrouter_queue_events{node}``, ``eventrouter_queue_bytes{node}``,
``eventrouter_oldest_queued_seconds{node}`` and the histogram
``eventrouter_delivery_seconds{node}`` (one observation per backend call of a buffered node).

In a single process, a collector reads ``stats()`` at each scrape. Under gunicorn's (or
Celery prefork's) multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR`` set before
``prometheus_client`` is first imported, each process writes its counts through
prometheus_client's multiprocess values (every ``interval`` seconds, at fork and at exit),
and :func:`serve` (or your ``MultiProcessCollector``) sums them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from typing import Any, Protocol

from eventrouter.errors import MissingExtraError

try:
    from prometheus_client import (
        REGISTRY,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        start_http_server,
    )
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.multiprocess import MultiProcessCollector
except ImportError as exc:  # pragma: no cover - the extra is installed in tests
    raise MissingExtraError(
        "eventrouter.metrics.prometheus", "prometheus", "prometheus-client"
    ) from exc

from eventrouter import _fork, signals
from eventrouter.backends.buffered import DELIVERY_BUCKETS
from eventrouter.metrics import tree

__all__ = ["TreeCollector", "TreeMirror", "multiprocess", "register", "serve"]


class _HasStats(Protocol):
    def stats(self) -> dict[str, Any]: ...


_HELP = {
    "events": "Events per node and outcome (emitted, vetoed, delivered, retried, failed, "
    "dead_lettered, dropped).",
    "dropped": "Events dropped or lost per node and reason (drop_oldest, drop_newest, lost).",
    "queue_events": "Events queued in a buffered node.",
    "queue_bytes": "Bytes queued in a buffered node (pickled size).",
    "oldest": "Seconds the oldest queued event of a buffered node has waited.",
    "delivery": "Seconds a buffered node's backend took per successful call (a batch).",
}


def multiprocess() -> bool:
    """Whether prometheus_client runs in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class TreeCollector:
    """A prometheus_client collector that reads a tracker's (or router's) ``stats()`` at
    each scrape."""

    def __init__(self, source: _HasStats) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        """Nothing up front: the families depend on the tree (``register`` does not scrape)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The metric families of the tree now."""
        reading = tree.read(self.source.stats())
        events = CounterMetricFamily(
            "eventrouter_events", _HELP["events"], labels=["node", "outcome"]
        )
        for (node, outcome), value in sorted(reading.events.items()):
            events.add_metric([node, outcome], value)
        yield events
        dropped = CounterMetricFamily(
            "eventrouter_dropped", _HELP["dropped"], labels=["node", "reason"]
        )
        for (node, reason), value in sorted(reading.dropped.items()):
            dropped.add_metric([node, reason], value)
        yield dropped
        for name, key, values in (
            ("eventrouter_queue_events", "queue_events", reading.queue_events),
            ("eventrouter_queue_bytes", "queue_bytes", reading.queue_bytes),
            ("eventrouter_oldest_queued_seconds", "oldest", reading.oldest_queued_seconds),
        ):
            gauge = GaugeMetricFamily(name, _HELP[key], labels=["node"])
            for node, number in sorted(values.items()):
                gauge.add_metric([node], number)
            yield gauge
        histogram = HistogramMetricFamily(
            "eventrouter_delivery_seconds", _HELP["delivery"], labels=["node"]
        )
        for node, timings in sorted(reading.delivery_seconds.items()):
            buckets = [
                (_bound(bound), count)
                for bound, count in zip(timings.bounds, timings.counts, strict=False)
            ]
            buckets.append(("+Inf", timings.count))
            histogram.add_metric([node], buckets, timings.sum)
        yield histogram


def _bound(bound: float) -> str:
    return repr(float(bound))


class TreeMirror:
    """Multiprocess mode: mirrors ``stats()`` into prometheus_client metrics whose values
    live in ``PROMETHEUS_MULTIPROC_DIR``, so a collector in any process sums every process.

    Counters grow by what ``stats()`` grew since the last :meth:`sync`; gauges are summed
    over live processes (``oldest_queued_seconds``: the maximum); delivery durations are
    observed as each batch is delivered (a receiver of :data:`eventrouter.signals.delivered`).
    Call ``prometheus_client.multiprocess.mark_process_dead(pid)`` when a process exits, as
    prometheus_client asks for gunicorn.
    """

    def __init__(self, source: _HasStats, *, interval: float = 5.0) -> None:
        self.source = source
        self.interval = interval
        self.events = Counter(
            "eventrouter_events", _HELP["events"], ["node", "outcome"], registry=None
        )
        self.dropped = Counter(
            "eventrouter_dropped", _HELP["dropped"], ["node", "reason"], registry=None
        )
        self.queue_events = Gauge(
            "eventrouter_queue_events",
            _HELP["queue_events"],
            ["node"],
            registry=None,
            multiprocess_mode="livesum",
        )
        self.queue_bytes = Gauge(
            "eventrouter_queue_bytes",
            _HELP["queue_bytes"],
            ["node"],
            registry=None,
            multiprocess_mode="livesum",
        )
        self.oldest = Gauge(
            "eventrouter_oldest_queued_seconds",
            _HELP["oldest"],
            ["node"],
            registry=None,
            multiprocess_mode="livemax",
        )
        self.delivery = Histogram(
            "eventrouter_delivery_seconds",
            _HELP["delivery"],
            ["node"],
            registry=None,
            buckets=(*DELIVERY_BUCKETS, float("inf")),
        )
        self._lock = threading.Lock()
        self._last: dict[tuple[str, tuple[str, str]], int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        signals.delivered.connect(self._on_delivered)
        _fork.at_fork_in_child(self._after_fork_in_child, late=True)
        atexit.register(_sync_at_exit, weakref.ref(self))
        self.sync()
        self._start()

    def _on_delivered(self, sender: str, *, seconds: float | None = None, **_: Any) -> None:
        if seconds is not None:
            self.delivery.labels(tree.label(sender)).observe(seconds)

    def sync(self) -> None:
        """Write what ``stats()`` counted since the last call into this process's values."""
        reading = tree.read(self.source.stats())
        with self._lock:
            for family, counter, counts in (
                ("events", self.events, reading.events),
                ("dropped", self.dropped, reading.dropped),
            ):
                for labels, value in counts.items():
                    key = (family, labels)
                    grown = value - self._last.get(key, 0)
                    if grown > 0:
                        counter.labels(*labels).inc(grown)
                    self._last[key] = value
            for gauge, values in (
                (self.queue_events, reading.queue_events),
                (self.queue_bytes, reading.queue_bytes),
                (self.oldest, reading.oldest_queued_seconds),
            ):
                for node, number in values.items():
                    gauge.labels(node).set(number)

    def _start(self) -> None:
        self._stop = threading.Event()
        thread = threading.Thread(target=self._run, name="eventrouter metrics", daemon=True)
        self._thread = thread
        thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # the next sync writes these numbers
                self.sync()

    def _after_fork_in_child(self) -> None:
        # prometheus_client starts this process's values afresh, in files of its own pid;
        # what stats() holds now (the parent's routers' counts, fresh buffered nodes) was
        # the parent's to write, so it is the child's baseline.
        self._lock = threading.Lock()
        if self._stop.is_set():
            return
        with contextlib.suppress(Exception):
            self._last = self._baseline()
        self._start()

    def _baseline(self) -> dict[tuple[str, tuple[str, str]], int]:
        reading = tree.read(self.source.stats())
        last = {("events", labels): value for labels, value in reading.events.items()}
        last.update({("dropped", labels): value for labels, value in reading.dropped.items()})
        return last

    def close(self) -> None:
        """Sync one last time and stop syncing."""
        self._stop.set()
        signals.delivered.disconnect(self._on_delivered)
        self.sync()


def _sync_at_exit(ref: weakref.ref[TreeMirror]) -> None:
    mirror = ref()
    if mirror is not None and not mirror._stop.is_set():
        with contextlib.suppress(Exception):  # the interpreter is going away
            mirror.sync()


def register(
    tracker: _HasStats, registry: CollectorRegistry | None = None, *, interval: float = 5.0
) -> TreeCollector | TreeMirror:
    """Export ``tracker``'s tree (anything with ``stats()``: a tracker or a router).

    Args:
        tracker: the tracker (or router) to export.
        registry: where the collector is registered (default: prometheus_client's
            ``REGISTRY``). Unused in multiprocess mode, where the values go to files.
        interval: multiprocess mode only: seconds between two syncs of the counts.

    Returns:
        the :class:`TreeCollector` registered, or in multiprocess mode the
        :class:`TreeMirror` writing the values (call its ``sync()`` to write at once).
    """
    if multiprocess():
        return TreeMirror(tracker, interval=interval)
    collector = TreeCollector(tracker)
    (REGISTRY if registry is None else registry).register(collector)
    return collector


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` on ``host:port`` from a thread: the default registry, or in
    multiprocess mode the sum over every process's files."""
    registry: CollectorRegistry = REGISTRY
    if multiprocess():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=registry)
