"""The Django app: builds and registers the tracker when Django starts."""

from __future__ import annotations

import logging

from django.apps import AppConfig

from eventrouter.errors import ConfigError
from eventrouter.tracker import register_tracker

log = logging.getLogger("eventrouter.integrations")


class EventRouterConfig(AppConfig):  # type: ignore[misc]
    """``"eventrouter.integrations.django"`` in ``INSTALLED_APPS``.

    At start-up it builds the tracker from ``EVENTROUTER_CONFIG`` (a YAML path or a mapping)
    or, for a site moving from event-tracking, from ``EVENT_TRACKING_BACKENDS`` and
    ``EVENT_TRACKING_PROCESSORS``, and registers it (as ``EVENTROUTER_TRACKER``, default
    ``"default"``). An invalid configuration does not stop the import of the project: it is
    kept in :attr:`config_error` and reported by ``manage.py check`` (and so by
    ``runserver`` and ``migrate``), each problem with its file and line.
    """

    name = "eventrouter.integrations.django"
    label = "eventrouter"
    verbose_name = "eventrouter"
    default = True

    config_error: ConfigError | None = None

    def ready(self) -> None:
        """Register the system checks, then build and register the configured tracker."""
        from eventrouter.integrations.django import _settings, checks

        checks.register_checks()
        self.config_error = None
        try:
            tracker = _settings.build_tracker()
        except ConfigError as exc:
            self.config_error = exc
            log.error(
                "eventrouter: the routing configuration has %d problem(s); no tracker is "
                "registered. Run `manage.py check` to see them.",
                len(exc.issues),
            )
            return
        if tracker is not None:
            register_tracker(tracker, _settings.tracker_name())
