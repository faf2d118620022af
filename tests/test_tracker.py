"""Tracker: envelope, context stack isolated per thread and task, registry, lifecycle."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import eventrouter
from eventrouter import MemoryBackend, Tracker, TrackerNotRegisteredError
from eventrouter import tracker as tracker_module


@pytest.fixture
def sink() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def tracker(sink: MemoryBackend) -> Tracker:
    return Tracker(backends={"sink": sink})


@pytest.fixture
def registered(tracker: Tracker) -> Iterator[Tracker]:
    tracker_module.register_tracker(tracker)
    yield tracker
    tracker_module.unregister_tracker()


def test_emit_delivers_an_envelope_with_the_entered_context(
    tracker: Tracker, sink: MemoryBackend
) -> None:
    with tracker.context("request", {"user_id": 3, "ip": "198.51.100.1"}):
        tracker.emit("video.played", {"video": "intro"})
    [event] = sink.events
    assert event["name"] == "video.played"
    assert event["data"] == {"video": "intro"}
    assert event["context"] == {"user_id": 3, "ip": "198.51.100.1"}


def test_emit_does_not_touch_the_callers_data(tracker: Tracker, sink: MemoryBackend) -> None:
    def mutate(event: dict[str, Any]) -> None:
        event["data"]["list"].append("changed")

    tracker.router.register_processor(mutate)
    data = {"list": ["original"]}
    tracker.emit("a", data)
    assert data == {"list": ["original"]}
    assert sink.events[0]["data"]["list"] == ["original", "changed"]


@pytest.mark.parametrize(
    ("name", "data", "error", "message"),
    [
        (None, {}, TypeError, "name must be a str"),
        (42, {}, TypeError, "name must be a str, not int"),
        ("", {}, ValueError, "must not be empty"),
        ("a", [1, 2], TypeError, "data must be a mapping or None, not list"),
    ],
)
def test_emit_rejects_wrong_arguments_at_once(
    tracker: Tracker, sink: MemoryBackend, name: Any, data: Any, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        tracker.emit(name, data)
    assert sink.events == []


def test_later_contexts_win_and_exiting_restores_the_earlier_value(
    tracker: Tracker, sink: MemoryBackend
) -> None:
    tracker.enter_context("outer", {"course": "cs50", "user_id": 1})
    tracker.enter_context("inner", {"user_id": 2})
    assert tracker.resolve_context() == {"course": "cs50", "user_id": 2}
    tracker.exit_context("inner")
    assert tracker.resolve_context() == {"course": "cs50", "user_id": 1}
    tracker.exit_context("outer")
    assert tracker.resolve_context() == {}


def test_exit_context_removes_the_named_entry_even_if_not_last(tracker: Tracker) -> None:
    tracker.enter_context("a", {"x": 1})
    tracker.enter_context("b", {"y": 2})
    tracker.exit_context("a")
    assert tracker.resolve_context() == {"y": 2}


def test_exit_context_of_an_unknown_name_raises_key_error(tracker: Tracker) -> None:
    with pytest.raises(KeyError, match="no context named 'nope'"):
        tracker.exit_context("nope")


def test_context_block_is_exited_even_on_error(tracker: Tracker) -> None:
    with pytest.raises(RuntimeError), tracker.context("req", {"x": 1}):
        raise RuntimeError("boom")
    assert tracker.resolve_context() == {}


def test_a_context_entered_later_does_not_change_an_event_already_emitted(
    tracker: Tracker, sink: MemoryBackend
) -> None:
    with tracker.context("req", {"user_id": 1}):
        tracker.emit("first")
    with tracker.context("req", {"user_id": 2}):
        tracker.emit("second")
    assert [e["context"]["user_id"] for e in sink.events] == [1, 2]


def test_contexts_are_isolated_between_threads(tracker: Tracker, sink: MemoryBackend) -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            with tracker.context("thread", {"thread": index}):
                barrier.wait(timeout=10)  # all eight are inside their context at once
                for step in range(50):
                    tracker.emit("tick", {"thread": index, "step": step})
                barrier.wait(timeout=10)
            assert tracker.resolve_context() == {}
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(sink.events) == 400
    assert all(e["context"] == {"thread": e["data"]["thread"]} for e in sink.events)
    assert tracker.resolve_context() == {}


def test_contexts_are_isolated_between_asyncio_tasks(tracker: Tracker, sink: MemoryBackend) -> None:
    async def task(index: int, started: asyncio.Barrier) -> None:
        tracker.enter_context("task", {"task": index})
        await started.wait()  # every task has entered its own context before any emits
        for step in range(3):
            tracker.emit("tick", {"task": index, "step": step})
            await asyncio.sleep(0)
        tracker.exit_context("task")

    async def main() -> None:
        started = asyncio.Barrier(50)
        with tracker.context("app", {"app": "lms"}):
            await asyncio.gather(*(task(i, started) for i in range(50)))
            assert tracker.resolve_context() == {"app": "lms"}

    asyncio.run(main())
    assert len(sink.events) == 150
    assert all(e["context"] == {"app": "lms", "task": e["data"]["task"]} for e in sink.events)


def test_module_emit_uses_the_registered_default_tracker(
    registered: Tracker, sink: MemoryBackend
) -> None:
    from eventrouter import tracker

    tracker.emit("problem.graded", {"score": 1})
    assert sink.names() == ["problem.graded"]
    assert tracker.get_tracker() is registered


def test_module_emit_without_a_registered_tracker_says_how_to_register() -> None:
    tracker_module.unregister_tracker()
    with pytest.raises(TrackerNotRegisteredError, match="register_tracker"):
        tracker_module.emit("a")


def test_get_tracker_by_name(tracker: Tracker) -> None:
    tracker_module.register_tracker(tracker, "lms")
    try:
        assert tracker_module.get_tracker("lms") is tracker
        with pytest.raises(TrackerNotRegisteredError, match="'studio'"):
            tracker_module.get_tracker("studio")
    finally:
        tracker_module.unregister_tracker("lms")


def test_register_tracker_rejects_other_objects() -> None:
    with pytest.raises(TypeError, match="expected a Tracker"):
        tracker_module.register_tracker(MemoryBackend())  # type: ignore[arg-type]


def test_tracker_exposes_its_tree(tracker: Tracker, sink: MemoryBackend) -> None:
    assert tracker.backends == {"sink": sink}
    assert tracker.get_backend("sink") is sink
    assert tracker.processors == []
    with pytest.raises(KeyError, match=r"no backend named 'x' \(backends: sink\)"):
        tracker.get_backend("x")


def test_tracker_stats_are_the_trees(tracker: Tracker) -> None:
    tracker.emit("a")
    tracker.emit("b")
    stats = tracker.stats()
    assert stats["received"] == 2
    assert stats["backends"]["sink"]["delivered"] == 2


def test_close_flushes_then_closes_the_tree() -> None:
    calls: list[str] = []

    class Node:
        def send(self, event: dict[str, Any]) -> None:
            pass

        def flush(self, timeout: float | None = None) -> None:
            calls.append(f"flush {timeout}")

        def close(self) -> None:
            calls.append("close")

    tracker = Tracker(backends={"nested": eventrouter.RoutingBackend({"n": Node()})})
    tracker.close()
    tracker.close(timeout=2.5)
    assert calls == ["flush 30.0", "close", "flush 2.5", "close"]


# -- in-place changes of the tree -----------------------------------------------------------


def test_a_backend_set_in_place_on_the_tracker_receives_events(tracker: Tracker) -> None:
    tracker.emit("before")  # the router's snapshot of its backends is taken here
    late = MemoryBackend()
    tracker.backends["late"] = late
    tracker.emit("after")
    assert late.names() == ["after"]


def test_a_backend_deleted_in_place_on_the_tracker_receives_nothing_more(
    tracker: Tracker, sink: MemoryBackend
) -> None:
    tracker.emit("before")
    del tracker.backends["sink"]
    tracker.emit("after")
    assert sink.names() == ["before"]


def test_a_processor_appended_in_place_on_the_tracker_runs(
    tracker: Tracker, sink: MemoryBackend
) -> None:
    def tag(event: dict[str, Any]) -> None:
        event["data"]["tagged"] = True

    tracker.emit("before")
    tracker.processors.append(tag)
    tracker.emit("after")
    assert [e["data"].get("tagged") for e in sink.events] == [None, True]


# -- contexts as event-tracking keeps them --------------------------------------------------


def test_entering_a_name_again_replaces_it_in_its_place(tracker: Tracker) -> None:
    tracker.enter_context("request", {"user_id": 1, "path": "/a"})
    tracker.enter_context("course", {"user_id": 99})
    tracker.enter_context("request", {"user_id": 2, "path": "/b"})
    # "course" was entered after "request" and still wins: "request" kept its place.
    assert tracker.resolve_context() == {"user_id": 99, "path": "/b"}


def test_one_exit_after_entering_a_name_twice_leaves_nothing_of_it(tracker: Tracker) -> None:
    tracker.enter_context("request", {"user_id": 1})
    tracker.enter_context("request", {"user_id": 2})
    tracker.exit_context("request")
    assert tracker.resolve_context() == {}


def test_a_context_changed_after_it_was_entered_shows_in_later_events(
    tracker: Tracker, sink: MemoryBackend
) -> None:
    ctx = {"user_id": 1}
    tracker.enter_context("request", ctx)
    tracker.emit("first")
    ctx["user_id"] = 2
    tracker.emit("second")
    assert [e["context"]["user_id"] for e in sink.events] == [1, 2]


def test_an_event_is_not_changed_by_later_changes_to_the_entered_context(
    tracker: Tracker, sink: MemoryBackend
) -> None:
    ctx = {"user_id": 1}
    with tracker.context("request", ctx):
        tracker.emit("first")
        ctx["user_id"] = 2
    assert sink.events[0]["context"] == {"user_id": 1}


def test_resolve_context_returns_a_new_dict_not_the_entered_one(tracker: Tracker) -> None:
    ctx = {"user_id": 1}
    tracker.enter_context("request", ctx)
    resolved = tracker.resolve_context()
    resolved["user_id"] = 2
    assert ctx == {"user_id": 1}


def test_a_nested_block_of_the_same_name_restores_the_outer_context(tracker: Tracker) -> None:
    with tracker.context("request", {"user_id": 1}):
        with tracker.context("request", {"user_id": 2}):
            assert tracker.resolve_context() == {"user_id": 2}
        assert tracker.resolve_context() == {"user_id": 1}
    assert tracker.resolve_context() == {}


def test_leaving_a_block_keeps_contexts_entered_under_other_names_inside_it(
    tracker: Tracker,
) -> None:
    with tracker.context("course", {"course": "cs50"}):
        tracker.enter_context("user", {"user_id": 7})
    assert tracker.resolve_context() == {"user_id": 7}


def test_leaving_a_block_whose_name_was_entered_again_inside_removes_that_name(
    tracker: Tracker,
) -> None:
    with tracker.context("request", {"user_id": 1}):
        tracker.enter_context("course", {"course": "cs50"})
        tracker.enter_context("request", {"user_id": 2})
    assert tracker.resolve_context() == {"course": "cs50"}


def test_leaving_a_nested_block_restores_the_outer_value_in_its_place(tracker: Tracker) -> None:
    tracker.enter_context("request", {"user_id": 1, "path": "/a"})
    tracker.enter_context("course", {"user_id": 99})
    with tracker.context("request", {"user_id": 2, "path": "/b"}):
        tracker.enter_context("site", {"site": "lms"})
    assert tracker.resolve_context() == {"user_id": 99, "path": "/a", "site": "lms"}


def test_a_context_block_of_something_that_is_not_a_mapping_raises_at_once(
    tracker: Tracker,
) -> None:
    block = tracker.context("request", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="context must be a mapping, not list"):
        block.__enter__()
    assert tracker.resolve_context() == {}


def test_a_context_entered_in_place_stays_private_to_its_thread(tracker: Tracker) -> None:
    tracker.enter_context("request", {"user_id": 1})
    seen: list[dict[str, Any]] = []

    def other() -> None:
        tracker.enter_context("request", {"user_id": 2})
        seen.append(tracker.resolve_context())

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen == [{"user_id": 2}]
    assert tracker.resolve_context() == {"user_id": 1}


def test_a_context_replaced_in_a_task_stays_private_to_that_task(tracker: Tracker) -> None:
    async def replace() -> dict[str, Any]:
        tracker.enter_context("request", {"user_id": 2})
        return tracker.resolve_context()

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        tracker.enter_context("request", {"user_id": 1})
        inside = await asyncio.create_task(replace())
        return inside, tracker.resolve_context()

    assert asyncio.run(main()) == ({"user_id": 2}, {"user_id": 1})


def test_entering_something_that_is_not_a_mapping_raises_at_once(tracker: Tracker) -> None:
    with pytest.raises(TypeError, match="context must be a mapping, not list"):
        tracker.enter_context("request", [1, 2])  # type: ignore[arg-type]


# -- the registry's error ---------------------------------------------------------------------


def test_an_unregistered_tracker_is_caught_by_except_key_error() -> None:
    with pytest.raises(KeyError):
        tracker_module.get_tracker("nope")


def test_an_unregistered_tracker_is_still_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        tracker_module.get_tracker("nope")


def test_the_unregistered_tracker_message_reads_as_written_not_quoted() -> None:
    with pytest.raises(TrackerNotRegisteredError) as raised:
        tracker_module.get_tracker("nope")
    assert str(raised.value).startswith("no tracker is registered as 'nope':")


def test_the_unregistered_tracker_error_survives_pickling() -> None:
    import pickle

    copy = pickle.loads(pickle.dumps(TrackerNotRegisteredError("nope")))
    assert copy.name == "nope"
    assert str(copy) == str(TrackerNotRegisteredError("nope"))


# -- nothing raises into emit -----------------------------------------------------------------


class RaisingRouter(eventrouter.RoutingBackend):
    """A root router of another kind, whose send raises with data in the message."""

    def send(self, event: dict[str, Any]) -> None:
        raise RuntimeError(f"cannot route {event['data']}")


def test_emit_never_raises_when_the_root_router_does(caplog: pytest.LogCaptureFixture) -> None:
    tracker = Tracker(router=RaisingRouter())
    with caplog.at_level(logging.ERROR, logger="eventrouter"):
        tracker.emit("video.played", {"secret": "hunter2"})
    assert tracker.stats()["internal_errors"] == 1
    assert len(caplog.records) == 1
    assert "video.played" in caplog.text
    assert "hunter2" not in caplog.text


def test_send_never_raises_when_the_root_router_does() -> None:
    tracker = Tracker(router=RaisingRouter())
    tracker.send(eventrouter.build_event("video.played"))
    assert tracker.stats()["internal_errors"] == 1


# -- muted blocks ---------------------------------------------------------------------------


def test_a_muted_block_drops_events_before_any_processor_and_counts_them() -> None:
    sink = MemoryBackend()
    seen: list[str] = []

    def look(event: dict[str, Any]) -> dict[str, Any]:
        seen.append(event["name"])
        return event

    tracker = Tracker(backends={"sink": sink}, processors=[look])
    with tracker.muted():
        tracker.emit("dropped")
        tracker.send(eventrouter.build_event("replayed"))
    tracker.emit("kept")
    assert sink.names() == ["kept"]
    assert seen == ["kept"]  # the processor never met the muted events
    stats = tracker.stats()
    assert stats["muted"] == 2
    assert stats["received"] == 1
    assert stats["vetoed"] == 0
    assert tracker.processors == [look]  # nothing added to the user's chain


def test_a_muted_block_survives_replacing_the_processors() -> None:
    sink = MemoryBackend()
    tracker = Tracker(backends={"sink": sink})
    tracker.router.processors = []
    tracker.router.register_processor(lambda event: event)
    with tracker.muted():
        tracker.emit("dropped")
    assert sink.events == []


def test_programmer_errors_still_raise_inside_a_muted_block(tracker: Tracker) -> None:
    with tracker.muted(), pytest.raises(TypeError):
        tracker.emit(3)  # type: ignore[arg-type]


def test_muted_blocks_nest_and_belong_to_one_tracker(sink: MemoryBackend) -> None:
    tracker = Tracker(backends={"sink": sink})
    other_sink = MemoryBackend()
    other = Tracker(backends={"sink": other_sink})
    with tracker.muted():
        with tracker.muted():
            tracker.emit("inner")
        tracker.emit("outer")
        other.emit("other")
    tracker.emit("after")
    assert sink.names() == ["after"]
    assert other_sink.names() == ["other"]


def test_a_muted_block_is_private_to_its_thread(tracker: Tracker, sink: MemoryBackend) -> None:
    with tracker.muted():
        thread = threading.Thread(target=tracker.emit, args=("elsewhere",))
        thread.start()
        thread.join()
    assert sink.names() == ["elsewhere"]


def test_a_muted_block_left_in_another_context_does_not_raise(
    tracker: Tracker, sink: MemoryBackend
) -> None:
    import contextvars

    block = tracker.muted()
    contextvars.copy_context().run(block.__enter__)  # entered in a copy...
    block.__exit__(None, None, None)  # ...left here: reset() refuses, the value is restored
    tracker.emit("kept")
    assert sink.names() == ["kept"]


def test_capture_events_does_not_capture_muted_events(registered: Tracker) -> None:
    from eventrouter.testing import capture_events

    with capture_events() as events:
        with registered.muted():
            tracker_module.emit("muted")
        tracker_module.emit("heard")
    assert [event["name"] for event in events] == ["heard"]
