"""RoutingBackend: copy the event, run the processor chain, fan out to named backends.

A router is itself a backend, so routing trees nest. Nothing that fails below a router
(a processor, a backend, a server) raises out of :meth:`RoutingBackend.send`: it is logged
once, with the event's name and id only, and counted in :meth:`RoutingBackend.stats`.

``router.backends`` and ``router.processors`` are live: changing them in place (``router.
backends["x"] = b``, ``del router.backends["x"]``, ``router.processors.append(p)``) takes
effect for the next event (see :mod:`eventrouter.backends._containers`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from eventrouter import _fork
from eventrouter import signals as _signals
from eventrouter._loglabels import describe, event_label, frames, where
from eventrouter.backends._containers import BackendMap, ProcessorList
from eventrouter.deadletter import DeadLetterFile
from eventrouter.errors import EventEmissionExit, EventRouterError, is_veto
from eventrouter.event import copy_event
from eventrouter.lifecycle import run_within, with_timeout
from eventrouter.typing import Backend, Event, Processor

__all__ = ["BackendMap", "ProcessorList", "RoutingBackend"]

log = logging.getLogger("eventrouter.routing")


def _log_frames(exc: BaseException) -> None:
    """At DEBUG, the frames an exception passed through: where, never what (no message)."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s raised through: %s", type(exc).__name__, " <- ".join(reversed(frames(exc))))


class RoutingBackend:
    """Copy each event, run it through processors, then send it to every backend.

    Args:
        backends: named backends (anything with ``send(event)``). A mapping is registered in
            ascending key order, which is the order events are delivered in; backends
            registered later are appended after them.
        processors: callables run in order on each event. A processor may mutate the event,
            return a new one, or return ``None`` to keep the current one; raising
            :class:`~eventrouter.EventEmissionExit` (or event-tracking's) vetoes the event for
            this router's branch.
        dead_letter: a :class:`~eventrouter.deadletter.DeadLetterFile` (or its path) where an
            event is written, with the failing node's path and the error type, when a backend
            of this router fails on it. Without one, the failure is only logged and counted.

    ``send`` never raises for a failure downstream: processor errors are logged and counted
    and the chain continues with the event as it was; a failing backend is logged and
    counted and the other backends still receive the event.

    Attributes:
        path: this router's dotted node path in its tree; ``""`` for a root.
    """

    signals_outcomes = True
    """A router signals its own events (``emitted``), so its parent signals none for it."""

    def __init__(
        self,
        backends: Mapping[str, Backend] | None = None,
        processors: Iterable[Processor] | None = None,
        dead_letter: DeadLetterFile | str | os.PathLike[str] | None = None,
    ) -> None:
        if dead_letter is not None and not isinstance(dead_letter, DeadLetterFile):
            dead_letter = DeadLetterFile(dead_letter)
        self.dead_letter: DeadLetterFile | None = dead_letter
        self.path = ""
        self._lock = threading.Lock()
        _fork.register(self)
        # The hot path reads these two snapshots; a change to the backends or the processors
        # sets them to None and the next event takes a new one.
        self._targets: tuple[tuple[str, Callable[[Event], Any]], ...] | None = ()
        self._chain: tuple[Processor, ...] | None = ()
        self._backends = BackendMap(self)
        self._processors = ProcessorList(self)
        self._received = 0
        self._vetoed = 0
        self._processor_errors = 0
        self._internal_errors = 0
        self._failed: dict[str, int] = {}
        self._kept_by: dict[str, int] = {}
        self._lost_by: dict[str, int] = {}
        self._lost_why: dict[str, dict[str, int]] = {}
        self._backend_vetoes: dict[str, int] = {}
        # Per backend: which object it is, and the events routed before it was (counts
        # delivered from there); set as the hot path snapshots the targets after a change.
        self._known: dict[str, tuple[int, int]] = {}
        self._stats_errors: dict[str, int] = {}
        if backends:
            for name in sorted(backends):
                self._backends[name] = backends[name]
        if processors is not None:
            self._processors.extend(processors)

    # -- building -------------------------------------------------------------------------

    @property
    def backends(self) -> BackendMap:
        """The backends by name, in delivery order; change it in place to re-route."""
        return self._backends

    @backends.setter
    def backends(self, backends: Mapping[str, Backend]) -> None:
        fresh = BackendMap(self)
        fresh.update(backends)
        with self._lock:
            self._backends = fresh
            self._targets = None

    @property
    def processors(self) -> ProcessorList:
        """The processor chain, in order; change it in place to re-process."""
        return self._processors

    @processors.setter
    def processors(self, processors: Iterable[Processor]) -> None:
        fresh = ProcessorList(self)
        fresh.extend(processors)
        with self._lock:
            self._processors = fresh
            self._chain = None

    def register_backend(self, name: str, backend: Backend) -> None:
        """Append the backend called ``name``, or replace the one of that name in its place.

        Raises:
            ValueError: ``backend`` has no callable ``send``.
        """
        self._backends[name] = backend

    def register_processor(self, processor: Processor) -> None:
        """Append ``processor`` to the chain.

        Raises:
            ValueError: ``processor`` is not callable.
        """
        self._processors.append(processor)

    def bind_path(self, path: str) -> None:
        """Learn this router's dotted node path, and re-bind every child's below it."""
        with self._lock:
            self.path = path
            children = list(self._backends.items())
        for name, backend in children:
            self._bind_child(name, backend)

    def _child_path(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else str(name)

    def _bind_child(self, name: str, backend: object) -> None:
        # Looked up on the class: a stand-in such as a ``Mock`` answers every attribute.
        bind = getattr(type(backend), "bind_path", None)
        if callable(bind):
            bind(backend, self._child_path(name))

    def _snapshot_targets(self) -> tuple[tuple[str, Callable[[Event], Any]], ...]:
        with self._lock:
            targets = self._targets
            if targets is None:
                targets = self._targets = tuple(
                    (name, backend.send) for name, backend in self._backends.items()
                )
                self._note_backends()
        return targets

    def _note_backends(self) -> None:
        """With the lock held: a backend new under its name is counted from now on (the
        event being routed, counted in ``received`` already, is its first)."""
        known = self._known
        routed = max(self._received - self._vetoed - 1, 0)
        for name, backend in self._backends.items():
            entry = known.get(name)
            if entry is None or entry[0] != id(backend):
                known[name] = (id(backend), routed)
                if entry is not None:  # a replacement starts with counters of its own
                    for counts in (self._failed, self._kept_by, self._lost_by):
                        counts.pop(name, None)
                    self._lost_why.pop(name, None)
                    self._backend_vetoes.pop(name, None)
        for name in [name for name in known if name not in self._backends]:
            del known[name]

    def _snapshot_chain(self) -> tuple[Processor, ...]:
        with self._lock:
            chain = self._chain
            if chain is None:
                chain = self._chain = tuple(self._processors)
        return chain

    # -- the hot path ---------------------------------------------------------------------

    def send(self, event: Event) -> None:
        """Route a copy of ``event``: process it, then deliver it to every backend."""
        try:
            with self._lock:
                self._received += 1
            if _signals.watched and _signals.emitted.receivers:
                _signals.send(_signals.emitted, self.path, events=[event])
            event = copy_event(event)
            try:
                event = self.process_event(event)
            except Exception as exc:
                if not is_veto(exc):
                    raise
                with self._lock:
                    self._vetoed += 1
                if _signals.vetoed.receivers:
                    _signals.send(_signals.vetoed, self.path, events=[event])
                return
            self.send_to_backends(event)
        except Exception as exc:
            self._internal_failure(event, exc)

    def process_event(self, event: Event) -> Event:
        """Run the processors in order and return the resulting event.

        Raises:
            EventEmissionExit: a processor vetoed the event (event-tracking's exception, and
                its subclasses, are raised as ours).
        """
        chain = self._chain
        if chain is None:
            chain = self._snapshot_chain()
        for processor in chain:
            try:
                result = processor(event)
            except EventEmissionExit:
                raise
            except Exception as exc:
                if is_veto(exc):
                    raise EventEmissionExit from exc
                self._processor_failed(processor, event, exc)
                continue
            if result is not None:
                if isinstance(result, dict):
                    event = result
                else:
                    self._processor_failed(
                        processor,
                        event,
                        TypeError(
                            f"returned {type(result).__name__}; a processor returns the event, "
                            "a new dict or None"
                        ),
                    )
        return event

    def send_to_backends(self, event: Event) -> None:
        """Deliver ``event`` to every backend in order; one failure stops no other.

        A backend that raises a veto (a router of another library that does not catch it)
        has vetoed the event: counted, not a failure.
        """
        targets = self._targets
        if targets is None:
            targets = self._snapshot_targets()
        if _signals.watched:
            self._send_watched(targets, event)
            return
        for name, send in targets:
            try:
                send(event)
            except Exception as exc:
                self._backend_failed(name, event, exc)

    def _send_watched(
        self, targets: tuple[tuple[str, Callable[[Event], Any]], ...], event: Event
    ) -> None:
        """:meth:`send_to_backends` while signal receivers are connected: also signals
        ``delivered`` for each backend that does not signal its own outcomes."""
        backends = self._backends
        for name, send in targets:
            drops = _signals.leaf_drops()
            try:
                send(event)
            except Exception as exc:
                self._backend_failed(name, event, exc)
                continue
            if (
                _signals.delivered.receivers
                and _signals.leaf_drops() == drops  # the backend dropped it itself: signalled
                and not getattr(type(backends.get(name)), "signals_outcomes", False)
            ):
                _signals.send(_signals.delivered, self._child_path(name), events=[event])

    # -- the failure path -----------------------------------------------------------------

    def _processor_failed(self, processor: object, event: Event, exc: Exception) -> None:
        with self._lock:
            self._processor_errors += 1
        log.error(
            "processor %s failed on event %s: %s at %s; the chain goes on with the event as "
            "the processor left it",
            describe(processor),
            event_label(event),
            type(exc).__name__,
            where(exc),
        )
        _log_frames(exc)

    def _backend_failed(self, name: str, event: Event, exc: Exception) -> None:
        """Count, dead-letter and log once a backend's failure; never raises."""
        try:
            path = self._child_path(name)
            if is_veto(exc):
                with self._lock:
                    self._backend_vetoes[name] = self._backend_vetoes.get(name, 0) + 1
                if _signals.vetoed.receivers:
                    _signals.send(_signals.vetoed, path, events=[event])
                return
            with self._lock:
                self._failed[name] = self._failed.get(name, 0) + 1
            if self.dead_letter is None:
                outcome = "not kept: give the router a dead_letter file to keep such events"
                reason = _signals.Reason.NO_DEAD_LETTER
            elif self.dead_letter.write(event, destination=path, error=exc):
                outcome = f"written to {self.dead_letter.path}"
                reason = None
            else:
                outcome = f"LOST: the dead-letter file {self.dead_letter.path} cannot be written"
                reason = _signals.Reason.DEAD_LETTER_UNWRITABLE
            with self._lock:
                kept = self._lost_by if reason else self._kept_by
                kept[name] = kept.get(name, 0) + 1
                if reason:
                    why = self._lost_why.setdefault(name, {})
                    why[reason] = why.get(reason, 0) + 1
            if _signals.watched:
                self._signal_failure(path, event, exc, reason)
            log.error(
                "backend %r failed on event %s: %s%s; %s",
                path,
                event_label(event),
                type(exc).__name__,
                f" ({exc})" if _is_own_error(exc) else f" at {where(exc)}",
                outcome,
            )
            _log_frames(exc)
        except Exception as inner:
            self._internal_failure(event, inner)

    def _signal_failure(
        self, path: str, event: Event, exc: Exception, lost: _signals.Reason | None
    ) -> None:
        """Signal ``failed``, then ``dead_lettered`` or (``lost`` says why) ``dropped``."""
        error = _signals.error_info(exc)
        events = [event]
        reason = _signals.Reason.BACKEND_ERROR
        _signals.send(_signals.failed, path, events=events, error=error, reason=reason)
        if lost is None:
            _signals.send(_signals.dead_lettered, path, events=events, error=error, reason=reason)
        else:
            _signals.send(_signals.dropped, path, events=events, error=error, reason=lost)

    def _internal_failure(self, event: object, exc: Exception) -> None:
        """The last resort for a failure in the router's own machinery: count, keep, log once.

        The event is dead-lettered to this router's own path (replaying it routes it through
        this router again). Never raises.
        """
        try:
            with self._lock:
                self._internal_errors += 1
            if _signals.watched and isinstance(event, dict):
                _signals.send(
                    _signals.failed,
                    self.path,
                    events=[event],
                    error=_signals.error_info(exc),
                    reason=_signals.Reason.INTERNAL,
                )
            kept = ""
            dead_letter = self.dead_letter
            if dead_letter is not None and isinstance(event, dict):
                try:
                    written = dead_letter.write(event, destination=self.path, error=exc)
                except Exception:
                    written = False
                kept = (
                    f"; written to {dead_letter.path}"
                    if written
                    else f"; LOST: the dead-letter file {dead_letter.path} cannot be written"
                )
            log.error(
                "router %r could not route event %s: %s at %s%s",
                self.path,
                event_label(event),
                type(exc).__name__,
                where(exc),
                kept,
            )
        except Exception:
            pass  # the one place that must not raise, not even to log

    # -- introspection and lifecycle ------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters of this router and, nested, of its backends that keep their own.

        Returns a plain dict::

            {"received": n, "vetoed": n, "processor_errors": n, "internal_errors": n,
             "backends": {name: {"delivered": n, "failed": n, "vetoed": n,
                                 "dead_lettered": n, "lost": n, "stats": {...}}}}

        ``failed`` counts the events the backend raised on, plus, for a node that settles its
        own outcomes (a buffered node, a router), those it accepted and later gave up on
        (its own ``stats()["failed"]``); for another backend with a ``failed`` of its own
        (which may count what it raised too), the larger of the two. ``delivered`` is the
        rest of the events routed to it since it was registered: an event still queued or in
        flight counts as delivered until it fails. ``lost_by`` splits ``lost`` by reason;
        ``stats_errors`` (present once it happened) counts the times the backend's own
        ``stats()`` raised.
        A backend's ``vetoed`` counts the events it raised a veto on (a router of another
        library that lets the veto through); ``dead_lettered`` and ``lost`` split the events
        it raised on into those this router's dead-letter file kept and those it did not.
        ``stats`` is present when the backend has a ``stats()`` of its own.
        """
        with self._lock:
            received, vetoed = self._received, self._vetoed
            processor_errors = self._processor_errors
            internal_errors = self._internal_errors
            failed = dict(self._failed)
            dead_lettered = dict(self._kept_by)
            lost = dict(self._lost_by)
            lost_why = {
                name: {str(k): v for k, v in why.items()} for name, why in self._lost_why.items()
            }
            backend_vetoes = dict(self._backend_vetoes)
            backends = dict(self._backends)
            known = dict(self._known)
        routed = received - vetoed
        out: dict[str, Any] = {
            "received": received,
            "vetoed": vetoed,
            "processor_errors": processor_errors,
            "internal_errors": internal_errors,
            "backends": {},
        }
        for name, backend in backends.items():
            entry: dict[str, Any] = {
                "delivered": 0,
                "failed": failed.get(name, 0),
                "vetoed": backend_vetoes.get(name, 0),
                "dead_lettered": dead_lettered.get(name, 0),
                "lost": lost.get(name, 0),
                "lost_by": lost_why.get(name, {}),
            }
            child_stats = getattr(backend, "stats", None)
            if callable(child_stats):
                own = self._child_stats(name, child_stats)
                if own is not None:
                    entry["stats"] = own
                # A node that settles its own outcomes (buffered, a router) raises nothing:
                # what it gave up on is its own ``failed``. Any other backend's ``failed`` may
                # count what it raised too (Segment sent synchronously): the larger one.
                later = own.get("failed") if isinstance(own, Mapping) else None
                if type(later) is int:
                    if getattr(type(backend), "signals_outcomes", False):
                        entry["failed"] += later
                    else:
                        entry["failed"] = max(entry["failed"], later)
            if name in self._stats_errors:
                entry["stats_errors"] = self._stats_errors[name]
            mine = known.get(name)
            since = routed - (mine[1] if mine is not None and mine[0] == id(backend) else routed)
            entry["delivered"] = max(since - entry["failed"] - entry["vetoed"], 0)
            out["backends"][name] = entry
        if self.dead_letter is not None:
            out["dead_letter"] = self.dead_letter.stats()
        return out

    def _child_stats(self, name: str, child_stats: Callable[[], Any]) -> Any:
        """A backend's own ``stats()``; ``None`` (counted, logged once) when it raises."""
        try:
            return child_stats()
        except Exception as exc:
            with self._lock:
                errors = self._stats_errors[name] = self._stats_errors.get(name, 0) + 1
            if errors == 1:
                log.error(
                    "stats() of backend %r raised %s; its own numbers are left out (counted "
                    "in stats()['backends'][%r]['stats_errors'], logged once)",
                    self._child_path(name),
                    type(exc).__name__,
                    name,
                )
            return None

    def flush(self, timeout: float | None = None) -> None:
        """Ask every backend that buffers to deliver what it holds, all side by side,
        within ``timeout`` seconds in all (``None``: as long as they take)."""
        with self._lock:
            children = list(self._backends.items())
        calls = [
            (f"flushing backend {name!r}", with_timeout(flush))
            for name, backend in children
            if callable(flush := getattr(backend, "flush", None))
        ]
        run_within(calls, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Close every backend that has a ``close()``, all side by side, within ``timeout``
        seconds in all; a ``close`` that takes a ``timeout`` is given the time left.
        Errors are logged, not raised; a close still running at the deadline is left behind."""
        with self._lock:
            children = list(self._backends.items())
        calls = [
            (f"closing backend {name!r}", with_timeout(close))
            for name, backend in children
            if callable(close := getattr(backend, "close", None))
        ]
        run_within(calls, timeout)

    def __repr__(self) -> str:
        return (
            f"RoutingBackend(backends={list(self._backends)!r}, "
            f"processors={[describe(p) for p in self._processors]!r})"
        )


def _is_own_error(exc: Exception) -> bool:
    """Our own errors' messages are written to be safe to log (no event data)."""
    return isinstance(exc, EventRouterError)
