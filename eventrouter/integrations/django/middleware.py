"""``TrackingContextMiddleware``: every event emitted while a request is served carries its
context, in sync and async views alike."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase

from eventrouter.integrations._request import (
    CONTEXT_NAME,
    Header,
    RequestContextBuilder,
    TrackerRef,
    astream_in_context,
    stream_in_context,
)
from eventrouter.integrations.django import _settings
from eventrouter.tracker import Tracker

__all__ = ["VIEW_CONTEXT_NAME", "TrackingContextMiddleware"]

VIEW_CONTEXT_NAME = "request.view"
"""The name the view's own context (its ``route``) is entered under, inside the request's."""
_STATE = "_eventrouter_tracker"


class TrackingContextMiddleware:
    """Enters the request context (see :mod:`eventrouter.integrations._request`) around the
    response, and around each chunk of a streamed one.

    Put it after ``AuthenticationMiddleware`` so the user is known. Options come from
    settings: ``EVENTROUTER_IGNORE_PATHS``, ``EVENTROUTER_TRUSTED_PROXIES``,
    ``EVENTROUTER_CONTEXT_HOOK`` (called with the request once its URL is resolved, so
    ``request.resolver_match.kwargs`` is there), ``EVENTROUTER_MAX_VALUE_LENGTH``; the session
    HMAC is keyed with ``SECRET_KEY``. ``route`` is the URL pattern of the view.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.builder: RequestContextBuilder = _settings.build_builder()
        self.tracker_name = _settings.tracker_name()
        self._tracker = TrackerRef(
            self.tracker_name,
            hint="set EVENTROUTER_CONFIG (or EVENT_TRACKING_BACKENDS) and add "
            '"eventrouter.integrations.django" to INSTALLED_APPS, or register one at start-up',
        )
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
            self.process_view: Callable[..., Any] = self._aprocess_view
        else:
            self.process_view = self._process_view

    # -- helpers ------------------------------------------------------------------------------

    def _user(self, user: Any) -> tuple[Any, str | None]:
        """``(user_id, username)``; ``(None, None)`` for an anonymous user and when loading
        the user fails (counted, logged by type only): the rest of the context stays."""
        try:
            if user is None or not getattr(user, "is_authenticated", False):
                return None, None
            get_username = getattr(user, "get_username", None)
            return getattr(user, "pk", None), get_username() if callable(get_username) else None
        except Exception as exc:
            self.builder.count_failure("loading the user", exc)
            return None, None

    @staticmethod
    def _host(request: HttpRequest) -> str | None:
        """The host Django validated against ``ALLOWED_HOSTS``; ``None`` when it refused it
        (the request then fails with 400 on its own)."""
        try:
            host: str = request.get_host()
        except DisallowedHost:
            return None
        return host

    def _context(self, request: HttpRequest, user: Any) -> dict[str, Any]:
        meta = request.META
        user_id, username = self._user(user)
        session = getattr(request, "session", None)
        host = self._host(request)

        def header(wanted: Header) -> str | None:
            return host if wanted.field == "host" else meta.get(wanted.environ)

        return self.builder.build(
            header,
            path=request.path,
            method=request.method or "",
            peer=meta.get("REMOTE_ADDR"),
            user_id=user_id,
            username=username,
            session_key=getattr(session, "session_key", None),
        )

    def _scope(
        self, request: HttpRequest, user: Any
    ) -> tuple[Tracker | None, Callable[[], AbstractContextManager[Any]] | None]:
        tracker = self._tracker.get()
        if tracker is None:
            return None, None
        if self.builder.ignored(request.path_info):
            return None, tracker.muted
        context = self.builder.guarded(lambda: self._context(request, user))
        if context is None:
            return None, None
        setattr(request, _STATE, (tracker, context))
        # A streamed body is re-entered later: it reads `context` then, with the view's keys.
        return tracker, lambda: _entered(tracker, context)

    def _view_context(self, request: HttpRequest) -> dict[str, Any]:
        match = getattr(request, "resolver_match", None)
        values: dict[str, Any] = {"route": self.builder._bound(getattr(match, "route", None))}
        values.update(self.builder.extra(request))
        return values

    # -- the middleware ---------------------------------------------------------------------

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        _, scope = self._scope(request, getattr(request, "user", None))
        if scope is None:
            return self.get_response(request)
        with scope():
            response = self.get_response(request)
        return _stream(response, scope)

    async def __acall__(self, request: HttpRequest) -> Any:
        auser = getattr(request, "auser", None)
        try:
            user = await auser() if auser is not None else getattr(request, "user", None)
        except Exception as exc:  # the request goes on; the view meets it if it matters
            self.builder.count_failure("loading the user", exc)
            user = None
        _, scope = self._scope(request, user)
        if scope is None:
            return await self.get_response(request)
        with scope():
            response = await self.get_response(request)
        return _stream(response, scope)

    def _process_view(self, request: HttpRequest, *args: Any) -> None:
        state: tuple[Tracker, dict[str, Any]] | None = getattr(request, _STATE, None)
        if state is not None:
            tracker, context = state
            values = self.builder.guarded(lambda: self._view_context(request))
            if values is None:
                return
            context.update(values)  # for the streamed body, entered after the view
            # Entered on top of the request's context, and left with it (see `_entered`).
            tracker.enter_context(VIEW_CONTEXT_NAME, values)

    async def _aprocess_view(self, request: HttpRequest, *args: Any) -> None:
        self._process_view(request)


@contextmanager
def _entered(tracker: Tracker, context: dict[str, Any]) -> Iterator[None]:
    """The request's context for the block, and the view's keys (entered by
    ``process_view`` under their own name) left with it."""
    with tracker.context(CONTEXT_NAME, context):
        try:
            yield
        finally:
            with suppress(KeyError):  # the view never ran, or ran in another thread
                tracker.exit_context(VIEW_CONTEXT_NAME)


def _stream(response: Any, scope: Callable[[], AbstractContextManager[Any]]) -> Any:
    """A streamed body is produced after the middleware returned: re-enter around chunks."""
    if isinstance(response, HttpResponseBase) and getattr(response, "streaming", False):
        content = response.streaming_content
        if getattr(response, "is_async", False):
            response.streaming_content = astream_in_context(content, scope)
        else:
            response.streaming_content = stream_in_context(content, scope)
    return response
