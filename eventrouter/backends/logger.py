"""JSON log lines: one event per line, formatted by python-json-logger.

Every line is produced by a python-json-logger formatter: :class:`EventOrjsonFormatter`
(its ``OrjsonFormatter``) when ``orjson`` is installed, else :class:`EventJsonFormatter`
(its ``JsonFormatter``), both serializing with the rules of :mod:`eventrouter.encoding`, so
the two write the same bytes (the formatters live in
:mod:`eventrouter.backends._jsonlines`). Lines go to a file of the backend's own (written in
batches by :class:`~eventrouter.backends._linefile.LineFile`) or, as log records, to a named
logger.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from eventrouter import signals as _signals
from eventrouter.backends._jsonlines import (
    EventJsonFormatter,
    EventOrjsonFormatter,
    LineFormat,
    _Counter,
    event_formatter,
    truncate_event,
)
from eventrouter.backends._linefile import LineFile
from eventrouter.deadletter import DeadLetterFile
from eventrouter.errors import DeliveryError, OptionError, OptionTypeError
from eventrouter.typing import Event

__all__ = [
    "EventJsonFormatter",
    "EventOrjsonFormatter",
    "LineFormat",
    "LoggerBackend",
    "event_formatter",
    "truncate_event",
]

log = logging.getLogger(__name__)

Oversize = Literal["truncate", "drop"]

_RECORD_NAME = "eventrouter.events"
_LINE_FORMATS = ("eventrouter", "event-tracking")
_OVERSIZE = ("truncate", "drop")


class _EventMessage(dict[str, Any]):
    """The record message in ``logger_name`` mode.

    A dict, so python-json-logger formatters put the envelope's keys at the top level; its
    ``str`` is the JSON line, so a plain ``%(message)s`` formatter writes the line itself.
    """

    __slots__ = ("line",)

    def __init__(self, event: Mapping[str, Any], line: str) -> None:
        super().__init__(event)
        self.line = line

    def __str__(self) -> str:
        return self.line


class _LineRecord(logging.LogRecord):
    """A record carrying a formatted line, for the time-rotating handler.

    A full ``LogRecord`` takes longer to build (clock, thread, process...) than the line
    takes to write, so ``LogRecord.__init__`` is deliberately not called.
    """

    def __init__(self, line: str, level: int) -> None:
        self.__dict__.update(
            name=_RECORD_NAME,
            msg=line,
            args=(),
            levelno=level,
            exc_info=None,
            exc_text=None,
            stack_info=None,
        )


class _Preformatted(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: str = record.msg
        return line


class _TimedRotatingFileHandler(logging.handlers.TimedRotatingFileHandler):
    """Turn write failures into :class:`DeliveryError` instead of a line on stderr."""

    def handleError(self, record: logging.LogRecord) -> None:
        raise DeliveryError(f"JSON log backend: could not write to {self.baseFilename!r}")


class _TimedFile:
    """Time-based rotation through :class:`logging.handlers.TimedRotatingFileHandler`.

    The handler writes each line to the OS as it comes (its flush per record).
    """

    def __init__(self, handler: logging.Handler, level: int) -> None:
        handler.setFormatter(_Preformatted())
        self.handler = handler
        self.level = level
        self.lines = 0
        self.lost = 0
        self.write_errors = 0

    def write_line(self, line: str) -> None:
        self.write([line])

    def write(self, lines: list[str]) -> None:
        for line in lines:
            try:
                self.handler.handle(_LineRecord(line, self.level))
            except OSError as exc:  # opening the file (the handler reports write errors)
                where = getattr(self.handler, "baseFilename", "")
                raise DeliveryError(
                    f"JSON log backend: could not open {where!r} ({type(exc).__name__})"
                ) from exc
            self.lines += 1

    def flush(self) -> bool:
        self.handler.flush()
        return True

    def close(self) -> bool:
        self.handler.close()
        return True


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
    created) and no logger sees them. A line :meth:`send` accepted is handed to the
    operating system (where a crash of the process no longer loses it) by :meth:`flush`,
    :meth:`close`, interpreter exit, and otherwise within ``flush_interval`` seconds.
    ``max_bytes`` rotates the file at a size, ``when`` at times, ``watch`` follows a file
    moved by logrotate. With ``logger_name``, records go to that logger and the app's
    logging configuration decides where: the record's message is the JSON line for plain
    formatters and the envelope dict for python-json-logger ones (in the ``event-tracking``
    line format, the line only, as event-tracking logged it). If that logger is not enabled
    for ``level``, events are counted in ``stats()["suppressed"]`` and a warning is logged
    once.

    Each line is the envelope (``id``, ``name``, ``timestamp``, ``data``, ``context``),
    made by :func:`event_formatter`. ``max_event_size`` bounds the whole line: a longer
    event is written with its ``data`` truncated and marked (``oversize="truncate"``, see
    :func:`truncate_event`) when that makes it fit, and is otherwise dropped
    (``oversize="drop"`` drops every longer event); dropped events are counted in
    ``stats()["dropped"]``, written to ``dead_letter`` when one is given, and the first one
    is logged with its name and id. In the ``event-tracking`` line format the length is
    measured as event-tracking measured it, without the ``, "id": ...`` appended last, so a
    migrated logger keeps and drops the same events event-tracking did.

    Args:
        path: the file to write; exclusive with ``logger_name``.
        logger_name: the logger to log to (``""`` is the root logger); exclusive with
            ``path``.
        level: the level of the records (name or number), default ``"INFO"``.
        max_event_size: the maximum line length in characters, newline not counted;
            ``None`` (default) for no limit.
        oversize: ``"truncate"`` (default) or ``"drop"``: what happens to a longer event.
        line_format: ``"eventrouter"`` (default: compact, the envelope's key order) or
            ``"event-tracking"`` (the keys, order and separators event-tracking's
            ``LoggerBackend`` wrote, with ``id`` last, not counted by ``max_event_size``).
        max_bytes: rotate the file before it would grow past this size.
        backup_count: how many rotated files to keep (with ``max_bytes`` or ``when``);
            with ``max_bytes`` and no backups the file does not rotate.
        when: rotate on time (``"S"``, ``"M"``, ``"H"``, ``"D"``, ``"midnight"``, ``"W0"``-``"W6"``;
            ``TimedRotatingFileHandler``, which writes each line at once); exclusive with
            ``max_bytes``.
        interval: how many ``when`` units between rotations.
        utc: use UTC for time-based rotation (default ``True``).
        watch: reopen the file when an external tool (logrotate) moved it; exclusive with
            the rotation options.
        flush_interval: the longest time in seconds an accepted line waits in memory before
            it is written to the OS (default 1.0); 0 writes every line at once.
        dead_letter: a :class:`~eventrouter.deadletter.DeadLetterFile` (or its path) for
            dropped oversize events.

    Raises:
        ValueError: neither or both of ``path`` and ``logger_name`` are given, or the
            options do not fit together.
    """

    def __init__(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        logger_name: str | None = None,
        level: int | str = "INFO",
        max_event_size: int | None = None,
        oversize: Oversize = "truncate",
        line_format: LineFormat = "eventrouter",
        max_bytes: int = 0,
        backup_count: int = 0,
        when: str | None = None,
        interval: int = 1,
        utc: bool = True,
        watch: bool = False,
        flush_interval: float = 1.0,
        dead_letter: DeadLetterFile | str | os.PathLike[str] | None = None,
    ) -> None:
        if path is not None and logger_name is not None:
            raise OptionError("logger_name", "give either path or logger_name, not both")
        if path is None and logger_name is None:
            raise ValueError(
                "give path (the file to write) or logger_name (a logger your logging "
                "configuration sends somewhere)"
            )
        if path is not None and not os.fspath(path).strip():
            raise OptionError("path", "path is empty: give the file to write")
        if max_event_size is not None and max_event_size < 1:
            raise OptionError(
                "max_event_size", "max_event_size must be a positive number of characters or None"
            )
        if oversize not in _OVERSIZE:
            raise OptionError(
                "oversize", f"oversize must be 'truncate' or 'drop', not {oversize!r}"
            )
        if line_format not in _LINE_FORMATS:
            raise OptionError(
                "line_format",
                f"line_format must be 'eventrouter' or 'event-tracking', not {line_format!r}",
            )
        if flush_interval < 0:
            raise OptionError(
                "flush_interval", "flush_interval must be 0 (write each line at once) or more"
            )
        if path is None and (max_bytes or when or backup_count or watch):
            raise ValueError("max_bytes, backup_count, when and watch need a path")
        if sum((bool(max_bytes), when is not None, watch)) > 1:
            raise ValueError("max_bytes, when and watch are exclusive: choose one")
        if dead_letter is not None and not isinstance(dead_letter, DeadLetterFile):
            dead_letter = DeadLetterFile(dead_letter)
        self.dead_letter: DeadLetterFile | None = dead_letter
        self.level = _level(level)
        self.max_event_size = max_event_size
        self.oversize = oversize
        self.line_format = line_format
        self.node_path = "jsonlog"
        """The backend's place in the routing tree (set by its router), named in dead letters."""
        self._formatter = event_formatter(line_format=line_format)
        self._truncated = _Counter()
        self._dropped = _Counter()
        self._drop_log = _signals.DropLog()
        self._suppressed = _Counter()
        self._file: LineFile | _TimedFile | None = None
        self._logger: logging.Logger | None = None
        if path is not None:
            self.path: Path | None = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if when is not None:
                handler = _TimedRotatingFileHandler(
                    self.path,
                    when=when,
                    interval=interval,
                    backupCount=backup_count,
                    utc=utc,
                    encoding="utf-8",
                    delay=True,
                )
                self._file = _TimedFile(handler, self.level)
            else:
                self._file = LineFile(
                    self.path,
                    max_bytes=max_bytes,
                    backup_count=backup_count,
                    watch=watch,
                    flush_interval=flush_interval,
                )
        else:
            self.path = None
            self._logger = logging.getLogger(logger_name)

    def bind_path(self, path: str) -> None:
        """Learn the backend's dotted path in the routing tree (named in dead letters)."""
        self.node_path = path

    # -- sending ---------------------------------------------------------------------------

    def send(self, event: Event) -> None:
        """Write ``event`` as one JSON line.

        Raises:
            DeliveryError: the file could not be opened, or cannot be written and too much
                is already waiting (``path`` mode).
        """
        line = self._formatter.event_line(event)
        limit = self.max_event_size
        if limit is not None and self._size(event, line) > limit:
            fitted = self._fit(event, line, limit)
            if fitted is None:
                return
            event, line = fitted
        file = self._file
        if file is not None:
            file.write_line(line)
            return
        self._log(event, line)

    def send_batch(self, events: Sequence[Event]) -> None:
        """Write ``events``, one line each, handing them to the OS together.

        Raises:
            DeliveryError: as :meth:`send`; none of the batch was accepted.
        """
        if self._file is None:
            for event in events:
                self.send(event)
            return
        event_line = self._formatter.event_line
        limit = self.max_event_size
        lines = []
        for event in events:
            line = event_line(event)
            if limit is not None and self._size(event, line) > limit:
                fitted = self._fit(event, line, limit)
                if fitted is None:
                    continue
                line = fitted[1]
            lines.append(line)
        self._file.write(lines)

    def _size(self, event: Mapping[str, Any], line: str) -> int:
        """The length ``max_event_size`` bounds: the whole line, except in the
        ``event-tracking`` line format, where the ``, "id": ...`` appended last is not counted
        (event-tracking measured lines without it, so the same events are kept)."""
        if self.line_format != "event-tracking":
            return len(line)
        event_id = event.get("id")
        if not isinstance(event_id, str):
            return len(line)
        suffix = ', "id": ' + json.dumps(event_id) + "}"
        if not line.endswith(suffix):
            return len(line)
        return len(line) - len(suffix) + 1

    def _fit(self, event: Event, line: str, limit: int) -> tuple[Event, str] | None:
        """The event and line to write in place of an oversize one; ``None``: dropped."""
        size = self._size(event, line)
        if self.oversize == "truncate":
            event_line = self._formatter.event_line

            def measured(candidate: Mapping[str, Any]) -> str:
                # truncate_event fits the length of this string within the limit.
                candidate_line = event_line(candidate)
                return candidate_line[: self._size(candidate, candidate_line)]

            truncated = truncate_event(event, size, limit, measured)
            shorter = event_line(truncated)
            if self._size(truncated, shorter) <= limit:
                self._truncated.increment()
                return truncated, shorter
        self._drop(event, size)
        return None

    def _drop(self, event: Event, size: int) -> None:
        kept = ""
        if self.dead_letter is not None:
            kept = " (written to the dead-letter file)"
            if not _dead_letter(self.dead_letter, event, self.node_path, "oversize"):
                kept = " (the dead-letter file cannot be written)"
        self._dropped.increment()
        _signals.leaf_dropped(self.node_path, [event], _signals.Reason.TOO_LARGE)
        held = self._drop_log.due(_signals.Reason.TOO_LARGE)
        if held is not None:
            log.warning(
                "JSON log backend %r: dropped event %r (id %r): its line of %d characters is "
                "over max_event_size %s%s; %d more dropped since the last such line (logged "
                "at most once per %g s; all are counted in stats()['dropped'])",
                self.node_path,
                event.get("name"),
                event.get("id"),
                size,
                self.max_event_size,
                kept,
                held,
                _signals.LOG_EVERY,
            )

    def _log(self, event: Event, line: str) -> None:
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
        message: Any = line if self.line_format == "event-tracking" else _EventMessage(event, line)
        record = logger.makeRecord(logger.name, self.level, "", 0, message, (), None)
        logger.handle(record)

    # -- lifecycle -------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Hand every accepted line to the OS (``path`` mode); the app's handlers are the
        app's to flush. A failure is logged and the lines are kept for the next try."""
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Write what is waiting and close the file (``path`` mode)."""
        if self._file is not None:
            self._file.close()

    def stats(self) -> dict[str, int]:
        """Counters: ``written`` (lines accepted, ``path`` mode), ``truncated`` (written with
        ``data`` cut), ``dropped`` (over ``max_event_size``), ``suppressed`` (the logger was
        not enabled, ``logger_name`` mode), ``lost`` (accepted but not writable at close) and
        ``write_errors`` (failed writes to the OS, retried)."""
        file = self._file
        return {
            "written": file.lines if file is not None else 0,
            "truncated": self._truncated.value,
            "dropped": self._dropped.value,
            "suppressed": self._suppressed.value,
            "lost": file.lost if file is not None else 0,
            "write_errors": file.write_errors if file is not None else 0,
        }


def _dead_letter(file: DeadLetterFile, event: Event, destination: str, reason: str) -> bool:
    write: Any = file.write
    try:
        return bool(write(event, destination=destination, error=reason))
    except TypeError:  # a DeadLetterFile from before `destination=` (contract 3)
        return bool(write(event, backend=destination, error=reason))
