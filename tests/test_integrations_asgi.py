"""ASGI: the middleware around a Starlette app, through Starlette's TestClient and through raw
ASGI calls in concurrent asyncio tasks."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Iterator
from hashlib import sha256
from typing import Any

import pytest
from integ_support import registered_memory, run_async
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    BaseUser,
    SimpleUser,
)
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from eventrouter import MemoryBackend
from eventrouter.integrations import CONTEXT_KEYS
from eventrouter.integrations.asgi import TrackingContextMiddleware
from eventrouter.tracker import get_tracker

SECRET = "asgi-secret"


class HeaderAuth(AuthenticationBackend):
    """Authenticates the user named in ``X-Test-User``."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        name = conn.headers.get("x-test-user")
        if name is None:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(name)


def emit(name: str, data: dict[str, Any] | None = None) -> None:
    get_tracker().emit(name, data or {})


async def hello(request: Request) -> JSONResponse:
    n = request.path_params["n"]
    emit("hello", {"n": n})
    await asyncio.sleep(0)  # let the other requests' tasks run in between
    emit("hello.again", {"n": n})
    return JSONResponse(get_tracker().resolve_context())


async def health(request: Request) -> PlainTextResponse:
    emit("health.checked")
    return PlainTextResponse("ok")


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[str]:
        for i in range(3):
            emit("stream.chunk", {"i": i})
            await asyncio.sleep(0)
            yield f"{i}\n"

    return StreamingResponse(chunks())


async def background(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok", background=BackgroundTask(emit, "background.ran"))


async def spawn(request: Request) -> PlainTextResponse:
    async def later() -> None:
        await asyncio.sleep(0)
        emit("spawned.ran")

    await asyncio.create_task(later())
    return PlainTextResponse("ok")


async def socket(websocket: WebSocket) -> None:
    await websocket.accept()
    emit("socket.message", {"text": await websocket.receive_text()})
    await websocket.close()


def course_hook(scope: dict[str, Any]) -> dict[str, Any]:
    return {"tenant": scope["path"].split("/")[1]}


def make_app(**options: Any) -> Starlette:
    settings = {
        "ignore_paths": ["/health"],
        "trusted_proxies": ["10.0.0.0/8"],
        "secret": SECRET,
    }
    settings.update(options)
    return Starlette(
        routes=[
            Route("/hello/{n}", hello),
            Route("/health", health),
            Route("/stream", stream),
            Route("/background", background),
            Route("/spawn", spawn),
            WebSocketRoute("/socket", socket),
        ],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=HeaderAuth()),
            Middleware(TrackingContextMiddleware, **settings),
        ],
    )


@pytest.fixture
def memory() -> Iterator[MemoryBackend]:
    with registered_memory() as backend:
        yield backend


@pytest.fixture
def client(memory: MemoryBackend) -> Iterator[TestClient]:
    with TestClient(make_app()) as test_client:
        yield test_client


def contexts(memory: MemoryBackend, name: str) -> list[dict[str, Any]]:
    return [event["context"] for event in memory.events if event["name"] == name]


def test_a_view_emits_with_every_request_key(client: TestClient, memory: MemoryBackend) -> None:
    client.cookies.set("session", "the-session-cookie")
    client.get(
        "/hello/1",
        headers={
            "User-Agent": "probe/3",
            "Referer": "https://example.org/",
            "Accept-Language": "es",
            "X-Request-ID": "asgi-1",
            "X-Test-User": "ada",
        },
    )
    (context,) = contexts(memory, "hello")
    assert set(CONTEXT_KEYS) <= set(context)
    assert context["user_id"] == "ada"
    assert context["username"] == "ada"
    assert context["ip"] == "testclient"
    assert context["agent"] == "probe/3"
    assert context["host"] == "testserver"
    assert context["path"] == "/hello/1"
    assert context["method"] == "GET"
    assert context["referer"] == "https://example.org/"
    assert context["accept_language"] == "es"
    assert context["request_id"] == "asgi-1"
    expected = hmac.new(SECRET.encode(), b"the-session-cookie", sha256).hexdigest()[:32]
    assert context["session"] == expected


def test_nothing_is_left_after_the_response(client: TestClient, memory: MemoryBackend) -> None:
    assert client.get("/hello/1").json()["path"] == "/hello/1"
    assert get_tracker().resolve_context() == {}


def test_an_ignored_path_emits_nothing(client: TestClient, memory: MemoryBackend) -> None:
    get_tracker().router.processors = [lambda event: event]  # the user replaces the chain
    assert client.get("/health").status_code == 200
    assert memory.events == []
    stats = get_tracker().stats()
    assert (stats["muted"], stats["vetoed"], stats["received"]) == (1, 0, 0)
    assert len(get_tracker().processors) == 1  # nothing added to the user's chain


def test_a_streamed_responses_chunks_carry_its_context(
    client: TestClient, memory: MemoryBackend
) -> None:
    with client.stream("GET", "/stream", headers={"X-Request-ID": "streamed"}) as response:
        assert response.read() == b"0\n1\n2\n"
    assert [c["request_id"] for c in contexts(memory, "stream.chunk")] == ["streamed"] * 3


def test_background_tasks_and_spawned_tasks_carry_the_context(
    client: TestClient, memory: MemoryBackend
) -> None:
    client.get("/background", headers={"X-Request-ID": "bg"})
    client.get("/spawn", headers={"X-Request-ID": "sp"})
    assert contexts(memory, "background.ran")[0]["request_id"] == "bg"
    assert contexts(memory, "spawned.ran")[0]["request_id"] == "sp"


def test_a_websocket_connection_has_its_context(client: TestClient, memory: MemoryBackend) -> None:
    with client.websocket_connect("/socket", headers={"X-Request-ID": "ws-1"}) as websocket:
        websocket.send_text("hi")
    (context,) = contexts(memory, "socket.message")
    assert context["request_id"] == "ws-1"
    assert context["path"] == "/socket"
    assert context["method"] == "WEBSOCKET"


def test_the_context_hook_gets_the_scope(memory: MemoryBackend) -> None:
    with TestClient(make_app(context_hook=course_hook)) as client:
        client.get("/hello/5")
    assert contexts(memory, "hello")[0]["tenant"] == "hello"


def test_a_failing_hook_is_counted_and_the_request_goes_on(memory: MemoryBackend) -> None:
    def broken(scope: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("secret request data")

    app = make_app(context_hook=broken)
    with TestClient(app) as client:
        assert client.get("/hello/1").status_code == 200
        assert client.get("/hello/2").status_code == 200
    assert len(contexts(memory, "hello")) == 2


class BrokenUser:
    @property
    def is_authenticated(self) -> bool:
        raise RuntimeError("session store down for alice@example.org")


@run_async
async def test_a_failing_user_never_breaks_the_request(
    memory: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        emit("inside")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def record(message: Any) -> None:
        sent.append(message)

    scope = {**http_scope("/x", {"X-Request-ID": "kept"}), "user": BrokenUser()}
    await TrackingContextMiddleware(app)(scope, None, record)  # type: ignore[arg-type]
    assert sent[0]["status"] == 204
    context = memory.events[0]["context"]
    assert (context["user_id"], context["username"]) == (None, None)
    assert (context["path"], context["ip"], context["request_id"]) == ("/x", "192.0.2.1", "kept")
    assert "RuntimeError" in caplog.text
    assert "alice" not in caplog.text


# -- raw ASGI calls ------------------------------------------------------------------------


def http_scope(path: str, headers: dict[str, str], client: str = "192.0.2.1") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": (client, 5000),
        "server": ("app.example", 80),
    }


async def call(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


@run_async
async def test_a_spoofed_forwarded_for_is_ignored_unless_the_proxy_is_trusted(
    memory: MemoryBackend,
) -> None:
    app = make_app()
    spoof = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}
    await call(app, http_scope("/hello/1", spoof))
    await call(app, http_scope("/hello/2", spoof, client="10.9.8.7"))
    await call(app, http_scope("/hello/3", spoof, client="2001:db8::1"))
    assert [c["ip"] for c in contexts(memory, "hello")] == [
        "192.0.2.1",
        "203.0.113.9",
        "2001:db8::1",
    ]


@pytest.mark.slow
@run_async
async def test_a_thousand_concurrent_tasks_never_mix_contexts(memory: MemoryBackend) -> None:
    app = make_app()

    async def request(i: int) -> None:
        headers = {"X-Test-User": f"u{i}", "X-Request-ID": f"r{i}"}
        sent = await call(app, http_scope(f"/hello/{i}", headers))
        assert sent[0]["status"] == 200
        assert get_tracker().resolve_context() == {}

    await asyncio.gather(*(request(i) for i in range(1000)))
    assert len(memory.events) == 2000
    leaks = [
        e
        for e in memory.events
        if e["context"]["user_id"] != f"u{e['data']['n']}"
        or e["context"]["request_id"] != f"r{e['data']['n']}"
    ]
    assert leaks == []
    assert get_tracker().resolve_context() == {}


@run_async
async def test_lifespan_and_other_scopes_pass_through(memory: MemoryBackend) -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        assert get_tracker().resolve_context() == {}

    await TrackingContextMiddleware(inner)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


@run_async
async def test_hostile_headers_are_bounded(memory: MemoryBackend) -> None:
    app = make_app(max_length=64)
    headers = {
        "User-Agent": "x" * 10_000,
        "X-Request-ID": "y" * 10_000,
        "X-Forwarded-For": ",".join(["1.1.1.1"] * 10_000),
        "Cookie": "session=" + "z" * 10_000,
    }
    await call(app, http_scope("/hello/1", headers, client="10.0.0.1"))
    (context,) = contexts(memory, "hello")
    assert len(context["agent"]) == 64
    assert len(context["request_id"]) == 32  # refused, generated
    assert context["ip"] == "1.1.1.1"
    assert len(context["session"]) == 32


# -- what routing and authentication inside the wrapped app add -----------------------------


def routed_app(**options: Any) -> Starlette:
    """Routing (and, with ``inner_auth``, authentication) inside the middleware, as Starlette
    runs its own router: ``scope["route"]`` and ``path_params`` appear after it entered."""
    inner_auth = options.pop("inner_auth", False)
    middleware = [Middleware(TrackingContextMiddleware, **options)]
    if inner_auth:
        middleware.append(Middleware(AuthenticationMiddleware, backend=HeaderAuth()))
    return Starlette(
        routes=[
            Route("/hello/{n}", hello),
            Mount("/courses/{course}", routes=[Route("/units/{n}", hello)]),
        ],
        middleware=middleware,
    )


def test_events_in_an_endpoint_carry_the_route_starlette_matched(memory: MemoryBackend) -> None:
    with TestClient(routed_app()) as client:
        assert client.get("/hello/3").json()["route"] == "/hello/{n}"
        client.get("/courses/c1/units/4")
    assert [c["route"] for c in contexts(memory, "hello")] == [
        "/hello/{n}",
        "/courses/c1/units/{n}",
    ]
    assert [c["route"] for c in contexts(memory, "hello.again")] == [
        "/hello/{n}",
        "/courses/c1/units/{n}",
    ]


def test_the_context_hook_sees_the_path_params_of_the_matched_route(memory: MemoryBackend) -> None:
    def hook(scope: dict[str, Any]) -> dict[str, Any]:
        params = scope.get("path_params", {})
        return {"course_id": params.get("course"), "unit": params.get("n")}

    with TestClient(routed_app(context_hook=hook)) as client:
        client.get("/courses/c1/units/4")
        client.get("/hello/9")
    assert [(c["course_id"], c["unit"]) for c in contexts(memory, "hello")] == [
        ("c1", "4"),
        (None, "9"),
    ]


def test_a_user_authenticated_inside_the_middleware_is_seen(memory: MemoryBackend) -> None:
    with TestClient(routed_app(inner_auth=True)) as client:
        client.get("/hello/1", headers={"X-Test-User": "grace"})
        client.get("/hello/2")
    assert [(c["user_id"], c["username"]) for c in contexts(memory, "hello")] == [
        ("grace", "grace"),
        (None, None),
    ]


class NamedUser(BaseUser):
    """A user without ``identity`` (``BaseUser.identity`` raises NotImplementedError), as
    Starlette's SimpleUser was before it had one."""

    def __init__(self, username: str) -> None:
        self.username = username

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return f"Dr. {self.username}"


class IdentifiedUser(NamedUser):
    @property
    def identity(self) -> str:
        return "id-42"


@run_async
@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (NamedUser("ada"), ("ada", "ada")),
        (IdentifiedUser("ada"), ("id-42", "ada")),
        (SimpleUser("ada"), ("ada", "ada")),
    ],
)
async def test_user_id_is_the_identity_else_the_username(
    memory: MemoryBackend, user: BaseUser, expected: tuple[str, str]
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        emit("inside")

    await TrackingContextMiddleware(app)({**http_scope("/x", {}), "user": user}, None, None)  # type: ignore[arg-type]
    context = memory.events[0]["context"]
    assert (context["user_id"], context["username"]) == expected


def test_requests_go_on_without_a_registered_tracker(caplog: pytest.LogCaptureFixture) -> None:
    from eventrouter.tracker import register_tracker, unregister_tracker

    previous = unregister_tracker()
    try:
        with TestClient(make_app()) as client:
            assert [client.get("/missing").status_code for _ in range(3)] == [404] * 3
    finally:
        if previous is not None:
            register_tracker(previous)
    warnings = [r for r in caplog.records if "no tracker is registered" in r.getMessage()]
    assert len(warnings) == 1
    assert "tracker=" in warnings[0].getMessage()
