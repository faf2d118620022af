"""RoutingBackend: copy, ordered processors, veto, fan-out, failure isolation, counters."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from conftest import lock_held_elsewhere, needs_fork, run_in_fork

from eventrouter import EventEmissionExit, MemoryBackend, RoutingBackend, build_event
from eventrouter.typing import Event


def edx_event(**data: Any) -> Event:
    return build_event(
        "video.played",
        {"video": "intro", "speeds": [1.0, 1.5], "segments": [{"t": 1}], **data},
        context={"user_id": 7, "ip": "203.0.113.9", "tags": ["a"]},
    )


class Exploding:
    """A backend that always fails, with event data in its message."""

    def send(self, event: Event) -> None:
        raise RuntimeError(f"cannot store {event['data']}")


def test_the_callers_event_is_never_mutated() -> None:
    def mutate(event: Event) -> None:
        event["data"]["speeds"].append(2.0)
        event["context"]["tags"].clear()

    router = RoutingBackend({"m": MemoryBackend()}, [mutate])
    event = edx_event()
    router.send(event)
    assert event["data"]["speeds"] == [1.0, 1.5]
    assert event["context"]["tags"] == ["a"]


def test_branches_are_isolated_when_a_processor_mutates_nested_lists() -> None:
    def append_to_segments(event: Event) -> None:
        event["data"]["segments"].append({"t": 99})
        event["data"]["segments"][0]["t"] = -1

    left, right = MemoryBackend(), MemoryBackend()
    router = RoutingBackend(
        {
            "a_mutating": RoutingBackend({"sink": left}, [append_to_segments]),
            "b_plain": RoutingBackend({"sink": right}),
        }
    )
    router.send(edx_event())
    assert left.events[0]["data"]["segments"] == [{"t": -1}, {"t": 99}]
    assert right.events[0]["data"]["segments"] == [{"t": 1}]


def test_processors_run_in_order() -> None:
    calls: list[str] = []

    def first(event: Event) -> None:
        calls.append("first")
        event["data"]["order"] = ["first"]

    def second(event: Event) -> None:
        calls.append("second")
        event["data"]["order"].append("second")

    sink = MemoryBackend()
    RoutingBackend({"m": sink}, [first, second]).send(edx_event())
    assert calls == ["first", "second"]
    assert sink.events[0]["data"]["order"] == ["first", "second"]


def test_a_processor_returning_a_new_dict_replaces_the_event() -> None:
    def replace(event: Event) -> Event:
        return {"id": event["id"], "name": "renamed", "data": {}, "context": {}}

    def sees_replacement(event: Event) -> None:
        event["data"]["seen_name"] = event["name"]

    sink = MemoryBackend()
    RoutingBackend({"m": sink}, [replace, sees_replacement]).send(edx_event())
    assert sink.events[0]["name"] == "renamed"
    assert sink.events[0]["data"] == {"seen_name": "renamed"}


def test_a_processor_returning_none_keeps_the_event() -> None:
    sink = MemoryBackend()
    RoutingBackend({"m": sink}, [lambda event: None]).send(edx_event())
    assert sink.events[0]["data"]["video"] == "intro"


def test_veto_stops_only_its_own_branch() -> None:
    def veto(event: Event) -> None:
        raise EventEmissionExit

    vetoed, sibling, top = MemoryBackend(), MemoryBackend(), MemoryBackend()
    root = RoutingBackend(
        {
            "filtered": RoutingBackend({"sink": vetoed}, [veto]),
            "open": RoutingBackend({"sink": sibling}),
            "top": top,
        }
    )
    root.send(edx_event())
    assert vetoed.events == []
    assert len(sibling.events) == 1
    assert len(top.events) == 1
    assert root.stats()["backends"]["filtered"]["stats"]["vetoed"] == 1


def test_veto_stops_the_rest_of_the_chain() -> None:
    ran: list[str] = []

    def veto(event: Event) -> None:
        raise EventEmissionExit

    RoutingBackend({"m": MemoryBackend()}, [veto, lambda e: ran.append("later")]).send(edx_event())
    assert ran == []


def test_event_trackings_own_veto_exception_is_honoured() -> None:
    class EventEmissionExit(Exception):  # the name event-tracking uses
        pass

    def legacy(event: Event) -> None:
        raise EventEmissionExit

    sink = MemoryBackend()
    router = RoutingBackend({"m": sink}, [legacy])
    router.send(edx_event())
    assert sink.events == []
    assert router.stats()["vetoed"] == 1


def test_a_failing_processor_is_counted_and_the_chain_continues() -> None:
    def broken(event: Event) -> None:
        event["data"]["half_done"] = True
        raise KeyError("missing")

    def after(event: Event) -> None:
        event["data"]["after"] = True

    sink = MemoryBackend()
    router = RoutingBackend({"m": sink}, [broken, after])
    router.send(edx_event())
    assert sink.events[0]["data"]["after"] is True
    assert router.stats()["processor_errors"] == 1


def test_a_processor_returning_a_non_dict_is_an_error_and_the_event_is_kept() -> None:
    sink = MemoryBackend()
    router = RoutingBackend({"m": sink}, [lambda event: "oops"])  # type: ignore[arg-type,return-value]
    router.send(edx_event())
    assert sink.events[0]["name"] == "video.played"
    assert router.stats()["processor_errors"] == 1


def test_a_raising_backend_between_two_good_ones_stops_neither() -> None:
    first, last = MemoryBackend(), MemoryBackend()
    router = RoutingBackend({"a": first, "b_broken": Exploding(), "c": last})
    router.send(edx_event())
    router.send(edx_event())
    assert len(first.events) == 2
    assert len(last.events) == 2
    stats = router.stats()["backends"]
    assert stats["b_broken"] == {"delivered": 0, "failed": 2}
    assert stats["a"]["delivered"] == 2
    assert stats["c"]["delivered"] == 2


def test_backends_receive_events_in_sorted_name_order() -> None:
    order: list[str] = []

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name

        def send(self, event: Event) -> None:
            order.append(self.name)

    router = RoutingBackend({name: Recorder(name) for name in ["zeta", "alpha", "mid"]})
    router.register_backend("beta", Recorder("beta"))
    router.send(edx_event())
    assert order == ["alpha", "beta", "mid", "zeta"]


def test_failures_are_logged_once_with_name_and_id_but_never_the_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: Event) -> None:
        raise ValueError(f"bad value {event['context']['ip']}")

    router = RoutingBackend({"broken": Exploding()}, [broken])
    event = edx_event(secret="hunter2")
    with caplog.at_level(logging.INFO, logger="eventrouter"):
        router.send(event)
    records = [r for r in caplog.records if r.name.startswith("eventrouter")]
    assert len(records) == 2
    text = "\n".join(r.getMessage() for r in records)
    assert event["id"] in text
    assert "video.played" in text
    assert "203.0.113.9" not in text
    assert "hunter2" not in text
    assert "intro" not in text


def test_the_failure_path_works_for_events_without_a_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = RoutingBackend({"broken": Exploding()}, [lambda event: event["missing"]])
    with caplog.at_level(logging.ERROR, logger="eventrouter"):
        router.send({"data": {"x": 1}})
    assert router.stats()["processor_errors"] == 1
    assert router.stats()["backends"]["broken"]["failed"] == 1
    assert "name=None id=None" in caplog.text


def test_register_backend_without_send_is_rejected() -> None:
    with pytest.raises(ValueError, match="no callable send"):
        RoutingBackend().register_backend("bad", object())  # type: ignore[arg-type]


def test_register_processor_that_is_not_callable_is_rejected() -> None:
    with pytest.raises(ValueError, match="not callable"):
        RoutingBackend().register_processor("not a function")  # type: ignore[arg-type]


def test_stats_count_received_vetoed_and_nest_children() -> None:
    def veto_pings(event: Event) -> None:
        if event["name"] == "ping":
            raise EventEmissionExit

    child = RoutingBackend({"m": MemoryBackend()})
    root = RoutingBackend({"child": child}, [veto_pings])
    root.send(build_event("ping"))
    root.send(build_event("pong"))
    root.send(build_event("pong"))
    stats = root.stats()
    assert (stats["received"], stats["vetoed"]) == (3, 1)
    assert stats["backends"]["child"]["delivered"] == 2
    assert stats["backends"]["child"]["stats"]["received"] == 2
    assert stats["backends"]["child"]["stats"]["backends"]["m"]["stats"]["kept"] == 2


class Lifecycle:
    def __init__(self) -> None:
        self.flushed: list[float | None] = []
        self.closed = 0

    def send(self, event: Event) -> None:
        pass

    def flush(self, timeout: float | None = None) -> None:
        self.flushed.append(timeout)

    def close(self) -> None:
        self.closed += 1


def test_flush_and_close_reach_every_node_of_the_tree() -> None:
    top, deep = Lifecycle(), Lifecycle()
    root = RoutingBackend(
        {"top": top, "nested": RoutingBackend({"deeper": RoutingBackend({"d": deep})})}
    )
    root.flush(timeout=2.5)
    root.close()
    assert top.flushed == [2.5]
    assert deep.flushed == [2.5]
    assert (top.closed, deep.closed) == (1, 1)


def test_a_failing_flush_does_not_stop_the_others() -> None:
    class BadFlush(Lifecycle):
        def flush(self, timeout: float | None = None) -> None:
            raise OSError("disk full")

    good = Lifecycle()
    RoutingBackend({"a": BadFlush(), "b": good}).flush()
    assert good.flushed == [None]


def test_failures_logged_at_debug_still_never_carry_the_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: Event) -> None:
        raise ValueError(f"bad email {event['data']['email']}")

    router = RoutingBackend({"broken": Exploding()}, [broken])
    with caplog.at_level(logging.DEBUG, logger="eventrouter"):
        router.send(edx_event(email="alice@example.com"))
    assert "alice@example.com" not in caplog.text
    assert "test_routing.py" in caplog.text  # the frames are there, at DEBUG
    assert all(record.exc_info is None for record in caplog.records)


def test_failures_an_asynchronous_backend_reports_later_count_as_failed() -> None:
    class Async:
        def __init__(self) -> None:
            self.gave_up = 0

        def send(self, event: Event) -> None:
            self.gave_up += 1  # accepted now, given up on later

        def stats(self) -> dict[str, int]:
            return {"failed": self.gave_up}

    router = RoutingBackend({"async": Async(), "sync": MemoryBackend()})
    router.send(edx_event())
    router.send(edx_event())
    backends = router.stats()["backends"]
    assert (backends["async"]["delivered"], backends["async"]["failed"]) == (0, 2)
    assert (backends["sync"]["delivered"], backends["sync"]["failed"]) == (2, 0)


@needs_fork
def test_a_lock_held_at_fork_time_does_not_deadlock_the_child() -> None:
    sink = MemoryBackend()
    router = RoutingBackend({"m": sink})

    def child() -> int:
        router.send(edx_event())
        return 0 if len(sink.events) == 1 else 1

    with lock_held_elsewhere(router):
        assert run_in_fork(child) == 0
