"""The Django project of the integration tests: URLs, views and a header-driven user."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path

from eventrouter import tracker
from eventrouter.integrations.threads import ContextThreadPoolExecutor, with_context


class HeaderUser:
    """A user the tests name with the ``X-Test-User`` header (no database involved)."""

    is_authenticated = True

    def __init__(self, pk: int) -> None:
        self.pk = pk

    def get_username(self) -> str:
        return f"user{self.pk}"


class BrokenUser:
    """A user whose database is down: asking anything about it fails."""

    @property
    def is_authenticated(self) -> bool:
        raise RuntimeError("database down while loading user alice@example.org")


class HeaderUserMiddleware:
    """Replaces ``request.user`` when ``X-Test-User`` is sent; sync and async."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        named = request.META.get("HTTP_X_TEST_USER")
        if named is not None:
            user: Any = BrokenUser() if named == "broken" else HeaderUser(int(named))
            request.user = user  # type: ignore[assignment]

            async def auser() -> Any:
                return user

            request.auser = auser  # type: ignore[attr-defined]
        return self.get_response(request)


def course_hook(request: HttpRequest) -> dict[str, Any]:
    """The app's own key: ``course_id`` from the URL."""
    match = request.resolver_match
    if match is not None and "course_id" in match.kwargs:
        return {"course_id": match.kwargs["course_id"]}
    return {}


def _context() -> dict[str, Any]:
    return tracker.get_tracker().resolve_context()


def hello(request: HttpRequest) -> JsonResponse:
    tracker.emit("hello", {"n": request.GET.get("n")})
    if request.GET.get("yield"):
        time.sleep(0)
    tracker.emit("hello.again", {"n": request.GET.get("n")})
    return JsonResponse(_context())


async def ahello(request: HttpRequest) -> JsonResponse:
    tracker.emit("ahello", {"n": request.GET.get("n")})
    await asyncio.sleep(0)
    tracker.emit("ahello.again", {"n": request.GET.get("n")})
    return JsonResponse(_context())


def course(request: HttpRequest, course_id: str) -> JsonResponse:
    tracker.emit("course.viewed", {})
    return JsonResponse(_context())


def health(request: HttpRequest, part: str = "") -> HttpResponse:
    tracker.emit("health.checked", {})
    return HttpResponse("ok")


def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[str]:
        for i in range(3):
            tracker.emit("stream.chunk", {"i": i})
            yield f"{i}\n"

    return StreamingHttpResponse(chunks())


async def astream(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks() -> AsyncIterator[str]:
        for i in range(3):
            tracker.emit("astream.chunk", {"i": i})
            await asyncio.sleep(0)
            yield f"{i}\n"

    return StreamingHttpResponse(chunks())


def _emit_sync(label: str) -> None:
    tracker.emit("crossed", {"via": label})


async def across_sync(request: HttpRequest) -> HttpResponse:
    await sync_to_async(_emit_sync)("sync_to_async")
    return HttpResponse("ok")


async def _emit_async(label: str) -> None:
    tracker.emit("crossed", {"via": label})


def across_async(request: HttpRequest) -> HttpResponse:
    async_to_sync(_emit_async)("async_to_sync")
    return HttpResponse("ok")


def pool(request: HttpRequest) -> HttpResponse:
    with ContextThreadPoolExecutor(max_workers=2) as executor:
        list(executor.map(_emit_sync, ["pool-a", "pool-b"]))
    return HttpResponse("ok")


async def across_unsensitive(request: HttpRequest) -> HttpResponse:
    # A thread of asgiref's own pool, not the request's thread.
    await sync_to_async(_emit_sync, thread_sensitive=False)("thread_sensitive=False")
    return HttpResponse("ok")


def _round_trip(label: str) -> None:
    async_to_sync(_emit_async)(label)


async def across_round_trip(request: HttpRequest) -> HttpResponse:
    await sync_to_async(_round_trip)("round trip")
    return HttpResponse("ok")


async def across_executor(request: HttpRequest) -> HttpResponse:
    # asyncio's run_in_executor does not copy the context: the helper carries it.
    loop = asyncio.get_running_loop()
    wrapped = request.GET.get("wrapped") == "1"
    work = with_context(_emit_sync) if wrapped else _emit_sync
    await loop.run_in_executor(None, work, "run_in_executor")
    return HttpResponse("ok")


def plain_pool(request: HttpRequest) -> HttpResponse:
    with ThreadPoolExecutor(max_workers=2) as executor:
        for label in ("plain-a", "plain-b"):
            executor.submit(with_context(_emit_sync), label).result()
    return HttpResponse("ok")


def send_task(request: HttpRequest) -> HttpResponse:
    from integ_celery_app import record

    record.delay(request.GET.get("label", "from-view"))
    return HttpResponse("sent")


urlpatterns = [
    path("hello/", hello),
    path("ahello/", ahello),
    path("courses/<str:course_id>/", course),
    path("health", health),
    path("status/<str:part>", health),
    path("plain/", plain),
    path("stream/", stream),
    path("astream/", astream),
    path("across/sync/", across_sync),
    path("across/async/", across_async),
    path("pool/", pool),
    path("pool/plain/", plain_pool),
    path("across/unsensitive/", across_unsensitive),
    path("across/round-trip/", across_round_trip),
    path("across/executor/", across_executor),
    path("task/", send_task),
]
