"""Translation of openedx event-tracking's Django-style settings into eventrouter's format.

event-tracking configures a tree of ``{"ENGINE": "dotted.Class", "OPTIONS": {...}}`` dicts
(``EVENT_TRACKING_BACKENDS``, ``EVENT_TRACKING_PROCESSORS``). Its own classes map to ours,
with their options renamed; any other ``ENGINE`` is imported as it is, so users' own
backends and processors keep working. event-tracking itself need not be installed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from eventrouter.config.read import LineDict, LineList

__all__ = ["Translation", "is_event_tracking", "original", "translate"]

log = logging.getLogger(__name__)

SETTINGS_BACKENDS = "EVENT_TRACKING_BACKENDS"
SETTINGS_PROCESSORS = "EVENT_TRACKING_PROCESSORS"

ROUTERS = {
    "eventtracking.backends.routing.RoutingBackend",
    "eventtracking.backends.async_routing.AsyncRoutingBackend",
}


@dataclass
class Translation:
    """The translated configuration, remarks worth logging, and problems.

    ``problems`` are ``(message, path, line)`` with the path in the settings as written.
    ``origins`` maps a path of the translated configuration (``backends.x.options.logger_name``)
    to the path in the settings it came from (``x.OPTIONS.name``) and its line (``None`` when
    the settings were not read from a file); see :func:`original`.
    """

    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    problems: list[tuple[str, str, int | None]] = field(default_factory=list)
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


def _key_line(container: Any, key: Any) -> int | None:
    if isinstance(container, LineDict):
        return container.key_lines.get(key, container.line)
    return None


def _value_line(container: Any, key: Any) -> int | None:
    if isinstance(container, LineDict):
        return container.value_lines.get(key, container.line)
    if isinstance(container, LineList) and isinstance(key, int) and key < len(container):
        return container.item_lines[key]
    return None


def _line(value: Any, fallback: int | None) -> int | None:
    if isinstance(value, LineDict | LineList) and value.line is not None:
        return value.line
    return fallback


def _is_engine(value: Any) -> bool:
    return isinstance(value, Mapping) and "ENGINE" in value


def is_event_tracking(data: Mapping[Any, Any]) -> bool:
    """Whether ``data`` is event-tracking settings rather than an eventrouter configuration.

    True for a single ``ENGINE`` dict, a mapping holding ``EVENT_TRACKING_BACKENDS``, or a
    non-empty mapping of names to ``ENGINE`` dicts (the value of ``EVENT_TRACKING_BACKENDS``).
    """
    if "ENGINE" in data or SETTINGS_BACKENDS in data:
        return True
    return bool(data) and all(_is_engine(v) for v in data.values())


def translate(data: Mapping[Any, Any]) -> Translation:
    """Translate event-tracking settings (see :func:`is_event_tracking`) into our format."""
    result = Translation({})
    translator = _Translator(result)
    if "ENGINE" in data:
        routed = data["ENGINE"] in ROUTERS
        node = translator.node(data, "", "" if routed else "backends.default", _line(data, None))
        if node.get("class") == "router":
            result.config = {k: v for k, v in node.items() if k in ("backends", "processors")}
        else:
            result.config = {"backends": {"default": node}}
        return result
    if SETTINGS_BACKENDS in data:
        backends = data[SETTINGS_BACKENDS]
        processors = data.get(SETTINGS_PROCESSORS) or []
        result.config = {
            "backends": translator.backends(
                backends, SETTINGS_BACKENDS, "backends", _value_line(data, SETTINGS_BACKENDS)
            ),
            "processors": translator.processors(
                processors,
                SETTINGS_PROCESSORS,
                "processors",
                _value_line(data, SETTINGS_PROCESSORS),
            ),
        }
    else:
        result.config = {"backends": translator.backends(data, "", "backends", _line(data, 1))}
    return result


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


class _Translator:
    """Translates nodes; every method takes the settings path (``path``) and, where it makes
    a node, the path of that node in the translated configuration (``to``)."""

    def __init__(self, result: Translation) -> None:
        self.result = result
        self.engines: dict[
            str, Callable[[Mapping[str, Any], str, str, int | None], dict[str, Any]]
        ] = {
            "eventtracking.backends.logger.LoggerBackend": self.logger,
            "eventtracking.backends.mongodb.MongoBackend": self.mongodb,
            "eventtracking.backends.segment.SegmentBackend": self.segment,
            "eventtracking.processors.whitelist.NameWhitelistProcessor": self.whitelist,
            "eventtracking.processors.regex_filter.RegexFilter": self.regex_filter,
        }

    def problem(self, message: str, path: str, line: int | None) -> None:
        self.result.problems.append((message + " (in the event-tracking settings)", path, line))

    def origin(self, to: str, path: str, line: int | None) -> None:
        if to:
            self.result.origins[to] = (path, line)

    def option(self, options: Mapping[Any, Any], name: Any, path: str, to: str, new: Any) -> None:
        """Record that option ``new`` of the node at ``to`` is ``name`` in ``options``."""
        self.origin(_join(_join(to, "options"), new), _join(path, name), _key_line(options, name))

    def backends(self, value: Any, path: str, to: str, line: int | None) -> Any:
        self.origin(to, path, line)
        if not isinstance(value, Mapping):
            self.problem("the backends must be a dict of names to ENGINE dicts", path, line)
            return {}
        return {
            name: self.node(child, _join(path, name), _join(to, name), _value_line(value, name))
            for name, child in value.items()
        }

    def processors(self, value: Any, path: str, to: str, line: int | None) -> Any:
        self.origin(to, path, line)
        if isinstance(value, Mapping):  # event-tracking accepted any container of ENGINE dicts
            keys = sorted(value)
            return [
                self.node(value[k], _join(path, k), f"{to}[{i}]", _value_line(value, k))
                for i, k in enumerate(keys)
            ]
        if not isinstance(value, list | tuple):
            self.problem("the processors must be a list of ENGINE dicts", path, line)
            return []
        return [
            self.node(child, f"{path}[{i}]", f"{to}[{i}]", _value_line(value, i))
            for i, child in enumerate(value)
        ]

    def node(self, value: Any, path: str, to: str, line: int | None) -> dict[str, Any]:
        line = _line(value, line)
        self.origin(to, path, line)
        if not _is_engine(value):
            self.problem("expected a dict with an ENGINE key", path, line)
            return {"class": "router"}
        engine = value["ENGINE"]
        options = value.get("OPTIONS") or {}
        options_path = _join(path, "OPTIONS")
        options_line = _value_line(value, "OPTIONS") if "OPTIONS" in value else line
        engine_line = _value_line(value, "ENGINE")
        self.origin(_join(to, "class"), _join(path, "ENGINE"), engine_line)
        self.origin(_join(to, "options"), options_path, options_line)
        if not isinstance(engine, str) or not engine:
            self.problem(
                "ENGINE must be a dotted path to a class", _join(path, "ENGINE"), engine_line
            )
            return {"class": "router"}
        if not isinstance(options, Mapping):
            self.problem("OPTIONS must be a dict of keyword arguments", options_path, options_line)
            options = {}
        if engine in ROUTERS:
            return self.router(engine, options, options_path, to, options_line)
        convert = self.engines.get(engine)
        if convert is not None:
            return convert(options, options_path, to, options_line)
        return self.foreign(engine, options, options_path, to, options_line)

    def router(
        self, engine: str, options: Mapping[str, Any], path: str, to: str, line: int | None
    ) -> dict[str, Any]:
        node: dict[str, Any] = {"class": "router"}
        if engine.endswith("AsyncRoutingBackend"):
            self.result.notes.append(
                f"{path}: AsyncRoutingBackend is translated to a synchronous router; its "
                f"`backend_name` (a Celery lookup key) is not needed"
            )
        unknown = set(options) - {"backends", "processors", "backend_name"}
        for name in sorted(unknown):
            self.problem(
                f"RoutingBackend has no option {name!r}",
                _join(path, name),
                _key_line(options, name),
            )
        node["backends"] = self.backends(
            options.get("backends") or {},
            _join(path, "backends"),
            _join(to, "backends"),
            _value_line(options, "backends") if "backends" in options else line,
        )
        if options.get("processors"):
            node["processors"] = self.processors(
                options["processors"],
                _join(path, "processors"),
                _join(to, "processors"),
                _value_line(options, "processors"),
            )
        return node

    def foreign(
        self, engine: str, options: Mapping[str, Any], path: str, to: str, line: int | None
    ) -> dict[str, Any]:
        node: dict[str, Any] = {"class": engine}
        plain: dict[str, Any] = {}
        for name, value in options.items():
            here, value_line = _join(path, name), _value_line(options, name)
            if name in ("backends", "processors") and (_is_engine(value) or _holds_engines(value)):
                node[name] = (
                    self.backends(value, here, _join(to, name), value_line)
                    if name == "backends"
                    else self.processors(value, here, _join(to, name), value_line)
                )
            elif _holds_engines(value) or _is_engine(value):
                self.problem(
                    "an ENGINE dict inside OPTIONS is only supported under `backends` and "
                    "`processors`",
                    here,
                    _key_line(options, name),
                )
            else:
                plain[name] = value
                self.option(options, name, path, to, name)
        if plain or "backends" not in node:
            node["options"] = plain
        return node

    def logger(
        self, options: Mapping[str, Any], path: str, to: str, line: int | None
    ) -> dict[str, Any]:
        renamed = {"name": "logger_name", "level": "level", "max_event_size": "max_event_size"}
        out: dict[str, Any] = {}
        for name, value in options.items():
            if name in renamed:
                out[renamed[name]] = value
                self.option(options, name, path, to, renamed[name])
            else:
                self.problem(
                    f"LoggerBackend has no option {name!r}",
                    _join(path, name),
                    _key_line(options, name),
                )
        # event-tracking's LoggerBackend without a `name` logs to the root logger.
        out.setdefault("logger_name", "")
        return {"class": "jsonlog", "options": out}

    def mongodb(
        self, options: Mapping[str, Any], path: str, to: str, line: int | None
    ) -> dict[str, Any]:
        known = {"host", "port", "user", "password", "database", "collection", "extra"}
        for name in sorted(set(options) - known):
            self.problem(
                f"MongoBackend has no option {name!r}", _join(path, name), _key_line(options, name)
            )
        for name in ("database", "collection"):
            if name in options:
                self.option(options, name, path, to, name)
        if "host" in options:
            self.option(options, "host", path, to, "uri")
        raw_host = options.get("host") or "localhost"
        port = options.get("port") or 27017
        user = options.get("user") or ""
        password = options.get("password") or ""
        credentials = ""
        if user or password:
            credentials = f"{quote(str(user), safe='')}:{quote(str(password), safe='')}@"
        if isinstance(raw_host, list | tuple):
            # MongoClient(host=[...], port=p) gives the port to every host written without one.
            hosts = [str(h) for h in raw_host]
            host = ",".join(h if ":" in h else f"{h}:{port}" for h in hosts)
            if any("://" in h for h in hosts):
                self.problem(
                    "a list of hosts must hold host names, not URIs",
                    _join(path, "host"),
                    _value_line(options, "host"),
                )
            address = f"mongodb://{credentials}{host}"
        else:
            host = str(raw_host)
            address = (
                _with_credentials(host, credentials)
                if "://" in host
                else f"mongodb://{credentials}{host}:{port}"
            )
        out: dict[str, Any] = {
            "uri": address,
            "database": options.get("database") or "eventtracking",
            "collection": options.get("collection") or "events",
        }
        extra = options.get("extra") or {}
        extra_path = _join(path, "extra")
        if not isinstance(extra, Mapping):
            self.problem(
                "`extra` must be a dict of MongoClient options",
                extra_path,
                _value_line(options, "extra"),
            )
            extra = {}
        for name, value in extra.items():
            if name == "w":
                self.result.notes.append(
                    f"{path}.extra.w: write acknowledgement is eventrouter's `write_concern` "
                    f"option; event-tracking's w=0 default is not carried over"
                )
                out["write_concern"] = {"w": value}
                self.option(extra, name, extra_path, to, "write_concern")
            else:
                out[name] = value
                self.option(extra, name, extra_path, to, name)
        return {"class": "mongodb", "options": out}

    def segment(
        self, options: Mapping[str, Any], path: str, to: str, line: int | None
    ) -> dict[str, Any]:
        out = dict(options)
        for name in options:
            self.option(options, name, path, to, name)
        if "write_key" not in out:
            # event-tracking relied on `analytics.write_key` being set elsewhere (edx-platform
            # sets it from LMS_SEGMENT_KEY); use it when it is, else switch the node off.
            write_key = _analytics_write_key()
            if write_key:
                out["write_key"] = write_key
            else:
                self.result.notes.append(
                    f"{path}: SegmentBackend is disabled: no write key (event-tracking read "
                    f"analytics.write_key, which is not set); add OPTIONS.write_key"
                )
                return {"class": "segment", "enabled": False, "options": out}
        return {"class": "segment", "options": out}

    def whitelist(
        self, options: Mapping[str, Any], path: str, to: str, line: int | None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in options.items():
            if name == "whitelist":
                self.option(options, name, path, to, "allow")
                if isinstance(value, list | tuple | set):
                    items = list(value)
                    out["allow"] = [_exact_name(v) for v in items]
                    self.items(to, "allow", _join(path, name), value, list(range(len(items))))
                else:
                    out["allow"] = value
            else:
                self.problem(
                    f"NameWhitelistProcessor has no option {name!r}",
                    _join(path, name),
                    _key_line(options, name),
                )
        if "allow" not in out:
            self.problem("NameWhitelistProcessor needs the option 'whitelist'", path, line)
        return {"class": "name_filter", "options": out}

    def items(self, to: str, new: str, path: str, value: Any, order: list[int]) -> None:
        """Record that item ``i`` of option ``new`` of the node at ``to`` is item ``order[i]``
        of the settings list ``value`` at ``path``."""
        for i, j in enumerate(order):
            self.origin(f"{_join(to, 'options')}.{new}[{i}]", f"{path}[{j}]", _value_line(value, j))

    def regex_filter(
        self, options: Mapping[str, Any], path: str, to: str, line: int | None
    ) -> dict[str, Any]:
        filter_type = options.get("filter_type", "allowlist")
        expressions = options.get("regular_expressions") or []
        for name in sorted(set(options) - {"filter_type", "regular_expressions"}):
            self.problem(
                f"RegexFilter has no option {name!r}", _join(path, name), _key_line(options, name)
            )
        if filter_type not in ("allowlist", "blocklist"):
            self.problem(
                f"filter_type must be 'allowlist' or 'blocklist', not {filter_type!r}",
                _join(path, "filter_type"),
                _value_line(options, "filter_type"),
            )
            filter_type = "allowlist"
        if isinstance(expressions, str) or not isinstance(expressions, list | tuple | set):
            self.problem(
                "regular_expressions must be a list of regular expressions",
                _join(path, "regular_expressions"),
                _value_line(options, "regular_expressions"),
            )
            expressions = []
        key = "allow" if filter_type == "allowlist" else "block"
        if "regular_expressions" in options:
            self.option(options, "regular_expressions", path, to, key)
        # RegexFilter used re.match: anchored at the start, open at the end. Global inline
        # flags, e.g. (?i), must stay at the very start of the expression.
        ordered = sorted(enumerate(expressions), key=lambda item: str(item[1]))
        patterns = [_anchored(str(expression)) for _, expression in ordered]
        if isinstance(expressions, list | tuple):
            self.items(
                to, key, _join(path, "regular_expressions"), expressions, [j for j, _ in ordered]
            )
        return {"class": "name_filter", "options": {key: patterns}}


_LEADING_FLAGS = re.compile(r"(?:\(\?[aiLmsux]+\))+")
_SPECIAL_NAME = re.compile(r"\*|(?:^|\.)#(?:\.|$)")


def _anchored(expression: str) -> str:
    """``re:`` pattern that fullmatches what ``re.match(expression, name)`` matched."""
    flags = _LEADING_FLAGS.match(expression)
    prefix = flags.group(0) if flags else ""
    return f"re:{prefix}(?:{expression[len(prefix) :]}).*"


def _exact_name(name: Any) -> Any:
    """A pattern matching exactly ``name`` (NameWhitelistProcessor compared names with
    ``in``): plain when our syntax reads it literally, else an escaped ``re:`` pattern."""
    if not isinstance(name, str):
        return name
    if name and not name.startswith("re:") and not _SPECIAL_NAME.search(name):
        return name
    return "re:" + (re.escape(name) or "^$")


def _with_credentials(uri: str, credentials: str) -> str:
    """``uri`` with ``credentials`` (``user:password@``) as userinfo, unless it has some."""
    if not credentials:
        return uri
    scheme, _, rest = uri.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        return uri
    return f"{scheme}://{credentials}{rest}"


def _holds_engines(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(_is_engine(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_is_engine(v) for v in value)
    return False


def _analytics_write_key() -> str | None:
    try:
        import analytics  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    key = getattr(analytics, "write_key", None)
    return key if isinstance(key, str) and key else None
