"""Exporters of a tree's counters: :mod:`.prometheus` and :mod:`.otel`, both over ``stats()``.

Both expose the same instruments, read from the tree by :func:`eventrouter.metrics.tree.read`:
``eventrouter_events_total{node,outcome}``, ``eventrouter_dropped_total{node,reason}``,
``eventrouter_queue_events{node}``, ``eventrouter_queue_bytes{node}``,
``eventrouter_oldest_queued_seconds{node}`` and ``eventrouter_delivery_seconds{node}``.
"""

from __future__ import annotations

import os
import sys
import tempfile

__all__ = ["use_multiprocess_dir"]


def use_multiprocess_dir() -> str:
    """Put prometheus_client in multiprocess mode for this process and the ones it forks:
    ``PROMETHEUS_MULTIPROC_DIR`` as set, else a new temporary folder. Call it before
    ``prometheus_client`` is imported; returns the folder.

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
    return folder
