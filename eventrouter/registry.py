"""Short names for backends and processors, and the import of dotted paths.

Short names come only from the ``eventrouter.backends`` and ``eventrouter.processors``
entry-point groups: eventrouter declares its own there, and a third-party package adds its
own the same way in its ``pyproject.toml``::

    [project.entry-points."eventrouter.backends"]
    kafka = "mypackage.kafka:KafkaBackend"

A name declared by several distributions is eventrouter's own if it declares it, else the
first one found; the others are ignored with a warning. Anything else containing a dot
(``myapp.tracking.add_site``, or ``myapp.tracking:add_site``) is imported as it is.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Literal

__all__ = [
    "Kind",
    "UnknownNameError",
    "import_path",
    "known_names",
    "refresh",
    "resolve",
    "suggest",
]

_log = logging.getLogger(__name__)

Kind = Literal["backend", "processor"]
"""What a short name stands for: ``"backend"`` or ``"processor"``."""

_GROUPS: dict[Kind, str] = {
    "backend": "eventrouter.backends",
    "processor": "eventrouter.processors",
}
_OWN_DISTRIBUTION = "eventrouter"


class UnknownNameError(LookupError):
    """A short name or dotted path names nothing that can be imported.

    The message says what was tried and, when there is one, the nearest known name.
    """


@dataclass(frozen=True, slots=True)
class _Declared:
    """One short name: the object it points to and the distribution declaring it."""

    target: str
    distribution: str | None


@functools.cache
def _declared(kind: Kind) -> dict[str, _Declared]:
    """The short names declared as entry points (scanned once per kind; see :func:`refresh`)."""
    names: dict[str, _Declared] = {}
    for ep in entry_points(group=_GROUPS[kind]):
        dist = ep.dist.name if ep.dist is not None else None
        found = _Declared(ep.value, dist)
        kept = names.get(ep.name)
        if kept is not None and kept.target != found.target:
            if dist == _OWN_DISTRIBUTION:
                kept, found = found, kept
            _log.warning(
                "ignoring the %s name %r = %r from %s: %s declares it as %r",
                kind,
                ep.name,
                found.target,
                found.distribution or "an unknown distribution",
                kept.distribution or "an unknown distribution",
                kept.target,
            )
        names[ep.name] = kept or found
    return names


def refresh() -> None:
    """Forget the short names read from entry points, so the next lookup scans them again
    (after installing a package that declares some, in a running process).
    """
    _declared.cache_clear()


def known_names(kind: Kind) -> list[str]:
    """Every short name of this kind, sorted.

    Args:
        kind: ``"backend"`` or ``"processor"``.
    """
    return sorted(_declared(kind))


def suggest(name: str, candidates: list[str] | tuple[str, ...]) -> str:
    """A `` (did you mean 'x'?)`` hint for the nearest candidate, or ``""``.

    Args:
        name: what was written.
        candidates: what would have been valid.
    """
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _split(path: str) -> tuple[str, str]:
    if ":" in path:
        module, _, attr = path.partition(":")
    else:
        module, _, attr = path.rpartition(".")
    return module, attr


def _module_missing(exc: ModuleNotFoundError, module: str) -> bool:
    """Whether ``exc`` says that ``module`` itself (or a parent package) does not exist."""
    missing = exc.name or ""
    return missing == module or module.startswith(missing + ".")


def import_path(path: str) -> object:
    """Import ``package.module.attr`` (or ``package.module:attr``) and return the attribute.

    Args:
        path: the dotted path.

    Raises:
        UnknownNameError: the module or the attribute does not exist (with a suggestion).
        MissingExtraError: the module needs an optional package that is not installed.
        ImportError: importing the module failed for another reason.
    """
    module_name, attr = _split(path)
    if not module_name or not attr:
        raise UnknownNameError(f"{path!r} is not a dotted path to a class or function")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if _module_missing(exc, module_name):
            raise UnknownNameError(
                f"cannot import {path!r}: no module named {exc.name!r}"
            ) from None
        raise ImportError(
            f"cannot import {path!r}: it needs the module {exc.name!r}, which is not installed"
        ) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        public = [name for name in dir(module) if not name.startswith("_")]
        raise UnknownNameError(
            f"cannot import {path!r}: module {module_name!r} has no attribute {attr!r}"
            + suggest(attr, public)
        ) from None


def resolve(kind: Kind, name: str) -> object:
    """The class or callable that a short name or a dotted path stands for.

    Args:
        kind: ``"backend"`` or ``"processor"``: which short names apply.
        name: a short name (``jsonlog``) or a dotted path (``myapp.tracking.add_site``).

    Raises:
        UnknownNameError: unknown short name (nearest name suggested), a short name whose
            declared module does not exist (a stale installation), or a dotted path that
            does not import.
        MissingExtraError: the class needs an optional package that is not installed.
        ImportError: importing the module failed for another reason.
    """
    if "." in name or ":" in name:
        return import_path(name)
    declared = _declared(kind)
    found = declared.get(name)
    if found is None:
        other: Kind = "processor" if kind == "backend" else "backend"
        if name in _declared(other):
            raise UnknownNameError(f"{name!r} is a {other}, not a {kind}")
        known = sorted(declared)
        raise UnknownNameError(
            f"unknown {kind} {name!r}"
            + suggest(name, known)
            + f"; known {kind}s: {', '.join(known)}, or a dotted path"
        )
    module_name, _ = _split(found.target)
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if _module_missing(exc, module_name):
            by = found.distribution or "its distribution"
            raise UnknownNameError(
                f"the {kind} {name!r} is not available: {by} declares it as "
                f"{found.target!r}, but there is no module {module_name!r} (reinstall {by})"
            ) from None
        # else: a module it needs is missing; import_path says which
    return import_path(found.target)
