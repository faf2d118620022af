"""Reading dead-letter files: one record per line, damaged lines skipped and counted.

The writer is :class:`eventrouter.deadletter.DeadLetterFile`; this module is re-exported
from :mod:`eventrouter.deadletter`, where callers import it from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NotRequired, TypedDict

__all__ = ["DeadLetterReader", "DeadLetterRecord", "read_dead_letters"]

_RECORD_START = '{"destination":'

MAX_RECORD_BYTES = 64 * 1024 * 1024
"""The longest line read as a record; a longer one is counted as damaged and read past."""


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
            for number, raw in enumerate(_bounded_lines(handle), start=1):
                if raw is None:  # longer than MAX_RECORD_BYTES: read past, not kept
                    self._damage(number)
                    continue
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


def _bounded_lines(handle: IO[bytes]) -> Iterator[bytes | None]:
    """The lines of ``handle``, ``None`` for one longer than :data:`MAX_RECORD_BYTES` (read
    past in pieces: a file of zeros without a newline never needs more memory than that)."""
    while True:
        line = handle.readline(MAX_RECORD_BYTES + 1)
        if not line:
            return
        if len(line) <= MAX_RECORD_BYTES:
            yield line
            continue
        while line and not line.endswith(b"\n"):
            line = handle.readline(MAX_RECORD_BYTES)
        yield None


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
