"""Flask: ``init_app`` through Flask's own test client."""

from __future__ import annotations

import hmac
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from hashlib import sha256
from pathlib import Path
from typing import Any

import flask
import pytest
from integ_support import registered_memory

from eventrouter import MemoryBackend, Tracker
from eventrouter.integrations import CONTEXT_KEYS
from eventrouter.integrations.flask import init_app
from eventrouter.tracker import get_tracker

SECRET = "flask-secret"


def course_hook(request: flask.Request) -> dict[str, Any]:
    return {"course_id": (request.view_args or {}).get("course_id")}


def make_app(**config: Any) -> flask.Flask:
    app = flask.Flask("integ_flask")
    app.config.update(
        SECRET_KEY=SECRET,
        EVENTROUTER_IGNORE_PATHS=["/health"],
        EVENTROUTER_TRUSTED_PROXIES=["10.0.0.0/8"],
        EVENTROUTER_CONTEXT_HOOK=course_hook,
    )
    app.config.update(config)

    @app.route("/hello/<int:n>")
    def hello(n: int) -> Any:
        get_tracker().emit("hello", {"n": n})
        threading.Event().wait(0)  # let other threads run between the two emits
        get_tracker().emit("hello.again", {"n": n})
        return get_tracker().resolve_context()

    @app.route("/login")
    def login() -> str:
        flask.session["user"] = "ada"
        return "ok"

    @app.route("/courses/<course_id>/")
    def course(course_id: str) -> str:
        get_tracker().emit("course.viewed", {})
        return "ok"

    @app.route("/health")
    def health() -> str:
        get_tracker().emit("health.checked", {})
        return "ok"

    @app.route("/async/<int:n>")
    async def async_view(n: int) -> str:
        get_tracker().emit("async.viewed", {"n": n})
        return "ok"

    @app.route("/stream")
    def stream() -> flask.Response:
        def chunks() -> Iterator[str]:
            for i in range(3):
                get_tracker().emit("stream.chunk", {"i": i})
                yield f"{i}\n"

        return flask.Response(chunks())

    return app


@pytest.fixture
def memory() -> Iterator[MemoryBackend]:
    with registered_memory() as backend:
        yield backend


@pytest.fixture
def client(memory: MemoryBackend) -> Any:
    app = make_app()
    init_app(app)
    return app.test_client()


def contexts(memory: MemoryBackend, name: str) -> list[dict[str, Any]]:
    return [event["context"] for event in memory.events if event["name"] == name]


def test_a_view_emits_with_every_request_key(client: Any, memory: MemoryBackend) -> None:
    client.get(
        "/hello/3",
        headers={
            "User-Agent": "probe/2",
            "Referer": "https://example.org/",
            "Accept-Language": "de",
            "X-Request-ID": "flask-1",
        },
    )
    (context,) = contexts(memory, "hello")
    assert set(CONTEXT_KEYS) <= set(context)
    assert context["ip"] == "127.0.0.1"
    assert context["agent"] == "probe/2"
    assert context["host"] == "localhost"
    assert context["path"] == "/hello/3"
    assert context["method"] == "GET"
    assert context["referer"] == "https://example.org/"
    assert context["accept_language"] == "de"
    assert context["request_id"] == "flask-1"
    assert context["route"] == "/hello/<int:n>"
    assert context["user_id"] is None


def test_the_session_is_an_hmac_of_the_session_cookie(client: Any, memory: MemoryBackend) -> None:
    client.get("/login")
    cookie = client.get_cookie("session").value
    client.get("/hello/1")
    (context,) = contexts(memory, "hello")
    assert context["session"] == hmac.new(SECRET.encode(), cookie.encode(), sha256).hexdigest()[:32]


class BrokenUser:
    """Flask-Login's current_user when the user store is down."""

    @property
    def is_authenticated(self) -> bool:
        raise RuntimeError("user store down for alice@example.org")


def test_a_failing_user_lookup_keeps_the_rest_of_the_context(
    client: Any, memory: MemoryBackend, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    from eventrouter.integrations import flask as integration

    monkeypatch.setattr(integration, "_login_user", BrokenUser())
    assert client.get("/hello/1", headers={"X-Request-ID": "kept"}).status_code == 200
    (context,) = contexts(memory, "hello")
    assert (context["user_id"], context["username"]) == (None, None)
    assert (context["path"], context["request_id"]) == ("/hello/1", "kept")
    assert "RuntimeError" in caplog.text
    assert "alice" not in caplog.text


def test_nothing_is_left_after_the_response(client: Any, memory: MemoryBackend) -> None:
    assert client.get("/hello/1").json["path"] == "/hello/1"
    assert get_tracker().resolve_context() == {}


def test_a_spoofed_forwarded_for_is_ignored_unless_the_proxy_is_trusted(
    client: Any, memory: MemoryBackend
) -> None:
    client.get("/hello/1", headers={"X-Forwarded-For": "203.0.113.9"})
    client.get(
        "/hello/2",
        headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.9"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert [c["ip"] for c in contexts(memory, "hello")] == ["127.0.0.1", "203.0.113.9"]


def test_an_ignored_path_emits_nothing(client: Any, memory: MemoryBackend) -> None:
    get_tracker().router.processors = [lambda event: event]  # the user replaces the chain
    assert client.get("/health").status_code == 200
    assert memory.events == []
    stats = get_tracker().stats()
    assert (stats["muted"], stats["vetoed"], stats["received"]) == (1, 0, 0)
    assert len(get_tracker().processors) == 1  # nothing added to the user's chain
    client.get("/hello/1")
    assert len(memory.events) == 2


def test_the_context_hook_adds_the_apps_keys(client: Any, memory: MemoryBackend) -> None:
    client.get("/courses/demo/")
    assert contexts(memory, "course.viewed")[0]["course_id"] == "demo"


def test_a_streamed_responses_chunks_carry_its_context(client: Any, memory: MemoryBackend) -> None:
    response = client.get("/stream", headers={"X-Request-ID": "streamed"}, buffered=False)
    assert b"".join(response.response) == b"0\n1\n2\n"
    response.close()
    assert [c["request_id"] for c in contexts(memory, "stream.chunk")] == ["streamed"] * 3
    assert get_tracker().resolve_context() == {}


def test_an_async_view_keeps_the_context(client: Any, memory: MemoryBackend) -> None:
    client.get("/async/2", headers={"X-Request-ID": "async-flask"})
    assert contexts(memory, "async.viewed")[0]["request_id"] == "async-flask"


@pytest.mark.slow
def test_a_thousand_concurrent_requests_never_mix_contexts(
    client: Any, memory: MemoryBackend
) -> None:
    app = client.application
    local = threading.local()
    leftovers: list[dict[str, Any]] = []

    def request(i: int) -> None:
        own = getattr(local, "client", None)
        if own is None:
            own = local.client = app.test_client()
        assert own.get(f"/hello/{i}", headers={"X-Request-ID": f"r{i}"}).status_code == 200
        left = get_tracker().resolve_context()
        if left:
            leftovers.append(left)

    with ThreadPoolExecutor(max_workers=16) as executor:
        list(executor.map(request, range(1000)))
    assert len(memory.events) == 2000
    leaks = [e for e in memory.events if e["context"]["request_id"] != f"r{e['data']['n']}"]
    assert leaks == []
    assert leftovers == []


def test_init_app_builds_and_registers_the_tracker_from_app_config(tmp_path: Path) -> None:
    from eventrouter.tracker import register_tracker, unregister_tracker

    (tmp_path / "routing.yaml").write_text("backends:\n  mem:\n    class: memory\n")
    previous = unregister_tracker()
    try:
        app = make_app(EVENTROUTER_CONFIG=str(tmp_path / "routing.yaml"))
        built = init_app(app)
        assert isinstance(built, Tracker)
        assert get_tracker() is built
        assert app.extensions["eventrouter"] is built
        app.test_client().get("/hello/4", headers={"X-Request-ID": "cfg"})
        events = built.get_backend("mem").events  # type: ignore[attr-defined]
        assert [e["context"]["request_id"] for e in events] == ["cfg", "cfg"]
    finally:
        unregister_tracker()
        if previous is not None:
            register_tracker(previous)


def test_init_app_with_a_tracker_uses_it() -> None:
    backend = MemoryBackend()
    own = Tracker(backends={"mem": backend})
    app = flask.Flask("own")

    @app.route("/")
    def index() -> str:
        own.emit("index", {})
        return "ok"

    assert init_app(app, tracker=own) is own
    app.test_client().get("/", headers={"X-Request-ID": "own"})
    assert backend.events[0]["context"]["request_id"] == "own"


def test_a_malformed_option_is_refused_at_init_app() -> None:
    app = make_app(EVENTROUTER_TRUSTED_PROXIES="10.0.0.1")
    with pytest.raises(TypeError, match="trusted_proxies"):
        init_app(app)


def test_requests_go_on_without_a_registered_tracker(caplog: pytest.LogCaptureFixture) -> None:
    from eventrouter.tracker import register_tracker, unregister_tracker

    previous = unregister_tracker()
    try:
        app = make_app()
        assert init_app(app) is None
        client = app.test_client()
        assert [client.get("/login").status_code for _ in range(3)] == [200] * 3
    finally:
        if previous is not None:
            register_tracker(previous)
    warnings = [r for r in caplog.records if "no tracker is registered" in r.getMessage()]
    assert len(warnings) == 1
    assert "EVENTROUTER_CONFIG" in warnings[0].getMessage()
