"""The dead-letter file: where an event goes when a backend cannot take it.

One JSON object per line (the encoding of :mod:`eventrouter.encoding`)::

    {"failed_at": "2026-11-20T12:00:00+00:00", "backend": "analytics.segment",
     "error": "DeliveryError", "event": {...the envelope...}}

Each batch of lines is written by one ``write`` on a descriptor opened with ``O_APPEND``, so
several threads and processes (gunicorn workers, Celery children) may share one file.

Since 0.1.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypedDict

from eventrouter import _fork
from eventrouter.encoding import dumps
from eventrouter.typing import Event

__all__ = ["DeadLetterFile", "DeadLetterRecord", "read_dead_letters"]


class DeadLetterRecord(TypedDict):
    """One line of a dead-letter file, as :func:`read_dead_letters` returns it."""

    failed_at: str
    backend: str
    error: str
    event: dict[str, Any]


class DeadLetterFile:
    """Appends events that could not be delivered to a JSON-lines file.

    Args:
        path: the file; its folder is created when missing.

    Writing never raises: if even the dead-letter file cannot be written (disk full, no
    permission), the failure is reported by the caller's log line and counted in
    :attr:`write_errors`.

    Since 0.1.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.written = 0
        self.write_errors = 0
        self._lock = threading.Lock()
        _fork.register(self)

    def write(self, event: Event, *, backend: str, error: BaseException | str) -> bool:
        """Append one failed event; returns ``False`` when the file could not be written."""
        return self.write_many([event], backend=backend, error=error)

    def write_many(
        self, events: Sequence[Event], *, backend: str, error: BaseException | str
    ) -> bool:
        """Append several events that failed together (a batch); ``False`` on failure."""
        reason = error if isinstance(error, str) else type(error).__name__
        now = dt.datetime.now(dt.UTC).isoformat()
        lines = "".join(
            dumps({"failed_at": now, "backend": backend, "error": reason, "event": event}) + "\n"
            for event in events
        )
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, lines.encode("utf-8"))
                finally:
                    os.close(fd)
            except OSError:
                self.write_errors += len(events)
                return False
            self.written += len(events)
            return True

    def stats(self) -> dict[str, int]:
        """``{"written": n, "write_errors": n}``."""
        return {"written": self.written, "write_errors": self.write_errors}

    def __repr__(self) -> str:
        return f"DeadLetterFile({str(self.path)!r})"


def read_dead_letters(path: str | os.PathLike[str]) -> Iterator[DeadLetterRecord]:
    """Yield the records of a dead-letter file, skipping blank lines.

    Raises:
        ValueError: a line is not a dead-letter record; the message gives its line number.
    """
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("event"), dict):
                raise ValueError(f"{path}:{number}: not a dead-letter record")
            yield record  # type: ignore[misc]
