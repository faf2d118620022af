"""OpenTelemetry: the instruments read back through the SDK's in-memory metric reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metrics_tree import EMITTED, run_tree
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from eventrouter.metrics import otel, tree


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Each instrument's data points, by name."""
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def test_observable_counters_read_back_equal_to_stats(tmp_path: Path) -> None:
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    try:
        tracker, _ = run_tree(tmp_path)
        instruments = otel.instrument(tracker, meter_provider=provider)
        read = points(memory)
        events = {
            (p.attributes["node"], p.attributes["outcome"]): p.value
            for p in read["eventrouter.events"]
        }
        assert events == tree.read(tracker.stats()).events
        assert events[("(root)", "emitted")] == EMITTED
        dropped = {
            (p.attributes["node"], p.attributes["reason"]): p.value
            for p in read["eventrouter.dropped"]
        }
        assert dropped[("analytics.tiny", "drop_newest")] == 9
        instruments.close()
    finally:
        provider.shutdown()


def test_the_histogram_records_each_delivered_batch(tmp_path: Path) -> None:
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    try:
        # instrument first: the histogram hears batches as the worker delivers them
        holder: dict[str, Any] = {}

        class Late:
            def stats(self) -> dict[str, Any]:
                return holder["tracker"].stats()  # type: ignore[no-any-return]

        instruments = otel.instrument(Late(), meter_provider=provider)
        tracker, _ = run_tree(tmp_path)
        holder["tracker"] = tracker
        read = points(memory)
        histograms = {p.attributes["node"]: p for p in read["eventrouter.delivery.duration"]}
        stats = tracker.stats()["backends"]["analytics"]["stats"]["backends"]
        for name in ("flaky", "tiny", "full"):
            timings = stats[name]["stats"]["delivery_seconds"]
            assert histograms[f"analytics.{name}"].count == timings["count"] > 0
        instruments.close()
    finally:
        provider.shutdown()


def test_queue_gauges_are_observed_per_buffered_node(tmp_path: Path) -> None:
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    try:
        tracker, _ = run_tree(tmp_path)
        otel.instrument(tracker, meter_provider=provider).close()
        read = points(memory)
        depths = {p.attributes["node"]: p.value for p in read["eventrouter.queue.events"]}
        assert depths == {"analytics.tiny": 0, "analytics.full": 0, "analytics.flaky": 0}
        assert {p.attributes["node"] for p in read["eventrouter.queue.bytes"]} == set(depths)
        assert {p.attributes["node"] for p in read["eventrouter.oldest_queued"]} == set(depths)
    finally:
        provider.shutdown()
