"""Keeping secrets out of what the loader prints: option names, URIs, constructor messages.

An option whose name looks secret (:func:`is_secret_name`), or whose value came from the
environment, is never shown; URIs are shown with their passwords and secret query values
masked (:func:`mask_uri`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from eventrouter._loglabels import describe

__all__ = ["MASK", "is_secret_name", "mask_uri", "scrub", "show"]

MASK = "***"
"""What stands in for a hidden value."""

_SECRET_PART = re.compile(r"secret|passw|token|credential|auth", re.IGNORECASE)
_NAME_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_SECRET_QUERY = re.compile(
    r"passw|secret|token|key|credential|signature|authmechanismproperties", re.IGNORECASE
)
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+")
_QUERY_ITEM = re.compile(r"([?&;])([^=&;#\s]*)=([^&;#\s]*)")


def is_secret_name(name: str) -> bool:
    """Whether an option with this name holds a secret; its value is never shown.

    Secret names contain ``secret``, ``passw``, ``token``, ``credential`` or ``auth``, or have
    ``key`` as one of several words (``write_key``, ``api_key``, ``apiKey``, ``key_file``);
    ``key`` alone (``Sample``'s field path) is not a secret.
    """
    if _SECRET_PART.search(name):
        return True
    words = [w.lower() for w in _NAME_WORDS.findall(name)]
    return len(words) > 1 and "key" in words


def _split_uri(uri: str) -> tuple[str, str, str] | None:
    """``(scheme://, userinfo, rest)`` where userinfo runs to the LAST ``@``, or ``None``."""
    scheme, sep, after = uri.partition("://")
    if not sep:
        return None
    userinfo, at, rest = after.rpartition("@")
    if not at:
        return scheme + sep, "", after
    return scheme + sep, userinfo, rest


def _uri_secrets(uri: str) -> list[str]:
    """The password (or whole userinfo without a user name) and secret query values."""
    parts = _split_uri(uri)
    if parts is None:
        return []
    _, userinfo, rest = parts
    found: list[str] = []
    if userinfo:
        user, colon, password = userinfo.partition(":")
        found.append(password if colon else user)
    for match in _QUERY_ITEM.finditer(rest):
        if _SECRET_QUERY.search(match.group(2)) and match.group(3):
            found.append(match.group(3))
    return [s for s in found if s]


def _mask_one_uri(match: re.Match[str]) -> str:
    parts = _split_uri(match.group(0))
    if parts is None:  # pragma: no cover - the regex requires ://
        return match.group(0)
    scheme, userinfo, rest = parts
    if userinfo:
        user, colon, _ = userinfo.partition(":")
        userinfo = f"{user}:{MASK}@" if colon else f"{MASK}@"

    def query(item: re.Match[str]) -> str:
        if _SECRET_QUERY.search(item.group(2)) and item.group(3):
            return f"{item.group(1)}{item.group(2)}={MASK}"
        return item.group(0)

    return scheme + userinfo + _QUERY_ITEM.sub(query, rest)


def mask_uri(text: str) -> str:
    """Hide the secrets of every URI in ``text``: ``mongodb://user:***@host`` for
    ``mongodb://user:pass@host`` (the password runs to the last ``@``, so it may hold ``/``
    or ``@``; userinfo without a ``:`` is hidden whole), and ``?password=***`` for query
    values whose names look secret (``password``, ``token``, ``tlsCertificateKeyFilePassword``).
    """
    return _URI.sub(_mask_one_uri, text)


def show(value: Any, name: str) -> str:
    """``value`` of the option ``name`` as text safe to print."""
    if is_secret_name(name):
        return MASK
    if isinstance(value, str):
        return mask_uri(value)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k}: {show(v, str(k))}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v, name) for v in value) + "]"
    if callable(value):
        return describe(value)
    return repr(value)


def _secret_values(options: Mapping[str, Any], from_environment: set[str]) -> set[str]:
    found: set[str] = set()

    def collect(value: Any, secret: bool) -> None:
        if isinstance(value, str):
            if secret and len(value) >= 3:
                found.add(value)
            for uri in _URI.findall(value):
                found.update(_uri_secrets(uri))
        elif isinstance(value, Mapping):
            for key, item in value.items():
                collect(item, secret or is_secret_name(str(key)))
        elif isinstance(value, list | tuple):
            for item in value:
                collect(item, secret)

    for name, value in options.items():
        collect(value, name in from_environment or is_secret_name(name))
    return found


def scrub(message: str, options: Mapping[str, Any], from_environment: set[str]) -> str:
    """``message`` without any secret of ``options``, also in the escaped forms that
    ``repr`` and JSON give it (``a\\\\b`` for ``a\\b``), and with its URIs masked.

    Args:
        message: text that may quote option values (a constructor's error message).
        options: the options, as expanded.
        from_environment: the names of the options whose value came from ``${VAR}``.
    """
    forms: set[str] = set()
    for secret in _secret_values(options, from_environment):
        forms.update((secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]))
    for form in sorted(forms, key=len, reverse=True):
        if form:
            message = message.replace(form, MASK)
    return mask_uri(message)
