"""Prometheus: the text exposition parses and its numbers are the tree's stats()."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from metrics_tree import EMITTED, WAIT, Gate, run_tree
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from eventrouter.backends.buffered import DELIVERY_BUCKETS, BufferedBackend
from eventrouter.metrics import prometheus, tree
from eventrouter.tracker import Tracker

pytestmark = pytest.mark.skipif(
    prometheus.multiprocess(), reason="these run the single-process collector"
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    """Every sample of the exposition, by name and sorted labels."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_events_total_equals_stats_per_node_and_outcome(tmp_path: Path) -> None:
    tracker, _ = run_tree(tmp_path)
    registry = CollectorRegistry()
    prometheus.register(tracker, registry)
    samples = scrape(registry)
    stats = tracker.stats()
    analytics = stats["backends"]["analytics"]["stats"]
    flaky = analytics["backends"]["flaky"]["stats"]
    tiny = analytics["backends"]["tiny"]["stats"]
    total = "eventrouter_events_total"
    assert value(samples, total, node="(root)", outcome="emitted") == stats["received"] == EMITTED
    assert value(samples, total, node="(root)", outcome="vetoed") == stats["vetoed"] == 1
    assert (
        value(samples, total, node="archive", outcome="delivered")
        == stats["backends"]["archive"]["delivered"]
    )
    broken = stats["backends"]["broken"]
    assert value(samples, total, node="broken", outcome="failed") == broken["failed"] == 12
    assert value(samples, total, node="broken", outcome="dead_lettered") == broken["dead_lettered"]
    assert value(samples, total, node="analytics", outcome="emitted") == analytics["received"]
    for outcome in ("delivered", "retried", "failed", "dead_lettered"):
        assert value(samples, total, node="analytics.flaky", outcome=outcome) == flaky[outcome]
    assert value(samples, total, node="analytics.tiny", outcome="dropped") == 9
    assert (
        value(samples, "eventrouter_dropped_total", node="analytics.tiny", reason="drop_newest")
        == tiny["dropped"]["drop_newest"]
    )
    # and nothing more than the tree's reading: one source of truth
    events = {
        (dict(labels)["node"], dict(labels)["outcome"]): v
        for (name, labels), v in samples.items()
        if name == total
    }
    assert events == tree.read(stats).events


def test_delivery_seconds_is_a_histogram_per_buffered_node(tmp_path: Path) -> None:
    tracker, _ = run_tree(tmp_path)
    registry = CollectorRegistry()
    prometheus.register(tracker, registry)
    samples = scrape(registry)
    flaky = tracker.stats()["backends"]["analytics"]["stats"]["backends"]["flaky"]["stats"]
    timings = flaky["delivery_seconds"]
    node = "analytics.flaky"
    count = value(samples, "eventrouter_delivery_seconds_count", node=node)
    assert count == timings["count"] == flaky["delivered"]  # one event per call here
    assert value(samples, "eventrouter_delivery_seconds_bucket", node=node, le="+Inf") == count
    buckets = [
        value(samples, "eventrouter_delivery_seconds_bucket", node=node, le=repr(bound))
        for bound in DELIVERY_BUCKETS
    ]
    assert buckets == timings["counts"]
    assert buckets == sorted(buckets)


def test_queue_gauges_show_what_a_stalled_node_holds() -> None:
    gate = Gate()
    node = BufferedBackend(gate, batch_size=1, max_queue=100)
    tracker = Tracker({"stalled": node})
    try:
        tracker.emit("first", {})
        assert gate.entered.wait(WAIT)
        for _ in range(3):
            tracker.emit("waiting", {"pad": "x" * 100})
        registry = CollectorRegistry()
        prometheus.register(tracker, registry)
        samples = scrape(registry)
        stats = node.stats()
        assert value(samples, "eventrouter_queue_events", node="stalled") == stats["depth"] == 3
        assert value(samples, "eventrouter_queue_bytes", node="stalled") == stats["bytes"] > 300
        assert value(samples, "eventrouter_oldest_queued_seconds", node="stalled") >= 0
    finally:
        gate.gate.set()
        tracker.close(WAIT)


MULTIPROCESS_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from eventrouter.backends.buffered import BufferedBackend
    from eventrouter.backends.memory import MemoryBackend
    from eventrouter.tracker import Tracker
    from eventrouter.metrics import prometheus

    tracker = Tracker({"sink": MemoryBackend(), "queued": BufferedBackend(MemoryBackend())})
    mirror = prometheus.register(tracker, interval=3600)
    for _ in range(2):
        tracker.emit("parent", {})
    tracker.flush()
    mirror.sync()
    children = []
    for count, how in ((3, "sync"), (5, "exit")):
        pid = os.fork()
        if pid == 0:
            for _ in range(count):
                tracker.emit("child", {})
            tracker.flush()
            if how == "sync":
                mirror.sync()
                os._exit(0)
            sys.exit(0)  # the at-exit sync writes the counts
        children.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    sys.exit(max(codes))
    """
)


@pytest.mark.slow
def test_multiprocess_mode_sums_two_forked_workers(tmp_path: Path) -> None:
    folder = tmp_path / "multiproc"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    done = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_SCRIPT], env=env, timeout=WAIT, check=False
    )
    assert done.returncode == 0
    assert len(list(folder.glob("counter_*.db"))) == 3  # the parent's and each child's
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    samples = scrape(registry)
    total = "eventrouter_events_total"
    assert value(samples, total, node="(root)", outcome="emitted") == 2 + 3 + 5
    assert value(samples, total, node="sink", outcome="delivered") == 2 + 3 + 5
    assert value(samples, total, node="queued", outcome="delivered") == 2 + 3 + 5
    assert value(samples, "eventrouter_delivery_seconds_count", node="queued") >= 3


def test_register_defaults_to_the_global_registry(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    tracker, _ = run_tree(tmp_path)
    collector = prometheus.register(tracker)
    try:
        assert REGISTRY.get_sample_value(
            "eventrouter_events_total", {"node": "(root)", "outcome": "emitted"}
        ) == float(EMITTED)
    finally:
        REGISTRY.unregister(collector)  # type: ignore[arg-type]


def test_a_collector_costs_nothing_until_scraped(tmp_path: Path) -> None:
    calls: list[int] = []
    lock = threading.Lock()

    class Counting:
        def stats(self) -> dict[str, Any]:
            with lock:
                calls.append(1)
            return {"received": 0, "vetoed": 0, "backends": {}}

    registry = CollectorRegistry()
    prometheus.register(Counting(), registry)
    assert calls == []
    scrape(registry)
    assert calls == [1]
