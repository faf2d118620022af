"""``eventrouter replay``: each dead letter goes back to its own destination, and only there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from buffered_helpers import WAIT

from eventrouter import RoutingBackend, build_event
from eventrouter.backends.buffered import BufferedBackend
from eventrouter.backends.memory import MemoryBackend
from eventrouter.deadletter import DeadLetterFile, read_dead_letters
from eventrouter.replay import resolve

TESTS = Path(__file__).resolve().parent
REST = ("--dead-letter", "rest.jsonl")

CONFIG = """\
backends:
  archive: {class: buffered_helpers.SlowFile, options: {path: archive.ids, pause: 0.05}}
  analytics:
    backends:
      inbox: {class: buffered_helpers.SlowFile, options: {path: inbox.ids}}
      broken: {class: buffered_helpers.Refuses}
"""


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventrouter", "replay", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env(),
        timeout=WAIT,
        check=False,
    )


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def ids(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def dead_letters(path: Path, destinations: list[str], error: str = "DeliveryError") -> list[str]:
    dead = DeadLetterFile(path)
    made = []
    for n, destination in enumerate(destinations):
        event = build_event("replayed", {"n": n})
        made.append(event["id"])
        assert dead.write(event, destination=destination, error=error, attempts=3)
    dead.close()
    return made


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(CONFIG)
    return path


@pytest.mark.slow
def test_each_event_goes_back_to_its_own_destination_only(config: Path, tmp_path: Path) -> None:
    dl = tmp_path / "dead.jsonl"
    made = dead_letters(dl, ["archive", "analytics.inbox", "archive"])
    result = run(str(config), str(dl), "--dead-letter", "again.jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ids(tmp_path / "archive.ids") == [made[0], made[2]]
    assert ids(tmp_path / "inbox.ids") == [made[1]]
    assert not dl.exists()
    assert (tmp_path / "dead.jsonl.replayed").exists()
    assert not (tmp_path / "again.jsonl").exists()  # nothing failed again
    assert "archive" in result.stdout
    assert "settled" in result.stdout


@pytest.mark.slow
def test_what_fails_again_goes_to_a_new_dead_letter_file(config: Path, tmp_path: Path) -> None:
    dl = tmp_path / "dead.jsonl"
    made = dead_letters(dl, ["analytics.broken", "analytics.inbox", "nowhere.at.all"])
    result = run(str(config), str(dl), "--dead-letter", "again.jsonl", cwd=tmp_path)
    assert result.returncode == 1
    records = list(read_dead_letters(tmp_path / "again.jsonl"))
    by_destination = {r["destination"]: r for r in records}
    assert sorted(by_destination) == ["analytics.broken", "nowhere.at.all"]
    assert by_destination["analytics.broken"]["event"]["id"] == made[0]
    assert by_destination["nowhere.at.all"]["event"]["id"] == made[2]
    assert by_destination["nowhere.at.all"]["attempts"] == 3  # carried over unchanged
    assert ids(tmp_path / "inbox.ids") == [made[1]]
    assert (tmp_path / "dead.jsonl.replayed").exists()  # every record is settled
    assert "not in the tree" in result.stdout


@pytest.mark.slow
def test_only_replays_one_subtree_and_carries_the_rest_over(config: Path, tmp_path: Path) -> None:
    dl = tmp_path / "dead.jsonl"
    made = dead_letters(dl, ["archive", "analytics.inbox"])
    result = run(
        str(config), str(dl), "--only", "analytics", "--dead-letter", "rest.jsonl", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert ids(tmp_path / "inbox.ids") == [made[1]]
    assert ids(tmp_path / "archive.ids") == []
    assert [r["event"]["id"] for r in read_dead_letters(tmp_path / "rest.jsonl")] == [made[0]]


@pytest.mark.slow
def test_only_must_name_a_node_of_the_tree(config: Path, tmp_path: Path) -> None:
    dl = tmp_path / "dead.jsonl"
    dead_letters(dl, ["archive"])
    result = run(str(config), str(dl), "--only", "analytics.nope", cwd=tmp_path)
    assert result.returncode == 2
    assert "no node at 'analytics.nope'" in result.stderr
    assert dl.exists()


@pytest.mark.slow
def test_dry_run_sends_writes_and_renames_nothing(config: Path, tmp_path: Path) -> None:
    dl = tmp_path / "dead.jsonl"
    dead_letters(dl, ["archive", "archive", "analytics.inbox"])
    result = run(str(config), str(dl), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "dry run" in result.stdout
    assert dl.exists()
    assert not (tmp_path / "archive.ids").exists()
    assert [p.name for p in tmp_path.iterdir() if "retry" in p.name] == []


@pytest.mark.slow
def test_the_new_file_cannot_be_an_input(config: Path, tmp_path: Path) -> None:
    dl = tmp_path / "dead.jsonl"
    dead_letters(dl, ["archive"])
    result = run(str(config), str(dl), "--dead-letter", str(dl), cwd=tmp_path)
    assert result.returncode == 2
    assert "is one of the inputs" in result.stderr
    assert dl.exists()


@pytest.mark.slow
def test_damaged_lines_are_skipped_counted_and_reported(config: Path, tmp_path: Path) -> None:
    dl = tmp_path / "dead.jsonl"
    made = dead_letters(dl, ["archive"])
    with dl.open("a") as handle:
        handle.write('{"destination":"archive","event":{"id"\n')
    result = run(str(config), str(dl), cwd=tmp_path)
    assert result.returncode == 1
    assert "damaged lines skipped: 1" in result.stdout
    assert ids(tmp_path / "archive.ids") == made


@pytest.mark.slow
def test_sigterm_during_replay_settles_everything_and_renames(config: Path, tmp_path: Path) -> None:
    dl = tmp_path / "dead.jsonl"
    made = dead_letters(dl, ["archive"] * 3000)
    process = subprocess.Popen(
        [sys.executable, "-m", "eventrouter", "replay", str(config), str(dl), *REST],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    deadline = time.monotonic() + WAIT
    while not ids(tmp_path / "archive.ids") and process.poll() is None:
        assert time.monotonic() < deadline, "the replay never started delivering"
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=WAIT)
    delivered = ids(tmp_path / "archive.ids")
    rest = (
        [r["event"]["id"] for r in read_dead_letters(tmp_path / "rest.jsonl")]
        if (tmp_path / "rest.jsonl").exists()
        else []
    )
    assert sorted(delivered + rest) == sorted(made)  # each exactly once
    assert (tmp_path / "dead.jsonl.replayed").exists()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert rest  # stopped before the end: the unread rest was carried over
    assert "carried over" in err


def test_resolve_walks_routers_and_buffered_routers() -> None:
    leaf = MemoryBackend()
    root = RoutingBackend(
        {"a": RoutingBackend({"b.c": BufferedBackend(RoutingBackend({"d": leaf}))})}
    )
    assert resolve(root, "a.b.c.d") is leaf
    assert resolve(root, "a.b") is None
    assert resolve(root, "a.b.c.d.e") is None
    assert resolve(root, "") is None


def test_replayed_events_keep_their_timestamp_as_a_datetime(tmp_path: Path) -> None:
    from eventrouter.replay import replay

    dl = tmp_path / "dead.jsonl"
    dead = DeadLetterFile(dl)
    event = build_event("e")
    dead.write(event, destination="sink", error="E")
    sink = MemoryBackend()
    report = replay(RoutingBackend({"sink": sink}), [dl], dead_letter=tmp_path / "new.jsonl")
    assert report.ok
    assert sink.events[0]["timestamp"] == event["timestamp"]
    assert json.loads(json.dumps(sink.events[0]["data"])) == {}


ROUTER_CONFIG = """\
dead_letter: tree-dead.jsonl
backends:
  analytics:
    processors: [{class: celery_backends.stamp}]
    backends:
      inbox: {class: celery_backends.FileSink, options: {path: inbox.jsonl}}
      broken: {class: buffered_helpers.Refuses}
      deeper:
        processors: [{class: celery_backends.stamp}]
        backends:
          leaf: {class: celery_backends.FileSink, options: {path: leaf.jsonl}}
"""


def test_a_record_for_a_router_fans_out_to_its_children_and_counts_their_failures(
    tmp_path: Path,
) -> None:
    """A worker's refused task names the celery node (a router): its children get the events,
    its own processors do not run again, and what fails lands in the new file, counted."""
    config = tmp_path / "tree.yaml"
    config.write_text(ROUTER_CONFIG)
    dl = tmp_path / "dead.jsonl"
    made = dead_letters(dl, ["analytics"] * 3, error="SubtreeMismatchError")
    result = run(str(config), str(dl), "--dead-letter", "again.jsonl", cwd=tmp_path)
    assert result.returncode == 1  # something failed again: not a success
    inbox = [json.loads(line) for line in (tmp_path / "inbox.jsonl").read_text().splitlines()]
    assert [e["id"] for e in inbox] == made
    assert [e["data"].get("stamps") for e in inbox] == [None] * 3  # not processed again
    leaf = [json.loads(line) for line in (tmp_path / "leaf.jsonl").read_text().splitlines()]
    assert [e["data"]["stamps"] for e in leaf] == [1, 1, 1]  # "deeper" processors did run
    again = list(read_dead_letters(tmp_path / "again.jsonl"))
    assert sorted(r["event"]["id"] for r in again) == sorted(made)
    assert {r["destination"] for r in again} == {"analytics.broken"}
    assert not (tmp_path / "tree-dead.jsonl").exists()  # not the tree's own dead letter
    assert (tmp_path / "dead.jsonl.replayed").exists()  # every record settled
    assert "analytics.broken" in result.stdout
