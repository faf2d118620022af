"""The ``buffered:`` key of a backend node: deliver it from a worker thread.

``buffered: true`` wraps the node in a :class:`~eventrouter.backends.buffered.BufferedBackend`
with its default options, ``buffered: {max_queue: 50000, when_full: block}`` with those,
``buffered: false`` not at all. Without the key, a node is buffered when its class says
``buffered_by_default = True``, as the backends that talk to a remote peer (Segment,
MongoDB) and their subclasses do.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from eventrouter._typecheck import kind_of, parse_bool
from eventrouter.backends.buffered import BufferedBackend
from eventrouter.config.checks import not_a_boolean
from eventrouter.config.expand import Expander, Report
from eventrouter.config.model import ConfigNode
from eventrouter.config.read import UnsafeTag, key_line, value_line
from eventrouter.errors import OptionError

__all__ = ["buffered_by_default", "check_buffered", "options_of_buffered"]

_OPTIONS = tuple(
    name for name in inspect.signature(BufferedBackend).parameters if name != "backend"
)


def buffered_by_default(target: Any) -> bool:
    """Whether a node of class ``target`` is buffered when it does not say: the class (or a
    base class) has ``buffered_by_default = True``."""
    return getattr(target, "buffered_by_default", False) is True


class _Probe:
    def send(self, event: Any) -> None:  # pragma: no cover - never called
        pass


def check_buffered(
    raw: Mapping[Any, Any], node: ConfigNode, expander: Expander, report: Report
) -> None:
    """Set ``node.buffered`` from the node's ``buffered:`` key, reporting what is wrong.

    ``node.buffered`` is ``None`` (not buffered) or the options to wrap the node with.
    """
    if node.kind != "backend":
        return
    if "buffered" not in raw:
        node.buffered = {} if buffered_by_default(node.target) else None
        return
    value = raw["buffered"]
    here = f"{node.path}.buffered"
    line = value_line(raw, "buffered")
    if isinstance(value, UnsafeTag):
        report(f"{value.tag} is not allowed here", here, line)
        return
    if isinstance(value, str):
        text, from_env = expander.interpolate(value, here, line, enabled=node.enabled)
        flag = parse_bool(text)
        if flag is None:
            if node.enabled:
                expected = "expected true, false or a mapping of options"
                report(not_a_boolean(value, text, from_env=from_env, expected=expected), here, line)
            return
        value = flag
    if isinstance(value, bool):
        node.buffered = {} if value else None
        return
    if not isinstance(value, Mapping):
        report(f"expected true, false or a mapping of options, got {kind_of(value)}", here, line)
        return
    options: dict[str, Any] = {}
    for name, item in value.items():
        name_line = key_line(value, name)
        if name not in _OPTIONS:
            report(
                f"a buffered node has no option {name!r}; its options are: {', '.join(_OPTIONS)}",
                f"{here}.{name}",
                name_line,
            )
            continue
        if isinstance(item, str):
            options[name], _ = expander.interpolate(
                item, f"{here}.{name}", name_line, enabled=node.enabled
            )
        else:
            options[name] = item
    node.buffered = options
    if node.enabled and len(options) == len(value):
        _check_values(options, value, here, report)


def _check_values(
    options: dict[str, Any], written: Mapping[Any, Any], here: str, report: Report
) -> None:
    """Construct a probe with ``options``, so a bad value is reported at its own line."""
    try:
        probe = BufferedBackend(_Probe(), **options)
    except OptionError as exc:
        report(exc.message, f"{here}.{exc.option}", value_line(written, exc.option))
        return
    except (TypeError, ValueError) as exc:
        report(f"{type(exc).__name__}: {exc}", here, None)
        return
    probe.close(0)


def options_of_buffered(node: ConfigNode, dead_letter: Any) -> dict[str, Any]:
    """The keyword arguments to wrap ``node`` with (the tree's dead letter by default)."""
    options = dict(node.buffered or {})
    if dead_letter is not None:
        options.setdefault("dead_letter", dead_letter)
    return options
