"""Emit latency on the calling thread, buffered vs not, and memory with a stalled backend.

1. The example tree (examples/config.yaml, writing under a temporary folder) plus one more
   backend that sleeps for each call (20 ms by default): ``tracker.emit`` p50/p99/max on the
   calling thread, with that backend plain and behind a ``BufferedBackend``; the buffered
   run is repeated with other sleeps to show it is flat in the backend's latency.
2. Peak RSS: a fresh process emits 1,000,000 events (~1 KB each) into a buffered node whose
   backend never returns, with ``max_queue`` high enough that the byte bound (``max_bytes``)
   is what limits the queue; events that do not fit are dropped (``drop_newest``) so the
   run writes no dead-letter file. Compared with the bound + 50 MB.

Run: ``python benchmarks/emit_latency.py [--events N] [--rss-events N] [--max-bytes B]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from edx_events import edx_event

import eventrouter
from eventrouter.backends.buffered import BufferedBackend

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "config.yaml"


class Sleeper:
    """A backend taking ``seconds`` per call, like a remote peer."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def send(self, event: dict[str, Any]) -> None:
        time.sleep(self.seconds)

    def send_batch(self, events: list[dict[str, Any]]) -> None:
        time.sleep(self.seconds)


class Nothing:
    """A backend that does nothing: the tree's own cost."""

    def send(self, event: dict[str, Any]) -> None:
        pass


class Stalled:
    """A backend whose calls never return (a peer that accepted the connection and hangs)."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def send(self, event: dict[str, Any]) -> None:
        self.gate.wait()

    def send_batch(self, events: list[dict[str, Any]]) -> None:
        self.gate.wait()


def percentiles(samples_ns: list[int]) -> tuple[float, float, float]:
    ordered = sorted(samples_ns)
    p50 = ordered[len(ordered) // 2] / 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000
    return p50, p99, ordered[-1] / 1000


def emit_latency(slow: Any, events: int, folder: Path) -> tuple[float, float, float]:
    os.environ["EVENTROUTER_ARCHIVE"] = str(folder / "archive.jsonl")
    os.environ["EVENTROUTER_ANALYTICS_PREVIEW"] = str(folder / "analytics.jsonl")
    tracker = eventrouter.load(EXAMPLE)
    tracker.router.register_backend("slow", slow)
    data = edx_event()["data"]
    names = ("edx.video.played", "edx.course.enrollment.activated", "problem_check", "other")
    for n in range(200):  # warm up: imports, file handles, the worker thread
        tracker.emit(names[n % 4], data)
    tracker.flush(60)
    samples: list[int] = []
    clock = time.perf_counter_ns
    for n in range(events):
        start = clock()
        tracker.emit(names[n % 4], data)
        samples.append(clock() - start)
    tracker.close(60)
    return percentiles(samples)


def memory(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in bytes (Linux), else the peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def send_latency(events: int) -> tuple[float, float, float]:
    """``BufferedBackend.send`` alone (snapshot + enqueue), its backend sleeping 20 ms."""
    node = BufferedBackend(Sleeper(0.020))
    event = edx_event()
    clock = time.perf_counter_ns
    samples: list[int] = []
    for _ in range(events):
        start = clock()
        node.send(event)
        samples.append(clock() - start)
    node.close(60)
    return percentiles(samples)


def rss_child(count: int, max_bytes: int) -> None:
    """In a fresh process: emit ``count`` events into a stalled buffered node."""
    node = BufferedBackend(Stalled(), max_queue=count, max_bytes=max_bytes, when_full="drop_newest")
    tracker = eventrouter.Tracker(backends={"stalled": node})
    base = memory("VmRSS")
    data = edx_event()["data"]
    for _ in range(count):
        tracker.emit("edx.video.played", data)
    peak = memory("VmHWM")
    stats = node.stats()
    print(
        f"{base} {peak} {stats['bytes']} {stats['depth']} {sum(stats['dropped'].values())}",
        flush=True,
    )
    os._exit(0)  # the stalled worker would keep close() waiting: skip it on purpose


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="buffered emits measured")
    parser.add_argument("--plain-events", type=int, default=100, help="unbuffered emits")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per row; the run with the median p99 is shown"
    )
    parser.add_argument("--rss-events", type=int, default=1_000_000)
    parser.add_argument("--max-bytes", type=int, default=32 * 1024 * 1024)
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_events, args.max_bytes)
        return 0

    print("emit latency on the calling thread, example tree + a slow backend (µs)")
    print(f"  {'':<28} {'p50':>9} {'p99':>9} {'max':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows: list[tuple[str, Any, int]] = [
            ("no slow backend (baseline)", Nothing, args.events),
            ("plain, backend 20 ms", lambda: Sleeper(0.020), args.plain_events),
            ("buffered, backend 0 ms", lambda: BufferedBackend(Sleeper(0.0)), args.events),
            ("buffered, backend 20 ms", lambda: BufferedBackend(Sleeper(0.020)), args.events),
            ("buffered, backend 200 ms", lambda: BufferedBackend(Sleeper(0.200)), args.events),
        ]
        for label, make, events in rows:
            # This machine may be shared: of a few runs, show the one with the median p99.
            runs = sorted(
                (emit_latency(make(), events, folder) for _ in range(max(args.repeat, 1))),
                key=lambda run: run[1],
            )
            p50, p99, top = runs[len(runs) // 2]
            print(f"  {label:<28} {p50:9.1f} {p99:9.1f} {top:10.1f}")
    p50, p99, top = send_latency(args.events)
    print(f"  {'BufferedBackend.send alone':<28} {p50:9.1f} {p99:9.1f} {top:10.1f}")
    print("  target: buffered p99 <= 50 µs, flat in the backend's latency")

    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--rss-child",
            f"--rss-events={args.rss_events}",
            f"--max-bytes={args.max_bytes}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    base, peak, queued_bytes, depth, dropped = (int(x) for x in child.stdout.split())
    mib = 1024 * 1024
    print(
        f"\npeak RSS, stalled backend, {args.rss_events:,} emits: {peak / mib:.0f} MiB "
        f"(before emitting: {base / mib:.0f} MiB; growth {(peak - base) / mib:.0f} MiB)"
    )
    print(
        f"  queue held {depth:,} events, {queued_bytes / mib:.1f} MiB counted; dropped {dropped:,}"
    )
    limit = args.max_bytes + 50 * mib
    verdict = "within" if peak - base <= limit else "OVER"
    print(f"  growth {verdict} the byte bound + 50 MiB ({limit / mib:.0f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
