"""SegmentBackend: the real segment-analytics-python client posting to a local ingest server."""

from __future__ import annotations

import copy
import datetime as dt
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import segment.analytics
from conftest import (
    STARTUP_TIMEOUT,
    SegmentIngest,
    basic_auth,
    lock_held_elsewhere,
    needs_fork,
    run_in_fork,
)

import eventrouter.backends.segment as segment_module
from eventrouter import DeliveryError, MissingExtraError, build_event
from eventrouter.backends.segment import CLOSE_TIMEOUT, SegmentBackend
from eventrouter.deadletter import DeadLetterFile, read_dead_letters
from eventrouter.typing import Event

WRITE_KEY = "test-write-key"

Factory = Callable[..., SegmentBackend]


def event(name: str = "video.played", **context: Any) -> Event:
    return build_event(name, {"video": "intro"}, context=context or {"user_id": 7})


@pytest.fixture
def make_backend(segment_ingest: SegmentIngest) -> Iterator[Factory]:
    """Build backends posting to the test's ingest server; they are closed afterwards."""
    made: list[SegmentBackend] = []

    def make(**options: Any) -> SegmentBackend:
        options.setdefault("write_key", WRITE_KEY)
        options.setdefault("upload_interval", 0.05)
        backend = SegmentBackend(host=segment_ingest.url, **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def deliver(backend: SegmentBackend, *events: Event) -> None:
    for one in events:
        backend.send(one)
    backend.flush()


def test_events_reach_segment_as_track_messages(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    events = [event("a.one"), event("a.two"), event("a.three")]
    deliver(make_backend(), *events)
    messages = segment_ingest.messages
    assert [m["type"] for m in messages] == ["track"] * 3
    assert [m["event"] for m in messages] == ["a.one", "a.two", "a.three"]
    assert [m["messageId"] for m in messages] == [e["id"] for e in events]


def test_the_write_key_is_sent_as_basic_auth(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    deliver(make_backend(), event())
    assert segment_ingest.requests[0]["headers"]["Authorization"] == basic_auth(WRITE_KEY)


def test_user_id_comes_from_the_context(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    deliver(make_backend(), event(user_id=42))
    (message,) = segment_ingest.messages
    assert message["userId"] == "42"
    assert message["anonymousId"] is None


def test_anonymous_id_comes_from_context_anonymous_id(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    deliver(make_backend(), event(anonymous_id="anon-1", session="s-1"))
    (message,) = segment_ingest.messages
    assert message["anonymousId"] == "anon-1"
    assert message["userId"] is None


def test_anonymous_id_falls_back_to_the_session(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    deliver(make_backend(), event(session="s-1"))
    assert segment_ingest.messages[0]["anonymousId"] == "s-1"


def test_events_without_any_user_are_skipped_counted_and_logged_once(
    make_backend: Factory, segment_ingest: SegmentIngest, caplog: pytest.LogCaptureFixture
) -> None:
    backend = make_backend()
    with caplog.at_level(logging.WARNING, logger="eventrouter.backends.segment"):
        deliver(backend, event(ip="1.2.3.4"), event(ip="1.2.3.4"), event("with.user"))
    assert [m["event"] for m in segment_ingest.messages] == ["with.user"]
    assert backend.stats()["skipped"] == 2
    skips = [r for r in caplog.records if r.name == "eventrouter.backends.segment"]
    assert len(skips) == 1
    assert "user_id" in skips[0].getMessage()


def test_ip_agent_and_google_analytics_id_go_into_segments_context(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    deliver(make_backend(), event(user_id=1, ip="203.0.113.9", agent="Firefox", client_id="GA1"))
    context = segment_ingest.messages[0]["context"]
    assert context["ip"] == "203.0.113.9"
    assert context["userAgent"] == "Firefox"
    assert context["Google Analytics"] == {"clientId": "GA1"}


def test_page_comes_from_page_path_and_referer(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    sent = event(user_id=1, page="https://x.org/p?q=1", path="/p", referer="https://r.org/")
    deliver(make_backend(), sent)
    assert segment_ingest.messages[0]["context"]["page"] == {
        "url": "https://x.org/p?q=1",
        "path": "/p",
        "referrer": "https://r.org/",
    }


def test_page_url_is_built_from_host_and_path_when_page_is_absent(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    deliver(make_backend(), event(user_id=1, host="courses.example.org", path="/courses/x"))
    page = segment_ingest.messages[0]["context"]["page"]
    assert page == {"url": "https://courses.example.org/courses/x", "path": "/courses/x"}


def test_properties_are_the_whole_event(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    sent = event(user_id=1)
    deliver(make_backend(), sent)
    properties = segment_ingest.messages[0]["properties"]
    assert properties == {
        "id": sent["id"],
        "name": "video.played",
        "timestamp": sent["timestamp"].isoformat(),
        "data": {"video": "intro"},
        "context": {"user_id": 1},
    }


def test_properties_keep_both_values_of_keys_that_become_the_same_string(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    sent = {**event(), "data": {1: "int key", "1": "str key"}}
    deliver(make_backend(), sent)
    assert segment_ingest.messages[0]["properties"]["data"] == {"1": "str key", "1~int": "int key"}


def test_the_timestamp_is_the_events(make_backend: Factory, segment_ingest: SegmentIngest) -> None:
    sent = {**event(), "timestamp": dt.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=dt.UTC)}
    deliver(make_backend(), sent)
    assert segment_ingest.messages[0]["timestamp"] == "2024-05-01T12:00:00.250+00:00"


def test_a_batch_is_retried_after_5xx_answers(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    segment_ingest.fail_next(2, status=503)
    backend = make_backend()
    sent = event()
    deliver(backend, sent)
    assert [r["status"] for r in segment_ingest.requests] == [503, 503, 200]
    assert [m["messageId"] for m in segment_ingest.messages] == [sent["id"]]
    assert backend.stats()["failed"] == 0


def test_a_batch_the_client_gives_up_on_is_counted_and_handed_to_on_failure(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    failures: list[tuple[list[Event], BaseException]] = []
    segment_ingest.fail_next(2, status=500)
    backend = make_backend(max_retries=1, on_failure=lambda ev, exc: failures.append((ev, exc)))
    sent = event()
    deliver(backend, sent)
    assert len(segment_ingest.requests) == 2
    assert backend.stats()["failed"] == 1
    ((events, _exc),) = failures
    assert [(e["id"], e["name"]) for e in events] == [(sent["id"], sent["name"])]


def test_a_rejected_batch_is_not_retried_and_is_reported(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    failures: list[list[Event]] = []
    segment_ingest.fail_next(1, status=400)
    backend = make_backend(on_failure=lambda ev, exc: failures.append(ev))
    deliver(backend, event())
    assert len(segment_ingest.requests) == 1
    assert len(failures) == 1


def test_a_failing_on_failure_handler_does_not_break_delivery(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    def broken(events: list[Event], exc: BaseException) -> None:
        raise RuntimeError("handler bug")

    segment_ingest.fail_next(1, status=400)
    backend = make_backend(on_failure=broken)
    deliver(backend, event("lost"))
    deliver(backend, event("kept"))
    assert [m["event"] for m in segment_ingest.messages] == ["kept"]


def test_a_message_over_segments_limit_raises_a_permanent_delivery_error(
    make_backend: Factory,
) -> None:
    sent = event()
    sent["data"] = {"blob": "x" * 40_000}
    with pytest.raises(DeliveryError) as raised:
        make_backend().send(sent)
    assert not raised.value.retryable
    assert raised.value.__cause__ is None  # the client's message would carry the data


def test_sending_does_not_modify_the_event(make_backend: Factory) -> None:
    sent = event(user_id=1, host="h", path="/p")
    kept = copy.deepcopy(sent)
    deliver(make_backend(), sent)
    assert sent == kept


def test_the_module_global_client_is_left_alone(make_backend: Factory) -> None:
    deliver(make_backend(), event())
    assert segment.analytics.default_client is None


def test_a_write_key_is_required() -> None:
    with pytest.raises(ValueError, match="write_key"):
        SegmentBackend(write_key="")


def test_without_the_client_construction_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_module, "_HAVE_SEGMENT", False)
    with pytest.raises(MissingExtraError, match=r"eventrouter\[segment\]"):
        SegmentBackend(write_key=WRITE_KEY)


# -- dead letter --------------------------------------------------------------------------


def test_a_batch_the_client_gives_up_on_goes_to_the_dead_letter_file(
    make_backend: Factory, segment_ingest: SegmentIngest, tmp_path: Path
) -> None:
    segment_ingest.fail_next(1, status=500)
    backend = make_backend(max_retries=0, dead_letter=tmp_path / "dead.jsonl")
    sent = event()
    deliver(backend, sent)
    (record,) = read_dead_letters(tmp_path / "dead.jsonl")
    assert record["backend"] == "segment"
    assert record["error"] == "APIError"
    assert (record["event"]["id"], record["event"]["name"]) == (sent["id"], sent["name"])


def test_dead_letter_records_carry_the_given_backend_name(
    make_backend: Factory, segment_ingest: SegmentIngest, tmp_path: Path
) -> None:
    segment_ingest.fail_next(1, status=500)
    dead = DeadLetterFile(tmp_path / "dead.jsonl")
    backend = make_backend(max_retries=0, dead_letter=dead, name="analytics.segment")
    deliver(backend, event())
    assert [r["backend"] for r in read_dead_letters(dead.path)] == ["analytics.segment"]


def test_events_still_queued_at_close_go_to_the_dead_letter_file(
    make_backend: Factory, segment_ingest: SegmentIngest, tmp_path: Path
) -> None:
    failures: list[Event] = []
    backend = make_backend(
        upload_size=1,
        dead_letter=tmp_path / "dead.jsonl",
        on_failure=lambda ev, exc: failures.extend(ev),
    )
    segment_ingest.hold()  # the client's thread waits on its first post
    sent = [event(f"e.{n}") for n in range(4)]
    for one in sent:
        backend.send(one)
    segment_ingest.wait_for_arrivals(1)
    backend.close(timeout=0)
    segment_ingest.release()
    segment_ingest.wait_for_requests(1)  # the held post is answered within this test
    queued = [e["id"] for e in sent[1:]]  # the first one was being posted
    assert [r["event"]["id"] for r in read_dead_letters(tmp_path / "dead.jsonl")] == queued
    assert [e["id"] for e in failures] == queued
    assert backend.stats()["failed"] == 3


# -- flush and close ----------------------------------------------------------------------


def test_flush_returns_after_its_timeout_while_the_client_is_still_posting(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    backend = make_backend()
    segment_ingest.hold()
    backend.send(event())
    segment_ingest.wait_for_arrivals(1)
    try:
        backend.flush(timeout=0.01)  # returns although the post is held; would hang otherwise
        assert segment_ingest.messages == []
    finally:
        segment_ingest.release()
    backend.flush()
    assert len(segment_ingest.messages) == 1


def test_close_returns_after_its_timeout_while_the_client_is_still_posting(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    backend = make_backend()
    segment_ingest.hold()
    backend.send(event())
    segment_ingest.wait_for_arrivals(1)
    try:
        backend.close(timeout=0.01)  # returns although the post is held (after ~1 s grace)
        assert segment_ingest.messages == []
    finally:
        segment_ingest.release()
    segment_ingest.wait_for_requests(1)


def test_close_delivers_what_is_queued(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    backend = make_backend(upload_size=2)
    sent = [event(f"e.{n}") for n in range(5)]
    for one in sent:
        backend.send(one)
    backend.close()
    assert sorted(m["messageId"] for m in segment_ingest.messages) == sorted(e["id"] for e in sent)


EXIT_SCRIPT = """
import sys

from eventrouter import build_event
from eventrouter.backends.segment import SegmentBackend

host, dead_letter, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
backend = SegmentBackend(
    write_key="k",
    host=host,
    upload_size=10,
    upload_interval=1.0,
    max_retries=0,
    dead_letter=dead_letter,
)
for n in range(count):
    backend.send(build_event("exit.test", {"n": n}, context={"user_id": 1}))
# no flush(), no close(): the interpreter exits with the events still queued
"""


def exit_without_closing(segment_ingest: SegmentIngest, tmp_path: Path, count: int) -> Path:
    """Run EXIT_SCRIPT in a new interpreter; return its dead-letter file's path."""
    script = tmp_path / "exit_script.py"
    script.write_text(EXIT_SCRIPT, encoding="utf-8")
    dead_letter = tmp_path / "dead.jsonl"
    subprocess.run(
        [sys.executable, str(script), segment_ingest.url, str(dead_letter), str(count)],
        check=True,
        timeout=STARTUP_TIMEOUT + CLOSE_TIMEOUT,
    )
    return dead_letter


def test_events_queued_at_interpreter_exit_are_delivered(
    segment_ingest: SegmentIngest, tmp_path: Path
) -> None:
    exit_without_closing(segment_ingest, tmp_path, 45)
    assert sorted(m["properties"]["data"]["n"] for m in segment_ingest.messages) == list(range(45))


def test_events_queued_at_interpreter_exit_that_fail_are_dead_lettered(
    segment_ingest: SegmentIngest, tmp_path: Path
) -> None:
    segment_ingest.fail_next(1000, status=500)
    dead_letter = exit_without_closing(segment_ingest, tmp_path, 45)
    records = list(read_dead_letters(dead_letter))
    assert sorted(r["event"]["data"]["n"] for r in records) == list(range(45))


# -- fork ---------------------------------------------------------------------------------


@needs_fork
def test_a_forked_child_neither_waits_on_nor_reports_the_parents_queue(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    failures: list[Event] = []
    backend = make_backend(upload_size=1, on_failure=lambda ev, exc: failures.extend(ev))
    segment_ingest.hold()
    sent = [event(f"e.{n}") for n in range(3)]
    for one in sent:
        backend.send(one)
    segment_ingest.wait_for_arrivals(1)  # the parent's queue is busy when it forks

    def child() -> int:
        backend.flush()  # the parent's queue never drains here: this would hang
        backend.close()
        return 3 if failures else 0

    try:
        code = run_in_fork(child)
    finally:
        segment_ingest.release()
    assert code == 0
    backend.flush()
    assert sorted(m["messageId"] for m in segment_ingest.messages) == sorted(e["id"] for e in sent)


@needs_fork
def test_a_forked_child_is_not_blocked_by_a_lock_held_in_the_parent(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    backend = make_backend()
    sent = event()

    def child() -> int:
        backend.send(sent)  # creates the child's own client, under the lock
        backend.flush()
        return 0

    with lock_held_elsewhere(backend):
        code = run_in_fork(child)
    assert code == 0
    assert [m["messageId"] for m in segment_ingest.messages] == [sent["id"]]
