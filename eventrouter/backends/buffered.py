"""BufferedBackend: deliver from a worker thread, so ``send`` costs the caller microseconds.

Any backend can be wrapped. ``send`` snapshots the event (a copy, sized by the memory it
holds; ``pickle`` for events of other types) into a bounded queue and returns; one worker
thread per node takes batches off the queue (on ``batch_size``, or when the oldest event
has waited ``flush_interval``), hands them to the backend's ``send_batch`` (or ``send``,
one by one), and retries what fails:

* a recoverable failure (:class:`~eventrouter.errors.DeliveryError` with ``retryable``,
  or an ``OSError``) is retried after an exponential backoff with full jitter, at least
  ``retry_after`` seconds when the error carries one, up to ``max_retries`` times and
  within ``retry_deadline`` seconds of the first failure;
* a permanent failure (``retryable=False``, or any other exception) of a batch splits it
  in two halves, tried separately, so one poison event does not take its neighbours down;
  a single event that fails permanently is not retried;
* what is given up on is written to the dead-letter file with the node's path, the error
  type, the number of attempts and the times of the first and last failure.

Every event sent ends counted in exactly one of ``delivered`` (the backend acknowledged
it), ``dead_lettered``, ``dropped`` (``when_full`` said so) or ``lost`` (the dead-letter
file could not be written, or there is none), once the node is closed.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import pickle
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from eventrouter import _fork, lifecycle
from eventrouter import signals as _signals
from eventrouter.deadletter import DeadLetterFile
from eventrouter.encoding import dumps
from eventrouter.errors import (
    DeliveryError,
    OptionError,
    OptionTypeError,
    PartialDeliveryError,
)
from eventrouter.event import IMMUTABLE_TYPES
from eventrouter.typing import Backend, Event

__all__ = ["DELIVERY_BUCKETS", "MAX_NOTICE_EVENTS", "WHEN_FULL", "BufferedBackend", "is_retryable"]

log = logging.getLogger("eventrouter.buffered")

WHEN_FULL: Final = ("dead_letter", "block", "drop_oldest", "drop_newest")
"""What ``send`` may do with an event that does not fit in a full queue."""

LOG_EVERY = 10.0
"""Seconds between two log lines per node and reason about dropped, rejected or lost events
(the events are all counted)."""

DELIVERY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the buckets of ``stats()["delivery_seconds"]``."""

# The fixed reasons a buffered node writes as a dead letter's ``error``, as signal reasons.
_REASONS: Final = {
    "Closed": _signals.Reason.CLOSED,
    "TooLarge": _signals.Reason.TOO_LARGE,
    "QueueFull": _signals.Reason.QUEUE_FULL,
    "Unencodable": _signals.Reason.UNENCODABLE,
    "Undecodable": _signals.Reason.UNDECODABLE,
    "InFlightAtClose": _signals.Reason.IN_FLIGHT_AT_CLOSE,
}

# Signals to send from the worker thread, merged per (signal, keyword arguments): their events.
_NoticeKey = tuple[Any, tuple[tuple[str, Any], ...]]

MAX_NOTICE_EVENTS: Final = 1000
"""The most events a node holds for signals its worker has yet to send; the events beyond
are not signalled, only counted in ``stats()["unannounced"]`` (and logged)."""

_PICKLE = pickle.HIGHEST_PROTOCOL

# One queued event: (payload, size in bytes, time.monotonic() when queued). The payload is
# a copy of the event sized by the memory it holds (events of dicts, lists and immutable
# values: see _snapshot), else the pickled event, else the event itself when it cannot be
# pickled (then it is sized by its JSON encoding).
_Entry = tuple[Any, int, float]

_MAX_DEPTH = 32
"""Deeper events are pickled rather than copied by :func:`_snapshot`."""

_LEAVES = IMMUTABLE_TYPES
_sizeof = sys.getsizeof


class _NotPlain(Exception):
    """Internal: the event holds something :func:`_snapshot` does not copy."""


def _snapshot(value: Any, depth: int) -> tuple[Any, int]:
    """A copy of ``value`` that shares no mutable container with it, and the bytes of memory
    it holds (containers, keys and values, each as ``sys.getsizeof`` counts it).

    Only dicts, lists and immutable values are taken; anything else raises ``_NotPlain``
    (the event is then pickled). A copy costs the caller about what ``pickle.dumps`` did,
    and the worker nothing: it hands the copy to the backend as it is, where unpickling held
    the GIL for each event, stalling the callers' threads once per batch.
    """
    cls = type(value)
    if cls is dict:
        if depth > _MAX_DEPTH:
            raise _NotPlain
        out = value.copy()
        size = _sizeof(out)
        for key, item in value.items():
            size += _sizeof(key)
            if type(item) in _LEAVES:
                size += _sizeof(item)
            else:
                out[key], held = _snapshot(item, depth + 1)
                size += held
        return out, size
    if cls is list:
        if depth > _MAX_DEPTH:
            raise _NotPlain
        items = value.copy()
        size = _sizeof(items)
        for index, item in enumerate(value):
            if type(item) in _LEAVES:
                size += _sizeof(item)
            else:
                items[index], held = _snapshot(item, depth + 1)
                size += held
        return items, size
    if cls in _LEAVES:
        return value, _sizeof(value)
    raise _NotPlain


# What the idle worker waits for (``_waiting``): the first event, or its batch to fill.
_WAITS_FIRST: Final = 1
_WAITS_FILL: Final = 2

# Events to try together: (items, attempts so far, first failure, its time.monotonic()).
_Part = tuple[list["_Item"], int, dt.datetime | None, float]


class _Item:
    """An event taken off the queue, until it is settled (delivered or given up)."""

    __slots__ = ("event", "payload", "settled")

    def __init__(self, payload: Any) -> None:
        self.payload = payload
        self.event: Event | None = None if type(payload) is bytes else payload
        self.settled = False

    def decoded(self) -> Event:
        event = self.event
        if event is None:
            event = self.event = pickle.loads(self.payload)
        return event


class _Throttle:
    """Says when to log again: at most once per ``every`` seconds, with a count of the rest."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.next = 0.0
        self.held = 0

    def due(self) -> int | None:
        """``None`` to stay quiet, else how many were held back since the last line."""
        now = time.monotonic()
        if now < self.next:
            self.held += 1
            return None
        self.next = now + self.every
        held, self.held = self.held, 0
        return held


class _Timings:
    """A histogram of backend call durations, in :data:`DELIVERY_BUCKETS` (cumulative)."""

    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * len(DELIVERY_BUCKETS)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.sum += seconds
        self.count += 1
        for index, bound in enumerate(DELIVERY_BUCKETS):
            if seconds <= bound:
                self.counts[index] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "bounds": list(DELIVERY_BUCKETS),
            "counts": list(self.counts),
            "sum": self.sum,
            "count": self.count,
        }


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_retryable(exc: BaseException) -> bool:
    """Whether a delivery that raised ``exc`` is worth trying again later: a
    :class:`~eventrouter.errors.DeliveryError` says so itself (``retryable``), an ``OSError``
    (connection refused, reset, timed out) is, and any other exception is a permanent failure
    (a bug, or data the destination cannot take). The one rule of buffered nodes and Celery
    workers alike."""
    if isinstance(exc, DeliveryError):
        return exc.retryable
    return isinstance(exc, OSError)


def _label(events: Sequence[Event]) -> str:
    shown = ", ".join(f"{e.get('name')!r} id={e.get('id')!r}" for e in events[:3])
    more = len(events) - 3
    return f"{shown} and {more} more" if more > 0 else shown


class BufferedBackend:
    """Wrap ``backend`` so events are delivered from a worker thread, batched and retried.

    Every outcome is also sent as a signal (:mod:`eventrouter.signals`) with the node's path,
    from the worker thread: ``delivered`` (with ``seconds``, the backend call's duration),
    ``retried``, ``failed`` then ``dead_lettered`` or ``dropped``.

    Args:
        backend: any backend (``send(event)``; ``send_batch(events)`` is used when present).
        max_queue: the most events held (queued, not counting the batch in flight).
        max_bytes: the most bytes held, counting each event's size in memory (its pickled
            size for an event holding values other than dicts, lists and immutable ones).
        batch_size: the most events per ``send_batch`` call; a full batch is sent at once.
        flush_interval: seconds the oldest queued event waits for its batch to fill.
        max_retries: retries after the first attempt, for recoverable failures.
        retry_deadline: seconds after a batch's first failure when it is given up on.
        backoff: ``(base, cap)``: the n-th retry waits a random time between 0 and
            ``min(cap, base * 2 ** (n - 1))`` seconds (or the error's ``retry_after``).
        when_full: what ``send`` does with an event that does not fit: ``"dead_letter"``
            writes it to the dead letter (the default: nothing is dropped silently);
            ``"block"`` waits up to ``block_timeout`` seconds for room, then dead-letters it;
            ``"drop_oldest"`` drops the oldest queued events to make room; ``"drop_newest"``
            drops the event. Drops are counted in ``stats()["dropped"]`` and logged at most
            once per 10 s.
        block_timeout: seconds ``send`` may wait when ``when_full="block"``.
        dead_letter: the :class:`~eventrouter.deadletter.DeadLetterFile` (or its path) where
            given-up events go. Without one they are counted as ``lost`` and logged.

    Raises:
        OptionError: an option is out of range; ``.option`` names it.
        ValueError: ``backend`` has no callable ``send``.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        max_queue: int = 10_000,
        max_bytes: int = 32 * 1024 * 1024,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_retries: int = 8,
        retry_deadline: float = 900.0,
        backoff: Sequence[float] = (0.5, 30.0),
        when_full: str = "dead_letter",
        block_timeout: float = 0.0,
        dead_letter: DeadLetterFile | str | os.PathLike[str] | None = None,
    ) -> None:
        if not callable(getattr(backend, "send", None)):
            raise ValueError(
                f"{type(backend).__name__} has no callable send(event): a buffered node "
                "wraps a backend, anything with a send(event) method"
            )
        for option, value, low in (
            ("max_queue", max_queue, 1),
            ("max_bytes", max_bytes, 1),
            ("batch_size", batch_size, 1),
            ("max_retries", max_retries, 0),
        ):
            if type(value) is not int:
                raise OptionTypeError(option, f"{option} must be an int, not {value!r}")
            if value < low:
                raise OptionError(option, f"{option} must be {low} or more, not {value!r}")
        for option, number in (
            ("flush_interval", flush_interval),
            ("retry_deadline", retry_deadline),
            ("block_timeout", block_timeout),
        ):
            if not _is_number(number):
                raise OptionTypeError(
                    option, f"{option} must be seconds (a number), not {number!r}"
                )
            if number < 0:
                raise OptionError(option, f"{option} must be 0 seconds or more, not {number!r}")
        if (
            isinstance(backoff, str | bytes)
            or not isinstance(backoff, Sequence)
            or len(backoff) != 2
            or not all(_is_number(x) and x >= 0 for x in backoff)
            or backoff[0] > backoff[1]
        ):
            raise OptionError(
                "backoff",
                f"backoff must be [base, cap] seconds with 0 <= base <= cap, not {backoff!r}",
            )
        if when_full not in WHEN_FULL:
            raise OptionError(
                "when_full", f"when_full must be one of {', '.join(WHEN_FULL)}, not {when_full!r}"
            )
        if dead_letter is not None and not isinstance(dead_letter, DeadLetterFile):
            dead_letter = DeadLetterFile(dead_letter)
        self.backend = backend
        self.dead_letter: DeadLetterFile | None = dead_letter
        self.max_queue = max_queue
        self.max_bytes = max_bytes
        self.batch_size = batch_size
        self.flush_interval = float(flush_interval)
        self.max_retries = max_retries
        self.retry_deadline = float(retry_deadline)
        self.backoff = (float(backoff[0]), float(backoff[1]))
        self.when_full = when_full
        self.block_timeout = float(block_timeout)
        self.path = ""
        send_batch = getattr(backend, "send_batch", None)
        self._send_batch: Callable[[Sequence[Event]], Any] | None = (
            send_batch if callable(send_batch) else None
        )
        self._send: Callable[[Event], Any] = backend.send
        self._close_backend = True
        self._reset()
        _fork.register(self)
        lifecycle.track(self)

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked child (without the parent's events)."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the worker waits on it
        self._room = threading.Condition(self._lock)  # senders with when_full="block"
        self._settled = threading.Condition(self._lock)  # flush() and close()
        self._queue: collections.deque[_Entry] = collections.deque()
        self._bytes = 0
        self._flight: list[_Item] = []
        self._worker: threading.Thread | None = None
        self._waiting = 0  # what the worker waits for: 0 (it does not), _WAITS_FIRST/_FILL
        self._flushing = 0
        self._closing = False
        self._closed = False
        self._deadline: float | None = None
        self._abandoned = False
        self._finished = threading.Event()
        self._received = 0
        self._queued = 0
        self._delivered = 0
        self._retried = 0
        self._dead_lettered = 0
        self._lost = 0
        self._lost_by: dict[str, int] = {}
        self._failed_by: dict[str, int] = {}
        self._dropped: dict[str, int] = {}
        self._logs: dict[str, _Throttle] = {}
        self._notices: dict[_NoticeKey, list[Event]] = {}
        self._notice_events = 0
        self._unannounced = 0
        self._announcing = False
        self._overboard: list[Any] = []
        self._timings = _Timings()

    def _after_fork_in_child(self) -> None:
        closed = self._closed
        self._reset()
        self._closed = self._closing = closed

    def bind_path(self, path: str) -> None:
        """Learn this node's dotted path in the tree (used in dead letters and logs)."""
        self.path = path
        bind = getattr(self.backend, "bind_path", None)
        if callable(bind):
            bind(path)

    # -- the caller's side ------------------------------------------------------------------

    def send(self, event: Event) -> None:
        """Queue ``event`` for delivery and return at once; never raises.

        When the queue is full, ``when_full`` decides; an event that cannot be encoded at
        all, is larger than ``max_bytes``, or arrives after :meth:`close` is dead-lettered.
        """
        try:
            payload, size = _snapshot(event, 0)
        except Exception:  # _NotPlain, or anything odd: pickle it (this copies it too)
            try:
                payload = pickle.dumps(event, _PICKLE)
                size = len(payload)
            except Exception:
                payload, size = event, self._json_size(event)
                if size < 0:
                    with self._lock:
                        self._received += 1
                    self._reject(event, "Unencodable")
                    return
        now = time.monotonic()
        with self._lock:
            self._received += 1
            if self._closing:
                reason = "Closed"
            elif size > self.max_bytes:
                reason = "TooLarge"
            elif len(self._queue) < self.max_queue and self._bytes + size <= self.max_bytes:
                reason = ""
            else:
                reason = self._make_room(size)
            drops: list[Event] = []
            if reason and _hears_drops():
                drops = self._dropped_events(reason, event)
            if not reason or reason == "drop_oldest":
                self._queue.append((payload, size, now))
                self._bytes += size
                self._queued += 1
                # Wake the worker only when it waits for this event: the first one, or the
                # one that fills its batch. Waking it for every event hands it the GIL in the
                # middle of the caller's work for nothing.
                waiting = self._waiting
                if waiting and (waiting == _WAITS_FIRST or len(self._queue) >= self.batch_size):
                    self._waiting = 0
                    self._wake.notify()
                if self._worker is None:
                    self._start_worker()
        if not reason:
            return
        if reason in ("drop_oldest", "drop_newest"):  # logged outside the lock
            why = _signals.Reason(reason)
            if drops:
                self._notify(_signals.failed, drops, reason=why)
                self._notify(_signals.dropped, drops, reason=why)
            self._log_full(reason)
        else:
            self._reject(event, reason)

    def _dropped_events(self, reason: str, event: Event) -> list[Event]:
        """With the lock held, after a drop: the events dropped, for the ``dropped`` signal."""
        if reason == "drop_newest":
            return [event]
        if reason == "drop_oldest":
            overboard, self._overboard = self._overboard, []
            return [_event_of(_Item(payload)) for payload in overboard]
        return []

    def _make_room(self, size: int) -> str:
        """With the lock held and the queue full: ``""`` (or ``"drop_oldest"``) once there is
        room for the event, else the reason it cannot be queued."""
        if self.when_full == "drop_oldest":
            dropped = 0
            keep = _hears_drops()
            self._overboard = []
            while self._queue and (
                len(self._queue) >= self.max_queue or self._bytes + size > self.max_bytes
            ):
                old, old_size, _ = self._queue.popleft()
                self._bytes -= old_size
                dropped += 1
                if keep:
                    self._overboard.append(old)
            self._dropped["drop_oldest"] = self._dropped.get("drop_oldest", 0) + dropped
            return "drop_oldest"  # there is room now, made by dropping
        if self.when_full == "drop_newest":
            self._dropped["drop_newest"] = self._dropped.get("drop_newest", 0) + 1
            return "drop_newest"
        if self.when_full == "block" and self.block_timeout > 0:
            fits = self._room.wait_for(
                lambda: (
                    self._closing
                    or (len(self._queue) < self.max_queue and self._bytes + size <= self.max_bytes)
                ),
                self.block_timeout,
            )
            if fits and not self._closing:
                return ""
            if self._closing:
                return "Closed"
        return "QueueFull"

    def _throttle(self, reason: str) -> _Throttle:
        throttle = self._logs.get(reason)
        if throttle is None:
            throttle = self._logs[reason] = _Throttle(LOG_EVERY)
        return throttle

    def _log_full(self, reason: str) -> None:
        held = self._throttle(reason).due()
        if held is None:
            return
        log.warning(
            "buffered node %r: queue full (%d events, %d bytes): %s%s; counted in "
            "stats()['dropped']",
            self.path or type(self.backend).__name__,
            self.max_queue,
            self.max_bytes,
            "dropping the oldest" if reason == "drop_oldest" else "dropping new events",
            f" ({held} more since the last line)" if held else "",
        )

    @staticmethod
    def _json_size(event: Event) -> int:
        try:
            return len(dumps(event))
        except Exception:
            return -1

    def _reject(self, event: Event, reason: str) -> None:
        """Dead-letter an event ``send`` could not queue (never attempted); logs are throttled."""
        written = self._give_up(
            [event], reason, attempts=0, first=None, last=None, quiet=True, defer=True
        )
        held = self._throttle(reason).due()
        if held is not None:
            where = self.dead_letter.path if self.dead_letter is not None else None
            log.warning(
                "buffered node %r could not queue event %s (%s): %s%s",
                self.path or type(self.backend).__name__,
                _label([event]),
                reason,
                f"written to {where}"
                if written
                else "LOST: no writable dead-letter file (give the node dead_letter=...)",
                f"; {held} more such events since the last line" if held else "",
            )

    def _start_worker(self) -> None:
        worker = threading.Thread(
            target=self._run, name=f"eventrouter buffered {self.path or id(self)}", daemon=True
        )
        self._worker = worker
        worker.start()

    # -- the worker -------------------------------------------------------------------------

    def _notify(self, signal: Any, events: list[Event], **kwargs: Any) -> None:
        """Have the worker thread send ``signal`` (the caller's thread never runs receivers);
        sent here when this node has no worker to do it (closing, closed)."""
        with self._lock:
            if not self._closing:
                room = MAX_NOTICE_EVENTS - self._notice_events
                if room < len(events):
                    self._unannounced += len(events) - max(room, 0)
                    events = events[: max(room, 0)]
                    over = True
                else:
                    over = False
                if events:
                    key = (signal, tuple(sorted(kwargs.items())))
                    held = self._notices.get(key)
                    if held is None:
                        self._notices[key] = list(events)
                    else:
                        held.extend(events)
                    self._notice_events += len(events)
                if self._worker is None:
                    self._start_worker()
                self._wake.notify()
                if not over:
                    return
            else:
                _signals.send(signal, self.path, events=events, **kwargs)
                return
        held_back = self._throttle("unannounced").due()
        if held_back is not None:
            log.warning(
                "buffered node %r: over %d events wait for their signals; the signals of "
                "further ones are not sent, only counted in stats()['unannounced']",
                self.path or type(self.backend).__name__,
                MAX_NOTICE_EVENTS,
            )

    def _announce(self) -> None:
        """Send the signals queued by :meth:`_notify` (on the worker, or at close)."""
        with self._lock:
            notices, self._notices = self._notices, {}
            self._notice_events = 0
            self._announcing = bool(notices)
        if not notices:
            return
        try:
            for (signal, kwargs), events in notices.items():
                _signals.send(signal, self.path, events=events, **dict(kwargs))
        finally:
            with self._lock:
                self._announcing = False
                self._settled.notify_all()

    def _run(self) -> None:
        while True:
            with self._lock:
                entries = self._next_batch()
                items = [_Item(payload) for payload, _, _ in entries or ()]
                self._flight = items
            self._announce()
            if entries is None:
                with self._lock:
                    self._settled.notify_all()
                return
            if not items:
                continue
            try:
                self._deliver(items)
            except Exception as exc:  # a bug of ours: never lose the batch silently
                log.error("buffered node %r: worker error %s", self.path, type(exc).__name__)
                self._settle_failed(items, type(exc).__name__, 1, None, None)
            with self._lock:
                self._flight = []
                self._settled.notify_all()
                if self._abandoned:
                    return

    def _next_batch(self) -> list[_Entry] | None:
        """With the lock held: wait for the next batch; ``None`` when the worker should stop."""
        queue = self._queue
        while True:
            if self._abandoned:
                return None
            if self._notices:
                return []
            deadline = self._deadline if self._closing else None
            if deadline is not None and time.monotonic() >= deadline:
                return None
            if queue:
                wait = 0.0
                if not (self._closing or self._flushing or len(queue) >= self.batch_size):
                    wait = queue[0][2] + self.flush_interval - time.monotonic()
                if wait <= 0:
                    count = min(self.batch_size, len(queue))
                    entries = [queue.popleft() for _ in range(count)]
                    self._bytes -= sum(size for _, size, _ in entries)
                    self._room.notify_all()
                    return entries
                self._waiting = _WAITS_FILL
                self._wake.wait(wait)
            else:
                if self._closing:
                    return None
                self._settled.notify_all()
                self._waiting = _WAITS_FIRST
                self._wake.wait()
            self._waiting = 0

    def _deliver(self, items: list[_Item]) -> None:
        ready: list[_Item] = []
        for item in items:
            try:
                item.decoded()
            except Exception:
                self._settle_failed([item], "Undecodable", 0, None, None)
                continue
            ready.append(item)
        parts: list[_Part] = [(ready, 0, None, 0.0)] if ready else []
        while parts and not self._abandoned:
            part, attempts, first, started = parts.pop()
            part = [item for item in part if not item.settled]
            if part:
                parts.extend(self._attempt(part, attempts, first, started))

    def _attempt(
        self, items: list[_Item], attempts: int, first: dt.datetime | None, started: float
    ) -> list[_Part]:
        """Deliver ``items`` with retries; returns halves of a batch to try separately.

        ``attempts``, ``first`` (failure) and ``started`` (its monotonic time) carry over
        from the batch a half was split from.
        """
        while True:
            if self._abandoned:  # close() gave up on these: they are in the dead letter
                return []
            failures = self._call(items)
            attempts += 1
            if not failures:
                return []
            now = dt.datetime.now(dt.UTC)
            if first is None:
                first, started = now, time.monotonic()
            retry: list[_Item] = []
            for item, exc in failures:
                if is_retryable(exc):
                    retry.append(item)
                elif self._send_batch is not None and len(failures) > 1:
                    # A batch failed for good: maybe one poison event; try each half alone.
                    failed = [i for i, _ in failures]
                    middle = len(failed) // 2
                    return [
                        (failed[middle:], attempts, first, started),
                        (failed[:middle], attempts, first, started),
                    ]
                else:
                    self._settle_failed(
                        [item],
                        type(exc).__name__,
                        attempts,
                        first,
                        now,
                        reason=_signals.Reason.PERMANENT,
                    )
            if not retry:
                return []
            items = retry
            error = failures[-1][1]
            delay = self._delay(attempts, error)
            too_late = time.monotonic() + delay - started > self.retry_deadline
            if attempts > self.max_retries or too_late or not self._pause(delay):
                self._settle_failed(
                    items,
                    type(error).__name__,
                    attempts,
                    first,
                    now,
                    reason=_signals.Reason.RETRIES_EXHAUSTED,
                    permanent=False,
                )
                return []
            with self._lock:
                self._retried += len(items)
            if _signals.retried.receivers:
                _signals.send(
                    _signals.retried,
                    self.path,
                    events=[item.decoded() for item in items],
                    error=_signals.error_info(error, permanent=False),
                )

    def _call(self, items: list[_Item]) -> list[tuple[_Item, BaseException]]:
        """One attempt; the items that failed, each with its error. Settles the delivered."""
        if self._send_batch is not None:
            started = time.perf_counter()
            try:
                self._send_batch([item.decoded() for item in items])
            except PartialDeliveryError as exc:  # only the events at exc.failed failed
                failed = {i for i in exc.failed if 0 <= i < len(items)} or set(range(len(items)))
                self._settle_delivered(
                    [it for i, it in enumerate(items) if i not in failed],
                    time.perf_counter() - started,
                )
                return [(items[i], exc) for i in sorted(failed)]
            except Exception as exc:
                return [(item, exc) for item in items]
            self._settle_delivered(items, time.perf_counter() - started)
            return []
        failures: list[tuple[_Item, BaseException]] = []
        for item in items:
            started = time.perf_counter()
            try:
                self._send(item.decoded())
            except Exception as exc:
                failures.append((item, exc))
                continue
            self._settle_delivered([item], time.perf_counter() - started)
        return failures

    def _delay(self, attempts: int, error: BaseException) -> float:
        base, cap = self.backoff
        delay = random.uniform(0.0, min(cap, base * 2 ** min(attempts - 1, 62)))
        after = getattr(error, "retry_after", None)
        if isinstance(after, int | float) and not isinstance(after, bool) and after > delay:
            delay = float(after)
        return delay

    def _pause(self, delay: float) -> bool:
        """Wait ``delay`` seconds before a retry; ``False`` if closing ran out of time first."""
        until = time.monotonic() + delay
        while True:
            self._announce()  # drops and rejections meanwhile are signalled as they come
            with self._lock:
                if self._abandoned:
                    return False
                now = time.monotonic()
                deadline = self._deadline if self._closing else None
                if deadline is not None and now >= deadline:
                    return False
                if now >= until:
                    return True
                if not self._notices:
                    end = until if deadline is None else min(until, deadline)
                    self._wake.wait(end - now)

    # -- settling ---------------------------------------------------------------------------

    def _claim(self, items: Sequence[_Item]) -> list[_Item]:
        """With the lock held: mark ``items`` settled; the ones this call settled."""
        if self._abandoned:
            return []
        claimed = [item for item in items if not item.settled]
        for item in claimed:
            item.settled = True
        return claimed

    def _settle_delivered(self, items: Sequence[_Item], seconds: float) -> None:
        with self._lock:
            claimed = self._claim(items)
            self._delivered += len(claimed)
            if claimed:
                self._timings.observe(seconds)
        if claimed and _signals.delivered.receivers:
            _signals.send(
                _signals.delivered,
                self.path,
                events=[item.decoded() for item in claimed],
                seconds=seconds,
            )
        if len(claimed) < len(items):
            log.warning(
                "buffered node %r: %d event(s) were delivered after close() gave up on them; "
                "they are in the dead letter too (replay is at-least-once: the id is the key)",
                self.path,
                len(items) - len(claimed),
            )

    def _settle_failed(
        self,
        items: Sequence[_Item],
        error: str,
        attempts: int,
        first: dt.datetime | None,
        last: dt.datetime | None,
        *,
        reason: _signals.Reason | None = None,
        permanent: bool = True,
    ) -> None:
        with self._lock:
            claimed = self._claim(items)
        if claimed:
            events = [_event_of(item) for item in claimed]
            self._give_up(
                events,
                error,
                attempts=attempts,
                first=first,
                last=last,
                reason=reason,
                permanent=permanent,
            )

    def _give_up(
        self,
        events: list[Event],
        error: str,
        *,
        attempts: int,
        first: dt.datetime | None,
        last: dt.datetime | None,
        quiet: bool = False,
        reason: _signals.Reason | None = None,
        permanent: bool = True,
        defer: bool = False,
    ) -> bool:
        """Write ``events`` to the dead letter, count and signal them; logs unless ``quiet``
        (events lost are logged at most once per 10 s per reason).

        ``reason`` defaults to the one ``error`` names (:data:`_REASONS`), else ``INTERNAL``;
        ``defer`` has the worker send the signals (``send`` calls this on the caller's thread).
        Returns whether they were written.
        """
        dead_letter = self.dead_letter
        count = 0  # written whole: always the first `count` events
        if dead_letter is not None:
            count = dead_letter.write_many(
                events,
                destination=self.path,
                error=error,
                attempts=attempts,
                first_failure=first,
                last_failure=last,
            )
        written = count == len(events)
        missing = len(events) - count
        why = reason or _REASONS.get(error, _signals.Reason.INTERNAL)
        lost: _signals.Reason | None = None
        if dead_letter is None:
            outcome = "LOST: give the node a dead_letter file to keep such events"
            lost = _signals.Reason.NO_DEAD_LETTER
        elif written:
            outcome = f"written to {dead_letter.path}"
        else:
            outcome = (
                f"LOST {missing} of them: the dead-letter file {dead_letter.path} cannot be written"
            )
            lost = _signals.Reason.DEAD_LETTER_UNWRITABLE
        with self._lock:
            self._failed_by[why] = self._failed_by.get(why, 0) + len(events)
            self._dead_lettered += count
            if lost is not None:
                self._lost += missing
                self._lost_by[lost] = self._lost_by.get(lost, 0) + missing
        if _signals.watched:  # events are kept for a signal only while it has receivers
            info = _signals.ErrorInfo(error, permanent)
            send = self._notify if defer else self._send_now
            if _signals.failed.receivers:
                send(_signals.failed, events, error=info, reason=why)
            if count and _signals.dead_lettered.receivers:
                send(_signals.dead_lettered, events[:count], error=info, reason=why)
            if lost is not None and _signals.dropped.receivers:
                send(_signals.dropped, events[count:], error=info, reason=lost)
        if quiet:
            return written
        if lost is not None:
            held = self._throttle(lost).due()
            if held is None:
                return written
            outcome += f" ({held} more such lines held back)" if held else ""
        log.error(
            "buffered node %r gave up on %d event(s) (%s) after %d attempt(s): %s; %s",
            self.path or type(self.backend).__name__,
            len(events),
            _label(events),
            attempts,
            error,
            outcome,
        )
        return written

    def _send_now(self, signal: Any, events: list[Event], **kwargs: Any) -> None:
        _signals.send(signal, self.path, events=events, **kwargs)

    # -- flush and close --------------------------------------------------------------------

    def _idle(self) -> bool:
        return not (self._queue or self._flight or self._notices or self._announcing)

    def flush(self, timeout: float | None = None) -> bool:
        """Send what is queued now, and wait until it is delivered or given up on.

        Args:
            timeout: wait at most this many seconds (``None``: until done). Events still
                queued then stay queued.

        Returns:
            ``True`` if nothing was left queued or in flight.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                done = self._idle()
            else:
                self._flushing += 1
                self._wake.notify()
                try:
                    done = self._settled.wait_for(self._idle, lifecycle.remaining(deadline))
                finally:
                    self._flushing -= 1
        inner = getattr(self.backend, "flush", None)
        if done and callable(inner):
            try:
                lifecycle.with_timeout(inner)(lifecycle.remaining(deadline))
            except Exception as exc:
                log.error("flushing %r failed: %s", self.path, type(exc).__name__)
        return done

    def close(self, timeout: float | None = 30.0) -> None:
        """Deliver what is held within ``timeout`` seconds, then stop; the rest is dead-lettered.

        Events queued or in flight after ``timeout`` (``None``: no limit) go to the dead
        letter; if a backend call is still running then, its events are dead-lettered too
        and, should that call succeed later, delivered as well (replay is at-least-once).
        The wrapped backend is closed afterwards. Later ``send`` calls dead-letter their
        event (``Closed``).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self._begin_close(deadline)
        self._finish_close(deadline)

    def _begin_close(self, deadline: float | None) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._deadline = deadline
            self._wake.notify_all()
            self._room.notify_all()

    def _finish_close(self, deadline: float | None) -> None:
        with self._lock:
            closed = self._closed
            worker = self._worker
        if closed:  # closed, or closing in another thread: wait for it to finish
            self._finished.wait(lifecycle.remaining(deadline))
            return
        if worker is not None and worker.is_alive():
            worker.join(lifecycle.remaining(deadline))
        with self._lock:
            already = self._closed
            self._closed = True
            leftovers = [] if already else list(self._queue)
            self._queue.clear()
            self._bytes = 0
            in_flight = [] if already else [item for item in self._flight if not item.settled]
            for item in in_flight:
                item.settled = True
            self._abandoned = True
            self._wake.notify_all()
            self._room.notify_all()
            self._settled.notify_all()
        if already:
            self._finished.wait(lifecycle.remaining(deadline))
            return
        try:
            self._settle_at_close(leftovers, in_flight, deadline)
        finally:
            self._announce()
            self._finished.set()

    def _settle_at_close(
        self, leftovers: list[_Entry], in_flight: list[_Item], deadline: float | None
    ) -> None:
        lifecycle.untrack(self)
        if in_flight:
            events = [_event_of(item) for item in in_flight]
            self._give_up(events, "InFlightAtClose", attempts=1, first=None, last=None)
        if leftovers:
            self._give_up(
                [_event_of(_Item(payload)) for payload, _, _ in leftovers],
                "Closed",
                attempts=0,
                first=None,
                last=None,
            )
        if self.dead_letter is not None:
            self.dead_letter.sync()
        close = getattr(self.backend, "close", None)
        if self._close_backend and callable(close):
            try:
                lifecycle.with_timeout(close)(lifecycle.remaining(deadline))
            except Exception as exc:
                log.error("closing %r failed: %s", self.path, type(exc).__name__)

    # -- introspection ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters and gauges of this node.

        ``received`` (``send`` calls), ``queued`` (accepted into the queue), ``in_flight``,
        ``delivered`` (acknowledged by the backend), ``retried`` (event retries),
        ``dead_lettered``, ``dropped`` (by ``when_full`` mode), ``lost`` (given up with no
        writable dead letter; ``lost_by`` splits it by reason), ``failed`` (dead-lettered +
        dropped + lost; ``failed_by`` splits it by reason), ``unannounced`` (events whose
        signal was not sent: over :data:`MAX_NOTICE_EVENTS`, counted once per signal), ``depth`` and
        ``bytes`` (queued now), ``oldest_age`` (seconds the oldest queued event has waited),
        ``delivery_seconds`` (a histogram of successful backend calls: ``bounds``, cumulative
        ``counts`` per bound, ``sum``, ``count``), and ``backend``: the wrapped backend's
        own ``stats()`` when it has one.
        """
        with self._lock:
            dropped = dict(self._dropped)
            out: dict[str, Any] = {
                "lost_by": {str(k): v for k, v in self._lost_by.items()},
                "failed_by": {**{str(k): v for k, v in self._failed_by.items()}, **dropped},
                "unannounced": self._unannounced,
                "received": self._received,
                "queued": self._queued,
                "in_flight": sum(1 for item in self._flight if not item.settled),
                "delivered": self._delivered,
                "retried": self._retried,
                "dead_lettered": self._dead_lettered,
                "dropped": dropped,
                "lost": self._lost,
                "failed": self._dead_lettered + self._lost + sum(dropped.values()),
                "depth": len(self._queue),
                "bytes": self._bytes,
                "oldest_age": time.monotonic() - self._queue[0][2] if self._queue else 0.0,
                "delivery_seconds": self._timings.snapshot(),
            }
        inner = getattr(self.backend, "stats", None)
        if callable(inner):
            try:
                out["backend"] = inner()
            except Exception as exc:
                log.error("stats of %r failed: %s", self.path, type(exc).__name__)
        return out

    signals_outcomes = True
    """This node signals its own outcomes, so its parent router signals none for it."""

    def __repr__(self) -> str:
        return f"BufferedBackend({self.backend!r}, path={self.path!r})"

    if not TYPE_CHECKING:  # typed code reaches the wrapped backend through `.backend`

        def __getattr__(self, name: str) -> Any:
            """The wrapped backend's public attributes, such as a MongoDB node's
            ``connection``, ``database`` and ``collection``, so code written for the bare
            backend keeps working. The delivery hooks are never delegated: a caller that
            found the backend's ``send_batch`` here would skip the queue."""
            backend = self.__dict__.get("backend")
            if backend is None or name.startswith("_") or name in _NOT_DELEGATED:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            return getattr(backend, name)


_NOT_DELEGATED: Final = frozenset({"send_batch", "replay_batch", "bind_config"})
"""Hooks of the wrapped backend that :class:`BufferedBackend` must not appear to have."""


def _hears_drops() -> bool:
    """Whether a receiver waits for dropped events (only then does a node keep them)."""
    return bool(_signals.watched and (_signals.dropped.receivers or _signals.failed.receivers))


def _event_of(item: _Item) -> Event:
    try:
        return item.decoded()
    except Exception:
        return {"id": None, "name": None, "undecodable": True}
