"""Django: the request context on every event, and the tracker built at start-up.

Settings::

    INSTALLED_APPS = [..., "eventrouter.integrations.django"]
    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "eventrouter.integrations.django.TrackingContextMiddleware"]
    EVENTROUTER_CONFIG = BASE_DIR / "routing.yaml"   # or EVENT_TRACKING_BACKENDS as before

See :class:`~eventrouter.integrations.django.apps.EventRouterConfig` and
:class:`TrackingContextMiddleware`.
"""

from __future__ import annotations

from eventrouter.errors import MissingExtraError

try:
    import django  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtraError("eventrouter.integrations.django", "django", "django") from exc

from eventrouter.integrations.django.middleware import TrackingContextMiddleware

__all__ = ["TrackingContextMiddleware"]
