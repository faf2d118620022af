"""Django: the app, the middleware (sync and async) and the system checks, through Django's
own test clients."""

from __future__ import annotations

import asyncio
import hmac
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from integ_support import HERE, SECRET, configure_django, registered_memory, run_async

from eventrouter import MemoryBackend
from eventrouter.integrations import CONTEXT_KEYS
from eventrouter.tracker import get_tracker

configure_django()

from django.test import AsyncClient, Client, override_settings  # noqa: E402

from eventrouter.integrations.django import checks  # noqa: E402


@pytest.fixture
def memory() -> Iterator[MemoryBackend]:
    with registered_memory() as backend:
        yield backend


def contexts(memory: MemoryBackend, name: str) -> list[dict[str, Any]]:
    return [event["context"] for event in memory.events if event["name"] == name]


def test_a_sync_view_emits_with_every_request_key(memory: MemoryBackend) -> None:
    response = Client().get(
        "/hello/",
        headers={
            "User-Agent": "probe/1.0",
            "Referer": "https://example.org/from",
            "Accept-Language": "fr-CA",
            "X-Request-ID": "req-abc",
            "X-Test-User": "42",
        },
    )
    assert response.status_code == 200
    (context,) = contexts(memory, "hello")
    assert set(CONTEXT_KEYS) <= set(context)
    assert context["user_id"] == 42
    assert context["username"] == "user42"
    assert context["ip"] == "127.0.0.1"
    assert context["agent"] == "probe/1.0"
    assert context["host"] == "testserver"
    assert context["path"] == "/hello/"
    assert context["method"] == "GET"
    assert context["referer"] == "https://example.org/from"
    assert context["accept_language"] == "fr-CA"
    assert context["request_id"] == "req-abc"
    assert context["route"] == "hello/"
    assert context["session"] is None  # no session yet


def test_an_anonymous_request_has_no_user_and_a_generated_request_id(
    memory: MemoryBackend,
) -> None:
    Client().get("/hello/", headers={"X-Request-ID": "bad id with spaces"})
    (context,) = contexts(memory, "hello")
    assert context["user_id"] is None
    assert context["username"] is None
    assert context["request_id"] != "bad id with spaces"
    assert len(context["request_id"]) == 32


def test_a_logged_in_user_and_an_hmac_of_the_session_key(memory: MemoryBackend) -> None:
    from django.contrib.auth.models import User

    user, _ = User.objects.get_or_create(username="ada")
    client = Client()
    client.force_login(user)
    client.get("/hello/")
    (context,) = contexts(memory, "hello")
    key = client.session.session_key
    assert context["user_id"] == user.pk
    assert context["username"] == "ada"
    expected = hmac.new(SECRET.encode(), key.encode(), sha256).hexdigest()[:32]
    assert context["session"] == expected
    assert key not in str(context)


@run_async
async def test_an_async_view_through_async_client(memory: MemoryBackend) -> None:
    response = await AsyncClient().get(
        "/ahello/", headers={"X-Test-User": "7", "X-Request-ID": "async-1"}
    )
    assert response.status_code == 200
    first, second = contexts(memory, "ahello") + contexts(memory, "ahello.again")
    assert first == second
    assert first["user_id"] == 7
    assert first["request_id"] == "async-1"
    assert first["route"] == "ahello/"


def test_a_logged_in_user_in_an_async_view(memory: MemoryBackend) -> None:
    from django.contrib.auth.models import User

    user, _ = User.objects.get_or_create(username="grace")

    async def run() -> None:
        client = AsyncClient()
        await client.aforce_login(user)
        await client.get("/ahello/")

    asyncio.run(run())
    (context,) = contexts(memory, "ahello")
    assert context["user_id"] == user.pk
    assert context["username"] == "grace"


def test_nothing_is_left_after_the_response(memory: MemoryBackend) -> None:
    response = Client().get("/hello/", headers={"X-Test-User": "1"})
    assert response.json()["user_id"] == 1  # the view saw it...
    assert get_tracker().resolve_context() == {}  # ...and it is gone


def test_a_spoofed_forwarded_for_is_ignored_from_an_untrusted_peer(memory: MemoryBackend) -> None:
    Client().get("/hello/", headers={"X-Forwarded-For": "203.0.113.9"})
    assert contexts(memory, "hello")[0]["ip"] == "127.0.0.1"


def test_forwarded_for_is_read_through_trusted_proxies(memory: MemoryBackend) -> None:
    client = Client(REMOTE_ADDR="10.0.0.7")
    client.get("/hello/", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.1.2.3"})
    # 10.1.2.3 is a trusted proxy; 203.0.113.9 is the first untrusted hop: the client.
    # 6.6.6.6 is what the client claimed, and is not believed.
    assert contexts(memory, "hello")[0]["ip"] == "203.0.113.9"


@pytest.mark.parametrize("path", ["/health", "/status/db"])
def test_an_ignored_path_emits_nothing(memory: MemoryBackend, path: str) -> None:
    get_tracker().router.processors = [lambda event: event]  # the user replaces the chain
    assert Client().get(path).status_code == 200
    assert memory.events == []
    stats = get_tracker().stats()
    assert (stats["muted"], stats["vetoed"], stats["received"]) == (1, 0, 0)
    assert len(get_tracker().processors) == 1  # nothing added to the user's chain
    Client().get("/hello/")
    assert [event["name"] for event in memory.events] == ["hello", "hello.again"]


def test_the_context_hook_adds_the_apps_keys(memory: MemoryBackend) -> None:
    Client().get("/courses/course-v1:edX+DemoX+T1/")
    (context,) = contexts(memory, "course.viewed")
    assert context["course_id"] == "course-v1:edX+DemoX+T1"
    assert context["route"] == "courses/<str:course_id>/"


def test_a_streamed_responses_chunks_carry_its_context(memory: MemoryBackend) -> None:
    response = Client().get("/stream/", headers={"X-Test-User": "5"})
    assert memory.events == []  # nothing streamed yet: the body runs as it is read
    assert b"".join(response.streaming_content) == b"0\n1\n2\n"
    chunks = contexts(memory, "stream.chunk")
    assert len(chunks) == 3
    assert {context["user_id"] for context in chunks} == {5}
    assert {context["route"] for context in chunks} == {"stream/"}
    assert get_tracker().resolve_context() == {}


@run_async
async def test_an_async_streamed_response_carries_its_context(memory: MemoryBackend) -> None:
    response = await AsyncClient().get("/astream/", headers={"X-Test-User": "6"})
    body = b"".join([chunk async for chunk in response.streaming_content])
    assert body == b"0\n1\n2\n"
    chunks = contexts(memory, "astream.chunk")
    assert [context["user_id"] for context in chunks] == [6, 6, 6]
    assert [context["route"] for context in chunks] == ["astream/"] * 3


@run_async
async def test_sync_to_async_keeps_the_context(memory: MemoryBackend) -> None:
    await AsyncClient().get("/across/sync/", headers={"X-Test-User": "8"})
    (context,) = contexts(memory, "crossed")
    assert context["user_id"] == 8


def test_async_to_sync_keeps_the_context(memory: MemoryBackend) -> None:
    Client().get("/across/async/", headers={"X-Test-User": "9"})
    (context,) = contexts(memory, "crossed")
    assert context["user_id"] == 9


def test_a_context_thread_pool_keeps_the_context(memory: MemoryBackend) -> None:
    Client().get("/pool/", headers={"X-Test-User": "10"})
    assert [c["user_id"] for c in contexts(memory, "crossed")] == [10, 10]


@run_async
async def test_a_sync_view_served_through_async_client_keeps_the_context(
    memory: MemoryBackend,
) -> None:
    # Django runs a sync view of an ASGI request through sync_to_async, in another thread.
    response = await AsyncClient().get("/hello/", headers={"X-Test-User": "11"})
    assert response.status_code == 200
    (context,) = contexts(memory, "hello")
    assert context["user_id"] == 11
    assert context["path"] == "/hello/"


@run_async
async def test_sync_to_async_in_asgirefs_own_pool_keeps_the_context(
    memory: MemoryBackend,
) -> None:
    await AsyncClient().get("/across/unsensitive/", headers={"X-Test-User": "12"})
    (context,) = contexts(memory, "crossed")
    assert context["user_id"] == 12


@run_async
async def test_async_to_sync_inside_sync_to_async_keeps_the_context(
    memory: MemoryBackend,
) -> None:
    await AsyncClient().get("/across/round-trip/", headers={"X-Test-User": "13"})
    (context,) = contexts(memory, "crossed")
    assert context["user_id"] == 13


@run_async
async def test_run_in_executor_carries_the_context_through_with_context(
    memory: MemoryBackend,
) -> None:
    await AsyncClient().get("/across/executor/?wrapped=1", headers={"X-Test-User": "14"})
    (context,) = contexts(memory, "crossed")
    assert context["user_id"] == 14


@run_async
async def test_run_in_executor_alone_loses_the_context(memory: MemoryBackend) -> None:
    # Why the helper exists: asyncio's executor runs the call in the thread's own context.
    await AsyncClient().get("/across/executor/", headers={"X-Test-User": "15"})
    (context,) = contexts(memory, "crossed")
    assert "user_id" not in context


def test_with_context_in_a_plain_thread_pool_keeps_the_context(memory: MemoryBackend) -> None:
    Client().get("/pool/plain/", headers={"X-Test-User": "16"})
    assert [c["user_id"] for c in contexts(memory, "crossed")] == [16, 16]


@pytest.mark.slow
def test_a_thousand_concurrent_requests_never_mix_contexts(memory: MemoryBackend) -> None:
    local = threading.local()
    leftovers: list[dict[str, Any]] = []

    def request(i: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = Client()
        response = client.get(
            f"/hello/?n={i}&yield=1", headers={"X-Test-User": str(i), "X-Request-ID": f"r{i}"}
        )
        assert response.status_code == 200
        left = get_tracker().resolve_context()
        if left:
            leftovers.append(left)

    with ThreadPoolExecutor(max_workers=16) as executor:
        list(executor.map(request, range(1000)))
    assert len(memory.events) == 2000
    leaks = [
        event
        for event in memory.events
        if str(event["context"]["user_id"]) != event["data"]["n"]
        or event["context"]["request_id"] != f"r{event['data']['n']}"
    ]
    assert leaks == []
    assert leftovers == []


@pytest.mark.slow
@run_async
async def test_a_thousand_concurrent_async_requests_never_mix_contexts(
    memory: MemoryBackend,
) -> None:
    client = AsyncClient()

    async def request(i: int) -> None:
        response = await client.get(f"/ahello/?n={i}", headers={"X-Test-User": str(i)})
        assert response.status_code == 200

    await asyncio.gather(*(request(i) for i in range(1000)))
    assert len(memory.events) == 2000
    assert [e for e in memory.events if str(e["context"]["user_id"]) != e["data"]["n"]] == []
    assert get_tracker().resolve_context() == {}


def test_a_failing_user_lookup_never_breaks_the_request(
    memory: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client()
    for n in range(2):
        headers = {"X-Test-User": "broken", "X-Request-ID": f"kept-{n}"}
        assert client.get("/hello/", headers=headers).status_code == 200
    kept = [
        (c["user_id"], c["username"], c["path"], c["ip"], c["request_id"], c["route"])
        for c in contexts(memory, "hello")
    ]
    assert kept == [
        (None, None, "/hello/", "127.0.0.1", "kept-0", "hello/"),
        (None, None, "/hello/", "127.0.0.1", "kept-1", "hello/"),
    ]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "RuntimeError" in warnings[0].getMessage()
    assert "alice" not in caplog.text


@run_async
async def test_a_failing_user_in_an_async_view_keeps_the_rest_of_the_context(
    memory: MemoryBackend,
) -> None:
    response = await AsyncClient().get(
        "/ahello/", headers={"X-Test-User": "broken", "X-Request-ID": "async-kept"}
    )
    assert response.status_code == 200
    (context,) = contexts(memory, "ahello")
    assert (context["user_id"], context["username"]) == (None, None)
    assert (context["path"], context["request_id"]) == ("/ahello/", "async-kept")


def test_host_is_the_one_django_validated_against_allowed_hosts(memory: MemoryBackend) -> None:
    with override_settings(ALLOWED_HOSTS=["good.example"], USE_X_FORWARDED_HOST=True):
        client = Client()
        client.get("/hello/", headers={"Host": "good.example"})
        client.get("/hello/", headers={"Host": "evil.example"})
        client.get("/hello/", headers={"Host": "good.example", "X-Forwarded-Host": "evil.example"})
        client.get("/hello/", headers={"Host": "evil.example", "X-Forwarded-Host": "good.example"})
    hosts = [c["host"] for c in contexts(memory, "hello")]
    assert hosts == ["good.example", None, None, "good.example"]
    assert [c["path"] for c in contexts(memory, "hello")] == ["/hello/"] * 4


def test_requests_go_on_without_a_registered_tracker(caplog: pytest.LogCaptureFixture) -> None:
    from eventrouter.tracker import register_tracker, unregister_tracker

    previous = unregister_tracker()
    try:
        client = Client()
        assert [client.get("/plain/").status_code for _ in range(3)] == [200, 200, 200]
    finally:
        if previous is not None:
            register_tracker(previous)
    warnings = [r for r in caplog.records if "no tracker is registered" in r.getMessage()]
    assert len(warnings) == 1


# -- settings and checks --------------------------------------------------------------------


def test_malformed_settings_are_reported_by_the_check() -> None:
    with override_settings(EVENTROUTER_TRUSTED_PROXIES=["10.0.0.0/8", "not-an-address"]):
        (message,) = checks.check_options()
    assert message.id == "eventrouter.E002"
    assert "EVENTROUTER_TRUSTED_PROXIES" in message.msg
    assert "not-an-address" in message.msg


def test_the_check_warns_when_the_middleware_runs_before_authentication() -> None:
    order = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        checks.MIDDLEWARE_PATH,
        checks.AUTH_MIDDLEWARE,
    ]
    with override_settings(MIDDLEWARE=order):
        (message,) = checks.check_options()
    assert message.id == "eventrouter.W001"


def test_the_configured_settings_pass_the_checks() -> None:
    assert checks.check_options() == []
    assert checks.check_config() == []


def run_django(
    tmp_path: Path, settings: str, code: str, *, setup: bool = True
) -> subprocess.CompletedProcess[str]:
    """Start Django in a fresh process with ``settings`` and run ``code`` there (after
    ``django.setup()`` unless ``setup`` is false: ``code`` then starts Django itself)."""
    (tmp_path / "integ_settings.py").write_text(
        textwrap.dedent(
            """
            SECRET_KEY = "s"
            INSTALLED_APPS = ["eventrouter.integrations.django"]
            DATABASES = {}
            """
        )
        + textwrap.dedent(settings)
    )
    script = ("import django; django.setup()\n" if setup else "") + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": f"{tmp_path}:{HERE}",
            "DJANGO_SETTINGS_MODULE": "integ_settings",
        },
        check=False,
    )


@pytest.mark.slow
def test_the_app_registers_the_tracker_from_eventrouter_config(tmp_path: Path) -> None:
    (tmp_path / "routing.yaml").write_text("backends:\n  mem:\n    class: memory\n")
    result = run_django(
        tmp_path,
        f"EVENTROUTER_CONFIG = {str(tmp_path / 'routing.yaml')!r}\n",
        """
        from eventrouter import tracker
        print(sorted(tracker.get_tracker().backends))
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['mem']"


@pytest.mark.slow
def test_the_app_migrates_event_tracking_settings(tmp_path: Path) -> None:
    result = run_django(
        tmp_path,
        """
        EVENTROUTER_TRACKER = "tracking"
        EVENT_TRACKING_BACKENDS = {
            "logger": {
                "ENGINE": "eventtracking.backends.logger.LoggerBackend",
                "OPTIONS": {"name": "tracking"},
            }
        }
        """,
        """
        from eventrouter import tracker
        print(sorted(tracker.get_tracker("tracking").backends))
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['logger']"


@pytest.mark.slow
@pytest.mark.parametrize(
    "start",
    [
        "import django; django.setup()",  # manage.py, celery workers
        "from django.core.wsgi import get_wsgi_application; get_wsgi_application()",  # gunicorn
        "from django.core.asgi import get_asgi_application; get_asgi_application()",  # uvicorn
    ],
)
def test_an_invalid_config_stops_the_start_up_listing_every_problem(
    tmp_path: Path, start: str
) -> None:
    (tmp_path / "routing.yaml").write_text(
        "backends:\n  mem:\n    class: memroy\n  log:\n    class: jsonlog\n    levle: INFO\n"
    )
    result = run_django(
        tmp_path,
        f"EVENTROUTER_CONFIG = {str(tmp_path / 'routing.yaml')!r}\n",
        f"""
        import sys
        from django.core.exceptions import ImproperlyConfigured
        try:
            {start}
        except ImproperlyConfigured as exc:
            print(exc)
            sys.exit(3)
        print("started")
        """,
        setup=False,
    )
    assert result.returncode == 3, result.stderr
    assert "started" not in result.stdout
    assert "EVENTROUTER_CONFIG" in result.stdout
    assert "2 problem(s)" in result.stdout
    assert "routing.yaml:3" in result.stdout
    assert "memroy" in result.stdout
    assert "levle" in result.stdout


def test_the_system_check_reports_each_problem_of_the_config_error() -> None:
    from django.apps import apps

    from eventrouter.config import read_config
    from eventrouter.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        read_config({"backends": {"mem": {"class": "memroy"}}})
    config = apps.get_app_config("eventrouter")
    config.config_error = raised.value
    try:
        messages = checks.check_config()
    finally:
        config.config_error = None
    assert [m.id for m in messages] == ["eventrouter.E001"] * len(raised.value.issues)
    assert "memroy" in messages[0].msg
