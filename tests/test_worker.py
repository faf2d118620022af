"""``eventrouter worker`` as a real process, on real Redis and RabbitMQ brokers.

Redis: the server on 127.0.0.1:6379 (database 13, flushed), else a ``redis-server`` this
module starts on a free port. RabbitMQ: the server on 127.0.0.1:5672, with queue names of
this test run (deleted afterwards). Events are emitted from the test process through a tree
loaded from the same YAML the workers run, and counted at the sinks (files).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import eventrouter
from eventrouter import cli
from eventrouter.backends.celery import CeleryRouter, encode_batch
from eventrouter.errors import SubtreeMismatchError
from eventrouter.event import build_event
from eventrouter.worker import WorkerTree, celery_nodes

pytestmark = pytest.mark.peers  # Redis, RabbitMQ and Celery workers

TESTS = Path(__file__).parent
REDIS_DB = 13
WAIT = 90.0
"""Seconds a test waits for workers to deliver; a bound for a broken build, never a target."""
RUN = f"er-test-{os.getpid()}"


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    """A ``redis-server`` on ``port`` that keeps nothing on disk; fails the test if missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("Redis does not answer on 127.0.0.1:6379 and redis-server is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not _answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"redis-server did not start on port {port}")
        time.sleep(0.05)
    return process


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import redis

    process = None
    if _answers(6379):
        port = 6379
    else:
        port = _free_port()
        process = start_redis(port, tmp_path_factory.mktemp("redis"))
    client = redis.Redis(host="127.0.0.1", port=port, db=REDIS_DB)
    client.flushdb()
    try:
        yield f"redis://127.0.0.1:{port}/{REDIS_DB}"
    finally:
        client.flushdb()
        client.close()
        if process is not None:
            process.terminate()
            process.wait(30)


@pytest.fixture(scope="module")
def amqp_url() -> Iterator[str]:
    import kombu

    url = "amqp://guest:guest@127.0.0.1:5672//"
    try:
        with kombu.Connection(url, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:
        pytest.fail(
            f"RabbitMQ does not answer on 127.0.0.1:5672 ({type(exc).__name__}): "
            "start rabbitmq-server for these tests"
        )
    yield url
    with kombu.Connection(url) as connection:
        channel = connection.default_channel
        for suffix in ("rabbit", "kill"):
            with contextlib.suppress(Exception):
                channel.queue_delete(f"{RUN}-{suffix}")


# -- helpers ------------------------------------------------------------------------------


def celery_node(
    broker: str, queue: str, allow: str, backends: dict[str, Any], **options: Any
) -> dict[str, Any]:
    """A celery node (with a name filter, so each test's events reach only its node)."""
    return {
        "class": "celery",
        "options": {
            "broker": broker,
            "queue": queue,
            "batch_size": 20,
            "flush_interval": 0.05,
            "buffer": {"backoff": [0.05, 0.2], "max_retries": 1000},
            **options,
        },
        "processors": [{"class": "name_filter", "options": {"allow": [allow]}}],
        "backends": backends,
    }


def sink(path: Path, **options: Any) -> dict[str, Any]:
    return {"class": "celery_backends.FileSink", "options": {"path": str(path), **options}}


def write_config(path: Path, backends: dict[str, Any], dead_letter: Path) -> Path:
    path.write_text(json.dumps({"dead_letter": str(dead_letter), "backends": backends}))
    return path


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ids_in(path: Path) -> collections.Counter[str]:
    return collections.Counter(line["id"] for line in lines(path))


def wait_until(condition: Callable[[], bool], what: str, worker: Worker | None = None) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if worker is not None and worker.process.poll() is not None:
            pytest.fail(f"the worker exited while waiting for {what}:\n{worker.output()}")
        if time.monotonic() > deadline:
            extra = f"\n{worker.output()}" if worker is not None else ""
            pytest.fail(f"gave up waiting for {what}{extra}")
        time.sleep(0.05)


class Worker:
    """``eventrouter worker CONFIG`` in its own process group, output in files."""

    def __init__(self, config: Path, folder: Path, *args: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.out = folder / f"worker-{time.monotonic_ns()}.out"
        self.err = self.out.with_suffix(".err")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        }
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "eventrouter",
                    "worker",
                    str(config),
                    "--concurrency=1",
                    "--loglevel=INFO",
                    *args,
                ],
                stdout=out,
                stderr=err,
                env=env,
                cwd=folder,
                start_new_session=True,
            )
        wait_until(
            lambda: "ready." in self.err.read_text(errors="replace"), "the worker to be ready", self
        )

    def output(self) -> str:
        return (
            f"--- stdout\n{self.out.read_text(errors='replace')}\n"
            f"--- stderr\n{self.err.read_text(errors='replace')[-6000:]}"
        )

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # the main process: a warm shutdown
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(30)
        self.kill()  # whatever is left of the group


def emit(config: Path, names: list[str], **data: Any) -> list[float]:
    """Emit one event per name through a tree loaded from ``config``; the seconds each took."""
    tracker = eventrouter.load(config)
    took = []
    try:
        for n, name in enumerate(names):
            start = time.perf_counter()
            tracker.emit(name, {"n": n, **data})
            took.append(time.perf_counter() - start)
    finally:
        tracker.close(timeout=WAIT)
    return took


# -- one Redis worker shared by most tests -----------------------------------------------


@pytest.fixture(scope="module")
def shared(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    folder = tmp_path_factory.mktemp("shared")
    queue, deep_queue = f"{RUN}-top", f"{RUN}-deep"
    files = {
        "top": folder / "top.jsonl",
        "deep": folder / "deep.jsonl",
        "recovering": folder / "recovering.jsonl",
        "down": folder / "down.jsonl",
        "worker_dead": folder / "worker-dead.jsonl",
        "emitter_dead": folder / "emitter-dead.jsonl",
        "folder": folder,
    }
    backends = {
        "top": celery_node(
            redis_url,
            queue,
            "top.*",
            {"log": {"class": "jsonlog", "options": {"path": str(files["top"])}}},
        ),
        "outer": {
            "backends": {
                "inner": celery_node(redis_url, deep_queue, "deep.*", {"sink": sink(files["deep"])})
            }
        },
        "recovering": celery_node(
            redis_url,
            queue,
            "recovering.*",
            {"sink": sink(files["recovering"], fail_first=2)},
            task_retry={"max_retries": 5, "backoff": 0},
        ),
        "failing": celery_node(
            redis_url,
            queue,
            "failing.*",
            {"down": sink(files["down"], fail_always=True)},
            task_retry={"max_retries": 2, "backoff": 0},
        ),
    }
    files["config"] = write_config(folder / "tree.yaml", backends, files["emitter_dead"])
    worker = Worker(files["config"], folder, f"--dead-letter={files['worker_dead']}")
    files["worker_out"] = worker.out
    files["worker_err"] = worker.err
    try:
        yield files
    finally:
        worker.stop()


def test_the_banner_lists_every_subtree_served(shared: dict[str, Path]) -> None:
    banner = shared["worker_out"].read_text()
    for path in ("top", "outer.inner", "recovering", "failing"):
        assert f"    {path}  [queue " in banner
    assert "fingerprint " in banner
    assert str(shared["worker_dead"]) in banner


def test_every_event_arrives_exactly_once_through_redis(shared: dict[str, Path]) -> None:
    emit(shared["config"], ["top.e"] * 300)
    wait_until(lambda: len(lines(shared["top"])) >= 300, "300 events at the sink")
    delivered = collections.Counter(line["id"] for line in lines(shared["top"]))
    assert len(delivered) == 300
    assert set(delivered.values()) == {1}


def test_a_celery_node_two_levels_deep_is_served(shared: dict[str, Path]) -> None:
    emit(shared["config"], ["deep.e"] * 50)
    wait_until(lambda: len(lines(shared["deep"])) >= 50, "50 events at the deep sink")
    assert sorted(line["data"]["n"] for line in lines(shared["deep"])) == list(range(50))


def test_a_failing_destination_is_retried_by_celery_until_it_recovers(
    shared: dict[str, Path],
) -> None:
    emit(shared["config"], ["recovering.e"] * 10)
    wait_until(lambda: len(lines(shared["recovering"])) >= 10, "10 events after the retries")
    assert sorted(line["data"]["n"] for line in lines(shared["recovering"])) == list(range(10))
    assert "retry 2 of 5" in shared["worker_err"].read_text()


def test_exhausted_retries_dead_letter_on_the_worker_with_the_destination_path(
    shared: dict[str, Path],
) -> None:
    emit(shared["config"], ["failing.e"] * 5)

    def mine() -> list[dict[str, Any]]:
        return [r for r in lines(shared["worker_dead"]) if r["event"]["name"] == "failing.e"]

    wait_until(lambda: len(mine()) >= 5, "5 dead letters on the worker")
    records = mine()
    assert sorted(r["event"]["data"]["n"] for r in records) == list(range(5))
    assert {r["destination"] for r in records} == {"failing.down"}
    assert {r["error"] for r in records} == {"DeliveryError"}
    assert {r["attempts"] for r in records} == {3}
    assert not shared["down"].exists()


def test_a_worker_with_a_changed_configuration_refuses_tasks_visibly(
    redis_url: str, tmp_path: Path
) -> None:
    queue = f"{RUN}-changed"
    node = celery_node(redis_url, queue, "guarded.*", {"sink": sink(tmp_path / "a.jsonl")})
    changed = celery_node(redis_url, queue, "guarded.*", {"sink": sink(tmp_path / "b.jsonl")})
    emitter = write_config(tmp_path / "emitter.yaml", {"guarded": node}, tmp_path / "e.jsonl")
    workers = write_config(tmp_path / "worker.yaml", {"guarded": changed}, tmp_path / "w.jsonl")
    worker = Worker(workers, tmp_path / "w")
    try:
        emit(emitter, ["guarded.e"] * 3)
        wait_until(lambda: len(lines(tmp_path / "w.jsonl")) >= 3, "3 refused events", worker)
        wait_until(lambda: "SubtreeMismatchError" in worker.err.read_text(), "the error", worker)
    finally:
        worker.stop()
    records = lines(tmp_path / "w.jsonl")
    assert {r["error"] for r in records} == {"SubtreeMismatchError"}
    assert {r["destination"] for r in records} == {"guarded"}
    assert not (tmp_path / "a.jsonl").exists()
    assert not (tmp_path / "b.jsonl").exists()
    log = worker.err.read_text()
    fingerprints = {
        eventrouter.load(c).get_backend("guarded").fingerprint for c in (emitter, workers)
    }
    assert len(fingerprints) == 2
    assert "refused a task for 'guarded'" in log
    assert all(f in log for f in fingerprints)


# -- RabbitMQ -----------------------------------------------------------------------------


def test_every_event_arrives_exactly_once_through_rabbitmq(amqp_url: str, tmp_path: Path) -> None:
    node = celery_node(amqp_url, f"{RUN}-rabbit", "rabbit.*", {"sink": sink(tmp_path / "s.jsonl")})
    config = write_config(tmp_path / "tree.yaml", {"rabbit": node}, tmp_path / "dead.jsonl")
    worker = Worker(config, tmp_path / "w")
    try:
        emit(config, ["rabbit.e"] * 200)
        wait_until(lambda: len(lines(tmp_path / "s.jsonl")) >= 200, "200 events", worker)
    finally:
        worker.stop()
    delivered = collections.Counter(line["id"] for line in lines(tmp_path / "s.jsonl"))
    assert len(delivered) == 200
    assert set(delivered.values()) == {1}


def test_a_worker_killed_mid_stream_loses_nothing_and_repeats_at_most_one_batch(
    amqp_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "s.jsonl"
    node = celery_node(
        amqp_url, f"{RUN}-kill", "kill.*", {"sink": sink(out, delay=0.05)}, batch_size=10
    )
    config = write_config(tmp_path / "tree.yaml", {"kill": node}, tmp_path / "dead.jsonl")
    emit(config, ["kill.e"] * 400)
    first = Worker(config, tmp_path / "w1")
    try:
        wait_until(lambda: len(lines(out)) >= 60, "the first batches", first)
    finally:
        first.kill()
    killed_at = len(lines(out))
    second = Worker(config, tmp_path / "w2")
    try:
        wait_until(lambda: len(set(ids_in(out))) >= 400, "all 400 events", second)
    finally:
        second.stop()
    delivered = collections.Counter(line["id"] for line in lines(out))
    duplicates = sum(delivered.values()) - len(delivered)
    print(f"killed after {killed_at} lines; {duplicates} duplicates after the restart")
    assert len(delivered) == 400
    assert duplicates <= 10
    assert killed_at < 400  # the kill did land mid-stream


# -- the broker down at emit time ---------------------------------------------------------


def test_with_the_broker_down_emit_does_not_wait_and_events_follow_when_it_returns(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    port = _free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    out, dead = tmp_path / "s.jsonl", tmp_path / "dead.jsonl"
    node = celery_node(broker, f"{RUN}-down", "down.*", {"sink": sink(out)})
    config = write_config(tmp_path / "tree.yaml", {"down": node}, dead)
    tracker = eventrouter.load(config)
    took = []
    for n in range(500):
        start = time.perf_counter()
        tracker.emit("down.e", {"n": n})
        took.append(time.perf_counter() - start)
    held = tracker.get_backend("down").stats()
    assert held["buffer"]["received"] == 500  # queued for the publisher's thread
    assert held["published"] == 0
    assert held["failed"] == 0
    took.sort()
    p99 = took[int(len(took) * 0.99)]
    record_property("emit_p99_seconds_broker_down", p99)
    print(f"emit with the broker down: p50 {took[250] * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us")
    server = start_redis(port, tmp_path / "redis")
    try:
        tracker.close(timeout=WAIT)  # publishes what the retries had not yet
        worker = Worker(config, tmp_path / "w")
        try:
            wait_until(
                lambda: len(set(ids_in(out))) + len(lines(dead)) >= 500, "all 500 events", worker
            )
        finally:
            worker.stop()
    finally:
        server.terminate()
        server.wait(30)
    delivered = set(ids_in(out))
    parked = {r["event"]["id"] for r in lines(dead)}
    assert len(delivered) + len(parked) == 500
    assert not delivered & parked
    assert not parked  # its retries outlast the outage here


def test_a_worker_survives_a_broker_restart(tmp_path: Path) -> None:
    port = _free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    out, dead = tmp_path / "s.jsonl", tmp_path / "dead.jsonl"
    node = celery_node(broker, f"{RUN}-restart", "restart.*", {"sink": sink(out)})
    config = write_config(tmp_path / "tree.yaml", {"restart": node}, dead)
    server = start_redis(port, tmp_path / "redis")
    worker = Worker(config, tmp_path / "w")
    try:
        emit(config, ["restart.before"] * 20)
        wait_until(lambda: len(lines(out)) >= 20, "the events sent before the restart", worker)
        server.terminate()
        server.wait(30)
        server = start_redis(port, tmp_path / "redis")
        emit(config, ["restart.after"] * 20)
        wait_until(lambda: len(lines(out)) >= 40, "the events sent after the restart", worker)
    finally:
        worker.stop()
        server.terminate()
        server.wait(30)
    names = collections.Counter(line["name"] for line in lines(out))
    assert names == {"restart.before": 20, "restart.after": 20}
    assert lines(dead) == []


def test_a_retry_the_broker_cannot_take_is_dead_lettered_not_dropped(tmp_path: Path) -> None:
    port = _free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    dead = tmp_path / "dead.jsonl"
    failing = sink(tmp_path / "s.jsonl", fail_always=True, stop_redis=broker)
    node = celery_node(broker, f"{RUN}-noretry", "noretry.*", {"sink": failing})
    config = write_config(tmp_path / "tree.yaml", {"noretry": node}, dead)
    server = start_redis(port, tmp_path / "redis")
    worker = Worker(config, tmp_path / "w")
    try:
        emit(config, ["noretry.e"] * 5)
        wait_until(lambda: len(lines(dead)) >= 5, "5 dead letters", worker)
        wait_until(lambda: "could not schedule retry 1" in worker.err.read_text(), "the log")
    finally:
        worker.stop()
        server.wait(30)
    records = lines(dead)
    assert sorted(r["event"]["data"]["n"] for r in records) == list(range(5))
    assert {r["destination"] for r in records} == {"noretry.sink"}


# -- in this process: lookup and the command line -----------------------------------------


def test_a_task_for_a_path_the_worker_does_not_serve_is_refused_and_dead_lettered(
    redis_url: str, tmp_path: Path
) -> None:
    node = celery_node(redis_url, "q", "x.*", {"sink": sink(tmp_path / "s.jsonl")})
    config = write_config(tmp_path / "tree.yaml", {"here": node}, tmp_path / "dead.jsonl")
    tree = WorkerTree.build(config)
    try:
        event = build_event("x.e", {"n": 1})
        with pytest.raises(SubtreeMismatchError, match="no celery node at 'elsewhere'"):
            tree.lookup("elsewhere", "0123", encode_batch([event]))
    finally:
        tree.tracker.close()
    [record] = lines(tmp_path / "dead.jsonl")
    assert record["event"]["id"] == event["id"]


def test_celery_nodes_are_found_at_any_depth(redis_url: str, tmp_path: Path) -> None:
    inner = celery_node(redis_url, "q2", "b.*", {"sink": sink(tmp_path / "b.jsonl")})
    outer = celery_node(redis_url, "q1", "a.*", {"nested": inner})
    config = write_config(tmp_path / "tree.yaml", {"a": {"backends": {"b": outer}}}, tmp_path / "d")
    tracker = eventrouter.load(config)
    try:
        found = celery_nodes(tracker.router)
        assert sorted(found) == ["a.b", "a.b.nested"]
        assert all(isinstance(n, CeleryRouter) for n in found.values())
        assert found["a.b.nested"].path == "a.b.nested"
    finally:
        tracker.close()


def test_worker_without_celery_nodes_says_what_to_add(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tree.yaml"
    config.write_text(json.dumps({"backends": {"m": {"class": "memory"}}}))
    assert cli.main(["worker", str(config)]) == 2
    assert "has no celery node" in capsys.readouterr().err


def test_worker_refuses_a_queue_no_node_uses(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = celery_node(redis_url, "q", "x.*", {"sink": sink(tmp_path / "s.jsonl")})
    config = write_config(tmp_path / "tree.yaml", {"here": node}, tmp_path / "dead.jsonl")
    assert cli.main(["worker", str(config), "--queue", "nope"]) == 2
    assert "here (queue q" in capsys.readouterr().err


def test_tree_marks_celery_nodes_and_their_queues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    remote = celery_node(
        "redis://:hush@127.0.0.1:1/0", "analytics", "x.*", {"m": {"class": "memory"}}
    )
    local = {"class": "celery", "backends": {"m": {"class": "memory"}}}
    config = write_config(
        tmp_path / "tree.yaml", {"remote": remote, "local": local}, tmp_path / "d"
    )
    assert cli.main(["tree", str(config)]) == 0
    out = capsys.readouterr().out
    assert "[celery workers, queue analytics]" in out
    assert "[celery, in this process: memory://]" in out
    assert "hush" not in out
