"""The Tracker: builds event envelopes with the current context and routes them.

App code registers one tracker at start-up and then emits from anywhere::

    from eventrouter import tracker
    tracker.register_tracker(eventrouter.load("routing.yaml"))
    ...
    tracker.emit("video.played", {"video_id": "abc"})

Contexts entered with :meth:`Tracker.context` (or ``enter_context``/``exit_context``) live in a
:class:`contextvars.ContextVar`, so they are private to the thread and the asyncio task that
entered them. As in event-tracking, entering a name already entered replaces that context in
its place, and the mapping entered is the one read at each emit, so later changes to it show.

Inside ``with tracker.muted():`` the tracker drops what is emitted, before any processor
runs (the web integrations mute the requests to ``ignore_paths``, such as health checks).
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from eventrouter import _fork
from eventrouter.backends.routing import RoutingBackend
from eventrouter.deadletter import DeadLetterFile
from eventrouter.errors import TrackerNotRegisteredError
from eventrouter.event import build_event
from eventrouter.lifecycle import remaining
from eventrouter.typing import Backend, Event, Processor

__all__ = ["Tracker", "emit", "get_tracker", "register_tracker", "unregister_tracker"]

log = logging.getLogger("eventrouter.tracker")

# The entered contexts, oldest first: (name, the mapping entered). An immutable tuple, so a
# thread or task that copies the contextvars context keeps its own; the mappings themselves
# are the caller's objects, read at each emit.
_Stack = tuple[tuple[str, Mapping[str, Any]], ...]
_EMPTY: _Stack = ()


class Tracker:
    """Emits events into a routing tree, adding the context entered around the call.

    Args:
        backends: named backends of the root router (see :class:`RoutingBackend`).
        processors: the root router's processor chain.
        dead_letter: the root router's dead-letter file (see :class:`RoutingBackend`).
        router: an already built root router, instead of ``backends``/``processors``
            (used by :func:`eventrouter.load`).
    """

    def __init__(
        self,
        backends: Mapping[str, Backend] | None = None,
        processors: Iterable[Processor] | None = None,
        *,
        dead_letter: DeadLetterFile | str | os.PathLike[str] | None = None,
        router: RoutingBackend | None = None,
    ) -> None:
        if router is not None and (backends or processors or dead_letter):
            raise TypeError("give either router or backends/processors/dead_letter, not both")
        self.router = (
            router if router is not None else RoutingBackend(backends, processors, dead_letter)
        )
        self._stack: contextvars.ContextVar[_Stack] = contextvars.ContextVar(
            f"eventrouter_context_{id(self):x}", default=_EMPTY
        )
        self._muted: contextvars.ContextVar[bool] = contextvars.ContextVar(
            f"eventrouter_muted_{id(self):x}", default=False
        )
        self._lock = threading.Lock()
        _fork.register(self)
        self._internal_errors = 0
        self._muted_events = 0

    # -- the tree ---------------------------------------------------------------------------

    @property
    def backends(self) -> dict[str, Backend]:
        """The root router's backends, by name; changes made in place take effect."""
        return self.router.backends

    @property
    def processors(self) -> list[Processor]:
        """The root router's processor chain; changes made in place take effect."""
        return self.router.processors

    def get_backend(self, name: str) -> Backend:
        """The root backend called ``name``.

        Raises:
            KeyError: no backend has that name; the message lists the ones that exist.
        """
        try:
            return self.router.backends[name]
        except KeyError:
            known = ", ".join(sorted(self.router.backends)) or "none"
            raise KeyError(f"no backend named {name!r} (backends: {known})") from None

    # -- emitting ---------------------------------------------------------------------------

    def emit(self, name: str, data: Mapping[str, Any] | None = None) -> None:
        """Build an event from ``name``, ``data`` and the current context, and route it.

        Raises only for programmer errors, at once: ``TypeError`` when ``name`` is not a
        ``str`` or ``data`` not a mapping (or ``None``), ``ValueError`` when ``name`` is empty;
        inside a :meth:`muted` block too. Failures downstream are logged and counted, never
        raised.
        """
        event = build_event(name, data, context=_merge(self._stack.get()))
        if self._muted.get():
            self._count_muted()
            return
        try:
            self.router.send(event)
        except Exception as exc:
            self._routing_failed(event, exc)

    def send(self, event: Event) -> None:
        """Route an already built envelope (from :func:`eventrouter.event.build_event`).

        Used to replay or import events that keep their own id, timestamp and context.
        Like :meth:`emit`, it never raises for a failure downstream, and drops the event
        inside a :meth:`muted` block.
        """
        if self._muted.get():
            self._count_muted()
            return
        try:
            self.router.send(event)
        except Exception as exc:
            self._routing_failed(event, exc)

    def muted(self) -> AbstractContextManager[None]:
        """``with tracker.muted():`` drops every event this tracker is given in the block.

        Like a context, it holds in this thread or asyncio task, and in the code that runs
        with a copy of its context (tasks it creates, :mod:`eventrouter.integrations.threads`),
        for this tracker only. The events never reach the root router: no processor sees
        them, no signal is sent, :func:`eventrouter.testing.capture_events` does not capture
        them; they are counted as ``muted`` in :meth:`stats`. Programmer errors still raise.
        Blocks nest. The web integrations enter one around each request to ``ignore_paths``.
        """
        return _Mute(self._muted)

    def _count_muted(self) -> None:
        with self._lock:
            self._muted_events += 1

    def _routing_failed(self, event: Event, exc: Exception) -> None:
        """The root router raised (only a router that is not ours can): count, log once."""
        with self._lock:
            self._internal_errors += 1
        try:
            label = f"name={event.get('name')!r} id={event.get('id')!r}"
        except Exception:
            label = "<unreadable event>"
        log.error(
            "the root router %s raised %s on event %s; the event was not routed",
            type(self.router).__name__,
            type(exc).__name__,
            label,
        )

    # -- context ----------------------------------------------------------------------------

    def enter_context(self, name: str, ctx: Mapping[str, Any]) -> None:
        """Enter ``ctx`` as the context called ``name`` for this thread or asyncio task.

        A name already entered is replaced in its place (contexts entered after it still
        win). ``ctx`` itself is kept, not copied: changes made to it later show in the
        events emitted afterwards.

        Raises:
            TypeError: ``ctx`` is not a mapping.
        """
        if not isinstance(ctx, Mapping):
            raise TypeError(f"context must be a mapping, not {type(ctx).__name__}")
        self._stack.set(_put(self._stack.get(), name, ctx))

    def exit_context(self, name: str) -> None:
        """Remove the context called ``name``.

        Raises:
            KeyError: no context of that name is entered in this thread or task.
        """
        entries = self._stack.get()
        kept = tuple(entry for entry in entries if entry[0] != name)
        if len(kept) == len(entries):
            raise KeyError(f"no context named {name!r} is entered here")
        self._stack.set(kept)

    def context(self, name: str, ctx: Mapping[str, Any]) -> AbstractContextManager[None]:
        """``with tracker.context("request", {...}):`` enters ``ctx`` for the block.

        On leaving the block the context called ``name`` is what it was before the block
        (absent, or the mapping entered earlier, in its place); contexts entered under other
        names inside the block stay.

        Raises:
            TypeError: ``ctx`` is not a mapping (on entering the block).
        """
        return _Block(self._stack, name, ctx)

    def resolve_context(self) -> dict[str, Any]:
        """The merged context of this thread or task; later entries win. A new dict."""
        return _merge(self._stack.get())

    # -- lifecycle ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The counters of the whole tree (see :meth:`RoutingBackend.stats`).

        ``internal_errors`` also counts the events a root router of another kind raised on;
        ``muted`` counts the events dropped inside :meth:`muted` blocks (never routed, so
        in no other counter).
        """
        out = dict(self.router.stats())
        with self._lock:
            internal = self._internal_errors
            out["muted"] = self._muted_events
        if internal or "internal_errors" in out:
            out["internal_errors"] = out.get("internal_errors", 0) + internal
        return out

    def flush(self, timeout: float | None = None) -> None:
        """Deliver what any node of the tree buffers."""
        self.router.flush(timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush, then close, every node of the tree within ``timeout`` seconds in all
        (``None``: as long as it takes); what a buffered node still holds then goes to its
        dead-letter file."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.router.flush(timeout)
        self.router.close(remaining(deadline))

    def __repr__(self) -> str:
        return f"Tracker({self.router!r})"


class _Block:
    """One ``with tracker.context(name, ctx):`` block (a class: cheaper than a generator).

    Leaving it restores the stack as it was when nothing else was entered inside; otherwise
    it restores only the context called ``name``.
    """

    __slots__ = ("_before", "_ctx", "_entered", "_name", "_var")

    def __init__(self, var: contextvars.ContextVar[_Stack], name: str, ctx: Mapping[str, Any]):
        self._var = var
        self._name = name
        self._ctx = ctx
        self._before: _Stack = _EMPTY
        self._entered: _Stack = _EMPTY

    def __enter__(self) -> None:
        ctx = self._ctx
        if type(ctx) is not dict and not isinstance(ctx, Mapping):
            raise TypeError(f"context must be a mapping, not {type(ctx).__name__}")
        var = self._var
        self._before = before = var.get()
        self._entered = entered = _put(before, self._name, ctx)
        var.set(entered)

    def __exit__(self, *exc_info: object) -> None:
        var = self._var
        entries = var.get()
        if entries is self._entered:  # nothing entered or left inside the block
            var.set(self._before)
            return
        name = self._name
        for entered, values in self._before:
            if entered == name:
                var.set(_put(entries, name, values))
                return
        var.set(tuple(entry for entry in entries if entry[0] != name))


class _Mute:
    """One ``with tracker.muted():`` block (a class, like :class:`_Block`)."""

    __slots__ = ("_before", "_token", "_var")

    def __init__(self, var: contextvars.ContextVar[bool]) -> None:
        self._var = var
        self._before = False
        self._token: contextvars.Token[bool] | None = None

    def __enter__(self) -> None:
        var = self._var
        self._before = var.get()
        self._token = var.set(True)

    def __exit__(self, *exc_info: object) -> None:
        token, self._token = self._token, None
        if token is None:
            return
        try:
            self._var.reset(token)
        except ValueError:  # left in another context than it was entered in
            self._var.set(self._before)


def _put(entries: _Stack, name: str, ctx: Mapping[str, Any]) -> _Stack:
    """``entries`` with ``name`` set to ``ctx``: in its place if present, else appended."""
    for index, (entered, _) in enumerate(entries):
        if entered == name:
            return (*entries[:index], (name, ctx), *entries[index + 1 :])
    return (*entries, (name, ctx))


def _merge(entries: _Stack) -> dict[str, Any]:
    """A new dict of every entered context's values, later entries winning."""
    if not entries:
        return {}
    if len(entries) == 1:
        return dict(entries[0][1])
    merged: dict[str, Any] = {}
    for _, values in entries:
        merged.update(values)
    return merged


_registry: dict[str, Tracker] = {}
_registry_lock = _fork.Lock()


def register_tracker(tracker: Tracker, name: str = "default") -> None:
    """Make ``tracker`` the one :func:`emit` and :func:`get_tracker` use under ``name``."""
    if not isinstance(tracker, Tracker):
        raise TypeError(f"expected a Tracker, not {type(tracker).__name__}")
    with _registry_lock:
        _registry[name] = tracker


def unregister_tracker(name: str = "default") -> Tracker | None:
    """Forget the tracker registered as ``name`` and return it (``None`` if there was none)."""
    with _registry_lock:
        return _registry.pop(name, None)


def get_tracker(name: str = "default") -> Tracker:
    """The tracker registered as ``name``.

    Raises:
        TrackerNotRegisteredError: none is; the message says how to register one.
    """
    try:
        return _registry[name]
    except KeyError:
        raise TrackerNotRegisteredError(name) from None


def emit(name: str, data: Mapping[str, Any] | None = None) -> None:
    """Emit through the default tracker: ``from eventrouter import tracker; tracker.emit(...)``.

    Raises:
        TrackerNotRegisteredError: no default tracker is registered.
    """
    try:
        tracker = _registry["default"]
    except KeyError:
        raise TrackerNotRegisteredError("default") from None
    tracker.emit(name, data)
