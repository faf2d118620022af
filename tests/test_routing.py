"""RoutingBackend: copy, ordered processors, veto, fan-out, failure isolation, counters."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import pytest
from conftest import lock_held_elsewhere, needs_fork, run_in_fork

from eventrouter import EventEmissionExit, MemoryBackend, RoutingBackend, build_event
from eventrouter._loglabels import describe
from eventrouter.deadletter import DeadLetterFile
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
    assert stats["b_broken"] == {
        "delivered": 0,
        "failed": 2,
        "vetoed": 0,
        "dead_lettered": 0,
        "lost": 2,
        "lost_by": {"no_dead_letter": 2},
    }
    assert stats["a"]["delivered"] == 2
    assert stats["c"]["delivered"] == 2


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


# -- order of delivery ----------------------------------------------------------------------


class Recorder:
    """A backend that appends its own name to a shared list."""

    def __init__(self, name: str, order: list[str]) -> None:
        self.name = name
        self.order = order

    def send(self, event: Event) -> None:
        self.order.append(self.name)


def test_a_mapping_given_to_the_constructor_is_delivered_in_ascending_key_order() -> None:
    order: list[str] = []
    router = RoutingBackend({name: Recorder(name, order) for name in ["zeta", "alpha", "mid"]})
    router.send(edx_event())
    assert order == ["alpha", "mid", "zeta"]


def test_a_backend_registered_later_is_appended_not_sorted_in() -> None:
    order: list[str] = []
    router = RoutingBackend({name: Recorder(name, order) for name in ["zeta", "alpha"]})
    router.register_backend("beta", Recorder("beta", order))
    router.send(edx_event())
    assert order == ["alpha", "zeta", "beta"]


def test_registering_a_name_again_replaces_the_backend_in_its_place() -> None:
    order: list[str] = []
    router = RoutingBackend({"a": Recorder("a", order), "b": Recorder("b", order)})
    router.register_backend("a", Recorder("new a", order))
    router.send(edx_event())
    assert order == ["new a", "b"]


class CountingSendLookups:
    """A backend that counts how often its ``send`` attribute is looked up."""

    lookups = 0

    @property
    def send(self) -> Any:
        CountingSendLookups.lookups += 1
        return self._send

    def _send(self, event: Event) -> None:
        pass


def test_building_a_router_looks_at_each_backend_a_bounded_number_of_times() -> None:
    # Linear construction, checked by counting work rather than timing it: registering one
    # backend must not revisit the ones already registered (re-sorting did, N**2 / 2 times).
    count = 2000
    CountingSendLookups.lookups = 0
    router = RoutingBackend({f"b{i:05}": CountingSendLookups() for i in range(count)})
    router.send(edx_event())
    assert CountingSendLookups.lookups <= 2 * count


@pytest.mark.slow
def test_a_router_with_a_hundred_thousand_backends_builds_and_routes() -> None:
    sinks = {f"b{i:06}": MemoryBackend() for i in range(100_000)}
    router = RoutingBackend(sinks)
    router.send(edx_event())
    assert len(sinks["b099999"].events) == 1
    assert list(router.backends)[:2] == ["b000000", "b000001"]


# -- in-place changes ---------------------------------------------------------------------


def test_setting_a_backend_in_place_routes_to_it() -> None:
    router = RoutingBackend({"old": MemoryBackend()})
    router.send(edx_event())  # the snapshot of the backends is taken here
    late = MemoryBackend()
    router.backends["late"] = late
    router.send(edx_event())
    assert len(late.events) == 1


def test_replacing_a_backend_in_place_routes_to_the_new_one_only() -> None:
    old, new = MemoryBackend(), MemoryBackend()
    router = RoutingBackend({"x": old})
    router.send(edx_event())
    router.backends["x"] = new
    router.send(edx_event())
    assert (len(old.events), len(new.events)) == (1, 1)


def test_deleting_a_backend_in_place_stops_routing_to_it() -> None:
    gone = MemoryBackend()
    router = RoutingBackend({"x": gone})
    router.send(edx_event())
    del router.backends["x"]
    router.send(edx_event())
    assert len(gone.events) == 1


@pytest.mark.parametrize(
    "change",
    [
        lambda backends, b: backends.update({"new": b}),
        lambda backends, b: backends.update(new=b),
        lambda backends, b: backends.setdefault("new", b),
        lambda backends, b: backends.__ior__({"new": b}),
    ],
    ids=["update-mapping", "update-keywords", "setdefault", "in-place-or"],
)
def test_every_way_of_adding_a_backend_takes_effect(change: Any) -> None:
    router = RoutingBackend({"old": MemoryBackend()})
    router.send(edx_event())
    new = MemoryBackend()
    change(router.backends, new)
    router.send(edx_event())
    assert len(new.events) == 1


@pytest.mark.parametrize(
    "change",
    [
        lambda backends: backends.pop("x"),
        lambda backends: backends.popitem(),
        lambda backends: backends.clear(),
    ],
    ids=["pop", "popitem", "clear"],
)
def test_every_way_of_removing_a_backend_takes_effect(change: Any) -> None:
    gone = MemoryBackend()
    router = RoutingBackend({"x": gone})
    router.send(edx_event())
    change(router.backends)
    router.send(edx_event())
    assert len(gone.events) == 1


def test_assigning_a_new_backends_mapping_routes_to_it_in_its_order() -> None:
    order: list[str] = []
    router = RoutingBackend({"old": Recorder("old", order)})
    router.send(edx_event())
    router.backends = {"z": Recorder("z", order), "a": Recorder("a", order)}
    router.send(edx_event())
    assert order == ["old", "z", "a"]


def test_a_backend_without_send_is_refused_when_set_in_place() -> None:
    router = RoutingBackend()
    with pytest.raises(ValueError, match="no callable send"):
        router.backends["bad"] = object()  # type: ignore[assignment]
    assert "bad" not in router.backends


def test_an_update_with_one_bad_backend_adds_none_of_them() -> None:
    router = RoutingBackend()
    with pytest.raises(ValueError, match="no callable send"):
        router.backends.update({"good": MemoryBackend(), "bad": object()})  # type: ignore[dict-item]
    assert dict(router.backends) == {}


def test_copies_of_the_backends_are_plain_dicts_that_route_nothing() -> None:
    import copy
    import pickle

    router = RoutingBackend({"m": Recorder("m", [])})
    for duplicate in (
        router.backends.copy(),
        copy.copy(router.backends),
        pickle.loads(pickle.dumps(router.backends)),
    ):
        assert type(duplicate) is dict
        assert list(duplicate) == ["m"]


def test_copies_of_the_processors_are_plain_lists() -> None:
    import copy
    import pickle

    router = RoutingBackend(processors=[describe])
    for duplicate in (
        router.processors.copy(),
        copy.copy(router.processors),
        pickle.loads(pickle.dumps(router.processors)),
    ):
        assert type(duplicate) is list
        assert duplicate == [describe]


def test_appending_a_processor_in_place_runs_it() -> None:
    def tag(event: Event) -> None:
        event["data"]["tagged"] = True

    sink = MemoryBackend()
    router = RoutingBackend({"m": sink})
    router.send(edx_event())  # the snapshot of the chain is taken here
    router.processors.append(tag)
    router.send(edx_event())
    assert [e["data"].get("tagged") for e in sink.events] == [None, True]


def tagger(tag: str) -> Any:
    def processor(event: Event) -> None:
        event["data"].setdefault("tags", []).append(tag)

    return processor


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda chain: chain.insert(0, tagger("first")), ["first", "a", "b"]),
        (lambda chain: chain.extend([tagger("c")]), ["a", "b", "c"]),
        (lambda chain: chain.__iadd__([tagger("c")]), ["a", "b", "c"]),
        (lambda chain: chain.__setitem__(0, tagger("A")), ["A", "b"]),
        (lambda chain: chain.__setitem__(slice(0, 2), [tagger("only")]), ["only"]),
        (lambda chain: chain.__delitem__(0), ["b"]),
        (lambda chain: chain.pop(), ["a"]),
        (lambda chain: chain.remove(chain[1]), ["a"]),
        (lambda chain: chain.reverse(), ["b", "a"]),
        (lambda chain: chain.sort(key=lambda p, first=chain[0]: p is first), ["b", "a"]),
        (lambda chain: chain.__imul__(2), ["a", "b", "a", "b"]),
        (lambda chain: chain.clear(), None),
    ],
    ids=[
        "insert",
        "extend",
        "iadd",
        "setitem",
        "setslice",
        "delitem",
        "pop",
        "remove",
        "reverse",
        "sort",
        "imul",
        "clear",
    ],
)
def test_every_change_to_the_processors_takes_effect(change: Any, expected: Any) -> None:
    sink = MemoryBackend()
    router = RoutingBackend({"m": sink}, [tagger("a"), tagger("b")])
    router.send(edx_event())
    change(router.processors)
    router.send(edx_event())
    assert sink.events[-1]["data"].get("tags") == expected


def test_assigning_a_new_processor_list_runs_it() -> None:
    sink = MemoryBackend()
    router = RoutingBackend({"m": sink}, [tagger("old")])
    router.send(edx_event())
    router.processors = [tagger("new")]
    router.send(edx_event())
    assert sink.events[-1]["data"]["tags"] == ["new"]


@pytest.mark.parametrize(
    "change",
    [
        lambda chain: chain.append("not callable"),
        lambda chain: chain.insert(0, "not callable"),
        lambda chain: chain.extend([tagger("ok"), "not callable"]),
        lambda chain: chain.__setitem__(0, "not callable"),
        lambda chain: chain.__setitem__(slice(0, 1), ["not callable"]),
    ],
    ids=["append", "insert", "extend", "setitem", "setslice"],
)
def test_a_processor_that_is_not_callable_is_refused_when_added_in_place(change: Any) -> None:
    router = RoutingBackend(processors=[tagger("a")])
    with pytest.raises(ValueError, match="not callable"):
        change(router.processors)
    assert len(router.processors) == 1


# -- vetoes from event-tracking -------------------------------------------------------------

et_exceptions = pytest.importorskip("eventtracking.processors.exceptions")


def test_event_trackings_real_exception_vetoes() -> None:
    def legacy(event: Event) -> None:
        raise et_exceptions.EventEmissionExit

    sink = MemoryBackend()
    router = RoutingBackend({"m": sink}, [legacy])
    router.send(edx_event())
    assert sink.events == []
    assert router.stats()["vetoed"] == 1


def test_a_subclass_of_event_trackings_exception_vetoes() -> None:
    class SkipThisEvent(et_exceptions.EventEmissionExit):  # type: ignore[misc]
        pass

    def legacy(event: Event) -> None:
        raise SkipThisEvent

    sink = MemoryBackend()
    router = RoutingBackend({"m": sink}, [legacy])
    router.send(edx_event())
    assert sink.events == []
    assert router.stats()["vetoed"] == 1


def test_a_class_merely_named_event_emission_exit_does_not_veto() -> None:
    class EventEmissionExit(Exception):  # the name event-tracking uses, another class
        pass

    def unrelated(event: Event) -> None:
        raise EventEmissionExit

    sink = MemoryBackend()
    router = RoutingBackend({"m": sink}, [unrelated])
    router.send(edx_event())
    assert len(sink.events) == 1
    assert router.stats()["processor_errors"] == 1


def test_code_catching_event_trackings_exception_catches_ours() -> None:
    with pytest.raises(et_exceptions.EventEmissionExit):
        raise EventEmissionExit


def test_event_trackings_router_honours_our_veto_inside_our_tree() -> None:
    from eventtracking.backends.routing import RoutingBackend as TheirRouter

    def our_filter(event: Event) -> None:
        raise EventEmissionExit

    theirs, sibling = MemoryBackend(), MemoryBackend()
    root = RoutingBackend(
        {"legacy": TheirRouter(backends={"m": theirs}, processors=[our_filter]), "s": sibling}
    )
    root.send(edx_event())
    assert theirs.events == []
    assert len(sibling.events) == 1


class OwnRouter:
    """A user's own router that lets every processor exception through."""

    def __init__(self, sink: MemoryBackend, processor: Any) -> None:
        self.sink = sink
        self.processor = processor

    def send(self, event: Event) -> None:
        self.processor(event)
        self.sink.send(event)


def test_a_veto_escaping_a_users_own_router_is_not_a_failure(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def our_filter(event: Event) -> None:
        raise EventEmissionExit

    dead = tmp_path / "dead.jsonl"
    root = RoutingBackend({"own": OwnRouter(MemoryBackend(), our_filter)}, dead_letter=dead)
    with caplog.at_level(logging.INFO, logger="eventrouter"):
        root.send(edx_event())
    assert not dead.exists() or dead.read_text() == ""
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    entry = root.stats()["backends"]["own"]
    assert (entry["failed"], entry["vetoed"], entry["delivered"]) == (0, 1, 0)


def fake_event_tracking_exceptions(monkeypatch: pytest.MonkeyPatch) -> type[Exception]:
    """Pretend event-tracking is absent, with a stand-in of its exceptions module loaded."""
    import types

    from eventrouter import errors

    module = types.ModuleType("eventtracking.processors.exceptions")
    exec(  # defines the class inside the stand-in module, as its source would
        "class EventEmissionExit(Exception):\n    pass\n", module.__dict__
    )
    monkeypatch.setitem(sys.modules, "eventtracking.processors.exceptions", module)
    monkeypatch.setattr(errors, "_FOREIGN_VETO", None)
    cls: type[Exception] = module.EventEmissionExit
    return cls


def test_without_event_tracking_its_exception_vetoes_by_module_and_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stand_in = fake_event_tracking_exceptions(monkeypatch)

    def legacy(event: Event) -> None:
        raise stand_in

    sink = MemoryBackend()
    router = RoutingBackend({"m": sink}, [legacy])
    router.send(edx_event())
    assert sink.events == []
    assert router.stats()["vetoed"] == 1


def test_without_event_tracking_a_subclass_of_its_exception_vetoes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stand_in = fake_event_tracking_exceptions(monkeypatch)

    class Subclass(stand_in):  # type: ignore[valid-type,misc]
        pass

    def legacy(event: Event) -> None:
        raise Subclass

    sink = MemoryBackend()
    RoutingBackend({"m": sink}, [legacy]).send(edx_event())
    assert sink.events == []


def test_without_event_tracking_a_same_named_class_elsewhere_does_not_veto(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_event_tracking_exceptions(monkeypatch)

    class EventEmissionExit(Exception):
        pass

    def unrelated(event: Event) -> None:
        raise EventEmissionExit

    sink = MemoryBackend()
    RoutingBackend({"m": sink}, [unrelated]).send(edx_event())
    assert len(sink.events) == 1


def test_with_event_tracking_installed_a_lookalike_of_its_class_does_not_veto(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lookalike = type("EventEmissionExit", (Exception,), {})
    lookalike.__module__ = "eventtracking.processors.exceptions"

    def legacy(event: Event) -> None:
        raise lookalike

    sink = MemoryBackend()
    RoutingBackend({"m": sink}, [legacy]).send(edx_event())
    assert len(sink.events) == 1


@pytest.mark.slow
def test_without_event_tracking_importing_eventrouter_imports_none_of_it() -> None:
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'eventtracking' or name.startswith('eventtracking.'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import eventrouter\n"
        "assert eventrouter.EventEmissionExit.__bases__ == (Exception,), "
        "eventrouter.EventEmissionExit.__bases__\n"
        "assert not any(m.startswith('eventtracking') for m in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


# -- node paths ---------------------------------------------------------------------------


class PathRecorder(MemoryBackend):
    """A backend that remembers the node path it was bound to."""

    path = ""

    def bind_path(self, path: str) -> None:
        self.path = path


def test_a_root_router_has_the_empty_path_and_binds_its_children_by_name() -> None:
    leaf = PathRecorder()
    root = RoutingBackend({"archive": leaf})
    assert root.path == ""
    assert leaf.path == "archive"


def test_a_nested_router_binds_its_children_below_its_own_path() -> None:
    leaf = PathRecorder()
    child = RoutingBackend({"segment": leaf})
    RoutingBackend({"analytics": child})
    assert child.path == "analytics"
    assert leaf.path == "analytics.segment"


def test_a_subtree_attached_later_is_re_bound_at_every_level() -> None:
    leaf = PathRecorder()
    grandchild = RoutingBackend({"mongo": leaf})
    child = RoutingBackend({"deep": grandchild})
    root = RoutingBackend()
    root.backends["top"] = child
    assert leaf.path == "top.deep.mongo"


def test_a_router_dead_letters_with_the_failing_childs_path(tmp_path: Any) -> None:
    from eventrouter.deadletter import read_dead_letters

    dead = tmp_path / "dead.jsonl"
    child = RoutingBackend({"segment": Exploding()}, dead_letter=dead)
    RoutingBackend({"analytics": child}).send(edx_event())
    (record,) = list(read_dead_letters(dead))
    destination = dict(record).get("destination", dict(record).get("backend"))
    assert destination == "analytics.segment"


# -- nothing raises into emit -------------------------------------------------------------


class BrokenDeadLetter(DeadLetterFile):
    """A dead-letter file whose write raises, against its contract."""

    def write(self, *args: Any, **kwargs: Any) -> bool:
        raise OSError("broken")


def test_a_failure_while_handling_a_failure_is_counted_and_logged_once(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    after = MemoryBackend()
    router = RoutingBackend(
        {"a_broken": Exploding(), "b_after": after},
        dead_letter=BrokenDeadLetter(tmp_path / "dead.jsonl"),
    )
    event = edx_event(secret="hunter2")
    with caplog.at_level(logging.ERROR, logger="eventrouter"):
        router.send(event)
    assert len(after.events) == 1
    assert router.stats()["internal_errors"] == 1
    assert len(caplog.records) == 1
    assert event["id"] in caplog.text
    assert "hunter2" not in caplog.text


class SendVanishes:
    """A backend that has ``send`` when registered but not when the router routes."""

    def __init__(self) -> None:
        self.looked = 0

    def __getattr__(self, name: str) -> Any:
        if name == "send":
            self.looked += 1
            if self.looked > 1:
                raise RuntimeError("gone")
            return lambda event: None
        raise AttributeError(name)


def test_a_failure_in_the_routers_own_machinery_never_raises_to_the_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = RoutingBackend({"odd": SendVanishes()})  # type: ignore[dict-item]
    with caplog.at_level(logging.ERROR, logger="eventrouter"):
        router.send(edx_event())
    assert router.stats()["internal_errors"] == 1
    assert len(caplog.records) == 1
