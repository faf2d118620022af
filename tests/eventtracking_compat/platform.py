"""Small stand-ins for edx-platform's and event-routing-backends' classes that their
settings name, keeping the upstream constructor signatures.

:func:`installed` makes them importable under their upstream dotted paths, so the settings
blocks are fed to both libraries exactly as the platform writes them. What the
event-routing-backends routers would dispatch to their hosts is recorded in
:data:`DISPATCHED` instead.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eventtracking.processors.exceptions import EventEmissionExit

#: ``(backend_name, event)`` for every event an EventsRouter would dispatch, in order.
DISPATCHED: list[tuple[str | None, Any]] = []

_CONTEXT_FIELDS = ("username", "session", "ip", "agent", "host", "referer", "accept_language")


class LegacyFieldMappingProcessor:
    """edx-platform's ``track.shim`` processor: the legacy tracking-log layout (context
    fields at the top level, ``data`` as ``event``, ``timestamp`` as ``time``)."""

    def __call__(self, event: dict[str, Any]) -> None:
        context = event.get("context", {})
        if "context" in event:
            for name in _CONTEXT_FIELDS:
                self._lift(name, event)
            for name in (*_CONTEXT_FIELDS, "client_id"):
                context.pop(name, None)
        if "data" in event:
            data = event.pop("data")
            browser = context.get("event_source", "") == "browser" and isinstance(data, dict)
            event["event"] = json.dumps(data) if browser else data
        else:
            event["event"] = {}
        if "timestamp" in context:
            event["time"] = context.pop("timestamp")
        elif "timestamp" in event:
            event["time"] = event["timestamp"]
        event.pop("timestamp", None)
        self._lift("event_type", event, event.get("name", ""))
        self._lift("event_source", event, "server")
        self._lift("page", event, None)

    @staticmethod
    def _lift(name: str, event: dict[str, Any], default: Any = "") -> None:
        context = event.get("context", {})
        event[name] = context.pop(name) if name in context else default


class PrefixedEventProcessor:
    """edx-platform's processor for registered event transformers; none is registered
    here, so, as upstream then does, it leaves the event alone."""

    def __call__(self, event: dict[str, Any]) -> None:
        return None


class GoogleAnalyticsProcessor:
    """edx-platform's processor for Segment: ``label`` and ``nonInteraction``."""

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        copied = event.copy()
        course_id = event.get("context", {}).get("course_id")
        if course_id is not None:
            copied["label"] = course_id
        copied["nonInteraction"] = 1
        return copied


class EventsRouter:
    """event-routing-backends' router: ``processors`` and ``backend_name``, no backends;
    records what it would dispatch to the configured hosts."""

    def __init__(self, processors: list[Any] | None = None, backend_name: str | None = None):
        self.processors = processors if processors else []
        self.backend_name = backend_name

    def send(self, event: dict[str, Any]) -> None:
        event = event.copy()
        try:
            for processor in self.processors:
                event = processor(event) or event
        except EventEmissionExit:
            return
        DISPATCHED.append((self.backend_name, event))


class AsyncEventsRouter(EventsRouter):
    """event-routing-backends' asynchronous router (same constructor)."""


class XApiProcessor:
    """Transforms an event into a (much reduced) xAPI statement."""

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        context = event.get("context", {})
        return {
            "actor": {"account": {"name": str(context.get("user_id"))}},
            "verb": {"id": event["name"]},
            "object": {"definition": event.get("data", {})},
        }


class CaliperProcessor:
    """Transforms an event into a (much reduced) Caliper event."""

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        return {"type": "Event", "action": event["name"], "extensions": event.get("data", {})}


class CaliperEnvelopeProcessor:
    """Wraps a Caliper event in an envelope naming the sensor."""

    def __init__(self, sensor_id: str) -> None:
        self.sensor_id = sensor_id

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        return {"sensor": self.sensor_id, "data": [event]}


MODULES: dict[str, dict[str, Any]] = {
    "common.djangoapps.track.shim": {
        "LegacyFieldMappingProcessor": LegacyFieldMappingProcessor,
        "PrefixedEventProcessor": PrefixedEventProcessor,
        "GoogleAnalyticsProcessor": GoogleAnalyticsProcessor,
    },
    "event_routing_backends.backends.events_router": {"EventsRouter": EventsRouter},
    "event_routing_backends.backends.async_events_router": {"AsyncEventsRouter": AsyncEventsRouter},
    "event_routing_backends.processors.xapi.transformer_processor": {
        "XApiProcessor": XApiProcessor
    },
    "event_routing_backends.processors.caliper.transformer_processor": {
        "CaliperProcessor": CaliperProcessor
    },
    "event_routing_backends.processors.caliper.envelope_processor": {
        "CaliperEnvelopeProcessor": CaliperEnvelopeProcessor
    },
}


@contextmanager
def installed() -> Iterator[None]:
    """Make every stand-in importable under its upstream dotted path."""
    added: list[str] = []
    for dotted, attributes in MODULES.items():
        parts = dotted.split(".")
        for end in range(1, len(parts) + 1):
            name = ".".join(parts[:end])
            if name not in sys.modules:
                sys.modules[name] = types.ModuleType(name)
                added.append(name)
                if end > 1:
                    setattr(
                        sys.modules[".".join(parts[: end - 1])], parts[end - 1], sys.modules[name]
                    )
        for attribute, value in attributes.items():
            setattr(sys.modules[dotted], attribute, value)
    try:
        yield
    finally:
        for name in reversed(added):
            sys.modules.pop(name, None)
        DISPATCHED.clear()
