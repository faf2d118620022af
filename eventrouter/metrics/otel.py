"""OpenTelemetry metrics of a routing tree, read from its ``stats()`` (``eventrouter[otel]``).

::

    from eventrouter.metrics import otel
    otel.instrument(tracker)    # on the global MeterProvider your OTel SDK set up

The same instruments as :mod:`eventrouter.metrics.prometheus`: observable counters
``eventrouter.events`` (attributes ``node``, ``outcome``) and ``eventrouter.dropped``
(``node``, ``reason``), observable gauges ``eventrouter.queue.events``,
``eventrouter.queue.bytes`` and ``eventrouter.oldest_queued`` (seconds), and the histogram
``eventrouter.delivery.duration`` (seconds per successful backend call of a buffered node of
this tree, recorded at each collection from its ``stats()["delivery_seconds"]``: no signal
receiver is connected, so routing stays on its unwatched path).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from eventrouter.errors import MissingExtraError

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
except ImportError as exc:  # pragma: no cover - the extra is installed in tests
    raise MissingExtraError("eventrouter.metrics.otel", "otel", "opentelemetry-api") from exc

from eventrouter.backends.buffered import DELIVERY_BUCKETS
from eventrouter.metrics import tree

__all__ = ["Instruments", "instrument"]


class _HasStats(Protocol):
    def stats(self) -> dict[str, Any]: ...


log = logging.getLogger("eventrouter.metrics")


class Instruments:
    """The instruments :func:`instrument` created; :meth:`close` stops the histogram."""

    def __init__(self, source: _HasStats, meter_provider: MeterProvider | None) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._timings: dict[str, tree.Histogram] = {}
        self._closed = False
        self._failures = 0
        provider = meter_provider or otel_metrics.get_meter_provider()
        meter = provider.get_meter("eventrouter")
        self.events = meter.create_observable_counter(
            "eventrouter.events",
            callbacks=[self._observe(lambda r: r.events, ("node", "outcome"))],
            unit="{event}",
            description="Events per node and outcome.",
        )
        self.dropped = meter.create_observable_counter(
            "eventrouter.dropped",
            callbacks=[self._observe(lambda r: r.dropped, ("node", "reason"))],
            unit="{event}",
            description="Events dropped or lost per node and reason.",
        )
        self.queue_events = meter.create_observable_gauge(
            "eventrouter.queue.events",
            callbacks=[self._observe(lambda r: r.queue_events, ("node",))],
            unit="{event}",
            description="Events queued in a buffered node.",
        )
        self.queue_bytes = meter.create_observable_gauge(
            "eventrouter.queue.bytes",
            callbacks=[self._observe(lambda r: r.queue_bytes, ("node",))],
            unit="By",
            description="Bytes queued in a buffered node.",
        )
        self.oldest_queued = meter.create_observable_gauge(
            "eventrouter.oldest_queued",
            callbacks=[self._observe(lambda r: r.oldest_queued_seconds, ("node",))],
            unit="s",
            description="Seconds the oldest queued event of a buffered node has waited.",
        )
        self.delivery = meter.create_histogram(
            "eventrouter.delivery.duration",
            unit="s",
            description="Seconds a buffered node's backend took per successful call.",
            explicit_bucket_boundaries_advisory=list(DELIVERY_BUCKETS),
        )

    def _observe(
        self, pick: Callable[[tree.Reading], dict[Any, Any]], keys: tuple[str, ...]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            reading = self._read()
            if reading is None:
                return
            for labels, value in pick(reading).items():
                parts = labels if isinstance(labels, tuple) else (labels,)
                yield Observation(value, dict(zip(keys, parts, strict=True)))

        return callback

    def _read(self) -> tree.Reading | None:
        """The tree's numbers now, after recording the delivery durations that are new in
        them; ``None`` (logged once) when ``stats()`` raised."""
        try:
            reading = tree.read(self.source.stats(), tree.path_of(self.source))
        except Exception as exc:
            self._failures += 1
            if self._failures == 1:
                log.error(
                    "stats() of %s raised %s; its metrics are left out (logged once)",
                    type(self.source).__name__,
                    type(exc).__name__,
                )
            return None
        with self._lock:
            if not self._closed:
                for node, timings in reading.delivery_seconds.items():
                    attributes = {"node": node}
                    for seconds in tree.observations(self._timings.get(node), timings):
                        self.delivery.record(seconds, attributes)
                    self._timings[node] = timings
        return reading

    def close(self) -> None:
        """Stop recording delivery durations (the observable instruments stay)."""
        with self._lock:
            self._closed = True


def instrument(tracker: _HasStats, meter_provider: MeterProvider | None = None) -> Instruments:
    """Create the tree's instruments on ``meter_provider`` (default: the global one).

    Args:
        tracker: the tracker (or router) whose ``stats()`` the instruments read.
        meter_provider: the OTel ``MeterProvider``; ``None`` uses the global provider.
    """
    return Instruments(tracker, meter_provider)
