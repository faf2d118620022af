"""CeleryRouter: a router node whose backends run on Celery workers.

In the emitting process a ``CeleryRouter`` copies each event and runs its own processors,
like any router; then, instead of calling its backends, it hands the event to a buffered
delivery node (:class:`~eventrouter.backends.buffered.BufferedBackend`) whose worker thread
publishes one Celery task per *batch* of events. ``emit`` never touches the broker.

On the workers (``eventrouter worker CONFIG``) the same YAML builds the same tree; a task names
the node's dotted path and the fingerprint of its subtree, and the worker delivers the batch to
that node's backends. A backend that fails is retried with Celery's retry and exponential
backoff, for the events it failed on only; when the retries are exhausted, or the failure is
permanent, the events go to the worker's dead-letter file with the destination's path.

Tasks are acknowledged late and rejected (re-queued) when the worker process dies, so delivery
is at least once: after a crash at most the batch in flight is delivered again, and the event
``id`` is the key a destination de-duplicates on.

``broker: memory://`` runs the subtree in the emitting process, through the same encoding,
delivery and retry code, on the buffered node's thread: the same YAML works with no broker.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from eventrouter import _fork
from eventrouter import signals as _signals
from eventrouter._loglabels import describe
from eventrouter.backends.buffered import BufferedBackend
from eventrouter.backends.routing import RoutingBackend
from eventrouter.deadletter import DeadLetterFile
from eventrouter.encoding import dumps, json_default
from eventrouter.errors import DeliveryError, MissingExtraError, OptionError
from eventrouter.typing import Backend, Event, Processor

if TYPE_CHECKING:
    import os

__all__ = [
    "MEMORY_BROKER",
    "TASK_NAME",
    "BatchOutcome",
    "CeleryRouter",
    "RetryPolicy",
    "decode_batch",
    "encode_batch",
]

log = logging.getLogger("eventrouter.celery")

TASK_NAME = "eventrouter.deliver"
"""The name of the Celery task that carries a batch of events to a subtree."""

MEMORY_BROKER = "memory://"
"""The broker URL that runs the subtree in the emitting process (no broker, no worker)."""

_TYPE_KEY = "$eventrouter"
_PUBLISHING = {"max_retries": 0, "socket_connect_timeout": 5, "socket_timeout": 10}
"""Transport options of publishers: one bounded attempt (the buffered node retries)."""

# -- the message encoding -----------------------------------------------------------------


def _tag(obj: object) -> Any:
    """``json`` default hook: datetimes, dates, times, Decimals, UUIDs and bytes are tagged
    so the worker gets them back as the same types; the rest follows eventrouter.encoding."""
    if isinstance(obj, dt.datetime):
        return {_TYPE_KEY: "datetime", "value": obj.isoformat()}
    if isinstance(obj, dt.date):
        return {_TYPE_KEY: "date", "value": obj.isoformat()}
    if isinstance(obj, dt.time):
        return {_TYPE_KEY: "time", "value": obj.isoformat()}
    if isinstance(obj, Decimal):
        return {_TYPE_KEY: "decimal", "value": str(obj)}
    if isinstance(obj, uuid.UUID):
        return {_TYPE_KEY: "uuid", "value": str(obj)}
    if isinstance(obj, bytes | bytearray):
        return {_TYPE_KEY: "bytes", "value": base64.b64encode(bytes(obj)).decode("ascii")}
    return json_default(obj)


_ENCODER = json.JSONEncoder(
    ensure_ascii=True, check_circular=True, allow_nan=False, separators=(",", ":"), default=_tag
)
_DECODERS: dict[str, Any] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "decimal": Decimal,
    "uuid": uuid.UUID,
    "bytes": base64.b64decode,
}


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 2 and _TYPE_KEY in obj and "value" in obj:
        decode = _DECODERS.get(obj[_TYPE_KEY])
        if decode is not None and isinstance(obj["value"], str):
            try:
                return decode(obj["value"])
            except (ValueError, ArithmeticError):
                return obj
    return obj


def encode_batch(events: Sequence[Event]) -> str:
    """Encode events as the JSON text a task carries; never raises.

    Datetimes (naive or aware, offset kept), dates, times, ``Decimal``, ``UUID`` and bytes come
    back as the same values from :func:`decode_batch`. Any other value is written as
    :mod:`eventrouter.encoding` writes it (a set becomes a list, an object its ``str``), and
    so is a batch that plain JSON cannot hold (non-string keys, cycles, NaN): the whole batch
    is then converted by that encoding's rules, and arrives with those values as strings.
    """
    try:
        return _ENCODER.encode(list(events))
    except (TypeError, ValueError, RecursionError):
        return dumps(list(events))


def decode_batch(text: str) -> list[Event]:
    """The events :func:`encode_batch` encoded.

    Raises:
        ValueError: ``text`` is not an encoded batch (not JSON, or not a list of objects).
    """
    events = json.loads(text, object_hook=_untag)
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ValueError("a task's events must be a JSON list of event objects")
    return events


# -- retry policy -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a worker retries a destination that failed (the ``task_retry`` option).

    Attributes:
        max_retries: retries after the first attempt; then the events are dead-lettered.
        backoff: the first retry waits up to this many seconds, doubling each time.
        backoff_max: no retry waits longer than this.
        jitter: wait a random time up to the computed delay ("full jitter").
    """

    max_retries: int = 5
    backoff: float = 1.0
    backoff_max: float = 300.0
    jitter: bool = True

    @classmethod
    def from_option(cls, value: Mapping[str, Any] | None) -> RetryPolicy:
        """Validate the ``task_retry`` option.

        Raises:
            OptionError: an unknown key, or a value of the wrong type or range.
        """
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise OptionError("task_retry", "task_retry must be a mapping (max_retries, ...)")
        known = {"max_retries", "backoff", "backoff_max", "jitter"}
        unknown = sorted(str(k) for k in value if k not in known)
        if unknown:
            raise OptionError(
                "task_retry",
                f"task_retry has unknown key(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}",
                where=(unknown[0],),
            )
        policy = cls(**value)
        if type(policy.max_retries) is not int or policy.max_retries < 0:
            raise OptionError(
                "task_retry", "task_retry.max_retries must be an int >= 0", where=("max_retries",)
            )
        for name in ("backoff", "backoff_max"):
            number = getattr(policy, name)
            if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
                raise OptionError(
                    "task_retry",
                    f"task_retry.{name} must be a number of seconds >= 0",
                    where=(name,),
                )
        if not isinstance(policy.jitter, bool):
            raise OptionError(
                "task_retry", "task_retry.jitter must be true or false", where=("jitter",)
            )
        return policy

    def countdown(self, retries: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retries + 1`` (Celery's backoff), at least
        the ``retry_after`` a backend asked for."""
        from celery.utils.time import get_exponential_backoff_interval

        wait: float = get_exponential_backoff_interval(
            factor=self.backoff,
            retries=retries,
            maximum=self.backoff_max,
            full_jitter=False,
        )
        if self.jitter:
            import random

            wait = random.uniform(0, wait)
        if retry_after is not None and retry_after > wait:
            wait = min(float(retry_after), max(self.backoff_max, float(retry_after)))
        return wait


# -- delivery of one batch ----------------------------------------------------------------


@dataclass
class BatchOutcome:
    """What one attempt at delivering a batch to a subtree did.

    Attributes:
        delivered: events acknowledged, counted once per destination.
        dead_lettered: events written to the dead letter (failed permanently), per destination.
        pending: for each destination that failed in a way worth retrying, the indexes (in the
            batch) of the events still to deliver to it.
        errors: the exception type of each pending destination's last failure.
        retry_after: the longest wait a failing backend asked for, if any.
    """

    delivered: int = 0
    dead_lettered: int = 0
    pending: dict[str, list[int]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None


def _is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, DeliveryError) and not exc.retryable


def _direct(backend: Backend) -> Backend:
    """The backend itself, or the one a buffered node wraps: on a worker the task is only
    acknowledged once the events are delivered, so delivery must not be queued again."""
    if isinstance(backend, BufferedBackend):
        inner: Backend = backend.backend
        return inner
    return backend


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


# -- the node -----------------------------------------------------------------------------


class CeleryRouter(RoutingBackend):
    """A router whose processors run here and whose backends run on Celery workers.

    Args:
        backends: the subtree delivered on the workers, by name.
        processors: run in the emitting process before an event is queued for publishing.
        broker: the Celery broker URL (``redis://...``, ``amqp://...``), or ``memory://`` to
            run the backends in this process, through the same encoding and retries.
        queue: the Celery queue the tasks go to (``eventrouter worker --queue``).
        batch_size: events per task at most.
        flush_interval: seconds a partial batch waits before it is published anyway.
        task_retry: how workers retry a failing backend: ``max_retries`` (5), ``backoff``
            (1.0 s, doubling), ``backoff_max`` (300 s), ``jitter`` (true).
        broker_options: Celery's ``broker_transport_options`` (e.g. Redis'
            ``visibility_timeout``), for publishers and workers alike.
        buffer: more options of the buffered node that publishes (``max_queue``,
            ``max_bytes``, ``max_retries``, ``retry_deadline``, ``when_full`` ...).
        dead_letter: where events go that could not be published, or (on a worker, and with
            ``memory://``) delivered.

    With the broker down, ``send`` still returns at once: the buffered node retries
    publishing with backoff, then dead-letters the batch with this node's path.
    """

    def __init__(
        self,
        backends: Mapping[str, Backend] | None = None,
        processors: Iterable[Processor] | None = None,
        *,
        broker: str = MEMORY_BROKER,
        queue: str = "eventrouter",
        batch_size: int = 100,
        flush_interval: float = 1.0,
        task_retry: Mapping[str, Any] | None = None,
        broker_options: Mapping[str, Any] | None = None,
        buffer: Mapping[str, Any] | None = None,
        dead_letter: DeadLetterFile | str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(broker, str) or "://" not in broker:
            raise OptionError(
                "broker",
                f"broker must be a URL such as redis://host:6379/0, amqp://host// or "
                f"{MEMORY_BROKER}",
            )
        if not isinstance(queue, str) or not queue:
            raise OptionError("queue", "queue must be a non-empty string")
        if type(batch_size) is not int or batch_size < 1:
            raise OptionError("batch_size", f"batch_size must be an int >= 1, not {batch_size!r}")
        if isinstance(flush_interval, bool) or not isinstance(flush_interval, int | float):
            raise OptionError("flush_interval", "flush_interval must be a number of seconds")
        if flush_interval <= 0:
            raise OptionError("flush_interval", "flush_interval must be more than 0 seconds")
        if broker_options is not None and not isinstance(broker_options, Mapping):
            raise OptionError("broker_options", "broker_options must be a mapping")
        if buffer is not None and not isinstance(buffer, Mapping):
            raise OptionError("buffer", "buffer must be a mapping of buffered-delivery options")
        reserved = {"batch_size", "flush_interval", "dead_letter"} & set(buffer or {})
        if reserved:
            raise OptionError(
                "buffer",
                f"set {', '.join(sorted(reserved))} on the celery node itself, not in buffer",
                where=(sorted(reserved)[0],),
            )
        super().__init__(backends, processors, dead_letter)
        self.broker = broker
        self.queue = queue
        self.batch_size = batch_size
        self.flush_interval = float(flush_interval)
        self.retry_policy = RetryPolicy.from_option(task_retry)
        self.broker_options: dict[str, Any] = dict(broker_options or {})
        self.in_process = broker == MEMORY_BROKER
        self._fingerprint: str | None = None
        self._stopping = threading.Event()
        self._counts = threading.Lock()
        self._app: _fork.PerProcess[Any] = _fork.PerProcess(self._make_app)
        self._published = 0
        self._tasks = 0
        self._delivered = 0
        self._retried = 0
        self._dead_lettered = 0
        self._lost = 0
        self._by_destination: dict[str, list[int]] = {}
        if not self.in_process:
            _require_celery()
        # publishing runs on this node's thread, started by the first event (never on workers)
        self._buffer = BufferedBackend(
            _Publisher(self),
            batch_size=batch_size,
            flush_interval=self.flush_interval,
            dead_letter=self.dead_letter,
            **dict(buffer or {}),
        )

    # -- identity ---------------------------------------------------------------------------

    def bind_path(self, path: str) -> None:
        """Learn this node's dotted path (the tasks carry it) and re-bind the children."""
        super().bind_path(path)
        self._buffer.bind_path(path)

    def bind_config(self, node: Any) -> None:
        """Take the fingerprint from the configuration node this router was built from."""
        self._fingerprint = config_fingerprint(node)

    @property
    def fingerprint(self) -> str:
        """A short hash of the subtree the workers run: from the configuration as written when
        built from YAML, else from the classes and names of the backends."""
        if self._fingerprint is None:
            self._fingerprint = _digest(_structure(self))
        return self._fingerprint

    # -- the emitting side --------------------------------------------------------------------

    def send_to_backends(self, event: Event) -> None:
        """Queue a processed ``event`` for publishing, returning at once (``send`` copies and
        processes each event, as every router does, then calls this)."""
        self._buffer.send(event)

    def _make_app(self) -> Any:
        from celery import Celery

        app = Celery("eventrouter", broker=self.broker, set_as_current=False)
        configure_app(app, self, publishing=True)
        return app

    def publish(self, payload: str, count: int) -> None:
        """Publish one task carrying ``payload`` (``count`` encoded events), or, with
        ``memory://``, deliver it here.

        Raises:
            DeliveryError: the broker did not take the task (retryable).
        """
        if self.in_process:
            self.run_in_process(payload)
            return
        try:
            self._app.get().send_task(
                TASK_NAME,
                args=[self.path, self.fingerprint, payload],
                queue=self.queue,
                retry=False,
                ignore_result=True,
            )
        except Exception as exc:
            raise DeliveryError(
                f"celery node {self.path!r} could not publish to its broker: "
                f"{type(exc).__name__}; retrying"
            ) from exc
        with self._counts:
            self._tasks += 1
            self._published += count

    def replay_batch(self, events: Sequence[Event]) -> None:
        """Publish ``events`` again as one task, without running this node's processors.

        The replay entry for dead letters written at this node's own path: those events
        could not be published, and had been processed already.

        Raises:
            DeliveryError: the broker did not take the task (retryable).
        """
        if events:
            self.publish(encode_batch(events), len(events))

    # -- the delivering side (workers, and memory://) ------------------------------------------

    def deliver(
        self,
        events: Sequence[Event],
        pending: Mapping[str, Sequence[int]] | None = None,
        *,
        attempt: int = 1,
        first_failure: str | None = None,
    ) -> BatchOutcome:
        """Deliver ``events`` once to the backends (all, or those in ``pending`` and only the
        events listed there); failures are not raised but returned, permanent ones
        dead-lettered at once."""
        outcome = BatchOutcome()
        for name, backend in list(self.backends.items()):
            if pending is None:
                indexes = list(range(len(events)))
            elif name in pending:
                indexes = [i for i in pending[name] if 0 <= i < len(events)]
            else:
                continue
            before = outcome.delivered
            self._deliver_to(
                name=name,
                backend=_direct(backend),
                events=events,
                indexes=indexes,
                outcome=outcome,
                attempt=attempt,
                first_failure=first_failure,
            )
            self._count(name, delivered=outcome.delivered - before)
        with self._counts:
            self._delivered += outcome.delivered
        return outcome

    def _deliver_to(
        self,
        *,
        name: str,
        backend: Backend,
        events: Sequence[Event],
        indexes: list[int],
        outcome: BatchOutcome,
        attempt: int,
        first_failure: str | None,
    ) -> None:
        batch = [events[i] for i in indexes]
        send_batch = getattr(backend, "send_batch", None)
        if callable(send_batch) and len(batch) > 1:
            try:
                send_batch(batch)
            except Exception as exc:
                if not _is_permanent(exc):
                    self._note_retry(name, indexes, exc, outcome)
                    return
                # one poison event must not take its neighbours down: one at a time
            else:
                outcome.delivered += len(batch)
                self._signal(_signals.delivered, name, batch)
                return
        for index, event in zip(indexes, batch, strict=True):
            try:
                if callable(send_batch):
                    send_batch([event])
                else:
                    backend.send(event)
            except Exception as exc:
                if _is_permanent(exc):
                    self._dead_letter([event], name, exc, attempt, first_failure)
                    outcome.dead_lettered += 1
                else:
                    self._note_retry(name, [index], exc, outcome)
            else:
                outcome.delivered += 1
                self._signal(_signals.delivered, name, [event])

    def _signal(self, signal: Any, name: str, events: Sequence[Event], **kwargs: Any) -> None:
        """Send ``signal`` for the events of destination ``name`` (when it has receivers)."""
        if _signals.watched and signal.receivers:
            destination = f"{self.path}.{name}" if self.path else name
            _signals.send(signal, destination, events=list(events), **kwargs)

    def _count(
        self, name: str, *, delivered: int = 0, dead_lettered: int = 0, lost: int = 0
    ) -> None:
        with self._counts:
            counts = self._by_destination.setdefault(name, [0, 0, 0])
            counts[0] += delivered
            counts[1] += dead_lettered
            counts[2] += lost

    def _note_retry(
        self, name: str, indexes: list[int], exc: BaseException, outcome: BatchOutcome
    ) -> None:
        outcome.pending.setdefault(name, []).extend(indexes)
        outcome.errors[name] = type(exc).__name__
        after = getattr(exc, "retry_after", None)
        if isinstance(after, int | float) and not isinstance(after, bool):
            outcome.retry_after = max(outcome.retry_after or 0.0, float(after))

    def give_up(
        self,
        events: Sequence[Event],
        outcome: BatchOutcome,
        *,
        attempts: int,
        first_failure: str | None,
    ) -> int:
        """Dead-letter what ``outcome`` left pending; returns how many events that was."""
        total = 0
        for name, indexes in outcome.pending.items():
            failed = [events[i] for i in indexes]
            self._dead_letter(
                failed, name, outcome.errors.get(name, "DeliveryError"), attempts, first_failure
            )
            total += len(failed)
        return total

    def _dead_letter(
        self,
        events: Sequence[Event],
        name: str,
        error: BaseException | str,
        attempts: int,
        first_failure: str | None,
    ) -> None:
        destination = f"{self.path}.{name}" if self.path else name
        reason = error if isinstance(error, str) else type(error).__name__
        ids = ", ".join(repr(e.get("id")) for e in events[:3]) + (" ..." if len(events) > 3 else "")
        lost: _signals.Reason | None = None
        if self.dead_letter is None:
            where = "LOST: no dead_letter file is configured"
            lost = _signals.Reason.NO_DEAD_LETTER
        elif write_dead_letter(
            self.dead_letter,
            events,
            destination=destination,
            reason=reason,
            attempts=attempts,
            first_failure=first_failure,
        ):
            where = f"written to {self.dead_letter.path}"
        else:
            where = f"LOST: the dead-letter file {self.dead_letter.path} cannot be written"
            lost = _signals.Reason.DEAD_LETTER_UNWRITABLE
        n = len(events)
        self._count(name, dead_lettered=0 if lost else n, lost=n if lost else 0)
        with self._counts:
            if lost:
                self._lost += n
            else:
                self._dead_lettered += n
        permanent = not isinstance(error, str)
        why = _signals.Reason.PERMANENT if permanent else _signals.Reason.RETRIES_EXHAUSTED
        info = _signals.ErrorInfo(reason, permanent)
        self._signal(_signals.failed, name, events, error=info, reason=why)
        if lost is None:
            self._signal(_signals.dead_lettered, name, events, error=info, reason=why)
        else:
            self._signal(_signals.dropped, name, events, error=info, reason=lost)
        log.error(
            "destination %r gave up on %d event(s) (ids %s) after %d attempt(s): %s; %s",
            destination,
            len(events),
            ids,
            attempts,
            reason,
            where,
        )

    def note_retry(self, count: int) -> None:
        """Count ``count`` events scheduled to be delivered again."""
        with self._counts:
            self._retried += count

    def run_in_process(self, payload: str) -> None:
        """Deliver an encoded batch here, retrying with the task's policy (``memory://``)."""
        events = decode_batch(payload)
        pending: dict[str, list[int]] | None = None
        first: str | None = None
        retries = 0
        while True:
            outcome = self.deliver(events, pending, attempt=retries + 1, first_failure=first)
            if not outcome.pending:
                return
            first = first or _utc_now()
            if retries >= self.retry_policy.max_retries:
                self.give_up(events, outcome, attempts=retries + 1, first_failure=first)
                return
            self.note_retry(sum(len(v) for v in outcome.pending.values()))
            wait = self.retry_policy.countdown(retries, outcome.retry_after)
            self._stopping.wait(wait)  # closing: the retries left are made without waiting
            pending = outcome.pending
            retries += 1

    # -- introspection and lifecycle ---------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters: ``received``, ``vetoed``, ``processor_errors``; ``published`` events and
        ``tasks``; ``failed`` (events never published, dead-lettered by the buffered node);
        ``delivered``/``retried``/``dead_lettered`` for batches delivered in this process
        (on a worker, or with ``memory://``); ``backends``: per backend, ``delivered`` and
        ``failed`` (dead-lettered) with ``memory://``, ``None`` when they run on workers;
        ``buffer``: the buffered node's own counters."""
        routed = super().stats()
        out: dict[str, Any] = {
            key: routed[key] for key in ("received", "vetoed", "processor_errors") if key in routed
        }
        with self._counts:
            out |= {
                "published": self._published,
                "tasks": self._tasks,
                "delivered": self._delivered,
                "retried": self._retried,
                "dead_lettered": self._dead_lettered,
                "lost": self._lost,
            }
            by_destination = {name: list(c) for name, c in self._by_destination.items()}
        # per backend, as a router reports them; on a publisher they run elsewhere: unknown
        out["backends"] = {
            name: {"delivered": None, "failed": None}
            if not self.in_process
            else _destination_counts(by_destination.get(name, [0, 0, 0]))
            for name in self.backends
        }
        buffer_stats: Mapping[str, Any] = self._buffer.stats()
        out["buffer"] = dict(buffer_stats)
        failed = buffer_stats.get("failed", 0)
        out["failed"] = (
            (failed if isinstance(failed, int) else 0) + out["dead_lettered"] + out["lost"]
        )
        return out

    def flush(self, timeout: float | None = None) -> None:
        """Publish (or, with ``memory://``, deliver) every queued event."""
        self._buffer.flush(timeout)
        super().flush(timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Publish what is queued within ``timeout`` (the rest is dead-lettered), then close
        the broker connections and the backends in the time left.

        With ``memory://``, a destination failing at this point gets the retries it has left
        without the waits between them.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self._stopping.set()
        try:
            self._buffer.close(timeout)
        finally:
            app = self._app.take()
            if app is not None:
                try:
                    app.close()
                except Exception as exc:
                    log.warning(
                        "closing the Celery app of %r failed: %s", self.path, type(exc).__name__
                    )
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            super().close(left)

    def _after_fork_in_child(self) -> None:
        renew = getattr(super(), "_after_fork_in_child", None)
        if callable(renew):
            renew()
        else:
            self._lock = threading.Lock()
        self._counts = threading.Lock()
        self._stopping = threading.Event()

    def __repr__(self) -> str:
        return (
            f"CeleryRouter(path={self.path!r}, queue={self.queue!r}, "
            f"backends={list(self.backends)!r})"
        )


class _Publisher:
    """What the buffered node delivers to: one task per batch."""

    def __init__(self, node: CeleryRouter) -> None:
        self._node = node

    def send(self, event: Event) -> None:
        self.send_batch([event])

    def send_batch(self, events: Sequence[Event]) -> None:
        self._node.publish(encode_batch(events), len(events))

    def __repr__(self) -> str:
        return f"celery publisher of {self._node.path!r}"


# -- helpers shared with the worker ------------------------------------------------------------


def configure_app(app: Any, node: CeleryRouter, *, publishing: bool) -> None:
    """Settings a publishing or a working Celery app needs for ``node``'s broker.

    A publisher tries to connect once, within seconds (the buffered node retries); a worker
    keeps Celery's own reconnecting, so it survives a broker restart.
    """
    transport = {**_PUBLISHING, **node.broker_options} if publishing else node.broker_options
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_default_queue=node.queue,
        worker_prefetch_multiplier=1,
        broker_transport_options=dict(transport),
        broker_connection_timeout=transport.get("socket_connect_timeout", 4),
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
    )


def _destination_counts(counts: list[int]) -> dict[str, int]:
    delivered, dead_lettered, lost = counts
    return {
        "delivered": delivered,
        "failed": dead_lettered + lost,
        "dead_lettered": dead_lettered,
        "lost": lost,
    }


def write_dead_letter(
    dead_letter: DeadLetterFile,
    events: Sequence[Event],
    *,
    destination: str,
    reason: str,
    attempts: int,
    first_failure: str | None,
) -> bool:
    """Write ``events`` to ``dead_letter`` as failed at ``destination``; never raises."""
    first = _parse_time(first_failure)
    return dead_letter.write_many(
        events,
        destination=destination,
        error=reason,
        attempts=attempts,
        first_failure=first,
        last_failure=dt.datetime.now(dt.UTC),
    )


def _parse_time(text: str | None) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def _require_celery() -> None:
    try:
        import celery  # noqa: F401
    except ImportError:
        raise MissingExtraError("the celery backend", "celery", "celery") from None


def _structure(backend: Any) -> Any:
    if isinstance(backend, RoutingBackend):
        return {
            "class": describe(backend),
            "processors": [describe(p) for p in backend.processors],
            "backends": {name: _structure(b) for name, b in backend.backends.items()},
        }
    return describe(backend)


def _digest(structure: Any) -> str:
    text = json.dumps(structure, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _as_written(node: Any) -> Any:
    options = {}
    for key, value in node.options.items():
        options[key] = node.written.get(key, value)
    return {
        "class": node.class_name,
        "enabled": node.enabled,
        "options": options,
        "processors": [_as_written(p) for p in node.processors],
        "backends": {name: _as_written(child) for name, child in node.backends.items()},
    }


def config_fingerprint(node: Any) -> str:
    """The fingerprint of a configuration node's subtree: its ``backends`` as written in the
    YAML (``${VAR}`` unexpanded, so hosts with different secrets agree)."""
    return _digest({name: _as_written(child) for name, child in node.backends.items()})
