"""The Segment ``track`` call an event becomes, as event-tracking's Segment backend made it.

Needs nothing beyond eventrouter itself: the arguments are checked and turned into a message
by segment-analytics-python's ``Client.track`` in :mod:`eventrouter.backends.segment`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlunsplit

from eventrouter.encoding import dumps, parse_timestamp, to_jsonable
from eventrouter.typing import Event

__all__ = ["to_segment_call"]


def _segment_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """Segment's ``context`` from ours: ``ip``, ``userAgent``, ``page`` and Google
    Analytics' ``clientId``."""
    out: dict[str, Any] = {}
    client_id = context.get("client_id")
    if client_id is not None:
        out["Google Analytics"] = {"clientId": client_id}
    ip = context.get("ip")
    if ip is not None:
        out["ip"] = ip
    agent = context.get("agent")
    if agent is not None:
        out["userAgent"] = agent
    path = context.get("path")
    referer = context.get("referer")
    page = context.get("page")
    if path and not page:
        host = context.get("host")
        if host:
            page = urlunsplit(("https", str(host), str(path), "", ""))
    if path is not None or referer is not None or page is not None:
        page_info: dict[str, Any] = {}
        if path is not None:
            page_info["path"] = path
        if referer is not None:
            page_info["referrer"] = referer
        if page is not None:
            page_info["url"] = page
        out["page"] = page_info
    return out


def _id_str(value: Any) -> str | None:
    """An id as the string Segment gets; ``None`` (and ``""``) mean there is none."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else dumps(value).strip('"')


def to_segment_call(event: Event, *, anonymous: bool = False) -> dict[str, Any] | str:
    """Map ``event`` to the keyword arguments of ``Client.track``, or say why it cannot be.

    Returns the arguments (``user_id``, ``anonymous_id``, ``event``, ``properties``,
    ``context``, ``timestamp``, ``message_id``) or, for an event that must be skipped, the
    reason as a string. ``properties`` is the whole event as JSON data
    (:mod:`eventrouter.encoding`).

    Args:
        event: the event envelope (not modified).
        anonymous: also send events without ``context.user_id``, keyed by
            ``context.anonymous_id`` or ``context.session``, and give every message that
            ``anonymousId``. Without it (event-tracking's behaviour) only events with a user
            are sent, and never with an ``anonymousId``.
    """
    name = event.get("name")
    if not isinstance(name, str) or not name:
        return "the event has no name"
    context = event.get("context")
    if not isinstance(context, Mapping):
        context = {}
    user_id = _id_str(context.get("user_id"))
    anonymous_id = None
    if anonymous:
        anonymous_id = _id_str(context.get("anonymous_id")) or _id_str(context.get("session"))
        if not user_id and not anonymous_id:
            return "the event has no context.user_id, context.anonymous_id or context.session"
    elif not user_id:
        return "the event has no context.user_id (set `anonymous: true` to send such events)"
    message_id = event.get("id")
    properties: dict[str, Any] = to_jsonable(event)
    json_context = properties.get("context")
    return {
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "event": name,
        "properties": properties,
        "context": _segment_context(json_context if isinstance(json_context, dict) else {}),
        "timestamp": parse_timestamp(event.get("timestamp")),
        "message_id": None if message_id is None else str(message_id),
    }
