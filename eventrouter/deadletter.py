"""The dead-letter file: where an event goes when its destination cannot take it.

One JSON object per line, metadata first and the event last::

    {"destination": "analytics.segment", "error": "DeliveryError", "attempts": 9,
     "first_failure": "2026-11-20T12:00:00.000000+00:00",
     "last_failure": "2026-11-20T12:15:00.000000+00:00", "event": {...the envelope...}}

``destination`` is the dotted path of the node in the tree (``eventrouter replay`` sends the
event back there and nowhere else); ``error`` is an exception type name or a short reason
(``QueueFull``, ``Closed``), never a message that could quote the event's data. A record
whose event the JSON encoding could not take is written with a safe stand-in for the values
it could not encode and ``"lossy": true``.

Each batch of records is written by one ``write`` on a descriptor opened with ``O_APPEND``,
so threads and processes (gunicorn workers, Celery children) can share one file. A short
write (a full disk) is detected: only the records written whole are counted, and the
fragment is cut off from the next record by a newline, so the reader skips it as one damaged
line. :func:`read_dead_letters` skips and counts damaged lines; it never stops on one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from eventrouter import _fork
from eventrouter.encoding import dumps
from eventrouter.typing import Event

__all__ = ["DeadLetterFile", "DeadLetterReader", "DeadLetterRecord", "read_dead_letters"]

log = logging.getLogger("eventrouter.deadletter")

_RECORD_START = '{"destination":'
_MAX_DEPTH = 100


class DeadLetterRecord(TypedDict):
    """One record of a dead-letter file, as :func:`read_dead_letters` returns it."""

    destination: str
    error: str
    attempts: int
    first_failure: str
    last_failure: str
    event: dict[str, Any]
    lossy: NotRequired[bool]
    backend: NotRequired[str]
    """The former name of ``destination``, set to the same value while code moves over."""


def _iso(value: dt.datetime | None, default: str) -> str:
    if value is None:
        return default
    try:
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
    except Exception:
        return default


def _reason(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    return type(error).__name__


def _safe(value: Any, active: set[int], depth: int) -> Any:
    """JSON-native data for anything, touching values only through their exact types.

    Nothing here compares, hashes or formats a foreign object (whose ``__eq__``, ``tzinfo``
    or ``__str__`` may raise): those become ``"<unencodable TYPE>"``.
    """
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        if value.bit_length() > 14_000:  # more than ~4,300 decimal digits: str() refuses
            return f"<int of {value.bit_length()} bits>"
        return value
    if kind is float:
        return value if math.isfinite(value) else repr(value)
    if depth > _MAX_DEPTH:
        return "<nested too deeply>"
    if kind is dict or kind is list or kind is tuple:
        if id(value) in active:
            return "<cycle>"
        active.add(id(value))
        try:
            if kind is dict:
                out: dict[str, Any] = {}
                for key, item in list(value.items()):
                    name = key if type(key) is str else _safe_key(key)
                    while name in out:
                        name += "~"
                    out[name] = _safe(item, active, depth + 1)
                return out
            return [_safe(item, active, depth + 1) for item in value]
        finally:
            active.discard(id(value))
    if isinstance(value, dt.datetime):
        return _safe_datetime(value)
    try:
        text = dumps(value)
        return json.loads(text)
    except Exception:
        return f"<unencodable {_type_name(value)}>"


def _safe_datetime(value: dt.datetime) -> str:
    try:
        return value.astimezone(dt.UTC).isoformat()
    except Exception:  # out of range once in UTC, or a tzinfo that raises
        pass
    try:
        return value.isoformat()
    except Exception:
        return "<unencodable datetime>"


def _safe_key(key: object) -> str:
    value = _safe(key, set(), _MAX_DEPTH)
    return value if isinstance(value, str) else json.dumps(value)


def _type_name(value: object) -> str:
    try:
        return str(type(value).__name__)
    except Exception:
        return "object"


def encode_record(
    event: object,
    *,
    destination: str,
    error: str,
    attempts: int,
    first_failure: str,
    last_failure: str,
) -> tuple[str, bool]:
    """One dead-letter line (with its newline), and whether it is lossy; never raises."""
    head = json.dumps(
        {
            "destination": str(destination),
            "error": str(error),
            "attempts": int(attempts),
            "first_failure": first_failure,
            "last_failure": last_failure,
        },
        ensure_ascii=True,
        separators=(",", ":"),
    )
    try:
        body = dumps(event)
        lossy = False
    except Exception:
        try:
            body = json.dumps(
                _safe(event, set(), 0), ensure_ascii=True, allow_nan=False, separators=(",", ":")
            )
        except Exception:
            body = json.dumps(f"<unencodable {_type_name(event)}>")
        lossy = True
    mark = ',"lossy":true' if lossy else ""
    return f'{head[:-1]}{mark},"event":{body}}}\n', lossy


class DeadLetterFile:
    """Appends events that could not be delivered to a JSON-lines file.

    Args:
        path: the file; its folder is created when missing.
        max_bytes: rotate before a write would take the file past this size (``None``:
            never rotate). The file is renamed ``<path>.1`` (``.1`` to ``.2`` and so on).
        backups: how many rotated files to keep; the oldest beyond that is deleted (and a
            warning logged), so size ``max_bytes * (backups + 1)`` is the most kept.

    Writing never raises: a record the JSON encoding cannot take is written lossily and
    marked; a file that cannot be written (disk full, no permission) is counted in
    ``stats()["write_errors"]`` and the method returns ``False``. The descriptor is kept
    open per process and synced to disk by :meth:`sync` and :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int | None = None,
        backups: int = 5,
    ) -> None:
        if max_bytes is not None and (type(max_bytes) is not int or max_bytes < 1):
            raise ValueError(f"max_bytes must be a positive int or None, not {max_bytes!r}")
        if type(backups) is not int or backups < 0:
            raise ValueError(f"backups must be an int >= 0, not {backups!r}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.written = 0
        self.write_errors = 0
        self.lossy = 0
        self._fd: int | None = None
        self._dangling = False  # our last write stopped inside a record
        self._lock = threading.Lock()
        _fork.register(self)

    # -- writing ------------------------------------------------------------------------------

    def write(
        self,
        event: Event,
        *,
        destination: str | None = None,
        error: BaseException | str,
        attempts: int = 1,
        first_failure: dt.datetime | None = None,
        last_failure: dt.datetime | None = None,
        backend: str | None = None,
    ) -> bool:
        """Append one failed event; ``False`` when it could not be written whole.

        Args:
            event: the event, as the destination received it.
            destination: the dotted path of the node that could not take it.
            error: the exception (only its type name is kept) or a short reason.
            attempts: how many times delivery was tried.
            first_failure: when the first attempt failed (default: now).
            last_failure: when the last attempt failed (default: now).
            backend: the former name of ``destination``, still accepted.
        """
        return self.write_many(
            [event],
            destination=destination,
            error=error,
            attempts=attempts,
            first_failure=first_failure,
            last_failure=last_failure,
            backend=backend,
        )

    def write_many(
        self,
        events: Sequence[Event],
        *,
        destination: str | None = None,
        error: BaseException | str,
        attempts: int = 1,
        first_failure: dt.datetime | None = None,
        last_failure: dt.datetime | None = None,
        backend: str | None = None,
    ) -> bool:
        """Append several events that failed together; ``True`` only if all were written.

        Takes the same keywords as :meth:`write`.
        """
        try:
            now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
            where = destination if destination is not None else (backend or "")
            first = _iso(first_failure, now)
            last = _iso(last_failure, now)
            reason = _reason(error)
            encoded = [
                encode_record(
                    event,
                    destination=where,
                    error=reason,
                    attempts=attempts,
                    first_failure=first,
                    last_failure=last,
                )
                for event in events
            ]
            records = [line.encode("ascii") for line, _ in encoded]
            lossy = sum(1 for _, marked in encoded if marked)
        except Exception:  # only a bug gets here; still never raise into delivery
            log.exception("could not encode dead-letter records")
            with self._lock:
                self.write_errors += len(events)
            return False
        with self._lock:
            written = self._append(records)
            self.written += written
            self.write_errors += len(records) - written
            self.lossy += lossy
        return written == len(records)

    def _append(self, records: list[bytes]) -> int:
        """Write ``records`` at the end of the file; the number written whole."""
        done = 0
        while done < len(records):
            data = b"".join(records[done:])
            if self._dangling:
                data = b"\n" + data
            try:
                fd = self._open(len(data))
                count = _write(fd, data)
            except OSError as exc:
                self._report(exc)
                return done
            if count <= 0:
                return done
            if self._dangling:
                count -= 1
                self._dangling = False
                if count < 0:  # not even the separating newline made it
                    self._dangling = True
                    return done
            for record in records[done:]:
                if count >= len(record):
                    count -= len(record)
                    done += 1
                else:
                    break
            if count > 0:  # part of a record: the rest of it is not worth writing now
                self._dangling = True
                continue
        return done

    def _open(self, incoming: int) -> int:
        if self._fd is not None:
            try:
                if os.fstat(self._fd).st_ino != os.stat(self.path).st_ino:
                    self._close_fd()  # rotated (or removed) by another process
            except OSError:
                self._close_fd()
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._dangling = False
        if self.max_bytes is not None:
            size = os.fstat(self._fd).st_size
            if size > 0 and size + incoming > self.max_bytes:
                self._rotate()
                return self._open(0)
        return self._fd

    def _rotate(self) -> None:
        self._close_fd()
        if self.backups == 0:
            log.warning("dead-letter file %s is full: removing it to start again", self.path)
            self.path.unlink(missing_ok=True)
            return
        oldest = Path(f"{self.path}.{self.backups}")
        if oldest.exists():
            log.warning(
                "dead-letter rotation removes %s (raise backups= to keep more)", oldest.name
            )
        for number in range(self.backups - 1, 0, -1):
            source = Path(f"{self.path}.{number}")
            if source.exists():
                source.replace(f"{self.path}.{number + 1}")
        if self.path.exists():
            self.path.replace(f"{self.path}.1")

    def _report(self, exc: OSError) -> None:
        log.error(
            "cannot write the dead-letter file %s: %s (errno %s)",
            self.path,
            type(exc).__name__,
            exc.errno,
        )

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- lifecycle ----------------------------------------------------------------------------

    def sync(self) -> bool:
        """Push what was written to the disk (``fsync``); ``False`` if that failed."""
        with self._lock:
            if self._fd is None:
                return True
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self._report(exc)
                return False
            return True

    def close(self) -> None:
        """Sync and close the file; a later write opens it again."""
        with self._lock:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    self._report(exc)
            self._close_fd()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._close_fd()  # the child's copy of the descriptor; the parent's stays open
        self._dangling = False
        self.written = self.write_errors = self.lossy = 0

    def stats(self) -> dict[str, int]:
        """``{"written": n, "write_errors": n, "lossy": n}`` (``lossy``: written with a safe
        stand-in for values the encoding could not take)."""
        with self._lock:
            return {
                "written": self.written,
                "write_errors": self.write_errors,
                "lossy": self.lossy,
            }

    def __repr__(self) -> str:
        return f"DeadLetterFile({str(self.path)!r})"


def _write(fd: int, data: bytes) -> int:
    """``os.write``: a seam the tests replace to write short."""
    return os.write(fd, data)


class DeadLetterReader:
    """Iterates over the records of one dead-letter file, skipping damaged lines.

    Attributes:
        damaged: how many non-blank lines were not records (cut short by a full disk, or
            edited by hand); set as the iteration goes.
        damaged_lines: the first 100 of their line numbers.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.damaged = 0
        self.damaged_lines: list[int] = []

    def __iter__(self) -> Iterator[DeadLetterRecord]:
        with open(self.path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                record = _parse(raw)
                if record is None:
                    self._damage(number)
                    continue
                if record[1]:  # a fragment glued in front of a whole record
                    self._damage(number)
                yield record[0]

    def _damage(self, number: int) -> None:
        self.damaged += 1
        if len(self.damaged_lines) < 100:
            self.damaged_lines.append(number)


def _parse(raw: bytes) -> tuple[DeadLetterRecord, bool] | None:
    """The record on a line, and whether something damaged came before it on that line."""
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    record = _record(text)
    if record is not None:
        return record, False
    start = text.rfind(_RECORD_START)
    while start > 0:
        record = _record(text[start:])
        if record is not None:
            return record, True
        start = text.rfind(_RECORD_START, 0, start)
    return None


def _record(text: str) -> DeadLetterRecord | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("event"), dict):
        return None
    if "destination" not in value and "backend" in value:  # written before 0.2
        value["destination"] = value.pop("backend")
        value.setdefault("first_failure", value.get("failed_at", ""))
        value.setdefault("last_failure", value.pop("failed_at", ""))
    if not isinstance(value.get("destination"), str):
        return None
    value["backend"] = value["destination"]
    value.setdefault("error", "")
    value.setdefault("attempts", 1)
    value.setdefault("first_failure", "")
    value.setdefault("last_failure", "")
    return value  # type: ignore[return-value]


def read_dead_letters(path: str | os.PathLike[str]) -> DeadLetterReader:
    """The records of a dead-letter file (iterate over the result).

    A damaged line is skipped and counted in the reader's ``damaged``, never fatal. Records
    written by older versions (``backend``, ``failed_at``) are returned with the current keys;
    every record also carries ``backend``, the former name of ``destination``.
    """
    return DeadLetterReader(path)
