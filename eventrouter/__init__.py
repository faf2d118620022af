"""eventrouter: route application events through processors to backends.

from eventrouter import tracker
tracker.register_tracker(eventrouter.load("routing.yaml"))
tracker.emit("video.played", {"video_id": "intro"})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventrouter import tracker
from eventrouter.backends.memory import MemoryBackend
from eventrouter.backends.routing import RoutingBackend
from eventrouter.errors import (
    ConfigError,
    DeliveryError,
    EventEmissionExit,
    EventRouterError,
    MissingExtraError,
    OptionError,
    TrackerNotRegisteredError,
)
from eventrouter.event import build_event, copy_event
from eventrouter.lifecycle import install_signal_handlers
from eventrouter.tracker import Tracker, emit, get_tracker, register_tracker

if TYPE_CHECKING:
    from eventrouter.config import load
    from eventrouter.config.migrate import load_settings

    __version__: str
    """The installed version of eventrouter (from the package's metadata)."""

__all__ = [
    "ConfigError",
    "DeliveryError",
    "EventEmissionExit",
    "EventRouterError",
    "MemoryBackend",
    "MissingExtraError",
    "OptionError",
    "RoutingBackend",
    "Tracker",
    "TrackerNotRegisteredError",
    "__version__",
    "build_event",
    "copy_event",
    "emit",
    "get_tracker",
    "install_signal_handlers",
    "load",
    "load_settings",
    "register_tracker",
    "tracker",
]


def __getattr__(name: str) -> Any:
    # `load` lives in eventrouter.config, which pulls in YAML handling: import it on first use.
    if name == "load":
        from eventrouter.config import load

        return load
    # Reading the package metadata scans sys.path: do it only when someone asks.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("eventrouter")
        except PackageNotFoundError:  # a source tree that was never installed
            found = "0+unknown"
        globals()["__version__"] = found
        return found
    if name == "load_settings":
        from eventrouter.config.migrate import load_settings

        return load_settings
    raise AttributeError(f"module 'eventrouter' has no attribute {name!r}")
