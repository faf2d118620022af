"""Segment: each event becomes a ``track`` message, posted by the calling thread.

Needs the ``segment`` extra (``pip install 'eventrouter[segment]'``).

The backend is synchronous: ``send_batch(events)`` builds the messages with the
segment-analytics-python client's public ``track`` (its checks, its 32 KB limit, its message
format) on a client made with ``send=False`` and ``sync_mode=True`` (so it starts no thread,
queue consumer or exit hook), and posts them to Segment's batch API in the caller's thread
over an HTTP session of this process's own. Queueing, batching, retrying and dead-lettering
belong to the :class:`~eventrouter.backends.buffered.BufferedBackend` a YAML tree puts in front
of every ``segment`` node.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from eventrouter import _fork
from eventrouter.backends._segment_messages import to_segment_call
from eventrouter.config.quiet import quiet_third_party_loggers
from eventrouter.errors import (
    DeliveryError,
    MissingExtraError,
    OptionError,
    OptionTypeError,
    PartialDeliveryError,
)
from eventrouter.typing import Event

try:
    import requests
    from segment.analytics import Client

    from eventrouter.backends._segment_http import chunks, post_batch
except ImportError:  # pragma: no cover - exercised only without the extra
    _HAVE_SEGMENT = False
else:
    _HAVE_SEGMENT = True

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_TIMEOUT",
    "MAX_BATCH_BYTES",
    "ErrorHandler",
    "SegmentBackend",
    "to_segment_call",
]

log = logging.getLogger(__name__)

DEFAULT_HOST = "https://api.segment.io"
"""Segment's API endpoint, used when neither the options nor the ``analytics`` module set one."""

DEFAULT_TIMEOUT = 10.0
"""Seconds to wait for Segment to accept the connection, and then for each read."""

MAX_BATCH_BYTES = 475_000
"""The most bytes of messages posted in one request (Segment takes up to 500 KB, and the
client keeps the same margin); a larger batch is posted in several requests."""

ErrorHandler = Callable[[BaseException, list[dict[str, Any]]], None]
"""``on_error(exc, messages)``, as segment-analytics-python calls it: a post failed."""

_ANALYTICS_MODULES = ("analytics", "segment.analytics")
"""Where event-tracking-era code sets ``write_key``, ``host``, ``debug``, ``on_error``,
``send``, ``gzip``, ``timeout`` and ``proxies``: the ``analytics`` module of analytics-python,
or segment-analytics-python's."""

_MODULE_SETTINGS = ("host", "debug", "on_error", "send", "gzip", "timeout", "proxies")
"""The ``analytics`` module's settings a backend follows, besides ``write_key``, for the
options it was not given."""


class _Settings:
    """What the backend posts with, resolved at first use."""

    __slots__ = (
        "builder",
        "gzip",
        "host",
        "on_error",
        "proxies",
        "send",
        "timeout",
        "write_key",
    )

    def __init__(
        self,
        write_key: str,
        host: str,
        on_error: ErrorHandler | None,
        builder: Any,
        *,
        send: bool,
        gzip: bool,
        timeout: float,
        proxies: dict[str, str] | None,
    ) -> None:
        self.write_key = write_key
        self.host = host
        self.on_error = on_error
        self.builder = builder
        self.send = send
        self.gzip = gzip
        self.timeout = timeout
        self.proxies = proxies


def _valid_timeout(value: Any) -> bool:
    return (
        not isinstance(value, bool) and isinstance(value, int | float) and 0 < value < float("inf")
    )


def _valid_proxies(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _analytics_settings() -> dict[str, Any]:
    """``write_key`` and the :data:`_MODULE_SETTINGS` from the first ``analytics`` module
    (already imported) that has a write key; a setting the module lacks is ``None``."""
    for name in _ANALYTICS_MODULES:
        module = sys.modules.get(name)
        if not isinstance(module, ModuleType):
            continue
        key = getattr(module, "write_key", None)
        if isinstance(key, str) and key:
            settings = {setting: getattr(module, setting, None) for setting in _MODULE_SETTINGS}
            settings["write_key"] = key
            return settings
    return {}


class SegmentBackend:
    """Send each event to Segment as a ``track`` message, posting batches synchronously.

    The mapping follows openedx event-tracking: ``userId`` is ``context.user_id`` and events
    without one are skipped (counted, the reason logged once); no ``anonymousId`` is sent
    unless ``anonymous`` is set. ``event`` is the event's name, ``properties`` the whole event,
    ``messageId`` its ``id`` (Segment drops a message id it has seen, so re-sending is safe),
    ``timestamp`` its timestamp. ``context.ip``, ``context.agent`` (as ``userAgent``) and
    ``context.client_id`` (as Google Analytics' ``clientId``) go into Segment's context, with
    ``page`` built from ``context.page`` (or ``https://{context.host}{context.path}``),
    ``context.path`` and ``context.referer``.

    Nothing runs in the background: :meth:`send_batch` posts in the calling thread (in a YAML
    tree, the buffered node's worker) and raises :class:`~eventrouter.DeliveryError` when
    Segment did not take the batch, retryable for timeouts, connection errors, 408, 429 (with
    its ``Retry-After`` as ``retry_after``) and 5xx, permanent for other answers. Each process
    posts over its own HTTP session, so a forked child never writes into its parent's
    connections.

    ``write_key``, ``host``, ``debug``, ``on_error``, ``send``, ``gzip``, ``timeout`` and
    ``proxies`` that are not given are read, at the first send, from the ``analytics`` module
    the application configures (analytics-python's ``analytics`` or ``segment.analytics``,
    whichever has a write key), as event-tracking did. With ``send`` false (a site's
    ``analytics.send = False`` in development or tests) messages are built and checked but
    never posted; they count as ``skipped`` and the reason is logged once.

    Args:
        write_key: the Segment source's write key.
        host: the API endpoint (default :data:`DEFAULT_HOST`).
        anonymous: also send events without a user, keyed by ``context.anonymous_id`` or
            ``context.session``, and give users' events that ``anonymousId`` too.
        timeout: seconds to wait for a connection, and then for each read of the answer
            (default :data:`DEFAULT_TIMEOUT`).
        gzip: compress request bodies (default off).
        debug: log the client's messages at DEBUG on the ``segment`` logger.
        on_error: ``on_error(exc, messages)``, called with the messages of each post that
            failed (a buffered node may retry them afterwards); what it raises is logged.
        send: post the messages (default on); false builds them and posts nothing.
        proxies: ``{"https": "http://proxy:3128"}``: the proxies requests posts through.

    Raises:
        MissingExtraError: segment-analytics-python is not installed.
        OptionError: an option has the wrong type or value.
    """

    buffered_by_default = True
    """A YAML node of this class, or of a subclass, is buffered unless it says
    ``buffered: false``."""

    def __init__(
        self,
        *,
        write_key: str | None = None,
        host: str | None = None,
        anonymous: bool = False,
        timeout: float | None = None,
        gzip: bool | None = None,
        debug: bool | None = None,
        on_error: ErrorHandler | None = None,
        send: bool | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        if not _HAVE_SEGMENT:
            raise MissingExtraError("the Segment backend", "segment", "segment-analytics-python")
        quiet_third_party_loggers()  # their DEBUG lines can quote secrets and events
        if write_key is not None and (not isinstance(write_key, str) or not write_key):
            raise OptionError(
                "write_key",
                "write_key must be the Segment source's key, a non-empty string; or leave it "
                "out to use analytics.write_key",
            )
        if host is not None and (not isinstance(host, str) or not host):
            raise OptionError("host", "host must be a URL such as 'https://api.segment.io'")
        if timeout is not None and not _valid_timeout(timeout):
            raise OptionError(
                "timeout",
                f"timeout must be a positive number of seconds, not {type(timeout).__name__}",
            )
        if on_error is not None and not callable(on_error):
            raise OptionTypeError("on_error", "on_error must be a callable on_error(exc, messages)")
        if proxies is not None and not _valid_proxies(proxies):
            raise OptionError(
                "proxies",
                "proxies must map URL schemes to proxy URLs, such as "
                "{'https': 'http://proxy:3128'}",
            )
        self.write_key = write_key
        self.host = host
        self.anonymous = bool(anonymous)
        self.timeout = None if timeout is None else float(timeout)
        self.gzip = None if gzip is None else bool(gzip)
        self.debug = debug
        self.on_error = on_error
        self.send_messages = None if send is None else bool(send)
        self.proxies = None if proxies is None else dict(proxies)
        self._settings: _Settings | None = None
        self._sessions: _fork.PerProcess[requests.Session] = _fork.PerProcess(requests.Session)
        self._lock = threading.Lock()
        self._counters = {"skipped": 0, "sent": 0, "rejected": 0, "failed": 0}
        self._reasons_logged: set[str] = set()
        _fork.register(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    # -- settings ---------------------------------------------------------------------------

    def _resolve(self) -> _Settings:
        """The settings, from the options and else the ``analytics`` module (first use)."""
        settings = self._settings
        if settings is not None:
            return settings
        with self._lock:
            if self._settings is None:
                module = _analytics_settings()
                write_key = self.write_key or module.get("write_key")
                if not write_key:
                    raise DeliveryError(
                        "Segment backend: no write key: give the node a `write_key` option, or "
                        "set analytics.write_key before the first event",
                        retryable=False,
                    )
                host = self.host or module.get("host") or DEFAULT_HOST
                debug = self.debug if self.debug is not None else bool(module.get("debug"))
                on_error = self.on_error if self.on_error is not None else module.get("on_error")
                # send=False: the client only builds and checks messages; sync_mode=True: it
                # starts no consumer thread and registers no exit hook.
                builder = Client(write_key, host=host, debug=debug, send=False, sync_mode=True)
                self._settings = _Settings(
                    write_key,
                    host,
                    on_error if callable(on_error) else None,
                    builder,
                    **self._delivery_settings(module),
                )
            return self._settings

    def _delivery_settings(self, module: Mapping[str, Any]) -> dict[str, Any]:
        """``send``, ``gzip``, ``timeout`` and ``proxies``: each from the options when given,
        else from the ``analytics`` module when it holds a usable value, else the default."""
        send = self.send_messages
        if send is None:
            send = module.get("send") is not False
        gzip = self.gzip
        if gzip is None:
            gzip = module.get("gzip") is True
        timeout = self.timeout
        if timeout is None:
            module_timeout: Any = module.get("timeout")
            timeout = float(module_timeout) if _valid_timeout(module_timeout) else DEFAULT_TIMEOUT
        proxies = self.proxies
        if proxies is None:
            module_proxies: Any = module.get("proxies")
            proxies = dict(module_proxies) if _valid_proxies(module_proxies) else None
        return {"send": send, "gzip": gzip, "timeout": timeout, "proxies": proxies}

    # -- delivery ---------------------------------------------------------------------------

    def send(self, event: Event) -> None:
        """Send ``event`` (or skip it, counted, when it has no user): a batch of one.

        Raises:
            DeliveryError: Segment did not take it (see :meth:`send_batch`).
        """
        self.send_batch((event,))

    def send_batch(self, events: Sequence[Event]) -> None:
        """Post ``events`` to Segment's batch API, in as few requests as its size limit allows.

        Events without a user (unless ``anonymous``) are skipped and count as done.

        Raises:
            PartialDeliveryError: some events were not delivered and every other one was:
                ``failed`` lists their positions. Permanent for messages Segment would
                refuse (over 32 KB); retryable when a later request of the batch failed.
            DeliveryError: nothing was delivered: retryable for timeouts, connection
                errors, 408, 429 (``retry_after`` from its ``Retry-After``) and 5xx,
                permanent for other answers and for a missing write key.
        """
        settings = self._resolve()
        messages: list[dict[str, Any]] = []
        positions: list[int] = []
        invalid: list[int] = []
        for position, event in enumerate(events):
            call = to_segment_call(event, anonymous=self.anonymous)
            if isinstance(call, str):
                self._skip(call)
                continue
            try:
                _queued, message = settings.builder.track(**call)
            except (RuntimeError, AssertionError):
                # Over the 32 KB limit, or an id of the wrong type. The client's message
                # repeats the event's data: neither chain nor log it.
                invalid.append(position)
                continue
            messages.append(message)
            positions.append(position)
        if messages and not settings.send:
            self._skip(
                "analytics.send is False (or the node's `send` option): messages are built "
                "but not posted",
                len(messages),
            )
            messages, positions = [], []
        delivered = 0
        for start, end, encoded in chunks(messages, MAX_BATCH_BYTES):
            try:
                self._post(settings, messages[start:end], encoded)
            except DeliveryError as exc:
                self._count("failed", len(messages) - start)
                if not delivered and not invalid:
                    raise
                raise PartialDeliveryError(
                    f"Segment backend: {len(messages) - start + len(invalid)} of {len(events)} "
                    f"event(s) not delivered ({exc})",
                    failed=invalid + positions[start:],
                    retryable=exc.retryable,
                    retry_after=exc.retry_after,
                ) from exc
            delivered += end - start
            self._count("sent", end - start)
        if invalid:
            self._count("rejected", len(invalid))
            raise PartialDeliveryError(
                f"Segment backend: {len(invalid)} of {len(events)} event(s) refused: over "
                f"Segment's 32 KB message limit, or ids of the wrong type",
                failed=invalid,
                retryable=False,
            )

    def _post(self, settings: _Settings, batch: list[dict[str, Any]], encoded: list[str]) -> None:
        """One request to Segment with ``batch`` (``encoded``: the same messages as JSON);
        ``on_error`` hears of a failure before it is raised."""
        try:
            post_batch(
                self._sessions.get(),
                encoded,
                write_key=settings.write_key,
                host=settings.host,
                gzip=settings.gzip,
                timeout=settings.timeout,
                proxies=settings.proxies,
            )
        except DeliveryError as error:
            self._report(settings, error, batch)
            raise

    def _report(self, settings: _Settings, exc: DeliveryError, batch: list[dict[str, Any]]) -> None:
        if settings.on_error is None:
            return
        try:
            settings.on_error(exc, batch)
        except Exception as handler_exc:
            self._log_once(
                f"on_error raised {type(handler_exc).__name__}",
                "Segment backend: on_error raised %s (logged once)",
                type(handler_exc).__name__,
            )

    def _skip(self, reason: str, n: int = 1) -> None:
        self._count("skipped", n)
        self._log_once(
            reason,
            "Segment backend: skipping events: %s (logged once; see stats()['skipped'])",
            reason,
            level=logging.WARNING,
        )

    def _log_once(self, key: str, message: str, *args: Any, level: int = logging.ERROR) -> None:
        with self._lock:
            first = key not in self._reasons_logged
            self._reasons_logged.add(key)
        if first:
            log.log(level, message, *args)

    def _count(self, counter: str, n: int) -> None:
        with self._lock:
            self._counters[counter] += n

    # -- hooks ------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Nothing to do: every send has finished when it returns."""

    def close(self) -> None:
        """Close this process's HTTP session (a later send opens a new one)."""
        session = self._sessions.take()
        if session is not None:
            session.close()

    def stats(self) -> dict[str, int]:
        """Counters: ``skipped`` (no user to attribute, or ``send`` off), ``sent`` (messages
        Segment took), ``rejected`` (messages refused before posting: over 32 KB), ``failed``
        (messages in posts that failed; a buffered node may have sent them again since)."""
        with self._lock:
            return dict(self._counters)
