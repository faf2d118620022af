"""The walk over the settings: each node translated by its row, and the origin of every
translated path recorded."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eventrouter.config.migrate.positions import (
    Where,
    is_engine,
    join,
    key_line,
    line_of,
    location,
    value_line,
)
from eventrouter.config.migrate.rows import ROWS, Row

SETTINGS_BACKENDS = "EVENT_TRACKING_BACKENDS"
SETTINGS_PROCESSORS = "EVENT_TRACKING_PROCESSORS"
SETTINGS_DEAD_LETTER = "EVENTROUTER_DEAD_LETTER"

#: The class a user's ENGINE with ENGINE-dict children is built through (see ``Engine``).
ENGINE_CLASS = "eventrouter.config.migrate.Engine"


@dataclass
class Translation:
    """The translated configuration, remarks worth logging, and problems.

    ``warnings`` are settings that load but are very likely mistakes (options
    event-tracking's class ignored); the validator logs each once.
    ``problems`` are ``(message, path, line)`` with the path in the settings as written.
    ``refusals`` hold, for the problems event-tracking's own constructor refused too, the
    exception it raised (its type, or a subclass), so :func:`build_engine` raises the same.
    ``origins`` maps a path of the translated configuration (``backends.x.options.logger_name``)
    to the path in the settings it came from (``x.OPTIONS.name``) and its line (``None`` when
    the settings were not read from a file); see :func:`original`.
    """

    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[tuple[str, str, int | None]] = field(default_factory=list)
    refusals: list[Exception] = field(default_factory=list)
    origins: dict[str, tuple[str, int | None]] = field(default_factory=dict)


def original(
    path: str, origins: Mapping[str, tuple[str, int | None]]
) -> tuple[str, int | None] | None:
    """The settings path and line that the translated ``path`` (or the nearest node holding
    it) came from, with the rest of ``path`` appended; ``None`` if it has no origin."""
    head = path
    while head:
        found = origins.get(head)
        if found is not None:
            return found[0] + path[len(head) :], found[1]
        cut = max(head.rfind("."), head.rfind("["))
        head = head[: max(cut, 0)]
    return None


def is_event_tracking(data: Mapping[Any, Any]) -> bool:
    """Whether ``data`` is event-tracking settings rather than an eventrouter configuration.

    True for a single ``ENGINE`` dict, a mapping holding ``EVENT_TRACKING_BACKENDS``, or a
    non-empty mapping of names to ``ENGINE`` dicts (the value of ``EVENT_TRACKING_BACKENDS``).
    """
    if "ENGINE" in data or SETTINGS_BACKENDS in data:
        return True
    return bool(data) and all(is_engine(v) for v in data.values())


def translate(data: Mapping[Any, Any]) -> Translation:
    """Translate event-tracking settings (see :func:`is_event_tracking`) into our format."""
    result = Translation({})
    walk = Walk(result)
    if "ENGINE" in data:
        row = ROWS.get(data["ENGINE"]) if isinstance(data["ENGINE"], str) else None
        routed = row is not None and row.target == "router"
        node = walk.node(data, "", "" if routed else "backends.default", line_of(data, None))
        if routed:
            result.config = {k: v for k, v in node.items() if k in ("backends", "processors")}
        else:
            result.config = {"backends": {"default": node}}
        return result
    if SETTINGS_BACKENDS in data:
        processors = data.get(SETTINGS_PROCESSORS) or []
        dead_letter = _dead_letter(data, walk)
        result.config = {
            "backends": walk.backends(
                data[SETTINGS_BACKENDS],
                Where(SETTINGS_BACKENDS, "backends", value_line(data, SETTINGS_BACKENDS)),
            ),
            "processors": walk.processors(
                processors,
                Where(SETTINGS_PROCESSORS, "processors", value_line(data, SETTINGS_PROCESSORS)),
            ),
        }
        if dead_letter is not None:
            result.config["dead_letter"] = dead_letter
    else:
        result.config = {"backends": walk.backends(data, Where("", "backends", line_of(data, 1)))}
    return result


def _dead_letter(data: Mapping[Any, Any], walk: Walk) -> Any:
    """The dead-letter file named next to the settings (``EVENTROUTER_DEAD_LETTER``, or
    ``dead_letter`` as in our format), with its origin recorded; ``None`` if none is."""
    given = [key for key in (SETTINGS_DEAD_LETTER, "dead_letter") if data.get(key) is not None]
    if not given:
        return None
    if len(given) > 1:
        walk.problem(
            f"give the dead-letter file once: {SETTINGS_DEAD_LETTER} or dead_letter",
            "dead_letter",
            key_line(data, "dead_letter"),
        )
    walk.origin("dead_letter", given[0], value_line(data, given[0]))
    value = data[given[0]]
    return os.fspath(value) if isinstance(value, os.PathLike) else value


class Walk:
    """Walks the settings once, translating each node by its row, and records where every
    translated path came from."""

    def __init__(self, result: Translation) -> None:
        self.result = result

    def problem(
        self, message: str, path: str, line: int | None, refusal: Exception | None = None
    ) -> None:
        self.result.problems.append((message + " (in the event-tracking settings)", path, line))
        if refusal is not None:
            self.result.refusals.append(refusal)

    def note(self, text: str) -> None:
        self.result.notes.append(text)

    def warn(self, text: str) -> None:
        self.result.warnings.append(text)

    def origin(self, to: str, path: str, line: int | None) -> None:
        if to:
            self.result.origins[to] = (path, line)

    def option(self, options: Mapping[Any, Any], name: Any, where: Where, new: str) -> None:
        """Record that our option ``new`` of the node at ``where`` is ``name`` in ``options``."""
        self.origin(
            join(join(where.to, "options"), new),
            join(where.path, name),
            key_line(options, name),
        )

    def items(self, where: Where, new: str, name: str, value: Any, order: list[int]) -> None:
        """Record that item ``i`` of our option ``new`` is item ``order[i]`` of the settings
        list ``value`` (option ``name``)."""
        for i, j in enumerate(order):
            self.origin(
                f"{join(where.to, 'options')}.{new}[{i}]",
                f"{join(where.path, name)}[{j}]",
                value_line(value, j),
            )

    def backends(self, value: Any, where: Where) -> Any:
        self.origin(where.to, where.path, where.line)
        if not isinstance(value, Mapping):
            self.problem("the backends must be a dict of names to ENGINE dicts", *location(where))
            return {}
        return {
            name: self.node(
                child, join(where.path, name), join(where.to, name), value_line(value, name)
            )
            for name, child in value.items()
        }

    def processors(self, value: Any, where: Where) -> Any:
        self.origin(where.to, where.path, where.line)
        if isinstance(value, Mapping):  # event-tracking accepted any container of ENGINE dicts
            keys = sorted(value)
            return [
                self.node(value[k], join(where.path, k), f"{where.to}[{i}]", value_line(value, k))
                for i, k in enumerate(keys)
            ]
        if not isinstance(value, list | tuple):
            self.problem("the processors must be a list of ENGINE dicts", *location(where))
            return []
        return [
            self.node(child, f"{where.path}[{i}]", f"{where.to}[{i}]", value_line(value, i))
            for i, child in enumerate(value)
        ]

    def node(self, value: Any, path: str, to: str, line: int | None) -> dict[str, Any]:
        line = line_of(value, line)
        self.origin(to, path, line)
        if not is_engine(value):
            self.problem("expected a dict with an ENGINE key", path, line)
            return {"class": "router"}
        engine = value["ENGINE"]
        options = value.get("OPTIONS") or {}
        where = Where(
            join(path, "OPTIONS"),
            to,
            value_line(value, "OPTIONS") if "OPTIONS" in value else line,
        )
        engine_line = value_line(value, "ENGINE")
        self.origin(join(to, "class"), join(path, "ENGINE"), engine_line)
        self.origin(join(to, "options"), where.path, where.line)
        if not isinstance(engine, str) or not engine:
            self.problem(
                "ENGINE must be a dotted path to a class", join(path, "ENGINE"), engine_line
            )
            return {"class": "router"}
        if not isinstance(options, Mapping):
            self.problem("OPTIONS must be a dict of keyword arguments", *location(where))
            options = {}
        row = ROWS.get(engine)
        if row is None:
            return self.foreign(engine, options, where)
        if row.target == "router":
            return self.router(row, options, where)
        return self.row(row, options, where)

    def row(self, row: Row, options: Mapping[Any, Any], where: Where) -> dict[str, Any]:
        """A node of one of event-tracking's own (non-router) classes."""
        out: dict[str, Any] = {}
        ignored = [name for name in options if name not in row.options]
        if ignored and row.ignores_unknown:
            line = key_line(options, ignored[0])
            self.warn(
                f"{where.path}{f' (line {line})' if line else ''}: "
                f"{short_name(row.engine)} ignores the option(s) "
                f"{', '.join(repr(name) for name in ignored)}, as event-tracking did; "
                f"remove them"
            )
        for name, value in options.items():
            if name not in row.options:
                if not row.ignores_unknown:
                    self.unknown_option(row, options, name, where)
                continue
            new = row.options[name]
            if new is not None:
                out[new] = value
                self.option(options, name, where, new)
        node: dict[str, Any] = {"class": row.target}
        if row.special is not None:
            row.special(self, options, out, where)
        node["options"] = out
        return node

    def router(self, row: Row, options: Mapping[Any, Any], where: Where) -> dict[str, Any]:
        if row.engine.endswith("AsyncRoutingBackend"):
            self.note(
                f"{where.path}: AsyncRoutingBackend is translated to a synchronous router; its "
                f"`backend_name` (a Celery lookup key) is not needed"
            )
        for name in sorted(set(options) - set(row.options), key=str):
            self.unknown_option(row, options, name, where)
        node: dict[str, Any] = {"class": "router"}
        node["backends"] = self.backends(
            options.get("backends") or {},
            Where(
                join(where.path, "backends"),
                join(where.to, "backends"),
                value_line(options, "backends") if "backends" in options else where.line,
            ),
        )
        if options.get("processors"):
            node["processors"] = self.processors(
                options["processors"], self.child(options, "processors", where)
            )
        return node

    def unknown_option(self, row: Row, options: Mapping[Any, Any], name: Any, where: Where) -> None:
        """Report ``name``, an option the class does not take (its constructor raised
        ``TypeError`` for it)."""
        message = f"{short_name(row.engine)} has no option {name!r}"
        self.problem(message, join(where.path, name), key_line(options, name), TypeError(message))

    def child(self, options: Mapping[Any, Any], name: str, where: Where) -> Where:
        return Where(join(where.path, name), join(where.to, name), value_line(options, name))

    def foreign(self, engine: str, options: Mapping[Any, Any], where: Where) -> dict[str, Any]:
        """A class event-tracking does not define: built with the options it accepts; its
        ``backends`` and ``processors`` ENGINE dicts become its children."""
        children = [
            name
            for name in ("backends", "processors")
            if name in options and (is_engine(options[name]) or holds_engines(options[name]))
        ]
        plain: dict[str, Any] = {}
        for name, value in options.items():
            if name in children:
                continue
            if holds_engines(value) or is_engine(value):
                self.problem(
                    "an ENGINE dict inside OPTIONS is only supported under `backends` and "
                    "`processors`",
                    join(where.path, name),
                    key_line(options, name),
                )
            else:
                plain[name] = value
        if not children:
            for name in plain:
                self.option(options, name, where, name)
            return {"class": engine, "options": plain}
        node: dict[str, Any] = {"class": ENGINE_CLASS}
        for name in children:
            here = self.child(options, name, where)
            if name == "backends":
                node[name] = self.backends(options[name], here)
            else:
                node[name] = self.processors(options[name], here)
        inner = Where(where.path, join(where.to, "options"), where.line)
        for name in plain:
            self.option(options, name, inner, name)
        node["options"] = {"engine": engine, "options": plain}
        return node


def short_name(engine: str) -> str:
    return engine.rpartition(".")[2]


def holds_engines(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(is_engine(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_engine(v) for v in value)
    return False
