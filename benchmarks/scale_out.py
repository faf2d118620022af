"""Events per second through a celery node on Redis: 1 and 2 worker processes, batched or not.

    python benchmarks/scale_out.py [--events N] [--latency MS] [--redis URL]

For each case the events are first emitted and published (the broker holds every task), then
``eventrouter worker`` starts and the time from the first event reaching the sink to the last
one is the workers' drain rate. Publishing is timed too: it runs on the buffered node's thread
in the emitting process, never on the caller's. The sink appends one line per batch to a file
(``--latency`` makes each batch also wait, like a remote database would).

Targets (issue 11): batched >= 10x one task per event; 2 workers >= 1.6x one.

Needs Redis: the one on 127.0.0.1:6379 (database 14, flushed), else a ``redis-server`` started
on a free port.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class CountingSink:
    """Appends one line per batch, holding the batch's size; optionally waits per batch."""

    def __init__(self, path: str, latency: float = 0.0) -> None:
        self.path = path
        self.latency = latency

    def send(self, event: dict[str, Any]) -> None:
        self.send_batch([event])

    def send_batch(self, events: Sequence[dict[str, Any]]) -> None:
        if self.latency:
            time.sleep(self.latency)
        stamp = f"{time.time():.6f} {len(events)}\n".encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, stamp)
        finally:
            os.close(fd)


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _redis(url: str | None, folder: Path) -> tuple[str, subprocess.Popen[bytes] | None]:
    if url:
        return url, None
    if _answers(6379):
        return "redis://127.0.0.1:6379/14", None
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("no Redis on 127.0.0.1:6379 and no redis-server to start: pass --redis URL")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    while not _answers(port):
        time.sleep(0.05)
    return f"redis://127.0.0.1:{port}/0", process


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


def _totals(sink: Path) -> tuple[int, float, float]:
    """(events, first stamp, last stamp) written to the sink so far."""
    if not sink.exists():
        return 0, 0.0, 0.0
    count, first, last = 0, 0.0, 0.0
    for line in sink.read_text().splitlines():
        stamp, size = line.split()
        count += int(size)
        when = float(stamp)
        first = when if not first else min(first, when)
        last = max(last, when)
    return count, first, last


def run_case(
    broker: str,
    folder: Path,
    *,
    events: int,
    batch: int,
    workers: int,
    latency: float,
    separate: bool = False,
) -> dict[str, float]:
    """Publish ``events`` in tasks of ``batch``, drain them with ``workers`` processes: the
    children of one ``eventrouter worker --concurrency=N``, or with ``separate``, N workers
    of one child each (N consumers of the queue instead of one parent feeding N children)."""
    import eventrouter

    _flush(broker)
    sink = folder / f"sink-{batch}-{workers}.txt"
    sink.unlink(missing_ok=True)
    config = folder / f"tree-{batch}-{workers}.yaml"
    config.write_text(
        json.dumps(
            {
                "dead_letter": str(folder / "dead.jsonl"),
                "backends": {
                    "scaled": {
                        "class": "celery",
                        "options": {
                            "broker": broker,
                            "queue": "scale-out",
                            "batch_size": batch,
                            "flush_interval": 0.05,
                            "buffer": {"max_queue": events + 1},
                        },
                        "backends": {
                            "sink": {
                                "class": "scale_out.CountingSink",
                                "options": {"path": str(sink), "latency": latency},
                            }
                        },
                    }
                },
            }
        )
    )
    tracker = eventrouter.load(config)
    start = time.perf_counter()
    for n in range(events):
        tracker.emit("bench.scale", {"n": n, "user": "u-12345", "course": "course-v1:X+Y+Z"})
    emitted = time.perf_counter() - start
    tracker.close(timeout=600)
    published = time.perf_counter() - start
    stats = tracker.get_backend("scaled").stats()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    log = (folder / f"worker-{batch}-{workers}.log").open("wb")
    command = [sys.executable, "-m", "eventrouter", "worker", str(config), "--loglevel=WARNING"]
    started = [
        subprocess.Popen(
            [*command, f"--concurrency={1 if separate else workers}"],
            stdout=log,
            stderr=log,
            env=env,
            cwd=folder,
        )
        for _ in range(workers if separate else 1)
    ]
    try:
        deadline = time.monotonic() + 1800
        while True:
            count, first, last = _totals(sink)
            gone = any(worker.poll() is not None for worker in started)
            if count >= events or time.monotonic() > deadline or gone:
                break
            time.sleep(0.2)
    finally:
        for worker in started:
            worker.terminate()
        for worker in started:
            worker.wait(60)
        log.close()
    if count < events:
        sys.exit(f"only {count} of {events} events arrived; see {log.name}")
    return {
        "events": events,
        "tasks": stats["tasks"],
        "emit_us": emitted / events * 1e6,
        "publish_per_s": events / published,
        "drain_per_s": events / max(last - first, 1e-9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000, help="events per batched case")
    parser.add_argument("--unbatched-events", type=int, default=4000)
    parser.add_argument("--latency", type=float, default=0.0, help="ms the sink waits per batch")
    parser.add_argument("--redis", help="a Redis URL to use (its database is flushed)")
    parser.add_argument(
        "--separate",
        action="store_true",
        help="run 2 workers as two `eventrouter worker --concurrency=1` processes",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    folder = Path(tempfile.mkdtemp(prefix="scale-out-"))
    broker, server = _redis(args.redis, folder)
    results: dict[tuple[int, int], dict[str, float]] = {}
    try:
        for batch, events in ((100, args.events), (1, args.unbatched_events)):
            for workers in (1, 2):
                result = run_case(
                    broker,
                    folder,
                    events=events,
                    batch=batch,
                    workers=workers,
                    latency=args.latency / 1000,
                    separate=args.separate,
                )
                results[(batch, workers)] = result
                print(
                    f"batch {batch:>3}, {workers} worker(s): {result['drain_per_s']:>9,.0f} "
                    f"events/s drained; published {result['publish_per_s']:>9,.0f} events/s "
                    f"in {result['tasks']:.0f} tasks; emit {result['emit_us']:.1f} us/event",
                    flush=True,
                )
    finally:
        _flush(broker)
        if server is not None:
            server.terminate()
        shutil.rmtree(folder, ignore_errors=True)
    batched = results[(100, 1)]["drain_per_s"] / results[(1, 1)]["drain_per_s"]
    scaled = results[(100, 2)]["drain_per_s"] / results[(100, 1)]["drain_per_s"]
    scaled_unbatched = results[(1, 2)]["drain_per_s"] / results[(1, 1)]["drain_per_s"]
    print(f"batched / one task per event (1 worker): {batched:.1f}x (target >= 10x)")
    print(
        f"2 workers / 1 worker, batched: {scaled:.2f}x; one task per event: "
        f"{scaled_unbatched:.2f}x (target >= 1.6x)"
    )
    print(f"CPUs here: {os.cpu_count()}; load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
