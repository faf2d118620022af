"""RoutingBackend: copy the event, run the processor chain, fan out to named backends.

A router is itself a backend, so routing trees nest. Nothing that fails below a router
(a processor, a backend, a server) raises out of :meth:`RoutingBackend.send`: it is logged
once, with the event's name and id only, and counted in :meth:`RoutingBackend.stats`.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from eventrouter import _fork
from eventrouter.deadletter import DeadLetterFile
from eventrouter.errors import EventEmissionExit, EventRouterError
from eventrouter.event import copy_event
from eventrouter.lifecycle import run_within, with_timeout
from eventrouter.typing import Backend, Event

__all__ = ["RoutingBackend"]

log = logging.getLogger("eventrouter.routing")

ProcessorFn = Callable[[Event], Event | None]


def describe(obj: object) -> str:
    """A short, data-free label for a processor or backend, for logs."""
    target = (
        obj if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__qualname__")) else None
    )
    if target is None:
        target = type(obj)
    module = getattr(target, "__module__", "") or ""
    qualname = getattr(target, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{qualname}" if module else qualname


def _event_label(event: object) -> str:
    """``name=... id=...`` for logs; works for events without a name, or that are not dicts."""
    if isinstance(event, Mapping):
        return f"name={event.get('name')!r} id={event.get('id')!r}"
    return f"<{type(event).__name__} event>"


def _where(exc: BaseException) -> str:
    """``file:line`` of the frame that raised, so a log line locates a failure without data."""
    tb = exc.__traceback__
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


def _log_frames(exc: BaseException) -> None:
    """At DEBUG, the frames an exception passed through: where, never what (no message)."""
    if log.isEnabledFor(logging.DEBUG):
        frames = traceback.extract_tb(exc.__traceback__)
        log.debug(
            "%s raised through: %s",
            type(exc).__name__,
            " <- ".join(f"{f.filename}:{f.lineno} in {f.name}" for f in reversed(frames)),
        )


def _is_foreign_veto(exc: Exception) -> bool:
    """True for event-tracking's own ``EventEmissionExit``, so migrated processors still veto."""
    return type(exc).__name__ == "EventEmissionExit"


class RoutingBackend:
    """Copy each event, run it through processors, then send it to every backend.

    Args:
        backends: named backends (anything with ``send(event)``). A mapping is registered in
            ascending key order, which is the order events are delivered in.
        processors: callables run in order on each event. A processor may mutate the event,
            return a new one, or return ``None`` to keep the current one; raising
            :class:`~eventrouter.EventEmissionExit` vetoes the event for this router's branch.
        dead_letter: a :class:`~eventrouter.deadletter.DeadLetterFile` (or its path) where an
            event is written, with the backend's name and the error type, when a backend of
            this router fails on it. Without one, the failure is only logged and counted.

    ``send`` never raises for a failure downstream: processor errors are logged and counted
    and the chain continues with the event as it was; a failing backend is logged and
    counted and the other backends still receive the event.

    Since 0.1.
    """

    def __init__(
        self,
        backends: Mapping[str, Backend] | None = None,
        processors: Iterable[ProcessorFn] | None = None,
        dead_letter: DeadLetterFile | str | os.PathLike[str] | None = None,
    ) -> None:
        if dead_letter is not None and not isinstance(dead_letter, DeadLetterFile):
            dead_letter = DeadLetterFile(dead_letter)
        self.dead_letter: DeadLetterFile | None = dead_letter
        self.backends: dict[str, Backend] = {}
        self.processors: list[ProcessorFn] = []
        # The hot path reads these two tuples; they are rebuilt on registration.
        self._targets: tuple[tuple[str, Callable[[Event], Any]], ...] = ()
        self._chain: tuple[ProcessorFn, ...] = ()
        self._lock = threading.Lock()
        _fork.register(self)
        self.path = ""
        self._received = 0
        self._vetoed = 0
        self._processor_errors = 0
        self._failed: dict[str, int] = {}
        for name in sorted(backends or {}):
            self.register_backend(name, backends[name])  # type: ignore[index]
        for processor in processors or ():
            self.register_processor(processor)

    # -- building -------------------------------------------------------------------------

    def register_backend(self, name: str, backend: Backend) -> None:
        """Add (or replace) the backend called ``name``; keeps backends in name order.

        Raises:
            ValueError: ``backend`` has no callable ``send``.
        """
        send = getattr(backend, "send", None)
        if not callable(send):
            raise ValueError(
                f"backend {name!r} ({type(backend).__name__}) has no callable send(event): "
                "a backend is any object with a send(event) method"
            )
        with self._lock:
            self.backends[name] = backend
            self.backends = {key: self.backends[key] for key in sorted(self.backends)}
            self._failed.setdefault(name, 0)
            self._targets = tuple((key, b.send) for key, b in self.backends.items())
        bind = getattr(backend, "bind_path", None)
        if callable(bind):
            bind(f"{self.path}.{name}" if self.path else name)

    def bind_path(self, path: str) -> None:
        """Learn this router's dotted path in the tree, and re-bind every child under it."""
        self.path = path
        for name, backend in list(self.backends.items()):
            bind = getattr(backend, "bind_path", None)
            if callable(bind):
                bind(f"{path}.{name}" if path else name)

    def register_processor(self, processor: ProcessorFn) -> None:
        """Append ``processor`` to the chain.

        Raises:
            ValueError: ``processor`` is not callable.
        """
        if not callable(processor):
            raise ValueError(
                f"processor {processor!r} is not callable: a processor is any callable that "
                "takes the event and returns it, a new event, or None"
            )
        with self._lock:
            self.processors.append(processor)
            self._chain = tuple(self.processors)

    # -- the hot path ---------------------------------------------------------------------

    def send(self, event: Event) -> None:
        """Route a copy of ``event``: process it, then deliver it to every backend."""
        with self._lock:
            self._received += 1
        event = copy_event(event)
        try:
            event = self.process_event(event)
        except EventEmissionExit:
            with self._lock:
                self._vetoed += 1
            return
        self.send_to_backends(event)

    def process_event(self, event: Event) -> Event:
        """Run the processors in order and return the resulting event.

        Raises:
            EventEmissionExit: a processor vetoed the event.
        """
        for processor in self._chain:
            try:
                result = processor(event)
            except EventEmissionExit:
                raise
            except Exception as exc:
                if _is_foreign_veto(exc):
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
        """Deliver ``event`` to every backend in name order; one failure stops no other."""
        for name, send in self._targets:
            try:
                send(event)
            except Exception as exc:
                self._backend_failed(name, event, exc)

    # -- the failure path -----------------------------------------------------------------

    def _processor_failed(self, processor: object, event: Event, exc: Exception) -> None:
        with self._lock:
            self._processor_errors += 1
        log.error(
            "processor %s failed on event %s: %s at %s; the chain goes on with the event as "
            "the processor left it",
            describe(processor),
            _event_label(event),
            type(exc).__name__,
            _where(exc),
        )
        _log_frames(exc)

    def _backend_failed(self, name: str, event: Event, exc: Exception) -> None:
        with self._lock:
            self._failed[name] = self._failed.get(name, 0) + 1
        if self.dead_letter is None:
            outcome = "not kept: give the router a dead_letter file to keep such events"
        elif self.dead_letter.write(event, backend=name, error=exc):
            outcome = f"written to {self.dead_letter.path}"
        else:
            outcome = f"LOST: the dead-letter file {self.dead_letter.path} cannot be written"
        log.error(
            "backend %r failed on event %s: %s%s; %s",
            name,
            _event_label(event),
            type(exc).__name__,
            f" ({exc})" if _is_own_error(exc) else f" at {_where(exc)}",
            outcome,
        )
        _log_frames(exc)

    # -- introspection and lifecycle ------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters of this router and, nested, of its backends that keep their own.

        Returns a plain dict::

            {"received": n, "vetoed": n, "processor_errors": n,
             "backends": {name: {"delivered": n, "failed": n, "stats": {...}}}}

        ``failed`` counts the events the backend raised on, plus those it accepted and later
        gave up on, which an asynchronous backend reports as ``failed`` in its own ``stats()``
        (Segment's client, a buffered backend). ``delivered`` is the rest of the events routed
        to it: an event still queued or in flight counts as delivered until it fails.
        ``stats`` is present when the backend has a ``stats()`` of its own.
        """
        with self._lock:
            received, vetoed = self._received, self._vetoed
            processor_errors = self._processor_errors
            failed = dict(self._failed)
            backends = dict(self.backends)
        routed = received - vetoed
        out: dict[str, Any] = {
            "received": received,
            "vetoed": vetoed,
            "processor_errors": processor_errors,
            "backends": {},
        }
        for name, backend in backends.items():
            entry: dict[str, Any] = {"delivered": 0, "failed": failed.get(name, 0)}
            child_stats = getattr(backend, "stats", None)
            if callable(child_stats):
                own = child_stats()
                entry["stats"] = own
                later = own.get("failed") if isinstance(own, Mapping) else None
                if type(later) is int:
                    entry["failed"] += later
            entry["delivered"] = max(routed - entry["failed"], 0)
            out["backends"][name] = entry
        if self.dead_letter is not None:
            out["dead_letter"] = self.dead_letter.stats()
        return out

    def flush(self, timeout: float | None = None) -> None:
        """Ask every backend that buffers to deliver what it holds, all side by side,
        within ``timeout`` seconds in all (``None``: as long as they take)."""
        calls = [
            (f"flushing backend {name!r}", with_timeout(flush))
            for name, backend in list(self.backends.items())
            if callable(flush := getattr(backend, "flush", None))
        ]
        run_within(calls, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Close every backend that has a ``close()``, all side by side, within ``timeout``
        seconds in all; a ``close`` that takes a ``timeout`` is given the time left.
        Errors are logged, not raised; a close still running at the deadline is left behind."""
        calls = [
            (f"closing backend {name!r}", with_timeout(close))
            for name, backend in list(self.backends.items())
            if callable(close := getattr(backend, "close", None))
        ]
        run_within(calls, timeout)

    def __repr__(self) -> str:
        return (
            f"RoutingBackend(backends={list(self.backends)!r}, "
            f"processors={[describe(p) for p in self.processors]!r})"
        )


def _is_own_error(exc: Exception) -> bool:
    """Our own errors' messages are written to be safe to log (no event data)."""
    return isinstance(exc, EventRouterError)
