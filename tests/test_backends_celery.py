"""The celery node in one process: its message encoding, delivery, retries and fingerprints.

``broker: memory://`` runs the subtree through the same encoding and delivery code a worker
runs, so most of the node is specified here without a broker; tests/test_worker.py runs real
workers on Redis and RabbitMQ.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import eventrouter
from eventrouter.backends.celery import (
    CeleryRouter,
    RetryPolicy,
    decode_batch,
    encode_batch,
)
from eventrouter.backends.memory import MemoryBackend
from eventrouter.backends.routing import RoutingBackend
from eventrouter.deadletter import DeadLetterFile
from eventrouter.errors import DeliveryError, OptionError
from eventrouter.event import build_event

NO_WAIT = {"max_retries": 3, "backoff": 0, "jitter": False}


class Failing:
    """Fails its first ``times`` calls (retryably, or not), then keeps what it is sent."""

    def __init__(self, times: int = 10**9, *, retryable: bool = True) -> None:
        self.times = times
        self.retryable = retryable
        self.calls = 0
        self.events: list[dict[str, Any]] = []

    def send(self, event: dict[str, Any]) -> None:
        self.calls += 1
        if self.calls <= self.times:
            raise DeliveryError("failing on purpose", retryable=self.retryable)
        self.events.append(event)


class Poisoned:
    """A batch backend that refuses, permanently, any batch holding a poison event."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def send(self, event: dict[str, Any]) -> None:
        self.send_batch([event])

    def send_batch(self, events: list[dict[str, Any]]) -> None:
        if any(e["data"].get("poison") for e in events):
            raise DeliveryError("poison", retryable=False)
        self.events.extend(events)


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- the message encoding -----------------------------------------------------------------


def test_encoding_round_trips_datetimes_decimals_uuids_and_bytes() -> None:
    values = {
        "aware": dt.datetime(
            2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))
        ),
        "naive": dt.datetime(2024, 5, 1, 12, 0),
        "day": dt.date(2024, 5, 1),
        "clock": dt.time(12, 30, 1),
        "price": Decimal("12.50"),
        "id": uuid.UUID("5f0c8a4e-1c2b-4f61-9e3e-0d7f5a2b9c11"),
        "raw": b"\x00\xffbytes",
        "nested": [{"when": dt.datetime(2020, 1, 1, tzinfo=dt.UTC), "n": Decimal("1E+3")}],
    }
    event = build_event("order.paid", values)
    [back] = decode_batch(encode_batch([event]))
    assert back == event
    assert type(back["data"]["price"]) is Decimal
    assert back["data"]["aware"].utcoffset() == dt.timedelta(hours=2)
    assert back["data"]["naive"].tzinfo is None


def test_a_dict_that_looks_like_a_tag_but_is_not_one_stays_a_dict() -> None:
    data = {"x": {"$eventrouter": "decimal", "value": "not a number"}, "y": {"$eventrouter": 1}}
    [back] = decode_batch(encode_batch([build_event("n", data)]))
    assert back["data"] == data


def test_encoding_never_raises_on_data_plain_json_cannot_hold() -> None:
    cyclic: dict[str, Any] = {"k": 1}
    cyclic["self"] = cyclic
    event = build_event("odd", {"tuple_key": {(1, 2): "v"}, "cycle": cyclic, "nan": float("nan")})
    [back] = decode_batch(encode_batch([event]))
    assert back["id"] == event["id"]
    assert back["data"]["tuple_key"] == {"(1, 2)": "v"}


def test_decoding_refuses_what_is_not_a_batch() -> None:
    with pytest.raises(ValueError):
        decode_batch('{"not": "a list"}')


# -- retry policy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [{"retries": 3}, {"max_retries": -1}, {"max_retries": 1.5}, {"backoff": "1"}, {"jitter": 1}],
)
def test_task_retry_refuses_bad_settings(option: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="task_retry"):
        RetryPolicy.from_option(option)


def test_countdown_backs_off_exponentially_and_honours_retry_after() -> None:
    policy = RetryPolicy(backoff=2, backoff_max=100, jitter=False)
    assert [policy.countdown(n) for n in range(4)] == [2, 4, 8, 16]
    assert policy.countdown(0, retry_after=30) == 30
    assert RetryPolicy(backoff=2, backoff_max=5, jitter=False).countdown(10) == 5


@pytest.mark.parametrize(
    "options",
    [
        {"broker": "localhost"},
        {"queue": ""},
        {"batch_size": 0},
        {"flush_interval": 0},
        {"buffer": {"batch_size": 5}},
        {"buffer": {"when_full": "explode"}},
        {"task_retry": {"max_retries": -1}},
    ],
)
def test_bad_options_are_refused_at_construction_naming_the_option(
    options: dict[str, Any],
) -> None:
    with pytest.raises(OptionError) as refused:
        CeleryRouter({"m": MemoryBackend()}, **options)
    expected = next(iter(options))
    assert refused.value.option in (expected, "when_full")


# -- delivery of a batch (the worker's code path) -----------------------------------------


def node_with(backends: dict[str, Any], tmp_path: Path, **options: Any) -> CeleryRouter:
    node = CeleryRouter(backends, dead_letter=DeadLetterFile(tmp_path / "dead.jsonl"), **options)
    RoutingBackend({"analytics": node})  # binds the path "analytics"
    return node


def test_a_failing_destination_is_retried_alone_for_its_failed_events(tmp_path: Path) -> None:
    ok, flaky = MemoryBackend(), Failing(times=1)
    node = node_with({"ok": ok, "flaky": flaky}, tmp_path)
    events = [build_event("e", {"n": n}) for n in range(3)]
    outcome = node.deliver(events)
    assert outcome.pending == {"flaky": [0]}
    assert outcome.errors == {"flaky": "DeliveryError"}
    again = node.deliver(events, outcome.pending)
    assert not again.pending
    assert sorted(e["data"]["n"] for e in flaky.events) == [0, 1, 2]
    assert len(ok.events) == 3  # not sent twice


def test_a_poison_event_is_dead_lettered_alone_and_its_neighbours_delivered(
    tmp_path: Path,
) -> None:
    sink = Poisoned()
    node = node_with({"sink": sink}, tmp_path)
    events = [build_event("e", {"n": n, "poison": n == 2}) for n in range(5)]
    outcome = node.deliver(events)
    assert not outcome.pending
    assert [e["data"]["n"] for e in sink.events] == [0, 1, 3, 4]
    [record] = records(tmp_path / "dead.jsonl")
    assert record["event"]["data"]["n"] == 2
    assert record["destination"] == "analytics.sink"


def test_giving_up_dead_letters_the_pending_events_with_their_destination_path(
    tmp_path: Path,
) -> None:
    node = node_with({"down": Failing()}, tmp_path)
    events = [build_event("e", {"n": n}) for n in range(2)]
    outcome = node.deliver(events)
    assert node.give_up(events, outcome, attempts=4, first_failure="2026-01-01T00:00:00+00:00")
    dead = records(tmp_path / "dead.jsonl")
    assert [r["event"]["id"] for r in dead] == [e["id"] for e in events]
    assert {r["destination"] for r in dead} == {"analytics.down"}
    assert {r["error"] for r in dead} == {"DeliveryError"}


def test_paths_bind_at_any_depth() -> None:
    node = CeleryRouter({"m": MemoryBackend()})
    RoutingBackend({"outer": RoutingBackend({"inner": node})})
    assert node.path == "outer.inner"


# -- memory:// : the same code path in this process ----------------------------------------


def memory_tree(tmp_path: Path, sink: Any, **options: Any) -> Any:
    return eventrouter.Tracker(
        backends={
            "analytics": CeleryRouter(
                {"sink": sink},
                broker="memory://",
                batch_size=10,
                flush_interval=0.05,
                task_retry=options.pop("task_retry", NO_WAIT),
                dead_letter=DeadLetterFile(tmp_path / "dead.jsonl"),
                **options,
            )
        }
    )


def test_memory_broker_delivers_every_event_once_through_the_encoding(tmp_path: Path) -> None:
    sink = MemoryBackend()
    tracker = memory_tree(tmp_path, sink)
    for n in range(95):
        tracker.emit("order.paid", {"n": n, "price": Decimal("9.99")})
    tracker.close()
    assert sorted(e["data"]["n"] for e in sink.events) == list(range(95))
    assert {type(e["data"]["price"]) for e in sink.events} == {Decimal}
    assert {type(e["timestamp"]) for e in sink.events} == {dt.datetime}
    stats = tracker.router.backends["analytics"].stats()
    assert stats["delivered"] == 95
    assert stats["received"] == 95


def test_memory_broker_events_are_decoded_copies_not_the_emitted_objects(tmp_path: Path) -> None:
    sink = MemoryBackend()
    node = CeleryRouter({"sink": sink}, broker="memory://")
    event = build_event("e", {"items": [1, 2]})
    node.run_in_process(encode_batch([event]))
    assert sink.events == [event]
    assert sink.events[0]["data"]["items"] is not event["data"]["items"]


def test_memory_broker_retries_a_failing_backend_until_it_recovers(tmp_path: Path) -> None:
    flaky = Failing(times=2)
    tracker = memory_tree(tmp_path, flaky)
    for n in range(5):
        tracker.emit("e", {"n": n})
    tracker.close()
    assert sorted(e["data"]["n"] for e in flaky.events) == list(range(5))
    assert records(tmp_path / "dead.jsonl") == []


def test_memory_broker_dead_letters_after_the_last_retry(tmp_path: Path) -> None:
    tracker = memory_tree(tmp_path, Failing())
    for n in range(5):
        tracker.emit("e", {"n": n})
    tracker.close()
    dead = records(tmp_path / "dead.jsonl")
    assert sorted(r["event"]["data"]["n"] for r in dead) == list(range(5))
    assert {r["destination"] for r in dead} == {"analytics.sink"}
    assert {r["attempts"] for r in dead} == {NO_WAIT["max_retries"] + 1}
    stats = tracker.router.backends["analytics"].stats()
    assert stats["dead_lettered"] == 5
    assert stats["delivered"] == 0
    assert stats["backends"] == {
        "sink": {"delivered": 0, "failed": 5, "dead_lettered": 5, "lost": 0}
    }


def test_a_node_publishing_to_workers_does_not_claim_its_backends_delivered() -> None:
    node = CeleryRouter({"m": MemoryBackend()}, broker="redis://127.0.0.1:1/0")
    try:
        assert node.stats()["backends"] == {"m": {"delivered": None, "failed": None}}
    finally:
        node.close(timeout=5)


def test_processors_run_in_the_emitting_process_and_can_veto(tmp_path: Path) -> None:
    sink = MemoryBackend()

    def only_even(event: dict[str, Any]) -> None:
        if event["data"]["n"] % 2:
            raise eventrouter.EventEmissionExit

    node = CeleryRouter({"sink": sink}, [only_even], broker="memory://", flush_interval=0.05)
    tracker = eventrouter.Tracker(backends={"c": node})
    for n in range(6):
        tracker.emit("e", {"n": n})
    tracker.close()
    assert [e["data"]["n"] for e in sink.events] == [0, 2, 4]
    assert node.stats()["vetoed"] == 3


# -- fingerprints -------------------------------------------------------------------------


def config(path: str, **child_options: Any) -> dict[str, Any]:
    return {
        "backends": {
            "analytics": {
                "class": "celery",
                "options": {"broker": "memory://", "queue": "q"},
                "backends": {
                    "archive": {"class": "jsonlog", "options": {"path": path, **child_options}}
                },
            }
        }
    }


def fingerprint_of(source: Any, env: dict[str, str] | None = None) -> str:
    tracker = eventrouter.load(source, env=env or {})
    try:
        node: CeleryRouter = tracker.get_backend("analytics")
        return node.fingerprint
    finally:
        tracker.close()


def test_the_same_configuration_gives_the_same_fingerprint(tmp_path: Path) -> None:
    path = str(tmp_path / "a.log")
    assert fingerprint_of(config(path)) == fingerprint_of(config(path))


def test_a_changed_subtree_changes_the_fingerprint(tmp_path: Path) -> None:
    assert fingerprint_of(config(str(tmp_path / "a.log"))) != fingerprint_of(
        config(str(tmp_path / "b.log"))
    )


def test_the_fingerprint_is_of_the_yaml_as_written_not_the_environment(tmp_path: Path) -> None:
    source = config("${LOG_PATH}")
    first = fingerprint_of(source, {"LOG_PATH": str(tmp_path / "a.log")})
    assert first == fingerprint_of(source, {"LOG_PATH": str(tmp_path / "b.log")})


def test_the_fingerprint_ignores_options_only_the_emitter_uses(tmp_path: Path) -> None:
    path = str(tmp_path / "a.log")
    other = config(path)
    other["backends"]["analytics"]["options"]["batch_size"] = 7
    assert fingerprint_of(config(path)) == fingerprint_of(other)


def test_a_bad_celery_option_in_yaml_is_reported_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "tree.yaml"
    path.write_text(
        "backends:\n"
        "  analytics:\n"
        "    class: celery\n"
        "    options:\n"
        "      task_retry:\n"
        "        max_retries: -1\n"
        "    backends:\n"
        "      m: {class: memory}\n"
    )
    with pytest.raises(eventrouter.ConfigError) as refused:
        eventrouter.load(path)
    [issue] = refused.value.issues
    assert issue.path.startswith("backends.analytics.options.task_retry")
    assert issue.line == 6


# -- buffered children, replay, fork --------------------------------------------------------


def test_a_buffered_child_is_delivered_directly_not_queued_again(tmp_path: Path) -> None:
    from eventrouter.backends.buffered import BufferedBackend

    sink = MemoryBackend()
    wrapped = BufferedBackend(sink)
    node = CeleryRouter({"sink": wrapped}, broker="memory://")
    node.run_in_process(encode_batch([build_event("e", {"n": 1})]))
    assert len(sink.events) == 1  # delivered before the task (here: the call) returns
    assert wrapped.stats()["received"] == 0
    wrapped.close()


def test_replay_sends_a_worker_dead_letter_to_its_destination_only(tmp_path: Path) -> None:
    from eventrouter import cli

    def tree(sink: dict[str, Any]) -> Path:
        path = tmp_path / f"tree-{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(
            json.dumps(
                {
                    "backends": {
                        "analytics": {
                            "class": "celery",
                            "options": {"broker": "memory://"},
                            "backends": {"sink": sink, "other": {"class": "memory"}},
                        }
                    }
                }
            )
        )
        return path

    out = tmp_path / "out.jsonl"
    failing = eventrouter.load(
        tree(
            {
                "class": "celery_backends.FileSink",
                "options": {"path": str(out), "fail_always": True},
            }
        )
    )
    node: CeleryRouter = failing.get_backend("analytics")
    node.dead_letter = DeadLetterFile(tmp_path / "worker-dead.jsonl")
    events = [build_event("e", {"n": n}) for n in range(3)]
    outcome = node.deliver(events)
    node.give_up(events, outcome, attempts=6, first_failure=None)
    failing.close()
    assert {r["destination"] for r in records(tmp_path / "worker-dead.jsonl")} == {"analytics.sink"}
    working = tree({"class": "celery_backends.FileSink", "options": {"path": str(out)}})
    status = cli.main(
        ["replay", str(working), str(tmp_path / "worker-dead.jsonl"), "--no-progress"]
    )
    assert status == 0
    assert sorted(line["data"]["n"] for line in records(out)) == [0, 1, 2]


def test_a_forked_child_delivers_its_own_events_and_not_its_parents(tmp_path: Path) -> None:
    from conftest import run_in_fork

    out = tmp_path / "out.jsonl"
    from celery_backends import FileSink

    node = CeleryRouter({"sink": FileSink(str(out))}, broker="memory://", flush_interval=0.05)
    tracker = eventrouter.Tracker(backends={"c": node})
    for n in range(10):
        tracker.emit("parent", {"n": n})

    def child() -> int:
        for n in range(5):
            tracker.emit("child", {"n": n})
        tracker.close()
        return 0

    assert run_in_fork(child) == 0
    tracker.close()
    names = collections.Counter(line["name"] for line in records(out))
    assert names == {"parent": 10, "child": 5}


def test_replaying_a_publish_failure_does_not_run_the_nodes_processors_again(
    tmp_path: Path,
) -> None:
    from conftest import free_port

    from eventrouter import cli

    out = tmp_path / "out.jsonl"
    dead = tmp_path / "dead.jsonl"

    def tree(broker: str) -> Path:
        path = tmp_path / f"tree-{len(list(tmp_path.iterdir()))}.yaml"
        node = {
            "class": "celery",
            "options": {"broker": broker, "buffer": {"max_retries": 0}},
            "processors": [{"class": "celery_backends.stamp"}],
            "backends": {
                "sink": {"class": "celery_backends.FileSink", "options": {"path": str(out)}}
            },
        }
        path.write_text(json.dumps({"dead_letter": str(dead), "backends": {"analytics": node}}))
        return path

    # The broker is down (a closed port): the processed events are dead-lettered at the node.
    down = eventrouter.load(tree(f"redis://127.0.0.1:{free_port()}/0"))
    for n in range(3):
        down.emit("e", {"n": n})
    down.close(60)
    dead_records = records(dead)
    assert {r["destination"] for r in dead_records} == {"analytics"}
    assert [r["event"]["data"]["stamps"] for r in dead_records] == [1, 1, 1]
    # The broker is back (here: in-process): replay publishes them as they were.
    status = cli.main(
        [
            "replay",
            str(tree("memory://")),
            str(dead),
            "--dead-letter",
            str(tmp_path / "again"),
            "--no-progress",
        ]
    )
    assert status == 0
    delivered = records(out)
    assert sorted(line["data"]["n"] for line in delivered) == [0, 1, 2]
    assert [line["data"]["stamps"] for line in delivered] == [1, 1, 1]
