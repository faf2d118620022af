"""What a tree would hit at run time although every option has the right type.

:func:`runtime_problems` is asked about each enabled node once its options are checked: a
class whose optional package is not installed (the ``pip install`` line to run), a filter
with nothing to filter. :func:`empty_value` and :func:`not_a_boolean` word the problems of
values that came from the environment, naming the variables and never their values.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

from eventrouter.config.model import ConfigNode

__all__ = [
    "ACCEPTED_BOOLEANS",
    "empty_value",
    "from_where",
    "not_a_boolean",
    "not_empty",
    "runtime_problems",
    "variables",
]

ACCEPTED_BOOLEANS = "true/false, yes/no, on/off, 1/0"
"""The words a boolean given as text (``${VAR}``) may be, as shown in messages."""

_EXTRAS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "eventrouter.backends.mongodb.MongoBackend": ("the MongoDB backend", "mongo", ("pymongo",)),
    "eventrouter.backends.segment.SegmentBackend": (
        "the Segment backend",
        "segment",
        ("segment.analytics", "requests"),
    ),
    "eventrouter.backends.celery.CeleryRouter": ("the celery backend", "celery", ("celery",)),
    "eventrouter.processors.schema.SchemaValidator": (
        "the schema processor",
        "schema",
        ("jsonschema",),
    ),
}
"""Classes whose constructor needs an optional package: what, which extra, which modules.

Backends are not constructed while validating (they open files and connections), so their
constructor's own :class:`~eventrouter.errors.MissingExtraError` would come only at ``route``.
"""

_FILTERS_NEEDING_ONE_OF: dict[str, dict[str, bool]] = {
    "eventrouter.processors.filters.NameFilter": {"allow": False, "block": True},
}
"""Filters that let every event through unless one of these options is given: for each
option, whether an empty list also gives nothing (``block: []`` blocks nothing, while
``allow: []`` allows no name)."""

_NOT_EMPTY: dict[str, tuple[str, ...]] = {
    "eventrouter.backends.logger.LoggerBackend": ("path",),
}
"""Optional options that, when given, must not be empty text (an empty ``path`` is no file:
the constructor refuses it, at ``route``, as backends are not built while validating)."""

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def _qualified(target: Any) -> str:
    return f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"


def _classes(target: Any) -> Iterator[str]:
    """The qualified names of ``target`` and of its bases (a subclass needs what they need)."""
    for cls in getattr(target, "__mro__", (target,)):
        yield _qualified(cls)


def _missing_module(modules: tuple[str, ...]) -> str | None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            return module.partition(".")[0]
        except Exception:  # installed but broken: constructing it will say why
            return None
    return None


def not_empty(target: Any) -> tuple[str, ...]:
    """The options of ``target`` (a class) that must not be empty text when given."""
    for name in _classes(target):
        options = _NOT_EMPTY.get(name)
        if options is not None:
            return options
    return ()


def runtime_problems(node: ConfigNode, *, migrated: bool = False) -> Iterator[str]:
    """The problems ``route`` would meet with this enabled node, as messages.

    In a tree translated from event-tracking's settings (``migrated``), an empty ``block``
    list is what event-tracking's ``RegexFilter`` accepts and passes every event with: it is
    not reported (the settings load as they did).
    """
    for name in _classes(node.target):
        needed = _EXTRAS.get(name)
        if needed is not None:
            feature, extra, modules = needed
            missing = _missing_module(modules)
            if missing is not None:
                yield (
                    f"{feature} needs the {missing!r} package, which is not installed: "
                    f"run `pip install 'eventrouter[{extra}]'`"
                )
            break
    for name in _classes(node.target):
        wanted = _FILTERS_NEEDING_ONE_OF.get(name)
        if wanted is not None:
            if all(
                _gives_nothing(node.options.get(o), empty and not migrated)
                for o, empty in wanted.items()
            ):
                given = " or ".join(f"`{option}`" for option in wanted)
                yield (
                    f"{node.class_name!r} without {given} filters nothing: every event "
                    f"passes; give {given} (a list of name patterns), or remove it"
                )
            break


def _gives_nothing(value: Any, empty_list_is_nothing: bool) -> bool:
    if value is None:
        return True
    return empty_list_is_nothing and isinstance(value, list | tuple) and not value


def variables(raw: Any) -> list[str]:
    """The environment variables a value as written reads (``${NAME}``), in order."""
    found: list[str] = []
    if isinstance(raw, str):
        found.extend(name for name in _VARIABLE.findall(raw) if name not in found)
    return found


def from_where(raw: Any) -> str:
    """``the environment variable NAME`` (or ``variables A, B``) for a value as written."""
    names = variables(raw)
    if not names:
        return "the environment"
    listed = ", ".join(names)
    return f"the environment variable{'s' if len(names) > 1 else ''} {listed}"


def empty_value(option: str, raw: Any, env: Mapping[str, str] | None = None) -> str:
    """The message for a required or secret option that came out empty from ``raw``.

    With ``env``, a variable that is not set but has an empty default (``${KEY:-}``) is
    worded as such; the others are set but empty.
    """
    names = variables(raw)
    if not names:
        return f"{option!r} is empty: give it a value, or disable the node (`enabled: false`)"
    unset = [name for name in names if env is not None and name not in env]
    if unset:
        listed = ", ".join(unset)
        what = f"the environment variable{'s' if len(unset) > 1 else ''} {listed}"
        reason = f"{what} {'are' if len(unset) > 1 else 'is'} not set and the default is empty"
    else:
        reason = f"{from_where(raw)} {'are' if len(names) > 1 else 'is'} set but empty"
    return f"{option!r} is empty: {reason}; set it to the value, or disable the node " + (
        "(`enabled: false`)"
    )


def not_a_boolean(
    raw: Any, text: str, *, from_env: bool, expected: str = "expected true or false"
) -> str:
    """The message for a value that should be a boolean; from the environment, it names the
    variables and not the value."""
    shown = f"the value of {from_where(raw)}" if from_env else repr(text)
    return f"{expected} ({ACCEPTED_BOOLEANS}), got {shown}"
