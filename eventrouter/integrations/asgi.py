"""ASGI: ``TrackingContextMiddleware(app)`` for Starlette, FastAPI or any ASGI app.

::

    app = TrackingContextMiddleware(app, trusted_proxies=["10.0.0.0/8"], secret=SECRET)

The context is entered in the task that runs the request, for as long as the wrapped app
runs: a streamed body, and background tasks Starlette runs after the response, are inside
it; tasks started from the request copy it (asyncio and anyio copy the context).

Routing happens inside the wrapped app, after the context is entered: Starlette's router
writes ``scope["route"]`` and ``scope["path_params"]`` into the same scope dict. The entered
mapping therefore reads the scope again whenever an event is emitted and the scope's
``route`` or ``user`` has changed since it last looked, so events emitted in an endpoint
carry its ``route``, its user and what ``context_hook`` makes of its ``path_params``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any

from eventrouter.integrations._request import (
    CONTEXT_NAME,
    DEFAULT_MAX_LENGTH,
    HEADERS,
    ContextHook,
    RequestContextBuilder,
    TrackerRef,
)
from eventrouter.tracker import Tracker

__all__ = ["ASGIApp", "Receive", "Scope", "Send", "TrackingContextMiddleware"]

Scope = MutableMapping[str, Any]
"""An ASGI connection scope."""
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
"""An ASGI ``receive`` callable."""
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
"""An ASGI ``send`` callable."""
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI application, such as the one the middleware wraps."""

_WANTED = {header.name.encode("latin-1"): header.field for header in HEADERS}
_WANTED[b"cookie"] = "cookie"
"""The header names (lower case bytes, as in a scope) read, to the key they are kept under."""


def _user_fields(user: Any) -> tuple[Any, str | None]:
    """``(user_id, username)`` of an authenticated ``scope["user"]``, else ``(None, None)``.

    ``user_id`` is the user's ``identity`` when it has one (Starlette's ``BaseUser``
    subclasses that implement it), else its ``username``, else its ``display_name``;
    ``username`` is its ``username``, else its ``display_name``. Starlette's ``SimpleUser``
    has no ``identity``, so both are its username.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return None, None
    names = []
    for attribute in ("username", "display_name"):
        try:
            value = getattr(user, attribute, None)
        except Exception:
            value = None
        if isinstance(value, str) and value:
            names.append(value)
    username = names[0] if names else None
    try:
        user_id = user.identity
    except Exception:  # BaseUser.identity raises NotImplementedError
        user_id = None
    if user_id is None or user_id == "":
        user_id = username
    return user_id, username


class _ScopeContext(Mapping[str, Any]):
    """The entered request context: the values built at the start, brought up to date with
    the scope's ``route``, ``user`` and the context hook whenever those changed in the scope
    (the router and authentication run inside the wrapped app). Read at each emit."""

    __slots__ = ("_middleware", "_root_path", "_scope", "_seen_route", "_seen_user", "_values")

    def __init__(
        self, middleware: TrackingContextMiddleware, scope: Scope, values: dict[str, Any]
    ) -> None:
        self._middleware = middleware
        self._scope = scope
        self._root_path = scope.get("root_path") or ""
        self._seen_route = scope.get("route")
        self._seen_user = scope.get("user")
        self._values = values

    def _current(self) -> dict[str, Any]:
        scope = self._scope
        route = scope.get("route")
        user = scope.get("user")
        if route is not self._seen_route or user is not self._seen_user:
            # Remember first: a failing refresh is counted once, not at every emit.
            self._seen_route, self._seen_user = route, user
            refreshed = self._middleware.builder.guarded(
                lambda: self._middleware._routed(scope, self._root_path)
            )
            if refreshed is not None:
                self._values = {**self._values, **refreshed}
        return self._values

    def __getitem__(self, key: str) -> Any:
        return self._current()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())


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
        context_hook: called with the ASGI scope; returns the app's own keys. It is
            called when the request starts and again once the router has matched a route
            (the scope then has ``path_params``), at the first event after that.
        max_length: the longest a string value may be.

    ``user_id``/``username`` come from ``scope["user"]`` (set by Starlette's
    ``AuthenticationMiddleware``, outside or inside this one): ``user_id`` is the user's
    ``identity`` when it implements one, else its ``username`` (or ``display_name``);
    ``username`` is its ``username`` (or ``display_name``). ``route`` is the path template of
    the route Starlette or FastAPI matched (``scope["route"].path``, such as
    ``/items/{item_id}``), after the prefix of the ``Mount`` it is in (that prefix as
    requested).
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
        self._tracker = TrackerRef(
            tracker if tracker is not None else "default",
            hint="pass tracker= to TrackingContextMiddleware, or register one at start-up "
            "with eventrouter.tracker.register_tracker",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the wrapped app inside the request's context."""
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        tracker = self._tracker.get()
        if tracker is None:
            await self.app(scope, receive, send)
            return
        path = scope.get("path") or "/"
        if self.builder.ignored(path):
            with tracker.muted():
                await self.app(scope, receive, send)
            return
        context = self.builder.guarded(lambda: self.context(scope))
        if context is None:
            await self.app(scope, receive, send)
            return
        with tracker.context(CONTEXT_NAME, _ScopeContext(self, scope, context)):
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
        user_id, username = self._user(scope)
        context = self.builder.build(
            lambda header: found.get(header.field),
            path=scope.get("path") or "/",
            method=scope.get("method") or ("WEBSOCKET" if scope["type"] == "websocket" else ""),
            peer=peer,
            user_id=user_id,
            username=username,
            session_key=self._session_key(found.get("cookie")),
            route=self._route(scope, scope.get("root_path") or ""),
        )
        context.update(self.builder.extra(scope))
        return context

    def _routed(self, scope: Scope, root_path: str) -> dict[str, Any]:
        """What the scope says once routing or authentication ran inside the wrapped app:
        ``route``, the user's fields and the context hook's keys."""
        user_id, username = self._user(scope)
        values = self.builder.user_fields(user_id, username)
        values["route"] = self.builder.route(self._route(scope, root_path))
        values.update(self.builder.extra(scope))
        return values

    def _user(self, scope: Scope) -> tuple[Any, str | None]:
        """The user's fields; ``(None, None)`` when reading the user fails (counted, logged by
        type): the rest of the context stays."""
        try:
            return _user_fields(scope.get("user"))
        except Exception as exc:
            self.builder.count_failure("reading the request's user", exc)
            return None, None

    @staticmethod
    def _route(scope: Scope, root_path: str) -> str | None:
        """The matched route's path template, after the prefix of the mounts it is in."""
        route = scope.get("route")
        template = getattr(route, "path", None)
        if not isinstance(template, str) or hasattr(route, "routes"):
            return None  # no route, or only the Mount a route is still to be matched in
        mounted = scope.get("root_path") or ""
        if isinstance(mounted, str) and mounted.startswith(root_path):
            return mounted[len(root_path) :] + template
        return template

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
