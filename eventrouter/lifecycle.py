"""Interpreter exit and termination signals: what is buffered is delivered or dead-lettered.

Every :class:`~eventrouter.backends.buffered.BufferedBackend` is tracked here until it is
closed. At interpreter exit (``sys.exit``, the end of the main module, an uncaught
exception) an ``atexit`` hook closes the ones still open, all at once, within
:func:`set_exit_timeout` seconds; what is left after that goes to their dead-letter files.

:func:`install_signal_handlers` makes ``SIGTERM`` and ``SIGINT`` do the same for the
registered trackers (and every open buffered node) before the previous handler runs.

``os._exit()`` and ``SIGKILL`` skip all of this: what is queued in memory then is lost, the
one case nothing can cover.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Any, Protocol

from eventrouter import _fork
from eventrouter.errors import EventRouterError

__all__ = [
    "DEFAULT_EXIT_TIMEOUT",
    "GRACE",
    "close_open_nodes",
    "install_signal_handlers",
    "remaining",
    "run_within",
    "set_exit_timeout",
    "track",
    "untrack",
    "with_timeout",
]

log = logging.getLogger("eventrouter.lifecycle")

GRACE = 0.25
"""Seconds :func:`run_within` waits past its timeout for calls finishing their bookkeeping
(a buffered node writing what it could not deliver to its dead letter)."""

DEFAULT_EXIT_TIMEOUT = 10.0
"""Seconds the exit hook gives open buffered nodes, all together, to deliver what they hold."""


class _Node(Protocol):
    def _begin_close(self, deadline: float | None) -> None: ...

    def _finish_close(self, deadline: float | None) -> None: ...


_open: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = _fork.Lock()
_exit_timeout = DEFAULT_EXIT_TIMEOUT


def track(node: _Node) -> None:
    """Close ``node`` at interpreter exit (and in :func:`close_open_nodes`) unless it is
    closed before; what it holds then goes to its dead-letter file.

    For nodes that buffer, as :class:`~eventrouter.backends.buffered.BufferedBackend` does:
    ``node`` has ``_begin_close(deadline)`` (stop taking events, start delivering what is
    left) and ``_finish_close(deadline)`` (wait, then dead-letter the rest), ``deadline``
    being a ``time.monotonic()`` value or ``None``. Only a weak reference is kept.
    """
    with _lock:
        _open.add(node)


def untrack(node: _Node) -> None:
    """Forget ``node`` (it was closed): nothing is left to do for it at exit. A node that
    was never tracked is ignored."""
    with _lock:
        _open.discard(node)


def set_exit_timeout(seconds: float) -> None:
    """How long, in all, the exit hook waits for open buffered nodes (default 10 s)."""
    global _exit_timeout  # noqa: PLW0603 - one process-wide setting
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise ValueError(f"the exit timeout must be a number of seconds >= 0, not {seconds!r}")
    _exit_timeout = float(seconds)


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (a ``time.monotonic()`` value), never below 0."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def close_open_nodes(timeout: float | None) -> int:
    """Close every buffered node still open, all at once, within ``timeout`` seconds.

    What a node could not deliver in time goes to its dead-letter file. Returns how many
    nodes were closed.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    with _lock:
        nodes = list(_open)
    for node in nodes:
        node._begin_close(deadline)
    for node in nodes:
        try:
            node._finish_close(deadline)
        except Exception as exc:  # never let one node stop the others from closing
            log.error("closing %r at exit failed: %s", node, type(exc).__name__)
    return len(nodes)


def _at_exit() -> None:
    close_open_nodes(_exit_timeout)


atexit.register(_at_exit)


def run_within(
    calls: Sequence[tuple[str, Callable[[float | None], object]]], timeout: float | None
) -> list[str]:
    """Run ``call(seconds_left)`` for each ``(label, call)`` side by side, for ``timeout``.

    Each call runs in its own daemon thread, all started at once and each given ``timeout``;
    they share one deadline, so the whole takes at most ``timeout`` (plus :data:`GRACE`)
    seconds however many there are and whatever each does. An exception is logged with its
    label (type only, never its message). Returns the labels of the calls still running at
    the deadline.
    """
    if not calls:
        return []
    deadline = None if timeout is None else time.monotonic() + timeout + GRACE
    threads: list[tuple[str, threading.Thread]] = []
    for label, call in calls:
        thread = threading.Thread(
            target=_guarded, args=(label, call, timeout), name=f"eventrouter {label}"
        )
        thread.daemon = True
        thread.start()
        threads.append((label, thread))
    late: list[str] = []
    for label, thread in threads:
        thread.join(remaining(deadline))
        if thread.is_alive():
            late.append(label)
    if late:
        log.error(
            "still running after %s s, left behind: %s",
            timeout,
            ", ".join(late),
        )
    return late


def with_timeout(method: Callable[..., Any]) -> Callable[[float | None], object]:
    """``method`` as a call taking the seconds left, passed on only if it takes a timeout."""
    try:
        parameters = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    if any(p.name == "timeout" or p.kind is p.VAR_KEYWORD for p in parameters):
        return lambda seconds: method(timeout=seconds)
    kind = inspect.Parameter
    positional = (kind.POSITIONAL_ONLY, kind.POSITIONAL_OR_KEYWORD, kind.VAR_POSITIONAL)
    if any(p.kind in positional for p in parameters):
        return method
    return lambda seconds: method()


def _guarded(label: str, call: Callable[[float | None], object], timeout: float | None) -> None:
    try:
        call(timeout)
    except Exception as exc:
        # Our own errors' messages are written to be safe to log (no event data).
        own = f" ({exc})" if isinstance(exc, EventRouterError) else ""
        log.error("%s failed: %s%s", label, type(exc).__name__, own)


# -- signals ---------------------------------------------------------------------------------

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def install_signal_handlers(
    *,
    timeout: float = 10.0,
    signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT),
) -> None:
    """On ``SIGTERM``/``SIGINT``, close the registered trackers, then run the previous handler.

    Every tracker registered with :func:`eventrouter.tracker.register_tracker`, and every
    buffered node still open, is flushed and closed within ``timeout`` seconds in all; what
    is left goes to the dead-letter files. Then the handler that was installed before runs:
    a Python callable is called; Python's default ``SIGINT`` handler raises
    ``KeyboardInterrupt``; the default action of other signals becomes
    ``SystemExit(128 + signum)``, so ``finally`` blocks and ``atexit`` hooks still run;
    an ignored signal stays ignored.

    Call it from the main thread (Python only lets that thread set handlers), after any
    framework installed its own, so they are chained rather than replaced.

    Raises:
        ValueError: not called from the main thread.
    """
    for signum in signals:
        previous = signal.getsignal(signum)
        signal.signal(signum, _make_handler(signum, previous, timeout))


def _make_handler(
    signum: int, previous: _Handler, timeout: float
) -> Callable[[int, FrameType | None], None]:
    def handler(received: int, frame: FrameType | None) -> None:
        _close_everything(timeout)
        if callable(previous):
            previous(received, frame)
        elif previous == signal.SIG_IGN:
            return
        else:  # SIG_DFL, or a handler not installed from Python
            raise SystemExit(128 + received)

    handler.__name__ = f"eventrouter_on_{signal.Signals(signum).name}"
    return handler


def _close_everything(timeout: float) -> None:
    """Close trackers and open nodes from a helper thread, waiting at most ``timeout`` (+1).

    The handler runs on the main thread between two of its bytecodes, maybe inside a
    ``send`` holding a node's lock; closing from another thread cannot deadlock on it (at
    worst the wait ends at the timeout, and ``atexit`` finishes the job once the main thread
    has unwound).
    """
    from eventrouter.tracker import _registry

    deadline = time.monotonic() + timeout

    def close_all() -> None:
        trackers = list(_registry.items())
        run_within([(f"tracker {name!r}", t.close) for name, t in trackers], remaining(deadline))
        close_open_nodes(remaining(deadline))

    worker = threading.Thread(target=close_all, name="eventrouter signal close", daemon=True)
    worker.start()
    worker.join(timeout + 1.0)
