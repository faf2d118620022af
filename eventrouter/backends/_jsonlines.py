"""The JSON-log line: python-json-logger formatters writing events by eventrouter's encoding.

:class:`EventOrjsonFormatter` (python-json-logger's ``OrjsonFormatter``, used when ``orjson``
is installed) and :class:`EventJsonFormatter` (its ``JsonFormatter``) write the same bytes:
the rules of :mod:`eventrouter.encoding`, given to the library as its serializer and its
``json_default`` hook. :func:`truncate_event` fits an event into a line length. The public
names are re-exported by :mod:`eventrouter.backends.logger`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pythonjsonlogger.core import BaseJsonFormatter
from pythonjsonlogger.json import JsonFormatter

from eventrouter import _fork, encoding
from eventrouter.encoding import dumps, json_default

__all__ = [
    "EventJsonFormatter",
    "EventOrjsonFormatter",
    "LineFormat",
    "event_formatter",
    "truncate_event",
]

LineFormat = Literal["eventrouter", "event-tracking"]

_TRUNCATED_KEY = "truncated"
_LINE_ATTRIBUTE = "_eventrouter_line"
"""The record attribute holding ``(formatter, line)`` once an event formatter formatted it.
python-json-logger leaves attributes starting with ``_`` out of its output."""
_LINE_FORMATS = ("eventrouter", "event-tracking")


def _escaped_length(text: str) -> int:
    # ``text`` is ASCII JSON: only quotes and backslashes grow when embedded in a string.
    return len(text) + text.count('"') + text.count("\\")


def truncate_event(
    event: Mapping[str, Any],
    size: int,
    limit: int,
    encode: Callable[[Any], str] = dumps,
) -> dict[str, Any]:
    """Return a copy of ``event`` whose line is as long as fits ``limit``, ``data`` truncated.

    ``data`` becomes a string: the start of its JSON encoding, as much as fits. The key
    ``truncated`` is added: ``{"original_size": size, "max_event_size": limit}``. If the rest
    of the envelope alone is over the limit, ``data`` is ``""`` and the line is still longer
    than ``limit`` (:class:`~eventrouter.backends.logger.LoggerBackend` then drops it).

    Args:
        event: the event envelope (not modified).
        size: the length of the event's full JSON line.
        limit: the maximum line length.
        encode: how a line is made from an event (default: :func:`~eventrouter.encoding.dumps`).
    """
    out = dict(event)
    out["data"] = ""
    out[_TRUNCATED_KEY] = {"original_size": size, "max_event_size": limit}
    budget = limit - len(encode(out))
    if budget > 0:
        text = dumps(event.get("data"))
        low, high = 0, min(budget, len(text))  # the longest prefix whose escape fits
        while low < high:
            middle = (low + high + 1) // 2
            if _escaped_length(text[:middle]) <= budget:
                low = middle
            else:
                high = middle - 1
        out["data"] = text[:low]
    return out


class _Counter:
    """A thread-safe counter for the rare paths (oversize or suppressed events)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0
        _fork.register(self)

    def increment(self) -> int:
        """Add one; return the new value."""
        with self._lock:
            self.value += 1
            return self.value


class _EventLines:
    """What both event formatters add to python-json-logger's: event lines and their limit."""

    prefix: str
    max_event_size: int | None
    line_format: LineFormat
    _truncated: _Counter
    jsonify_log_record: Callable[[dict[str, Any]], str]

    def _setup(self, max_event_size: int | None, line_format: LineFormat) -> None:
        if line_format not in _LINE_FORMATS:
            raise ValueError(f"line_format must be one of {_LINE_FORMATS}, not {line_format!r}")
        self.max_event_size = max_event_size
        self.line_format = line_format
        self._truncated = _Counter()

    @property
    def truncated(self) -> int:
        """How many lines this formatter truncated (when it has a ``max_event_size``)."""
        return self._truncated.value

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        """In the ``event-tracking`` line format, move ``id`` after the other keys."""
        if self.line_format == "event-tracking" and "id" in log_data:
            moved = {key: value for key, value in log_data.items() if key != "id"}
            moved["id"] = log_data["id"]
            return moved
        return log_data

    def event_line(self, event: Mapping[str, Any]) -> str:
        """The event's JSON line (no newline), not limited in size.

        The event is the log data: these are the last two steps of the formatter's
        ``format()``, ``process_log_record`` and then python-json-logger's own
        ``serialize_log_record`` (``prefix`` + ``jsonify_log_record``, which calls the
        formatter's serializer with its ``json_default``).
        """
        return BaseJsonFormatter.serialize_log_record(self, self.process_log_record(event))  # type: ignore[arg-type]

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        """Encode a record's data; over ``max_event_size``, with ``data`` truncated."""
        line = self.prefix + self.jsonify_log_record(log_data)
        limit = self.max_event_size
        if limit is not None and len(line) > limit:
            self._truncated.increment()
            line = self.event_line(truncate_event(log_data, len(line), limit, self.event_line))
        return line

    def _format_once(self, record: logging.LogRecord, format: Callable[[], str]) -> str:
        memo = record.__dict__.get(_LINE_ATTRIBUTE)
        if memo is not None and memo[0] is self:
            line: str = memo[1]
            return line
        line = format()
        record.__dict__[_LINE_ATTRIBUTE] = (self, line)
        return line


_last_datetime: list[tuple[object, Any]] = [(None, None)]
"""The last datetime :func:`_line_default` encoded and its text, as one tuple (swapped whole,
so threads never see one's datetime with another's text)."""


def _line_default(value: object) -> Any:
    """:func:`~eventrouter.encoding.json_default`, remembering the last datetime it encoded.

    The JSON logs of one tree write the same timestamp object (a router's copy shares
    immutable values), so the second line of an event reuses the first one's text.
    """
    last = _last_datetime[0]
    if value is last[0]:
        return last[1]
    encoded = json_default(value)
    if type(value) is dt.datetime:
        _last_datetime[0] = (value, encoded)
    return encoded


def _stdlib_line(log_data: Any, default: Callable[[Any], Any] | None, spaced: bool) -> str:
    """``log_data`` as one line by the standard library, ``default`` encoding what it does not
    know; what the encoder rejects even so (cycles, odd keys, NaN) by eventrouter's rules."""
    if default is None or default is json_default or default is _line_default:
        return dumps(log_data, spaced=spaced)
    try:
        return json.dumps(
            log_data,
            default=default,
            ensure_ascii=True,
            allow_nan=False,
            separators=(", ", ": ") if spaced else (",", ":"),
        )
    except (TypeError, ValueError, RecursionError):
        return dumps(log_data, spaced=spaced)


def _stdlib_serializer(spaced: bool) -> Callable[..., str]:
    """The ``json_serializer`` given to ``JsonFormatter``: it is called with the formatter's
    ``json_default`` (honoured) and its ``cls``/``indent``/``ensure_ascii`` (not: a line is
    always one line of ASCII)."""

    def serialize(log_data: Any, *, default: Callable[[Any], Any] | None = None, **_: Any) -> str:
        return _stdlib_line(log_data, default, spaced)

    return serialize


class EventJsonFormatter(_EventLines, JsonFormatter):
    """python-json-logger's ``JsonFormatter`` writing events by eventrouter's encoding.

    The line's top-level keys are the envelope's (``id``, ``name``, ``timestamp``, ``data``,
    ``context``). Apps that log events to their own handlers (``logger_name``) can use it
    in their logging configuration too; records are formatted once each, even by handlers
    that format twice (size rotation).

    Args:
        max_event_size: lines longer than this many characters (the line is ASCII, so
            also bytes), not counting the newline, have their ``data`` truncated (see
            :func:`truncate_event`); ``None`` for no limit.
        line_format: ``"eventrouter"`` (compact separators, the envelope's key order) or
            ``"event-tracking"`` (``", "`` and ``": "`` separators and ``id`` last, as
            event-tracking's ``LoggerBackend`` wrote lines).
        kwargs: passed on to ``JsonFormatter``.
    """

    def __init__(
        self,
        max_event_size: int | None = None,
        line_format: LineFormat = "eventrouter",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("fmt", [])
        super().__init__(
            json_serializer=_stdlib_serializer(line_format == "event-tracking"),
            json_default=json_default,
            **kwargs,
        )
        self._setup(max_event_size, line_format)

    def format(self, record: logging.LogRecord) -> str:
        """Return the record's JSON line, formatting each record once."""
        return self._format_once(record, lambda: JsonFormatter.format(self, record))


if encoding.orjson is not None:
    from pythonjsonlogger.orjson import OrjsonFormatter

    _orjson_dumps = encoding.orjson.dumps

    class EventOrjsonFormatter(_EventLines, OrjsonFormatter):
        """python-json-logger's ``OrjsonFormatter`` writing events by eventrouter's encoding.

        The fast path, used when ``orjson`` is installed: the same lines, byte for byte, as
        :class:`EventJsonFormatter` (orjson's spellings that differ are redone), with
        the same arguments, except that it writes only the ``"eventrouter"`` line format.
        """

        def __init__(
            self,
            max_event_size: int | None = None,
            line_format: LineFormat = "eventrouter",
            **kwargs: Any,
        ) -> None:
            if line_format != "eventrouter":
                raise ValueError("EventOrjsonFormatter writes only the 'eventrouter' format")
            kwargs.setdefault("fmt", [])
            super().__init__(json_default=_line_default, **kwargs)
            self.orjson_options: int = encoding.ORJSON_OPTIONS
            """The ``option`` flags of ``orjson.dumps``: those that keep eventrouter's rules."""
            self._setup(max_event_size, line_format)

        def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
            """Encode with orjson and the formatter's ``json_default``; never raises.

            ``orjson_options`` keep eventrouter's rules (datetimes go to ``json_default``);
            a line orjson spells unlike the standard library is redone by the standard
            library, with the same ``json_default``.
            """
            default = self.json_default
            try:
                raw = _orjson_dumps(log_data, default=default, option=self.orjson_options)
            except TypeError:  # orjson.JSONEncodeError: cycles, odd keys, big integers
                return _stdlib_line(log_data, default, False)
            return encoding._finish_orjson(
                raw, log_data, lambda value: _stdlib_line(value, default, False)
            )

        def format(self, record: logging.LogRecord) -> str:
            """Return the record's JSON line, formatting each record once."""
            return self._format_once(record, lambda: OrjsonFormatter.format(self, record))

else:
    EventOrjsonFormatter = None  # type: ignore[assignment,misc]


def event_formatter(
    max_event_size: int | None = None, line_format: LineFormat = "eventrouter"
) -> _EventLines:
    """The fastest event formatter for ``line_format``: orjson's when it is installed.

    Args:
        max_event_size: see :class:`EventJsonFormatter`.
        line_format: see :class:`EventJsonFormatter`.
    """
    if EventOrjsonFormatter is not None and line_format == "eventrouter":
        return EventOrjsonFormatter(max_event_size, line_format)
    return EventJsonFormatter(max_event_size, line_format)
