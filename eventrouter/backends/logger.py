"""JSON log lines: one event per line, written with python-json-logger.

Since 0.1.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from eventrouter import _fork
from eventrouter.encoding import dumps
from eventrouter.errors import DeliveryError, OptionError, OptionTypeError
from eventrouter.typing import Event

__all__ = ["EventJsonFormatter", "LoggerBackend", "truncate_event"]

log = logging.getLogger(__name__)

_RECORD_NAME = "eventrouter.events"
_TRUNCATED_KEY = "truncated"
_LINE_ATTRIBUTE = "_eventrouter_line"
"""The record attribute holding ``(formatter, line)`` once an :class:`EventJsonFormatter`
formatted it. python-json-logger leaves attributes starting with ``_`` out of its output."""


def _escaped_length(text: str) -> int:
    # ``text`` is ASCII JSON: only quotes and backslashes grow when embedded in a string.
    return len(text) + text.count('"') + text.count("\\")


def truncate_event(event: Mapping[str, Any], size: int, limit: int) -> dict[str, Any]:
    """Return a copy of ``event`` whose line fits ``limit`` characters, with ``data`` truncated.

    ``data`` becomes a string: the start of its JSON encoding, as much as fits. The key
    ``truncated`` is added: ``{"original_size": size, "max_event_size": limit}``. If the rest
    of the envelope alone is over the limit, ``data`` is ``""`` and the line stays longer than
    ``limit``: the event is still written, never dropped.

    Args:
        event: the event envelope (not modified).
        size: the length of the event's full JSON line.
        limit: the maximum line length.

    Since 0.1.
    """
    out = dict(event)
    out["data"] = ""
    out[_TRUNCATED_KEY] = {"original_size": size, "max_event_size": limit}
    budget = limit - len(dumps(out))
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


class EventJsonFormatter(JsonFormatter):
    """A python-json-logger formatter that writes a logged event dict as one JSON line.

    The line's top-level keys are the envelope's (``id``, ``name``, ``timestamp``, ``data``,
    ``context``) and nothing else, encoded by :mod:`eventrouter.encoding`. Lines longer than
    ``max_event_size`` characters have their ``data`` truncated (see :func:`truncate_event`).
    Apps that log events to their own handlers (``logger_name``) can use it in their logging
    configuration too.

    Args:
        max_event_size: the maximum line length in characters (the line is ASCII, so also
            bytes), not counting the newline; ``None`` for no limit.

    Since 0.1.
    """

    def __init__(self, max_event_size: int | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", [])
        super().__init__(json_serializer=_serialize, **kwargs)
        self.max_event_size = max_event_size
        self._truncated = _Counter()

    @property
    def truncated(self) -> int:
        """How many lines this formatter truncated. Since 0.1."""
        return self._truncated.value

    def format(self, record: logging.LogRecord) -> str:
        """Return the record's JSON line, formatting it only once per record.

        Handlers may format a record twice (``RotatingFileHandler`` does, to decide on a
        rollover); the line is kept on the record, so the work and the truncation count are
        not repeated.
        """
        memo = record.__dict__.get(_LINE_ATTRIBUTE)
        if memo is not None and memo[0] is self:
            line: str = memo[1]
            return line
        line = super().format(record)
        record.__dict__[_LINE_ATTRIBUTE] = (self, line)
        return line

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        """Encode ``log_data``, truncating ``data`` when the line is over the limit."""
        line: str = self.prefix + dumps(log_data)
        limit = self.max_event_size
        if limit is not None and len(line) > limit:
            self._truncated.increment()
            line = self.prefix + dumps(truncate_event(log_data, len(line), limit))
        return line


def _serialize(log_data: Any, **_: Any) -> str:
    return dumps(log_data)


class _EventMessage(dict[str, Any]):
    """The record message in ``logger_name`` mode.

    A dict, so python-json-logger formatters put the envelope's keys at the top level; its
    ``str`` is the JSON line, so a plain ``%(message)s`` formatter writes the same line
    event-tracking wrote.
    """

    __slots__ = ("line",)

    def __init__(self, event: Mapping[str, Any], line: str) -> None:
        super().__init__(event)
        self.line = line

    def __str__(self) -> str:
        return self.line


class _EventRecord(logging.LogRecord):
    """The record the backend hands its own handler, with the JSON line already formatted.

    A full ``LogRecord`` takes longer to build (clock, thread, process...) than the line
    takes to write; the handler and :class:`EventJsonFormatter` only need the message and
    the line, so ``LogRecord.__init__`` is deliberately not called.
    """

    def __init__(self, event: Event, line: str, formatter: EventJsonFormatter, level: int) -> None:
        self.__dict__.update(
            name=_RECORD_NAME,
            msg=event,
            args=(),
            levelno=level,
            exc_info=None,
            exc_text=None,
            stack_info=None,
        )
        self.__dict__[_LINE_ATTRIBUTE] = (formatter, line)


class _FileHandlerMixin(logging.Handler):
    """Turn write failures into :class:`DeliveryError` instead of a line on stderr."""

    def handleError(self, record: logging.LogRecord) -> None:
        where = getattr(self, "baseFilename", "the log file")
        raise DeliveryError(f"JSON log backend: could not write the event to {where!r}")


class _FileHandler(_FileHandlerMixin, logging.FileHandler):
    pass


class _WatchedFileHandler(_FileHandlerMixin, logging.handlers.WatchedFileHandler):
    pass


class _RotatingFileHandler(_FileHandlerMixin, logging.handlers.RotatingFileHandler):
    pass


class _TimedRotatingFileHandler(_FileHandlerMixin, logging.handlers.TimedRotatingFileHandler):
    pass


def _level(level: int | str) -> int:
    if isinstance(level, bool):
        raise OptionTypeError("level", "level must be a logging level name or number")
    if isinstance(level, int):
        return level
    levels = logging.getLevelNamesMapping()
    try:
        return levels[level.upper()]
    except KeyError:
        known = ", ".join(sorted(levels))
        raise OptionError("level", f"unknown logging level {level!r}; use one of {known}") from None


class LoggerBackend:
    """Write each event as one JSON line, to a file of its own or to a named logger.

    Give ``path`` or ``logger_name``. With ``path``, lines go to that file (its folders are
    created), through a handler of the backend's own that no other logger sees, formatted
    by :class:`EventJsonFormatter`; ``max_bytes`` or ``when`` turn on size- or time-based
    rotation (:mod:`logging.handlers`). With ``logger_name``, records go to that logger and
    the app's logging configuration decides where: the record's message is the JSON line
    for plain formatters and the envelope dict for python-json-logger ones. If that logger
    is not enabled for ``level``, events are counted in ``stats()["suppressed"]`` and a
    warning is logged once.

    Each line is the envelope (``id``, ``name``, ``timestamp``, ``data``, ``context``) encoded
    by :mod:`eventrouter.encoding`. A line over ``max_event_size`` is written with its
    ``data`` truncated and marked (:func:`truncate_event`) and counted in ``stats()``.

    Args:
        path: the file to write; exclusive with ``logger_name``.
        logger_name: the logger to log to (``""`` is the root logger); exclusive with
            ``path``.
        level: the level of the records (name or number), default ``"INFO"``.
        max_event_size: the maximum line length in characters; ``None`` (default) for no limit.
        max_bytes: rotate the file when it would grow past this size (``RotatingFileHandler``).
        backup_count: how many rotated files to keep (with ``max_bytes`` or ``when``).
        when: rotate on time (``"S"``, ``"M"``, ``"H"``, ``"D"``, ``"midnight"``, ``"W0"``-``"W6"``;
            ``TimedRotatingFileHandler``); exclusive with ``max_bytes``.
        interval: how many ``when`` units between rotations.
        utc: use UTC for time-based rotation (default ``True``).
        watch: reopen the file when an external tool (logrotate) moved it
            (``WatchedFileHandler``); exclusive with the rotation options.

    Raises:
        ValueError: neither or both of ``path`` and ``logger_name`` are given, or the
            options do not fit together.

    Since 0.1.
    """

    def __init__(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        logger_name: str | None = None,
        level: int | str = "INFO",
        max_event_size: int | None = None,
        max_bytes: int = 0,
        backup_count: int = 0,
        when: str | None = None,
        interval: int = 1,
        utc: bool = True,
        watch: bool = False,
    ) -> None:
        if path is not None and logger_name is not None:
            raise OptionError("logger_name", "give either path or logger_name, not both")
        if path is None and logger_name is None:
            raise ValueError(
                "give path (the file to write) or logger_name (a logger your logging "
                "configuration sends somewhere)"
            )
        if max_event_size is not None and max_event_size < 1:
            raise OptionError(
                "max_event_size", "max_event_size must be a positive number of characters or None"
            )
        if path is None and (max_bytes or when or backup_count or watch):
            raise ValueError("max_bytes, backup_count, when and watch need a path")
        if sum((bool(max_bytes), when is not None, watch)) > 1:
            raise ValueError("max_bytes, when and watch are exclusive: choose one")
        self.level = _level(level)
        self.max_event_size = max_event_size
        self._truncated = _Counter()
        self._suppressed = _Counter()
        self._handler: logging.Handler | None = None
        self._logger: logging.Logger | None = None
        if path is not None:
            self.path: Path | None = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handler = self._make_handler(
                self.path,
                max_bytes=max_bytes,
                backup_count=backup_count,
                when=when,
                interval=interval,
                utc=utc,
                watch=watch,
            )
            self._formatter = EventJsonFormatter(max_event_size=max_event_size)
            self._handler.setFormatter(self._formatter)
        else:
            self.path = None
            self._logger = logging.getLogger(logger_name)

    @staticmethod
    def _make_handler(
        path: Path,
        *,
        max_bytes: int,
        backup_count: int,
        when: str | None,
        interval: int,
        utc: bool,
        watch: bool,
    ) -> logging.Handler:
        if max_bytes:
            return _RotatingFileHandler(
                path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8", delay=True
            )
        if when is not None:
            return _TimedRotatingFileHandler(
                path,
                when=when,
                interval=interval,
                backupCount=backup_count,
                utc=utc,
                encoding="utf-8",
                delay=True,
            )
        if watch:
            return _WatchedFileHandler(path, encoding="utf-8", delay=True)
        return _FileHandler(path, encoding="utf-8", delay=True)

    def send(self, event: Event) -> None:
        """Write ``event`` as one JSON line.

        Raises:
            DeliveryError: the file could not be written (``path`` mode).
        """
        line = dumps(event)
        limit = self.max_event_size
        if limit is not None and len(line) > limit:
            self._truncated.increment()
            event = truncate_event(event, len(line), limit)
            line = dumps(event)
        handler = self._handler
        if handler is not None:
            try:
                handler.handle(_EventRecord(event, line, self._formatter, self.level))
            except OSError as exc:  # opening the file (the handler reports write errors)
                raise DeliveryError(
                    f"JSON log backend: could not open {str(self.path)!r} ({type(exc).__name__})"
                ) from exc
            return
        logger = self._logger
        assert logger is not None
        if not logger.isEnabledFor(self.level):
            if self._suppressed.increment() == 1:
                log.warning(
                    "JSON log backend: logger %r is not enabled for %s, so events are not "
                    "written; they are counted in stats()['suppressed'] (logged once)",
                    logger.name,
                    logging.getLevelName(self.level),
                )
            return
        record = logger.makeRecord(
            logger.name, self.level, "", 0, _EventMessage(event, line), (), None
        )
        logger.handle(record)

    def flush(self, timeout: float | None = None) -> None:
        """Flush the file (``path`` mode); the app's handlers are the app's to flush."""
        if self._handler is not None:
            self._handler.flush()

    def close(self) -> None:
        """Close the file (``path`` mode)."""
        if self._handler is not None:
            self._handler.close()

    def stats(self) -> dict[str, int]:
        """Counters: ``truncated`` (events written with their ``data`` cut) and
        ``suppressed`` (events the logger was not enabled for, in ``logger_name`` mode)."""
        return {"truncated": self._truncated.value, "suppressed": self._suppressed.value}
