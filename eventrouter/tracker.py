"""The Tracker: builds event envelopes with the current context and routes them.

App code registers one tracker at start-up and then emits from anywhere::

    from eventrouter import tracker
    tracker.register_tracker(eventrouter.load("routing.yaml"))
    ...
    tracker.emit("video.played", {"video_id": "abc"})

Contexts entered with :meth:`Tracker.context` (or ``enter_context``/``exit_context``) live in a
:class:`contextvars.ContextVar`, so they are private to the thread and the asyncio task that
entered them.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from eventrouter import _fork
from eventrouter.backends.routing import ProcessorFn, RoutingBackend
from eventrouter.deadletter import DeadLetterFile
from eventrouter.errors import TrackerNotRegisteredError
from eventrouter.event import build_event
from eventrouter.typing import Backend, Event

__all__ = ["Tracker", "emit", "get_tracker", "register_tracker", "unregister_tracker"]

# One entry of the context stack: (name, that context's own values). The stack is an
# immutable tuple paired with its merged view, so resolving costs nothing per emit.
_Stack = tuple[tuple[tuple[str, dict[str, Any]], ...], dict[str, Any]]
_EMPTY: _Stack = ((), {})


class Tracker:
    """Emits events into a routing tree, adding the context entered around the call.

    Args:
        backends: named backends of the root router (see :class:`RoutingBackend`).
        processors: the root router's processor chain.
        dead_letter: the root router's dead-letter file (see :class:`RoutingBackend`).
        router: an already built root router, instead of ``backends``/``processors``
            (used by :func:`eventrouter.load`).

    Since 0.1.
    """

    def __init__(
        self,
        backends: Mapping[str, Backend] | None = None,
        processors: Iterable[ProcessorFn] | None = None,
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

    # -- the tree ---------------------------------------------------------------------------

    @property
    def backends(self) -> dict[str, Backend]:
        """The root router's backends, by name."""
        return self.router.backends

    @property
    def processors(self) -> list[ProcessorFn]:
        """The root router's processor chain."""
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
        ``str`` or ``data`` not a mapping (or ``None``), ``ValueError`` when ``name`` is empty.
        Failures downstream are logged and counted, never raised.
        """
        event = build_event(name, data, context=self._stack.get()[1])
        self.router.send(event)

    def send(self, event: Event) -> None:
        """Route an already built envelope (from :func:`eventrouter.event.build_event`).

        Used to replay or import events that keep their own id, timestamp and context.
        """
        self.router.send(event)

    # -- context ----------------------------------------------------------------------------

    def enter_context(self, name: str, ctx: Mapping[str, Any]) -> None:
        """Push ``ctx`` as the context called ``name`` for this thread or asyncio task."""
        self._push(name, ctx)

    def _push(self, name: str, ctx: Mapping[str, Any]) -> contextvars.Token[_Stack]:
        if not isinstance(ctx, Mapping):
            raise TypeError(f"context must be a mapping, not {type(ctx).__name__}")
        entries, merged = self._stack.get()
        values = dict(ctx)
        return self._stack.set(((*entries, (name, values)), {**merged, **values}))

    def exit_context(self, name: str) -> None:
        """Remove the most recently entered context called ``name``.

        Raises:
            KeyError: no context of that name is entered in this thread or task.
        """
        entries, _ = self._stack.get()
        for index in range(len(entries) - 1, -1, -1):
            if entries[index][0] == name:
                kept = entries[:index] + entries[index + 1 :]
                self._stack.set((kept, _merge(kept)))
                return
        raise KeyError(f"no context named {name!r} is entered here")

    @contextmanager
    def context(self, name: str, ctx: Mapping[str, Any]) -> Iterator[None]:
        """``with tracker.context("request", {...}):`` enters ``ctx`` for the block."""
        token = self._push(name, ctx)
        try:
            yield
        finally:
            try:
                self._stack.reset(token)
            except ValueError:  # the block ended in another context (a generator moved)
                self.exit_context(name)

    def resolve_context(self) -> dict[str, Any]:
        """The merged context of this thread or task; later entries win. A new dict."""
        return dict(self._stack.get()[1])

    # -- lifecycle ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The counters of the whole tree (see :meth:`RoutingBackend.stats`)."""
        return self.router.stats()

    def flush(self, timeout: float | None = None) -> None:
        """Deliver what any node of the tree buffers."""
        self.router.flush(timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush, then close, every node of the tree within ``timeout`` seconds in all
        (``None``: as long as it takes); what a buffered node still holds then goes to its
        dead-letter file."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.router.flush(timeout)
        self.router.close(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def __repr__(self) -> str:
        return f"Tracker({self.router!r})"


def _merge(entries: tuple[tuple[str, dict[str, Any]], ...]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for _, values in entries:
        merged.update(values)
    return merged


_registry: dict[str, Tracker] = {}
_registry_lock = threading.Lock()


def _renew_registry_lock() -> None:
    global _registry_lock  # noqa: PLW0603 - a fork may leave the old one held forever
    _registry_lock = threading.Lock()


_fork.at_fork_in_child(_renew_registry_lock)


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
