"""The shared request context builder and the thread-pool helper."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import lock_held_elsewhere, needs_fork, run_in_fork

from eventrouter import Tracker
from eventrouter.integrations._request import (
    CONTEXT_KEYS,
    RequestContextBuilder,
    TrackerRef,
)
from eventrouter.integrations.threads import ContextThreadPoolExecutor, with_context
from eventrouter.tracker import register_tracker, unregister_tracker


def builder(**options: Any) -> RequestContextBuilder:
    return RequestContextBuilder(**{"trusted_proxies": ["10.0.0.0/8", "2001:db8::/32"], **options})


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.1", "203.0.113.9", "198.51.100.1"),  # untrusted peer: header ignored
        ("10.0.0.1", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.1", "203.0.113.9, 10.0.0.2", "203.0.113.9"),
        ("10.0.0.1", "6.6.6.6, 203.0.113.9, 10.0.0.2", "203.0.113.9"),  # spoof left of client
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),  # all trusted: the farthest
        ("10.0.0.1", "203.0.113.9, garbage", "10.0.0.1"),  # malformed: stop at last believed
        ("10.0.0.1", "203.0.113.9:4711", "203.0.113.9"),
        ("2001:db8::5", "[2001:db9::1]:443", "2001:db9::1"),
        ("10.0.0.1", "", "10.0.0.1"),
        ("unix-socket", "203.0.113.9", "unix-socket"),
    ],
)
def test_client_ip(peer: str, forwarded: str, expected: str) -> None:
    assert builder().client_ip(peer, forwarded) == expected


def test_forwarded_for_is_never_read_without_trusted_proxies() -> None:
    assert RequestContextBuilder().client_ip("10.0.0.1", "203.0.113.9") == "10.0.0.1"


def test_a_bad_trusted_proxy_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300'"):
        RequestContextBuilder(trusted_proxies=["10.0.0.300"])
    with pytest.raises(TypeError, match="single string"):
        RequestContextBuilder(trusted_proxies="10.0.0.1")  # type: ignore[arg-type]


def test_ignore_paths_take_exact_glob_and_regex_patterns() -> None:
    paths = builder(ignore_paths=["/health", "/static/*", "re:/v[0-9]+/ping"])
    assert paths.ignored("/health")
    assert paths.ignored("/static/css/site.css")
    assert paths.ignored("/v2/ping")
    assert not paths.ignored("/healthy")
    assert not paths.ignored("/v2/ping/x")


def test_every_key_is_present_and_strings_are_bounded() -> None:
    headers = {"user-agent": "a" * 100}
    context = builder(max_length=8).build(
        lambda header: headers.get(header.name), path="/a/very/long/path", method="GET", peer=None
    )
    assert tuple(context) == CONTEXT_KEYS
    assert context["path"] == "/a/very/"
    assert context["agent"] == "a" * 8
    assert context["ip"] is None


def test_the_session_is_never_the_key() -> None:
    keyed = builder(secret="k")
    digest = keyed.session_hash("abc123")
    assert digest is not None
    assert "abc123" not in digest
    assert digest == keyed.session_hash("abc123")
    assert digest != builder(secret="other").session_hash("abc123")
    assert builder().session_hash("abc123") is None  # no secret, no session


def test_a_hook_that_fails_is_logged_once_by_type_only(caplog: pytest.LogCaptureFixture) -> None:
    def hook(request: Any) -> dict[str, Any]:
        raise ValueError(f"leaks {request}")

    hooked = builder(context_hook=hook)
    assert hooked.extra("SECRET-DATA") == {}
    assert hooked.extra("SECRET-DATA") == {}
    assert hooked.hook_errors == 2
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "ValueError" in warnings[0].getMessage()
    assert "SECRET-DATA" not in caplog.text


def test_a_tracker_ref_looks_its_name_up_at_each_use() -> None:
    ref = TrackerRef("ref-test")
    assert ref.get() is None
    first, second = Tracker(), Tracker()
    register_tracker(first, "ref-test")
    try:
        assert ref.get() is first
        register_tracker(second, "ref-test")
        assert ref.get() is second
    finally:
        unregister_tracker("ref-test")
    fixed = Tracker()
    assert TrackerRef(fixed).get() is fixed
    with pytest.raises(TypeError, match="a Tracker or a name"):
        TrackerRef(3)  # type: ignore[arg-type]


def test_a_tracker_ref_warns_once_and_says_what_to_do(caplog: pytest.LogCaptureFixture) -> None:
    ref = TrackerRef("nowhere", without="the widget gets no context", hint="call setup()")
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert set(pool.map(lambda _: ref.get(), range(50))) == {None}
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "'nowhere'" in message
    assert "the widget gets no context" in message
    assert "call setup()" in message


def test_the_context_pool_runs_each_call_in_the_submitters_context() -> None:
    tracker = Tracker()
    seen: list[Any] = []

    def look(i: int) -> dict[str, Any]:
        tracker.enter_context("inner", {"i": i})  # stays inside this call's copy
        return tracker.resolve_context()

    with tracker.context("request", {"user_id": 3}):
        with ContextThreadPoolExecutor(max_workers=2) as pool:
            seen = list(pool.map(look, range(4)))
        assert tracker.resolve_context() == {"user_id": 3}
    assert seen == [{"user_id": 3, "i": i} for i in range(4)]


def test_with_context_carries_into_a_plain_thread() -> None:
    tracker = Tracker()
    seen: list[dict[str, Any]] = []
    with tracker.context("request", {"user_id": 4}):
        work = with_context(lambda: seen.append(tracker.resolve_context()))
        thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [{"user_id": 4}]


@needs_fork
def test_a_fork_while_a_failure_is_counted_leaves_the_child_working() -> None:
    hooked = builder(context_hook=lambda request: 1 / 0)

    def child() -> int:
        assert hooked.extra(None) == {}  # would hang on the parent's held lock
        return 0 if hooked.hook_errors == 1 else 1

    with lock_held_elsewhere(hooked):
        assert run_in_fork(child) == 0
