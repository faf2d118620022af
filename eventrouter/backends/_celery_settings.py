"""What publishers and workers of a celery node agree on: the retry policy of its tasks,
the Celery settings of its apps, and the fingerprint of its subtree."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eventrouter._loglabels import describe
from eventrouter.backends.routing import RoutingBackend
from eventrouter.errors import OptionError

__all__ = ["RetryPolicy", "config_fingerprint", "configure_app", "python_fingerprint"]

PUBLISHING = {"max_retries": 0, "socket_connect_timeout": 5, "socket_timeout": 10}
"""Transport options of publishers: one bounded attempt (the buffered node retries)."""

PYTHON_FINGERPRINT = "py-"
"""The prefix of the fingerprint of a celery node built in Python, not from YAML: a worker
(always built from YAML) never matches it, and says so."""


# -- retry policy -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a worker retries a destination that failed (the ``task_retry`` option).

    Attributes:
        max_retries: retries after the first attempt; then the events are dead-lettered.
        backoff: the first retry waits up to this many seconds, doubling each time.
        backoff_max: no retry waits longer than this.
        jitter: wait a random time up to the computed delay ("full jitter").
    """

    max_retries: int = 5
    backoff: float = 1.0
    backoff_max: float = 300.0
    jitter: bool = True

    @classmethod
    def from_option(cls, value: Mapping[str, Any] | None) -> RetryPolicy:
        """Validate the ``task_retry`` option.

        Raises:
            OptionError: an unknown key, or a value of the wrong type or range.
        """
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise OptionError("task_retry", "task_retry must be a mapping (max_retries, ...)")
        known = {"max_retries", "backoff", "backoff_max", "jitter"}
        unknown = sorted(str(k) for k in value if k not in known)
        if unknown:
            raise OptionError(
                "task_retry",
                f"task_retry has unknown key(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}",
                where=(unknown[0],),
            )
        policy = cls(**value)
        if type(policy.max_retries) is not int or policy.max_retries < 0:
            raise OptionError(
                "task_retry", "task_retry.max_retries must be an int >= 0", where=("max_retries",)
            )
        for name in ("backoff", "backoff_max"):
            number = getattr(policy, name)
            if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
                raise OptionError(
                    "task_retry",
                    f"task_retry.{name} must be a number of seconds >= 0",
                    where=(name,),
                )
        if not isinstance(policy.jitter, bool):
            raise OptionError(
                "task_retry", "task_retry.jitter must be true or false", where=("jitter",)
            )
        return policy

    def countdown(self, retries: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retries + 1`` (Celery's backoff), at least
        the ``retry_after`` a backend asked for."""
        from celery.utils.time import get_exponential_backoff_interval

        wait: float = get_exponential_backoff_interval(
            factor=self.backoff,
            retries=retries,
            maximum=self.backoff_max,
            full_jitter=False,
        )
        if self.jitter:
            wait = random.uniform(0, wait)
        if retry_after is not None and retry_after > wait:
            wait = min(float(retry_after), max(self.backoff_max, float(retry_after)))
        return wait


# -- Celery apps ----------------------------------------------------------------------


def configure_app(app: Any, node: Any, *, publishing: bool) -> None:
    """Settings a publishing or a working Celery app needs for ``node``'s broker.

    A publisher tries to connect once, within seconds (the buffered node retries); a worker
    keeps Celery's own reconnecting, so it survives a broker restart.
    """
    options: Mapping[str, Any] = node.broker_options
    transport = {**PUBLISHING, **options} if publishing else dict(options)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_default_queue=node.queue,
        worker_prefetch_multiplier=1,
        broker_transport_options=dict(transport),
        broker_connection_timeout=transport.get("socket_connect_timeout", 4),
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
    )


# -- fingerprints -------------------------------------------------------------------------


def _structure(backend: Any) -> Any:
    if isinstance(backend, RoutingBackend):
        return {
            "class": describe(backend),
            "processors": [describe(p) for p in backend.processors],
            "backends": {name: _structure(b) for name, b in backend.backends.items()},
        }
    return describe(backend)


def _digest(structure: Any) -> str:
    text = json.dumps(structure, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def python_fingerprint(node: RoutingBackend) -> str:
    """The fingerprint of a celery node built in Python: ``py-`` and a hash of the classes
    and names of its subtree. Workers, built from YAML, refuse it with a message saying so."""
    return PYTHON_FINGERPRINT + _digest(_structure(node))


def _as_written(node: Any) -> Any:
    options = {}
    for key, value in node.options.items():
        options[key] = node.written.get(key, value)
    return {
        "class": node.class_name,
        "enabled": node.enabled,
        "options": options,
        "processors": [_as_written(p) for p in node.processors],
        "backends": {name: _as_written(child) for name, child in node.backends.items()},
    }


def config_fingerprint(node: Any) -> str:
    """The fingerprint of a configuration node's subtree: its ``backends`` as written in the
    YAML (``${VAR}`` unexpanded, so hosts with different secrets agree)."""
    return _digest({name: _as_written(child) for name, child in node.backends.items()})
