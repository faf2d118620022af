"""The validated configuration: a :class:`ConfigTree` of :class:`ConfigNode` objects."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from eventrouter.config import migrate as _migrate
from eventrouter.config.secrets import mask_uri, show
from eventrouter.errors import ConfigIssue
from eventrouter.registry import Kind

__all__ = ["ConfigNode", "ConfigTree"]


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
        written: for options whose value (or a part of it) came from ``${VAR}``, the value as
            written; such values are secrets and never shown expanded.
        enabled: ``False`` when switched off by ``enabled:``; such nodes are not built.
        router: whether the node routes to child ``backends``.
        backends: a router's child nodes, by name.
        processors: a router's processors.
        called: whether ``target`` is called with ``options`` to build it (``False`` for a
            bare callable used as a processor as it is).
        line: the line of the node in its file.
        source: the options as read, with their positions (see :mod:`eventrouter.config.read`).
        instance: a processor constructed while validating, which the first :func:`build`
            uses rather than constructing it again; ``None`` otherwise.
        buffered: for a backend delivered from a worker thread, the options of its
            :class:`~eventrouter.backends.buffered.BufferedBackend` (``{}``: the defaults);
            ``None`` when it is not buffered.
    """

    path: str
    kind: Kind
    class_name: str
    target: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    written: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    router: bool = False
    backends: dict[str, ConfigNode] = field(default_factory=dict)
    processors: list[ConfigNode] = field(default_factory=list)
    called: bool = True
    line: int | None = None
    source: Mapping[Any, Any] = field(default_factory=dict, repr=False)
    instance: Any = field(default=None, repr=False)
    buffered: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        """The last part of the path (the backend's name, or ``processors[0]``)."""
        return self.path.rpartition(".")[2]

    @property
    def shown_class(self) -> str:
        """The class to show: as written, or for a user's class that the event-tracking
        translation builds through :class:`~eventrouter.config.migrate.Engine`, that class."""
        built = _migrate.built_through_engine(self.class_name, self.options)
        return self.class_name if built is None else built[0]

    def shown_options(self) -> dict[str, str]:
        """The options as text safe to print: secrets masked, ``${VAR}`` values as written."""
        built = _migrate.built_through_engine(self.class_name, self.options)
        if built is not None and "options" not in self.written and isinstance(built[1], dict):
            return {key: show(value, key) for key, value in built[1].items()}
        shown: dict[str, str] = {}
        for key, value in self.options.items():
            if key not in self.written:
                shown[key] = show(value, key)
            elif isinstance(self.written[key], str):
                shown[key] = mask_uri(self.written[key])
            else:
                shown[key] = show(self.written[key], key)
        return shown

    def walk(self) -> Iterator[ConfigNode]:
        """This node and every node below it, depth first."""
        yield self
        for processor in self.processors:
            yield from processor.walk()
        for child in self.backends.values():
            yield from child.walk()


@dataclass(eq=False)
class ConfigTree:
    """A validated routing configuration, ready for :func:`~eventrouter.config.build`.

    Attributes:
        file: the file it was read from, or ``None`` for a mapping.
        processors: the root router's processors.
        backends: the root router's backends, by name.
        dead_letter: the dead-letter file every router of the tree writes failed deliveries to.
        migrated: whether it was translated from event-tracking settings.
        notes: remarks made while reading (e.g. on the translation), safe to print.
        origins: for a translated configuration, the settings path and line each node path
            came from (errors name those); empty otherwise.
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

    def as_written(self, issue: ConfigIssue) -> ConfigIssue:
        """``issue``, for a translated configuration restated with the path (and, when it has
        none, the line) of the event-tracking settings it came from."""
        found = _migrate.original(issue.path, self.origins)
        if found is None:
            return issue
        path, line = found
        return ConfigIssue(issue.message, path, issue.file, issue.line or line)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
