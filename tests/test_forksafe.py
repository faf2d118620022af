"""Locks registered with _forksafe are usable in a child forked while they were held."""

from __future__ import annotations

import threading

from conftest import lock_held_elsewhere, needs_fork, run_in_fork

from eventrouter import _forksafe


class Owner:
    def __init__(self) -> None:
        self._lock = threading.Lock()


@needs_fork
def test_a_registered_lock_is_free_in_the_child() -> None:
    owner = Owner()
    _forksafe.register(owner)
    with lock_held_elsewhere(owner):
        assert run_in_fork(lambda: 0 if owner._lock.acquire(timeout=5) else 1) == 0


@needs_fork
def test_an_unregistered_lock_stays_held_in_the_child() -> None:
    owner = Owner()  # the failure the registry exists to prevent
    with lock_held_elsewhere(owner):
        assert run_in_fork(lambda: 0 if owner._lock.acquire(timeout=0.2) else 1) == 1
