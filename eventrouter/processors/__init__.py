"""Processors: plain callables ``(event) -> event | None`` run by a router in order.

Raising :class:`EventEmissionExit` vetoes the event for the router's branch.
"""

from eventrouter.errors import EventEmissionExit

__all__ = ["EventEmissionExit"]
