"""Exporters: what they read, what they leave alone, and how they survive odd trees."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from metrics_tree import WAIT, run_tree
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from eventrouter import signals
from eventrouter.backends.buffered import BufferedBackend, _Timings
from eventrouter.backends.memory import MemoryBackend
from eventrouter.backends.routing import RoutingBackend
from eventrouter.errors import MetricsRegistrationError
from eventrouter.metrics import otel, prometheus, tree
from eventrouter.tracker import Tracker

pytestmark = pytest.mark.skipif(
    prometheus.multiprocess(), reason="these run the single-process collector"
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def otel_points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def test_exporters_leave_routing_on_its_unwatched_path(tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    tracker, _ = run_tree(tmp_path)
    try:
        instruments = otel.instrument(tracker, meter_provider=provider)
        prometheus.register(tracker, CollectorRegistry())
        assert signals.watched is False
        # and the histogram still counts every delivered batch, read from stats()
        points = {
            p.attributes["node"]: p for p in otel_points(reader, "eventrouter.delivery.duration")
        }
        timings = tree.read(tracker.stats()).delivery_seconds
        assert {node: p.count for node, p in points.items()} == {
            node: h.count for node, h in timings.items()
        }
        instruments.close()
    finally:
        provider.shutdown()


def test_the_otel_histogram_hears_only_its_own_tree() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    mine = Tracker({"archive": MemoryBackend()})
    other = Tracker({"queue": BufferedBackend(MemoryBackend())})
    try:
        otel.instrument(mine, meter_provider=provider)
        for _ in range(5):
            other.emit("x", {})
        assert other.flush(WAIT) is not False
        assert otel_points(reader, "eventrouter.delivery.duration") == []
    finally:
        other.close(WAIT)
        provider.shutdown()


def test_observations_rebuild_each_bucket_and_the_sum() -> None:
    before, after = _Timings(), _Timings()
    for seconds in (0.001, 0.02, 0.02, 0.3):
        before.observe(seconds)
        after.observe(seconds)
    for seconds in (0.004, 0.07, 0.2, 2.0, 2.0):
        after.observe(seconds)
    rebuilt = _Timings()
    old = tree.Histogram(**{k: v for k, v in before.snapshot().items()})
    new = tree.Histogram(**{k: v for k, v in after.snapshot().items()})
    for seconds in tree.observations(old, new):
        rebuilt.observe(seconds)
    assert rebuilt.count == 5
    assert [a - b for a, b in zip(after.counts, before.counts, strict=True)] == rebuilt.counts
    assert rebuilt.sum == pytest.approx(after.sum - before.sum)


def test_two_trees_on_one_registry_need_names_and_get_a_tracker_label() -> None:
    first, second = Tracker({"archive": MemoryBackend()}), Tracker({"archive": MemoryBackend()})
    registry = CollectorRegistry()
    prometheus.register(first, registry)
    with pytest.raises(MetricsRegistrationError):
        prometheus.register(second, registry)

    named = CollectorRegistry()
    prometheus.register(first, named, name="web")
    prometheus.register(second, named, name="jobs")
    with pytest.raises(MetricsRegistrationError):
        prometheus.register(second, named, name="jobs")
    first.emit("x", {})
    second.emit("y", {})
    second.emit("z", {})
    text = generate_latest(named).decode()
    assert text.count("# TYPE eventrouter_events_total counter") == 1
    samples = scrape(named)
    key = "eventrouter_events_total"
    emitted = (("node", "(root)"), ("outcome", "emitted"))
    assert samples[(key, (*emitted, ("tracker", "web")))] == 1
    assert samples[(key, (*emitted, ("tracker", "jobs")))] == 2


def test_a_backend_whose_stats_raise_is_left_out_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Custom:
        def send(self, event: Any) -> None:
            pass

        def stats(self) -> dict[str, int]:
            raise RuntimeError("secret")

    tracker = Tracker({"archive": MemoryBackend(), "custom": Custom()})
    registry = CollectorRegistry()
    prometheus.register(tracker, registry)
    tracker.emit("x", {})
    with caplog.at_level(logging.ERROR):
        scrape(registry)
        samples = scrape(registry)
    events = "eventrouter_events_total"
    assert samples[(events, (("node", "archive"), ("outcome", "delivered")))] == 1
    assert samples[(events, (("node", "custom"), ("outcome", "delivered")))] == 1
    assert samples[("eventrouter_stats_errors_total", (("node", "custom"),))] == 2
    said = [r for r in caplog.records if "stats() of backend 'custom'" in r.getMessage()]
    assert len(said) == 1
    assert "secret" not in caplog.text


def test_a_subtree_is_labelled_as_in_its_tree() -> None:
    analytics = RoutingBackend({"sink": MemoryBackend()})
    tracker = Tracker({"analytics": analytics})
    registry = CollectorRegistry()
    prometheus.register(analytics, registry)
    tracker.emit("x", {})
    samples = scrape(registry)
    events = "eventrouter_events_total"
    assert samples[(events, (("node", "analytics"), ("outcome", "emitted")))] == 1
    assert samples[(events, (("node", "analytics.sink"), ("outcome", "delivered")))] == 1


def test_processor_errors_are_exported() -> None:
    def broken(event: Any) -> None:
        raise ValueError("bug")

    tracker = Tracker({"archive": MemoryBackend()}, processors=[broken])
    registry = CollectorRegistry()
    prometheus.register(tracker, registry)
    tracker.emit("x", {})
    samples = scrape(registry)
    key = ("eventrouter_events_total", (("node", "(root)"), ("outcome", "processor_errors")))
    assert samples[key] == 1
