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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eventrouter import _fork
from eventrouter._deadletter_read import (
    DeadLetterReader,
    DeadLetterRecord,
    read_dead_letters,
)
from eventrouter.encoding import dumps, walk
from eventrouter.typing import Event

__all__ = ["DeadLetterFile", "DeadLetterReader", "DeadLetterRecord", "read_dead_letters"]

log = logging.getLogger("eventrouter.deadletter")

_MAX_DEPTH = 100


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


def _safe(value: Any) -> Any:
    """JSON-native data for anything, through the package's one walk
    (:func:`eventrouter.encoding.walk`) with a strict leaf conversion.

    Leaves are touched only through their exact types: a foreign object (whose ``__eq__``,
    ``tzinfo`` or ``__str__`` may raise) becomes ``"<unencodable TYPE>"``, and so does a key
    that is not a plain string.
    """
    return walk(value, _safe_leaf, key=_safe_key, max_depth=_MAX_DEPTH)


def _safe_leaf(value: Any) -> Any:
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        if value.bit_length() > 14_000:  # more than ~4,300 decimal digits: str() refuses
            return f"<int of {value.bit_length()} bits>"
        return value
    if kind is float:
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dt.datetime):
        return _safe_datetime(value)
    try:
        return json.loads(dumps(value))
    except Exception:
        return f"<unencodable {_type_name(value)}>"


class _KeyName(str):
    """A key's written name that never compares itself with the foreign key it stands for
    (the walk checks a converted name against its original; that original may raise)."""

    __slots__ = ()

    def __ne__(self, other: object) -> bool:
        return not isinstance(other, str) or str.__ne__(self, other)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and str.__eq__(self, other)

    __hash__ = str.__hash__


def _safe_key(key: object) -> str:
    if type(key) is str:
        return key
    leaf = _safe_leaf(key) if not isinstance(key, tuple) else f"<unencodable {_type_name(key)}>"
    return _KeyName(leaf if isinstance(leaf, str) else json.dumps(leaf))


def _safe_datetime(value: dt.datetime) -> str:
    try:
        return value.astimezone(dt.UTC).isoformat()
    except Exception:  # out of range once in UTC, or a tzinfo that raises
        pass
    try:
        return value.isoformat()
    except Exception:
        return "<unencodable datetime>"


def _type_name(value: object) -> str:
    try:
        return str(type(value).__name__)
    except Exception:
        return "object"


def _encode_record(
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
                _safe(event), ensure_ascii=True, allow_nan=False, separators=(",", ":")
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
        return (
            self.write_many(
                [event],
                destination=destination,
                error=error,
                attempts=attempts,
                first_failure=first_failure,
                last_failure=last_failure,
                backend=backend,
            )
            == 1
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
    ) -> int:
        """Append several events that failed together; the number written whole.

        The records are written in order, so the events written are ``events[:n]``: a
        caller counts those as dead-lettered and the rest as lost (or keeps them to try
        again). Takes the same keywords as :meth:`write`.
        """
        try:
            now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
            where = destination if destination is not None else (backend or "")
            first = _iso(first_failure, now)
            last = _iso(last_failure, now)
            reason = _reason(error)
            encoded = [
                _encode_record(
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
            return 0
        with self._lock:
            written = self._append(records)
            self.written += written
            self.write_errors += len(records) - written
            self.lossy += lossy
        return written

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
