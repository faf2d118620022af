"""Celery: a task sent while a request is served runs with that request's context, in eager
mode and on a real worker process over Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from integ_support import HERE, STARTUP_TIMEOUT, configure_django, redis_database, registered_memory

from eventrouter import MemoryBackend
from eventrouter.integrations.celery import HEADER
from eventrouter.tracker import get_tracker

configure_django()

import integ_celery_app  # noqa: E402
from django.test import Client  # noqa: E402

REPO = HERE.parent


@pytest.fixture
def memory() -> Iterator[MemoryBackend]:
    with registered_memory() as backend:
        yield backend


@pytest.fixture
def eager() -> Iterator[None]:
    conf = integ_celery_app.app.conf
    conf.task_always_eager = True
    try:
        yield
    finally:
        conf.task_always_eager = False


def test_an_eager_task_sent_from_a_view_emits_with_the_requests_user(
    memory: MemoryBackend, eager: None
) -> None:
    Client().get("/task/?label=eager", headers={"X-Test-User": "31", "X-Request-ID": "t-1"})
    (event,) = [e for e in memory.events if e["name"] == "task.ran"]
    assert event["data"] == {"label": "eager"}
    assert event["context"]["user_id"] == 31
    assert event["context"]["request_id"] == "t-1"
    assert get_tracker().resolve_context() == {}


def test_a_carried_header_is_entered_around_the_task_and_left_after(
    memory: MemoryBackend, eager: None
) -> None:
    carried = {"user_id": 77, "request_id": "from-header"}
    integ_celery_app.record.apply_async(("headed",), headers={HEADER: carried})
    (seen,) = [e for e in memory.events if e["name"] == "task.seen"]
    assert seen["data"]["context_during_task"] == carried
    assert get_tracker().resolve_context() == {}


def test_a_task_sent_outside_a_request_carries_nothing(memory: MemoryBackend, eager: None) -> None:
    integ_celery_app.record.delay("bare")
    (event,) = [e for e in memory.events if e["name"] == "task.ran"]
    assert event["context"] == {}


def test_a_malformed_header_is_ignored(memory: MemoryBackend, eager: None) -> None:
    integ_celery_app.record.apply_async(("junk",), headers={HEADER: "not a mapping"})
    (event,) = [e for e in memory.events if e["name"] == "task.ran"]
    assert event["context"] == {}


def test_values_a_message_cannot_carry_travel_as_text(memory: MemoryBackend) -> None:
    from eventrouter.integrations import celery as carrying

    headers: dict[str, Any] = {}
    when = datetime(2026, 1, 2, tzinfo=UTC)
    with get_tracker().context("request", {"user_id": 5, "when": when, "tags": ["a"]}):
        carrying._on_publish(headers=headers)
    assert headers[HEADER] == {"user_id": 5, "when": str(when), "tags": "['a']"}
    json.dumps(headers)


def test_tasks_go_on_without_a_registered_tracker(
    memory: MemoryBackend, eager: None, caplog: pytest.LogCaptureFixture
) -> None:
    from eventrouter.integrations.celery import carry_context

    carry_context("nowhere")  # no tracker is registered under that name
    try:
        for label in ("a", "b", "c"):
            integ_celery_app.record.apply_async((label,), headers={HEADER: {"user_id": 1}})
    finally:
        carry_context()  # back to the default tracker, as integ_celery_app set it
    # The tasks ran (they emit through the default tracker) without the carried context.
    assert [e["context"] for e in memory.events if e["name"] == "task.ran"] == [{}] * 3
    warnings = [r for r in caplog.records if "no tracker is registered" in r.getMessage()]
    assert len(warnings) == 1
    assert "'nowhere'" in warnings[0].getMessage()
    assert "tasks carry no context" in warnings[0].getMessage()


def test_a_carried_header_is_bounded_where_the_task_enters_it(
    memory: MemoryBackend, eager: None
) -> None:
    from eventrouter.integrations import celery as carrying

    hostile: dict[str, Any] = {"user_id": 9, "k" * 1000: "long key", "big": "v" * 100_000}
    hostile["nested"] = {"deep": ["x" * 5000]}
    hostile.update({f"extra{i}": i for i in range(10_000)})
    integ_celery_app.record.apply_async(("hostile",), headers={HEADER: hostile})
    (seen,) = [e for e in memory.events if e["name"] == "task.seen"]
    entered = seen["data"]["context_during_task"]
    assert len(entered) == carrying.MAX_KEYS - 1  # the first 64 keys, less the long one
    assert entered["user_id"] == 9
    assert "k" * 1000 not in entered
    assert entered["big"] == "v" * carrying.MAX_VALUE_LENGTH
    assert isinstance(entered["nested"], str)
    assert len(entered["nested"]) == carrying.MAX_VALUE_LENGTH
    assert get_tracker().resolve_context() == {}


# -- a real worker ----------------------------------------------------------------------------


@pytest.fixture
def keyprefix() -> str:
    """The prefix of every Redis key of this test: another run's worker on the shared Redis
    must not take its tasks (it did, when two suites ran at once)."""
    return f"integ-{os.getpid()}-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def broker(tmp_path: Path, keyprefix: str) -> Iterator[str]:
    with redis_database(tmp_path, keyprefix) as url:
        yield url


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_events(path: Path, count: int, worker: subprocess.Popen[bytes]) -> list[Any]:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        events = read_events(path)
        if len(events) >= count:
            return events
        if worker.poll() is not None:
            break
        time.sleep(0.1)
    pytest.fail(f"the worker wrote {len(read_events(path))} of {count} events")


def forget_connections(app: Any) -> None:
    """Make ``app`` connect anew to its (changed) broker: eager tasks already opened pools
    on the old one, and Celery keeps them for the app's life."""
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def worker(
    broker: str, keyprefix: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    events = tmp_path / "events.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO)]),
        "INTEG_BROKER_URL": broker,
        "INTEG_EVENTS_FILE": str(events),
        "INTEG_KEYPREFIX": keyprefix,
    }
    log = (tmp_path / "worker.log").open("wb")
    command = [sys.executable, "-m", "celery", "-A", "integ_celery_app", "worker"]
    command += ["--pool=prefork", "--concurrency=1", "--loglevel=WARNING"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    process = subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    app = integ_celery_app.app
    app.conf.broker_url = broker
    app.conf.broker_transport_options = {"global_keyprefix": keyprefix}
    forget_connections(app)
    try:
        yield process, events
    finally:
        app.conf.broker_url = "memory://"
        app.conf.broker_transport_options = {}
        forget_connections(app)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STARTUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.mark.peers
def test_a_task_sent_from_a_view_runs_on_a_worker_with_the_requests_user(
    memory: MemoryBackend, worker: tuple[subprocess.Popen[bytes], Path]
) -> None:
    process, path = worker
    response = Client().get(
        "/task/?label=worker", headers={"X-Test-User": "99", "X-Request-ID": "w-1"}
    )
    assert response.status_code == 200
    integ_celery_app.record.delay("after")  # outside any request: nothing to carry
    events = wait_for_events(path, 4, process)
    by_label = {e["data"]["label"]: e for e in events if e["name"] == "task.ran"}
    assert by_label["worker"]["context"]["user_id"] == 99
    assert by_label["worker"]["context"]["request_id"] == "w-1"
    assert by_label["worker"]["context"]["path"] == "/task/"
    # The worker left the first task's context: the second task ran without it.
    assert by_label["after"]["context"] == {}
