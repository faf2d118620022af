"""Routing speed: eventrouter vs openedx event-tracking vs a hand-written limit.

The same tree in all three: a root router with two processors, a sink, and a nested router
with one processor and two sinks. The event is a ~1 KB Open edX-style event. The same run
times building one router with many backends (2,000, 16,000 and ``--build`` of them), which
must grow linearly. Run with
``make bench`` (which installs event-tracking with ``pip install --no-deps event-tracking pytz``)
or ``python benchmarks/routing.py [--events N] [--repeat R]``. Prints µs/event and ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from edx_events import Event, edx_event

from eventrouter.backends.routing import RoutingBackend


# The processors and sinks: identical callables for all three implementations.
def add_site(event: Event) -> Event | None:
    event["context"]["site"] = "courses.example.org"
    return None


def drop_nothing(event: Event) -> Event | None:
    if event["name"].startswith("edx.internal."):
        raise RuntimeError("unreachable in this benchmark")
    return event


def tag_analytics(event: Event) -> Event | None:
    event["data"]["routed_to"] = "analytics"
    return None


class Sink:
    """A backend that keeps a count, standing in for a real one."""

    def __init__(self) -> None:
        self.count = 0

    def send(self, event: Event) -> None:
        self.count += 1


def build_eventrouter() -> Callable[[Event], None]:
    nested = RoutingBackend(
        backends={"segment": Sink(), "mongo": Sink()}, processors=[tag_analytics]
    )
    root = RoutingBackend(
        backends={"archive": Sink(), "analytics": nested}, processors=[add_site, drop_nothing]
    )
    return root.send


def build_event_tracking() -> Callable[[Event], None] | None:
    try:
        from eventtracking.backends.routing import RoutingBackend as ETRoutingBackend
    except ImportError:
        return None
    nested = ETRoutingBackend(
        backends={"segment": Sink(), "mongo": Sink()}, processors=[tag_analytics]
    )
    root = ETRoutingBackend(
        backends={"archive": Sink(), "analytics": nested}, processors=[add_site, drop_nothing]
    )
    return root.send


def plain_copy(value: Any) -> Any:
    """One plain recursive copy: what any router must at least do per level."""
    if isinstance(value, dict):
        return {key: plain_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_copy(item) for item in value]
    return value


def build_hand_written() -> Callable[[Event], None]:
    archive, segment, mongo = Sink(), Sink(), Sink()

    def nested(event: Event) -> None:
        event = plain_copy(event)
        result = tag_analytics(event)
        event = event if result is None else result
        segment.send(event)
        mongo.send(event)

    def root(event: Event) -> None:
        event = plain_copy(event)
        for processor in (add_site, drop_nothing):
            result = processor(event)
            event = event if result is None else result
        nested(event)
        archive.send(event)

    return root


def measure(send: Callable[[Event], None], event: Event, events: int, repeat: int) -> float:
    """Best-of-``repeat`` µs of CPU time per event over ``events`` sends.

    CPU time, not wall-clock time: on a shared machine the wall clock also counts the time
    other processes hold the core, which made runs differ by 2x.
    """
    for _ in range(min(events, 2000)):
        send(event)
    samples = []
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(events):
            send(event)
        samples.append((time.process_time() - start) / events * 1e6)
    return min(samples) if repeat < 5 else statistics.median(sorted(samples)[: repeat // 2 + 1])


def measure_with_receiver(event: Event, events: int, repeat: int) -> float:
    """The same tree while a receiver listens to ``delivered`` (signals.watched is true)."""
    from eventrouter import signals

    heard = [0]

    def count(sender: str, **kwargs: Any) -> None:
        heard[0] += 1

    signals.delivered.connect(count)
    try:
        return measure(build_eventrouter(), event, events, repeat)
    finally:
        signals.delivered.disconnect(count)


def measure_build(count: int) -> float:
    """Seconds to build one router with ``count`` backends and route one event through it."""
    sinks = {f"backend{i:07}": Sink() for i in range(count)}
    start = time.perf_counter()
    router = RoutingBackend(sinks)
    router.send(edx_event())
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--build", type=int, default=100_000, help="backends in one router")
    args = parser.parse_args(argv)
    event = edx_event()
    size = len(json.dumps(event, default=str))
    results: dict[str, float] = {}
    results["hand-written"] = measure(build_hand_written(), event, args.events, args.repeat)
    results["eventrouter"] = measure(build_eventrouter(), event, args.events, args.repeat)
    results["+ a receiver"] = measure_with_receiver(event, args.events, args.repeat)
    et = build_event_tracking()
    if et is not None:
        results["event-tracking"] = measure(et, event, args.events, args.repeat)
    print(f"event size: {size} bytes as JSON; {args.events} events x {args.repeat} runs")
    for name, us in results.items():
        print(f"  {name:<15} {us:8.2f} µs/event")
    ours = results["eventrouter"]
    print(f"eventrouter / hand-written: {ours / results['hand-written']:.2f}x (target <= 1.3x)")
    if "event-tracking" in results:
        print(
            f"event-tracking / eventrouter: {results['event-tracking'] / ours:.1f}x faster "
            "(target >= 5x)"
        )
    else:
        print(
            "event-tracking not installed: pip install --no-deps event-tracking pytz",
            file=sys.stderr,
        )
    for count in sorted({2000, 16000, args.build}):
        seconds = measure_build(count)
        print(
            f"build a router with {count:>7} backends: {seconds:6.2f} s "
            f"({seconds / count * 1e6:.1f} µs per backend)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
