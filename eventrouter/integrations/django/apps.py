"""The Django app: builds and registers the tracker when Django starts."""

from __future__ import annotations

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured

from eventrouter.errors import ConfigError
from eventrouter.tracker import register_tracker

__all__ = ["EventRouterConfig"]


class EventRouterConfig(AppConfig):  # type: ignore[misc]
    """``"eventrouter.integrations.django"`` in ``INSTALLED_APPS``.

    At start-up it builds the tracker from ``EVENTROUTER_CONFIG`` (a YAML path or a mapping)
    or, for a site moving from event-tracking, from ``EVENT_TRACKING_BACKENDS`` and
    ``EVENT_TRACKING_PROCESSORS``, and registers it (as ``EVENTROUTER_TRACKER``, default
    ``"default"``). An invalid configuration stops the start-up, as event-tracking's did:
    ``ready()`` raises :class:`~django.core.exceptions.ImproperlyConfigured` listing every
    problem with its file and line, so a WSGI/ASGI server (gunicorn, uvicorn) fails to boot
    its workers instead of serving views whose ``tracker.emit`` raises
    ``TrackerNotRegisteredError``. The error is also kept in :attr:`config_error`, which the
    ``eventrouter.E001`` system check reports.
    """

    name = "eventrouter.integrations.django"
    label = "eventrouter"
    verbose_name = "eventrouter"
    default = True

    config_error: ConfigError | None = None

    def ready(self) -> None:
        """Register the system checks, then build and register the configured tracker.

        Raises:
            ImproperlyConfigured: the routing configuration is invalid (every problem listed).
        """
        from eventrouter.integrations.django import _settings, checks

        checks.register_checks()
        self.config_error = None
        try:
            tracker = _settings.build_tracker()
        except ConfigError as exc:
            self.config_error = exc
            found = _settings.config_source()
            setting = found[0] if found else _settings.SETTING_CONFIG
            problems = "\n".join(f"  - {issue}" for issue in exc.issues)
            raise ImproperlyConfigured(
                f"eventrouter: the routing configuration that {setting} names has "
                f"{len(exc.issues)} problem(s), so no tracker can be registered:\n{problems}\n"
                f"Fix them in that file or mapping and start again."
            ) from exc
        if tracker is not None:
            register_tracker(tracker, _settings.tracker_name())
