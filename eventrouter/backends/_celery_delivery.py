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
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventrouter import signals as _signals
from eventrouter.backends._celery_settings import RetryPolicy
from eventrouter.backends.buffered import BufferedBackend, is_retryable
from eventrouter.backends.routing import RoutingBackend
from eventrouter.deadletter import DeadLetterFile
from eventrouter.errors import EventEmissionExit, PartialDeliveryError, is_veto
from eventrouter.event import copy_event
from eventrouter.typing import Backend, Event

if TYPE_CHECKING:
    import threading

__all__ = ["BatchOutcome", "DeliveringNode", "write_dead_letter"]

log = logging.getLogger("eventrouter.celery")

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
            before = outcome.delivered
            self._deliver_leaf(path, leaf, events, indexes, outcome, attempt, first_failure)
            self._count(path, delivered=outcome.delivered - before)
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
            if _signals.watched and _signals.delivered.receivers:
                failed_at = {position for position, _ in failures}
                accepted = [batch[i] for n, i in enumerate(part) if n not in failed_at]
                self._signal(_signals.delivered, path, accepted)
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

    def _signal(self, signal: Any, path: str, events: Sequence[Event], **kwargs: Any) -> None:
        """Send ``signal`` for the events of the leaf ``path`` (when it has receivers)."""
        if events and _signals.watched and signal.receivers:
            destination = f"{self.path}.{path}" if self.path else path
            _signals.send(signal, destination, events=list(events), **kwargs)

    def _count(
        self, path: str, *, delivered: int = 0, dead_lettered: int = 0, lost: int = 0
    ) -> None:
        """Add to the counts of the leaf ``path``: delivered, dead-lettered, lost."""
        with self._counts:
            counts = self._by_destination.setdefault(path, [0, 0, 0])
            counts[0] += delivered
            counts[1] += dead_lettered
            counts[2] += lost

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
        """Write ``events`` as failed at the leaf ``path``; the number written (the first
        ones). Counts them per leaf as dead-lettered, the rest as lost, and signals
        ``failed``, then ``dead_lettered`` and ``dropped`` for the rest."""
        destination = f"{self.path}.{path}" if self.path else path
        reason = error if isinstance(error, str) else type(error).__name__
        ids = ", ".join(repr(e.get("id")) for e in events[:3]) + (" ..." if len(events) > 3 else "")
        written = 0
        lost: _signals.Reason | None = None
        if self.dead_letter is None:
            where = "LOST: no dead_letter file is configured"
            lost = _signals.Reason.NO_DEAD_LETTER
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
        missing = len(events) - written
        if missing and lost is None:
            lost = _signals.Reason.DEAD_LETTER_UNWRITABLE
        self._count(path, dead_lettered=written, lost=missing)
        if missing:
            with self._counts:
                self._lost += missing
        if _signals.watched:  # events are kept for a signal only while it has receivers
            permanent = not isinstance(error, str)
            why = _signals.Reason.PERMANENT if permanent else _signals.Reason.RETRIES_EXHAUSTED
            info = _signals.ErrorInfo(reason, permanent)
            self._signal(_signals.failed, path, events, error=info, reason=why)
            self._signal(_signals.dead_lettered, path, events[:written], error=info, reason=why)
            self._signal(_signals.dropped, path, events[written:], error=info, reason=lost)
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
