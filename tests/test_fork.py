"""Locks registered with _fork are usable in a child forked while they were held."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from conftest import lock_held_elsewhere, needs_fork, run_in_fork

from eventrouter import _fork, lifecycle, tracker
from eventrouter.integrations import celery as celery_context


class Owner:
    def __init__(self) -> None:
        self._lock = threading.Lock()


@needs_fork
def test_a_registered_lock_is_free_in_the_child() -> None:
    owner = Owner()
    _fork.register(owner)
    with lock_held_elsewhere(owner):
        assert run_in_fork(lambda: 0 if owner._lock.acquire(timeout=5) else 1) == 0


@pytest.mark.slow
@needs_fork
def test_an_unregistered_lock_stays_held_in_the_child() -> None:
    owner = Owner()  # the failure the registry exists to prevent
    with lock_held_elsewhere(owner):
        assert run_in_fork(lambda: 0 if owner._lock.acquire(timeout=0.2) else 1) == 1


@needs_fork
def test_a_fork_lock_is_free_in_the_child_and_still_a_lock() -> None:
    lock = _fork.Lock()
    with lock_held_elsewhere(lock):
        assert not lock.acquire(timeout=0.01)  # held by the other thread
        assert run_in_fork(lambda: 0 if lock.acquire(timeout=5) else 1) == 0


@needs_fork
@pytest.mark.parametrize(
    "lock",
    [
        lifecycle._lock,
        tracker._registry_lock,
        celery_context._entered_lock,
    ],
    ids=["lifecycle", "tracker registry", "celery context"],
)
def test_module_locks_are_free_in_the_child(lock: Any) -> None:
    with lock_held_elsewhere(lock):
        assert run_in_fork(lambda: 0 if lock.acquire(timeout=5) else 1) == 0


class Resettable:
    def __init__(self) -> None:
        self.resets = 0

    def _after_fork_in_child(self) -> None:
        self.resets += 1


@needs_fork
def test_an_owner_with_its_own_reset_is_reset_in_the_child() -> None:
    owner = Resettable()
    _fork.register(owner)
    assert run_in_fork(lambda: 0 if owner.resets == 1 else 1) == 0
    assert owner.resets == 0  # the parent is untouched


@needs_fork
def test_a_module_callback_runs_in_the_child() -> None:
    seen: list[int] = []
    _fork.at_fork_in_child(lambda: seen.append(1))
    assert run_in_fork(lambda: 0 if seen == [1] else 1) == 0
    assert seen == []


@needs_fork
def test_per_process_value_is_made_again_in_the_child_and_not_shared() -> None:
    made: list[object] = []

    def factory() -> object:
        made.append(object())
        return made[-1]

    value = _fork.PerProcess(factory)
    parent = value.get()
    assert value.get() is parent
    assert value.peek() is parent
    assert run_in_fork(lambda: 0 if value.peek() is None and value.get() is not parent else 1) == 0
    assert value.take() is parent
    assert value.peek() is None
