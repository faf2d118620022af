"""Routing trees from YAML (or a mapping): reading, validation, interpolation, building.

A configuration looks like this::

    processors:                       # the root router's chain
      - class: name_filter
        options: {allow: ["video.*", "problem.#"]}
      - myapp.tracking.add_site       # bare string: a callable (or a class with no options)
    backends:
      archive:
        class: jsonlog
        options: {path: "${EVENTROUTER_LOG:-events.log}"}
      analytics:                      # a node with `backends` is a router
        processors: [{class: redact, options: {fields: [context.ip]}}]
        backends:
          segment:
            class: segment
            enabled: ${SEGMENT_ENABLED:-false}
            options: {write_key: "${SEGMENT_WRITE_KEY}"}

:func:`load` validates everything first and reports every problem at once in one
:class:`~eventrouter.errors.ConfigError`, each with the file, line and dotted path; only a
valid tree is built. :func:`read_config` validates without building (``eventrouter validate``
and ``eventrouter tree`` use it). Settings written for openedx event-tracking (``ENGINE`` /
``OPTIONS`` dicts) are accepted unchanged and translated (see :mod:`eventrouter._migrate`).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventrouter import _migrate, registry
from eventrouter._typecheck import (
    Parameters,
    coerce_text,
    kind_of,
    mismatch,
    parse_bool,
    wants_callable,
)
from eventrouter._yaml import LineDict, LineList, UnsafeTag, load_yaml
from eventrouter.errors import ConfigError, ConfigIssue, MissingExtraError
from eventrouter.registry import Kind, UnknownNameError

__all__ = ["ConfigNode", "ConfigTree", "build", "is_secret_name", "load", "read_config"]

log = logging.getLogger(__name__)

ROOT_KEYS = ("backends", "processors", "dead_letter")
NODE_KEYS = ("class", "options", "backends", "processors", "enabled")
PROCESSOR_KEYS = ("class", "options", "enabled")

_SECRET_PART = re.compile(r"secret|passw|token|credential|auth", re.IGNORECASE)
_NAME_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_SECRET_QUERY = re.compile(
    r"passw|secret|token|key|credential|signature|authmechanismproperties", re.IGNORECASE
)
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+")
_QUERY_ITEM = re.compile(r"([?&;])([^=&;#\s]*)=([^&;#\s]*)")
_INTERPOLATION = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
MASK = "***"
MAX_OPTION_VALUES = 100_000


def is_secret_name(name: str) -> bool:
    """Whether an option with this name holds a secret; its value is never shown.

    Secret names contain ``secret``, ``passw``, ``token``, ``credential`` or ``auth``, or have
    ``key`` as one of several words (``write_key``, ``api_key``, ``apiKey``, ``key_file``);
    ``key`` alone (``Sample``'s field path) is not a secret.

    Since 0.1.
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

    Since 0.1.
    """
    return _URI.sub(_mask_one_uri, text)


@dataclass(eq=False)
class ConfigNode:
    """One validated node of a routing tree: a backend, a router or a processor.

    Attributes:
        path: the dotted path of the node (``backends.analytics.backends.segment``).
        kind: ``"backend"`` or ``"processor"``.
        class_name: the class as written (``segment``, ``myapp.backends.Kafka``).
        target: the class or callable it stands for (``None`` if it could not be resolved,
            which only happens for disabled nodes).
        options: the keyword arguments, with ``${VAR}`` expanded.
        templates: for options whose value came from ``${VAR}``, the text as written.
        written: for list or mapping options holding a ``${VAR}``, the value as written.
        enabled: ``False`` when switched off by ``enabled:``; such nodes are not built.
        router: whether the node routes to child ``backends``.
        backends: a router's child nodes, by name.
        processors: a router's processors.
        called: whether ``target`` is called with ``options`` to build it (``False`` for a
            bare callable used as a processor as it is).
        line: the line of the node in its file.

    Since 0.1.
    """

    path: str
    kind: Kind
    class_name: str
    target: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    written: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    router: bool = False
    backends: dict[str, ConfigNode] = field(default_factory=dict)
    processors: list[ConfigNode] = field(default_factory=list)
    called: bool = True
    line: int | None = None

    @property
    def name(self) -> str:
        """The last part of the path (the backend's name, or ``processors[0]``)."""
        return self.path.rpartition(".")[2]

    def shown_options(self) -> dict[str, str]:
        """The options as text safe to print: secrets masked, ``${VAR}`` values as written."""
        shown: dict[str, str] = {}
        for key, value in self.options.items():
            if key in self.written:
                shown[key] = _show(self.written[key], key)
            elif key in self.templates:
                shown[key] = mask_uri(self.templates[key])
            else:
                shown[key] = _show(value, key)
        return shown

    def walk(self) -> Iterator[ConfigNode]:
        """This node and every node below it, depth first."""
        yield self
        for processor in self.processors:
            yield from processor.walk()
        for child in self.backends.values():
            yield from child.walk()


def _show(value: Any, name: str) -> str:
    if is_secret_name(name):
        return MASK
    if isinstance(value, str):
        return mask_uri(value)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k}: {_show(v, str(k))}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v, name) for v in value) + "]"
    if callable(value):
        return registry_name(value)
    return repr(value)


def registry_name(obj: Any) -> str:
    """``module.qualname`` of a class or function, for display."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{qualname}" if module else qualname


@dataclass(eq=False)
class ConfigTree:
    """A validated routing configuration, ready for :func:`build`.

    Attributes:
        file: the file it was read from, or ``None`` for a mapping.
        processors: the root router's processors.
        backends: the root router's backends, by name.
        dead_letter: the dead-letter file every router of the tree writes failed deliveries to.
        migrated: whether it was translated from event-tracking settings.
        notes: remarks made while reading (e.g. on the translation), safe to print.
        origins: for a translated configuration, the settings path and line each node path
            came from (errors name those); empty otherwise.

    Since 0.1.
    """

    file: str | None
    processors: list[ConfigNode] = field(default_factory=list)
    backends: dict[str, ConfigNode] = field(default_factory=dict)
    dead_letter: str | None = None
    migrated: bool = False
    notes: list[str] = field(default_factory=list)
    origins: dict[str, tuple[str, int | None]] = field(default_factory=dict, repr=False)

    def walk(self) -> Iterator[ConfigNode]:
        """Every node of the tree, depth first (processors before backends)."""
        for processor in self.processors:
            yield from processor.walk()
        for child in self.backends.values():
            yield from child.walk()

    def summary(self) -> str:
        """One line: how many backends, routers, processors, and which are disabled."""
        nodes = list(self.walk())
        backends = [n for n in nodes if n.kind == "backend" and not n.router]
        routers = [n for n in nodes if n.router]
        processors = [n for n in nodes if n.kind == "processor"]
        disabled = [n.path for n in nodes if not n.enabled]
        text = (
            f"{_count(len(backends), 'backend')}, {_count(len(routers), 'router')}, "
            f"{_count(len(processors), 'processor')}"
        )
        if disabled:
            text += f"; disabled: {', '.join(disabled)}"
        return text


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# -- reading ------------------------------------------------------------------------------


def read_config(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
) -> ConfigTree:
    """Read and validate a routing configuration without building anything.

    Args:
        source: a path to a YAML file, or a mapping (already parsed YAML, or event-tracking's
            ``EVENT_TRACKING_BACKENDS`` / ``ENGINE`` dicts).
        env: the variables ``${VAR}`` expands from; defaults to ``os.environ``.

    Raises:
        ConfigError: listing every problem found, each with file, line and dotted path.

    Since 0.1.
    """
    environ = os.environ if env is None else env
    if isinstance(source, Mapping):
        return _Validator(None, environ).check(source)
    file = os.fspath(source)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError([ConfigIssue(f"cannot read the file: {reason}", "", file)]) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue("the file is not UTF-8 text", "", file)]) from None
    data, problems = load_yaml(text)
    issues = [ConfigIssue(p.message, "", file, p.line) for p in problems]
    if data is None and not issues:
        issues.append(
            ConfigIssue("the configuration is empty: it needs at least `backends`", "", file, 1)
        )
    if data is None:
        raise ConfigError(issues)
    validator = _Validator(file, environ)
    validator.issues.extend(issues)
    return validator.check(data)


def load(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
) -> Any:
    """Build a :class:`~eventrouter.tracker.Tracker` from a YAML file or a mapping.

    Everything is validated before anything is built; every problem is reported at once.
    Settings written for openedx event-tracking (``ENGINE``/``OPTIONS``) are accepted as they
    are.

    Args:
        source: a path to a YAML file, or a mapping.
        env: the variables ``${VAR}`` expands from; defaults to ``os.environ``.

    Raises:
        ConfigError: the configuration is invalid, or a constructor refused its options.

    Since 0.1.
    """
    return build(read_config(source, env=env))


# -- validation ---------------------------------------------------------------------------


def _line_of_key(container: Any, key: Any) -> int | None:
    if isinstance(container, LineDict):
        return container.key_lines.get(key, container.line)
    return None


def _line_of_value(container: Any, key: Any) -> int | None:
    if isinstance(container, LineDict):
        return container.value_lines.get(key, container.line)
    if isinstance(container, LineList) and isinstance(key, int):
        return container.item_lines[key] if key < len(container.item_lines) else container.line
    return None


def _line_of(value: Any, fallback: int | None) -> int | None:
    if isinstance(value, LineDict | LineList) and value.line is not None:
        return value.line
    return fallback


_STEP = re.compile(r"\[(\d+)\]|\.([^.\[]+)")


def _line_inside(raw: Any, where: str, line: int | None) -> int | None:
    """The line of the item at ``where`` (``[1].host``) inside ``raw``, else ``line``."""
    for match in _STEP.finditer(where):
        index, key = match.groups()
        step: Any = int(index) if index is not None else key
        if isinstance(raw, LineList) and isinstance(step, int) and step < len(raw):
            line, raw = raw.item_lines[step], raw[step]
        elif isinstance(raw, LineDict) and step in raw:
            line, raw = raw.value_lines[step], raw[step]
        else:
            break
    return line


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _under(path: str, node_path: str) -> bool:
    """Whether ``path`` is ``node_path`` or lies inside it."""
    return path == node_path or path.startswith((node_path + ".", node_path + "["))


def _locate(message: str, options: Mapping[Any, Any], node: ConfigNode) -> tuple[str, int | None]:
    """The path and line of the option a constructor's refusal names, else the node's.

    An option is named when the message quotes a string or a mapping key inside it
    (``'re:(video'``), else when it mentions the option's name as a word (``rate must ...``).
    """
    options_path = _join(node.path, "options")

    def find(value: Any, path: str, line: int | None) -> tuple[str, int | None] | None:
        if isinstance(value, str):
            return (path, line) if repr(value) in message else None
        if isinstance(value, Mapping):
            for key, item in value.items():
                here, item_line = _join(path, key), _line_of_value(value, key)
                found = find(item, here, item_line)
                if found is None and isinstance(key, str) and repr(key) in message:
                    found = (here, item_line)
                if found is not None:
                    return found
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                found = find(item, f"{path}[{index}]", _line_of_value(value, index))
                if found is not None:
                    return found
        return None

    for name, value in options.items():
        located = find(value, _join(options_path, name), _line_of_value(options, name))
        if located is not None:
            return located
    for name in options:
        if isinstance(name, str) and re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", message):
            return _join(options_path, name), _line_of_value(options, name)
    return node.path, node.line


def _as_written(issue: ConfigIssue, origins: Mapping[str, tuple[str, int | None]]) -> ConfigIssue:
    """``issue`` about a translated configuration, restated with the path (and, when it has
    none, the line) of the event-tracking settings it came from."""
    found = _migrate.original(issue.path, origins)
    if found is None:
        return issue
    path, line = found
    return ConfigIssue(issue.message, path, issue.file, issue.line or line)


class _TooLarge(Exception):
    """An option holds more values than :data:`MAX_OPTION_VALUES`."""


class _Validator:
    """Walks the raw data once, collecting every issue and the validated nodes."""

    def __init__(self, file: str | None, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.issues: list[ConfigIssue] = []
        self.budget = MAX_OPTION_VALUES
        self.raw_options: dict[int, Mapping[Any, Any]] = {}

    def issue(self, message: str, path: str, line: int | None) -> None:
        self.issues.append(ConfigIssue(message, path, self.file, line))

    def check(self, data: Any) -> ConfigTree:
        tree = ConfigTree(self.file)
        settings_issues: list[ConfigIssue] = []
        if isinstance(data, Mapping) and _migrate.is_event_tracking(data):
            translation = _migrate.translate(data)
            tree.migrated = True
            tree.notes.extend(translation.notes)
            tree.origins = translation.origins
            settings_issues = [
                ConfigIssue(message, path, self.file, line)
                for message, path, line in translation.problems
            ]
            data = translation.config
        if isinstance(data, UnsafeTag):
            self.refuse(data, "")
        elif not isinstance(data, Mapping):
            self.issue(
                f"the configuration must be a mapping with `backends` (and optionally "
                f"`processors`), not {kind_of(data)}",
                "",
                _line_of(data, 1),
            )
        else:
            self.root(data, tree)
            self.try_processors(tree)
        issues = settings_issues + [_as_written(issue, tree.origins) for issue in self.issues]
        if issues:
            raise ConfigError(sorted(issues, key=lambda issue: issue.line or 0))
        return tree

    def try_processors(self, tree: ConfigTree) -> None:
        """Construct every enabled processor that validated cleanly, and report each one whose
        constructor refuses its options (processors have no side effects; backends, which
        open files and connections, are not constructed)."""
        flawed = {issue.path for issue in self.issues}
        for node in tree.walk():
            if node.kind != "processor" or not node.enabled or not node.called:
                continue
            if node.target is None or any(_under(path, node.path) for path in flawed):
                continue
            try:
                node.target(**node.options)
            except Exception as exc:
                message = _scrub(f"{type(exc).__name__}: {exc}", node)
                raw = self.raw_options.get(id(node), {})
                path, line = _locate(message, raw, node)
                self.issue(f"{node.class_name!r} refused its options: {message}", path, line)

    def refuse(self, tag: UnsafeTag, path: str) -> None:
        self.issue(
            f"the YAML tag {tag.tag} is not allowed: configurations are loaded with safe "
            f"semantics only (plain mappings, lists, strings, numbers, booleans)",
            path,
            tag.line,
        )

    def unknown_keys(self, data: Mapping[Any, Any], allowed: tuple[str, ...], path: str) -> None:
        for key in data:
            if key not in allowed:
                self.issue(
                    f"unknown key {key!r}{registry.suggest(str(key), allowed)}; "
                    f"allowed here: {', '.join(allowed)}",
                    _join(path, key),
                    _line_of_key(data, key),
                )

    def root(self, data: Mapping[Any, Any], tree: ConfigTree) -> None:
        self.unknown_keys(data, ROOT_KEYS, "")
        if "backends" not in data:
            self.issue(
                "`backends` is missing: name at least one backend, e.g. "
                "`backends: {archive: {class: jsonlog, options: {path: events.log}}}`",
                "",
                _line_of(data, 1),
            )
        else:
            tree.backends = self.backends(data, "backends", "", enabled=True)
        if "processors" in data:
            tree.processors = self.processors(data, "processors", "", enabled=True)
        if "dead_letter" in data:
            value = data["dead_letter"]
            line = _line_of_value(data, "dead_letter")
            if isinstance(value, str):
                text, _ = self.interpolate(value, "dead_letter", line, enabled=True)
                tree.dead_letter = text
            elif value is not None:
                self.issue(
                    f"expected a file path (a string), got {kind_of(value)}", "dead_letter", line
                )

    def backends(
        self, parent: Mapping[Any, Any], key: str, path: str, *, enabled: bool
    ) -> dict[str, ConfigNode]:
        value = parent[key]
        here = _join(path, key)
        line = _line_of_value(parent, key)
        if isinstance(value, UnsafeTag):
            self.refuse(value, here)
            return {}
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.issue(
                f"`backends` must be a mapping of names to backends, not {kind_of(value)}",
                here,
                line,
            )
            return {}
        nodes: dict[str, ConfigNode] = {}
        for name in value:
            child_path = _join(here, name)
            if not isinstance(name, str) or not name:
                self.issue("a backend name must be a non-empty string", child_path, line)
                continue
            if "." in name:
                self.issue(
                    f"a backend name must not contain '.': {name!r}",
                    child_path,
                    _line_of_key(value, name),
                )
                continue
            node = self.node(value, name, child_path, "backend", enabled=enabled)
            if node is not None:
                nodes[name] = node
        return nodes

    def processors(
        self, parent: Mapping[Any, Any], key: str, path: str, *, enabled: bool
    ) -> list[ConfigNode]:
        value = parent[key]
        here = _join(path, key)
        line = _line_of_value(parent, key)
        if isinstance(value, UnsafeTag):
            self.refuse(value, here)
            return []
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            self.issue(
                f"`processors` must be a list (processors run in order), not {kind_of(value)}",
                here,
                line,
            )
            return []
        nodes: list[ConfigNode] = []
        for index in range(len(value)):
            node = self.node(value, index, f"{here}[{index}]", "processor", enabled=enabled)
            if node is not None:
                nodes.append(node)
        return nodes

    def node(
        self, parent: Any, key: Any, path: str, kind: Kind, *, enabled: bool
    ) -> ConfigNode | None:
        raw = parent[key]
        line = _line_of_value(parent, key)
        if isinstance(raw, UnsafeTag):
            self.refuse(raw, path)
            return None
        if isinstance(raw, str):
            return self.from_class(
                raw,
                {},
                path,
                kind,
                line=line,
                class_line=line,
                enabled=enabled,
                bare=True,
                written_as_string=True,
            )
        if not isinstance(raw, Mapping):
            self.issue(
                f"a {kind} must be a mapping with `class` (and `options`), or a class name; "
                f"got {kind_of(raw)}",
                path,
                line,
            )
            return None
        line = _line_of(raw, line)
        allowed = NODE_KEYS if kind == "backend" else PROCESSOR_KEYS
        self.unknown_keys(raw, allowed, path)
        if "enabled" in raw:
            enabled = self.enabled_flag(raw, path, parent_enabled=enabled) and enabled
        has_children = kind == "backend" and ("backends" in raw or "processors" in raw)
        class_name: Any = raw.get("class")
        class_line = _line_of_value(raw, "class")
        if class_name is None:
            if has_children:
                class_name = "router"
            else:
                self.issue(
                    f"`class` is missing: name the {kind} "
                    f"(one of {', '.join(registry.known_names(kind))}, or a dotted path)",
                    path,
                    line,
                )
                return None
        elif isinstance(class_name, UnsafeTag):
            self.refuse(class_name, _join(path, "class"))
            return None
        elif not isinstance(class_name, str) or not class_name.strip():
            self.issue(
                f"`class` must be a short name or a dotted path, not {kind_of(class_name)}",
                _join(path, "class"),
                class_line,
            )
            return None
        options: Any = raw.get("options")
        if isinstance(options, UnsafeTag):
            self.refuse(options, _join(path, "options"))
            options = {}
        elif options is None:
            options = {}
        elif not isinstance(options, Mapping):
            self.issue(
                f"`options` must be a mapping of option names to values, not {kind_of(options)}",
                _join(path, "options"),
                _line_of_value(raw, "options"),
            )
            options = {}
        node = self.from_class(
            class_name,
            options,
            path,
            kind,
            line=line,
            class_line=class_line,
            enabled=enabled,
            bare="options" not in raw,
        )
        if node is None:
            return None
        if has_children:
            if not node.router and node.target is not None:
                for child_key in ("backends", "processors"):
                    if child_key in raw:
                        self.issue(
                            f"`{child_key}` is only allowed on a router node, and "
                            f"{class_name!r} does not route to backends",
                            _join(path, child_key),
                            _line_of_key(raw, child_key),
                        )
                return node
            node.router = True
            if "backends" in raw:
                node.backends = self.backends(raw, "backends", path, enabled=node.enabled)
            if "processors" in raw:
                node.processors = self.processors(raw, "processors", path, enabled=node.enabled)
        return node

    def enabled_flag(self, raw: Mapping[Any, Any], path: str, *, parent_enabled: bool) -> bool:
        """The node's ``enabled:`` flag; nothing is reported inside a disabled router."""
        value = raw["enabled"]
        line = _line_of_value(raw, "enabled")
        here = _join(path, "enabled")
        if isinstance(value, bool):
            return value
        if isinstance(value, UnsafeTag):
            self.refuse(value, here)
            return True
        if isinstance(value, str):
            text, interpolated = self.interpolate(value, here, line, enabled=parent_enabled)
            flag = parse_bool(text)
            if flag is not None:
                return flag
            if parent_enabled:
                shown = "the value from the environment" if interpolated else repr(text)
                self.issue(f"expected true or false, got {shown}", here, line)
            return True
        if parent_enabled:
            self.issue(f"expected true or false, got {kind_of(value)}", here, line)
        return True

    def from_class(
        self,
        class_name: str,
        options: Mapping[Any, Any],
        path: str,
        kind: Kind,
        *,
        line: int | None,
        class_line: int | None,
        enabled: bool,
        bare: bool,
        written_as_string: bool = False,
    ) -> ConfigNode | None:
        node = ConfigNode(path, kind, class_name.strip(), enabled=enabled, line=line)
        class_path = path if written_as_string else _join(path, "class")
        try:
            node.target = registry.resolve(kind, node.class_name)
        except MissingExtraError as exc:
            if enabled:
                self.issue(str(exc), class_path, class_line)
            return node
        except (UnknownNameError, ImportError) as exc:
            self.issue(str(exc), class_path, class_line)
            return None
        except Exception as exc:  # the module itself is broken: say so, no traceback
            self.issue(
                f"importing {node.class_name!r} failed: {type(exc).__name__}: {exc}",
                class_path,
                class_line,
            )
            return None
        target = node.target
        if not callable(target):
            if kind == "backend" and callable(getattr(target, "send", None)) and not options:
                node.called = False
                return node
            self.issue(f"{node.class_name!r} is not a class or a callable", class_path, class_line)
            return None
        params = Parameters.of(target)
        node.router = (
            kind == "backend"
            and inspect.isclass(target)
            and params is not None
            and "backends" in params.names
        )
        if kind == "processor" and not inspect.isclass(target) and bare and not options:
            node.called = False  # a plain function (or callable object) used as it is
            return node
        self.options(node, options, params, path, enabled=enabled)
        return node

    def options(
        self,
        node: ConfigNode,
        options: Mapping[Any, Any],
        params: Parameters | None,
        path: str,
        *,
        enabled: bool,
    ) -> None:
        options_path = _join(path, "options")
        self.raw_options[id(node)] = options
        reserved = ("backends", "processors") if node.router else ()
        for name, value in options.items():
            here = _join(options_path, name)
            key_line = _line_of_key(options, name)
            value_line = _line_of_value(options, name)
            if not isinstance(name, str):
                self.issue("an option name must be a string", here, key_line)
                continue
            if name in reserved:
                self.issue(
                    f"give `{name}` directly on the router node, not inside `options`",
                    here,
                    key_line,
                )
                continue
            if params is not None and not params.any_keyword and name not in params.names:
                accepted = [n for n in params.names if n not in reserved]
                self.issue(
                    f"{node.class_name!r} has no option {name!r}"
                    f"{registry.suggest(name, accepted)}; "
                    + (f"its options are: {', '.join(accepted)}" if accepted else "it takes none"),
                    here,
                    key_line,
                )
                continue
            if not enabled:
                node.options[name] = value
                continue
            self.budget = MAX_OPTION_VALUES
            try:
                expanded = self.expand(value, here, value_line, node, name)
            except _TooLarge:
                self.issue(
                    f"the option holds more than {MAX_OPTION_VALUES} values (YAML aliases "
                    f"nested in each other?)",
                    here,
                    value_line,
                )
                continue
            if name in node.templates and not isinstance(value, str):
                node.written[name] = value
            hint = params.hints.get(name) if params is not None else None
            if hint is not None:
                expanded = self.typed(
                    expanded, hint, node, name, raw=value, path=here, line=value_line
                )
            node.options[name] = expanded
        if enabled and params is not None:
            missing = [n for n in params.required if n not in options and n not in reserved]
            for name in missing:
                self.issue(
                    f"{node.class_name!r} needs the option {name!r}",
                    options_path if options else path,
                    _line_of(options, node.line),
                )

    def typed(
        self,
        value: Any,
        hint: Any,
        node: ConfigNode,
        name: str,
        *,
        raw: Any,
        path: str,
        line: int | None,
    ) -> Any:
        interpolated = name in node.templates
        if interpolated and isinstance(value, str):
            value = coerce_text(value, hint)
        if isinstance(value, str) and wants_callable(hint) and mismatch(value, hint) is not None:
            try:
                value = registry.import_path(value)
            except (ImportError, MissingExtraError) as exc:
                self.issue(str(exc), path, line)
                return value
        problem = mismatch(value, hint)
        if problem is None:
            return value
        secret = interpolated or is_secret_name(name) or is_secret_name(problem.where)
        got = kind_of(problem.got)
        if not secret and isinstance(problem.got, str | int | float) and len(str(problem.got)) < 60:
            got += f" ({problem.got!r})"
        elif interpolated:
            got += " from the environment"
        line = _line_inside(raw, problem.where, line)
        self.issue(f"expected {problem.expected}, got {got}", path + problem.where, line)
        return value

    def expand(self, value: Any, path: str, line: int | None, node: ConfigNode, name: str) -> Any:
        """Expand ``${VAR}`` in every string inside ``value``; refuse unsafe tags.

        Every value visited (each occurrence of a YAML alias counts) spends one unit of
        ``self.budget``; :class:`_TooLarge` is raised when none is left.
        """
        self.budget -= 1
        if self.budget < 0:
            raise _TooLarge
        if isinstance(value, UnsafeTag):
            self.refuse(value, path)
            return None
        if isinstance(value, str):
            text, interpolated = self.interpolate(value, path, line, enabled=True)
            if interpolated:
                node.templates[name] = value
            return text
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                out[key] = self.expand(
                    item, _join(path, key), _line_of_value(value, key), node, name
                )
            return out
        if isinstance(value, list | tuple):
            return [
                self.expand(item, f"{path}[{i}]", _line_of_value(value, i), node, name)
                for i, item in enumerate(value)
            ]
        return value

    def interpolate(
        self, text: str, path: str, line: int | None, *, enabled: bool
    ) -> tuple[str, bool]:
        """``text`` with ``${VAR}`` / ``${VAR:-default}`` expanded, and whether any value came
        from the environment (such values are treated as secrets; defaults are not)."""
        found = False

        def replace(match: re.Match[str]) -> str:
            nonlocal found
            whole = match.group(0)
            if whole == "$$":
                return "$"
            inner = match.group(1)
            variable = _VARIABLE.fullmatch(inner) if inner is not None else None
            if variable is None:
                self.issue(
                    f"malformed interpolation {whole!r}: write ${{NAME}} or ${{NAME:-default}}",
                    path,
                    line,
                )
                return ""
            name, default = variable.group(1), variable.group(2)
            if default is not None and "${" in default:
                self.issue(
                    f"malformed interpolation {whole!r}: a default cannot hold another "
                    f"${{...}}; write ${{NAME:-default}} with a literal default",
                    path,
                    line,
                )
                return ""
            value = self.env.get(name)
            if default is not None and not value:
                return default  # written in the file: not a secret
            found = True
            if value is None:
                if enabled:
                    self.issue(
                        f"the environment variable {name} is not set (and no default is "
                        f"given: write ${{{name}:-default}} for one)",
                        path,
                        line,
                    )
                return ""
            return value

        result = _INTERPOLATION.sub(replace, text)
        return result, found


# -- building -----------------------------------------------------------------------------


def build(tree: ConfigTree) -> Any:
    """Build the :class:`~eventrouter.tracker.Tracker` of a validated :class:`ConfigTree`.

    Disabled nodes are skipped. If a constructor raises (a pattern it refuses, a server
    option it rejects), every such failure is collected, what was built is closed, and one
    :class:`~eventrouter.errors.ConfigError` names the nodes.

    Since 0.1.
    """
    from eventrouter.backends.routing import RoutingBackend
    from eventrouter.deadletter import DeadLetterFile
    from eventrouter.tracker import Tracker

    dead_letter = DeadLetterFile(tree.dead_letter) if tree.dead_letter else None
    builder = _Builder(tree.file, dead_letter)
    backends = builder.backends(tree.backends)
    processors = builder.processors(tree.processors)
    if builder.issues:
        builder.close_all()
        raise ConfigError([_as_written(issue, tree.origins) for issue in builder.issues])
    for note in tree.notes:
        log.info("%s", note)
    disabled = [n.path for n in tree.walk() if not n.enabled]
    if disabled:
        log.info("disabled by the configuration: %s", ", ".join(disabled))
    return Tracker(router=RoutingBackend(backends, processors, dead_letter))


class _Builder:
    def __init__(self, file: str | None, dead_letter: Any = None) -> None:
        self.file = file
        self.dead_letter = dead_letter
        self.issues: list[ConfigIssue] = []
        self.built: list[Any] = []

    def backends(self, nodes: Mapping[str, ConfigNode]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, node in nodes.items():
            if node.enabled:
                built = self.node(node)
                if built is not None:
                    out[name] = built
        return out

    def processors(self, nodes: list[ConfigNode]) -> list[Any]:
        out: list[Any] = []
        for node in nodes:
            if node.enabled:
                built = self.node(node)
                if built is not None:
                    out.append(built)
        return out

    def node(self, node: ConfigNode) -> Any:
        if not node.called:
            return node.target
        kwargs = dict(node.options)
        if node.router:
            kwargs["backends"] = self.backends(node.backends)
            kwargs["processors"] = self.processors(node.processors)
        if self.dead_letter is not None and _accepts(node.target, "dead_letter"):
            kwargs.setdefault("dead_letter", self.dead_letter)
        try:
            built = node.target(**kwargs)
        except Exception as exc:
            message = _scrub(f"{type(exc).__name__}: {exc}", node)
            self.issues.append(
                ConfigIssue(
                    f"{node.class_name!r} refused its options: {message}",
                    node.path,
                    self.file,
                    node.line,
                )
            )
            return None
        if node.kind == "backend" and not callable(getattr(built, "send", None)):
            self.issues.append(
                ConfigIssue(
                    f"{node.class_name!r} built a {type(built).__name__}, which has no "
                    f"send(event) method, so it is not a backend",
                    node.path,
                    self.file,
                    node.line,
                )
            )
            return None
        if node.kind == "processor" and not callable(built):
            self.issues.append(
                ConfigIssue(
                    f"{node.class_name!r} built a {type(built).__name__}, which is not "
                    f"callable, so it is not a processor",
                    node.path,
                    self.file,
                    node.line,
                )
            )
            return None
        self.built.append(built)
        bind_config = getattr(built, "bind_config", None)
        if callable(bind_config):  # a node that needs its configuration (a celery node)
            bind_config(node)
        return built

    def close_all(self) -> None:
        for obj in reversed(self.built):
            close = getattr(obj, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:
                    log.warning("closing %s failed: %s", type(obj).__name__, type(exc).__name__)


def _accepts(target: Any, parameter: str) -> bool:
    """Whether calling ``target`` takes a keyword argument named ``parameter``."""
    try:
        return parameter in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def _secret_values(node: ConfigNode) -> set[str]:
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

    for name, value in node.options.items():
        collect(value, name in node.templates or is_secret_name(name))
    return found


def _scrub(message: str, node: ConfigNode) -> str:
    """Remove every secret of the node's options from a message, also in the escaped forms
    that ``repr`` and JSON give it (``a\\b`` for ``a\\b``)."""
    forms: set[str] = set()
    for secret in _secret_values(node):
        forms.update((secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]))
    for form in sorted(forms, key=len, reverse=True):
        if form:
            message = message.replace(form, MASK)
    return mask_uri(message)
