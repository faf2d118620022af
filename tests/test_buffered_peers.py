"""A buffered node in front of a real MongoDB-protocol server that stops and comes back."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from buffered_helpers import WAIT, assert_accounted
from conftest import free_port, nx_27017_command, wait_for_ping

from eventrouter import build_event
from eventrouter.backends.buffered import BufferedBackend
from eventrouter.backends.mongodb import MongoBackend

pytestmark = pytest.mark.peers  # a MongoDB-protocol server that stops and restarts


class Server:
    """An nx-27017 on a file database, so a restart keeps what was stored."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.folder / "server.log"
        command = [
            nx_27017_command(),
            "--db",
            str(self.folder / "events.db"),
            "-p",
            str(self.port),
            "--log-file",
            str(log),
            "--pid-file",
            str(self.folder / "server.pid"),
        ]
        with (self.folder / "stdout.log").open("ab") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        wait_for_ping(self.uri, self.process, self.folder / "stdout.log")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    running.start()
    yield running
    running.stop()


def stored_ids(uri: str) -> list[str]:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        return [doc["_id"] for doc in client["delivery"]["events"].find({}, {"_id": 1})]
    finally:
        client.close()


def test_mongodb_stopped_mid_stream_and_restarted_loses_nothing(
    server: Server, tmp_path: Path
) -> None:
    backend = MongoBackend(
        uri=server.uri,
        database="delivery",
        collection="events",
        serverSelectionTimeoutMS=300,
        connectTimeoutMS=300,
    )
    node = BufferedBackend(
        backend,
        batch_size=10,
        flush_interval=0.01,
        backoff=(0.05, 0.2),
        max_retries=10_000,
        retry_deadline=WAIT,
        dead_letter=tmp_path / "dead.jsonl",
    )
    ids = []
    for n in range(30):
        event = build_event("before", {"n": n})
        ids.append(event["id"])
        node.send(event)
    assert node.flush(WAIT)
    server.stop()
    for n in range(30):
        event = build_event("during", {"n": n})
        ids.append(event["id"])
        node.send(event)
    retrying = threading.Event()
    for _ in range(int(WAIT / 0.05)):
        if node.stats()["retried"]:
            retrying.set()
            break
        retrying.wait(0.05)
    assert retrying.is_set(), "the node never retried while the server was down"
    server.start()
    node.close(WAIT)
    stored = stored_ids(server.uri)
    assert sorted(stored) == sorted(ids)
    assert_accounted(node, ids, stored, tmp_path / "dead.jsonl")
