"""Shared set-up for the framework integration tests (test_integrations_*.py): a registered
in-memory tracker, Django configured once per process (its settings are process-wide), and
Redis for a real Celery worker. Each test module wraps these in its own fixtures."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventrouter import MemoryBackend, Tracker
from eventrouter.tracker import register_tracker, unregister_tracker

HERE = Path(__file__).parent
STARTUP_TIMEOUT = 60.0
SECRET = "integration-test-secret"


def configure_django() -> None:
    """Configure Django for this process (idempotent): the test app in integ_django_app."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    database = Path(tempfile.mkdtemp(prefix="eventrouter-django-")) / "db.sqlite3"
    settings.configure(
        DEBUG=False,
        SECRET_KEY=SECRET,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="integ_django_app",
        USE_TZ=True,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "eventrouter.integrations.django",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "integ_django_app.HeaderUserMiddleware",
            "eventrouter.integrations.django.TrackingContextMiddleware",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(database)}},
        EVENTROUTER_IGNORE_PATHS=["/health", "/status/*"],
        EVENTROUTER_TRUSTED_PROXIES=["10.0.0.0/8"],
        EVENTROUTER_CONTEXT_HOOK="integ_django_app.course_hook",
        CELERY_BROKER_URL="memory://",
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


@contextlib.contextmanager
def registered_memory() -> Iterator[MemoryBackend]:
    """A MemoryBackend behind a tracker registered as the default one for the block."""
    backend = MemoryBackend()
    previous = unregister_tracker()
    register_tracker(Tracker(backends={"memory": backend}))
    try:
        yield backend
    finally:
        unregister_tracker()
        if previous is not None:
            register_tracker(previous)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=2).ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def redis_database(workdir: Path, prefix: str) -> Iterator[str]:
    """A Redis to use with every key under ``prefix``: 127.0.0.1:6379 db 13; or, when that
    Redis does not answer, a ``redis-server`` started on a free port for the session.

    The Redis on 6379 is shared with every other test run on the machine (two suites at
    once, other checkouts): the caller keeps its keys under a ``prefix`` of its own (kombu's
    ``global_keyprefix``), and only those keys are deleted, after; flushing the database
    would delete another run's tasks under its feet.
    """
    import redis

    url = os.environ.get("EVENTROUTER_TEST_REDIS", "redis://127.0.0.1:6379/13")
    process: subprocess.Popen[bytes] | None = None
    if not _redis_answers(url):
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("Redis does not answer at 127.0.0.1:6379 and redis-server is missing")
        port = free_port()
        process = subprocess.Popen(
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/13"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _redis_answers(url):
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("the redis-server started for the tests did not answer")
            time.sleep(0.05)
    client = redis.Redis.from_url(url)
    try:
        yield url
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()
        if process is not None:
            process.terminate()
            process.wait(timeout=STARTUP_TIMEOUT)


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an ``async def`` test in a fresh event loop (no asyncio plugin needed)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run
