"""The delivering side of a celery node: what a worker (or ``memory://``) does with a batch.

A task is acknowledged only when every destination of the node's subtree, at every depth,
has its events or has them in the dead letter. So the subtree is delivered *synchronously*,
leaf by leaf: buffered nodes are unwrapped (their queue would acknowledge the task before
their backend has the events), the processors of the routers on the way to a leaf run on
the event first, and a celery node nested in the subtree publishes its task before this one
is acknowledged. A leaf that fails is not swallowed by the router above it: its events stay
pending under the leaf's path (``sub.mongo``) for the task's retry.

Failures are classified as buffered nodes classify them
(:func:`~eventrouter.backends.buffered.is_retryable`); a batch failing permanently is split
in halves until the poison events are alone, and a backend's
:class:`~eventrouter.errors.PartialDeliveryError` fails only the events it names.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventrouter.backends.buffered import BufferedBackend, is_retryable
from eventrouter.backends.routing import RoutingBackend, describe
from eventrouter.deadletter import DeadLetterFile
from eventrouter.errors import EventEmissionExit, OptionError, PartialDeliveryError, is_veto
from eventrouter.event import copy_event
from eventrouter.typing import Backend, Event

if TYPE_CHECKING:
    import threading

__all__ = ["BatchOutcome", "RetryPolicy"]

log = logging.getLogger("eventrouter.celery")

PUBLISHING = {"max_retries": 0, "socket_connect_timeout": 5, "socket_timeout": 10}
"""Transport options of publishers: one bounded attempt (the buffered node retries)."""

PYTHON_FINGERPRINT = "py-"
"""The prefix of the fingerprint of a celery node built in Python, not from YAML: a worker
(always built from YAML) never matches it, and says so."""


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
            wait = random.uniform(0, wait)
        if retry_after is not None and retry_after > wait:
            wait = min(float(retry_after), max(self.backoff_max, float(retry_after)))
        return wait


# -- the subtree as leaves ----------------------------------------------------------------


@dataclass
class BatchOutcome:
    """What one attempt at delivering a batch to a subtree did.

    Destinations are the leaves of the subtree, by their path under the celery node
    (``mongo``, ``sub.mongo``).

    Attributes:
        delivered: events acknowledged, counted once per destination.
        dead_lettered: events written to the dead letter (failed permanently), per destination.
        pending: for each destination that failed in a way worth retrying, the indexes (in the
            batch) of the events still to deliver to it.
        errors: the exception type of each pending destination's last failure.
        retry_after: the longest wait a failing backend asked for, if any.
        unsettled: per destination, the indexes of events that failed for good but that the
            dead letter could not take: the task must not be acknowledged for them.
        vetoed: events a processor of a router inside the subtree vetoed (settled).
    """

    delivered: int = 0
    dead_lettered: int = 0
    pending: dict[str, list[int]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None
    unsettled: dict[str, list[int]] = field(default_factory=dict)
    vetoed: int = 0


@dataclass(frozen=True, slots=True)
class _Leaf:
    top: str  # the name of the node's own backend this leaf is under
    routers: tuple[RoutingBackend, ...]  # whose processors run first, outermost first
    backend: Backend


class _Publish:
    """A nested celery node as a leaf: its processors ran already; publishing the batch is
    its delivery (the outer task is acknowledged only once the inner one is published)."""

    def __init__(self, replay_batch: Callable[[Sequence[Event]], Any]) -> None:
        self.send_batch = replay_batch

    def send(self, event: Event) -> None:
        self.send_batch([event])


def leaves(node: RoutingBackend) -> dict[str, _Leaf]:
    """The destinations of ``node``'s subtree, by path under it, delivered directly."""
    found: dict[str, _Leaf] = {}

    def visit(router: RoutingBackend, prefix: str, top: str, chain: tuple[Any, ...]) -> None:
        for name, child in router.backends.items():
            path = f"{prefix}{name}"
            first = top or name
            inner = child.backend if isinstance(child, BufferedBackend) else child
            if isinstance(inner, RoutingBackend):
                publish = getattr(inner, "replay_batch", None)
                if callable(publish):
                    found[path] = _Leaf(first, (*chain, inner), _Publish(publish))
                else:
                    visit(inner, f"{path}.", first, (*chain, inner))
            else:
                found[path] = _Leaf(first, chain, inner)

    visit(node, "", "", ())
    return found


def _through(leaf: _Leaf, event: Event) -> Event:
    """A copy of ``event`` as ``leaf`` receives it: through the processors above it.

    Raises:
        EventEmissionExit: a processor vetoed it.
    """
    event = copy_event(event)
    for router in leaf.routers:
        event = router.process_event(event)
    return event


def _attempt(backend: Backend, batch: Sequence[Event]) -> list[tuple[int, BaseException]]:
    """Deliver ``batch`` once; the positions that failed, each with its error."""
    send_batch = getattr(backend, "send_batch", None)
    if callable(send_batch):
        try:
            send_batch(list(batch))
        except PartialDeliveryError as exc:
            failed = sorted({i for i in exc.failed if 0 <= i < len(batch)}) or range(len(batch))
            return [(i, exc) for i in failed]
        except Exception as exc:
            return [(i, exc) for i in range(len(batch))]
        return []
    failures: list[tuple[int, BaseException]] = []
    for position, event in enumerate(batch):
        try:
            backend.send(event)
        except Exception as exc:
            failures.append((position, exc))
    return failures


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


# -- delivery -----------------------------------------------------------------------------


class DeliveringNode:
    """The worker-side half of :class:`~eventrouter.backends.celery.CeleryRouter`."""

    path: str
    dead_letter: DeadLetterFile | None
    retry_policy: RetryPolicy
    _counts: threading.Lock
    _stopping: threading.Event
    _delivered: int
    _retried: int
    _dead_lettered: int
    _lost: int
    _by_destination: dict[str, list[int]]

    def deliver(
        self,
        events: Sequence[Event],
        pending: Mapping[str, Sequence[int]] | None = None,
        *,
        attempt: int = 1,
        first_failure: str | None = None,
    ) -> BatchOutcome:
        """Deliver ``events`` once to every destination of the subtree (or those in
        ``pending``, a destination's path or one above it, and only the events listed there);
        failures are not raised but returned, permanent ones dead-lettered at once."""
        outcome = BatchOutcome()
        for path, leaf in leaves(self).items():  # type: ignore[arg-type]
            if pending is None:
                indexes = list(range(len(events)))
            else:
                keys = [k for k in pending if path == k or path.startswith(f"{k}.")]
                if not keys:
                    continue
                indexes = sorted({i for k in keys for i in pending[k] if 0 <= i < len(events)})
            before = (outcome.delivered, outcome.dead_lettered)
            self._deliver_leaf(path, leaf, events, indexes, outcome, attempt, first_failure)
            self._count(
                leaf.top,
                delivered=outcome.delivered - before[0],
                dead_lettered=outcome.dead_lettered - before[1],
            )
        with self._counts:
            self._delivered += outcome.delivered
            self._dead_lettered += outcome.dead_lettered
        return outcome

    def _deliver_leaf(  # noqa: PLR0917 - one leaf, one batch, one outcome
        self,
        path: str,
        leaf: _Leaf,
        events: Sequence[Event],
        indexes: list[int],
        outcome: BatchOutcome,
        attempt: int,
        first_failure: str | None,
    ) -> None:
        batch: dict[int, Event] = {}
        for index in indexes:
            try:
                batch[index] = _through(leaf, events[index])
            except EventEmissionExit:
                outcome.vetoed += 1
            except Exception as exc:  # a veto of another library's kind
                if not is_veto(exc):
                    raise
                outcome.vetoed += 1
        splits = callable(getattr(leaf.backend, "send_batch", None))
        parts = [sorted(batch)] if batch else []
        while parts:
            part = parts.pop()
            failures = _attempt(leaf.backend, [batch[i] for i in part])
            outcome.delivered += len(part) - len(failures)
            permanent: list[tuple[int, BaseException]] = []
            for position, error in failures:
                if is_retryable(error):
                    self._note_retry(path, [part[position]], error, outcome)
                else:
                    permanent.append((part[position], error))
            if len(permanent) > 1 and splits:  # maybe one poison event: each half alone
                failed = [index for index, _ in permanent]
                middle = len(failed) // 2
                parts += [failed[middle:], failed[:middle]]
                continue
            for index, error in permanent:
                if self._dead_letter([batch[index]], path, error, attempt, first_failure):
                    outcome.dead_lettered += 1
                else:
                    outcome.unsettled.setdefault(path, []).append(index)

    def _count(self, name: str, *, delivered: int = 0, dead_lettered: int = 0) -> None:
        with self._counts:
            counts = self._by_destination.setdefault(name, [0, 0])
            counts[0] += delivered
            counts[1] += dead_lettered

    def _note_retry(
        self, path: str, indexes: list[int], exc: BaseException, outcome: BatchOutcome
    ) -> None:
        outcome.pending.setdefault(path, []).extend(indexes)
        outcome.errors[path] = type(exc).__name__
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
        """Dead-letter what ``outcome`` left pending (as each destination receives it);
        returns how many events were written. What the dead letter could not take is moved
        to ``outcome.unsettled``."""
        total = 0
        known = leaves(self)  # type: ignore[arg-type]
        for path, indexes in outcome.pending.items():
            leaf = known.get(path)
            failed: list[tuple[int, Event]] = []
            for index in indexes:
                try:
                    failed.append(
                        (index, events[index] if leaf is None else _through(leaf, events[index]))
                    )
                except Exception:  # vetoed now: nothing to deliver any more
                    continue
            error = outcome.errors.get(path, "DeliveryError")
            written = self._dead_letter(
                [event for _, event in failed], path, error, attempts, first_failure
            )
            if written < len(failed):
                outcome.unsettled.setdefault(path, []).extend(i for i, _ in failed[written:])
            if leaf is not None:
                self._count(leaf.top, dead_lettered=written)
            total += written
        with self._counts:
            self._dead_lettered += total
        return total

    def _dead_letter(
        self,
        events: Sequence[Event],
        path: str,
        error: BaseException | str,
        attempts: int,
        first_failure: str | None,
    ) -> int:
        """Write ``events`` as failed at the leaf ``path``; the number written."""
        destination = f"{self.path}.{path}" if self.path else path
        reason = error if isinstance(error, str) else type(error).__name__
        ids = ", ".join(repr(e.get("id")) for e in events[:3]) + (" ..." if len(events) > 3 else "")
        written = 0
        if self.dead_letter is None:
            where = "LOST: no dead_letter file is configured"
        else:
            written = write_dead_letter(
                self.dead_letter,
                events,
                destination=destination,
                reason=reason,
                attempts=attempts,
                first_failure=first_failure,
            )
            where = (
                f"written to {self.dead_letter.path}"
                if written == len(events)
                else f"{len(events) - written} NOT WRITTEN: the dead-letter file "
                f"{self.dead_letter.path} cannot be written"
            )
        if written < len(events):
            with self._counts:
                self._lost += len(events) - written
        log.error(
            "destination %r gave up on %d event(s) (ids %s) after %d attempt(s): %s; %s",
            destination,
            len(events),
            ids,
            attempts,
            reason,
            where,
        )
        return written

    def note_retry(self, count: int) -> None:
        """Count ``count`` events scheduled to be delivered again."""
        with self._counts:
            self._retried += count

    def run_in_process(self, payload: str) -> None:
        """Deliver an encoded batch here, retrying with the task's policy (``memory://``)."""
        from eventrouter.backends._celery_codec import decode_batch

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


# -- helpers shared with the worker ------------------------------------------------------------


def configure_app(app: Any, node: Any, *, publishing: bool) -> None:
    """Settings a publishing or a working Celery app needs for ``node``'s broker.

    A publisher tries to connect once, within seconds (the buffered node retries); a worker
    keeps Celery's own reconnecting, so it survives a broker restart.
    """
    options: Mapping[str, Any] = node.broker_options
    transport = {**PUBLISHING, **options} if publishing else dict(options)
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


def write_dead_letter(
    dead_letter: DeadLetterFile,
    events: Sequence[Event],
    *,
    destination: str,
    reason: str,
    attempts: int,
    first_failure: str | None,
) -> int:
    """Write ``events`` to ``dead_letter`` as failed at ``destination``; the number written
    (``events[:n]``); never raises."""
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


# -- fingerprints -------------------------------------------------------------------------


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


def python_fingerprint(node: RoutingBackend) -> str:
    """The fingerprint of a celery node built in Python: ``py-`` and a hash of the classes
    and names of its subtree. Workers, built from YAML, refuse it with a message saying so."""
    return PYTHON_FINGERPRINT + _digest(_structure(node))


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
