"""Session fixtures that start real peers: a MongoDB server and a Segment ingest endpoint.

MongoDB: the server at ``EVENTROUTER_MONGO_URI`` when that is set (a real ``mongod``),
otherwise ``nx-27017`` (a MongoDB wire-protocol server on SQLite, installed with the ``test``
extra) started on a free port. If it cannot start, the tests that need it fail; none skip.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis on a shared, loaded machine: no per-example deadline and no "too slow" health
# check, both of which measure time (the examples and what they check stay the same).
settings.register_profile(
    "eventrouter",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "eventrouter"))

STARTUP_TIMEOUT = 60.0
"""Seconds a server gets to start answering; generous, so slow CI machines do not fail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def unused_port() -> int:
    """A local TCP port with no server behind it (for "the server is down" tests)."""
    return free_port()


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")


def run_in_fork(child: Callable[[], int], timeout: float = STARTUP_TIMEOUT) -> int:
    """Run ``child()`` in a forked process and return its exit code (its return value).

    An exception in the child prints its traceback and exits with 99. A child still running
    after ``timeout`` seconds (only a bug, such as a deadlock, gets there) is killed and the
    test fails.
    """
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 99
        try:
            code = child()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child did not finish within {timeout} s (a deadlock?)")


@contextlib.contextmanager
def lock_held_elsewhere(owner: Any) -> Iterator[None]:
    """Hold ``owner._lock`` in another thread for the block, as if a fork came mid-send."""
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with owner._lock:
            holding.set()
            done.wait(STARTUP_TIMEOUT)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(STARTUP_TIMEOUT)
    try:
        yield
    finally:
        done.set()
        holder.join()


@dataclass
class ForkStorm:
    """What :func:`fork_while_threads_send` sent: ids by the parent's threads and by each
    child, the children's exit codes, and what the parent's threads raised."""

    sent: list[str] = field(default_factory=list)
    child_ids: list[str] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


def fork_while_threads_send(
    make_event: Callable[[str], dict[str, Any]],
    send: Callable[[dict[str, Any]], Any],
    child: Callable[[dict[str, Any]], int],
    *,
    forks: int = 50,
    threads: int = 4,
) -> ForkStorm:
    """Fork ``forks`` children, one after the other, while ``threads`` threads of the parent
    keep sending events named ``parent`` with ``send``: forks taken mid-send, with locks held
    and connections in use. Each child runs ``child(event)`` with an event of its own named
    ``child``; its return value is its exit code."""
    storm = ForkStorm()
    stop = threading.Event()

    def parent_sender() -> None:
        while not stop.is_set():
            one = make_event("parent")
            try:
                send(one)
            except BaseException as exc:  # pragma: no cover - reported by the test
                storm.errors.append(exc)
                return
            storm.sent.append(one["id"])

    senders = [threading.Thread(target=parent_sender) for _ in range(threads)]
    for sender in senders:
        sender.start()
    try:
        for _ in range(forks):
            one = make_event("child")
            storm.child_ids.append(one["id"])
            storm.codes.append(run_in_fork(lambda one=one: child(one)))
    finally:
        stop.set()
        for sender in senders:
            sender.join()
    return storm


# -- MongoDB ------------------------------------------------------------------------------


def nx_27017_command() -> str:
    """The nx-27017 executable of the running interpreter's environment."""
    beside = Path(sys.executable).parent / "nx-27017"
    if beside.exists():
        return str(beside)
    found = shutil.which("nx-27017")
    if found is None:
        pytest.fail(
            "nx-27017 is not installed (pip install -e '.[test]'), and EVENTROUTER_MONGO_URI "
            "is not set: the MongoDB tests need one of them"
        )
    return found


def wait_for_ping(uri: str, process: subprocess.Popen[bytes] | None, log_file: Path) -> None:
    """Return once the server at ``uri`` answers ``ping``; fail the session if it never does."""
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    deadline = time.monotonic() + STARTUP_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            break
        client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=500)
        try:
            client.admin.command("ping")
            return
        except PyMongoError as exc:
            last = exc
        finally:
            client.close()
        time.sleep(0.1)
    output = log_file.read_text(errors="replace")[-3000:] if log_file.exists() else ""
    pytest.fail(f"the MongoDB server at {uri} did not answer ping ({last!r}); its log:\n{output}")


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI of a running MongoDB-compatible server for the whole session."""
    given = os.environ.get("EVENTROUTER_MONGO_URI")
    if given:
        wait_for_ping(given, None, Path(os.devnull))
        yield given
        return
    folder = tmp_path_factory.mktemp("nx-27017")
    log_file = folder / "server.log"
    port = free_port()
    command = [
        nx_27017_command(),
        "--db",
        "memory",
        "--host",
        "127.0.0.1",
        "-p",
        str(port),
        "--log-file",
        str(log_file),
        "--pid-file",
        str(folder / "server.pid"),
    ]
    with (folder / "stdout.log").open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    uri = f"mongodb://127.0.0.1:{port}"
    try:
        wait_for_ping(uri, process, folder / "stdout.log")
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def mongo_client(mongo_uri: str) -> Iterator[Any]:
    """A pymongo client of the tests' own, to check what the backend stored."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, tz_aware=True)
    yield client
    client.close()


class RestartableMongo:
    """An nx-27017 server of one test's own, on a free port, that the test can stop and start.

    Its data is in a file, so what was stored before :meth:`stop` is there after
    :meth:`start`. Always nx-27017 (even with ``EVENTROUTER_MONGO_URI`` set): the test must
    control the process.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and return once it answers ``ping``."""
        command = [
            nx_27017_command(),
            "--db",
            str(self.folder / "data.db"),
            "--host",
            "127.0.0.1",
            "-p",
            str(self.port),
            "--log-file",
            str(self.folder / "server.log"),
            "--pid-file",
            str(self.folder / "server.pid"),
        ]
        with (self.folder / "stdout.log").open("ab") as output:
            self._process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        wait_for_ping(self.uri, self._process, self.folder / "stdout.log")

    def stop(self) -> None:
        """Stop the server (its port then refuses connections)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def restartable_mongo(tmp_path: Path) -> Iterator[RestartableMongo]:
    """A running nx-27017 server that this test may stop and start again."""
    server = RestartableMongo(tmp_path)
    server.start()
    yield server
    server.stop()


# -- Segment ------------------------------------------------------------------------------


class _IngestServer(ThreadingHTTPServer):
    """Stays quiet when a client hangs up first (a client timeout, a reset under test)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class SegmentIngest:
    """A local stand-in for Segment's HTTP API that records what the client posts.

    Attributes:
        url: the base URL to give the client as ``host``.
        requests: every ``/v1/batch`` request as ``{"headers": {...}, "body": {...},
            "status": answered}``, including the ones answered with an error.
        arrived: how many requests have arrived, answered or still held (:meth:`hold`).
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.arrived = 0
        self.resets = 0
        self.generation = 0
        self._failures: list[tuple[int, str | None]] = []
        self._lock = threading.Condition()
        self._resets_pending = 0
        self._open = threading.Event()
        self._open.set()
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Segment's API does

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                generation = ingest._arrive()
                ingest._open.wait(STARTUP_TIMEOUT)
                if ingest.generation != generation:  # held over from an earlier test
                    self.close_connection = True
                    return
                if ingest._take_reset():
                    # Close with SO_LINGER 0: the client sees "connection reset by peer".
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.connection.close()
                    self.close_connection = True
                    return
                status, retry_after = ingest._record(self.path, dict(self.headers.items()), raw)
                body = b"{}" if status == 200 else b'{"code":"server","message":"failing"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _IngestServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _record(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, str | None]:
        with self._lock:
            if path != "/v1/batch":
                return 404, None
            status, retry_after = self._failures.pop(0) if self._failures else (200, None)
            self.requests.append({"headers": headers, "body": json.loads(raw), "status": status})
            self._lock.notify_all()
            return status, retry_after

    def _take_reset(self) -> bool:
        with self._lock:
            if self._resets_pending:
                self._resets_pending -= 1
                self.resets += 1
                return True
            return False

    def _arrive(self) -> int:
        with self._lock:
            self.arrived += 1
            self._lock.notify_all()
            return self.generation

    def hold(self) -> None:
        """Keep requests waiting, unanswered, until :meth:`release` (at most a minute)."""
        self._open.clear()

    def release(self) -> None:
        """Answer the held requests, and the next ones at once."""
        self._open.set()

    def wait_for_arrivals(self, count: int, timeout: float = STARTUP_TIMEOUT) -> None:
        """Block until ``count`` requests arrived, held or not (a long bound: only a bug
        reaches it)."""
        with self._lock:
            if not self._lock.wait_for(lambda: self.arrived >= count, timeout):
                pytest.fail(f"expected {count} requests to arrive, got {self.arrived}")

    def fail_next(self, times: int, status: int = 503, retry_after: str | None = None) -> None:
        """Answer the next ``times`` batch requests with ``status`` (and a ``Retry-After``)."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * times)

    def reset_next(self, times: int) -> None:
        """Reset the connection of the next ``times`` requests instead of answering them."""
        with self._lock:
            self._resets_pending += times

    def reset(self) -> None:
        """Forget the recorded requests and pending failures; stop holding requests.

        Requests still held from before are then dropped unanswered and unrecorded."""
        with self._lock:
            self.requests.clear()
            self.arrived = 0
            self.resets = 0
            self._resets_pending = 0
            self._failures.clear()
            self.generation += 1
        self._open.set()

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every message of every batch answered with success, in arrival order."""
        with self._lock:
            return [m for r in self.requests if r["status"] == 200 for m in r["body"]["batch"]]

    def wait_for_requests(self, count: int, timeout: float = STARTUP_TIMEOUT) -> None:
        """Block until ``count`` requests arrived (a long bound: only a bug reaches it)."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.requests) >= count, timeout):
                pytest.fail(f"expected {count} requests, got {len(self.requests)}")

    def close(self) -> None:
        self._open.set()
        self._server.shutdown()
        self._server.server_close()


def basic_auth(write_key: str) -> str:
    """The ``Authorization`` header Segment expects for ``write_key``."""
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


@pytest.fixture(scope="session")
def segment_ingest_server() -> Iterator[SegmentIngest]:
    """The session's local Segment endpoint."""
    server = SegmentIngest()
    yield server
    server.close()


@pytest.fixture
def segment_ingest(segment_ingest_server: SegmentIngest) -> SegmentIngest:
    """The local Segment endpoint, emptied for this test."""
    segment_ingest_server.reset()
    return segment_ingest_server
