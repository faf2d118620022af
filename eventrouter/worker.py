"""``eventrouter worker``: a Celery worker that runs the subtrees of a tree's celery nodes.

The worker builds the tree from the same YAML as the emitting processes, finds its celery
nodes (:class:`~eventrouter.backends.celery.CeleryRouter`) and serves their queues. Each task
names a node by its dotted path and carries the fingerprint of that node's subtree; a worker
whose tree has no such node, or a different subtree there, refuses the task: the task fails
(no retry), the error names the path and both fingerprints, and the events go to the worker's
dead-letter file, from which ``eventrouter replay`` sends them on once the configurations agree.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from eventrouter.backends._celery_delivery import write_dead_letter
from eventrouter.backends._celery_settings import PYTHON_FINGERPRINT, RetryPolicy, configure_app
from eventrouter.backends.buffered import BufferedBackend
from eventrouter.backends.celery import MEMORY_BROKER, TASK_NAME, CeleryRouter, decode_batch
from eventrouter.backends.routing import RoutingBackend
from eventrouter.deadletter import DeadLetterFile
from eventrouter.errors import EventRouterError, SubtreeMismatchError

__all__ = ["DEFAULT_DEAD_LETTER", "WorkerTree", "celery_nodes", "run"]

log = logging.getLogger("eventrouter.worker")

DEFAULT_DEAD_LETTER = "eventrouter-worker.deadletter.jsonl"
"""The worker's dead-letter file when neither the configuration nor ``--dead-letter`` names one."""


def celery_nodes(router: RoutingBackend, prefix: str = "") -> dict[str, CeleryRouter]:
    """Every celery node under ``router``, by dotted path, at any depth (a celery node inside
    another one's subtree included)."""
    found: dict[str, CeleryRouter] = {}
    for name, node in router.backends.items():
        path = f"{prefix}{name}"
        backend = node.backend if isinstance(node, BufferedBackend) else node
        if isinstance(backend, CeleryRouter):
            found[path] = backend
        if isinstance(backend, RoutingBackend):
            found.update(celery_nodes(backend, f"{path}."))
    return found


@dataclass
class WorkerTree:
    """The celery nodes a worker serves, and where it dead-letters what it refuses.

    Attributes:
        tracker: the tree built from the configuration.
        nodes: the served celery nodes, by dotted path.
        dead_letter: the worker's dead-letter file.
    """

    tracker: Any
    nodes: dict[str, CeleryRouter]
    dead_letter: DeadLetterFile

    @classmethod
    def build(
        cls,
        config: str | os.PathLike[str] | Mapping[str, Any],
        *,
        queues: Sequence[str] = (),
        dead_letter: str | os.PathLike[str] | None = None,
    ) -> WorkerTree:
        """Build the tree of ``config`` and pick the celery nodes on ``queues`` (all if empty).

        Raises:
            ConfigError: the configuration is invalid.
            EventRouterError: no celery node to serve, or the served nodes use different
                brokers.
        """
        from eventrouter.config import build, read_config

        tree = read_config(config)
        tracker = build(tree)
        try:
            every = celery_nodes(tracker.router)
            nodes = {
                path: node
                for path, node in every.items()
                if node.broker != MEMORY_BROKER and (not queues or node.queue in queues)
            }
            _check_served(nodes, every, queues)
        except BaseException:
            tracker.close()
            raise
        file = dead_letter or tree.dead_letter or DEFAULT_DEAD_LETTER
        shared = DeadLetterFile(file)
        for node in nodes.values():
            if dead_letter is not None or node.dead_letter is None:
                node.dead_letter = shared
        return cls(tracker, nodes, shared)

    @property
    def broker(self) -> str:
        """The broker every served node uses."""
        return next(iter(self.nodes.values())).broker

    @property
    def queues(self) -> list[str]:
        """The queues of the served nodes, sorted."""
        return sorted({node.queue for node in self.nodes.values()})

    def lookup(self, path: str, fingerprint: str, payload: str) -> CeleryRouter:
        """The node a task is for.

        Raises:
            SubtreeMismatchError: no served node has ``path``, or its fingerprint differs;
                the task's events have been dead-lettered (see :meth:`refuse`).
        """
        node = self.nodes.get(path)
        if node is not None and node.fingerprint == fingerprint:
            return node
        error = SubtreeMismatchError(
            path, fingerprint, None if node is None else node.fingerprint, sorted(self.nodes)
        )
        self.refuse(path, payload, error)
        raise error

    def refuse(self, path: str, payload: str, error: BaseException) -> bool:
        """Dead-letter the events of a task this worker will not run; whether all of them
        were written (if not, the task must stay in the broker)."""
        try:
            events = decode_batch(payload)
        except ValueError:
            events = [{"id": None, "name": None, "payload": payload}]
        written = write_dead_letter(
            self.dead_letter,
            events,
            destination=path,
            reason=type(error).__name__,
            attempts=1,
            first_failure=None,
        )
        settled = written == len(events)
        hint = ""
        fingerprint = getattr(error, "fingerprint", "")
        if isinstance(fingerprint, str) and fingerprint.startswith(PYTHON_FINGERPRINT):
            hint = (
                " (the task comes from a CeleryRouter built in Python: only a tree loaded from "
                "the workers' YAML, eventrouter.load(CONFIG), publishes tasks they accept)"
            )
        log.error(
            "%s%s; its %d event(s) are %s",
            error,
            hint,
            len(events),
            f"in {self.dead_letter.path}"
            if settled
            else f"NOT SETTLED: the dead-letter file {self.dead_letter.path} cannot be written; "
            "the task is kept in the broker and tried again",
        )
        return settled


def _check_served(
    nodes: Mapping[str, CeleryRouter], every: Mapping[str, CeleryRouter], queues: Sequence[str]
) -> None:
    if not nodes:
        if not every:
            raise EventRouterError(
                "the configuration has no celery node: give a node `class: celery` "
                "with a `broker` and `backends` for workers to run"
            )
        wanted = f" on queue(s) {', '.join(queues)}" if queues else ""
        known = ", ".join(f"{p} (queue {n.queue}, broker {n.broker})" for p, n in every.items())
        raise EventRouterError(
            f"no celery node with a broker{wanted} to serve; the celery nodes are: {known}"
        )
    brokers = {node.broker for node in nodes.values()}
    if len(brokers) > 1:
        from eventrouter.config import mask_uri

        listed = ", ".join(f"{p}: {mask_uri(n.broker)}" for p, n in nodes.items())
        raise EventRouterError(
            f"the celery nodes to serve use different brokers ({listed}): start one worker "
            f"per broker, choosing its nodes with --queue"
        )


def make_app(tree: WorkerTree) -> Any:
    """The Celery app of a worker serving ``tree``, with the delivery task registered."""
    from celery import Celery

    app = Celery("eventrouter", broker=tree.broker, set_as_current=True)
    configure_app(app, next(iter(tree.nodes.values())), publishing=False)

    @app.task(  # type: ignore[untyped-decorator]
        name=TASK_NAME,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        ignore_result=True,
        max_retries=None,
    )
    def deliver(  # noqa: PLR0917 - Celery passes a task's arguments by position
        task: Any,
        path: str,
        fingerprint: str,
        payload: str,
        pending: dict[str, list[int]] | None = None,
        first_failure: str | None = None,
    ) -> None:
        run_task(
            tree, task, path, fingerprint, payload, pending=pending, first_failure=first_failure
        )

    return app


def run_task(
    tree: WorkerTree,
    task: Any,
    path: str,
    fingerprint: str,
    payload: str,
    *,
    pending: Mapping[str, Sequence[int]] | None,
    first_failure: str | None,
) -> None:
    """The body of the delivery task: deliver, retry what failed, or dead-letter it.

    The task returns (and is acknowledged) only once every event is delivered or in the
    dead letter; events the dead letter cannot take keep the task in the broker.
    """
    retries: int = task.request.retries
    node = tree.nodes.get(path)
    if node is None or node.fingerprint != fingerprint:
        error = SubtreeMismatchError(
            path, fingerprint, None if node is None else node.fingerprint, sorted(tree.nodes)
        )
        if not tree.refuse(path, payload, error):
            _hold(task, path, fingerprint, payload, None, first_failure, RetryPolicy(), retries)
        raise error
    try:
        events = decode_batch(payload)
    except ValueError as exc:
        if not tree.refuse(path, payload, exc):
            _hold(task, path, fingerprint, payload, None, first_failure, RetryPolicy(), retries)
        raise
    outcome = node.deliver(events, pending, attempt=retries + 1, first_failure=first_failure)
    first = first_failure or dt.datetime.now(dt.UTC).isoformat()
    policy = node.retry_policy
    if outcome.pending and retries >= policy.max_retries:
        node.give_up(events, outcome, attempts=retries + 1, first_failure=first)
        outcome.pending = {}
    if outcome.unsettled and not outcome.pending:
        _hold(task, path, fingerprint, payload, outcome.unsettled, first, policy, retries)
    if not outcome.pending:
        return
    for where, indexes in outcome.unsettled.items():  # tried again with the rest
        outcome.pending.setdefault(where, []).extend(indexes)
    count = sum(len(indexes) for indexes in outcome.pending.values())
    countdown = policy.countdown(retries, outcome.retry_after)
    from celery.exceptions import Reject

    try:
        retry = task.retry(
            args=[path, fingerprint, payload],
            kwargs={"pending": outcome.pending, "first_failure": first},
            countdown=countdown,
            max_retries=policy.max_retries,
            throw=False,
        )
    except Reject as exc:  # the retry could not be published: Celery would drop the task
        log.error(
            "%s: could not schedule retry %d (%s from the broker): dead-lettering %d event "
            "delivery(ies) instead",
            path,
            retries + 1,
            type(exc.reason).__name__,
            count,
        )
        node.give_up(events, outcome, attempts=retries + 1, first_failure=first)
        if outcome.unsettled:
            raise Reject(exc.reason, requeue=True) from None
        return
    node.note_retry(count)
    log.warning(
        "%s: %d event delivery(ies) failed (%s); retry %d of %d in %.1f s",
        path,
        count,
        ", ".join(f"{name}: {error}" for name, error in sorted(outcome.errors.items())),
        retries + 1,
        policy.max_retries,
        countdown,
    )
    raise retry


def _hold(  # noqa: PLR0917 - the task's own arguments, passed on
    task: Any,
    path: str,
    fingerprint: str,
    payload: str,
    pending: Mapping[str, Sequence[int]] | None,
    first_failure: str | None,
    policy: RetryPolicy,
    retries: int,
) -> None:
    """Keep a task whose events the dead letter could not take in the broker: schedule it
    again (no limit on these retries), or, if even that fails, reject it back to its queue.
    Never returns."""
    from celery.exceptions import Reject

    countdown = policy.countdown(min(retries, 30))
    try:
        retry = task.retry(
            args=[path, fingerprint, payload],
            kwargs={"pending": pending, "first_failure": first_failure},
            countdown=countdown,
            max_retries=None,
            throw=False,
        )
    except Reject as exc:
        raise Reject(exc.reason, requeue=True) from None
    log.warning("%s: task kept in the broker; tried again in %.1f s", path, countdown)
    raise retry


def banner(tree: WorkerTree, config: str) -> str:
    """The lines a worker prints at start: broker, queues, subtrees served, dead letter."""
    from eventrouter.config import mask_uri

    lines = [
        f"eventrouter worker for {config}",
        f"  broker: {mask_uri(tree.broker)}",
        f"  queues: {', '.join(tree.queues)}",
        "  serving:",
    ]
    for path, node in sorted(tree.nodes.items()):
        children = ", ".join(node.backends) or "(no backends)"
        lines.append(
            f"    {path}  [queue {node.queue}, fingerprint {node.fingerprint}] -> {children}"
        )
    lines.append(f"  dead letter: {tree.dead_letter.path}")
    return "\n".join(lines)


def run(
    config: str,
    *,
    queues: Sequence[str] = (),
    concurrency: int | None = None,
    loglevel: str = "INFO",
    dead_letter: str | None = None,
    out: TextIO | None = None,
    metrics: tuple[int, str] | None = None,
) -> int:
    """Build the tree, print the banner and run a Celery worker until it is stopped.

    ``metrics`` (port, host) serves the tree's Prometheus metrics, summed over the worker
    processes (see :mod:`eventrouter.metrics.prometheus`).

    Returns the exit status (0 after a warm shutdown, such as on SIGTERM).
    """
    tree = WorkerTree.build(config, queues=queues, dead_letter=dead_letter)
    if metrics is not None:
        from eventrouter.metrics import prometheus

        prometheus.register(tree.tracker, interval=1.0)
        prometheus.serve(*metrics)
        prometheus.mark_celery_children_dead_at_exit()
    print(banner(tree, config), file=out or sys.stdout, flush=True)
    app = make_app(tree)
    argv = [
        "worker",
        f"--queues={','.join(tree.queues)}",
        f"--loglevel={loglevel}",
        f"--hostname=eventrouter-{os.getpid()}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    if concurrency is not None:
        argv.append(f"--concurrency={concurrency}")
    try:
        app.worker_main(argv)
    finally:
        tree.tracker.close()
    return 0
