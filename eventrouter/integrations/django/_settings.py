"""Django settings -> the tracker and the request context builder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from eventrouter.integrations._request import DEFAULT_MAX_LENGTH, RequestContextBuilder
from eventrouter.tracker import Tracker

SETTING_CONFIG = "EVENTROUTER_CONFIG"
SETTING_TRACKER = "EVENTROUTER_TRACKER"
SETTING_IGNORE = "EVENTROUTER_IGNORE_PATHS"
SETTING_PROXIES = "EVENTROUTER_TRUSTED_PROXIES"
SETTING_HOOK = "EVENTROUTER_CONTEXT_HOOK"
SETTING_MAX_LENGTH = "EVENTROUTER_MAX_VALUE_LENGTH"
LEGACY_BACKENDS = "EVENT_TRACKING_BACKENDS"
LEGACY_PROCESSORS = "EVENT_TRACKING_PROCESSORS"


def tracker_name() -> str:
    """The name the app registers its tracker under (``EVENTROUTER_TRACKER``)."""
    name = getattr(settings, SETTING_TRACKER, "default")
    return name if isinstance(name, str) and name else "default"


def config_source() -> tuple[str, Any] | None:
    """``(setting name, source)`` of the routing configuration, or ``None`` when unset.

    ``EVENTROUTER_CONFIG`` (a YAML path or a mapping) wins; otherwise event-tracking's
    ``EVENT_TRACKING_BACKENDS`` (with ``EVENT_TRACKING_PROCESSORS``) for migrating sites.
    """
    source = getattr(settings, SETTING_CONFIG, None)
    if source is not None:
        return SETTING_CONFIG, source
    backends = getattr(settings, LEGACY_BACKENDS, None)
    if backends is not None:
        legacy: dict[str, Any] = {LEGACY_BACKENDS: backends}
        processors = getattr(settings, LEGACY_PROCESSORS, None)
        if processors is not None:
            legacy[LEGACY_PROCESSORS] = processors
        return LEGACY_BACKENDS, legacy
    return None


def build_tracker() -> Tracker | None:
    """Build the tracker the settings describe (``None`` when they describe none).

    Raises:
        ConfigError: the configuration is invalid.
    """
    found = config_source()
    if found is None:
        return None
    from eventrouter.config import load

    source = found[1]
    tracker: Tracker = load(source if isinstance(source, Mapping) else str(source))
    return tracker


def context_hook() -> Any:
    """``EVENTROUTER_CONTEXT_HOOK``: a callable, or the dotted path of one."""
    hook = getattr(settings, SETTING_HOOK, None)
    if isinstance(hook, str):
        try:
            hook = import_string(hook)
        except ImportError:
            raise ValueError(
                f"{SETTING_HOOK} = {hook!r} cannot be imported: give the dotted path of a "
                "callable that takes the request and returns a dict"
            ) from None
    return hook


def build_builder() -> RequestContextBuilder:
    """The request context builder from ``EVENTROUTER_*`` settings and ``SECRET_KEY``.

    Raises:
        TypeError, ValueError: a setting is malformed; the message names it.
    """
    options: dict[str, Any] = {
        SETTING_IGNORE: getattr(settings, SETTING_IGNORE, ()),
        SETTING_PROXIES: getattr(settings, SETTING_PROXIES, ()),
        SETTING_MAX_LENGTH: getattr(settings, SETTING_MAX_LENGTH, DEFAULT_MAX_LENGTH),
    }
    try:
        return RequestContextBuilder(
            ignore_paths=options[SETTING_IGNORE],
            trusted_proxies=options[SETTING_PROXIES],
            secret=getattr(settings, "SECRET_KEY", None) or None,
            context_hook=context_hook(),
            max_length=options[SETTING_MAX_LENGTH],
        )
    except (TypeError, ValueError) as exc:
        message = str(exc)
        for setting, option in (
            (SETTING_IGNORE, "ignore_paths"),
            (SETTING_PROXIES, "trusted_proxies"),
            (SETTING_HOOK, "context_hook"),
            (SETTING_MAX_LENGTH, "max_length"),
        ):
            message = message.replace(option, setting)
        raise type(exc)(message) from None
