"""Translation of openedx event-tracking's Django-style settings into eventrouter's format.

event-tracking configures a tree of ``{"ENGINE": "dotted.Class", "OPTIONS": {...}}`` dicts
(``EVENT_TRACKING_BACKENDS``, ``EVENT_TRACKING_PROCESSORS``). Each of its own classes has a
row in :data:`ROWS` (``rows``): the class of ours it becomes, how its options are renamed,
and, for the few that need one, a small function for what a rename cannot say. ``walk``
translates the settings node by node and records where every translated path came from
(``positions``). Any other ``ENGINE`` is imported as it is, so users' own backends and
processors keep working; ``backends`` and ``processors`` given to it as ENGINE dicts are
built as its children when its constructor takes them (``build``: :class:`Engine`).
event-tracking itself need not be installed.
"""

from eventrouter.config.migrate.build import (
    Engine,
    build_engine,
    built_through_engine,
    load_settings,
)
from eventrouter.config.migrate.rows import ROWS, Row
from eventrouter.config.migrate.walk import Translation, is_event_tracking, original, translate

__all__ = [
    "ROWS",
    "Engine",
    "Row",
    "Translation",
    "build_engine",
    "built_through_engine",
    "is_event_tracking",
    "load_settings",
    "original",
    "translate",
]
