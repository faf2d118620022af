"""The JSON log backend's file writer: buffered lines, one ``write`` per batch, size rotation.

The standard library's file handlers flush the file after every record and, with size
rotation, look the file up with ``stat`` and format each record twice. :class:`LineFile`
keeps what was written in memory and hands it to the operating system in one ``os.write``
when it is told to (:meth:`LineFile.flush`, :meth:`LineFile.close`), when 64 KiB are waiting,
and at the latest ``flush_interval`` seconds after a line was accepted (one daemon thread for
every file of the process; at interpreter exit what is waiting is written). Rotation is
decided on the file's position, which the writer knows without asking the file system.

The file is opened with ``O_APPEND``: each ``os.write`` holds whole lines, so processes
sharing a file never interleave inside a line. Forked children keep the file, get a fresh
lock, and leave the lines their parent had not written yet to the parent. A child started by
``multiprocessing`` or ``billiard`` (Celery's prefork pool) ends with ``os._exit``, which
skips interpreter exit: its waiting lines are written by a finalizer of that library, which
runs when the child's target returns.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from eventrouter import _fork
from eventrouter.errors import DeliveryError

__all__ = ["LineFile"]

log = logging.getLogger("eventrouter.backends.logger")

_CHUNK = 64 * 1024
"""Write to the OS as soon as this many bytes are waiting."""
_MAX_PENDING = 16 * 1024 * 1024
"""While the file cannot be written, keep at most this much; then refuse new lines."""
_RETRY_INTERVAL = 1.0
"""While the file cannot be written, how often (seconds) the timer tries again."""
_PROCESS_LIBRARIES = ("multiprocessing.util", "billiard.util")
"""The libraries whose child processes end with ``os._exit`` after running their finalizers."""
_FINAL_PRIORITY = -100
"""The finalizers' exit priority: after the library's own (0 and up) and the app's usual ones."""


class LineFile:
    """An append-only file of lines, written in batches, rotated at a size.

    While the file cannot be written (a full disk), accepted lines wait in one growing
    buffer and new lines are only appended to it: the write is retried by the timer every
    :data:`_RETRY_INTERVAL` seconds and by :meth:`flush` and :meth:`close`, not by every
    :meth:`write`; past 16 MiB waiting, new lines are refused.

    Args:
        path: the file (its folder must exist).
        max_bytes: rotate before the file would grow past this size; 0 for never. As with
            :class:`logging.handlers.RotatingFileHandler`, nothing rotates while
            ``backup_count`` is 0.
        backup_count: how many rotated files (``path.1`` ... ``path.N``) to keep.
        watch: reopen the file when it was moved or removed (logrotate); checked before
            each write to the OS, not for each line.
        flush_interval: the longest time, in seconds, an accepted line waits before it is
            written to the OS; 0 writes each line at once.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 0,
        backup_count: int = 0,
        watch: bool = False,
        flush_interval: float = 1.0,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes if backup_count > 0 else 0
        self.backup_count = backup_count
        self.watch = watch
        self.flush_interval = flush_interval
        self.lines = 0
        """Lines accepted (in memory or in the OS)."""
        self.lost = 0
        """Lines that could not be written when the file was closed."""
        self.write_errors = 0
        """Failed attempts to write to the OS (the lines are kept and retried)."""
        self._lock = threading.Lock()
        self._fd = -1
        self._identity: tuple[int, int] | None = None
        self._position = 0
        self._pending = bytearray()  # the accepted lines not yet in the OS, newlines included
        self._waiting_since = 0.0  # monotonic time the oldest waiting line was accepted
        self._failing = False
        self._failed_at = 0.0  # monotonic time of the last failed write
        self._room = 0
        _fork.register(self)
        if flush_interval > 0:
            _timer.add(self)

    # -- writing ---------------------------------------------------------------------------

    def write_line(self, line: str) -> None:
        """Accept one line (without its newline); see :meth:`write`."""
        data = (line + "\n").encode("utf-8")
        with self._lock:
            pending = self._pending
            first = not pending
            if len(pending) + len(data) >= self._room:  # a write, a rotation or an open is due
                self._accept([data])
                return
            pending += data
            self.lines += 1
        if first:
            self._waiting_since = time.monotonic()
            _timer.ensure_running()

    def write(self, lines: list[str]) -> None:
        """Accept ``lines`` (without their newlines); written to the OS by the rules above.

        Raises:
            DeliveryError: the file cannot be opened, or it cannot be written and
                16 MiB are already waiting; the lines were not accepted.
        """
        data = [(line + "\n").encode("utf-8") for line in lines]
        with self._lock:
            self._accept(data)

    def _accept(self, data: list[bytes]) -> None:
        pending = self._pending
        if len(pending) + sum(map(len, data)) > _MAX_PENDING and (
            self._failing or not self._write_pending()
        ):
            raise DeliveryError(
                f"JSON log backend: {str(self.path)!r} cannot be written and "
                f"{len(pending)} bytes are waiting; free the disk or fix the file"
            )
        if self._fd < 0:
            self._open()
        first = not pending
        for chunk in data:
            if (
                self.max_bytes
                and self._position + len(pending) + len(chunk) > self.max_bytes
                and self._position + len(pending) > 0
                and not self._failing
                and self._write_pending()
            ):
                self._rotate()
            pending += chunk
        self.lines += len(data)
        if not self._failing and (self.flush_interval <= 0 or len(pending) >= _CHUNK):
            self._write_pending()
        elif first:
            self._waiting_since = time.monotonic()
            _timer.ensure_running()
        self._update_room()

    def _update_room(self) -> None:
        """How many bytes may wait before a line needs more than an append."""
        if self._fd < 0 or self.flush_interval <= 0 or self._failing:
            self._room = 0
        elif self.max_bytes:
            self._room = min(_CHUNK, _MAX_PENDING, max(self.max_bytes - self._position, 0))
        else:
            self._room = min(_CHUNK, _MAX_PENDING)

    def flush(self) -> bool:
        """Write every waiting line to the OS; ``False`` if that failed (they are kept)."""
        with self._lock:
            return self._write_pending()

    def close(self) -> bool:
        """Write what is waiting and close the file; ``False`` if lines were lost.

        A later :meth:`write` opens the file again.
        """
        with self._lock:
            written = self._write_pending()
            if not written:
                lost = self._pending.count(b"\n")  # a line partly written counts as lost
                self.lost += lost
                log.warning(
                    "JSON log backend: %d lines could not be written to %r and are lost",
                    lost,
                    str(self.path),
                )
                self._pending = bytearray()
            self._close_fd()
            return written

    # -- inside the lock -------------------------------------------------------------------

    def _open(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DeliveryError(
                f"JSON log backend: could not open {str(self.path)!r} ({type(exc).__name__}); "
                "check that it is a writable file path"
            ) from exc
        stat = os.fstat(fd)
        self._fd = fd
        self._identity = (stat.st_dev, stat.st_ino)
        self._position = stat.st_size
        self._update_room()

    def _close_fd(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            self._room = 0
            os.close(fd)

    def due(self) -> float | None:
        """When the waiting lines must reach the OS (monotonic), ``None`` if none wait; while
        writes fail, when the next attempt is due."""
        if not self._pending:
            return None
        if self._failing:
            return self._failed_at + _RETRY_INTERVAL
        return self._waiting_since + self.flush_interval

    def _write_pending(self) -> bool:
        pending = self._pending
        if not pending:
            return True
        try:
            if self._fd < 0 or (self.watch and self._moved()):
                self._close_fd()
                self._open()
            while pending:
                written = os.write(self._fd, pending)
                del pending[:written]  # cheap: a bytearray drops its start in place
            self._position = os.lseek(self._fd, 0, os.SEEK_CUR)
        except (OSError, DeliveryError) as exc:
            self._failed(exc)  # what the OS did not take stays in `pending`, for the next try
            return False
        if self._failing:
            self._failing = False
            log.info("JSON log backend: %r can be written again", str(self.path))
        self._update_room()
        return True

    def _failed(self, exc: Exception) -> None:
        self.write_errors += 1
        self._failed_at = time.monotonic()
        if not self._failing:
            self._failing = True
            self._room = 0  # every line takes the checked path until a write succeeds
            log.warning(
                "JSON log backend: could not write to %r (%s); the lines are kept and "
                "retried every %s s and at flush (logged once until a write succeeds)",
                str(self.path),
                type(exc).__name__,
                _RETRY_INTERVAL,
            )
            _timer.add(self)  # retried by the timer, even with a flush_interval of 0
            _timer.ensure_running()

    def _moved(self) -> bool:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (stat.st_dev, stat.st_ino) != self._identity

    def _rotate(self) -> None:
        self._close_fd()
        names = [str(self.path)] + [f"{self.path}.{n}" for n in range(1, self.backup_count + 1)]
        for older, newer in reversed(list(itertools.pairwise(names))):
            with contextlib.suppress(FileNotFoundError):
                os.replace(older, newer)
        self._open()

    def __del__(self) -> None:
        # A file dropped without close(): write what it accepted, release the descriptor.
        # No lock: nothing else can hold a reference, so nothing else is writing.
        with contextlib.suppress(Exception):
            self._write_pending()
            self._close_fd()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._pending = bytearray()  # the parent writes what it had accepted
        self._update_room()


class _Timer:
    """The one daemon thread (per process) that writes waiting lines out in time."""

    def __init__(self) -> None:
        self._files: weakref.WeakSet[LineFile] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = 0
        _fork.register(self)
        atexit.register(self.flush_all)

    def add(self, file: LineFile) -> None:
        with self._lock:
            self._files.add(file)
        self._wake.set()  # recompute the interval

    def ensure_running(self) -> None:
        """Start this process's thread unless it runs already."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            thread = threading.Thread(
                target=self._run, args=(self._pid,), name="eventrouter-jsonlog", daemon=True
            )
            thread.start()

    def _run(self, pid: int) -> None:
        while self._pid == pid:
            self._wake.wait(self._flush_due())
            self._wake.clear()

    def _flush_due(self) -> float:
        """Write the files whose oldest waiting line has waited its file's interval; return
        how long to sleep until the next one is due. Each file keeps its own interval: a
        file with a long one is not written early because another's is short."""
        with self._lock:  # no reference kept while waiting: files must be free to go
            files = list(self._files)
        now = time.monotonic()
        sleep = 1.0
        for file in files:
            due = file.due()
            if due is None:
                continue
            if due <= now:
                file.flush()
            else:
                sleep = min(sleep, due - now)
        return max(sleep, 0.001)

    def flush_all(self) -> None:
        """Write every file's waiting lines (at interpreter exit)."""
        with self._lock:
            files = list(self._files)
        for file in files:
            file.flush()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = 0
        _write_at_child_exit(self)


_finalized: set[str] = set()
"""The process libraries whose children already write waiting lines at exit (inherited by
grandchildren along with the libraries' registries)."""


def _write_at_child_exit(timer: _Timer) -> None:
    """Make the children of ``multiprocessing`` and ``billiard`` write waiting lines at exit.

    Called in every forked child. The library clears its finalizers when its child starts,
    so the finalizer is registered from the library's own after-fork hook, which runs next.
    """
    for name in _PROCESS_LIBRARIES:
        util = sys.modules.get(name)
        if util is not None and name not in _finalized:
            _finalized.add(name)
            util.register_after_fork(timer, _finalizer(util))


def _finalizer(util: ModuleType) -> Callable[[Any], None]:
    def register(timer: _Timer) -> None:
        util.Finalize(None, timer.flush_all, exitpriority=_FINAL_PRIORITY)

    return register


_timer = _Timer()
