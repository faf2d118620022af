"""System checks: configuration problems reported by ``manage.py check``."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks

from eventrouter.integrations.django import _settings

__all__ = [
    "AUTH_MIDDLEWARE",
    "MIDDLEWARE_PATH",
    "check_config",
    "check_options",
    "register_checks",
]

MIDDLEWARE_PATH = "eventrouter.integrations.django.TrackingContextMiddleware"
"""The middleware as ``MIDDLEWARE`` names it."""
AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"
"""Django's authentication middleware, which must come before ours for a user to be known."""


def check_config(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``eventrouter.E001``: the routing configuration is invalid (one per problem)."""
    config = apps.get_app_config("eventrouter")
    error = getattr(config, "config_error", None)
    if error is None:
        return []
    found = _settings.config_source()
    setting = found[0] if found else _settings.SETTING_CONFIG
    return [
        checks.Error(
            str(issue),
            hint=f"Fix it in the file or mapping that {setting} names.",
            obj=setting,
            id="eventrouter.E001",
        )
        for issue in error.issues
    ]


def check_options(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``eventrouter.E002``: a request context setting is malformed;
    ``eventrouter.W001``: the middleware runs before authentication, so no user is known."""
    messages: list[checks.CheckMessage] = []
    try:
        _settings.build_builder()
    except (TypeError, ValueError) as exc:
        messages.append(checks.Error(str(exc), obj="settings", id="eventrouter.E002"))
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    if (
        MIDDLEWARE_PATH in middleware
        and AUTH_MIDDLEWARE in middleware
        and middleware.index(MIDDLEWARE_PATH) < middleware.index(AUTH_MIDDLEWARE)
    ):
        messages.append(
            checks.Warning(
                "TrackingContextMiddleware comes before AuthenticationMiddleware, so events "
                "will never carry the user",
                hint=f"Move {MIDDLEWARE_PATH!r} after {AUTH_MIDDLEWARE!r} in MIDDLEWARE.",
                obj="MIDDLEWARE",
                id="eventrouter.W001",
            )
        )
    return messages


def register_checks() -> None:
    """Register the checks with Django (idempotent: the registry is a set)."""
    checks.register(check_config, "eventrouter")
    checks.register(check_options, "eventrouter")
