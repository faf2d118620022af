"""Exporters of a tree's counters: :mod:`.prometheus` and :mod:`.otel`, both over ``stats()``.

Both expose the same instruments, read from the tree by :func:`eventrouter.metrics.tree.read`:
``eventrouter_events_total{node,outcome}``, ``eventrouter_dropped_total{node,reason}``,
``eventrouter_queue_events{node}``, ``eventrouter_queue_bytes{node}``,
``eventrouter_oldest_queued_seconds{node}`` and ``eventrouter_delivery_seconds{node}``.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile

__all__ = ["port_number", "use_multiprocess_dir"]


def port_number(text: str) -> int:
    """``--metrics-port``'s argparse type: a TCP port, 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1 to 65535)")
    return port


def _remove(folder: str, owner: int) -> None:
    if os.getpid() == owner:  # not from a forked child that exits
        shutil.rmtree(folder, ignore_errors=True)


def use_multiprocess_dir() -> str:
    """Put prometheus_client in multiprocess mode for this process and the ones it forks:
    ``PROMETHEUS_MULTIPROC_DIR`` as set, else a new temporary folder. Call it before
    ``prometheus_client`` is imported; returns the folder. A folder made here is removed
    when this process exits.

    Raises:
        RuntimeError: prometheus_client was imported before, in single-process mode.
    """
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        return folder
    if "prometheus_client" in sys.modules:
        raise RuntimeError(
            "prometheus_client is already imported in single-process mode: set "
            "PROMETHEUS_MULTIPROC_DIR before it is imported"
        )
    folder = tempfile.mkdtemp(prefix="eventrouter-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    atexit.register(_remove, folder, os.getpid())
    return folder
