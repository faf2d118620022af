"""OpenTelemetry metrics of a routing tree, read from its ``stats()`` (``eventrouter[otel]``).

::

    from eventrouter.metrics import otel
    otel.instrument(tracker)    # on the global MeterProvider your OTel SDK set up

The same instruments as :mod:`eventrouter.metrics.prometheus`: observable counters
``eventrouter.events`` (attributes ``node``, ``outcome``) and ``eventrouter.dropped``
(``node``, ``reason``), observable gauges ``eventrouter.queue.events``,
``eventrouter.queue.bytes`` and ``eventrouter.oldest_queued`` (seconds), and the histogram
``eventrouter.delivery.duration`` (seconds per successful backend call of a buffered node,
recorded from :data:`eventrouter.signals.delivered` on the delivering thread).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from eventrouter.errors import MissingExtraError

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
except ImportError as exc:  # pragma: no cover - the extra is installed in tests
    raise MissingExtraError("eventrouter.metrics.otel", "otel", "opentelemetry-api") from exc

from eventrouter import signals
from eventrouter.backends.buffered import DELIVERY_BUCKETS
from eventrouter.metrics import tree

__all__ = ["Instruments", "instrument"]


class _HasStats(Protocol):
    def stats(self) -> dict[str, Any]: ...


class Instruments:
    """The instruments :func:`instrument` created; :meth:`close` stops the histogram."""

    def __init__(self, source: _HasStats, meter_provider: MeterProvider | None) -> None:
        self.source = source
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
        signals.delivered.connect(self._on_delivered)

    def _observe(
        self, pick: Callable[[tree.Reading], dict[Any, Any]], keys: tuple[str, ...]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            values = pick(tree.read(self.source.stats()))
            for labels, value in values.items():
                parts = labels if isinstance(labels, tuple) else (labels,)
                yield Observation(value, dict(zip(keys, parts, strict=True)))

        return callback

    def _on_delivered(self, sender: str, *, seconds: float | None = None, **_: Any) -> None:
        if seconds is not None:
            self.delivery.record(seconds, {"node": tree.label(sender)})

    def close(self) -> None:
        """Stop recording delivery durations (the observable instruments stay)."""
        signals.delivered.disconnect(self._on_delivered)


def instrument(tracker: _HasStats, meter_provider: MeterProvider | None = None) -> Instruments:
    """Create the tree's instruments on ``meter_provider`` (default: the global one).

    Args:
        tracker: the tracker (or router) whose ``stats()`` the instruments read.
        meter_provider: the OTel ``MeterProvider``; ``None`` uses the global provider.
    """
    return Instruments(tracker, meter_provider)
