"""Celery: a task sent while a request is served runs with that request's context.

::

    from eventrouter.integrations.celery import carry_context
    carry_context()          # once, in the module that makes the Celery app

When a task is published, the tracker's current context travels in the message header
``eventrouter_context``; the worker enters it (as the context named ``"celery"``) around the
task and leaves it afterwards, so events the task emits carry the request's ``user_id`` and
``request_id``. In eager mode the task runs in the caller's own context already. A task sent
from a task passes the context on.

The header is bounded where it is attached and again where it is entered (a message can come
from anywhere that can publish to the broker): at most :data:`MAX_KEYS` keys, each a string
of at most :data:`MAX_KEY_LENGTH` characters, string values cut to :data:`MAX_VALUE_LENGTH`
characters, and values that are not ``None``, strings, numbers or booleans carried as their
(cut) text.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Mapping
from typing import Any

from eventrouter import _fork
from eventrouter.errors import MissingExtraError
from eventrouter.integrations._request import DEFAULT_MAX_LENGTH, TrackerRef
from eventrouter.tracker import Tracker

try:
    from celery import signals
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtraError("eventrouter.integrations.celery", "celery", "celery") from exc

__all__ = [
    "CONTEXT_NAME",
    "HEADER",
    "MAX_KEYS",
    "MAX_KEY_LENGTH",
    "MAX_VALUE_LENGTH",
    "carry_context",
    "stop_carrying_context",
]

log = logging.getLogger("eventrouter.integrations")

HEADER = "eventrouter_context"
"""The message header that carries the context."""

CONTEXT_NAME = "celery"
"""The name the carried context is entered under in the worker."""

MAX_KEYS = 64
"""The most keys a carried context holds; the first ones are kept."""

MAX_KEY_LENGTH = 128
"""The longest key a carried context holds; longer keys are left out."""

MAX_VALUE_LENGTH = DEFAULT_MAX_LENGTH
"""The longest string value a carried context holds; longer ones are cut."""

_UID = "eventrouter.integrations.celery"

_WITHOUT = "tasks carry no context"
_HINT = "register one at start-up, in the processes that send tasks and in the workers"

_ref = TrackerRef("default", without=_WITHOUT, hint=_HINT)
_entered: dict[str, Tracker] = {}
_entered_lock = _fork.Lock()


def _portable(context: Mapping[Any, Any]) -> dict[str, Any]:
    """The context within the bounds (see the module's docs), in values any message
    serializer can carry: scalars as they are, others as text."""
    carried: dict[str, Any] = {}
    for key, value in itertools.islice(context.items(), MAX_KEYS):
        name = key if isinstance(key, str) else str(key)
        if len(name) > MAX_KEY_LENGTH:
            continue
        if isinstance(value, str):
            carried[name] = value[:MAX_VALUE_LENGTH]
        elif value is None or isinstance(value, (int, float, bool)):
            carried[name] = value
        else:
            carried[name] = str(value)[:MAX_VALUE_LENGTH]
    return carried


def _on_publish(headers: Any = None, **_: Any) -> None:
    try:
        tracker = _ref.get()
        if tracker is None or not isinstance(headers, dict) or HEADER in headers:
            return
        context = tracker.resolve_context()
        if context:
            headers[HEADER] = _portable(context)
    except Exception as exc:  # never fail the caller's publish
        log.warning("eventrouter: could not attach the context to a task (%s)", type(exc).__name__)


def _carried(task: Any) -> Mapping[str, Any] | None:
    request = getattr(task, "request", None)
    if request is None:
        return None
    found = getattr(request, HEADER, None)
    if found is None:
        headers = getattr(request, "headers", None)
        if isinstance(headers, Mapping):
            found = headers.get(HEADER)
    return found if isinstance(found, Mapping) else None


def _on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    context = _carried(task)
    if context is None or task_id is None:
        return
    tracker = _ref.get()
    if tracker is None:
        return
    try:
        bounded = _portable(context)
    except Exception as exc:  # a hostile header: the task runs without it
        log.warning("eventrouter: ignored a task's context header (%s)", type(exc).__name__)
        return
    tracker.enter_context(CONTEXT_NAME, bounded)
    with _entered_lock:
        _entered[task_id] = tracker


def _on_postrun(task_id: str | None = None, **_: Any) -> None:
    if task_id is None:
        return
    with _entered_lock:
        tracker = _entered.pop(task_id, None)
    if tracker is not None:
        with contextlib.suppress(KeyError):  # the task left it itself
            tracker.exit_context(CONTEXT_NAME)


def carry_context(tracker: Tracker | str = "default") -> None:
    """Carry ``tracker``'s context (or the one registered under that name, looked up when
    used) from where tasks are sent into the workers that run them. Idempotent."""
    global _ref  # noqa: PLW0603 - one setting for the process's signal handlers
    _ref = TrackerRef(tracker, without=_WITHOUT, hint=_HINT)  # raises TypeError for a bad one
    signals.before_task_publish.connect(_on_publish, weak=False, dispatch_uid=_UID)
    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid=_UID)
    signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid=_UID)


def stop_carrying_context() -> None:
    """Undo :func:`carry_context`."""
    global _ref  # noqa: PLW0603
    _ref = TrackerRef("default", without=_WITHOUT, hint=_HINT)
    signals.before_task_publish.disconnect(_on_publish, dispatch_uid=_UID)
    signals.task_prerun.disconnect(_on_prerun, dispatch_uid=_UID)
    signals.task_postrun.disconnect(_on_postrun, dispatch_uid=_UID)
