"""SegmentBackend: messages built by segment-analytics-python, posted to a local ingest server."""

from __future__ import annotations

import copy
import datetime as dt
import email.utils
import gzip
import http.server
import json
import logging
import subprocess
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import segment.analytics
from conftest import (
    SegmentIngest,
    basic_auth,
    fork_while_threads_send,
    lock_held_elsewhere,
    needs_fork,
    run_in_fork,
)
from segment.analytics.client import Client
from segment.analytics.consumer import Consumer
from segment.analytics.request import DatetimeSerializer

import eventrouter
import eventrouter.backends.segment as segment_module
from eventrouter import DeliveryError, MissingExtraError, build_event
from eventrouter.backends._segment_messages import to_segment_call
from eventrouter.backends.buffered import BufferedBackend
from eventrouter.backends.segment import SegmentBackend
from eventrouter.deadletter import DeadLetterFile, read_dead_letters
from eventrouter.errors import OptionError, PartialDeliveryError
from eventrouter.typing import Event

WRITE_KEY = "test-write-key"

Factory = Callable[..., SegmentBackend]


def event(name: str = "video.played", **context: Any) -> Event:
    return build_event(name, {"video": "intro"}, context=context or {"user_id": 7})


def over_one_request() -> list[Event]:
    """40 events of 20 KB each: over the 500 KB one request to Segment may carry."""
    events = [event(f"e.{n}") for n in range(40)]
    for one in events:
        one["data"] = {"text": "y" * 20_000}
    return events


def oversized(name: str = "too.big") -> Event:
    big = event(name)
    big["data"] = {"blob": "x" * 40_000}
    return big


@pytest.fixture
def make_backend(segment_ingest: SegmentIngest) -> Iterator[Factory]:
    """Build backends posting to the test's ingest server; they are closed afterwards."""
    made: list[SegmentBackend] = []

    def make(**options: Any) -> SegmentBackend:
        options.setdefault("write_key", WRITE_KEY)
        options.setdefault("host", segment_ingest.url)
        backend = SegmentBackend(**options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def analytics_settings(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """segment.analytics' module settings, restored after the test."""
    for name in ("write_key", "host", "debug", "on_error", "send", "gzip", "timeout"):
        monkeypatch.setattr(segment.analytics, name, getattr(segment.analytics, name))
    monkeypatch.setattr(segment.analytics, "proxies", None, raising=False)
    monkeypatch.delitem(sys.modules, "analytics", raising=False)
    return types.SimpleNamespace(module=segment.analytics)


def message_ids(ingest: SegmentIngest) -> list[str]:
    return [m["messageId"] for m in ingest.messages]


# -- the messages -------------------------------------------------------------------------


@pytest.mark.peers
def test_a_batch_reaches_segment_as_track_messages_in_one_request(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    events = [event("a.one"), event("a.two"), event("a.three")]
    make_backend().send_batch(events)
    assert len(segment_ingest.requests) == 1
    messages = segment_ingest.messages
    assert [m["type"] for m in messages] == ["track"] * 3
    assert [m["event"] for m in messages] == ["a.one", "a.two", "a.three"]
    assert [m["messageId"] for m in messages] == [e["id"] for e in events]


@pytest.mark.peers
def test_send_posts_a_batch_of_one(make_backend: Factory, segment_ingest: SegmentIngest) -> None:
    sent = event()
    make_backend().send(sent)
    assert [r["body"]["batch"][0]["messageId"] for r in segment_ingest.requests] == [sent["id"]]


@pytest.mark.peers
def test_the_write_key_is_sent_as_basic_auth(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    make_backend().send(event())
    request = segment_ingest.requests[0]
    assert request["headers"]["Authorization"] == basic_auth(WRITE_KEY)
    assert request["body"]["writeKey"] == WRITE_KEY


@pytest.mark.peers
def test_gzip_compresses_the_body(make_backend: Factory, segment_ingest: SegmentIngest) -> None:
    make_backend(gzip=True).send(event())
    assert segment_ingest.requests[0]["headers"]["Content-Encoding"] == "gzip"
    assert len(segment_ingest.messages) == 1


@pytest.mark.peers
def test_user_id_comes_from_the_context_without_an_anonymous_id(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    make_backend().send(event(user_id=42, session="s-1", anonymous_id="a-1"))
    (message,) = segment_ingest.messages
    assert message["userId"] == "42"
    assert message["anonymousId"] is None  # event-tracking never sent one


@pytest.mark.peers
def test_events_without_a_user_are_skipped_counted_and_logged_once(
    make_backend: Factory, segment_ingest: SegmentIngest, caplog: pytest.LogCaptureFixture
) -> None:
    backend = make_backend()
    with caplog.at_level(logging.WARNING, logger="eventrouter.backends.segment"):
        backend.send_batch([event(session="s-1"), event(anonymous_id="a"), event("with.user")])
    assert [m["event"] for m in segment_ingest.messages] == ["with.user"]
    assert backend.stats()["skipped"] == 2
    skips = [r for r in caplog.records if r.name == "eventrouter.backends.segment"]
    assert len(skips) == 1
    assert "user_id" in skips[0].getMessage()


@pytest.mark.peers
def test_a_batch_of_only_skipped_events_posts_nothing(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    make_backend().send_batch([event(session="s-1"), event(ip="1.2.3.4")])
    assert segment_ingest.arrived == 0


@pytest.mark.peers
def test_anonymous_sends_events_keyed_by_anonymous_id_or_session(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    make_backend(anonymous=True).send_batch(
        [event(anonymous_id="a-1", session="s-1"), event(session="s-2"), event(ip="1.2.3.4")]
    )
    messages = segment_ingest.messages
    assert [(m["userId"], m["anonymousId"]) for m in messages] == [
        (None, "a-1"),
        (None, "s-2"),
    ]


@pytest.mark.peers
def test_anonymous_gives_users_events_the_session_as_anonymous_id(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    make_backend(anonymous=True).send(event(user_id=5, session="s-1"))
    (message,) = segment_ingest.messages
    assert (message["userId"], message["anonymousId"]) == ("5", "s-1")


@pytest.mark.peers
def test_ip_agent_and_google_analytics_id_go_into_segments_context(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    make_backend().send(event(user_id=1, ip="203.0.113.9", agent="Firefox", client_id="GA1"))
    context = segment_ingest.messages[0]["context"]
    assert context["ip"] == "203.0.113.9"
    assert context["userAgent"] == "Firefox"
    assert context["Google Analytics"] == {"clientId": "GA1"}


@pytest.mark.peers
def test_page_comes_from_page_path_and_referer(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    sent = event(user_id=1, page="https://x.org/p?q=1", path="/p", referer="https://r.org/")
    make_backend().send(sent)
    assert segment_ingest.messages[0]["context"]["page"] == {
        "url": "https://x.org/p?q=1",
        "path": "/p",
        "referrer": "https://r.org/",
    }


@pytest.mark.peers
def test_page_url_is_built_from_host_and_path_when_page_is_absent(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    make_backend().send(event(user_id=1, host="courses.example.org", path="/courses/x"))
    page = segment_ingest.messages[0]["context"]["page"]
    assert page == {"url": "https://courses.example.org/courses/x", "path": "/courses/x"}


@pytest.mark.peers
def test_properties_are_the_whole_event(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    sent = event(user_id=1)
    make_backend().send(sent)
    assert segment_ingest.messages[0]["properties"] == {
        "id": sent["id"],
        "name": "video.played",
        "timestamp": sent["timestamp"].isoformat(),
        "data": {"video": "intro"},
        "context": {"user_id": 1},
    }


@pytest.mark.peers
def test_properties_keep_both_values_of_keys_that_become_the_same_string(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    sent = {**event(), "data": {1: "int key", "1": "str key"}}
    make_backend().send(sent)
    assert segment_ingest.messages[0]["properties"]["data"] == {"1": "str key", "1~int": "int key"}


@pytest.mark.peers
def test_the_timestamp_is_the_events(make_backend: Factory, segment_ingest: SegmentIngest) -> None:
    sent = {**event(), "timestamp": dt.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=dt.UTC)}
    make_backend().send(sent)
    assert segment_ingest.messages[0]["timestamp"] == "2024-05-01T12:00:00.250+00:00"


@pytest.mark.peers
def test_sending_does_not_modify_the_event(make_backend: Factory) -> None:
    sent = event(user_id=1, host="h", path="/p")
    kept = copy.deepcopy(sent)
    make_backend().send_batch([sent])
    assert sent == kept


@pytest.mark.peers
def test_a_large_batch_is_posted_in_requests_within_segments_size_limit(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    events = over_one_request()
    make_backend().send_batch(events)
    assert len(segment_ingest.requests) >= 2
    assert all(len(r["body"]["batch"]) < 40 for r in segment_ingest.requests)
    assert message_ids(segment_ingest) == [e["id"] for e in events]


class _RawIngest:
    """Segment's batch API as a recorder of raw request bodies (gunzipped), answering 200."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        ingest = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                ingest.bodies.append(raw)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def raw_ingest() -> Iterator[_RawIngest]:
    ingest = _RawIngest()
    yield ingest
    ingest.close()


def segment_body(messages: list[dict[str, Any]], body: bytes) -> bytes:
    """The body segment-analytics-python writes for ``messages`` (``sentAt`` from ``body``)."""
    sent_at = json.loads(body)["sentAt"]
    document = {"batch": messages, "sentAt": sent_at, "writeKey": WRITE_KEY}
    return json.dumps(document, cls=DatetimeSerializer).encode()


@pytest.mark.peers
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_the_body_is_byte_for_byte_what_segments_client_writes(
    make_backend: Factory, raw_ingest: _RawIngest, compress: bool
) -> None:
    events = [event("a.one"), event("b.two", user_id="ü-7", ip="203.0.113.9", path="/x")]
    events[1]["data"] = {"text": 'naïve ☃ "quoted"', "n": 1.5, "deep": {"l": [1, None, True]}}
    events.extend(over_one_request())  # two requests: each is joined from its own messages
    make_backend(host=raw_ingest.url, gzip=compress).send_batch(events)
    builder = Client(WRITE_KEY, send=False, sync_mode=True)
    calls = [to_segment_call(e) for e in events]
    expected = [builder.track(**call)[1] for call in calls if isinstance(call, dict)]
    assert len(raw_ingest.bodies) >= 2
    start = 0
    for body in raw_ingest.bodies:
        count = len(json.loads(body)["batch"])
        assert body == segment_body(expected[start : start + count], body)
        start += count
    assert start == len(expected) == len(events)


@pytest.mark.peers
def test_each_message_is_encoded_once_on_our_side(
    make_backend: Factory, segment_ingest: SegmentIngest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventrouter.backends import _segment_http

    encoded: list[object] = []

    def dumps(value: object, **options: Any) -> str:
        if isinstance(value, dict):  # a message or a whole body; not sentAt or the key
            encoded.append(value)
        return json.dumps(value, **options)

    monkeypatch.setattr(_segment_http, "json", types.SimpleNamespace(dumps=dumps))
    make_backend().send_batch([event("a"), event("b"), event("c")])
    assert len(segment_ingest.messages) == 3
    assert [m["event"] for m in encoded] == ["a", "b", "c"]  # type: ignore[index]


# -- failures -----------------------------------------------------------------------------


@pytest.mark.peers
def test_a_5xx_answer_raises_a_retryable_error_and_is_not_retried_inside(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    segment_ingest.fail_next(1, status=500)
    with pytest.raises(DeliveryError) as raised:
        make_backend().send(event())
    assert raised.value.retryable
    assert raised.value.retry_after is None
    assert [r["status"] for r in segment_ingest.requests] == [500]  # the caller retries


@pytest.mark.peers
def test_a_429_answer_is_retryable_after_its_retry_after_seconds(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    segment_ingest.fail_next(1, status=429, retry_after="7")
    with pytest.raises(DeliveryError) as raised:
        make_backend().send(event())
    assert raised.value.retryable
    assert raised.value.retry_after == 7.0


@pytest.mark.peers
def test_a_retry_after_given_as_an_http_date_is_honoured(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    segment_ingest.fail_next(1, status=503, retry_after=email.utils.format_datetime(later, True))
    with pytest.raises(DeliveryError) as raised:
        make_backend().send(event())
    assert raised.value.retry_after is not None
    assert 60 < raised.value.retry_after <= 120


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422, 501])
@pytest.mark.peers
def test_other_refusals_raise_a_permanent_error(
    make_backend: Factory, segment_ingest: SegmentIngest, status: int
) -> None:
    segment_ingest.fail_next(1, status=status)
    with pytest.raises(DeliveryError) as raised:
        make_backend().send(event())
    assert not raised.value.retryable
    assert str(status) in str(raised.value)


@pytest.mark.peers
def test_a_hanging_ingest_raises_a_retryable_error_when_the_timeout_fires(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    segment_ingest.hold()
    try:
        with pytest.raises(DeliveryError) as raised:
            make_backend(timeout=0.2).send(event())
    finally:
        segment_ingest.release()
    assert raised.value.retryable
    assert "ReadTimeout" in str(raised.value)


@pytest.mark.peers
def test_a_reset_connection_raises_a_retryable_error(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    segment_ingest.reset_next(1)
    backend = make_backend()
    with pytest.raises(DeliveryError) as raised:
        backend.send(event())
    assert raised.value.retryable
    assert segment_ingest.resets == 1
    sent = event()
    backend.send(sent)  # the session recovers on a new connection
    assert message_ids(segment_ingest) == [sent["id"]]


def test_an_ingest_that_is_down_raises_a_retryable_error(unused_port: int) -> None:
    backend = SegmentBackend(write_key=WRITE_KEY, host=f"http://127.0.0.1:{unused_port}")
    with pytest.raises(DeliveryError) as raised:
        backend.send(event())
    assert raised.value.retryable


@pytest.mark.peers
def test_a_message_over_segments_limit_fails_alone_and_the_rest_is_delivered(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    events = [event("a"), oversized(), event("c")]
    backend = make_backend()
    with pytest.raises(PartialDeliveryError) as raised:
        backend.send_batch(events)
    assert raised.value.failed == (1,)
    assert not raised.value.retryable
    assert raised.value.__cause__ is None  # the client's message would carry the data
    assert "xxxx" not in str(raised.value)
    assert message_ids(segment_ingest) == [events[0]["id"], events[2]["id"]]
    assert backend.stats()["rejected"] == 1


@pytest.mark.peers
def test_a_later_request_failing_reports_only_its_events(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    events = over_one_request()
    segment_ingest.fail_next(1, status=200)
    segment_ingest.fail_next(1, status=503, retry_after="3")
    with pytest.raises(PartialDeliveryError) as raised:
        make_backend().send_batch(events)
    first = len(segment_ingest.requests[0]["body"]["batch"])
    assert raised.value.failed == tuple(range(first, 40))
    assert raised.value.retryable
    assert raised.value.retry_after == 3.0
    assert message_ids(segment_ingest) == [e["id"] for e in events[:first]]


@pytest.mark.peers
def test_on_error_gets_the_exception_and_the_messages_of_a_failed_post(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    calls: list[tuple[BaseException, list[dict[str, Any]]]] = []
    segment_ingest.fail_next(1, status=500)
    sent = event()
    with pytest.raises(DeliveryError):
        make_backend(on_error=lambda exc, batch: calls.append((exc, batch))).send(sent)
    ((exc, batch),) = calls
    assert isinstance(exc, DeliveryError)
    assert [m["messageId"] for m in batch] == [sent["id"]]


@pytest.mark.peers
def test_a_failing_on_error_handler_is_logged_once_and_changes_nothing(
    make_backend: Factory, segment_ingest: SegmentIngest, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(exc: BaseException, batch: list[dict[str, Any]]) -> None:
        raise RuntimeError("handler bug")

    backend = make_backend(on_error=broken)
    segment_ingest.fail_next(2, status=500)
    with caplog.at_level(logging.ERROR, logger="eventrouter.backends.segment"):
        for _ in range(2):
            with pytest.raises(DeliveryError):
                backend.send(event("lost"))
    assert len([r for r in caplog.records if "on_error" in r.getMessage()]) == 1
    backend.send(event("kept"))
    assert [m["event"] for m in segment_ingest.messages] == ["kept"]


# -- settings from the analytics module ---------------------------------------------------


@pytest.mark.peers
def test_settings_not_given_are_read_from_segment_analytics_at_first_use(
    analytics_settings: types.SimpleNamespace, segment_ingest: SegmentIngest
) -> None:
    backend = SegmentBackend()  # built before the application sets the module up
    calls: list[BaseException] = []
    analytics_settings.module.write_key = "late-key"
    analytics_settings.module.host = segment_ingest.url
    analytics_settings.module.on_error = lambda exc, batch: calls.append(exc)
    backend.send(event())
    assert segment_ingest.requests[0]["headers"]["Authorization"] == basic_auth("late-key")
    segment_ingest.fail_next(1, status=500)
    with pytest.raises(DeliveryError):
        backend.send(event())
    assert len(calls) == 1


@pytest.mark.peers
def test_the_analytics_module_of_analytics_python_is_read_too(
    analytics_settings: types.SimpleNamespace,
    segment_ingest: SegmentIngest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    legacy = types.ModuleType("analytics")
    legacy.write_key = "legacy-key"  # type: ignore[attr-defined]
    legacy.host = segment_ingest.url  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "analytics", legacy)
    SegmentBackend().send(event())
    assert segment_ingest.requests[0]["headers"]["Authorization"] == basic_auth("legacy-key")


@pytest.mark.peers
def test_debug_from_the_analytics_module_turns_on_the_clients_debug_log(
    analytics_settings: types.SimpleNamespace, segment_ingest: SegmentIngest
) -> None:
    segment_log = logging.getLogger("segment")
    level, handlers = segment_log.level, list(segment_log.handlers)
    analytics_settings.module.write_key = "k"
    analytics_settings.module.host = segment_ingest.url
    analytics_settings.module.debug = True
    try:
        SegmentBackend().send(event())
        assert segment_log.level == logging.DEBUG
    finally:
        segment_log.setLevel(level)
        segment_log.handlers[:] = handlers


@pytest.mark.peers
def test_options_win_over_the_analytics_module(
    analytics_settings: types.SimpleNamespace, segment_ingest: SegmentIngest
) -> None:
    analytics_settings.module.write_key = "module-key"
    analytics_settings.module.host = "http://127.0.0.1:9"  # never used
    backend = SegmentBackend(write_key="option-key", host=segment_ingest.url)
    backend.send(event())
    assert segment_ingest.requests[0]["headers"]["Authorization"] == basic_auth("option-key")


@pytest.mark.peers
def test_without_any_write_key_sending_fails_until_one_is_set(
    analytics_settings: types.SimpleNamespace, segment_ingest: SegmentIngest
) -> None:
    analytics_settings.module.write_key = None
    backend = SegmentBackend(host=segment_ingest.url)
    with pytest.raises(DeliveryError, match="write_key") as raised:
        backend.send(event())
    assert not raised.value.retryable
    analytics_settings.module.write_key = "set-later"
    backend.send(event())
    assert segment_ingest.requests[0]["headers"]["Authorization"] == basic_auth("set-later")


def test_analytics_send_false_builds_but_posts_nothing_as_event_tracking_did(
    analytics_settings: types.SimpleNamespace, segment_ingest: SegmentIngest
) -> None:
    analytics_settings.module.write_key = "k"
    analytics_settings.module.host = segment_ingest.url
    analytics_settings.module.send = False
    backend = SegmentBackend()
    backend.send_batch([event(), event(), event("anonymous.one", session="s")])
    assert segment_ingest.requests == []
    assert backend.stats() == {"skipped": 3, "sent": 0, "rejected": 0, "failed": 0}


def test_the_send_option_wins_over_analytics_send(
    analytics_settings: types.SimpleNamespace, segment_ingest: SegmentIngest
) -> None:
    analytics_settings.module.write_key = "k"
    analytics_settings.module.send = False
    SegmentBackend(host=segment_ingest.url, send=True).send(event())
    assert len(segment_ingest.messages) == 1
    analytics_settings.module.send = True
    SegmentBackend(host=segment_ingest.url, send=False).send(event())
    assert len(segment_ingest.messages) == 1


@pytest.mark.slow
def test_gzip_and_timeout_follow_the_analytics_module(
    analytics_settings: types.SimpleNamespace, segment_ingest: SegmentIngest
) -> None:
    analytics_settings.module.write_key = "k"
    analytics_settings.module.host = segment_ingest.url
    analytics_settings.module.gzip = True
    analytics_settings.module.timeout = 0.2
    backend = SegmentBackend()
    backend.send(event())
    assert segment_ingest.requests[0]["headers"]["Content-Encoding"] == "gzip"
    assert backend._resolve().timeout == 0.2  # what the hanging post below waits for
    segment_ingest.hold()
    try:
        with pytest.raises(DeliveryError, match="ReadTimeout"):
            backend.send(event())
    finally:
        segment_ingest.release()
    plain = SegmentBackend(gzip=False)
    sent = event()
    plain.send(sent)
    # the held request may be recorded after this one: find this one by its messageId
    [request] = [
        r
        for r in segment_ingest.requests
        if [m["messageId"] for m in r["body"]["batch"]] == [sent["id"]]
    ]
    assert "Content-Encoding" not in request["headers"]


class _Proxy:
    """An HTTP forward proxy that answers every request itself, recording its target."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy.targets.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["option", "module"])
def test_posts_go_through_the_proxies_given(
    where: str, analytics_settings: types.SimpleNamespace
) -> None:
    proxy = _Proxy()
    try:
        analytics_settings.module.write_key = "k"
        proxies = {"http": proxy.url}
        if where == "module":
            analytics_settings.module.proxies = proxies
            backend = SegmentBackend(host="http://segment.test")
        else:
            backend = SegmentBackend(host="http://segment.test", proxies=proxies)
        backend.send(event())
        backend.close()
    finally:
        proxy.close()
    assert proxy.targets == ["http://segment.test/v1/batch"]


# -- no background machinery --------------------------------------------------------------


@pytest.mark.peers
def test_no_consumer_thread_or_module_client_is_started(make_backend: Factory) -> None:
    backend = make_backend()
    backend.send_batch([event(), event()])
    assert not [t for t in threading.enumerate() if isinstance(t, Consumer)]
    assert segment.analytics.default_client is None


@pytest.mark.peers
def test_close_closes_the_session_and_a_later_send_opens_a_new_one(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    backend = make_backend()
    backend.send(event())
    backend.close()
    backend.send(event())
    assert len(segment_ingest.messages) == 2


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("write_key", ""),
        ("host", ""),
        ("timeout", 0),
        ("timeout", True),
        ("on_error", "x"),
        ("proxies", "http://proxy:3128"),
    ],
)
def test_bad_options_are_refused_naming_the_option(option: str, value: Any) -> None:
    with pytest.raises(OptionError) as raised:
        SegmentBackend(**{option: value})
    assert raised.value.option == option


def test_without_the_client_construction_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_module, "_HAVE_SEGMENT", False)
    with pytest.raises(MissingExtraError, match=r"eventrouter\[segment\]"):
        SegmentBackend(write_key=WRITE_KEY)


# -- fork ---------------------------------------------------------------------------------


@needs_fork
@pytest.mark.peers
def test_forks_while_four_threads_send_deliver_every_event_once(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    backend = make_backend()
    warm_up = event("warm.up")
    backend.send(warm_up)  # the parent holds a kept-alive connection when it forks
    parents_session = backend._sessions.peek()

    def child(one: Event) -> int:
        backend.send(one)
        if backend._sessions.peek() is parents_session:
            return 3  # it would write into the parent's sockets
        backend.close()
        return 0

    storm = fork_while_threads_send(event, backend.send, child)
    assert storm.codes == [0] * 50
    assert storm.errors == []
    assert {r["status"] for r in segment_ingest.requests} == {200}
    ids = message_ids(segment_ingest)
    assert len(ids) == len(set(ids))  # nothing twice
    assert set(ids) == {warm_up["id"], *storm.sent, *storm.child_ids}


@needs_fork
@pytest.mark.peers
def test_a_forked_child_is_not_blocked_by_a_lock_held_in_the_parent(
    make_backend: Factory, segment_ingest: SegmentIngest
) -> None:
    backend = make_backend()
    backend.send(event())
    sent = event()

    def child() -> int:
        backend.send(sent)
        return 0

    with lock_held_elsewhere(backend), lock_held_elsewhere(backend._sessions):
        code = run_in_fork(child)
    assert code == 0
    assert sent["id"] in message_ids(segment_ingest)


# -- behind a buffered node ---------------------------------------------------------------


def buffered(backend: SegmentBackend, dead: Path) -> BufferedBackend:
    node = BufferedBackend(
        backend,
        batch_size=10,
        flush_interval=0.01,
        backoff=(0.001, 0.01),
        max_retries=50,
        dead_letter=DeadLetterFile(dead),
    )
    node.bind_path("analytics.segment")
    return node


@pytest.mark.peers
def test_buffered_ingest_down_then_up_delivers_every_event_once(
    make_backend: Factory, segment_ingest: SegmentIngest, tmp_path: Path
) -> None:
    segment_ingest.fail_next(3, status=503)
    segment_ingest.reset_next(2)
    node = buffered(make_backend(), tmp_path / "dead.jsonl")
    events = [event(f"e.{n}") for n in range(35)]
    for one in events:
        node.send(one)
    assert node.flush(timeout=60)
    node.close()
    ids = message_ids(segment_ingest)
    assert sorted(ids) == sorted(e["id"] for e in events)  # each exactly once
    assert not (tmp_path / "dead.jsonl").exists()
    assert node.stats()["delivered"] == 35


@pytest.mark.peers
def test_buffered_poison_message_is_split_out_and_dead_lettered(
    make_backend: Factory, segment_ingest: SegmentIngest, tmp_path: Path
) -> None:
    dead = tmp_path / "dead.jsonl"
    node = buffered(make_backend(), dead)
    events = [event(f"e.{n}") for n in range(9)]
    poison = oversized()
    events.insert(4, poison)
    for one in events:
        node.send(one)
    assert node.flush(timeout=60)
    node.close()
    ids = message_ids(segment_ingest)
    assert sorted(ids) == sorted(e["id"] for e in events if e is not poison)
    (record,) = read_dead_letters(dead)
    assert record["event"]["id"] == poison["id"]
    assert record["destination"] == "analytics.segment"
    assert record["error"] == "PartialDeliveryError"
    stats = node.stats()
    assert (stats["delivered"], stats["dead_lettered"]) == (9, 1)


@pytest.mark.peers
def test_buffered_ingest_always_failing_dead_letters_every_event_once(
    make_backend: Factory, segment_ingest: SegmentIngest, tmp_path: Path
) -> None:
    dead = tmp_path / "dead.jsonl"
    segment_ingest.fail_next(1000, status=500)
    node = BufferedBackend(
        make_backend(),
        batch_size=5,
        flush_interval=0.01,
        backoff=(0.001, 0.002),
        max_retries=2,
        dead_letter=DeadLetterFile(dead),
    )
    events = [event(f"e.{n}") for n in range(12)]
    for one in events:
        node.send(one)
    assert node.flush(timeout=60)
    node.close()
    records = list(read_dead_letters(dead))
    assert sorted(r["event"]["id"] for r in records) == sorted(e["id"] for e in events)
    assert {r["attempts"] for r in records} == {3}
    assert segment_ingest.messages == []


@pytest.mark.parametrize(("header", "expected"), [("9999", 300.0), ("soon", None), ("0", 0.0)])
@pytest.mark.peers
def test_retry_after_is_capped_and_ignored_when_unreadable(
    make_backend: Factory, segment_ingest: SegmentIngest, header: str, expected: float | None
) -> None:
    segment_ingest.fail_next(1, status=429, retry_after=header)
    with pytest.raises(DeliveryError) as raised:
        make_backend().send(event())
    assert raised.value.retry_after == expected


EXIT_SCRIPT = """
import sys

from eventrouter import build_event
from eventrouter.backends.buffered import BufferedBackend
from eventrouter.backends.segment import SegmentBackend

host, count = sys.argv[1], int(sys.argv[2])
node = BufferedBackend(SegmentBackend(write_key="k", host=host), flush_interval=30.0)
for n in range(count):
    node.send(build_event("exit.test", {"n": n}, context={"user_id": 1}))
# no flush(), no close(): the interpreter exits with the events still queued
"""


@pytest.mark.peers
def test_events_queued_in_a_buffered_node_at_exit_are_delivered_once(
    segment_ingest: SegmentIngest, tmp_path: Path
) -> None:
    script = tmp_path / "exit_script.py"
    script.write_text(EXIT_SCRIPT, encoding="utf-8")
    subprocess.run([sys.executable, str(script), segment_ingest.url, "45"], check=True, timeout=120)
    assert sorted(m["properties"]["data"]["n"] for m in segment_ingest.messages) == list(range(45))


@pytest.mark.peers
def test_a_yaml_segment_node_is_buffered_and_delivers_users_events_once(
    segment_ingest: SegmentIngest,
) -> None:
    options = {"write_key": WRITE_KEY, "host": segment_ingest.url}
    tracker = eventrouter.load({"backends": {"segment": {"class": "segment", "options": options}}})
    assert isinstance(tracker.get_backend("segment"), BufferedBackend)
    with tracker.context("request", {"user_id": 3}):
        for n in range(20):
            tracker.emit("yaml.event", {"n": n})
    tracker.emit("anonymous.event", {})  # no user: not sent
    tracker.close(timeout=30)
    messages = segment_ingest.messages
    assert sorted(m["properties"]["data"]["n"] for m in messages) == list(range(20))
    assert {m["userId"] for m in messages} == {"3"}
