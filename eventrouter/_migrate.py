"""Translation of openedx event-tracking's Django-style settings into eventrouter's format.

event-tracking configures a tree of ``{"ENGINE": "dotted.Class", "OPTIONS": {...}}`` dicts
(``EVENT_TRACKING_BACKENDS``, ``EVENT_TRACKING_PROCESSORS``). Each of its own classes has a
row in :data:`ROWS`: the class of ours it becomes, how its options are renamed, and, for the
few that need one, a small function for what a rename cannot say. Any other ``ENGINE`` is
imported as it is, so users' own backends and processors keep working; ``backends`` and
``processors`` given to it as ENGINE dicts are built as its children when its constructor
takes them (see :class:`Engine`). event-tracking itself need not be installed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from eventrouter._typecheck import Parameters, kind_of
from eventrouter._yaml import LineDict, LineList

if TYPE_CHECKING:
    from eventrouter.tracker import Tracker

__all__ = [
    "ROWS",
    "Engine",
    "Row",
    "Translation",
    "build_engine",
    "is_event_tracking",
    "load_settings",
    "original",
    "translate",
]

log = logging.getLogger(__name__)

SETTINGS_BACKENDS = "EVENT_TRACKING_BACKENDS"
SETTINGS_PROCESSORS = "EVENT_TRACKING_PROCESSORS"

#: event-tracking's LoggerBackend dropped events whose JSON was longer than this by default.
EVENT_TRACKING_MAX_EVENT_SIZE = 1024

_WHITELIST_REFUSAL = (
    'The NameWhitelistProcessor must be passed a collection of allowed names using the "whitelist" '
    "parameter"
)


@dataclass
class Translation:
    """The translated configuration, remarks worth logging, and problems.

    ``problems`` are ``(message, path, line)`` with the path in the settings as written.
    ``refusals`` hold, for the problems event-tracking's own constructor refused too, the
    exception it raised (its type, or a subclass), so :func:`build_engine` raises the same.
    ``origins`` maps a path of the translated configuration (``backends.x.options.logger_name``)
    to the path in the settings it came from (``x.OPTIONS.name``) and its line (``None`` when
    the settings were not read from a file); see :func:`original`.
    """

    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    problems: list[tuple[str, str, int | None]] = field(default_factory=list)
    refusals: list[Exception] = field(default_factory=list)
    origins: dict[str, tuple[str, int | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Where:
    """A node's options: their path in the settings, the translated node's path, the line."""

    path: str
    to: str
    line: int | None


@dataclass(frozen=True)
class Row:
    """How one event-tracking class is translated.

    Attributes:
        engine: its dotted path, as written in ``ENGINE``.
        kind: ``"backend"`` or ``"processor"``.
        target: the short name of our class it becomes.
        options: every option it accepts, mapped to our option's name; ``None`` for an
            option that ``special`` translates (or that has no equivalent).
        note: what differs, for the documentation.
        special: ``special(walk, options, out, where)`` completes ``out`` (our options)
            from ``options`` (as written) where a rename is not enough.
    """

    engine: str
    kind: Literal["backend", "processor"]
    target: str
    options: Mapping[str, str | None]
    note: str
    special: Callable[[_Walk, Mapping[Any, Any], dict[str, Any], _Where], None] | None = None


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


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


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
    walk = _Walk(result)
    if "ENGINE" in data:
        row = ROWS.get(data["ENGINE"]) if isinstance(data["ENGINE"], str) else None
        routed = row is not None and row.target == "router"
        node = walk.node(data, "", "" if routed else "backends.default", _line(data, None))
        if routed:
            result.config = {k: v for k, v in node.items() if k in ("backends", "processors")}
        else:
            result.config = {"backends": {"default": node}}
        return result
    if SETTINGS_BACKENDS in data:
        processors = data.get(SETTINGS_PROCESSORS) or []
        result.config = {
            "backends": walk.backends(
                data[SETTINGS_BACKENDS],
                _Where(SETTINGS_BACKENDS, "backends", _value_line(data, SETTINGS_BACKENDS)),
            ),
            "processors": walk.processors(
                processors,
                _Where(SETTINGS_PROCESSORS, "processors", _value_line(data, SETTINGS_PROCESSORS)),
            ),
        }
    else:
        result.config = {"backends": walk.backends(data, _Where("", "backends", _line(data, 1)))}
    return result


class _Walk:
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

    def origin(self, to: str, path: str, line: int | None) -> None:
        if to:
            self.result.origins[to] = (path, line)

    def option(self, options: Mapping[Any, Any], name: Any, where: _Where, new: str) -> None:
        """Record that our option ``new`` of the node at ``where`` is ``name`` in ``options``."""
        self.origin(
            _join(_join(where.to, "options"), new),
            _join(where.path, name),
            _key_line(options, name),
        )

    def items(self, where: _Where, new: str, name: str, value: Any, order: list[int]) -> None:
        """Record that item ``i`` of our option ``new`` is item ``order[i]`` of the settings
        list ``value`` (option ``name``)."""
        for i, j in enumerate(order):
            self.origin(
                f"{_join(where.to, 'options')}.{new}[{i}]",
                f"{_join(where.path, name)}[{j}]",
                _value_line(value, j),
            )

    def backends(self, value: Any, where: _Where) -> Any:
        self.origin(where.to, where.path, where.line)
        if not isinstance(value, Mapping):
            self.problem("the backends must be a dict of names to ENGINE dicts", *_at(where))
            return {}
        return {
            name: self.node(
                child, _join(where.path, name), _join(where.to, name), _value_line(value, name)
            )
            for name, child in value.items()
        }

    def processors(self, value: Any, where: _Where) -> Any:
        self.origin(where.to, where.path, where.line)
        if isinstance(value, Mapping):  # event-tracking accepted any container of ENGINE dicts
            keys = sorted(value)
            return [
                self.node(value[k], _join(where.path, k), f"{where.to}[{i}]", _value_line(value, k))
                for i, k in enumerate(keys)
            ]
        if not isinstance(value, list | tuple):
            self.problem("the processors must be a list of ENGINE dicts", *_at(where))
            return []
        return [
            self.node(child, f"{where.path}[{i}]", f"{where.to}[{i}]", _value_line(value, i))
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
        where = _Where(
            _join(path, "OPTIONS"),
            to,
            _value_line(value, "OPTIONS") if "OPTIONS" in value else line,
        )
        engine_line = _value_line(value, "ENGINE")
        self.origin(_join(to, "class"), _join(path, "ENGINE"), engine_line)
        self.origin(_join(to, "options"), where.path, where.line)
        if not isinstance(engine, str) or not engine:
            self.problem(
                "ENGINE must be a dotted path to a class", _join(path, "ENGINE"), engine_line
            )
            return {"class": "router"}
        if not isinstance(options, Mapping):
            self.problem("OPTIONS must be a dict of keyword arguments", *_at(where))
            options = {}
        row = ROWS.get(engine)
        if row is None:
            return self.foreign(engine, options, where)
        if row.target == "router":
            return self.router(row, options, where)
        return self.row(row, options, where)

    def row(self, row: Row, options: Mapping[Any, Any], where: _Where) -> dict[str, Any]:
        """A node of one of event-tracking's own (non-router) classes."""
        out: dict[str, Any] = {}
        for name, value in options.items():
            if name not in row.options:
                self.problem(
                    f"{_short(row.engine)} has no option {name!r}",
                    _join(where.path, name),
                    _key_line(options, name),
                )
                continue
            new = row.options[name]
            if new is not None:
                out[new] = value
                self.option(options, name, where, new)
        node: dict[str, Any] = {"class": row.target}
        if row.special is not None:
            row.special(self, options, out, where)
            if out.pop(_DISABLED, False):
                node["enabled"] = False
        node["options"] = out
        return node

    def router(self, row: Row, options: Mapping[Any, Any], where: _Where) -> dict[str, Any]:
        if row.engine.endswith("AsyncRoutingBackend"):
            self.note(
                f"{where.path}: AsyncRoutingBackend is translated to a synchronous router; its "
                f"`backend_name` (a Celery lookup key) is not needed"
            )
        for name in sorted(set(options) - set(row.options), key=str):
            self.problem(
                f"{_short(row.engine)} has no option {name!r}",
                _join(where.path, name),
                _key_line(options, name),
            )
        node: dict[str, Any] = {"class": "router"}
        node["backends"] = self.backends(
            options.get("backends") or {},
            _Where(
                _join(where.path, "backends"),
                _join(where.to, "backends"),
                _value_line(options, "backends") if "backends" in options else where.line,
            ),
        )
        if options.get("processors"):
            node["processors"] = self.processors(
                options["processors"], self.child(options, "processors", where)
            )
        return node

    def child(self, options: Mapping[Any, Any], name: str, where: _Where) -> _Where:
        return _Where(_join(where.path, name), _join(where.to, name), _value_line(options, name))

    def foreign(self, engine: str, options: Mapping[Any, Any], where: _Where) -> dict[str, Any]:
        """A class event-tracking does not define: built with the options it accepts; its
        ``backends`` and ``processors`` ENGINE dicts become its children."""
        children = [
            name
            for name in ("backends", "processors")
            if name in options and (_is_engine(options[name]) or _holds_engines(options[name]))
        ]
        plain: dict[str, Any] = {}
        for name, value in options.items():
            if name in children:
                continue
            if _holds_engines(value) or _is_engine(value):
                self.problem(
                    "an ENGINE dict inside OPTIONS is only supported under `backends` and "
                    "`processors`",
                    _join(where.path, name),
                    _key_line(options, name),
                )
            else:
                plain[name] = value
        if not children:
            for name in plain:
                self.option(options, name, where, name)
            return {"class": engine, "options": plain}
        node: dict[str, Any] = {"class": _ENGINE_CLASS}
        for name in children:
            here = self.child(options, name, where)
            if name == "backends":
                node[name] = self.backends(options[name], here)
            else:
                node[name] = self.processors(options[name], here)
        inner = _Where(where.path, _join(where.to, "options"), where.line)
        for name in plain:
            self.option(options, name, inner, name)
        node["options"] = {"engine": engine, "options": plain}
        return node


def _at(where: _Where) -> tuple[str, int | None]:
    return where.path, where.line


def _short(engine: str) -> str:
    return engine.rpartition(".")[2]


def _holds_engines(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(_is_engine(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_is_engine(v) for v in value)
    return False


_DISABLED = "\0disabled"  # set in ``out`` by a special function to switch the node off


def _takes(kind: Literal["backend", "processor"], name: str, option: str) -> bool:
    """Whether our class ``name`` names ``option`` as a parameter (so a translation only sets
    options that the installed version knows; ``**kwargs`` does not count)."""
    from eventrouter import registry

    try:
        params = Parameters.of(registry.resolve(kind, name))
    except Exception:
        return False
    return params is not None and option in params.names


def _requires(kind: Literal["backend", "processor"], name: str, option: str) -> bool:
    from eventrouter import registry

    try:
        params = Parameters.of(registry.resolve(kind, name))
    except Exception:
        return False
    return params is not None and option in params.required


# -- the special cases --------------------------------------------------------------------


def _logger(walk: _Walk, options: Mapping[Any, Any], out: dict[str, Any], where: _Where) -> None:
    # event-tracking's LoggerBackend without a `name` logs to the root logger, drops (not
    # truncates) events whose whole JSON is longer than max_event_size (1 KB unless given),
    # and writes json.dumps' default separators.
    out.setdefault("logger_name", "")
    out.setdefault("max_event_size", EVENT_TRACKING_MAX_EVENT_SIZE)
    if isinstance(out.get("level"), str):
        out["level"] = out["level"].upper()
    for option, value in (("oversize", "drop"), ("line_format", "event-tracking")):
        if _takes("backend", "jsonlog", option):
            out[option] = value


def _mongodb(walk: _Walk, options: Mapping[Any, Any], out: dict[str, Any], where: _Where) -> None:
    if "host" in options:
        walk.option(options, "host", where, "uri")
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
        if any("://" in h for h in hosts):
            walk.problem(
                "a list of hosts must hold host names, not URIs",
                _join(where.path, "host"),
                _value_line(options, "host"),
            )
        joined = ",".join(h if ":" in h else f"{h}:{port}" for h in hosts)
        out["uri"] = f"mongodb://{credentials}{joined}"
    else:
        host = str(raw_host)
        out["uri"] = (
            _with_credentials(host, credentials)
            if "://" in host
            else f"mongodb://{credentials}{host}:{port}"
        )
    out.setdefault("database", "eventtracking")
    out.setdefault("collection", "events")
    extra = options.get("extra") or {}
    extra_where = _Where(_join(where.path, "extra"), where.to, _value_line(options, "extra"))
    if not isinstance(extra, Mapping):
        walk.problem("`extra` must be a dict of MongoClient options", *_at(extra_where))
        extra = {}
    for name, value in extra.items():
        if name == "w":
            walk.note(
                f"{where.path}.extra.w: write acknowledgement is eventrouter's `write_concern` "
                f"option; event-tracking's w=0 default is not carried over"
            )
            out["write_concern"] = {"w": value}
            walk.option(extra, name, extra_where, "write_concern")
        else:
            out[name] = value
            walk.option(extra, name, extra_where, name)
    if _takes("backend", "mongodb", "indexes"):
        out["indexes"] = "event-tracking"  # a descending `time` and an ascending `name` index


def _segment(walk: _Walk, options: Mapping[Any, Any], out: dict[str, Any], where: _Where) -> None:
    if "write_key" in out or not _requires("backend", "segment", "write_key"):
        return  # the backend reads the `analytics` module's settings at first use
    # event-tracking relied on `analytics.write_key` being set elsewhere (edx-platform sets it
    # from LMS_SEGMENT_KEY); use it when it is, else switch the node off.
    write_key = _analytics_write_key()
    if write_key:
        out["write_key"] = write_key
        return
    walk.note(
        f"{where.path}: SegmentBackend is disabled: no write key (event-tracking read "
        f"analytics.write_key, which is not set); add OPTIONS.write_key"
    )
    out[_DISABLED] = True


def _whitelist(walk: _Walk, options: Mapping[Any, Any], out: dict[str, Any], where: _Where) -> None:
    value = options.get("whitelist")
    line = _value_line(options, "whitelist") if "whitelist" in options else where.line
    here = _join(where.path, "whitelist")
    # Like event-tracking: any iterable of names (list, set, frozenset, dict keys...), but
    # not None and not a bare string.
    if value is None or isinstance(value, str | bytes) or not isinstance(value, Iterable):
        walk.problem(_WHITELIST_REFUSAL, here, line, TypeError(_WHITELIST_REFUSAL))
        out["allow"] = []
        return
    names = list(value)
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        walk.problem(
            f"the whitelist holds {kind_of(bad[0])}: event names are non-empty strings",
            here,
            line,
        )
    out["allow"] = [_exact_name(n) for n in names if isinstance(n, str) and n]
    if isinstance(value, list | tuple):
        walk.items(where, "allow", "whitelist", value, list(range(len(names))))


def _regex_filter(
    walk: _Walk, options: Mapping[Any, Any], out: dict[str, Any], where: _Where
) -> None:
    improperly_configured = _upstream_error("eventtracking.exceptions", "ImproperlyConfigured")
    filter_type = options.get("filter_type", "allowlist")
    expressions = options.get("regular_expressions") or []
    if filter_type not in ("allowlist", "blocklist"):
        walk.problem(
            f"filter_type must be 'allowlist' or 'blocklist', not {filter_type!r}",
            _join(where.path, "filter_type"),
            _value_line(options, "filter_type"),
            improperly_configured("Invalid filter type is configured"),
        )
        filter_type = "allowlist"
    here = _join(where.path, "regular_expressions")
    if isinstance(expressions, str) or not isinstance(expressions, list | tuple | set | frozenset):
        walk.problem(
            "regular_expressions must be a list of regular expressions",
            here,
            _value_line(options, "regular_expressions"),
        )
        expressions = []
    key = "allow" if filter_type == "allowlist" else "block"
    if "regular_expressions" in options:
        walk.option(options, "regular_expressions", where, key)
    valid: list[tuple[int, str]] = []
    for index, expression in enumerate(expressions):
        try:
            re.compile(expression)
        except (re.error, TypeError):
            walk.problem(
                "not a valid regular expression",
                f"{here}[{index}]" if isinstance(expressions, list | tuple) else here,
                _value_line(expressions, index),
                improperly_configured("Invalid Regular Expressions are configured."),
            )
        else:
            valid.append((index, expression))
    # RegexFilter used re.match: anchored at the start, open at the end. Global inline
    # flags, e.g. (?i), must stay at the very start of the expression.
    ordered = sorted(valid, key=lambda item: item[1])
    out[key] = [_anchored(expression) for _, expression in ordered]
    if isinstance(expressions, list | tuple):
        walk.items(where, key, "regular_expressions", expressions, [j for j, _ in ordered])


_ROUTER_NOTE = "a synchronous router; children built as ours"

ROWS: dict[str, Row] = {
    row.engine: row
    for row in (
        Row(
            "eventtracking.backends.routing.RoutingBackend",
            "backend",
            "router",
            {"backends": None, "processors": None},
            _ROUTER_NOTE,
        ),
        Row(
            "eventtracking.backends.async_routing.AsyncRoutingBackend",
            "backend",
            "router",
            {"backends": None, "processors": None, "backend_name": None},
            _ROUTER_NOTE + "; `backend_name` (its Celery lookup key) is not needed",
        ),
        Row(
            "eventtracking.backends.logger.LoggerBackend",
            "backend",
            "jsonlog",
            {"name": "logger_name", "level": "level", "max_event_size": "max_event_size"},
            "no `name`: the root logger; events over max_event_size (1024 unless given) "
            "dropped; event-tracking's line format",
            _logger,
        ),
        Row(
            "eventtracking.backends.mongodb.MongoBackend",
            "backend",
            "mongodb",
            {
                "host": None,
                "port": None,
                "user": None,
                "password": None,
                "database": "database",
                "collection": "collection",
                "extra": None,
            },
            "host, port, user, password become `uri`; `extra` becomes client options; "
            "event-tracking's indexes; writes acknowledged",
            _mongodb,
        ),
        Row(
            "eventtracking.backends.segment.SegmentBackend",
            "backend",
            "segment",
            {},
            "sends logged-in users' events only, as before; the write key and settings of "
            "the `analytics` module are read at first use",
            _segment,
        ),
        Row(
            "eventtracking.processors.whitelist.NameWhitelistProcessor",
            "processor",
            "name_filter",
            {"whitelist": None},
            "`whitelist` (any iterable of names) becomes exact `allow` names",
            _whitelist,
        ),
        Row(
            "eventtracking.processors.regex_filter.RegexFilter",
            "processor",
            "name_filter",
            {"filter_type": None, "regular_expressions": None},
            "expressions become `re:` patterns matching as re.match did",
            _regex_filter,
        ),
    )
}


# -- helpers ------------------------------------------------------------------------------


_LEADING_FLAGS = re.compile(r"(?:\(\?[aiLmsux]+\))+")
_SPECIAL_NAME = re.compile(r"\*|(?:^|\.)#(?:\.|$)")


def _anchored(expression: str) -> str:
    """``re:`` pattern that fullmatches what ``re.match(expression, name)`` matched."""
    flags = _LEADING_FLAGS.match(expression)
    prefix = flags.group(0) if flags else ""
    return f"re:{prefix}(?:{expression[len(prefix) :]}).*"


def _exact_name(name: str) -> str:
    """A pattern matching exactly ``name`` (NameWhitelistProcessor compared names with
    ``in``): plain when our syntax reads it literally, else an escaped ``re:`` pattern."""
    if not name.startswith("re:") and not _SPECIAL_NAME.search(name):
        return name
    return "re:" + re.escape(name)


def _with_credentials(uri: str, credentials: str) -> str:
    """``uri`` with ``credentials`` (``user:password@``) as userinfo, unless it has some."""
    if not credentials:
        return uri
    scheme, _, rest = uri.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        return uri
    return f"{scheme}://{credentials}{rest}"


def _analytics_write_key() -> str | None:
    try:
        import analytics  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    key = getattr(analytics, "write_key", None)
    return key if isinstance(key, str) and key else None


def _upstream_error(module: str, name: str) -> Callable[[str], Exception]:
    """event-tracking's exception class ``module.name`` when it is installed, else a
    ``ValueError`` (what our own option checks raise)."""
    import importlib

    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return ValueError
    if isinstance(found, type) and issubclass(found, Exception):
        return found
    return ValueError


# -- building -----------------------------------------------------------------------------

_ENGINE_CLASS = "eventrouter._migrate.Engine"


class Engine:
    """Builds a class that event-tracking settings name by ``ENGINE`` and give ENGINE dicts
    under ``backends`` or ``processors``, as event-tracking did: its children are built
    first and passed in, if its constructor takes them (event-routing-backends'
    ``EventsRouter`` takes ``processors`` but no ``backends``).

    Calling ``Engine(...)`` returns the instance of ``engine``, not an ``Engine``. The
    configuration loader treats it as a router node, so the children are validated and
    built like any other node.

    Args:
        backends: the built ``backends`` children, by name.
        processors: the built ``processors`` children.
        engine: the dotted path of the class.
        options: its other options, passed as they are.
    """

    def __new__(
        cls,
        backends: Mapping[str, Any] | None = None,
        processors: list[Any] | None = None,
        *,
        engine: str,
        options: Mapping[str, Any] | None = None,
    ) -> Any:
        from eventrouter import registry

        target = registry.import_path(engine)
        if not callable(target):
            raise TypeError(f"{engine!r} is not a class or a callable")
        params = Parameters.of(target)
        kwargs = dict(options or {})
        for name, children in (("backends", backends), ("processors", processors)):
            if children and params is not None and (name in params.names or params.any_keyword):
                kwargs[name] = children
            elif children:
                raise TypeError(f"{engine!r} does not take {name}")
        return target(**kwargs)


def build_engine(engine: str, options: Mapping[str, Any] | None = None) -> Any:
    """Build what event-tracking's ``ENGINE`` class built from ``options``, as ours.

    event-tracking's routers take their children as objects (or ENGINE dicts); its other
    classes are translated by their row and built by the configuration loader. A refusal
    event-tracking's constructor also made raises the exception it raised.

    Raises:
        TypeError, ValueError: the options are refused (event-tracking's exception type
            where it had one, e.g. ``TypeError`` for a whitelist that is ``None``).
        ConfigError: any other problem with the options.
    """
    from eventrouter.config import load

    # An iterator (a whitelist may be one) is read once here: the settings are read twice.
    given = {k: list(v) if isinstance(v, Iterator) else v for k, v in (options or {}).items()}
    row = ROWS.get(engine)
    if row is not None and row.target == "router":
        from eventrouter.backends.routing import RoutingBackend

        unknown = set(given) - set(row.options)
        if unknown:
            raise TypeError(f"{_short(engine)} has no option {sorted(unknown)[0]!r}")
        backends, processors = _objects(given.get("backends")), _objects(given.get("processors"))
        _check_children(backends or {}, processors or [])
        return RoutingBackend(backends, processors)
    node = {"ENGINE": engine, "OPTIONS": given}
    if row is not None and row.kind == "processor":
        settings: dict[str, Any] = {SETTINGS_BACKENDS: {}, SETTINGS_PROCESSORS: [node]}
    else:
        settings = {SETTINGS_BACKENDS: {"default": node}}
    translation = translate(settings)
    if translation.refusals:
        raise translation.refusals[0]
    tracker = load(settings)
    if row is not None and row.kind == "processor":
        return tracker.processors[0]
    return tracker.get_backend("default")


def _check_children(backends: Mapping[Any, Any], processors: Iterable[Any]) -> None:
    """Refuse what event-tracking's RoutingBackend refused, with its messages."""
    for backend in backends.values():
        if not callable(getattr(backend, "send", None)):
            name = type(backend).__name__
            raise ValueError(f'Backend {name} does not have a callable "send" method.')
    for processor in processors:
        if not callable(processor):
            raise ValueError(f"Processor {type(processor).__name__} is not callable.")


def _objects(children: Any) -> Any:
    """``children`` with every ENGINE dict among them built (see :func:`build_engine`)."""
    if isinstance(children, Mapping):
        return {
            name: build_engine(c["ENGINE"], c.get("OPTIONS")) if _is_engine(c) else c
            for name, c in children.items()
        }
    if isinstance(children, list | tuple):
        return [
            build_engine(c["ENGINE"], c.get("OPTIONS")) if _is_engine(c) else c for c in children
        ]
    return children


def load_settings(settings: Any, *, env: Mapping[str, str] | None = None) -> Tracker:
    """Build a :class:`~eventrouter.tracker.Tracker` from Django settings written for
    event-tracking, as its ``DjangoTracker`` did.

    Reads ``EVENT_TRACKING_BACKENDS`` (default ``{}``) and ``EVENT_TRACKING_PROCESSORS``
    (default ``[]``) from ``settings``: ``django.conf.settings``, a settings module, any
    object with those attributes, or a mapping with those keys::

        from django.conf import settings
        tracker.register_tracker(eventrouter.load_settings(settings))

    Args:
        settings: where to read the two settings from.
        env: the variables ``${VAR}`` expands from; defaults to ``os.environ``.

    Raises:
        ConfigError: the settings are invalid; every problem is listed with its settings path.
    """
    from eventrouter.config import load

    if isinstance(settings, Mapping):
        backends = settings.get(SETTINGS_BACKENDS, {})
        processors = settings.get(SETTINGS_PROCESSORS, [])
    else:
        backends = getattr(settings, SETTINGS_BACKENDS, {})
        processors = getattr(settings, SETTINGS_PROCESSORS, [])
    tracker: Tracker = load({SETTINGS_BACKENDS: backends, SETTINGS_PROCESSORS: processors}, env=env)
    return tracker
