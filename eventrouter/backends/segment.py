"""Segment: each event becomes a ``track`` call, sent by segment-analytics-python's client.

Needs the ``segment`` extra (``pip install 'eventrouter[segment]'``). Since 0.1.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlunsplit

from eventrouter.encoding import dumps
from eventrouter.errors import DeliveryError, MissingExtraError
from eventrouter.typing import Event

try:
    from segment.analytics import Client
except ImportError:  # pragma: no cover - exercised only without the extra
    _HAVE_SEGMENT = False
else:
    _HAVE_SEGMENT = True

__all__ = ["CLOSE_TIMEOUT", "FailureHandler", "SegmentBackend", "to_segment_call"]

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 30.0
"""How long ``close()`` waits for the client to deliver what is queued. Since 0.1."""

FailureHandler = Callable[[list[Event], BaseException], None]
"""``on_failure(events, exc)``: called with the events of a batch the client gave up on."""


def _timestamp(value: Any) -> _dt.datetime | None:
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=_dt.UTC)
    if isinstance(value, str):
        try:
            parsed = _dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=_dt.UTC)
    return None


def _segment_context(context: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    client_id = context.get("client_id")
    if client_id is not None:
        out["Google Analytics"] = {"clientId": client_id}
    ip = context.get("ip")
    if ip is not None:
        out["ip"] = ip
    agent = context.get("agent")
    if agent is not None:
        out["userAgent"] = agent
    path = context.get("path")
    referer = context.get("referer")
    page = context.get("page")
    if path and not page:
        host = context.get("host")
        if host:
            page = urlunsplit(("https", str(host), str(path), "", ""))
    if path is not None or referer is not None or page is not None:
        page_info: dict[str, Any] = {}
        if path is not None:
            page_info["path"] = path
        if referer is not None:
            page_info["referrer"] = referer
        if page is not None:
            page_info["url"] = page
        out["page"] = page_info
    return out


def _id_str(value: Any) -> str | None:
    """An id as the string Segment gets; ``None`` (and ``""``) mean there is none."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else dumps(value).strip('"')


def to_segment_call(event: Event) -> dict[str, Any] | str:
    """Map ``event`` to the keyword arguments of ``Client.track``, or say why it cannot be.

    Returns the arguments (``user_id``, ``anonymous_id``, ``event``, ``properties``,
    ``context``, ``timestamp``, ``message_id``) or, for an event that must be skipped, the
    reason as a string. ``properties`` is the whole event as JSON data
    (:mod:`eventrouter.encoding`).

    Args:
        event: the event envelope (not modified).

    Since 0.1.
    """
    name = event.get("name")
    if not isinstance(name, str) or not name:
        return "the event has no name"
    context = event.get("context")
    if not isinstance(context, Mapping):
        context = {}
    user_id = _id_str(context.get("user_id"))
    anonymous_id = _id_str(context.get("anonymous_id")) or _id_str(context.get("session"))
    if not user_id and not anonymous_id:
        return "the event has no context.user_id, context.anonymous_id or context.session"
    message_id = event.get("id")
    properties = json.loads(dumps(event))
    json_context = properties.get("context")
    return {
        "user_id": user_id or None,
        "anonymous_id": anonymous_id or None,
        "event": name,
        "properties": properties,
        "context": _segment_context(json_context if isinstance(json_context, dict) else {}),
        "timestamp": _timestamp(event.get("timestamp")),
        "message_id": None if message_id is None else str(message_id),
    }


class SegmentBackend:
    """Send each event to Segment as a ``track`` call, through a client of its own.

    The mapping follows openedx event-tracking: ``userId`` is ``context.user_id``; without
    one, ``anonymousId`` is ``context.anonymous_id`` or ``context.session``; events with
    neither are skipped (counted, the reason logged once). ``event`` is the event's name,
    ``properties`` the whole event, ``messageId`` its ``id``, ``timestamp`` its timestamp.
    ``context.ip``, ``context.agent`` (as ``userAgent``) and ``context.client_id`` (as Google
    Analytics' ``clientId``) go into Segment's context, with ``page`` built from
    ``context.page`` (or ``https://{context.host}{context.path}``), ``context.path`` and
    ``context.referer``.

    The client batches and retries in its own thread. Batches it gives up on are counted
    (``failed``), logged with their events' names and ids, and passed to ``on_failure``.

    Args:
        write_key: the Segment source's write key (required).
        host: the API endpoint (default ``https://api.segment.io``).
        upload_size: the maximum number of events per batch.
        upload_interval: the most seconds an event waits for its batch to fill.
        max_queue_size: the client's queue bound; a send into a full queue raises
            :class:`~eventrouter.DeliveryError`.
        max_retries: how many times the client retries a failing batch.
        timeout: the HTTP timeout in seconds.
        gzip: compress request bodies.
        thread: the number of upload threads.
        sync_mode: post each event in the calling thread (no batching).
        max_total_backoff_duration: give up on a batch after retrying for this long (seconds).
        on_failure: ``on_failure(events, exc)``, called (in the client's thread) with the
            events of each batch the client gave up on, as the JSON data it held.

    Raises:
        MissingExtraError: segment-analytics-python is not installed.

    Since 0.1.
    """

    def __init__(
        self,
        *,
        write_key: str,
        host: str | None = None,
        upload_size: int = 100,
        upload_interval: float = 0.5,
        max_queue_size: int = 10000,
        max_retries: int = 10,
        timeout: float = 15,
        gzip: bool = False,
        thread: int = 1,
        sync_mode: bool = False,
        max_total_backoff_duration: float = 43200,
        on_failure: FailureHandler | None = None,
    ) -> None:
        if not _HAVE_SEGMENT:
            raise MissingExtraError("the Segment backend", "segment", "segment-analytics-python")
        if not isinstance(write_key, str) or not write_key:
            raise ValueError("write_key must be a non-empty string: the Segment source's key")
        self.write_key = write_key
        self.host = host
        self.on_failure = on_failure
        self._client_options: dict[str, Any] = {
            "upload_size": upload_size,
            "upload_interval": upload_interval,
            "max_queue_size": max_queue_size,
            "max_retries": max_retries,
            "timeout": timeout,
            "gzip": gzip,
            "thread": thread,
            "sync_mode": sync_mode,
            "max_total_backoff_duration": max_total_backoff_duration,
        }
        self._lock = threading.Lock()
        self._client: Any = None
        self._pid = 0
        self._skipped = 0
        self._failed = 0
        self._reasons_logged: set[str] = set()

    # -- the client -------------------------------------------------------------------------

    def _get_client(self) -> Any:
        client = self._client
        if client is not None and self._pid == os.getpid():
            return client
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = Client(
                    write_key=self.write_key,
                    host=self.host,
                    on_error=self._on_error,
                    **self._client_options,
                )
                self._pid = os.getpid()
            return self._client

    def _on_error(self, exc: BaseException, batch: list[dict[str, Any]]) -> None:
        """The client gave up on ``batch`` (runs in the client's thread)."""
        events: list[Event] = []
        for message in batch:
            properties = message.get("properties") if isinstance(message, dict) else None
            events.append(properties if isinstance(properties, dict) else {})
        self._give_up(events, exc)

    def _give_up(self, events: list[Event], exc: BaseException) -> None:
        with self._lock:
            self._failed += len(events)
        log.error(
            "Segment backend: %d event(s) not delivered (%s): %s",
            len(events),
            type(exc).__name__,
            ", ".join(f"name={e.get('name')!r} id={e.get('id')!r}" for e in events),
        )
        if self.on_failure is not None:
            try:
                self.on_failure(events, exc)
            except Exception as handler_exc:
                log.error(
                    "Segment backend: on_failure raised %s; %d event(s) are lost",
                    type(handler_exc).__name__,
                    len(events),
                )

    # -- delivery ---------------------------------------------------------------------------

    def send(self, event: Event) -> None:
        """Queue ``event`` for Segment (or skip it, counted, when it has no user).

        Raises:
            DeliveryError: the client's queue is full, or Segment would reject the message
                (over its 32 KB limit, an id of the wrong type).
        """
        call = to_segment_call(event)
        if isinstance(call, str):
            self._skip(call)
            return
        client = self._get_client()
        try:
            queued, _ = client.track(**call)
        except RuntimeError:
            # The client's message repeats the event's data: do not chain it.
            raise DeliveryError(
                "Segment backend: the message is over Segment's 32 KB limit", retryable=False
            ) from None
        except AssertionError as exc:
            raise DeliveryError(
                f"Segment backend: the client rejected the message ({exc})", retryable=False
            ) from exc
        except Exception as exc:  # sync_mode: the HTTP post failed
            status = getattr(exc, "status", None)
            retryable = not (isinstance(status, int) and 400 <= status < 500)
            raise DeliveryError(
                f"Segment backend: posting failed ({type(exc).__name__})", retryable=retryable
            ) from exc
        if not queued:
            raise DeliveryError("Segment backend: the client's queue is full", retryable=True)

    def _skip(self, reason: str) -> None:
        with self._lock:
            self._skipped += 1
            first = reason not in self._reasons_logged
            self._reasons_logged.add(reason)
        if first:
            log.warning(
                "Segment backend: skipping events: %s (logged once; see stats()['skipped'])",
                reason,
            )

    # -- hooks ------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the client has sent (or given up on) every queued event.

        Args:
            timeout: wait at most this many seconds; ``None`` waits until done.
        """
        client = self._client
        if client is None:
            return
        q: queue.Queue[Any] = client.queue
        with q.all_tasks_done:
            q.all_tasks_done.wait_for(lambda: q.unfinished_tasks == 0, timeout)

    def close(self) -> None:
        """Flush (for at most :data:`CLOSE_TIMEOUT` seconds) and stop the client's threads.

        Events still queued after that are counted as failed and handed to ``on_failure``.
        """
        with self._lock:
            client, self._client = self._client, None
        if client is None:
            return
        q: queue.Queue[Any] = client.queue
        with q.all_tasks_done:
            q.all_tasks_done.wait_for(lambda: q.unfinished_tasks == 0, CLOSE_TIMEOUT)
        client.join()
        left: list[dict[str, Any]] = []
        while True:
            try:
                left.append(q.get_nowait())
            except queue.Empty:
                break
        if left:
            self._on_error(DeliveryError("the Segment backend was closed first"), left)

    def stats(self) -> dict[str, int]:
        """Counters: ``skipped`` (no user to attribute), ``failed`` (given up by the client)."""
        with self._lock:
            return {"skipped": self._skipped, "failed": self._failed}
