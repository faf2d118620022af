"""Locks that survive ``os.fork``.

A lock held by another thread at the moment of a fork stays locked forever in the child,
whose copy of that thread does not exist. gunicorn and Celery prefork fork after the routing
tree is built, so every object whose lock the hot path takes registers here and gets a fresh
lock in each child.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol

__all__ = ["LockOwner", "register"]


class LockOwner(Protocol):
    """An object whose ``_lock`` must be re-created after a fork."""

    _lock: threading.Lock


_owners: weakref.WeakSet[LockOwner] = weakref.WeakSet()


def register(owner: LockOwner) -> None:
    """Give ``owner._lock`` a new, unlocked lock in every child process forked later."""
    _owners.add(owner)


def _renew_locks() -> None:
    for owner in list(_owners):
        owner._lock = threading.Lock()


os.register_at_fork(after_in_child=_renew_locks)
