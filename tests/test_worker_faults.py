"""Celery nodes under faults, with real brokers and real workers: a worker killed on Redis, a
nested buffered leaf when the worker dies after acknowledging, RabbitMQ down at emit time, a
worker whose dead letter cannot be written, forks while threads emit, and exit without
``close()``. Counted at the sinks: delivered + dead-lettered = emitted."""

from __future__ import annotations

import base64
import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, needs_fork
from test_worker import (  # the fixtures and helpers of the worker tests
    RUN,
    TESTS,
    WAIT,
    Worker,
    _answers,
    _free_port,
    amqp_url,
    celery_node,
    emit,
    ids_in,
    lines,
    sink,
    start_redis,
    wait_until,
    write_config,
)

import eventrouter
from eventrouter import cli
from eventrouter.backends.celery import decode_batch

__all__ = ["amqp_url"]  # a fixture, used by name

pytestmark = pytest.mark.peers

REDIS_DB = 11
"""Not the worker tests' database: their fixture flushes it, and a flush while a task is
held (the ``unacked`` hash) loses that task for good."""


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import redis

    process = None
    port = 6379
    if not _answers(port):
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


FAST_RESTORE = {
    "visibility_timeout": 5,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
    "unacked_mutex_expire": 5,
}
"""Redis transport options: a task a stopped or killed worker held comes back within seconds
(at-least-once: a slow task may then run twice, which these tests allow)."""


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def queued_events(url: str, queue: str) -> list[dict[str, Any]]:
    """The events inside the tasks waiting in a Redis queue (kombu's message format)."""
    events = []
    for raw in redis_client(url).lrange(queue, 0, -1):
        body = json.loads(base64.b64decode(json.loads(raw)["body"]))
        events += decode_batch(body[0][2])
    return events


def test_a_worker_killed_mid_stream_on_redis_loses_nothing_and_repeats_at_most_one_batch(
    redis_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "s.jsonl"
    node = celery_node(
        redis_url,
        f"{RUN}-rkill",
        "rkill.*",
        {"sink": sink(out, delay=0.05)},
        batch_size=10,
        broker_options=FAST_RESTORE,
    )
    config = write_config(tmp_path / "tree.yaml", {"rkill": node}, tmp_path / "dead.jsonl")
    emit(config, ["rkill.e"] * 300)
    first = Worker(config, tmp_path / "w1")
    try:
        wait_until(lambda: len(lines(out)) >= 40, "the first batches", first)
    finally:
        first.kill()
    killed_at = len(lines(out))
    second = Worker(config, tmp_path / "w2")
    try:
        wait_until(lambda: len(set(ids_in(out))) >= 300, "all 300 events", second)
    finally:
        second.stop()
    delivered = ids_in(out)
    duplicates = sum(delivered.values()) - len(delivered)
    print(f"killed after {killed_at} lines; {duplicates} duplicates after the restart")
    assert len(delivered) == 300
    assert duplicates <= 10
    assert killed_at < 300


def test_a_nested_buffered_leaf_has_the_events_before_the_task_is_acknowledged(
    redis_url: str, tmp_path: Path
) -> None:
    """The worker dies right after the queue is drained: nothing may be left only in a
    buffered node's memory (its timer here is a minute)."""
    out, queue = tmp_path / "leaf.jsonl", f"{RUN}-nested"
    leaf = {**sink(out), "buffered": {"flush_interval": 60.0}}
    node = celery_node(redis_url, queue, "nested.*", {"sub": {"backends": {"leaf": leaf}}})
    config = write_config(tmp_path / "tree.yaml", {"nested": node}, tmp_path / "dead.jsonl")
    client = redis_client(redis_url)
    worker = Worker(config, tmp_path / "w")
    try:
        tracker = eventrouter.load(config)
        for n in range(50):
            tracker.emit("nested.e", {"n": n})
        tracker.close(WAIT)
        tasks = tracker.get_backend("nested").stats()["tasks"]
        wait_until(
            lambda: (
                worker.err.read_text().count("succeeded in") >= tasks
                and client.llen(queue) == 0
                and client.hlen("unacked") == 0
            ),
            f"the {tasks} tasks done and acknowledged",
            worker,
        )
    finally:
        worker.kill()  # SIGKILL: a buffered queue would die with it
    assert len(ids_in(out)) == 50  # acknowledged means delivered


def test_rabbitmq_down_at_emit_time_dead_letters_at_the_node_and_replay_delivers(
    amqp_url: str, tmp_path: Path
) -> None:
    out, dead = tmp_path / "s.jsonl", tmp_path / "dead.jsonl"

    def config(broker: str, name: str) -> Path:
        node = celery_node(
            broker,
            f"{RUN}-rdown",
            "rdown.*",
            {"sink": sink(out)},
            buffer={"backoff": [0.01, 0.05], "max_retries": 2},
        )
        return write_config(tmp_path / name, {"rdown": node}, dead)

    down = config(f"amqp://guest:guest@127.0.0.1:{free_port()}//", "down.yaml")
    tracker = eventrouter.load(down)
    for n in range(100):
        tracker.emit("rdown.e", {"n": n})
    held = tracker.get_backend("rdown").stats()
    assert held["buffer"]["received"] == 100  # queued for the publishing thread
    assert held["published"] == 0
    tracker.close(timeout=WAIT)
    parked = [r["event"]["id"] for r in lines(dead)]
    assert len(set(parked)) == 100
    assert {r["destination"] for r in lines(dead)} == {"rdown"}
    up = config(amqp_url, "up.yaml")  # the same subtree, the broker back
    worker = Worker(up, tmp_path / "w")
    try:
        status = cli.main(
            ["replay", str(up), str(dead), "--dead-letter", str(tmp_path / "again.jsonl")]
        )
        assert status == 0
        wait_until(lambda: len(set(ids_in(out))) >= 100, "all 100 events", worker)
    finally:
        worker.stop()
    assert set(ids_in(out)) == set(parked)
    assert set(ids_in(out).values()) == {1}


def test_a_task_the_dead_letter_cannot_take_stays_in_the_broker(
    redis_url: str, tmp_path: Path
) -> None:
    out, queue = tmp_path / "s.jsonl", f"{RUN}-nodl"
    node = celery_node(
        redis_url,
        queue,
        "nodl.*",
        {"down": sink(out, fail_always=True)},
        task_retry={"max_retries": 0, "backoff": 0.1, "backoff_max": 0.2},
        broker_options=FAST_RESTORE,
    )
    config = write_config(tmp_path / "tree.yaml", {"nodl": node}, tmp_path / "unused.jsonl")
    worker = Worker(config, tmp_path / "w1", "--dead-letter=/dev/full")
    try:
        emit(config, ["nodl.e"] * 5)
        wait_until(
            lambda: worker.err.read_text().count("task kept in the broker") >= 2,
            "the task kept and tried again",
            worker,
        )
    finally:
        worker.stop()  # a warm shutdown: what it holds goes back to the broker
    dead = tmp_path / "worker-dead.jsonl"
    second = Worker(config, tmp_path / "w2", f"--dead-letter={dead}")
    try:
        wait_until(lambda: len(set(ids_in_records(dead))) >= 5, "5 dead letters", second)
    finally:
        second.stop()
    records = lines(dead)
    assert len({r["event"]["id"] for r in records}) == 5
    assert {r["destination"] for r in records} == {"nodl.down"}


def ids_in_records(path: Path) -> list[str]:
    return [r["event"]["id"] for r in lines(path)]


def test_a_refused_task_the_dead_letter_cannot_take_stays_in_the_broker(
    redis_url: str, tmp_path: Path
) -> None:
    queue = f"{RUN}-refuse"
    emitted = celery_node(
        redis_url, queue, "ref.*", {"a": sink(tmp_path / "a.jsonl")}, broker_options=FAST_RESTORE
    )
    served = celery_node(
        redis_url, queue, "ref.*", {"b": sink(tmp_path / "b.jsonl")}, broker_options=FAST_RESTORE
    )
    emitting = write_config(tmp_path / "emit.yaml", {"ref": emitted}, tmp_path / "e.jsonl")
    serving = write_config(tmp_path / "serve.yaml", {"ref": served}, tmp_path / "s.jsonl")
    worker = Worker(serving, tmp_path / "w1", "--dead-letter=/dev/full")
    try:
        emit(emitting, ["ref.e"] * 3)
        wait_until(
            lambda: worker.err.read_text().count("task kept in the broker") >= 2,
            "the refused task kept and tried again",
            worker,
        )
    finally:
        worker.stop()
    dead = tmp_path / "worker-dead.jsonl"
    second = Worker(serving, tmp_path / "w2", f"--dead-letter={dead}")
    try:
        wait_until(lambda: len(set(ids_in_records(dead))) >= 3, "3 dead letters", second)
    finally:
        second.stop()
    assert {r["error"] for r in lines(dead)} == {"SubtreeMismatchError"}


# -- the publishing side: fork and exit -----------------------------------------------------


@needs_fork
def test_forks_while_four_threads_emit_never_hang_a_childs_publisher(
    redis_url: str, tmp_path: Path
) -> None:
    queue = f"{RUN}-fork"
    node = celery_node(redis_url, queue, "*", {"m": {"class": "memory"}}, batch_size=5)
    node["options"]["flush_interval"] = 0.001
    config = write_config(tmp_path / "tree.yaml", {"remote": node}, tmp_path / "dead.jsonl")
    tracker = eventrouter.load(config)
    stop = threading.Event()
    emitted = [0] * 4

    def emitter(k: int) -> None:
        while not stop.is_set():
            tracker.emit("parent", {"k": k})
            emitted[k] += 1
            time.sleep(0.0005)

    threads = [threading.Thread(target=emitter, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    hung = failed = 0
    try:
        for n in range(40):
            time.sleep(0.01)
            pid = os.fork()
            if pid == 0:
                code = 3
                try:
                    for i in range(20):
                        tracker.emit("child", {"n": n, "i": i})
                    tracker.close(30)
                    code = 0
                finally:
                    os._exit(code)
            deadline = time.monotonic() + WAIT
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    failed += os.waitstatus_to_exitcode(status) != 0
                    break
                if time.monotonic() > deadline:  # only a hang gets here
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    hung += 1
                    break
                time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        tracker.close(WAIT)
    assert (hung, failed) == (0, 0)
    events = queued_events(redis_url, queue)
    redis_client(redis_url).delete(queue)
    names = collections.Counter(e["name"] for e in events)
    assert names == {"parent": sum(emitted), "child": 40 * 20}
    assert len({e["id"] for e in events}) == len(events)
    assert lines(tmp_path / "dead.jsonl") == []


def test_a_process_that_exits_without_close_publishes_everything(
    redis_url: str, tmp_path: Path
) -> None:
    queue = f"{RUN}-exit"
    node = celery_node(redis_url, queue, "*", {"m": {"class": "memory"}}, batch_size=100)
    node["options"]["flush_interval"] = 5.0
    config = write_config(tmp_path / "tree.yaml", {"remote": node}, tmp_path / "dead.jsonl")
    child = (
        "import eventrouter\n"
        "from eventrouter import tracker\n"
        f"tracker.register_tracker(eventrouter.load({str(config)!r}))\n"
        "for i in range(250):\n"
        "    tracker.emit('e', {'i': i})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", child],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    events = queued_events(redis_url, queue)
    redis_client(redis_url).delete(queue)
    assert sorted(e["data"]["i"] for e in events) == list(range(250)), result.stderr
