"""Short names for backends and processors, and the import of dotted paths.

Short names come from the ``eventrouter.backends`` and ``eventrouter.processors`` entry-point
groups, so a third-party package adds its own in its ``pyproject.toml``::

    [project.entry-points."eventrouter.backends"]
    kafka = "mypackage.kafka:KafkaBackend"

The built-in names are also known without entry points (a source checkout that was never
installed still works). Anything else containing a dot (``myapp.tracking.add_site``, or
``myapp.tracking:add_site``) is imported as it is.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import logging
from importlib.metadata import entry_points
from typing import Literal

__all__ = ["Kind", "UnknownNameError", "known_names", "refresh", "resolve", "suggest"]

log = logging.getLogger(__name__)

Kind = Literal["backend", "processor"]

GROUPS: dict[Kind, str] = {
    "backend": "eventrouter.backends",
    "processor": "eventrouter.processors",
}

_BUILTINS: dict[Kind, dict[str, str]] = {
    "backend": {
        "router": "eventrouter.backends.routing:RoutingBackend",
        "memory": "eventrouter.backends.memory:MemoryBackend",
        "jsonlog": "eventrouter.backends.logger:LoggerBackend",
        "logger": "eventrouter.backends.logger:LoggerBackend",
        "mongodb": "eventrouter.backends.mongodb:MongoBackend",
        "segment": "eventrouter.backends.segment:SegmentBackend",
        "buffered": "eventrouter.backends.buffered:BufferedBackend",
        "celery": "eventrouter.backends.celery:CeleryRouter",
    },
    "processor": {
        "name_filter": "eventrouter.processors.filters:NameFilter",
        "redact": "eventrouter.processors.redact:Redact",
        "enrich": "eventrouter.processors.enrich:Enrich",
        "schema": "eventrouter.processors.schema:SchemaValidator",
        "sample": "eventrouter.processors.sample:Sample",
        "rename": "eventrouter.processors.rename:Rename",
    },
}


class UnknownNameError(LookupError):
    """A short name or dotted path names nothing that can be imported.

    The message says what was tried and, when there is one, the nearest known name.
    """


@functools.cache
def _entry_point_targets(kind: Kind) -> dict[str, str]:
    """The short names declared as entry points (scanned once per kind; see :func:`refresh`)."""
    targets: dict[str, str] = {}
    for ep in entry_points(group=GROUPS[kind]):
        builtin = _BUILTINS[kind].get(ep.name)
        if builtin is not None and builtin != ep.value:
            log.warning(
                "ignoring entry point %r = %r: %r is a built-in %s name",
                ep.name,
                ep.value,
                ep.name,
                kind,
            )
            continue
        targets[ep.name] = ep.value
    return targets


def _targets(kind: Kind) -> dict[str, str]:
    return {**_entry_point_targets(kind), **_BUILTINS[kind]}


def refresh() -> None:
    """Forget the short names read from entry points, so the next lookup scans them again
    (after installing a package that declares some, in a running process).

    Since 0.1.
    """
    _entry_point_targets.cache_clear()


def known_names(kind: Kind) -> list[str]:
    """Every short name of this kind (built-in and from entry points), sorted.

    Args:
        kind: ``"backend"`` or ``"processor"``.

    Since 0.1.
    """
    return sorted(_targets(kind))


def suggest(name: str, candidates: list[str] | tuple[str, ...]) -> str:
    """A `` (did you mean 'x'?)`` hint for the nearest candidate, or ``""``.

    Args:
        name: what was written.
        candidates: what would have been valid.

    Since 0.1.
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

    Since 0.1.
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
        UnknownNameError: unknown short name (nearest name suggested), a built-in name not
            available in this version, or a dotted path that does not import.
        MissingExtraError: the class needs an optional package that is not installed.
        ImportError: importing the module failed for another reason.

    Since 0.1.
    """
    if "." in name or ":" in name:
        return import_path(name)
    targets = _targets(kind)
    target = targets.get(name)
    if target is None:
        other: Kind = "processor" if kind == "backend" else "backend"
        if name in _targets(other):
            raise UnknownNameError(f"{name!r} is a {other}, not a {kind}")
        raise UnknownNameError(
            f"unknown {kind} {name!r}"
            + suggest(name, sorted(targets))
            + f"; known {kind}s: {', '.join(sorted(targets))}, or a dotted path"
        )
    if name in _BUILTINS[kind] and target == _BUILTINS[kind][name]:
        module_name, _ = _split(target)
        try:
            importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if _module_missing(exc, module_name):
                raise UnknownNameError(
                    f"the {kind} {name!r} is not available in this version of eventrouter"
                ) from None
    return import_path(target)
