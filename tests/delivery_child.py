"""A child process for the exit and signal tests: ``python delivery_child.py MODE FOLDER N``.

It emits N events through a tracker whose only node is buffered over a backend that writes
each acknowledged id to ``FOLDER/delivered`` (slowly: 5 ms a batch), with its dead letter
in ``FOLDER/dead.jsonl``, writes the emitted ids to ``FOLDER/emitted``, then ends as MODE
says: ``exit`` (falls off the end without close), ``signal`` (waits for SIGTERM with the
handlers installed), ``os_exit`` (``os._exit(0)``, the one case that loses the queue).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import eventrouter
from eventrouter import lifecycle
from eventrouter.backends.buffered import BufferedBackend
from eventrouter.typing import Event


class SlowFile:
    def __init__(self, path: Path) -> None:
        self.handle = path.open("a", buffering=1)
        self.lock = threading.Lock()

    def send(self, event: Event) -> None:
        self.send_batch([event])

    def send_batch(self, events: Sequence[Event]) -> None:
        time.sleep(0.005)
        with self.lock:
            self.handle.write("".join(f"{event['id']}\n" for event in events))


def main(mode: str, folder: Path, count: int) -> None:
    node = BufferedBackend(
        SlowFile(folder / "delivered"),
        batch_size=10,
        max_queue=count,
        flush_interval=5.0,  # only exit/close sends a partial batch
        dead_letter=folder / "dead.jsonl",
    )
    tracker = eventrouter.Tracker(backends={"slow": node})
    eventrouter.register_tracker(tracker)
    lifecycle.set_exit_timeout(float(os.environ.get("EXIT_TIMEOUT", "30")))
    if mode == "signal":
        lifecycle.install_signal_handlers(timeout=float(os.environ.get("EXIT_TIMEOUT", "30")))
    with (folder / "emitted").open("w") as emitted:
        for n in range(count):
            event = eventrouter.build_event("child.event", {"n": n})
            emitted.write(event["id"] + "\n")
            tracker.send(event)
    if mode == "os_exit":
        os._exit(0)
    if mode == "signal":
        print("ready", flush=True)
        time.sleep(60)
        sys.exit(5)  # the signal never came


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))
