"""CeleryRouter: a router node whose backends run on Celery workers.

This module holds the node and its publishing side; the task's message encoding is in
``_celery_codec``, the delivering side (workers, ``memory://``) in ``_celery_delivery``, and
what publishers and workers agree on (retry policy, app settings, fingerprints) in
``_celery_settings``.

In the emitting process a ``CeleryRouter`` copies each event and runs its own processors,
like any router; then, instead of calling its backends, it hands the event to a buffered
delivery node (:class:`~eventrouter.backends.buffered.BufferedBackend`) whose worker thread
publishes one Celery task per *batch* of events. ``emit`` never touches the broker.

On the workers (``eventrouter worker CONFIG``) the same YAML builds the same tree; a task names
the node's dotted path and the fingerprint of its subtree, and the worker delivers the batch to
that node's backends. A backend that fails is retried with Celery's retry and exponential
backoff, for the events it failed on only; when the retries are exhausted, or the failure is
permanent, the events go to the worker's dead-letter file with the destination's path.

Tasks are acknowledged late and rejected (re-queued) when the worker process dies, so delivery
is at least once: after a crash at most the batch in flight is delivered again, and the event
``id`` is the key a destination de-duplicates on.

``broker: memory://`` runs the subtree in the emitting process, through the same encoding,
delivery and retry code, on the buffered node's thread: the same YAML works with no broker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from eventrouter import _fork
from eventrouter.backends._celery_codec import decode_batch, encode_batch
from eventrouter.backends._celery_delivery import BatchOutcome, DeliveringNode
from eventrouter.backends._celery_settings import (
    RetryPolicy,
    config_fingerprint,
    configure_app,
    python_fingerprint,
)
from eventrouter.backends.buffered import BufferedBackend
from eventrouter.backends.routing import RoutingBackend
from eventrouter.deadletter import DeadLetterFile
from eventrouter.errors import DeliveryError, MissingExtraError, OptionError
from eventrouter.typing import Backend, Event, Processor

if TYPE_CHECKING:
    import os

__all__ = [
    "MEMORY_BROKER",
    "TASK_NAME",
    "BatchOutcome",
    "CeleryRouter",
    "RetryPolicy",
    "decode_batch",
    "encode_batch",
]

log = logging.getLogger("eventrouter.celery")

TASK_NAME = "eventrouter.deliver"
"""The name of the Celery task that carries a batch of events to a subtree."""

MEMORY_BROKER = "memory://"
"""The broker URL that runs the subtree in the emitting process (no broker, no worker)."""

# -- the node -----------------------------------------------------------------------------


class CeleryRouter(DeliveringNode, RoutingBackend):
    """A router whose processors run here and whose backends run on Celery workers.

    Args:
        backends: the subtree delivered on the workers, by name.
        processors: run in the emitting process before an event is queued for publishing.
        broker: the Celery broker URL (``redis://...``, ``amqp://...``), or ``memory://`` to
            run the backends in this process, through the same encoding and retries.
        queue: the Celery queue the tasks go to (``eventrouter worker --queue``).
        batch_size: events per task at most.
        flush_interval: seconds a partial batch waits before it is published anyway.
        task_retry: how workers retry a failing backend: ``max_retries`` (5), ``backoff``
            (1.0 s, doubling), ``backoff_max`` (300 s), ``jitter`` (true).
        broker_options: Celery's ``broker_transport_options`` (e.g. Redis'
            ``visibility_timeout``), for publishers and workers alike.
        buffer: more options of the buffered node that publishes (``max_queue``,
            ``max_bytes``, ``max_retries``, ``retry_deadline``, ``when_full`` ...).
        dead_letter: where events go that could not be published, or (on a worker, and with
            ``memory://``) delivered.

    With the broker down, ``send`` still returns at once: the buffered node retries
    publishing with backoff, then dead-letters the batch with this node's path.
    """

    def __init__(
        self,
        backends: Mapping[str, Backend] | None = None,
        processors: Iterable[Processor] | None = None,
        *,
        broker: str = MEMORY_BROKER,
        queue: str = "eventrouter",
        batch_size: int = 100,
        flush_interval: float = 1.0,
        task_retry: Mapping[str, Any] | None = None,
        broker_options: Mapping[str, Any] | None = None,
        buffer: Mapping[str, Any] | None = None,
        dead_letter: DeadLetterFile | str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(broker, str) or "://" not in broker:
            raise OptionError(
                "broker",
                f"broker must be a URL such as redis://host:6379/0, amqp://host// or "
                f"{MEMORY_BROKER}",
            )
        if not isinstance(queue, str) or not queue:
            raise OptionError("queue", "queue must be a non-empty string")
        if type(batch_size) is not int or batch_size < 1:
            raise OptionError("batch_size", f"batch_size must be an int >= 1, not {batch_size!r}")
        if isinstance(flush_interval, bool) or not isinstance(flush_interval, int | float):
            raise OptionError("flush_interval", "flush_interval must be a number of seconds")
        if flush_interval <= 0:
            raise OptionError("flush_interval", "flush_interval must be more than 0 seconds")
        if broker_options is not None and not isinstance(broker_options, Mapping):
            raise OptionError("broker_options", "broker_options must be a mapping")
        if buffer is not None and not isinstance(buffer, Mapping):
            raise OptionError("buffer", "buffer must be a mapping of buffered-delivery options")
        reserved = {"batch_size", "flush_interval", "dead_letter"} & set(buffer or {})
        if reserved:
            raise OptionError(
                "buffer",
                f"set {', '.join(sorted(reserved))} on the celery node itself, not in buffer",
                where=(sorted(reserved)[0],),
            )
        super().__init__(backends, processors, dead_letter)
        self.broker = broker
        self.queue = queue
        self.batch_size = batch_size
        self.flush_interval = float(flush_interval)
        self.retry_policy = RetryPolicy.from_option(task_retry)
        self.broker_options: dict[str, Any] = dict(broker_options or {})
        self.in_process = broker == MEMORY_BROKER
        self._fingerprint: str | None = None
        self._stopping = threading.Event()
        self._counts = threading.Lock()
        self._app: _fork.PerProcess[Any] = _fork.PerProcess(self._make_app)
        self._published = 0
        self._tasks = 0
        self._delivered = 0
        self._retried = 0
        self._dead_lettered = 0
        self._lost = 0
        self._by_destination: dict[str, list[int]] = {}
        if not self.in_process:
            _require_celery()
            # Import and build everything publishing needs here, on the caller's thread:
            # imported lazily on the publishing thread, a fork while that thread holds a
            # module's import lock leaves the child's publisher waiting on it for good, and
            # at interpreter exit some imports are refused altogether.
            _warm_up(self._app.get())
        # publishing runs on this node's thread, started by the first event (never on workers)
        self._buffer = BufferedBackend(
            _Publisher(self),
            batch_size=batch_size,
            flush_interval=self.flush_interval,
            dead_letter=self.dead_letter,
            **dict(buffer or {}),
        )

    # -- identity ---------------------------------------------------------------------------

    def bind_path(self, path: str) -> None:
        """Learn this node's dotted path (the tasks carry it) and re-bind the children."""
        super().bind_path(path)
        self._buffer.bind_path(path)

    def bind_config(self, node: Any) -> None:
        """Take the fingerprint from the configuration node this router was built from."""
        self._fingerprint = config_fingerprint(node)

    @property
    def fingerprint(self) -> str:
        """A short hash of the subtree the workers run: from the configuration as written when
        built from YAML, else from the classes and names of the backends."""
        if self._fingerprint is None:
            self._fingerprint = python_fingerprint(self)
        return self._fingerprint

    # -- the emitting side --------------------------------------------------------------------

    def send_to_backends(self, event: Event) -> None:
        """Queue a processed ``event`` for publishing, returning at once (``send`` copies and
        processes each event, as every router does, then calls this)."""
        self._buffer.send(event)

    def _make_app(self) -> Any:
        from celery import Celery

        app = Celery("eventrouter", broker=self.broker, set_as_current=False)
        configure_app(app, self, publishing=True)
        return app

    def publish(self, payload: str, count: int) -> None:
        """Publish one task carrying ``payload`` (``count`` encoded events), or, with
        ``memory://``, deliver it here.

        Raises:
            DeliveryError: the broker did not take the task (retryable).
        """
        if self.in_process:
            self.run_in_process(payload)
            return
        try:
            self._app.get().send_task(
                TASK_NAME,
                args=[self.path, self.fingerprint, payload],
                queue=self.queue,
                retry=False,
                ignore_result=True,
            )
        except Exception as exc:
            raise DeliveryError(
                f"celery node {self.path!r} could not publish to its broker: "
                f"{type(exc).__name__}; retrying"
            ) from exc
        with self._counts:
            self._tasks += 1
            self._published += count

    def replay_batch(self, events: Sequence[Event]) -> None:
        """Publish ``events`` again as one task, without running this node's processors.

        The replay entry for dead letters written at this node's own path: those events
        could not be published, and had been processed already.

        Raises:
            DeliveryError: the broker did not take the task (retryable).
        """
        if events:
            self.publish(encode_batch(events), len(events))

    # -- introspection and lifecycle ---------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters: ``received``, ``vetoed``, ``processor_errors``; ``published`` events and
        ``tasks``; ``failed`` (events never published, dead-lettered by the buffered node);
        ``delivered``/``retried``/``dead_lettered`` for batches delivered in this process
        (on a worker, or with ``memory://``), and ``lost``: given up on with no writable
        dead letter; ``backends``: per backend, ``delivered``, ``failed`` (``dead_lettered``
        + ``lost``), ``dead_lettered`` and ``lost`` with ``memory://`` (a nested subtree's
        leaves summed), ``None`` when they run on workers; ``destinations``: the same counts
        per leaf path under this node (``sub.leaf``), for the leaves that delivered or gave
        up on events in this process; ``buffer``: the buffered node's own counters."""
        routed = super().stats()
        out: dict[str, Any] = {
            key: routed[key] for key in ("received", "vetoed", "processor_errors") if key in routed
        }
        with self._counts:
            out |= {
                "published": self._published,
                "tasks": self._tasks,
                "delivered": self._delivered,
                "retried": self._retried,
                "dead_lettered": self._dead_lettered,
                "lost": self._lost,
            }
            by_destination = {name: list(c) for name, c in self._by_destination.items()}
        # per backend, as a router reports them; on a publisher they run elsewhere: unknown
        out["backends"] = {
            name: {"delivered": None, "failed": None}
            if not self.in_process
            else _destination_counts(_under(by_destination, name))
            for name in self.backends
        }
        out["destinations"] = {
            path: _destination_counts(counts) for path, counts in sorted(by_destination.items())
        }
        buffer_stats: Mapping[str, Any] = self._buffer.stats()
        out["buffer"] = dict(buffer_stats)
        failed = buffer_stats.get("failed", 0)
        out["failed"] = (
            (failed if isinstance(failed, int) else 0) + out["dead_lettered"] + out["lost"]
        )
        return out

    def flush(self, timeout: float | None = None) -> None:
        """Publish (or, with ``memory://``, deliver) every queued event."""
        self._buffer.flush(timeout)
        super().flush(timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Publish what is queued within ``timeout`` (the rest is dead-lettered), then close
        the broker connections and the backends in the time left.

        With ``memory://``, a destination failing at this point gets the retries it has left
        without the waits between them.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self._stopping.set()
        try:
            self._buffer.close(timeout)
        finally:
            app = self._app.take()
            if app is not None:
                try:
                    app.close()
                except Exception as exc:
                    log.warning(
                        "closing the Celery app of %r failed: %s", self.path, type(exc).__name__
                    )
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            super().close(left)

    def _after_fork_in_child(self) -> None:
        renew = getattr(super(), "_after_fork_in_child", None)
        if callable(renew):
            renew()
        else:
            self._lock = threading.Lock()
        self._counts = threading.Lock()
        self._stopping = threading.Event()

    def __repr__(self) -> str:
        return (
            f"CeleryRouter(path={self.path!r}, queue={self.queue!r}, "
            f"backends={list(self.backends)!r})"
        )


class _Publisher:
    """What the buffered node delivers to: one task per batch."""

    def __init__(self, node: CeleryRouter) -> None:
        self._node = node

    def send(self, event: Event) -> None:
        self.send_batch([event])

    def send_batch(self, events: Sequence[Event]) -> None:
        self._node.publish(encode_batch(events), len(events))

    def __repr__(self) -> str:
        return f"celery publisher of {self._node.path!r}"


def _require_celery() -> None:
    try:
        import celery  # noqa: F401
    except ImportError:
        raise MissingExtraError("the celery backend", "celery", "celery") from None


def _warm_up(app: Any) -> None:
    """Import what the first ``send_task`` would import, without connecting to the broker:
    the transport and its client library, and (through a task published to an in-memory
    broker) Celery's own message, result and event machinery."""
    import concurrent.futures.thread  # noqa: F401 - imported by the transports at exit
    import encodings.idna  # noqa: F401 - host names
    import hmac  # noqa: F401 - client libraries' authentication
    import secrets  # noqa: F401

    from celery import Celery

    connection = app.connection_for_write()
    try:
        connection.transport  # noqa: B018 - imports the transport and its client library
    finally:
        connection.release()
    rehearsal = Celery("eventrouter-warm-up", broker=MEMORY_BROKER, set_as_current=False)
    configure_app(rehearsal, _Settings(app.conf.task_default_queue), publishing=True)
    try:
        rehearsal.send_task(TASK_NAME, args=[], queue="eventrouter-warm-up", retry=False)
    finally:
        rehearsal.close()


class _Settings:
    """The options :func:`configure_app` reads, for the warm-up's in-memory app."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.broker_options: dict[str, Any] = {}


def _under(by_destination: Mapping[str, list[int]], name: str) -> list[int]:
    """The counts of the leaves under the backend ``name`` (itself, or ``name.*``), summed."""
    total = [0, 0, 0]
    for path, counts in by_destination.items():
        if path == name or path.startswith(f"{name}."):
            total = [a + b for a, b in zip(total, counts, strict=True)]
    return total


def _destination_counts(counts: Sequence[int]) -> dict[str, int]:
    delivered, dead_lettered, lost = counts
    return {
        "delivered": delivered,
        "failed": dead_lettered + lost,
        "dead_lettered": dead_lettered,
        "lost": lost,
    }
