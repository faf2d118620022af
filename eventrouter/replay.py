"""Replay dead letters: send each event back to its own destination, and only there.

A dead-letter record names the node that failed (``analytics.segment``); replaying it
through the whole tree would deliver it again to every other branch. :func:`replay`
resolves that dotted path in the tree and hands the event to that node alone (to its
``replay_batch(events)`` when it has one: a node whose own processors already ran on the
event, such as a celery node that could not publish, delivers it without running them
again), through a buffered node of its own (retries, backoff, poison isolation) whose dead
letter is a *new* file. A record whose destination is a router (a worker's refused task
names the celery node) is fanned out to that router's children without running its own
processors again, and every leaf counts and dead-letters its own failures. An input file is
renamed ``<file>.replayed`` only once every record in it is settled: delivered, or written
to the new dead-letter file (records not selected by ``only``, or whose destination is not
in the tree, are carried over to it unchanged).
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventrouter.backends.buffered import BufferedBackend
from eventrouter.backends.routing import RoutingBackend
from eventrouter.deadletter import DeadLetterFile, DeadLetterRecord, read_dead_letters
from eventrouter.encoding import parse_timestamp
from eventrouter.errors import EventEmissionExit
from eventrouter.event import copy_event
from eventrouter.typing import Backend, Event

__all__ = ["DestinationCounts", "ReplayReport", "default_dead_letter_path", "replay", "resolve"]

REPLAYED_SUFFIX = ".replayed"
CLOSE_TIMEOUT = 30.0
"""Seconds an interrupted replay gives its nodes to deliver what they hold."""
_POLL = 0.2


def _children(node: object) -> dict[str, Backend] | None:
    if isinstance(node, BufferedBackend):
        node = node.backend
    if isinstance(node, RoutingBackend):
        return node.backends
    return None


def resolve(root: RoutingBackend, path: str) -> Backend | None:
    """The node at dotted ``path`` under ``root`` (``analytics.segment``), or ``None``.

    Routers (and buffered routers) are walked through their backends; a backend name that
    itself contains dots is matched too.
    """
    node: Backend = root
    parts = path.split(".")
    while parts:
        children = _children(node)
        if children is None:
            return None
        for cut in range(len(parts), 0, -1):
            name = ".".join(parts[:cut])
            if name in children:
                node, parts = children[name], parts[cut:]
                break
        else:
            return None
    return None if node is root else node


def selected(destination: str, only: str | None) -> bool:
    """Whether ``destination`` is ``only`` or under it (every destination without ``only``)."""
    return only is None or destination == only or destination.startswith(only + ".")


def default_dead_letter_path(first_input: str | os.PathLike[str]) -> Path:
    """``dead.jsonl`` -> ``dead.retry-20261121T100000Z.jsonl``, beside the input."""
    path = Path(first_input)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return path.with_name(f"{path.stem}.retry-{stamp}{path.suffix or '.jsonl'}")


@dataclass
class DestinationCounts:
    """What happened to the records of one destination."""

    records: int = 0
    delivered: int = 0
    failed_again: int = 0
    lost: int = 0


@dataclass
class ReplayReport:
    """The outcome of :func:`replay`.

    Attributes:
        destinations: counts per destination path that was replayed.
        carried: records written unchanged to the new file because ``only`` left them out.
        unknown: records whose destination is not in the tree (carried over as well).
        damaged: lines of the inputs that were not records (skipped).
        renamed: the inputs renamed ``.replayed``.
        kept: the inputs left in place (not all settled: interrupted, or a write failed).
        dead_letter: the new dead-letter file (it exists only if something was written).
        interrupted: the replay was stopped before reading everything.
    """

    destinations: dict[str, DestinationCounts] = field(default_factory=dict)
    carried: int = 0
    unknown: int = 0
    unknown_paths: set[str] = field(default_factory=set)
    damaged: int = 0
    carry_errors: int = 0
    renamed: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    dead_letter: Path | None = None
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        """Everything replayed was delivered, and nothing was unknown, damaged or lost."""
        return not (
            self.unknown
            or self.damaged
            or self.carry_errors
            or self.kept
            or self.interrupted
            or any(c.failed_again or c.lost for c in self.destinations.values())
        )


class _Replayer:
    def __init__(self, root: RoutingBackend, dead_letter: DeadLetterFile, only: str | None):
        self.root = root
        self.dead_letter = dead_letter
        self.only = only
        self.nodes: dict[str, BufferedBackend | None] = {}
        self.fan_outs: dict[str, _FanOut] = {}
        self.report = ReplayReport(dead_letter=dead_letter.path)

    def target(self, destination: str) -> BufferedBackend | _FanOut | None:
        """Where the events of ``destination`` are sent: the node's own replay node, or,
        for a router, a fan-out to the replay nodes of its children."""
        if destination in self.fan_outs:
            return self.fan_outs[destination]
        if destination not in self.nodes:
            found = resolve(self.root, destination)
            if isinstance(found, BufferedBackend):
                found = found.backend
            if isinstance(found, RoutingBackend) and not callable(
                getattr(found, "replay_batch", None)
            ):
                fan_out = _FanOut(self, destination, found)
                self.fan_outs[destination] = fan_out
                return fan_out
        return self.node(destination)

    def node(self, destination: str) -> BufferedBackend | None:
        if destination in self.nodes:
            return self.nodes[destination]
        found = resolve(self.root, destination)
        made: BufferedBackend | None = None
        if found is not None:
            settings: dict[str, Any] = {}
            if isinstance(found, BufferedBackend):
                settings = {
                    "batch_size": found.batch_size,
                    "max_retries": found.max_retries,
                    "retry_deadline": found.retry_deadline,
                    "backoff": found.backoff,
                }
                found = found.backend
            entry = getattr(found, "replay_batch", None)
            if callable(entry):  # events that already passed the node's processors
                found = _ReplayEntry(entry)
            made = BufferedBackend(
                found,
                **settings,
                max_queue=10 * settings.get("batch_size", 100),  # reading waits for delivery
                flush_interval=0.05,
                when_full="block",
                block_timeout=365 * 24 * 3600.0,
                dead_letter=self.dead_letter,
            )
            made.path = destination  # not bind_path: the node already knows its path
            made._close_backend = False  # the tree closes its own nodes
        self.nodes[destination] = made
        return made

    def carry(self, record: DeadLetterRecord) -> None:
        ok = self.dead_letter.write(
            record["event"],
            destination=record["destination"],
            error=record.get("error") or "Unknown",
            attempts=_int(record.get("attempts")),
            first_failure=_when(record.get("first_failure")),
            last_failure=_when(record.get("last_failure")),
        )
        if not ok:
            self.report.carry_errors += 1

    def handle(self, record: DeadLetterRecord, dry_run: bool) -> None:
        destination = record["destination"]
        if not selected(destination, self.only):
            self.report.carried += 1
            if not dry_run:
                self.carry(record)
            return
        node = self.target(destination)
        if node is None:
            self.report.unknown += 1
            self.report.unknown_paths.add(destination)
            if not dry_run:
                self.carry(record)
            return
        event = _envelope(record["event"])
        if event is None:  # not an event: counted as damaged, left in the input
            self.report.damaged += 1
            return
        counts = self.report.destinations.setdefault(destination, DestinationCounts())
        counts.records += 1
        if not dry_run:
            node.send(event)

    def settle(self, interrupted: Callable[[], bool]) -> bool:
        """Wait until every node has delivered or dead-lettered what it was given.

        Once ``interrupted()``, the nodes get :data:`CLOSE_TIMEOUT` seconds, then what they
        still hold goes to the new dead-letter file.
        """
        nodes = [node for node in self.nodes.values() if node is not None]
        while not all(node.flush(_POLL) for node in nodes):
            if self.report.interrupted or interrupted():
                self.report.interrupted = True
                for node in nodes:
                    node.close(CLOSE_TIMEOUT)
                break
        return self.dead_letter.sync()

    def close(self, timeout: float | None) -> None:
        for node in self.nodes.values():
            if node is not None:
                node.close(timeout)
        for destination, node in self.nodes.items():
            if node is None:
                continue
            stats = node.stats()
            counts = self.report.destinations.setdefault(destination, DestinationCounts())
            counts.delivered = stats["delivered"]
            counts.failed_again = stats["dead_lettered"]
            counts.lost = stats["lost"]
        self.dead_letter.close()


class _FanOut:
    """A router as a replay destination: its events (processed by it already, such as a
    worker's refused task for a celery node) go to each of its children's replay nodes, so
    every leaf counts and dead-letters its own failures in the replay's new file. Routers
    below run their processors on the way, as they would have."""

    def __init__(self, replayer: _Replayer, path: str, router: RoutingBackend) -> None:
        self.replayer = replayer
        self.path = path
        self.router = router

    def send(self, event: Event) -> None:
        for name, child in list(self.router.backends.items()):
            path = f"{self.path}.{name}"
            inner = child.backend if isinstance(child, BufferedBackend) else child
            copy = copy_event(event)
            if isinstance(inner, RoutingBackend):
                try:
                    copy = inner.process_event(copy)
                except EventEmissionExit:
                    continue
            target = self.replayer.target(path)
            if target is not None:
                target.send(copy)


class _ReplayEntry:
    """A node's ``replay_batch(events)`` as a backend: it delivers what the node had accepted
    and processed (a celery node publishes it again) without running its processors twice."""

    def __init__(self, replay_batch: Callable[[Sequence[Event]], Any]) -> None:
        self.send_batch = replay_batch

    def send(self, event: Event) -> None:
        self.send_batch([event])


def _check_input(path: Path) -> None:
    """Refuse an input that is not a regular file, before anything is read or renamed."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(mode):
        kind = (
            "a directory"
            if stat.S_ISDIR(mode)
            else "a FIFO or socket"
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
            else "a device"
        )
        raise ValueError(
            f"{path}: is {kind}, not a dead-letter file: replay reads and then renames regular "
            f"files (copy the records to a file first)"
        )


def _envelope(event: dict[str, Any]) -> Event | None:
    """The event of a record, completed where an older or hand-made record left keys out
    (``data`` and ``context`` empty, ``timestamp`` unknown, a new ``id``); ``None`` when it
    cannot be an event (no ``name``, or ``data``/``context`` that are not objects)."""
    name = event.get("name")
    if not isinstance(name, str) or not name:
        return None
    completed = dict(event)
    for key in ("data", "context"):
        value = completed.setdefault(key, {})
        if value is None:
            completed[key] = {}
        elif not isinstance(value, dict):
            return None
    if not isinstance(completed.get("id"), str) or not completed["id"]:
        completed["id"] = str(uuid.uuid4())
    when = parse_timestamp(completed.get("timestamp"))
    if when is not None or "timestamp" not in completed:
        completed["timestamp"] = when
    return completed


def _int(value: object) -> int:
    return value if type(value) is int else 1


def _when(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def replay(
    root: RoutingBackend,
    inputs: Iterable[str | os.PathLike[str]],
    *,
    dead_letter: str | os.PathLike[str],
    only: str | None = None,
    dry_run: bool = False,
    on_record: Callable[[Path], None] | None = None,
    interrupted: Callable[[], bool] = lambda: False,
) -> ReplayReport:
    """Send every dead-lettered event in ``inputs`` back to its own destination in ``root``.

    Args:
        root: the root router of the tree (``tracker.router``).
        inputs: dead-letter files, replayed in order.
        dead_letter: the new file for what fails again (never one of the inputs).
        only: replay only the destination at this path, or under it; the other records are
            carried over to the new file unchanged.
        dry_run: count what would be sent where; send, write and rename nothing.
        on_record: called with the input's path after each record (progress).
        interrupted: polled between records; when it returns ``True`` (or on
            ``KeyboardInterrupt``), the rest of the current file is carried over unread,
            what was sent is delivered or dead-lettered within :data:`CLOSE_TIMEOUT`, the
            file is renamed, and the files not started are left as they are.

    Raises:
        ValueError: ``dead_letter`` is one of the inputs, or an input is not a regular file
            (a directory, a device such as ``/dev/zero``, a FIFO: replay renames what it
            settled, and a FIFO would wait for a writer forever).
    """
    paths = [Path(p) for p in inputs]
    for path in paths:
        _check_input(path)
    target = Path(dead_letter)
    if any(_same(target, p) for p in paths):
        raise ValueError(
            f"the new dead-letter file {target} is one of the inputs: give another --dead-letter"
        )
    replayer = _Replayer(root, DeadLetterFile(target), only)
    report = replayer.report
    stopped = False
    try:
        for path in paths:
            if stopped:
                report.kept.append(path)
                continue
            reader = read_dead_letters(path)
            records = iter(reader)
            try:
                for record in _records(records, stopped_by=interrupted):
                    replayer.handle(record, dry_run)
                    if on_record is not None:
                        on_record(path)
            except _Stop:
                stopped = report.interrupted = True
                if not dry_run:
                    for record in records:  # settle the rest of this file: carry it over
                        replayer.carry(record)
                        report.carried += 1
            report.damaged += reader.damaged
            if dry_run:
                continue
            settled = replayer.settle(interrupted)
            if settled and not report.carry_errors and not _lost(replayer):
                path.replace(path.with_name(path.name + REPLAYED_SUFFIX))
                report.renamed.append(path)
                continue
            report.kept.append(path)
    finally:
        replayer.close(CLOSE_TIMEOUT)
    return report


class _Stop(Exception):
    pass


def _records(
    records: Iterator[DeadLetterRecord], *, stopped_by: Callable[[], bool]
) -> Iterator[DeadLetterRecord]:
    while True:
        if stopped_by():
            raise _Stop
        try:
            record = next(records)
        except StopIteration:
            return
        except KeyboardInterrupt:
            raise _Stop from None
        yield record


def _lost(replayer: _Replayer) -> bool:
    return any(node is not None and node.stats()["lost"] for node in replayer.nodes.values())


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
