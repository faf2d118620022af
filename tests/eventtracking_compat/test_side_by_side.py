"""edx-platform's and event-routing-backends' settings, fed unchanged to event-tracking 4.0.2
and to eventrouter: every backend must receive the same events, line by line.

Differences that are deliberate (see the table in docs/migration.md) are normalised away
before comparing: our events' ``id`` and the timestamps' values.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from eventrouter.config.migrate import load_settings
from eventtracking_compat import platform

TRACK_MAX_EVENT = 50000

XAPI_NAMES = ["edx.course.enrollment.activated", "problem_check", "edx.video.played"]
CALIPER_NAMES = ["edx.course.enrollment.activated", "edx.ui.lms.link_clicked"]


def edx_platform_settings() -> dict[str, Any]:
    """lms/envs/common.py's EVENT_TRACKING_* settings."""
    return {
        "EVENT_TRACKING_BACKENDS": {
            "tracking_logs": {
                "ENGINE": "eventtracking.backends.routing.RoutingBackend",
                "OPTIONS": {
                    "backends": {
                        "logger": {
                            "ENGINE": "eventtracking.backends.logger.LoggerBackend",
                            "OPTIONS": {"name": "tracking", "max_event_size": TRACK_MAX_EVENT},
                        }
                    },
                    "processors": [
                        {"ENGINE": "common.djangoapps.track.shim.LegacyFieldMappingProcessor"},
                        {"ENGINE": "common.djangoapps.track.shim.PrefixedEventProcessor"},
                    ],
                },
            },
            "segmentio": {
                "ENGINE": "eventtracking.backends.routing.RoutingBackend",
                "OPTIONS": {
                    "backends": {
                        "segment": {"ENGINE": "eventtracking.backends.segment.SegmentBackend"}
                    },
                    "processors": [
                        {
                            "ENGINE": "eventtracking.processors.whitelist.NameWhitelistProcessor",
                            "OPTIONS": {"whitelist": []},
                        },
                        {"ENGINE": "common.djangoapps.track.shim.GoogleAnalyticsProcessor"},
                    ],
                },
            },
        },
        "EVENT_TRACKING_PROCESSORS": [],
    }


def _erb_branch(name: str, names: list[str], processors: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "ENGINE": "eventtracking.backends.async_routing.AsyncRoutingBackend",
        "OPTIONS": {
            "backend_name": name,
            "processors": [
                {
                    "ENGINE": "eventtracking.processors.whitelist.NameWhitelistProcessor",
                    "OPTIONS": {"whitelist": names},
                }
            ],
            "backends": {
                name: {
                    "ENGINE": "event_routing_backends.backends.events_router.EventsRouter",
                    "OPTIONS": {"processors": processors, "backend_name": name},
                }
            },
        },
    }


def with_event_routing_backends(settings: dict[str, Any]) -> dict[str, Any]:
    """event-routing-backends' ``plugin_settings`` applied (its whitelists shortened)."""
    xapi = "event_routing_backends.processors.xapi.transformer_processor.XApiProcessor"
    caliper = "event_routing_backends.processors.caliper"
    settings["EVENT_TRACKING_BACKENDS"].update(
        {
            "xapi": _erb_branch("xapi", XAPI_NAMES, [{"ENGINE": xapi, "OPTIONS": {}}]),
            "caliper": _erb_branch(
                "caliper",
                CALIPER_NAMES,
                [
                    {"ENGINE": f"{caliper}.transformer_processor.CaliperProcessor", "OPTIONS": {}},
                    {
                        "ENGINE": f"{caliper}.envelope_processor.CaliperEnvelopeProcessor",
                        "OPTIONS": {"sensor_id": "http://localhost:18000"},
                    },
                ],
            ),
        }
    )
    return settings


USER = {
    "user_id": 7,
    "username": "ada",
    "session": "s1",
    "ip": "10.0.0.1",
    "course_id": "course-v1:edX+D101+2026",
}
ANONYMOUS = {"session": "s2", "ip": "10.0.0.2"}
BROWSER = {**USER, "event_source": "browser", "page": "https://lms.example/courses"}

EVENTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("edx.course.enrollment.activated", {"course_id": "course-v1:edX+D101+2026"}, USER),
    ("edx.video.played", {"id": "intro", "currentTime": 1.5}, BROWSER),
    ("problem_check", {"answers": {"q1": "42"}, "success": "correct"}, USER),
    ("edx.ui.lms.link_clicked", {"target_url": "https://example.org"}, ANONYMOUS),
    ("edx.bi.unlisted", {"n": 1}, USER),
]
OVERSIZED = ("edx.grades.big", {"blob": "x" * 60_000}, USER)  # over TRACK_MAX_EVENT


def drive(tracker: Any, events: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
    for name, data, context in events:
        with tracker.context("edx.request", dict(context)):
            tracker.emit(name, copy.deepcopy(data))


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def tracking_log() -> Iterator[Lines]:
    """What the ``tracking`` logger (edx-platform's tracking log) receives."""
    logger = logging.getLogger("tracking")
    handler = Lines()
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


@pytest.fixture
def stand_ins() -> Iterator[None]:
    with platform.installed():
        yield


def event_tracking(settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """event-tracking's own Tracker, built as its DjangoTracker builds one; its Celery task
    for AsyncRoutingBackend runs in-process (what the task does: the named top-level
    backend's ``send_to_backends``)."""
    from eventtracking import tracker as upstream
    from eventtracking.backends import async_routing
    from eventtracking.django.django_tracker import DjangoTracker

    builder = object.__new__(DjangoTracker)
    built = upstream.Tracker(
        builder._instantiate_objects(copy.deepcopy(settings["EVENT_TRACKING_BACKENDS"])),
        None,
        builder._instantiate_objects(copy.deepcopy(settings["EVENT_TRACKING_PROCESSORS"])),
    )
    monkeypatch.setitem(upstream.TRACKERS, "default", built)

    class SendEvent:
        @staticmethod
        def delay(backend_name: str, event: dict[str, Any]) -> None:
            upstream.get_tracker().backends[backend_name].send_to_backends(event.copy())

    monkeypatch.setattr(async_routing, "send_event", SendEvent)
    return built


_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:\+00:00|Z)")
_ID_LAST = re.compile(r', "id": "[0-9a-f-]{36}"\}$')


def same_line(line: str) -> str:
    """A log line with the timestamps' values and our trailing ``id`` taken out."""
    return _ID_LAST.sub("}", _ISO.sub("<time>", line))


def same_event(event: Any) -> Any:
    """A dispatched event with timestamps' values and our ``id`` taken out."""
    if isinstance(event, dict):
        return {k: same_event(v) for k, v in event.items() if k != "id"}
    if isinstance(event, list):
        return [same_event(v) for v in event]
    if hasattr(event, "isoformat"):
        return "<time>"
    return event


def run_both(
    settings: dict[str, Any],
    tracking_log: Lines,
    monkeypatch: pytest.MonkeyPatch,
    events: list[tuple[str, dict[str, Any], dict[str, Any]]] = EVENTS,
) -> dict[str, tuple[list[Any], list[Any]]]:
    """``{destination: (what event-tracking delivered, what we delivered)}``."""
    drive(event_tracking(settings, monkeypatch), events)
    theirs_log, theirs_dispatched = list(tracking_log.lines), list(platform.DISPATCHED)
    tracking_log.lines.clear()
    platform.DISPATCHED.clear()
    ours = load_settings(settings)
    drive(ours, events)
    ours.close()
    received = {"tracking log": (theirs_log, list(tracking_log.lines))}
    for name in ("xapi", "caliper"):
        received[name] = (
            [same_event(e) for n, e in theirs_dispatched if n == name],
            [same_event(e) for n, e in platform.DISPATCHED if n == name],
        )
    return received


@pytest.mark.usefixtures("stand_ins")
def test_event_routing_backends_routers_receive_what_they_received_from_event_tracking(
    tracking_log: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = with_event_routing_backends(edx_platform_settings())
    received = run_both(settings, tracking_log, monkeypatch)
    for name, names in (("xapi", XAPI_NAMES), ("caliper", CALIPER_NAMES)):
        theirs, ours = received[name]
        assert len(theirs) == len([e for e in EVENTS if e[0] in names])
        assert ours == theirs, name


@pytest.mark.usefixtures("stand_ins")
def test_the_tracking_log_gets_the_same_events_as_from_event_tracking(
    tracking_log: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    received = run_both(edx_platform_settings(), tracking_log, monkeypatch)
    theirs, ours = received["tracking log"]
    assert len(theirs) == len(EVENTS)
    assert [same_event(json.loads(same_line(line))) for line in ours] == [
        json.loads(same_line(line)) for line in theirs
    ]


@pytest.mark.usefixtures("stand_ins")
def test_an_event_over_max_event_size_is_dropped_as_event_tracking_dropped_it(
    tracking_log: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LegacyFieldMappingProcessor moved `data` to `event`: only the whole line can be measured
    events = [EVENTS[0], OVERSIZED, EVENTS[1]]
    theirs, ours = run_both(edx_platform_settings(), tracking_log, monkeypatch, events)[
        "tracking log"
    ]
    assert len(theirs) == 2
    assert [same_event(json.loads(line))["name"] for line in ours] == [
        json.loads(line)["name"] for line in theirs
    ]


@pytest.mark.usefixtures("stand_ins")
def test_the_tracking_log_lines_are_event_trackings_lines_with_the_id_last(
    tracking_log: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = with_event_routing_backends(edx_platform_settings())
    theirs, ours = run_both(settings, tracking_log, monkeypatch, [*EVENTS, OVERSIZED])[
        "tracking log"
    ]
    assert all(_ID_LAST.search(line) for line in ours)
    assert [same_line(line) for line in ours] == [same_line(line) for line in theirs]


def segment_view(message: dict[str, Any]) -> dict[str, Any]:
    """What Segment stores of a ``track`` message, less what differs on every send
    (message id, send times, the client library) and our deliberate differences."""
    properties = json.loads(_ISO.sub("<time>", json.dumps(message["properties"])))
    return {
        "event": message["event"],
        "userId": message.get("userId"),
        "anonymousId": message.get("anonymousId"),
        "properties": same_event(properties),
        "context": {k: v for k, v in message.get("context", {}).items() if k != "library"},
    }


@pytest.mark.usefixtures("stand_ins")
@pytest.mark.peers
def test_segment_receives_what_it_received_from_event_tracking(
    tracking_log: Lines, monkeypatch: pytest.MonkeyPatch, segment_ingest: Any
) -> None:
    from eventtracking.backends import segment as upstream_segment
    from segment import analytics

    # segment-analytics-python is `segment.analytics`; event-tracking imports `analytics`
    # (the older package's name), as edx-platform's environment provides it.
    monkeypatch.setitem(sys.modules, "analytics", analytics)
    monkeypatch.setattr(upstream_segment, "analytics", analytics)
    monkeypatch.setattr(analytics, "write_key", "platform-key")
    monkeypatch.setattr(analytics, "host", segment_ingest.url)
    monkeypatch.setattr(analytics, "sync_mode", True)
    monkeypatch.setattr(analytics, "default_client", None)
    settings = edx_platform_settings()
    segmentio = settings["EVENT_TRACKING_BACKENDS"]["segmentio"]["OPTIONS"]
    segmentio["processors"][0]["OPTIONS"]["whitelist"] = [name for name, _, _ in EVENTS]

    drive(event_tracking(settings, monkeypatch), EVENTS)
    theirs = [segment_view(m) for m in segment_ingest.messages]
    segment_ingest.reset()
    # Ours takes the write key and host from the `analytics` module at first use, as
    # event-tracking did: a key set only after loading (as a site's startup may) still works.
    monkeypatch.setattr(analytics, "write_key", None)
    ours_tracker = load_settings(settings)
    monkeypatch.setattr(analytics, "write_key", "platform-key")
    drive(ours_tracker, EVENTS)
    ours_tracker.close()
    ours = [segment_view(m) for m in segment_ingest.messages]

    assert len(theirs) == len([e for e in EVENTS if "user_id" in e[2]])  # users' events only
    assert ours == theirs
