"""MongoDB write speed: eventrouter's ``send_batch`` vs one ``insert_one`` per event.

The per-event way is openedx event-tracking's ``MongoBackend`` when it is installed (``make
bench`` installs it; it writes with ``w=0``, so its clock stops only once the server holds
every event), else the same loop written here. Also shown: that loop with acknowledged writes,
as eventrouter writes. All against the same server in the same run: ``EVENTROUTER_MONGO_URI``
when set, else an ``nx-27017`` started here on a free port.

Run: ``python benchmarks/mongodb.py [--events N] [--batch-size B]``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edx_events import edx_event
from pymongo import MongoClient

from eventrouter.backends.mongodb import MongoBackend

Event = dict[str, Any]
DATABASE = "eventrouter_bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def mongo_server() -> Iterator[str]:
    """Yield the URI of a server: ``EVENTROUTER_MONGO_URI``, or an nx-27017 started here."""
    given = os.environ.get("EVENTROUTER_MONGO_URI")
    if given:
        yield given
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        command = [
            str(Path(sys.executable).parent / "nx-27017"),
            *("--db", "memory", "--host", "127.0.0.1", "-p", str(port)),
            *("--log-file", f"{folder}/server.log", "--pid-file", f"{folder}/server.pid"),
        ]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        uri = f"mongodb://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=500)
                try:
                    client.admin.command("ping")
                    break
                except Exception:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"nx-27017 did not start on port {port}") from None
                    time.sleep(0.1)
                finally:
                    client.close()
            yield uri
        finally:
            process.terminate()
            process.wait(timeout=10)


def wait_until_stored(collection: Any, count: int) -> None:
    while collection.count_documents({}) < count:
        time.sleep(0.005)


def timed(
    label: str,
    collection: Any,
    count: int,
    make_run: Callable[[], Callable[[], None]],
    *,
    acknowledged: bool,
    repeat: int,
) -> float:
    """Best events/s of ``repeat`` runs; the clock stops once ``count`` documents are stored.

    ``make_run`` builds a fresh writer (and its connection) outside the clock; with
    ``acknowledged`` writes the run's return proves storage, otherwise the stored documents
    are counted (which costs the count's time, as it would cost any w=0 writer to know).
    """
    best = 0.0
    for _ in range(repeat):
        collection.drop()
        run = make_run()
        start = time.perf_counter()
        run()
        if not acknowledged:
            wait_until_stored(collection, count)
        elapsed = time.perf_counter() - start
        stored = collection.count_documents({})
        if stored != count:
            raise SystemExit(f"{label}: {stored} of {count} events stored")
        best = max(best, count / elapsed)
    print(f"  {label:<58} {best:>10,.0f} events/s")
    return best


def eventrouter_batches(uri: str, name: str, events: list[Event], size: int) -> Callable[[], None]:
    backend = MongoBackend(uri=uri, database=DATABASE, collection=name, create_indexes=False)
    backend.database.command("ping")  # connect outside the clock

    def run() -> None:
        for start in range(0, len(events), size):
            backend.send_batch(events[start : start + size])
        backend.close()

    return run


def insert_one_loop(uri: str, name: str, events: list[Event], w: int) -> Callable[[], None]:
    client: MongoClient[dict[str, Any]] = MongoClient(uri, w=w, tz_aware=True)
    client.admin.command("ping")  # connect outside the clock
    collection = client[DATABASE][name]
    documents = [dict(event) for event in events]  # insert_one adds _id to the dict

    def run() -> None:
        for document in documents:
            collection.insert_one(document)

    return run


def supports_unacknowledged_writes(uri: str) -> bool:
    """Whether a ``w=0`` insert is stored at all (nx-27017 0.8 drops them: it cannot parse
    the unacknowledged OP_MSG, so event-tracking's default loses every event there)."""
    client: MongoClient[dict[str, Any]] = MongoClient(uri, w=0)
    collection = client[DATABASE]["probe_w0"]
    try:
        collection.insert_one({"probe": 1})
        deadline = time.monotonic() + 2
        checker: MongoClient[dict[str, Any]] = MongoClient(uri)
        try:
            while time.monotonic() < deadline:
                if checker[DATABASE]["probe_w0"].count_documents({}):
                    return True
                time.sleep(0.05)
            return False
        finally:
            checker[DATABASE]["probe_w0"].drop()
            checker.close()
    finally:
        client.close()


def event_tracking_backend(uri: str, name: str, events: list[Event], w: int) -> Callable[[], None]:
    module = importlib.import_module("eventtracking.backends.mongodb")  # untyped
    event_tracking_mongo_backend = module.MongoBackend

    host, port = uri.removeprefix("mongodb://").split("/")[0].rsplit(":", 1)
    backend = event_tracking_mongo_backend(
        host=host, port=int(port), database=DATABASE, collection=name, extra={"w": w}
    )
    backend.collection.drop_indexes()  # the others write without secondary indexes too
    documents = [dict(event) for event in events]

    def run() -> None:
        for document in documents:
            backend.send(document)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    events = [edx_event(n) for n in range(args.events)]
    have_event_tracking = importlib.util.find_spec("eventtracking") is not None

    with mongo_server() as uri:
        checker: MongoClient[dict[str, Any]] = MongoClient(uri)
        db = checker[DATABASE]
        print(f"{args.events:,} events of ~1 KB into {uri}")
        batched = timed(
            f"eventrouter send_batch ({args.batch_size}/batch, w=1)",
            db["batched"],
            args.events,
            lambda: eventrouter_batches(uri, "batched", events, args.batch_size),
            acknowledged=True,
            repeat=args.repeat,
        )
        w = 0 if supports_unacknowledged_writes(uri) else 1
        if w:
            print("  (this server drops w=0 writes: event-tracking's loop runs with w=1 here)")
        if have_event_tracking:
            per_event = timed(
                f"event-tracking MongoBackend, insert_one per event (w={w})",
                db["event_tracking"],
                args.events,
                lambda: event_tracking_backend(uri, "event_tracking", events, w),
                acknowledged=w != 0,
                repeat=args.repeat,
            )
        else:
            per_event = timed(
                f"insert_one per event, w={w} (event-tracking's way)",
                db["per_event"],
                args.events,
                lambda: insert_one_loop(uri, "per_event", events, w=w),
                acknowledged=w != 0,
                repeat=args.repeat,
            )
        acknowledged = timed(
            "insert_one per event, w=1",
            db["acknowledged"],
            args.events,
            lambda: insert_one_loop(uri, "acknowledged", events, w=1),
            acknowledged=True,
            repeat=args.repeat,
        )
        checker.drop_database(DATABASE)
        checker.close()
    print(f"send_batch vs event-tracking's insert_one loop (w={w}): {batched / per_event:.1f}x")
    print(f"send_batch vs insert_one loop (w=1):                  {batched / acknowledged:.1f}x")


if __name__ == "__main__":
    main()
