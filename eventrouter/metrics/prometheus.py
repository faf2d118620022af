"""Prometheus metrics of a routing tree, read from its ``stats()`` (``eventrouter[prometheus]``).

::

    from eventrouter.metrics import prometheus
    prometheus.register(tracker)          # on prometheus_client's default registry
    prometheus.serve(9464)                # or your framework's /metrics view

Exposes, per node (its dotted path; ``(root)`` for the root router):
``eventrouter_events_total{node,outcome}``, ``eventrouter_dropped_total{node,reason}``,
``eventrouter_failed_total{node,reason}``, ``eventrouter_stats_errors_total{node}``,
``eventrouter_queue_events{node}``, ``eventrouter_queue_bytes{node}``,
``eventrouter_oldest_queued_seconds{node}`` and the histogram
``eventrouter_delivery_seconds{node}`` (one observation per backend call of a buffered node,
read from its ``stats()["delivery_seconds"]``). A tree registered with a ``name`` adds the
label ``tracker`` to each series: every tree on one registry needs one.

In a single process, a collector reads ``stats()`` at each scrape. Under gunicorn's (or
Celery prefork's) multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR`` set before
``prometheus_client`` is first imported, each process writes its counts through
prometheus_client's multiprocess values (every ``interval`` seconds, at fork and at exit),
and :func:`serve` (or your ``MultiProcessCollector``) sums them.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, Literal, Protocol

from eventrouter.errors import MetricsPortError, MetricsRegistrationError, MissingExtraError

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
    from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
except ImportError as exc:  # pragma: no cover - the extra is installed in tests
    raise MissingExtraError(
        "eventrouter.metrics.prometheus", "prometheus", "prometheus-client"
    ) from exc

from eventrouter import _fork
from eventrouter.backends.buffered import DELIVERY_BUCKETS
from eventrouter.metrics import tree

__all__ = [
    "TreeCollector",
    "TreeMirror",
    "mark_celery_children_dead_at_exit",
    "multiprocess",
    "register",
    "serve",
]


class _HasStats(Protocol):
    def stats(self) -> dict[str, Any]: ...


log = logging.getLogger("eventrouter.metrics")

_HELP = {
    "events": "Events per node and outcome (emitted, vetoed, delivered, retried, failed, "
    "dead_lettered, dropped, processor_errors).",
    "dropped": "Events dropped or lost per node and reason (see eventrouter.signals.Reason).",
    "failed": "Events a buffered node gave up on, per node and reason.",
    "stats_errors": "Times a node's stats() raised; its own numbers were left out.",
    "queue_events": "Events queued in a buffered node.",
    "queue_bytes": "Bytes queued in a buffered node (pickled size).",
    "oldest": "Seconds the oldest queued event of a buffered node has waited.",
    "delivery": "Seconds a buffered node's backend took per successful call (a batch).",
}

_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("events", "eventrouter_events", "outcome"),
    ("dropped", "eventrouter_dropped", "reason"),
    ("failed", "eventrouter_failed", "reason"),
)
_GAUGES: tuple[tuple[str, str, str, Literal["livesum", "livemax"]], ...] = (
    ("queue_events", "eventrouter_queue_events", "queue_events", "livesum"),
    ("queue_bytes", "eventrouter_queue_bytes", "queue_bytes", "livesum"),
    ("oldest_queued_seconds", "eventrouter_oldest_queued_seconds", "oldest", "livemax"),
)


def multiprocess() -> bool:
    """Whether prometheus_client runs in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class _Source:
    """One registered tree: what it reads, its ``tracker`` label, and its read errors."""

    def __init__(self, source: _HasStats, name: str | None) -> None:
        self.source = source
        self.name = name
        self.failures = 0

    def read(self) -> tree.Reading | None:
        """The tree's numbers now; ``None`` (logged once, counted) when ``stats()`` raised."""
        try:
            return tree.read(self.source.stats(), tree.path_of(self.source))
        except Exception as exc:
            self.failures += 1
            if self.failures == 1:
                log.error(
                    "stats() of the tree %s raised %s; it is left out of the metrics (logged once)",
                    self.name or type(self.source).__name__,
                    type(exc).__name__,
                )
            return None

    def labels(self, *values: str) -> list[str]:
        return [self.name, *values] if self.name is not None else list(values)


def _claim(taken: Sequence[str | None], name: str | None) -> None:
    """Refuse a tree whose series would clash with those of the trees ``taken`` already."""
    if not taken:
        return
    if name is None or None in taken:
        raise MetricsRegistrationError(
            "a tree is already registered here: give each tree its own name "
            "(register(tracker, name=...)), which becomes the `tracker` label of its series"
        )
    if name in taken:
        raise MetricsRegistrationError(
            f"a tree named {name!r} is already registered here: give this one another name"
        )


class TreeCollector:
    """A prometheus_client collector that reads a tracker's (or router's) ``stats()`` at
    each scrape; one per registry, for every tree registered on it."""

    def __init__(self, source: _HasStats, name: str | None = None) -> None:
        self.sources = [_Source(source, name)]
        self._lock = threading.Lock()

    @property
    def source(self) -> _HasStats:
        """The first tree registered."""
        return self.sources[0].source

    def add(self, source: _HasStats, name: str | None) -> None:
        """Export another tree with this collector, under its own ``tracker`` label."""
        with self._lock:
            _claim([s.name for s in self.sources], name)
            self.sources.append(_Source(source, name))

    def _families(self) -> dict[str, Any]:
        named = any(s.name is not None for s in self.sources)
        tracker = ["tracker"] if named else []
        families: dict[str, Any] = {}
        for key, metric, kind in _COUNTERS:
            families[key] = CounterMetricFamily(metric, _HELP[key], labels=[*tracker, "node", kind])
        families["stats_errors"] = CounterMetricFamily(
            "eventrouter_stats_errors", _HELP["stats_errors"], labels=[*tracker, "node"]
        )
        for key, metric, help_key, _ in _GAUGES:
            families[key] = GaugeMetricFamily(metric, _HELP[help_key], labels=[*tracker, "node"])
        families["delivery"] = HistogramMetricFamily(
            "eventrouter_delivery_seconds", _HELP["delivery"], labels=[*tracker, "node"]
        )
        return families

    def describe(self) -> list[Metric]:
        """The families' names, without reading any tree (``register`` does not scrape)."""
        return list(self._families().values())

    def collect(self) -> Iterator[Metric]:
        """The metric families of the trees now."""
        with self._lock:
            sources = list(self.sources)
        families = self._families()
        for source in sources:
            reading = source.read()
            if reading is None:
                continue
            for key, _, _ in _COUNTERS:
                counts: dict[tuple[str, str], int] = getattr(reading, key)
                for (node, kind), value in sorted(counts.items()):
                    families[key].add_metric(source.labels(node, kind), value)
            for node, errors in sorted(reading.stats_errors.items()):
                families["stats_errors"].add_metric(source.labels(node), errors)
            for key, _, _, _ in _GAUGES:
                values: dict[str, float] = getattr(reading, key)
                for node, number in sorted(values.items()):
                    families[key].add_metric(source.labels(node), number)
            for node, timings in sorted(reading.delivery_seconds.items()):
                buckets = [
                    (_bound(bound), count)
                    for bound, count in zip(timings.bounds, timings.counts, strict=False)
                ]
                buckets.append(("+Inf", timings.count))
                families["delivery"].add_metric(source.labels(node), buckets, timings.sum)
        yield from families.values()


def _bound(bound: float) -> str:
    return repr(float(bound))


class TreeMirror:
    """Multiprocess mode: mirrors ``stats()`` into prometheus_client metrics whose values
    live in ``PROMETHEUS_MULTIPROC_DIR``, so a collector in any process sums every process.

    Counters grow by what ``stats()`` grew since the last :meth:`sync`; gauges are summed
    over live processes (``oldest_queued_seconds``: the maximum); delivery durations are
    observed from each buffered node's ``stats()["delivery_seconds"]`` at each sync (no
    signal receiver: routing stays on its unwatched path). Call
    ``prometheus_client.multiprocess.mark_process_dead(pid)`` when a process exits, as
    prometheus_client asks for gunicorn.
    """

    def __init__(
        self, source: _HasStats, *, interval: float = 5.0, name: str | None = None
    ) -> None:
        self.source = source
        self.name = name
        self.interval = interval
        self._source = _Source(source, name)
        tracker = ["tracker"] if name is not None else []
        self.counters = {
            key: Counter(metric, _HELP[key], [*tracker, "node", kind], registry=None)
            for key, metric, kind in _COUNTERS
        }
        self.stats_errors = Counter(
            "eventrouter_stats_errors", _HELP["stats_errors"], [*tracker, "node"], registry=None
        )
        self.gauges = {
            key: Gauge(
                metric, _HELP[help_key], [*tracker, "node"], registry=None, multiprocess_mode=mode
            )
            for key, metric, help_key, mode in _GAUGES
        }
        self.delivery = Histogram(
            "eventrouter_delivery_seconds",
            _HELP["delivery"],
            [*tracker, "node"],
            registry=None,
            buckets=(*DELIVERY_BUCKETS, float("inf")),
        )
        self._lock = threading.Lock()
        self._last: dict[tuple[str, tuple[str, ...]], int] = {}
        self._timings: dict[str, tree.Histogram] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        _fork.at_fork_in_child(self._after_fork_in_child, late=True)
        atexit.register(_sync_at_exit, weakref.ref(self))
        self.sync()
        self._start()

    @property
    def events(self) -> Any:
        """The ``eventrouter_events`` counter."""
        return self.counters["events"]

    def sync(self) -> None:
        """Write what ``stats()`` counted since the last call into this process's values."""
        reading = self._source.read()
        if reading is None:
            return
        labels = self._source.labels
        with self._lock:
            grown_counts: list[tuple[Any, str, dict[Any, int]]] = [
                (self.counters[key], key, getattr(reading, key)) for key, _, _ in _COUNTERS
            ]
            grown_counts.append(
                (
                    self.stats_errors,
                    "stats_errors",
                    {(node,): n for node, n in reading.stats_errors.items()},
                )
            )
            for counter, family, counts in grown_counts:
                for key, value in counts.items():
                    last = (family, key)
                    grown = value - self._last.get(last, 0)
                    if grown > 0:
                        counter.labels(*labels(*key)).inc(grown)
                    self._last[last] = value
            for key, gauge in self.gauges.items():
                values: dict[str, float] = getattr(reading, key)
                for node, number in values.items():
                    gauge.labels(*labels(node)).set(number)
            for node, timings in reading.delivery_seconds.items():
                observe = self.delivery.labels(*labels(node)).observe
                for seconds in tree.observations(self._timings.get(node), timings):
                    observe(seconds)
                self._timings[node] = timings

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
            self._baseline()
        self._start()

    def _baseline(self) -> None:
        reading = self._source.read()
        if reading is None:
            return
        last: dict[tuple[str, tuple[str, ...]], int] = {}
        for key, _, _ in _COUNTERS:
            counts: dict[tuple[str, str], int] = getattr(reading, key)
            last.update({(key, labels): value for labels, value in counts.items()})
        last.update({("stats_errors", (n,)): v for n, v in reading.stats_errors.items()})
        self._last = last
        self._timings = dict(reading.delivery_seconds)

    def close(self) -> None:
        """Sync one last time and stop syncing."""
        self._stop.set()
        self.sync()
        with _registered_lock:
            if _mirrors.get(self.name) is self:
                del _mirrors[self.name]


def _sync_at_exit(ref: weakref.ref[TreeMirror]) -> None:
    mirror = ref()
    if mirror is not None and not mirror._stop.is_set():
        with contextlib.suppress(Exception):  # the interpreter is going away
            mirror.sync()


_registered_lock = threading.Lock()
_collectors: weakref.WeakKeyDictionary[CollectorRegistry, TreeCollector] = (
    weakref.WeakKeyDictionary()
)
_mirrors: dict[str | None, TreeMirror] = {}


def register(
    tracker: _HasStats,
    registry: CollectorRegistry | None = None,
    *,
    interval: float = 5.0,
    name: str | None = None,
) -> TreeCollector | TreeMirror:
    """Export ``tracker``'s tree (anything with ``stats()``: a tracker or a router).

    A subtree (a router inside a tree) is exported with the node labels it has in its tree.

    Args:
        tracker: the tracker (or router) to export.
        registry: where the collector is registered (default: prometheus_client's
            ``REGISTRY``). Unused in multiprocess mode, where the values go to files.
        interval: multiprocess mode only: seconds between two syncs of the counts.
        name: the ``tracker`` label of this tree's series; needed by every tree when more
            than one is registered on one registry (or, in multiprocess mode, in a process).

    Returns:
        the :class:`TreeCollector` exporting the registry's trees, or in multiprocess mode
        the :class:`TreeMirror` writing the values (call its ``sync()`` to write at once).

    Raises:
        MetricsRegistrationError: another tree is registered there without a name, or
            under the same name.
    """
    if multiprocess():
        with _registered_lock:
            _claim(list(_mirrors), name)
            mirror = _mirrors[name] = TreeMirror(tracker, interval=interval, name=name)
        return mirror
    target = REGISTRY if registry is None else registry
    with _registered_lock:
        collector = _collectors.get(target)
        fresh = TreeCollector(tracker, name)
        try:
            target.register(fresh)
        except ValueError:  # its families are there already: ours, or someone else's
            if collector is None:
                raise MetricsRegistrationError(
                    "the registry already has series named eventrouter_*: register each "
                    "tree once, on the registry its exporter serves"
                ) from None
            collector.add(tracker, name)
            return collector
        _collectors[target] = fresh
        return fresh


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` on ``host:port`` from a thread: the default registry, or in
    multiprocess mode the sum over every process's files. ``host`` defaults to the
    loopback interface: pass ``"0.0.0.0"`` to serve other machines.

    Raises:
        MetricsPortError: the port is taken (or not ours to open); an ``OSError``.
    """
    registry: CollectorRegistry = REGISTRY
    if multiprocess():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise MetricsPortError(
            exc.errno,
            f"cannot serve the metrics on {host}:{port} ({exc.strerror or type(exc).__name__}):"
            " choose another metrics port (--metrics-port)",
        ) from exc


def _mark_dead(*_: Any, **__: Any) -> None:
    with contextlib.suppress(Exception):
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def mark_celery_children_dead_at_exit() -> None:
    """Multiprocess mode under Celery prefork: when a child process ends, drop its live
    gauges (``prometheus_client.multiprocess.mark_process_dead``) from Celery's
    ``worker_process_shutdown`` signal, which runs in the child."""
    from celery.signals import worker_process_shutdown

    worker_process_shutdown.connect(_mark_dead, weak=False)
