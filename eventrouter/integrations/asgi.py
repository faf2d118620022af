"""ASGI: ``TrackingContextMiddleware(app)`` for Starlette, FastAPI or any ASGI app.

::

    app = TrackingContextMiddleware(app, trusted_proxies=["10.0.0.0/8"], secret=SECRET)

The context is entered in the task that runs the request, for as long as the wrapped app
runs: a streamed body, and background tasks Starlette runs after the response, are inside
it; tasks started from the request copy it (asyncio and anyio copy the context).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any

from eventrouter.integrations._request import (
    CONTEXT_NAME,
    DEFAULT_MAX_LENGTH,
    ContextHook,
    RequestContextBuilder,
    install_ignore_filter,
    muted,
)
from eventrouter.tracker import Tracker, get_tracker

__all__ = ["TrackingContextMiddleware"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_WANTED = {
    b"host": "host",
    b"user-agent": "agent",
    b"referer": "referer",
    b"accept-language": "accept_language",
    b"x-request-id": "request_id",
    b"x-forwarded-for": "forwarded_for",
    b"cookie": "cookie",
}


class TrackingContextMiddleware:
    """Enters the request context around ``http`` and ``websocket`` connections.

    Args:
        app: the ASGI application to wrap.
        tracker: the tracker to enter the context on; by default the one registered as
            ``"default"``, looked up per request.
        ignore_paths: path patterns that get no context and whose events are dropped.
        trusted_proxies: addresses or networks whose ``X-Forwarded-For`` is believed.
        secret: the HMAC key for ``session``; without it ``session`` is ``None``.
        session_cookie: the cookie ``session`` is an HMAC of.
        context_hook: called with the ASGI scope; returns the app's own keys.
        max_length: the longest a string value may be.

    ``user_id``/``username`` come from ``scope["user"]`` (Starlette's
    ``AuthenticationMiddleware`` outside this one); ``route`` from ``scope["route"]`` when a
    router outside this middleware already matched one.
    """

    def __init__(
        self,
        app: ASGIApp,
        tracker: Tracker | None = None,
        *,
        ignore_paths: Iterable[str] = (),
        trusted_proxies: Iterable[str] = (),
        secret: str | bytes | None = None,
        session_cookie: str = "session",
        context_hook: ContextHook | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> None:
        self.app = app
        self.tracker = tracker
        self.session_cookie = session_cookie
        self.builder = RequestContextBuilder(
            ignore_paths=ignore_paths,
            trusted_proxies=trusted_proxies,
            secret=secret,
            context_hook=context_hook,
            max_length=max_length,
        )
        self._installed: Tracker | None = None
        if tracker is not None:
            install_ignore_filter(tracker)
            self._installed = tracker

    def _tracker(self) -> Tracker | None:
        tracker = self.tracker
        if tracker is None:
            try:
                tracker = get_tracker()
            except LookupError:
                return None
            if tracker is not self._installed:
                install_ignore_filter(tracker)
                self._installed = tracker
        return tracker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the wrapped app inside the request's context."""
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        tracker = self._tracker()
        if tracker is None:
            await self.app(scope, receive, send)
            return
        path = scope.get("path") or "/"
        if self.builder.ignored(path):
            with muted():
                await self.app(scope, receive, send)
            return
        context = self.builder.guarded(lambda: self.context(scope))
        if context is None:
            await self.app(scope, receive, send)
            return
        with tracker.context(CONTEXT_NAME, context):
            await self.app(scope, receive, send)

    def context(self, scope: Scope) -> dict[str, Any]:
        """The request context of an ASGI connection ``scope``."""
        found: dict[str, str] = {}
        for name, value in scope.get("headers") or ():
            key = _WANTED.get(name.lower() if isinstance(name, bytes) else b"")
            if key is not None and key not in found and isinstance(value, bytes):
                found[key] = value.decode("latin-1")
        client = scope.get("client")
        peer = str(client[0]) if client else None
        user_id = username = None
        user = scope.get("user")
        if user is not None and getattr(user, "is_authenticated", False):
            try:
                user_id = user.identity
            except Exception:
                user_id = None
            name = getattr(user, "display_name", None)
            username = name if isinstance(name, str) else None
        route = scope.get("route")
        context = self.builder.build(
            path=scope.get("path") or "/",
            method=scope.get("method") or ("WEBSOCKET" if scope["type"] == "websocket" else ""),
            host=found.get("host"),
            peer=peer,
            forwarded_for=found.get("forwarded_for"),
            agent=found.get("agent"),
            referer=found.get("referer"),
            accept_language=found.get("accept_language"),
            request_id=found.get("request_id"),
            user_id=user_id,
            username=username,
            session_key=self._session_key(found.get("cookie")),
            route=getattr(route, "path", None),
        )
        context.update(self.builder.extra(scope))
        return context

    def _session_key(self, cookie_header: str | None) -> str | None:
        if not cookie_header or self.session_cookie not in cookie_header:
            return None
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(cookie_header)
        except CookieError:
            return None
        morsel = cookies.get(self.session_cookie)
        return morsel.value if morsel is not None else None
