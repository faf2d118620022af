"""Exporters of a tree's counters: :mod:`.prometheus` and :mod:`.otel`, both over ``stats()``.

Both expose the same instruments, read from the tree by :func:`eventrouter.metrics.tree.read`:
``eventrouter_events_total{node,outcome}``, ``eventrouter_dropped_total{node,reason}``,
``eventrouter_queue_events{node}``, ``eventrouter_queue_bytes{node}``,
``eventrouter_oldest_queued_seconds{node}`` and ``eventrouter_delivery_seconds{node}``.
"""
