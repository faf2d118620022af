"""SegmentBackend: the real segment-analytics-python client posting to a local ingest server."""

from __future__ import annotations

import copy
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import segment.analytics
from conftest import SegmentIngest, basic_auth

import eventrouter.backends.segment as segment_module
from eventrouter import DeliveryError, MissingExtraError, build_event
from eventrouter.backends.segment import SegmentBackend
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
