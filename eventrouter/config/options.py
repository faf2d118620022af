"""A node's options against its constructor: names, types, required ones, and refusals.

:class:`OptionChecker` checks the options written for a node against the constructor's
signature and annotations (after ``${VAR}`` expansion). :func:`construct_processors` then
builds every processor once, so that a constructor refusing an option
(:class:`~eventrouter.errors.OptionError`) is reported at that option's line, and the
builder reuses the instance. :func:`refusal` turns such an error into an issue.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from eventrouter import registry
from eventrouter._typecheck import Parameters, coerce_text, kind_of, mismatch, wants_callable
from eventrouter.config.checks import ACCEPTED_BOOLEANS, empty_value, from_where, not_empty
from eventrouter.config.expand import (
    MAX_OPTION_VALUES,
    Expander,
    Report,
    TooLargeError,
    interpolated,
)
from eventrouter.config.model import ConfigNode, ConfigTree
from eventrouter.config.read import key_line, line_of, line_within, value_line
from eventrouter.config.secrets import is_secret_name, scrub
from eventrouter.errors import MissingExtraError, OptionError

__all__ = ["OptionChecker", "accepts", "construct_processors", "refusal"]

_ROUTER_KEYS = ("backends", "processors")


class OptionChecker:
    """Checks and expands the options of one node after another.

    Args:
        expander: expands ``${VAR}`` in option values.
        report: called with each problem (message, dotted path, line).
    """

    def __init__(self, expander: Expander, report: Report) -> None:
        self.expander = expander
        self.report = report

    def check(
        self,
        node: ConfigNode,
        options: Mapping[Any, Any],
        params: Parameters | None,
        *,
        enabled: bool,
    ) -> None:
        """Fill ``node.options`` from ``options`` as written, reporting what is wrong.

        Options of a disabled node are kept as written, unexpanded and unchecked, except
        for their names.
        """
        options_path = f"{node.path}.options"
        node.source = options
        reserved = _ROUTER_KEYS if node.router else ()
        for name, value in options.items():
            here = f"{options_path}.{name}"
            name_line = key_line(options, name)
            if not isinstance(name, str):
                self.report("an option name must be a string", here, name_line)
                continue
            if name in reserved:
                self.report(
                    f"give `{name}` directly on the router node, not inside `options`",
                    here,
                    name_line,
                )
                continue
            if params is not None and not params.any_keyword and name not in params.names:
                accepted = [n for n in params.names if n not in reserved]
                self.report(
                    f"{node.class_name!r} has no option {name!r}"
                    f"{registry.suggest(name, accepted)}; "
                    + (f"its options are: {', '.join(accepted)}" if accepted else "it takes none"),
                    here,
                    name_line,
                )
                continue
            if not enabled:
                node.options[name] = value
                continue
            line = value_line(options, name)
            before = self.expander.problems
            try:
                expanded, from_env = self.expander.expand(value, here, line)
            except TooLargeError:
                self.report(
                    f"the option holds more than {MAX_OPTION_VALUES} values (YAML aliases "
                    f"nested in each other?)",
                    here,
                    line,
                )
                continue
            if from_env:
                node.written[name] = value
            if self.expander.problems != before:
                continue  # a variable not set (or malformed): already said, once
            if _empty(expanded) and (from_env or isinstance(value, str)):
                required = params is not None and name in params.required
                if required or is_secret_name(name) or name in not_empty(node.target):
                    self.report(empty_value(name, value, self.expander.env), here, line)
                    continue
            hint = params.hints.get(name) if params is not None else None
            if hint is not None:
                expanded = self._typed(expanded, hint, node, name, raw=value, line=line)
            node.options[name] = expanded
        if enabled and params is not None:
            missing = [n for n in params.required if n not in options and n not in reserved]
            for name in missing:
                self.report(
                    f"{node.class_name!r} needs the option {name!r}",
                    options_path if options else node.path,
                    line_of(options, node.line),
                )

    def _typed(
        self, value: Any, hint: Any, node: ConfigNode, name: str, *, raw: Any, line: int | None
    ) -> Any:
        """``value`` converted where the annotation asks for it; a mismatch is reported."""
        path = f"{node.path}.options.{name}"
        from_env = name in node.written
        if interpolated(raw) and isinstance(value, str):
            value = coerce_text(value, hint)
        if isinstance(value, str) and wants_callable(hint) and mismatch(value, hint) is not None:
            try:
                value = registry.import_path(value)
            except (ImportError, MissingExtraError) as exc:
                self.report(str(exc), path, line)
                return value
        problem = mismatch(value, hint)
        if problem is None:
            return value
        secret = from_env or is_secret_name(name) or is_secret_name(problem.where)
        got = kind_of(problem.got)
        if not secret and isinstance(problem.got, str | int | float) and len(str(problem.got)) < 60:
            got += f" ({problem.got!r})"
        elif from_env:
            got += f" from {from_where(raw)}"
            if "true or false" in problem.expected or "boolean" in problem.expected:
                got += f" (accepted: {ACCEPTED_BOOLEANS})"
        self.report(
            f"expected {problem.expected}, got {got}",
            path + problem.where,
            line_within(raw, problem.steps, line),
        )
        return value


def _empty(value: Any) -> bool:
    return isinstance(value, str) and not value.strip()


def refusal(node: ConfigNode, exc: Exception) -> tuple[str, str, int | None]:
    """The message, dotted path and line of an issue for ``node``'s constructor raising
    ``exc``: at the option an :class:`~eventrouter.errors.OptionError` names, else at the
    node. Secrets of the node's options are scrubbed from the message."""
    if isinstance(exc, OptionError):
        text = exc.message
        if exc.option in node.source:
            path = f"{node.path}.options.{exc.location}"
            option_line = value_line(node.source, exc.option)
            line = line_within(node.source[exc.option], exc.where, option_line)
        elif node.source:
            path, line = f"{node.path}.options", line_of(node.source, node.line)
        else:
            path, line = node.path, node.line
    else:
        text = f"{type(exc).__name__}: {exc}"
        path, line = node.path, node.line
    message = scrub(text, node.options, set(node.written))
    return f"{node.class_name!r} refused its options: {message}", path, line


def accepts(target: Any, parameter: str) -> bool:
    """Whether calling ``target`` takes a keyword argument named ``parameter``."""
    try:
        return parameter in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def construct_processors(
    tree: ConfigTree, flawed: Callable[[ConfigNode], bool], report: Report
) -> None:
    """Construct every enabled processor that validated cleanly, keeping the instance on its
    node, and report each one whose constructor refuses its options.

    Processors have no side effects, so they are built while validating; backends, which
    open files and connections, are not. A processor taking the tree's ``dead_letter`` is
    left for the builder, which has it.

    Args:
        tree: the validated tree.
        flawed: whether a node already has an issue (it is not constructed).
        report: called with each refusal (message, dotted path, line).
    """
    for node in tree.walk():
        if node.kind != "processor" or not node.enabled or not node.called:
            continue
        if node.target is None or flawed(node):
            continue
        if tree.dead_letter and accepts(node.target, "dead_letter"):
            continue
        try:
            node.instance = node.target(**node.options)
        except Exception as exc:
            report(*refusal(node, exc))
