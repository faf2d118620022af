"""What the request-context middleware adds to each request, in Django, Flask and ASGI.

Each framework serves the same trivial view twice, without and with the middleware, called
in-process (a WSGI environ into the handler, a raw ASGI call): no network and no test client
in the way, so the difference is the middleware's own cost. The view emits one event into a
memory backend, so the context is built *and* used. Prints µs/request for both and the cost
added; the best of ``--repeat`` runs of ``--requests`` requests each.

    python benchmarks/middleware.py [--requests N] [--repeat R]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
from collections.abc import Callable
from typing import Any

from eventrouter import MemoryBackend, Tracker
from eventrouter.tracker import register_tracker

HEADERS = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) bench/1.0",
    "Accept-Language": "en-US,en;q=0.9",
    "Referer": "https://courses.example.org/dashboard",
    "X-Forwarded-For": "203.0.113.9, 10.0.0.2",
}


def environ(path: str) -> dict[str, Any]:
    """A WSGI environ for ``GET path`` from a trusted proxy."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "bench.example",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.1",
        "HTTP_HOST": "bench.example",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in HEADERS.items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


def time_wsgi(app: Callable[..., Any], path: str, requests: int) -> float:
    """Seconds per request for ``requests`` calls of the WSGI ``app``."""

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        return None

    started = time.perf_counter()
    for _ in range(requests):
        body = app(environ(path), start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.perf_counter() - started) / requests


def django_apps() -> tuple[Callable[..., Any], Callable[..., Any]]:
    import django
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    settings.configure(
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["eventrouter.integrations.django"],
        MIDDLEWARE=[],
        EVENTROUTER_TRUSTED_PROXIES=["10.0.0.0/8"],
    )
    django.setup()
    from django.http import HttpResponse
    from django.urls import path

    from eventrouter import tracker

    def view(request: Any, course_id: str) -> HttpResponse:
        tracker.emit("bench.viewed", {"n": 1})
        return HttpResponse("ok")

    globals()["urlpatterns"] = [path("courses/<course_id>/", view)]
    plain = WSGIHandler()
    middleware = ["eventrouter.integrations.django.TrackingContextMiddleware"]
    with override_settings(MIDDLEWARE=middleware):
        wrapped = WSGIHandler()
    return plain, wrapped


def flask_apps() -> tuple[Callable[..., Any], Callable[..., Any]]:
    import flask

    from eventrouter import tracker
    from eventrouter.integrations.flask import init_app

    def make() -> flask.Flask:
        app = flask.Flask("bench")
        app.config["EVENTROUTER_TRUSTED_PROXIES"] = ["10.0.0.0/8"]

        @app.route("/courses/<course_id>/")
        def view(course_id: str) -> str:
            tracker.emit("bench.viewed", {"n": 1})
            return "ok"

        return app

    wrapped = make()
    init_app(wrapped)
    return make().wsgi_app, wrapped.wsgi_app


def time_asgi(app: Any, path: str, requests: int) -> float:
    """Seconds per request for ``requests`` raw ASGI calls of ``app``, one after another."""
    headers = [(b"host", b"bench.example")]
    headers += [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("10.0.0.1", 5000),
        "server": ("bench.example", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    async def run() -> float:
        started = time.perf_counter()
        for _ in range(requests):
            await app(dict(scope), receive, send)
        return (time.perf_counter() - started) / requests

    return asyncio.run(run())


def asgi_apps() -> tuple[Any, Any]:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from eventrouter import tracker
    from eventrouter.integrations.asgi import TrackingContextMiddleware

    async def view(request: Any) -> PlainTextResponse:
        tracker.emit("bench.viewed", {"n": 1})
        return PlainTextResponse("ok")

    routes = [Route("/courses/{course_id}/", view)]
    middleware = [Middleware(TrackingContextMiddleware, trusted_proxies=["10.0.0.0/8"])]
    return Starlette(routes=routes), Starlette(routes=routes, middleware=middleware)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    backend = MemoryBackend(max_events=1000)
    register_tracker(Tracker(backends={"memory": backend}))
    path = "/courses/course-v1:edX+DemoX+T1/"
    print(f"{'framework':<10} {'without µs':>11} {'with µs':>9} {'added µs':>9}")
    for name, make, timer in (
        ("django", django_apps, time_wsgi),
        ("flask", flask_apps, time_wsgi),
        ("asgi", asgi_apps, time_asgi),
    ):
        plain, wrapped = make()
        timer(plain, path, 200)  # warm up both
        timer(wrapped, path, 200)
        plain_runs: list[float] = []
        wrapped_runs: list[float] = []
        for _ in range(args.repeat):  # alternate, so load from elsewhere hits both alike
            plain_runs.append(timer(plain, path, args.requests) * 1e6)
            wrapped_runs.append(timer(wrapped, path, args.requests) * 1e6)
        if backend.events[-1]["context"].get("ip") != "203.0.113.9":
            raise SystemExit(f"{name}: the middleware did not enter the request context")
        without, with_ = min(plain_runs), min(wrapped_runs)
        print(f"{name:<10} {without:>11.1f} {with_:>9.1f} {with_ - without:>9.1f}")


if __name__ == "__main__":
    main()
