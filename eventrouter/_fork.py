"""The one place eventrouter learns about ``os.fork``.

A lock held by another thread at the moment of a fork stays locked forever in the child,
whose copy of that thread does not exist; a socket, a worker thread or a queue inherited from
the parent belongs to the parent. gunicorn and Celery prefork fork after the routing tree is
built, so every object that owns such state registers here and is reset in each child.

There is one hook, registered once and only where ``os.register_at_fork`` exists (it does
not on Windows); everything else in the package goes through :func:`register`,
:func:`at_fork_in_child`, :class:`Lock` (a module's lock) or :class:`PerProcess` (a client).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

__all__ = ["AfterFork", "Lock", "LockOwner", "PerProcess", "at_fork_in_child", "register"]

T = TypeVar("T")


class LockOwner(Protocol):
    """An object whose ``_lock`` must be re-created after a fork."""

    _lock: threading.Lock


@runtime_checkable
class AfterFork(Protocol):
    """An object that resets its own process-bound state in a forked child."""

    def _after_fork_in_child(self) -> None: ...


_owners: weakref.WeakSet[Any] = weakref.WeakSet()
_callbacks: list[Callable[[], None]] = []
_late_callbacks: list[Callable[[], None]] = []


def register(owner: LockOwner | AfterFork) -> None:
    """Reset ``owner`` in every child process forked later.

    An owner with ``_after_fork_in_child()`` has it called (it renews what it needs, locks
    included); otherwise its ``_lock`` is replaced with a new, unlocked lock.
    """
    _owners.add(owner)


def at_fork_in_child(callback: Callable[[], None], *, late: bool = False) -> None:
    """Call ``callback()`` in every child process forked later (module-level state).

    ``late`` callbacks run after every registered object has been reset, so they can read
    the child's fresh state (the metrics exporter takes its baseline there).
    """
    (_late_callbacks if late else _callbacks).append(callback)


def _in_child() -> None:
    for callback in list(_callbacks):
        callback()
    for owner in list(_owners):
        reset = getattr(owner, "_after_fork_in_child", None)
        if reset is not None:
            reset()
        else:
            owner._lock = threading.Lock()
    for callback in list(_late_callbacks):
        callback()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_child)


class Lock:
    """A lock that every child forked later gets back new and unlocked.

    For a lock no object owns (a module's registry): ``with lock:`` as with
    :class:`threading.Lock`. An object's own ``_lock`` needs only :func:`register`.
    """

    __slots__ = ("__weakref__", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        register(self)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """As :meth:`threading.Lock.acquire`."""
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        """As :meth:`threading.Lock.release`."""
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()


class PerProcess(Generic[T]):
    """A value made by ``factory()`` once per process: a client, a session, a connection.

    ``get()`` returns the value made in this process, making it on first use; a forked
    child never sees its parent's value (it is dropped, not closed: closing it would end the
    parent's connections). ``take()`` detaches this process's value so it can be closed.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._value: T | None = None
        self._pid = 0
        register(self)

    def get(self) -> T:
        """This process's value, made now if there is none yet."""
        value = self._value
        if value is not None and self._pid == os.getpid():
            return value
        with self._lock:
            if self._value is None or self._pid != os.getpid():
                self._value = self._factory()
                self._pid = os.getpid()
            return self._value

    def peek(self) -> T | None:
        """This process's value if it was made, else ``None``; never makes one."""
        value = self._value
        return value if value is not None and self._pid == os.getpid() else None

    def take(self) -> T | None:
        """Detach and return this process's value (``None`` if there is none)."""
        with self._lock:
            value, self._value = self._value, None
            ours = self._pid == os.getpid()
        return value if ours else None

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._value = None
        self._pid = 0
