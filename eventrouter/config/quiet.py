"""Keeping third-party loggers that can print secrets or event data at INFO.

At DEBUG, segment-analytics-python logs every message it queues (event data) and the
requests it makes; pymongo logs commands with their documents; urllib3 logs request URLs.
An application that turns its root logger to DEBUG
would send all of that to its log files. :func:`quiet_third_party_loggers` (run by
:func:`~eventrouter.config.build` and by the ``eventrouter`` command) sets each of these
loggers to INFO **when its level was never set** (``NOTSET``).

Opting in: set the level of the logger yourself, before building the tree, and it is left
alone::

    import logging
    logging.getLogger("segment").setLevel(logging.DEBUG)  # I accept its DEBUG lines

(the Segment backend's ``debug: true`` option also turns the ``segment`` logger to DEBUG).
"""

from __future__ import annotations

import logging

__all__ = ["QUIETED_LOGGERS", "quiet_third_party_loggers"]

QUIETED_LOGGERS = ("segment", "analytics", "pymongo", "urllib3")
"""The loggers kept at INFO unless their level was set by the application."""


def quiet_third_party_loggers() -> list[str]:
    """Set every logger of :data:`QUIETED_LOGGERS` whose level is unset to INFO.

    Returns:
        The names of the loggers it changed (the others had a level set: an opt-in).
    """
    changed: list[str] = []
    for name in QUIETED_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
            changed.append(name)
    return changed
