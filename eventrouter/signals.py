"""Signals for every outcome of an event in a routing tree, on blinker.

Connect a receiver to learn what happens to events without reading logs::

    from eventrouter import signals

    @signals.dead_lettered.connect
    def on_dead_letter(sender, *, events, reason, error, **extra):
        ...

Every signal is sent with the node's dotted path in the tree as sender (``""`` for a root
router, ``"analytics.segment"`` for a backend ``segment`` under a router ``analytics``;
connect with ``sender="analytics.segment"`` to hear one node only) and keyword arguments:

* ``events``: a list of the events concerned (delivery is batched). Receivers must not
  change them.
* ``reason``: where there is one, a :class:`Reason`: why events failed or were dropped.
* ``error``: where there is one, an :class:`ErrorInfo`: the exception's type name and
  whether the failure is permanent, never its message (which can quote event data).
* ``seconds`` (``delivered`` from a buffered node only): how long the backend call took.

The signals:

``emitted``
    a router received events (sender: the router's path); counted in its ``received``.
``vetoed``
    a processor of the router vetoed them (sender: the router), or a backend raised a veto
    (sender: that backend's path).
``delivered``
    a backend accepted them: a synchronous backend returned from ``send``, a buffered node's
    backend acknowledged the batch.
``retried``
    a buffered node will try them again after a recoverable failure.
``failed``
    a node gave up on them; each such event is then either ``dead_lettered`` or ``dropped``.
``dead_lettered``
    they were written to the dead-letter file, to be replayed.
``dropped``
    they are gone and counted: dropped by ``when_full``, or lost because no dead-letter file
    could keep them (``reason`` says which).

A receiver that raises is logged and counted (:func:`receiver_errors`) and never changes
delivery; the other receivers still run. Receivers of a buffered node's outcomes run on
that node's worker thread, never on the thread that called ``emit``. With no receiver
connected to any of them, routing pays one attribute check per router.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

from blinker import ANY, NamedSignal
from blinker.base import ANY_ID

from eventrouter import _fork

__all__ = [
    "LOG_EVERY",
    "SIGNALS",
    "DropLog",
    "ErrorInfo",
    "Reason",
    "dead_lettered",
    "delivered",
    "dropped",
    "emitted",
    "error_info",
    "failed",
    "leaf_dropped",
    "receiver_errors",
    "retried",
    "send",
    "vetoed",
]

log = logging.getLogger("eventrouter.signals")


class Reason(enum.StrEnum):
    """Why events failed or were dropped: the one taxonomy of signals, logs and ``stats()``.

    ``DROP_OLDEST`` and ``DROP_NEWEST`` are also the keys of a buffered node's
    ``stats()["dropped"]``; ``NO_DEAD_LETTER`` and ``DEAD_LETTER_UNWRITABLE`` the keys of its
    ``stats()["lost_by"]``; ``TOO_LARGE``, ``SUPPRESSED``, ``UNWRITABLE`` and ``SKIPPED`` are
    what a JSON log or Segment backend drops itself (their own ``stats()``).
    """

    BACKEND_ERROR = "backend_error"
    """A synchronous backend raised on the event."""
    PERMANENT = "permanent"
    """A buffered node's backend failed for good (not retryable) on the event alone."""
    RETRIES_EXHAUSTED = "retries_exhausted"
    """A recoverable failure outlasted ``max_retries`` or ``retry_deadline`` (or close)."""
    QUEUE_FULL = "queue_full"
    """The queue was full and ``when_full`` is ``dead_letter`` or ``block``."""
    DROP_OLDEST = "drop_oldest"
    """The queue was full; ``when_full="drop_oldest"`` dropped queued events."""
    DROP_NEWEST = "drop_newest"
    """The queue was full; ``when_full="drop_newest"`` dropped the new event."""
    TOO_LARGE = "too_large"
    """The event alone is larger than ``max_bytes``."""
    UNENCODABLE = "unencodable"
    """The event could be neither pickled nor JSON-encoded."""
    UNDECODABLE = "undecodable"
    """A queued event could not be read back."""
    CLOSED = "closed"
    """The node was closing or closed: sent after ``close()``, or still queued at its end."""
    IN_FLIGHT_AT_CLOSE = "in_flight_at_close"
    """The backend call was still running when ``close()`` ran out of time."""
    INTERNAL = "internal"
    """A failure in eventrouter's own machinery."""
    NO_DEAD_LETTER = "no_dead_letter"
    """Given up on, and the node has no dead-letter file: lost."""
    DEAD_LETTER_UNWRITABLE = "dead_letter_unwritable"
    """Given up on, and the dead-letter file could not be written: lost."""
    SUPPRESSED = "suppressed"
    """A JSON log backend's logger was not enabled for its level: the line was not written."""
    UNWRITABLE = "unwritable"
    """A JSON log backend accepted the line but could not write it by ``close()``."""
    SKIPPED = "skipped"
    """Segment skipped the event: no user to attribute it to, or sending is off."""


class ErrorInfo(NamedTuple):
    """What failed, safe to log: the exception type name and whether it is permanent."""

    type: str
    permanent: bool


def error_info(exc: BaseException | str, permanent: bool = True) -> ErrorInfo:
    """The :class:`ErrorInfo` of an exception (its ``retryable`` decides ``permanent`` when
    it has one), or of a short reason string."""
    if isinstance(exc, str):
        return ErrorInfo(exc, permanent)
    retryable = getattr(exc, "retryable", None)
    if isinstance(retryable, bool):
        permanent = not retryable
    return ErrorInfo(type(exc).__name__, permanent)


class _Signal(NamedSignal):
    """A blinker signal that keeps :data:`watched` true while any receiver is connected."""

    def connect(self, receiver: Any, sender: Any = ANY, weak: bool = True) -> Any:
        result = super().connect(receiver, sender, weak)
        _recount()
        return result

    def _disconnect(self, receiver_id: Hashable, sender_id: Hashable) -> None:
        # Every way out (disconnect, a weak receiver collected) ends here. A receiver left
        # with no sender is removed, as blinker keeps it in ``receivers`` otherwise.
        super()._disconnect(receiver_id, sender_id)
        if sender_id != ANY_ID and not self._by_receiver.get(receiver_id):
            super()._disconnect(receiver_id, ANY_ID)
        _recount()


emitted = _Signal("emitted", doc="A router received events.")
vetoed = _Signal("vetoed", doc="A processor or a backend vetoed events.")
delivered = _Signal("delivered", doc="A backend accepted events.")
retried = _Signal("retried", doc="A buffered node will retry events.")
failed = _Signal("failed", doc="A node gave up on events.")
dead_lettered = _Signal("dead_lettered", doc="Events were written to the dead-letter file.")
dropped = _Signal("dropped", doc="Events were dropped or lost, and counted.")

SIGNALS: tuple[NamedSignal, ...] = (
    emitted,
    vetoed,
    delivered,
    retried,
    failed,
    dead_lettered,
    dropped,
)
"""Every signal, in the order an event meets them."""

watched = False
"""True while any signal has a receiver: the one check routers make per event."""

_errors_lock = threading.Lock()
_errors = 0


def _recount() -> None:
    global watched  # noqa: PLW0603 - the flag routers read, one attribute per event
    watched = any(signal.receivers for signal in SIGNALS)


def receiver_errors() -> int:
    """How many times a receiver has raised (each is logged and otherwise ignored)."""
    return _errors


def send(signal: NamedSignal, sender: str, **kwargs: Any) -> None:
    """Send ``signal`` to each receiver for ``sender``; a receiver that raises is logged and
    counted, and the others still run. Never raises."""
    global _errors  # noqa: PLW0603
    try:
        receivers: list[Callable[..., Any]] = list(signal.receivers_for(sender))
    except Exception:  # a receiver's weak reference died mid-iteration: try next time
        return
    for receiver in receivers:
        try:
            receiver(sender, **kwargs)
        except Exception as exc:
            with _errors_lock:
                _errors += 1
            with contextlib.suppress(Exception):
                log.error(
                    "receiver %s of signal %r (node %r) raised %s; delivery goes on",
                    getattr(receiver, "__qualname__", type(receiver).__name__),
                    signal.name,
                    sender,
                    type(exc).__name__,
                )


LOG_EVERY = 10.0
"""Seconds between two log lines about drops of one node and reason (all are counted)."""


class DropLog:
    """Says when a node may log a drop again: at most once per ``every`` seconds per reason,
    with the count of the drops since its last line. Thread-safe; renewed in a forked child.
    """

    def __init__(self, every: float = LOG_EVERY) -> None:
        self.every = every
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}
        _fork.register(self)

    def due(self, reason: str) -> int | None:
        """``None`` to stay quiet (the drop is added to the count), else how many drops of
        ``reason`` were held back since the last line."""
        now = time.monotonic()
        with self._lock:
            if now < self._next.get(reason, 0.0):
                self._held[reason] = self._held.get(reason, 0) + 1
                return None
            self._next[reason] = now + self.every
            return self._held.pop(reason, 0)


class _LeafDrops(threading.local):
    drops = 0
    """How many times :func:`leaf_dropped` signalled on this thread."""


_leaf = _LeafDrops()


def leaf_dropped(path: str, events: list[Any], reason: Reason) -> None:
    """A synchronous backend at ``path`` accepted ``events`` and dropped them itself (a JSON
    log's oversize line): signal ``failed`` and ``dropped`` (with ``reason``), and have the
    router calling it signal no ``delivered`` for them. Costs one check with no receiver."""
    if not watched:
        return
    _leaf.drops += 1
    if failed.receivers:
        send(failed, path, events=events, reason=reason)
    if dropped.receivers:
        send(dropped, path, events=events, reason=reason)


def leaf_drops() -> int:
    """How many times :func:`leaf_dropped` signalled on this thread (routers compare it
    around a backend's ``send``)."""
    return _leaf.drops
