"""Building: a validated :class:`ConfigTree` -> a :class:`~eventrouter.tracker.Tracker`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from eventrouter.backends.buffered import BufferedBackend
from eventrouter.backends.routing import RoutingBackend
from eventrouter.config.buffering import options_of_buffered
from eventrouter.config.model import ConfigNode, ConfigTree
from eventrouter.config.options import accepts, refusal
from eventrouter.config.quiet import quiet_third_party_loggers
from eventrouter.deadletter import DeadLetterFile
from eventrouter.errors import ConfigError, ConfigIssue
from eventrouter.tracker import Tracker

__all__ = ["build"]

_log = logging.getLogger("eventrouter.config")


def build(tree: ConfigTree) -> Tracker:
    """Build the :class:`~eventrouter.tracker.Tracker` of a validated :class:`ConfigTree`.

    Disabled nodes are skipped. Processors constructed while validating are used as they
    are (by the first build of the tree; a later build constructs its own). If a constructor
    raises (a pattern it refuses, a server option it rejects), every such failure is
    collected, what was built is closed, and one :class:`~eventrouter.errors.ConfigError`
    names the nodes (and the option, when the constructor raised
    :class:`~eventrouter.errors.OptionError`).

    Third-party loggers that can print secrets or event data at DEBUG are set to INFO
    unless the application set their level (see :mod:`eventrouter.config.quiet`).
    """
    quiet_third_party_loggers()
    dead_letter = DeadLetterFile(tree.dead_letter) if tree.dead_letter else None
    builder = _Builder(tree.file, dead_letter)
    backends = builder.backends(tree.backends)
    processors = builder.processors(tree.processors)
    if builder.issues:
        builder.close_all()
        raise ConfigError([tree.as_written(issue) for issue in builder.issues])
    for note in tree.notes:
        _log.info("%s", note)
    disabled = [n.path for n in tree.walk() if not n.enabled]
    if disabled:
        _log.info("disabled by the configuration: %s", ", ".join(disabled))
    return Tracker(router=RoutingBackend(backends, processors, dead_letter))


class _Builder:
    def __init__(self, file: str | None, dead_letter: DeadLetterFile | None) -> None:
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
        if node.instance is not None:
            built, node.instance = node.instance, None
        else:
            built = self.construct(node)
            if built is None:
                return None
        checked = self.checked(node, built)
        if checked is None or node.buffered is None:
            return checked
        return self.buffered(node, checked)

    def buffered(self, node: ConfigNode, built: Any) -> Any:
        try:
            wrapped = BufferedBackend(built, **options_of_buffered(node, self.dead_letter))
        except Exception as exc:  # the validator checked the options: only a bug gets here
            self.issues.append(ConfigIssue(f"buffered: {exc}", node.path, self.file, node.line))
            return None
        self.built.append(wrapped)
        return wrapped

    def construct(self, node: ConfigNode) -> Any:
        kwargs = dict(node.options)
        if node.router:
            kwargs["backends"] = self.backends(node.backends)
            kwargs["processors"] = self.processors(node.processors)
        if self.dead_letter is not None and accepts(node.target, "dead_letter"):
            kwargs.setdefault("dead_letter", self.dead_letter)
        try:
            built = node.target(**kwargs)
        except Exception as exc:
            message, path, line = refusal(node, exc)
            self.issues.append(ConfigIssue(message, path, self.file, line))
            return None
        bind_config = getattr(built, "bind_config", None)
        if callable(bind_config):  # a node that needs its configuration (a celery node)
            bind_config(node)
        return built

    def checked(self, node: ConfigNode, built: Any) -> Any:
        """``built`` if it is what the node's kind needs, else ``None`` (reported)."""
        if node.kind == "backend" and not callable(getattr(built, "send", None)):
            problem = "has no send(event) method, so it is not a backend"
        elif node.kind == "processor" and not callable(built):
            problem = "is not callable, so it is not a processor"
        else:
            self.built.append(built)
            return built
        self.issues.append(
            ConfigIssue(
                f"{node.class_name!r} built a {type(built).__name__}, which {problem}",
                node.path,
                self.file,
                node.line,
            )
        )
        return None

    def close_all(self) -> None:
        for obj in reversed(self.built):
            close = getattr(obj, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:
                    _log.warning("closing %s failed: %s", type(obj).__name__, type(exc).__name__)
