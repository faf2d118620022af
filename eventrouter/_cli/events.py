"""Reading ``route``'s input: JSON lines, each an event, bounded in length.

A line is ``{"name": ..., "data"?: {...}, "context"?: {...}, "timestamp"?: ISO 8601 or
seconds, "id"?: str}``; what is wrong with a line is said without quoting it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from eventrouter.errors import EventRouterError

MAX_LINE_BYTES = 16 * 1024 * 1024
"""The longest JSON line ``route`` reads; a longer one is skipped (and read past)."""


class Malformed(ValueError):
    """A line that is not an event; the message says why, without quoting the line."""


def parse_line(text: str) -> dict[str, Any]:
    """The event envelope a line describes.

    Raises:
        Malformed: the line is not a JSON object with a valid ``name`` (and optional
            ``data``, ``context``, ``timestamp``, ``id``).
    """
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Malformed(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise Malformed("nested too deeply to read") from None
    if not isinstance(record, dict):
        raise Malformed("expected a JSON object with at least a `name`")
    name = record.get("name")
    if not isinstance(name, str) or not name:
        raise Malformed("`name` is missing or not a non-empty string")
    data = record.get("data")
    if data is not None and not isinstance(data, dict):
        raise Malformed("`data` must be a JSON object")
    context = record.get("context")
    if context is not None and not isinstance(context, dict):
        raise Malformed("`context` must be a JSON object")
    timestamp = _timestamp(record.get("timestamp"))
    event_id = record.get("id")
    if event_id is not None and not isinstance(event_id, str):
        raise Malformed("`id` must be a string")
    from eventrouter.event import build_event

    return build_event(name, data, context=context, timestamp=timestamp, event_id=event_id)


def _timestamp(value: Any) -> dt.datetime | None:
    """An aware UTC datetime from an ISO 8601 string (naive: UTC) or seconds since 1970."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Malformed("`timestamp` must be an ISO 8601 string or a number of seconds")
    try:
        if isinstance(value, str):
            parsed = dt.datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return parsed.astimezone(dt.UTC)  # out of range in UTC: refused here, not later
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise Malformed(
            "`timestamp` is not a valid ISO 8601 date and time between the years 1 and 9999 in UTC"
        ) from None


def check_events_file(path: str) -> None:
    """Refuse a directory or a device (``/dev/zero`` never ends, and has no lines); a FIFO
    is read like standard input."""
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise EventRouterError(f"{path}: is a directory: give a JSON-lines file, or '-'")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise EventRouterError(
            f"{path}: is a device: give a JSON-lines file, or '-' to read standard input"
        )


@dataclass(frozen=True)
class TooLong:
    """Stands for a line longer than :data:`MAX_LINE_BYTES` (read past, not kept)."""

    size: int


def lines(stream: IO[bytes]) -> Iterator[bytes | TooLong]:
    """The lines of ``stream``; a line longer than :data:`MAX_LINE_BYTES` is read past in
    pieces and given as :class:`TooLong`, so that no line needs more memory than that."""
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) <= MAX_LINE_BYTES:
            yield line
            continue
        size = len(line)
        while line and not line.endswith(b"\n"):
            line = stream.readline(MAX_LINE_BYTES)
            size += len(line)
        yield TooLong(size)
