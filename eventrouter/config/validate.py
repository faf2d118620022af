"""Validation: the data read from YAML (or given as a mapping) -> a :class:`ConfigTree`.

One walk over the data collects every problem, each with its file, line and dotted path,
and raises them together in one :class:`~eventrouter.errors.ConfigError`; only a tree with
no problem is returned. Settings written for openedx event-tracking are translated first.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

from eventrouter import registry
from eventrouter._typecheck import Parameters, kind_of, parse_bool
from eventrouter.config import migrate as _migrate
from eventrouter.config.buffering import check_buffered
from eventrouter.config.checks import not_a_boolean, runtime_problems
from eventrouter.config.expand import Expander
from eventrouter.config.model import ConfigNode, ConfigTree
from eventrouter.config.options import OptionChecker, construct_processors
from eventrouter.config.read import UnsafeTag, key_line, line_of, value_line
from eventrouter.errors import ConfigError, ConfigIssue, MissingExtraError
from eventrouter.registry import Kind, UnknownNameError

__all__ = ["validate"]

_log = logging.getLogger("eventrouter.config")

_ROOT_KEYS = ("backends", "processors", "dead_letter")
_NODE_KEYS = ("class", "options", "backends", "processors", "enabled", "buffered")
_PROCESSOR_KEYS = ("class", "options", "enabled")


def validate(
    data: Any,
    *,
    file: str | None,
    env: Mapping[str, str],
    issues: list[ConfigIssue] | None = None,
) -> ConfigTree:
    """Validate configuration data and construct its processors.

    Args:
        data: the configuration, as :func:`~eventrouter.config.read.read_file` gives it or
            as a mapping (also event-tracking's ``ENGINE``/``OPTIONS`` settings).
        file: the file it came from, named in issues; ``None`` for a mapping.
        env: the variables ``${VAR}`` expands from.
        issues: problems already found while reading, reported with the others.

    Raises:
        ConfigError: listing every problem, sorted by line.
    """
    return _Validator(file, env, issues or []).check(data)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


class _Validator:
    """Walks the raw data once, collecting every issue and the validated nodes."""

    def __init__(self, file: str | None, env: Mapping[str, str], issues: list[ConfigIssue]):
        self.file = file
        self.issues = list(issues)
        self.expander = Expander(env, self.issue, self.refuse)
        self.options = OptionChecker(self.expander, self.issue)
        self.migrated = False  # event-tracking's settings: their empty filters are theirs

    def issue(self, message: str, path: str, line: int | None) -> None:
        self.issues.append(ConfigIssue(message, path, self.file, line))

    def check(self, data: Any) -> ConfigTree:
        tree = ConfigTree(self.file)
        settings_issues: list[ConfigIssue] = []
        refusals: list[Exception] = []
        if isinstance(data, Mapping) and _migrate.is_event_tracking(data):
            translation = _migrate.translate(data)
            refusals = translation.refusals
            for warning in translation.warnings:
                _log.warning("%s", warning)
            tree.migrated = self.migrated = True
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
                line_of(data, 1),
            )
        else:
            self.root(data, tree)
            flawed = {issue.path for issue in self.issues}
            construct_processors(tree, lambda node: _any_under(flawed, node.path), self.issue)
        issues = settings_issues + [tree.as_written(issue) for issue in self.issues]
        if issues:
            error = _refused_as(type(refusals[0])) if refusals else ConfigError
            raise error(sorted(issues, key=lambda issue: issue.line or 0))
        return tree

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
                    key_line(data, key),
                )

    def root(self, data: Mapping[Any, Any], tree: ConfigTree) -> None:
        self.unknown_keys(data, _ROOT_KEYS, "")
        if "backends" not in data:
            self.issue(
                "`backends` is missing: name at least one backend, e.g. "
                "`backends: {archive: {class: jsonlog, options: {path: events.log}}}`",
                "",
                line_of(data, None),
            )
        else:
            tree.backends = self.backends(data, "backends", "", enabled=True)
        if "processors" in data:
            tree.processors = self.processors(data, "processors", "", enabled=True)
        if "dead_letter" in data:
            value = data["dead_letter"]
            line = value_line(data, "dead_letter")
            if isinstance(value, str):
                tree.dead_letter, _ = self.expander.interpolate(value, "dead_letter", line)
            elif value is not None:
                self.issue(
                    f"expected a file path (a string), got {kind_of(value)}", "dead_letter", line
                )

    def backends(
        self, parent: Mapping[Any, Any], key: str, path: str, *, enabled: bool
    ) -> dict[str, ConfigNode]:
        value = parent[key]
        here = _join(path, key)
        line = value_line(parent, key)
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
                    key_line(value, name),
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
        line = value_line(parent, key)
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
        line = value_line(parent, key)
        if isinstance(raw, UnsafeTag):
            self.refuse(raw, path)
            return None
        if isinstance(raw, str):
            return self.from_class(
                raw, {}, path, kind, line=line, class_line=line, enabled=enabled, bare=True
            )
        if not isinstance(raw, Mapping):
            self.issue(
                f"a {kind} must be a mapping with `class` (and `options`), or a class name; "
                f"got {kind_of(raw)}",
                path,
                line,
            )
            return None
        line = line_of(raw, line)
        self.unknown_keys(raw, _NODE_KEYS if kind == "backend" else _PROCESSOR_KEYS, path)
        if "enabled" in raw:
            enabled = self.enabled_flag(raw, path, parent_enabled=enabled) and enabled
        has_children = kind == "backend" and ("backends" in raw or "processors" in raw)
        class_name = self.class_name(raw, path, kind, line, has_children=has_children)
        if class_name is None:
            return None
        options = self.options_mapping(raw, path)
        node = self.from_class(
            class_name,
            options,
            path,
            kind,
            line=line,
            class_line=value_line(raw, "class"),
            enabled=enabled,
            bare="options" not in raw,
            class_path=_join(path, "class"),
        )
        if node is not None:
            check_buffered(raw, node, self.expander, self.issue)
        if node is None or not has_children:
            return node
        if not node.router and node.target is not None:
            for child_key in ("backends", "processors"):
                if child_key in raw:
                    self.issue(
                        f"`{child_key}` is only allowed on a router node, and "
                        f"{class_name!r} does not route to backends",
                        _join(path, child_key),
                        key_line(raw, child_key),
                    )
            return node
        node.router = True
        if "backends" in raw:
            node.backends = self.backends(raw, "backends", path, enabled=node.enabled)
        if "processors" in raw:
            node.processors = self.processors(raw, "processors", path, enabled=node.enabled)
        return node

    def class_name(
        self, raw: Mapping[Any, Any], path: str, kind: Kind, line: int | None, *, has_children: bool
    ) -> str | None:
        """The node's ``class`` (``router`` when a node with children has none), or ``None``
        after reporting why there is none."""
        class_name: Any = raw.get("class")
        if class_name is None:
            if has_children:
                return "router"
            self.issue(
                f"`class` is missing: name the {kind} "
                f"(one of {', '.join(registry.known_names(kind))}, or a dotted path)",
                path,
                line,
            )
            return None
        if isinstance(class_name, UnsafeTag):
            self.refuse(class_name, _join(path, "class"))
            return None
        if not isinstance(class_name, str) or not class_name.strip():
            self.issue(
                f"`class` must be a short name or a dotted path, not {kind_of(class_name)}",
                _join(path, "class"),
                value_line(raw, "class"),
            )
            return None
        return class_name

    def options_mapping(self, raw: Mapping[Any, Any], path: str) -> Mapping[Any, Any]:
        """The node's ``options`` as written; ``{}`` when absent or (reported) not a mapping."""
        options: Any = raw.get("options")
        if isinstance(options, UnsafeTag):
            self.refuse(options, _join(path, "options"))
            return {}
        if options is None:
            return {}
        if not isinstance(options, Mapping):
            self.issue(
                f"`options` must be a mapping of option names to values, not {kind_of(options)}",
                _join(path, "options"),
                value_line(raw, "options"),
            )
            return {}
        return options

    def enabled_flag(self, raw: Mapping[Any, Any], path: str, *, parent_enabled: bool) -> bool:
        """The node's ``enabled:`` flag; nothing is reported inside a disabled router."""
        value = raw["enabled"]
        line = value_line(raw, "enabled")
        here = _join(path, "enabled")
        if isinstance(value, bool):
            return value
        if isinstance(value, UnsafeTag):
            self.refuse(value, here)
            return True
        if isinstance(value, str):
            text, from_env = self.expander.interpolate(value, here, line, enabled=parent_enabled)
            flag = parse_bool(text)
            if flag is not None:
                return flag
            if parent_enabled:
                self.issue(not_a_boolean(value, text, from_env=from_env), here, line)
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
        class_path: str | None = None,
    ) -> ConfigNode | None:
        """The node for ``class_name`` resolved, with its options checked.

        ``class_path`` is where to report a class that does not resolve (the node's own
        path when it was written as a bare string).
        """
        node = ConfigNode(path, kind, class_name.strip(), enabled=enabled, line=line)
        class_path = class_path or path
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
        self.options.check(node, options, params, enabled=enabled)
        if enabled:
            for message in runtime_problems(node, migrated=self.migrated):
                self.issue(message, class_path, class_line)
        return node


_REFUSED_AS: dict[type[Exception], type[ConfigError]] = {}


def _refused_as(refused: type[Exception]) -> type[ConfigError]:
    """A :class:`ConfigError` that is also a ``refused``, for settings that event-tracking's
    own constructor refused with that exception: code catching it keeps catching it."""
    if issubclass(refused, ConfigError):
        return refused
    made = _REFUSED_AS.get(refused)
    if made is None:
        made = _REFUSED_AS[refused] = type(
            f"ConfigError_{refused.__name__}",
            (ConfigError, refused),
            {"__module__": ConfigError.__module__, "__doc__": ConfigError.__doc__},
        )
    return made


def _any_under(paths: set[str], node_path: str) -> bool:
    """Whether any of ``paths`` is ``node_path`` or lies inside it."""
    return any(
        path == node_path or path.startswith((node_path + ".", node_path + "[")) for path in paths
    )
