"""Render docs/img/metrics-dashboard.png from a real run of a tree, scraped like Prometheus.

A tree with two buffered nodes is driven at a steady rate for 40 s; between 12 s and 22 s
both backends are down. Every half second the script scrapes the tree's Prometheus
exposition (``generate_latest`` on a registry holding :func:`eventrouter.metrics.prometheus.
register`'s collector) and evaluates the queries of docs/metrics.md on those samples
(``rate()`` over 5 s, ``histogram_quantile``), then plots them as the dashboard's panels.

Not run in CI. Needs matplotlib: ``pip install matplotlib``, then
``python docs/scripts/render_dashboard.py [--seconds 40] [--out docs/img/metrics-dashboard.png]``.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from eventrouter.backends.buffered import BufferedBackend
from eventrouter.backends.memory import MemoryBackend
from eventrouter.errors import DeliveryError, EventEmissionExit
from eventrouter.metrics import prometheus
from eventrouter.tracker import Tracker

RATE = 400
"""Events emitted per second."""

WINDOW = 5.0
"""Seconds of the ``rate()`` window."""


class Service:
    """A batch backend that takes ``per_batch`` seconds per call, and is down on cue."""

    def __init__(self, per_batch: float) -> None:
        self.per_batch = per_batch
        self.down = threading.Event()

    def send(self, event: dict[str, Any]) -> None:
        self.send_batch([event])

    def send_batch(self, events: Sequence[dict[str, Any]]) -> None:
        time.sleep(self.per_batch)
        if self.down.is_set():
            raise DeliveryError("service unavailable")


def drop_internal(event: dict[str, Any]) -> None:
    if event["name"].startswith("internal."):
        raise EventEmissionExit


def build(folder: Path) -> tuple[Tracker, list[Service]]:
    warehouse, analytics = Service(0.004), Service(0.01)
    tracker = Tracker(
        {
            "archive": MemoryBackend(),
            "warehouse": BufferedBackend(
                warehouse,
                batch_size=50,
                flush_interval=0.2,
                backoff=(0.2, 1.0),
                retry_deadline=6.0,
                max_retries=100,
                dead_letter=folder / "dead.jsonl",
            ),
            "analytics": BufferedBackend(
                analytics,
                batch_size=20,
                flush_interval=0.2,
                max_queue=1500,
                when_full="drop_oldest",
                backoff=(0.2, 1.0),
                retry_deadline=60.0,
                max_retries=1000,
            ),
        },
        processors=[drop_internal],
    )
    return tracker, [warehouse, analytics]


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def drive(tracker: Tracker, services: list[Service], seconds: float, stop: threading.Event) -> None:
    start = time.monotonic()
    sent = 0
    while not stop.is_set():
        now = time.monotonic() - start
        if now >= seconds:
            return
        for service in services:
            if 12.0 <= now < 22.0:
                service.down.set()
            else:
                service.down.clear()
        while sent < now * RATE:
            name = "internal.ping" if sent % 10 == 0 else "video.play"
            tracker.emit(name, {"n": sent, "user": f"u{sent % 97}"})
            sent += 1
        time.sleep(0.01)


def rate(series: list[tuple[float, float]], at: int) -> float:
    """``rate()`` over :data:`WINDOW` seconds ending at sample ``at``."""
    t1, v1 = series[at]
    for t0, v0 in series[: at + 1]:
        if t1 - t0 <= WINDOW:
            return (v1 - v0) / (t1 - t0) if t1 > t0 else 0.0
    return 0.0


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """``histogram_quantile`` over (upper bound, cumulative count) pairs."""
    total = buckets[-1][1]
    if total <= 0:
        return float("nan")
    rank, low, below = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return low
            return low + (bound - low) * (rank - below) / max(count - below, 1e-9)
        low, below = bound, count
    return low


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "img" / "metrics-dashboard.png",
    )
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="eventrouter-dashboard-"))
    tracker, services = build(folder)
    registry = CollectorRegistry()
    prometheus.register(tracker, registry)
    stop = threading.Event()
    driver = threading.Thread(target=drive, args=(tracker, services, args.seconds, stop))
    start = time.monotonic()
    driver.start()
    scrapes: list[tuple[float, dict[Any, float]]] = []
    while driver.is_alive():
        scrapes.append((time.monotonic() - start, scrape(registry)))
        time.sleep(0.5)
    tracker.close(30)

    counters: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    gauges: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    dropped: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for at, samples in scrapes:
        for (name, labels), value in samples.items():
            label = dict(labels)
            if name == "eventrouter_events_total":
                counters[(label["node"], label["outcome"])].append((at, value))
            elif name == "eventrouter_dropped_total":
                dropped[(label["node"], label["reason"])].append((at, value))
            elif name in ("eventrouter_queue_events", "eventrouter_oldest_queued_seconds"):
                gauges[(name, label["node"])].append((at, value))

    fig, axes = plt.subplots(3, 2, figsize=(13, 11), sharex=True)
    fig.suptitle("eventrouter: a run with both services down from 12 s to 22 s", fontsize=13)
    panels = [
        (
            axes[0][0],
            'rate(eventrouter_events_total{outcome=~"emitted|vetoed|delivered"}[5s])',
            lambda node, outcome: outcome in ("emitted", "vetoed", "delivered"),
        ),
        (
            axes[0][1],
            'rate(eventrouter_events_total{outcome=~"retried|dead_lettered|dropped"}[5s])',
            lambda node, outcome: outcome in ("retried", "dead_lettered", "dropped"),
        ),
    ]
    for axis, title, keep in panels:
        for (node, outcome), series in sorted(counters.items()):
            if not keep(node, outcome) or not any(v for _, v in series):
                continue
            xs = [t for t, _ in series]
            ys = [rate(series, i) for i in range(len(series))]
            axis.plot(xs, ys, label=f"{node} {outcome}")
        axis.set_title(title, fontsize=9)
        axis.set_ylabel("events/s")
        axis.legend(fontsize=8)
    for axis, gauge, title, unit in (
        (
            axes[1][0],
            "eventrouter_oldest_queued_seconds",
            "eventrouter_oldest_queued_seconds",
            "seconds",
        ),
        (axes[1][1], "eventrouter_queue_events", "eventrouter_queue_events", "events queued"),
    ):
        for (name, node), series in sorted(gauges.items()):
            if name == gauge:
                axis.plot([t for t, _ in series], [v for _, v in series], label=node)
        if gauge == "eventrouter_oldest_queued_seconds":
            axis.axhline(5.0, color="red", linestyle="--", linewidth=1, label="alert: > 5 s")
        axis.set_title(title, fontsize=9)
        axis.set_ylabel(unit)
        axis.legend(fontsize=8)
    axis = axes[2][0]
    for (node, reason), series in sorted(dropped.items()):
        xs = [t for t, _ in series]
        axis.plot(xs, [rate(series, i) for i in range(len(series))], label=f"{node} {reason}")
    axis.set_title("rate(eventrouter_dropped_total[5s]) by node, reason", fontsize=9)
    axis.set_ylabel("events/s")
    axis.set_xlabel("seconds into the run")
    axis.legend(fontsize=8)
    axis = axes[2][1]
    for node in ("warehouse", "analytics"):
        xs, p50, p95 = [], [], []
        for index, (at, samples) in enumerate(scrapes):
            past = next((s for t, s in scrapes[: index + 1] if at - t <= WINDOW), samples)
            buckets = []
            for (name, labels), value in samples.items():
                label = dict(labels)
                if name == "eventrouter_delivery_seconds_bucket" and label["node"] == node:
                    key = (name, labels)
                    buckets.append((float(label["le"]), value - past.get(key, 0.0)))
            buckets.sort()
            if buckets:
                xs.append(at)
                p50.append(quantile(0.5, buckets) * 1000)
                p95.append(quantile(0.95, buckets) * 1000)
        axis.plot(xs, p50, label=f"{node} p50")
        axis.plot(xs, p95, label=f"{node} p95", linestyle="--")
    axis.set_title(
        "histogram_quantile(0.95, rate(eventrouter_delivery_seconds_bucket[5s]))", fontsize=9
    )
    axis.set_ylabel("ms per batch")
    axis.set_xlabel("seconds into the run")
    axis.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out} from {len(scrapes)} scrapes; final stats:")
    for (node, outcome), series in sorted(counters.items()):
        print(f"  {node:<10} {outcome:<14} {series[-1][1]:8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
