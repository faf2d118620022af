"""Flask: ``init_app(app)`` gives every event emitted while a request is served its context.

::

    app = Flask(__name__)
    app.config["EVENTROUTER_CONFIG"] = "routing.yaml"
    init_app(app)

Options are read from ``app.config``: ``EVENTROUTER_IGNORE_PATHS``,
``EVENTROUTER_TRUSTED_PROXIES``, ``EVENTROUTER_CONTEXT_HOOK`` (a callable given
``flask.request``), ``EVENTROUTER_MAX_VALUE_LENGTH``; the session HMAC is keyed with
``SECRET_KEY`` and covers the session cookie. ``route`` is the URL rule; the user is
Flask-Login's ``current_user`` when Flask-Login is installed (or add ``user_id`` with the hook).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from eventrouter.errors import MissingExtraError
from eventrouter.integrations._request import (
    CONTEXT_NAME,
    DEFAULT_MAX_LENGTH,
    RequestContextBuilder,
    TrackerRef,
    stream_in_context,
)
from eventrouter.tracker import Tracker, register_tracker

try:
    import flask
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtraError("eventrouter.integrations.flask", "flask", "flask") from exc

__all__ = ["EXTENSION", "init_app"]

EXTENSION = "eventrouter"
"""The key of ``app.extensions`` that holds the app's :class:`Tracker`."""

_SCOPE = "_eventrouter_scope"
_ENTERED = "_eventrouter_entered"


try:  # Flask-Login is optional: look for it once, not per request
    from flask_login import current_user as _login_user  # type: ignore[import-not-found]
except ImportError:
    _login_user = None


def _current_user() -> tuple[Any, str | None]:
    current_user = _login_user
    if current_user is None or not getattr(current_user, "is_authenticated", False):
        return None, None
    get_id = getattr(current_user, "get_id", None)
    user_id = get_id() if callable(get_id) else None
    username = getattr(current_user, "username", None)
    return user_id, username if isinstance(username, str) else None


def _context(builder: RequestContextBuilder, request: Any, app: flask.Flask) -> dict[str, Any]:
    """The request context of the current Flask request."""
    try:
        user_id, username = _current_user()
    except Exception as exc:  # the user store is down: the rest of the context stays
        builder.count_failure("loading the user", exc)
        user_id = username = None
    environ = request.environ
    rule = request.url_rule
    session_key = None
    if "HTTP_COOKIE" in environ:  # Flask's session reads (and caches) them anyway
        session_key = request.cookies.get(app.config.get("SESSION_COOKIE_NAME", "session"))
    context = builder.build(
        lambda header: environ.get(header.environ),
        path=request.path,
        method=request.method,
        peer=environ.get("REMOTE_ADDR"),
        user_id=user_id,
        username=username,
        session_key=session_key,
        route=rule.rule if rule is not None else None,
    )
    context.update(builder.extra(request))
    return context


def init_app(
    app: flask.Flask,
    config: str | os.PathLike[str] | dict[str, Any] | None = None,
    tracker: Tracker | None = None,
) -> Tracker | None:
    """Make ``app`` enter each request's context on the tracker.

    Args:
        app: the Flask application.
        config: a routing configuration (YAML path or mapping) to build the tracker from;
            defaults to ``app.config["EVENTROUTER_CONFIG"]``. The tracker built is also
            registered as the default one, so ``eventrouter.tracker.emit`` uses it.
        tracker: an already built tracker instead (not registered). With neither, the
            default registered tracker is used, looked up per request.

    Returns:
        The tracker built or given (also in ``app.extensions["eventrouter"]``), or ``None``
        when the default one is looked up per request.

    Raises:
        ConfigError: the configuration is invalid.
        TypeError, ValueError: an ``EVENTROUTER_*`` option is malformed.
    """
    if config is not None and tracker is not None:
        raise TypeError("give init_app either config or tracker, not both")
    settings = app.config
    if tracker is None:
        source = config if config is not None else settings.get("EVENTROUTER_CONFIG")
        if source is not None:
            from eventrouter.config import load

            tracker = load(source)
            register_tracker(tracker)
    hook = settings.get("EVENTROUTER_CONTEXT_HOOK")
    if isinstance(hook, str):
        from werkzeug.utils import import_string

        hook = import_string(hook)
    builder = RequestContextBuilder(
        ignore_paths=settings.get("EVENTROUTER_IGNORE_PATHS", ()),
        trusted_proxies=settings.get("EVENTROUTER_TRUSTED_PROXIES", ()),
        secret=settings.get("SECRET_KEY") or None,
        context_hook=hook,
        max_length=settings.get("EVENTROUTER_MAX_VALUE_LENGTH", DEFAULT_MAX_LENGTH),
    )
    app.extensions[EXTENSION] = tracker
    ref = TrackerRef(
        tracker if tracker is not None else "default",
        hint='set app.config["EVENTROUTER_CONFIG"] before init_app(app), or register one '
        "at start-up with eventrouter.tracker.register_tracker",
    )

    def enter() -> None:
        request = flask.request._get_current_object()  # type: ignore[attr-defined]
        target = ref.get()
        if target is None:
            return
        if builder.ignored(request.path):
            scope: Callable[[], AbstractContextManager[Any]] = target.muted
        else:
            built = builder.guarded(lambda: _context(builder, request, app))
            if built is None:
                return
            context = built

            def scope() -> AbstractContextManager[Any]:
                return target.context(CONTEXT_NAME, context)

        manager = scope()
        manager.__enter__()
        setattr(flask.g, _SCOPE, scope)
        setattr(flask.g, _ENTERED, manager)

    def stream(response: flask.Response) -> flask.Response:
        scope = getattr(flask.g, _SCOPE, None)
        if scope is not None and response.is_streamed:
            response.response = stream_in_context(response.response, scope)
        return response

    def leave(error: BaseException | None) -> None:
        manager: AbstractContextManager[Any] | None = flask.g.pop(_ENTERED, None)
        flask.g.pop(_SCOPE, None)
        if manager is not None:
            manager.__exit__(None, None, None)

    app.before_request_funcs.setdefault(None, []).insert(0, enter)
    app.after_request(stream)
    app.teardown_request(leave)
    return tracker
