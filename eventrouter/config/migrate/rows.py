"""The table: one row per event-tracking class, and the few special cases a rename cannot
say."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from eventrouter._typecheck import kind_of
from eventrouter.config.migrate.positions import Where, join, location, value_line

if TYPE_CHECKING:
    from eventrouter.config.migrate.walk import Walk

#: event-tracking's LoggerBackend dropped events whose JSON was longer than this by default.
EVENT_TRACKING_MAX_EVENT_SIZE = 1024

_WHITELIST_REFUSAL = (
    'The NameWhitelistProcessor must be passed a collection of allowed names using the "whitelist" '
    "parameter"
)


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
        ignores_unknown: the class took ``**kwargs`` and ignored the options it did not
            know; they are ignored here too, with a warning.
    """

    engine: str
    kind: Literal["backend", "processor"]
    target: str
    options: Mapping[str, str | None]
    note: str
    special: Callable[[Walk, Mapping[Any, Any], dict[str, Any], Where], None] | None = None
    ignores_unknown: bool = False


# -- the special cases --------------------------------------------------------------------


def _logger(walk: Walk, options: Mapping[Any, Any], out: dict[str, Any], where: Where) -> None:
    # event-tracking's LoggerBackend without a `name` logs to the root logger, drops (not
    # truncates) events whose whole JSON is longer than max_event_size (1 KB unless given),
    # and writes json.dumps' default separators.
    out.setdefault("logger_name", "")
    out.setdefault("max_event_size", EVENT_TRACKING_MAX_EVENT_SIZE)
    if isinstance(out.get("level"), str):
        out["level"] = out["level"].upper()
    out["oversize"] = "drop"
    out["line_format"] = "event-tracking"


def _mongodb(walk: Walk, options: Mapping[Any, Any], out: dict[str, Any], where: Where) -> None:
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
                join(where.path, "host"),
                value_line(options, "host"),
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
    extra_where = Where(join(where.path, "extra"), where.to, value_line(options, "extra"))
    if not isinstance(extra, Mapping):
        walk.problem("`extra` must be a dict of MongoClient options", *location(extra_where))
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
    out.setdefault("tz_aware", True)  # event-tracking's default: dates read back are aware
    out["indexes"] = "event-tracking"  # a descending `time` and an ascending `name` index


def _whitelist(walk: Walk, options: Mapping[Any, Any], out: dict[str, Any], where: Where) -> None:
    value = options.get("whitelist")
    line = value_line(options, "whitelist") if "whitelist" in options else where.line
    here = join(where.path, "whitelist")
    # Like event-tracking: any iterable of names (list, set, frozenset, dict keys...), but
    # not None and not a bare string.
    if value is None or isinstance(value, str | bytes) or not isinstance(value, Iterable):
        walk.problem(_WHITELIST_REFUSAL, here, line, TypeError(_WHITELIST_REFUSAL))
        out["allow"] = []
        return
    names = list(value)
    unhashable = [n for n in names if not isinstance(n, Hashable)]
    if unhashable:  # event-tracking's frozenset(whitelist) raised TypeError
        walk.problem(
            f"the whitelist holds {kind_of(unhashable[0])}, which cannot be an event name",
            here,
            line,
            TypeError(_WHITELIST_REFUSAL),
        )
    # Any other item is kept as event-tracking kept it: one that is not a non-empty str
    # never equals an event name, so it matches nothing and is left out.
    kept = [i for i, n in enumerate(names) if isinstance(n, str) and n]
    out["allow"] = [_exact_name(names[i]) for i in kept]
    if isinstance(value, list | tuple):
        walk.items(where, "allow", "whitelist", value, kept)


def _regex_filter(
    walk: Walk, options: Mapping[Any, Any], out: dict[str, Any], where: Where
) -> None:
    improperly_configured = _upstream_error("eventtracking.exceptions", "ImproperlyConfigured")
    filter_type = options.get("filter_type", "allowlist")
    expressions = options.get("regular_expressions") or []
    if filter_type not in ("allowlist", "blocklist"):
        walk.problem(
            f"filter_type must be 'allowlist' or 'blocklist', not {filter_type!r}",
            join(where.path, "filter_type"),
            value_line(options, "filter_type"),
            improperly_configured("Invalid filter type is configured"),
        )
        filter_type = "allowlist"
    here = join(where.path, "regular_expressions")
    if isinstance(expressions, str) or not isinstance(expressions, list | tuple | set | frozenset):
        walk.problem(
            "regular_expressions must be a list of regular expressions",
            here,
            value_line(options, "regular_expressions"),
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
                value_line(expressions, index),
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
            {
                "name": "logger_name",
                "level": "level",
                "max_event_size": "max_event_size",
                "dead_letter": "dead_letter",
            },
            "no `name`: the root logger; events over max_event_size (1024 unless given) "
            "dropped; event-tracking's line format",
            _logger,
            ignores_unknown=True,
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
            ignores_unknown=True,
        ),
        Row(
            "eventtracking.backends.segment.SegmentBackend",
            "backend",
            "segment",
            {},
            "sends logged-in users' events only, as before; the write key and settings of "
            "the `analytics` module are read at first use",
        ),
        Row(
            "eventtracking.processors.whitelist.NameWhitelistProcessor",
            "processor",
            "name_filter",
            {"whitelist": None},
            "`whitelist` (any iterable of names) becomes exact `allow` names",
            _whitelist,
            ignores_unknown=True,
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
    """``re:`` pattern that fullmatches what ``re.match(expression, name)`` matched.

    Leading global flags stay first. The rest may be any suffix, newlines included (``a$``
    matched ``"a\\n"``). In verbose mode the expression's last line may end in a ``#``
    comment, so the group is closed on a new line."""
    flags = _LEADING_FLAGS.match(expression)
    prefix = flags.group(0) if flags else ""
    body = expression[len(prefix) :]
    if "x" in prefix:
        body += "\n"
    return f"re:{prefix}(?:{body})(?s:.*)"


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
