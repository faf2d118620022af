"""Exit, signals, close bounds and fork: nothing buffered goes away without being counted."""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from types import FrameType

import pytest
from buffered_helpers import WAIT, Recorder, Stalled, assert_accounted, dead_ids
from conftest import needs_fork, run_in_fork

import eventrouter
from eventrouter import RoutingBackend, Tracker, build_event, lifecycle
from eventrouter.backends.buffered import BufferedBackend
from eventrouter.deadletter import read_dead_letters
from eventrouter.typing import Event

CHILD = Path(__file__).with_name("delivery_child.py")


def run_child(mode: str, folder: Path, count: int, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), mode, str(folder), str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def assert_child_accounted(folder: Path) -> tuple[list[str], list[str]]:
    """Every emitted id delivered or dead-lettered; twice only when documented: a batch
    still in flight when close() gave up is dead-lettered, and may be delivered after all."""
    emitted = lines(folder / "emitted")
    delivered = lines(folder / "delivered")
    dead = dead_ids(folder / "dead.jsonl")
    in_flight = (
        {
            r["event"]["id"]
            for r in read_dead_letters(folder / "dead.jsonl")
            if r["error"] == "InFlightAtClose"
        }
        if dead
        else set()
    )
    assert set(delivered) | set(dead) == set(emitted)
    twice = {k for k, n in Counter([*delivered, *dead]).items() if n > 1}
    assert twice <= in_flight
    assert len(delivered) == len(set(delivered))
    return delivered, dead


@pytest.mark.slow
def test_exit_without_close_delivers_what_is_buffered(tmp_path: Path) -> None:
    child = run_child("exit", tmp_path, 2000)
    _, err = child.communicate(timeout=WAIT)
    assert child.returncode == 0, err
    delivered, dead = assert_child_accounted(tmp_path)
    assert len(delivered) == 2000
    assert dead == []


@pytest.mark.slow
def test_exit_dead_letters_what_it_cannot_deliver_within_its_timeout(tmp_path: Path) -> None:
    child = run_child("exit", tmp_path, 2000, EXIT_TIMEOUT="0")
    _, err = child.communicate(timeout=WAIT)
    assert child.returncode == 0, err
    _, dead = assert_child_accounted(tmp_path)
    assert dead  # no time at all: what was still queued is in the dead letter


@pytest.mark.slow
def test_sigterm_flushes_then_exits_with_the_signal_status(tmp_path: Path) -> None:
    child = run_child("signal", tmp_path, 2000)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=WAIT)
    assert child.returncode == 128 + signal.SIGTERM, err
    delivered, _ = assert_child_accounted(tmp_path)
    assert len(delivered) == 2000


@pytest.mark.slow
def test_os_exit_is_the_one_case_that_loses_the_queue(tmp_path: Path) -> None:
    child = run_child("os_exit", tmp_path, 2000)
    _, err = child.communicate(timeout=WAIT)
    assert child.returncode == 0, err
    emitted = lines(tmp_path / "emitted")
    settled = lines(tmp_path / "delivered") + dead_ids(tmp_path / "dead.jsonl")
    assert len(settled) < len(emitted)  # documented: os._exit skips every exit hook


def test_a_signal_handler_chains_to_the_previous_python_handler(tmp_path: Path) -> None:
    seen: list[int] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    backend = Stalled()
    backend.release()
    node = BufferedBackend(backend, flush_interval=WAIT, dead_letter=tmp_path / "dl")
    old = signal.signal(signal.SIGUSR1, previous)
    try:
        lifecycle.install_signal_handlers(timeout=WAIT, signals=[signal.SIGUSR1])
        node.send(build_event("a"))
        os.kill(os.getpid(), signal.SIGUSR1)
        assert seen == [signal.SIGUSR1]  # handlers run before the next bytecode
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert backend.ids  # delivered by the handler, although the timer was far off
    assert node.stats()["depth"] == 0


@pytest.mark.slow
def test_tracker_close_bounds_every_node_even_one_that_ignores_timeouts(tmp_path: Path) -> None:
    stuck, release, returned = threading.Event(), threading.Event(), threading.Event()

    class Hangs:
        def send(self, event: Event) -> None:
            pass

        def close(self) -> None:  # takes no timeout, and never returns by itself
            stuck.set()
            release.wait(WAIT)
            returned.set()

    stalled = Stalled()
    node = BufferedBackend(stalled, dead_letter=tmp_path / "dl", flush_interval=0.0)
    tracker = Tracker(
        backends={"hangs": Hangs(), "nested": RoutingBackend({"stalled": node})},
    )
    ids = []
    for n in range(5):
        event = build_event("e", {"n": n})
        ids.append(event["id"])
        tracker.send(event)
    tracker.close(timeout=0.2)
    assert stuck.is_set()
    assert not returned.is_set()  # close returned with Hangs still closing
    node.close(WAIT)  # returns once the tracker's close of the node has finished
    assert_accounted(node, ids, [], tmp_path / "dl")
    release.set()
    stalled.release()


def test_the_exit_hook_closes_open_nodes_at_once(tmp_path: Path) -> None:
    a, b = Recorder(), Recorder()
    nodes = [
        BufferedBackend(x, flush_interval=WAIT, dead_letter=tmp_path / f"{n}.dl")
        for n, x in enumerate((a, b))
    ]
    for node in nodes:
        node.send(build_event("e"))
    assert lifecycle.close_open_nodes(WAIT) >= 2
    assert len(a.ids) == len(b.ids) == 1
    assert lifecycle.close_open_nodes(WAIT) == 0 or all(n.stats()["depth"] == 0 for n in nodes)


def test_set_exit_timeout_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="exit timeout"):
        lifecycle.set_exit_timeout(-1)


def test_install_signal_handlers_is_exported_at_the_top() -> None:
    assert eventrouter.install_signal_handlers is lifecycle.install_signal_handlers


def test_every_public_name_is_listed_and_every_function_documented() -> None:
    public = {
        name
        for name, value in vars(lifecycle).items()
        if not name.startswith("_")
        and (
            (inspect.isfunction(value) and value.__module__ == lifecycle.__name__)
            or (name.isupper() and isinstance(value, int | float))
        )
    }
    assert public == set(lifecycle.__all__)
    for name in lifecycle.__all__:
        value = getattr(lifecycle, name)
        if inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name} has no docstring"


# -- fork --------------------------------------------------------------------------------


@needs_fork
def test_a_forked_child_starts_empty_and_delivers_its_own_events(tmp_path: Path) -> None:
    backend = Stalled()
    node = BufferedBackend(
        backend, batch_size=1, dead_letter=tmp_path / "dl", **{"flush_interval": 0.0}
    )
    node.send(build_event("parent"))
    assert backend.entered.wait(WAIT)
    node.send(build_event("parent queued"))

    def child() -> int:
        if node.stats()["depth"] != 0 or node.stats()["received"] != 0:
            return 2
        backend.ids.clear()
        backend.release()  # in the child only: the parent's worker is not here
        node.send(build_event("child"))
        node.close(WAIT)
        stats = node.stats()
        return 0 if stats["delivered"] == 1 and len(backend.ids) == 1 else 1

    assert run_in_fork(child) == 0
    assert node.stats()["depth"] == 1  # the parent's queue is untouched
    backend.release()
    node.close(WAIT)
    assert node.stats()["delivered"] == 2


@pytest.mark.slow
@needs_fork
def test_fifty_forks_while_four_threads_emit_never_hang_and_lose_nothing(tmp_path: Path) -> None:
    backend = Recorder(fail_times=3)
    node = BufferedBackend(
        backend,
        max_queue=200,
        batch_size=20,
        dead_letter=tmp_path / "dl",
        backoff=(0.001, 0.002),
        flush_interval=0.001,
    )
    tracker = Tracker(backends={"buffered": node})
    stop = threading.Event()
    emitted: list[list[str]] = [[] for _ in range(4)]

    def emit(out: list[str]) -> None:
        while not stop.is_set():
            event = build_event("busy", {"n": len(out)})
            out.append(event["id"])
            tracker.send(event)

    threads = [threading.Thread(target=emit, args=(out,)) for out in emitted]
    for thread in threads:
        thread.start()

    def child() -> int:
        mine = Recorder()
        node.backend = mine
        node._send_batch = mine.send_batch
        for n in range(20):
            tracker.emit("child", {"n": n})
        tracker.close(WAIT)
        stats = node.stats()
        return 0 if stats["delivered"] == 20 == len(mine.ids) and stats["received"] == 20 else 1

    try:
        codes = [run_in_fork(child, timeout=WAIT) for _ in range(50)]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    tracker.close(WAIT)
    assert codes == [0] * 50
    assert_accounted(node, [i for out in emitted for i in out], backend.ids, tmp_path / "dl")


@needs_fork
def test_fifty_forks_with_a_json_log_and_a_buffered_node_never_hang_or_copy_the_parents_lines(
    tmp_path: Path,
) -> None:
    # The JSON log keeps accepted lines in memory for up to a second: a child that wrote
    # them too would duplicate them; one that inherited its lock held would hang.
    log_path = tmp_path / "log.jsonl"
    tracker = eventrouter.load(
        {"backends": {"log": {"class": "jsonlog", "options": {"path": str(log_path)}}}}
    )
    backend = Recorder(fail_times=2)
    node = BufferedBackend(
        backend,
        max_queue=500,
        batch_size=20,
        dead_letter=tmp_path / "dl",
        backoff=(0.001, 0.002),
        flush_interval=0.001,
    )
    tracker.router.register_backend("buffered", node)
    stop = threading.Event()
    emitted: list[list[str]] = [[] for _ in range(4)]

    def emit(out: list[str]) -> None:
        while not stop.is_set():
            event = build_event("parent", {"n": len(out)})
            out.append(event["id"])
            tracker.send(event)

    threads = [threading.Thread(target=emit, args=(out,)) for out in emitted]
    for thread in threads:
        thread.start()

    def child() -> int:
        mine = Recorder()
        node.backend = mine
        node._send_batch = mine.send_batch
        for n in range(20):
            tracker.emit("child", {"pid": os.getpid(), "n": n})
        tracker.close(WAIT)
        return 0 if node.stats()["delivered"] == 20 == len(mine.ids) else 1

    try:
        codes = [run_in_fork(child, timeout=WAIT) for _ in range(50)]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    tracker.close(WAIT)
    assert codes == [0] * 50
    parent_ids = [i for out in emitted for i in out]
    assert_accounted(node, parent_ids, backend.ids, tmp_path / "dl")
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    by_name = Counter(line["name"] for line in lines)
    assert by_name == {"parent": len(parent_ids), "child": 50 * 20}
    written = Counter(line["id"] for line in lines if line["name"] == "parent")
    assert written == Counter(parent_ids)  # each parent line once: no child wrote one
    pids = Counter(line["data"]["pid"] for line in lines if line["name"] == "child")
    assert len(pids) == 50
    assert set(pids.values()) == {20}
