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

__all__ = ["Translation", "is_event_tracking", "translate"]

log = logging.getLogger(__name__)

SETTINGS_BACKENDS = "EVENT_TRACKING_BACKENDS"
SETTINGS_PROCESSORS = "EVENT_TRACKING_PROCESSORS"

ROUTERS = {
    "eventtracking.backends.routing.RoutingBackend",
    "eventtracking.backends.async_routing.AsyncRoutingBackend",
}


@dataclass
class Translation:
    """The translated configuration, remarks worth logging, and problems (message, path)."""

    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


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
    if "ENGINE" in data:
        node = _Translator(result).node(data, "")
        if node.get("class") == "router":
            result.config = {k: v for k, v in node.items() if k in ("backends", "processors")}
        else:
            result.config = {"backends": {"default": node}}
        return result
    translator = _Translator(result)
    if SETTINGS_BACKENDS in data:
        backends = data[SETTINGS_BACKENDS]
        processors = data.get(SETTINGS_PROCESSORS) or []
        result.config = {
            "backends": translator.backends(backends, SETTINGS_BACKENDS),
            "processors": translator.processors(processors, SETTINGS_PROCESSORS),
        }
    else:
        result.config = {"backends": translator.backends(data, "")}
    return result


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


class _Translator:
    def __init__(self, result: Translation) -> None:
        self.result = result
        self.engines: dict[str, Callable[[Mapping[str, Any], str], dict[str, Any]]] = {
            "eventtracking.backends.logger.LoggerBackend": self.logger,
            "eventtracking.backends.mongodb.MongoBackend": self.mongodb,
            "eventtracking.backends.segment.SegmentBackend": self.segment,
            "eventtracking.processors.whitelist.NameWhitelistProcessor": self.whitelist,
            "eventtracking.processors.regex_filter.RegexFilter": self.regex_filter,
        }

    def problem(self, message: str, path: str) -> None:
        self.result.problems.append((message + " (in the event-tracking settings)", path))

    def backends(self, value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            self.problem("the backends must be a dict of names to ENGINE dicts", path)
            return {}
        return {name: self.node(child, _join(path, name)) for name, child in value.items()}

    def processors(self, value: Any, path: str) -> Any:
        if isinstance(value, Mapping):  # event-tracking accepted any container of ENGINE dicts
            value = [value[k] for k in sorted(value)]
        if not isinstance(value, list | tuple):
            self.problem("the processors must be a list of ENGINE dicts", path)
            return []
        return [self.node(child, f"{path}[{i}]") for i, child in enumerate(value)]

    def node(self, value: Any, path: str) -> dict[str, Any]:
        if not _is_engine(value):
            self.problem("expected a dict with an ENGINE key", path)
            return {"class": "router"}
        engine = value["ENGINE"]
        options = value.get("OPTIONS") or {}
        options_path = _join(path, "OPTIONS")
        if not isinstance(engine, str) or not engine:
            self.problem("ENGINE must be a dotted path to a class", _join(path, "ENGINE"))
            return {"class": "router"}
        if not isinstance(options, Mapping):
            self.problem("OPTIONS must be a dict of keyword arguments", options_path)
            options = {}
        if engine in ROUTERS:
            return self.router(engine, options, options_path)
        convert = self.engines.get(engine)
        if convert is not None:
            return convert(options, options_path)
        return self.foreign(engine, options, options_path)

    def router(self, engine: str, options: Mapping[str, Any], path: str) -> dict[str, Any]:
        node: dict[str, Any] = {"class": "router"}
        if engine.endswith("AsyncRoutingBackend"):
            self.result.notes.append(
                f"{path}: AsyncRoutingBackend is translated to a synchronous router; its "
                f"`backend_name` (a Celery lookup key) is not needed"
            )
        unknown = set(options) - {"backends", "processors", "backend_name"}
        for name in sorted(unknown):
            self.problem(f"RoutingBackend has no option {name!r}", _join(path, name))
        node["backends"] = self.backends(options.get("backends") or {}, _join(path, "backends"))
        if options.get("processors"):
            node["processors"] = self.processors(options["processors"], _join(path, "processors"))
        return node

    def foreign(self, engine: str, options: Mapping[str, Any], path: str) -> dict[str, Any]:
        node: dict[str, Any] = {"class": engine}
        plain: dict[str, Any] = {}
        for name, value in options.items():
            if name in ("backends", "processors") and (_is_engine(value) or _holds_engines(value)):
                node[name] = (
                    self.backends(value, _join(path, name))
                    if name == "backends"
                    else self.processors(value, _join(path, name))
                )
            elif _holds_engines(value) or _is_engine(value):
                self.problem(
                    "an ENGINE dict inside OPTIONS is only supported under `backends` and "
                    "`processors`",
                    _join(path, name),
                )
            else:
                plain[name] = value
        if plain or "backends" not in node:
            node["options"] = plain
        return node

    def logger(self, options: Mapping[str, Any], path: str) -> dict[str, Any]:
        renamed = {"name": "logger_name", "level": "level", "max_event_size": "max_event_size"}
        out: dict[str, Any] = {}
        for name, value in options.items():
            if name in renamed:
                out[renamed[name]] = value
            else:
                self.problem(f"LoggerBackend has no option {name!r}", _join(path, name))
        # event-tracking's LoggerBackend without a `name` logs to the root logger.
        out.setdefault("logger_name", "")
        return {"class": "jsonlog", "options": out}

    def mongodb(self, options: Mapping[str, Any], path: str) -> dict[str, Any]:
        known = {"host", "port", "user", "password", "database", "collection", "extra"}
        for name in sorted(set(options) - known):
            self.problem(f"MongoBackend has no option {name!r}", _join(path, name))
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
                self.problem("a list of hosts must hold host names, not URIs", _join(path, "host"))
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
        if not isinstance(extra, Mapping):
            self.problem("`extra` must be a dict of MongoClient options", _join(path, "extra"))
            extra = {}
        for name, value in extra.items():
            if name == "w":
                self.result.notes.append(
                    f"{path}.extra.w: write acknowledgement is eventrouter's `write_concern` "
                    f"option; event-tracking's w=0 default is not carried over"
                )
                out["write_concern"] = {"w": value}
            else:
                out[name] = value
        return {"class": "mongodb", "options": out}

    def segment(self, options: Mapping[str, Any], path: str) -> dict[str, Any]:
        out = dict(options)
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

    def whitelist(self, options: Mapping[str, Any], path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in options.items():
            if name == "whitelist":
                out["allow"] = (
                    [_exact_name(v) for v in value]
                    if isinstance(value, list | tuple | set)
                    else value
                )
            else:
                self.problem(f"NameWhitelistProcessor has no option {name!r}", _join(path, name))
        if "allow" not in out:
            self.problem("NameWhitelistProcessor needs the option 'whitelist'", path)
        return {"class": "name_filter", "options": out}

    def regex_filter(self, options: Mapping[str, Any], path: str) -> dict[str, Any]:
        filter_type = options.get("filter_type", "allowlist")
        expressions = options.get("regular_expressions") or []
        for name in sorted(set(options) - {"filter_type", "regular_expressions"}):
            self.problem(f"RegexFilter has no option {name!r}", _join(path, name))
        if filter_type not in ("allowlist", "blocklist"):
            self.problem(
                f"filter_type must be 'allowlist' or 'blocklist', not {filter_type!r}",
                _join(path, "filter_type"),
            )
            filter_type = "allowlist"
        if isinstance(expressions, str) or not isinstance(expressions, list | tuple | set):
            self.problem(
                "regular_expressions must be a list of regular expressions",
                _join(path, "regular_expressions"),
            )
            expressions = []
        # RegexFilter used re.match: anchored at the start, open at the end. Global inline
        # flags, e.g. (?i), must stay at the very start of the expression.
        patterns = [_anchored(str(expression)) for expression in sorted(expressions, key=str)]
        key = "allow" if filter_type == "allowlist" else "block"
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
