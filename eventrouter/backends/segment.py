"""Segment: each event becomes a ``track`` call, sent by segment-analytics-python's client.

Needs the ``segment`` extra (``pip install 'eventrouter[segment]'``). Since 0.1.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlunsplit

from eventrouter import _fork
from eventrouter.deadletter import DeadLetterFile
from eventrouter.encoding import dumps, parse_timestamp, to_jsonable
from eventrouter.errors import DeliveryError, MissingExtraError, OptionError
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
"""How long ``close()`` waits, by default, for the client to deliver what is queued. Since 0.1."""

_JOIN_GRACE = 1.0
"""How long ``close()`` gives the client's threads, after its timeout, to hand back a batch
they hold (they re-queue it when paused during a retry wait, and check every second)."""


def _close_at_exit(ref: weakref.ref[SegmentBackend]) -> None:
    backend = ref()
    if backend is not None:
        backend.close()


FailureHandler = Callable[[list[Event], BaseException], None]
"""``on_failure(events, exc)``: called with the events of a batch the client gave up on."""


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
    properties: dict[str, Any] = to_jsonable(event)
    json_context = properties.get("context")
    return {
        "user_id": user_id or None,
        "anonymous_id": anonymous_id or None,
        "event": name,
        "properties": properties,
        "context": _segment_context(json_context if isinstance(json_context, dict) else {}),
        "timestamp": parse_timestamp(event.get("timestamp")),
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

    The client batches and retries in its own thread. Batches it gives up on, and events
    still queued when the backend is closed, are counted (``failed``), logged with their
    events' names and ids, written to ``dead_letter`` and passed to ``on_failure``. At
    interpreter exit an open backend is closed (waiting at most :data:`CLOSE_TIMEOUT`), so
    queued events are delivered or dead-lettered rather than dropped. In a forked child, the
    client inherited from the parent is left alone: the child gets a client of its own.

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
        dead_letter: a :class:`~eventrouter.deadletter.DeadLetterFile` (or its path) the
            events of those batches are appended to; a YAML tree passes its own.
        name: the backend name written in dead-letter records (default ``"segment"``).

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
        dead_letter: DeadLetterFile | str | os.PathLike[str] | None = None,
        name: str = "segment",
    ) -> None:
        if not _HAVE_SEGMENT:
            raise MissingExtraError("the Segment backend", "segment", "segment-analytics-python")
        if not isinstance(write_key, str) or not write_key:
            raise OptionError(
                "write_key", "write_key must be a non-empty string: the Segment source's key"
            )
        if dead_letter is not None and not isinstance(dead_letter, DeadLetterFile):
            dead_letter = DeadLetterFile(dead_letter)
        self.write_key = write_key
        self.host = host
        self.on_failure = on_failure
        self.dead_letter: DeadLetterFile | None = dead_letter
        self.name = name
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
        self._exit_hook: Callable[[], None] | None = None
        self._skipped = 0
        self._failed = 0
        self._reasons_logged: set[str] = set()
        _fork.register(self)

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
                # Registered after the client's own ``atexit`` join, so it runs first (atexit
                # is last in, first out): that join stops the upload threads and drops the
                # queue. A weak reference, so the hook does not keep the backend alive.
                if self._exit_hook is not None:
                    atexit.unregister(self._exit_hook)
                self._exit_hook = functools.partial(_close_at_exit, weakref.ref(self))
                atexit.register(self._exit_hook)
            return self._client

    def _take_client(self) -> Any:
        """Detach the client; return it only if this process created it."""
        with self._lock:
            client, self._client = self._client, None
            hook, self._exit_hook = self._exit_hook, None
            ours = self._pid == os.getpid()
        if hook is not None:
            atexit.unregister(hook)
        return client if ours else None

    @staticmethod
    def _wait_until_done(client: Any, timeout: float | None) -> bool:
        """Wait until the client's queue has no unfinished events; ``False`` on timeout."""
        q: queue.Queue[Any] = client.queue
        with q.all_tasks_done:
            return q.all_tasks_done.wait_for(
                lambda: q.unfinished_tasks == 0, None if timeout is None else max(timeout, 0.0)
            )

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
        if self.dead_letter is not None and not self.dead_letter.write_many(
            events, backend=self.name, error=exc
        ):
            log.error(
                "Segment backend: could not write %d event(s) to the dead-letter file %s",
                len(events),
                self.dead_letter.path,
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

        In a forked child, the queue inherited from the parent is not waited on.

        Args:
            timeout: wait at most this many seconds; ``None`` waits until done.
        """
        client = self._client
        if client is None or self._pid != os.getpid():
            return
        self._wait_until_done(client, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued, waiting at most ``timeout`` seconds, and stop the client.

        A batch still filling is posted once ``upload_interval`` has passed, so keep that
        below ``timeout``. Events still queued after ``timeout`` are counted as failed,
        written to the dead letter and handed to ``on_failure``. The client's threads get
        about one more second to hand back a batch they hold; one still being posted after
        that is reported by the thread if it fails while the process lives. In a forked
        child, the parent's client is dropped without waiting or reporting anything. Runs at
        interpreter exit for an open backend.

        Args:
            timeout: the most seconds to wait; ``None`` means :data:`CLOSE_TIMEOUT`.
        """
        deadline = time.monotonic() + (CLOSE_TIMEOUT if timeout is None else timeout)
        client = self._take_client()
        if client is None:
            return
        atexit.unregister(client.join)  # the client's own exit hook: this replaces it
        done = self._wait_until_done(client, deadline - time.monotonic())
        consumers = client.consumers or []
        for consumer in consumers:
            consumer.pause()  # each stops after its current batch
        if not done:  # a thread may hold a batch: give it the chance to re-queue it
            for consumer in consumers:
                if consumer.is_alive():
                    consumer.join(max(deadline - time.monotonic(), _JOIN_GRACE))
        q: queue.Queue[Any] = client.queue
        left: list[dict[str, Any]] = []
        while True:
            try:
                left.append(q.get_nowait())
            except queue.Empty:
                break
            q.task_done()
        if left:
            self._on_error(DeliveryError("the Segment backend was closed first"), left)
        held = q.unfinished_tasks
        if held:
            log.warning(
                "Segment backend: closed while the client's thread still posts %d event(s)",
                held,
            )

    def stats(self) -> dict[str, int]:
        """Counters: ``skipped`` (no user to attribute), ``failed`` (accepted, then given up:
        by the client after its retries, or still queued at ``close()``)."""
        with self._lock:
            return {"skipped": self._skipped, "failed": self._failed}
