"""The delivering side of a celery node, in this process (``memory://`` runs the same code as a
worker): nested subtrees delivered synchronously, failures classified as buffered nodes
classify them, poison events isolated, partial failures honoured, the dead letter counted
record by record, and the message encoding's per-event fallback and tag escaping."""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from celery_backends import FileSink

import eventrouter
from eventrouter.backends.buffered import BufferedBackend
from eventrouter.backends.celery import CeleryRouter, decode_batch, encode_batch
from eventrouter.backends.memory import MemoryBackend
from eventrouter.backends.routing import RoutingBackend
from eventrouter.deadletter import DeadLetterFile
from eventrouter.errors import EventEmissionExit, PartialDeliveryError
from eventrouter.event import build_event

NO_WAIT = {"max_retries": 3, "backoff": 0}


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def count(path: Path) -> int:
    return len(records(path))


# -- nested subtrees ------------------------------------------------------------------------


def test_a_failing_leaf_under_a_nested_router_is_retried_with_the_task_policy(
    tmp_path: Path,
) -> None:
    leaf = FileSink(str(tmp_path / "leaf.jsonl"), fail_first=2)
    node = CeleryRouter(
        {"sub": RoutingBackend({"leaf": leaf})},
        task_retry=NO_WAIT,
        dead_letter=tmp_path / "dl.jsonl",
    )
    node.bind_path("remote")
    events = [build_event("e", {"n": n}) for n in range(5)]
    outcome = node.deliver(events)
    assert outcome.pending == {"sub.leaf": [0, 1, 2, 3, 4]}  # not swallowed by "sub"
    node.run_in_process(encode_batch(events))
    assert count(tmp_path / "leaf.jsonl") == 5
    assert records(tmp_path / "dl.jsonl") == []
    node.close()


def test_a_buffered_leaf_under_a_nested_router_has_the_events_when_the_task_returns(
    tmp_path: Path,
) -> None:
    sink = MemoryBackend()
    buffered = BufferedBackend(sink, flush_interval=60.0)
    node = CeleryRouter({"sub": RoutingBackend({"deeper": RoutingBackend({"b": buffered})})})
    node.run_in_process(encode_batch([build_event("e", {"n": n}) for n in range(3)]))
    assert len(sink.events) == 3  # delivered directly, not queued for a minute
    assert buffered.stats()["received"] == 0
    buffered.close()
    node.close()


def test_the_processors_of_nested_routers_run_once_and_can_veto(tmp_path: Path) -> None:
    def stamp(event: dict[str, Any]) -> dict[str, Any]:
        event["data"]["stamps"] = event["data"].get("stamps", 0) + 1
        return event

    def veto_odd(event: dict[str, Any]) -> dict[str, Any]:
        if event["data"]["n"] % 2:
            raise EventEmissionExit
        return event

    sink = MemoryBackend()
    node = CeleryRouter({"sub": RoutingBackend({"s": sink}, processors=[stamp, veto_odd])})
    outcome = node.deliver([build_event("e", {"n": n}) for n in range(4)])
    assert [e["data"] for e in sink.events] == [{"n": 0, "stamps": 1}, {"n": 2, "stamps": 1}]
    assert (outcome.delivered, outcome.vetoed) == (2, 2)
    node.close()


def test_a_dead_letter_from_a_nested_leaf_names_the_leafs_full_path(tmp_path: Path) -> None:
    down = FileSink(str(tmp_path / "x.jsonl"), fail_always=True)
    node = CeleryRouter(
        {"sub": RoutingBackend({"down": down})},
        task_retry={"max_retries": 1, "backoff": 0},
        dead_letter=tmp_path / "dl.jsonl",
    )
    node.bind_path("remote")
    node.run_in_process(encode_batch([build_event("e", {"n": 1})]))
    [record] = records(tmp_path / "dl.jsonl")
    assert (record["destination"], record["attempts"]) == ("remote.sub.down", 2)
    node.close()


def test_a_celery_node_nested_in_the_subtree_publishes_before_the_outer_task_returns(
    tmp_path: Path,
) -> None:
    def stamp(event: dict[str, Any]) -> dict[str, Any]:
        event["data"]["stamps"] = event["data"].get("stamps", 0) + 1
        return event

    sink = MemoryBackend()
    inner = CeleryRouter({"s": sink}, processors=[stamp], flush_interval=60.0)
    outer = CeleryRouter({"inner": inner})
    outer.run_in_process(encode_batch([build_event("e", {"n": n}) for n in range(3)]))
    assert [e["data"]["stamps"] for e in sink.events] == [1, 1, 1]  # inner's processors, once
    assert inner.stats()["buffer"]["received"] == 0  # not queued behind a minute's timer
    outer.close()


def test_a_nested_celery_node_with_a_broker_publishes_and_does_not_deliver_here(
    tmp_path: Path,
) -> None:
    from conftest import free_port

    sink = MemoryBackend()
    inner = CeleryRouter(
        {"s": sink}, broker=f"redis://127.0.0.1:{free_port()}/0", buffer={"max_retries": 0}
    )
    outer = CeleryRouter({"inner": inner}, task_retry=NO_WAIT)
    outcome = outer.deliver([build_event("e")])
    assert outcome.pending == {"inner": [0]}  # the broker is down: the outer task retries
    assert outcome.errors == {"inner": "DeliveryError"}
    assert sink.events == []  # the inner subtree runs on its own workers, never here
    outer.close(5)


# -- failures: one classification, poison isolated, partial failures ----------------------


class Picky:
    """A batch backend that raises a plain ``TypeError`` on any batch with a poison event."""

    def __init__(self) -> None:
        self.got: list[str] = []

    def send(self, event: dict[str, Any]) -> None:
        self.send_batch([event])

    def send_batch(self, events: list[dict[str, Any]]) -> None:
        if any(e["data"].get("poison") for e in events):
            raise TypeError("cannot take it")
        self.got += [e["id"] for e in events]


def test_a_plain_exception_is_permanent_and_its_poison_event_is_isolated(
    tmp_path: Path,
) -> None:
    picky = Picky()
    node = CeleryRouter({"p": picky}, task_retry=NO_WAIT, dead_letter=tmp_path / "dl.jsonl")
    events = [build_event("e", {"n": n, "poison": n == 3}) for n in range(10)]
    node.run_in_process(encode_batch(events))
    [record] = records(tmp_path / "dl.jsonl")
    assert record["event"]["data"]["n"] == 3
    assert (record["error"], record["attempts"]) == ("TypeError", 1)  # not retried
    assert sorted(picky.got) == sorted(e["id"] for e in events if e["data"]["n"] != 3)
    assert len(picky.got) == 9  # each good event once
    assert node.stats()["retried"] == 0
    node.close()


class Partial:
    """Refuses, for good, the events at the positions its ``send_batch`` names."""

    def __init__(self) -> None:
        self.got: list[int] = []

    def send(self, event: dict[str, Any]) -> None:
        self.send_batch([event])

    def send_batch(self, events: list[dict[str, Any]]) -> None:
        bad = [i for i, e in enumerate(events) if e["data"]["n"] in (2, 5)]
        self.got += [e["data"]["n"] for i, e in enumerate(events) if i not in bad]
        if bad:
            raise PartialDeliveryError("some refused", failed=bad)


def test_a_partial_failure_fails_only_the_events_it_names(tmp_path: Path) -> None:
    partial = Partial()
    node = CeleryRouter({"p": partial}, task_retry=NO_WAIT, dead_letter=tmp_path / "dl.jsonl")
    node.run_in_process(encode_batch([build_event("e", {"n": n}) for n in range(8)]))
    assert sorted(partial.got) == [0, 1, 3, 4, 6, 7]  # delivered once each, never resent
    assert sorted(r["event"]["data"]["n"] for r in records(tmp_path / "dl.jsonl")) == [2, 5]
    stats = node.stats()
    assert (stats["delivered"], stats["dead_lettered"]) == (6, 2)
    node.close()


def test_an_os_error_is_retried_as_a_buffered_node_would() -> None:
    class Flaky:
        calls = 0

        def send(self, event: dict[str, Any]) -> None:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise ConnectionResetError("reset")

    node = CeleryRouter({"f": Flaky()}, task_retry=NO_WAIT)
    outcome = node.deliver([build_event("e")])
    assert outcome.pending == {"f": [0]}
    assert node.deliver([build_event("e")], outcome.pending).delivered == 1
    node.close()


# -- the dead letter, counted record by record ---------------------------------------------


def test_a_dead_letter_that_cannot_be_written_leaves_the_events_unsettled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = FileSink("/nonexistent/never", fail_always=True)
    node = CeleryRouter({"down": down}, task_retry=NO_WAIT, dead_letter=DeadLetterFile("/dev/full"))
    events = [build_event("e", {"n": n}) for n in range(3)]
    outcome = node.deliver(events)
    with caplog.at_level(logging.ERROR, "eventrouter.celery"):
        written = node.give_up(events, outcome, attempts=4, first_failure=None)
    assert written == 0
    assert outcome.unsettled == {"down": [0, 1, 2]}
    stats = node.stats()
    assert (stats["dead_lettered"], stats["lost"]) == (0, 3)
    assert "NOT WRITTEN" in caplog.text
    node.close()


# -- fingerprints ----------------------------------------------------------------------------


def test_a_node_built_in_python_has_a_fingerprint_workers_recognise_as_such(
    tmp_path: Path,
) -> None:
    built = CeleryRouter({"m": MemoryBackend()})
    config = tmp_path / "tree.yaml"
    config.write_text(
        json.dumps({"backends": {"c": {"class": "celery", "backends": {"m": {"class": "memory"}}}}})
    )
    loaded = eventrouter.load(config)
    try:
        yaml_node = loaded.get_backend("c")
        assert built.fingerprint.startswith("py-")
        assert not yaml_node.fingerprint.startswith("py-")
    finally:
        loaded.close()
        built.close()


# -- the encoding: per-event fallback, escaped tags ----------------------------------------


def test_one_odd_event_does_not_change_its_neighbours_types() -> None:
    good = build_event(
        "a",
        {"when": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "p": Decimal("1.10"), "u": uuid.uuid4()},
    )
    nan = build_event("b", {"x": float("nan")})
    int_key = build_event("c", {1: "an int key"})
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    looped = build_event("d", {"loop": cycle})
    back = decode_batch(encode_batch([good, nan, int_key, looped]))
    assert back[0] == good
    assert type(back[0]["data"]["p"]) is Decimal
    assert [e["name"] for e in back] == ["a", "b", "c", "d"]
    assert back[1]["data"]["x"] == "NaN"
    assert back[2]["data"] == {"1": "an int key"}


@pytest.mark.parametrize(
    "value",
    [
        {"$eventrouter": "decimal", "value": "3"},
        {"$eventrouter": "uuid", "value": "5f0c8a4e-1c2b-4f61-9e3e-0d7f5a2b9c11"},
        {"$$eventrouter": "decimal", "value": "3"},
        {"$eventrouter": 1, "nested": {"$eventrouter": "date", "value": "2026-01-01"}},
    ],
)
def test_a_user_dict_shaped_like_a_tag_comes_back_as_the_same_dict(value: Any) -> None:
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    event = build_event("s", {"v": value, "when": when})
    [back] = decode_batch(encode_batch([event]))
    assert back["data"]["v"] == value
    assert back["data"]["when"] == when  # real tags still decode


def test_the_counts_match_the_events_at_the_sinks(tmp_path: Path) -> None:
    """delivered + dead-lettered = emitted, per destination, across a nested subtree."""
    ok = MemoryBackend()
    node = CeleryRouter(
        {"ok": ok, "sub": RoutingBackend({"picky": Picky()})},
        task_retry=NO_WAIT,
        dead_letter=tmp_path / "dl.jsonl",
        flush_interval=0.01,
    )
    tracker = eventrouter.Tracker(backends={"c": node})
    for n in range(20):
        tracker.emit("e", {"n": n, "poison": n % 7 == 0})
    tracker.close(30)
    stats = node.stats()
    by_path = collections.Counter(r["destination"] for r in records(tmp_path / "dl.jsonl"))
    assert by_path == {"c.sub.picky": 3}
    assert stats["delivered"] + stats["dead_lettered"] == 40
    assert len(ok.events) == 20
