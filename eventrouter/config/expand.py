"""``${VAR}`` expansion: ``${NAME}``, ``${NAME:-default}`` and ``$$`` for a literal ``$``.

A value taken from the environment is treated as a secret (it is never shown); a default
written in the file is not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from eventrouter.config.read import UnsafeTag, value_line

__all__ = ["MAX_OPTION_VALUES", "Expander", "Report", "TooLargeError", "interpolated"]

MAX_OPTION_VALUES = 100_000
"""The most values one option may hold (each occurrence of a YAML alias counts)."""

_INTERPOLATION = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)

Report = Callable[[str, str, int | None], None]
"""Takes an issue: the message, the dotted path and the line."""


def interpolated(raw: object) -> bool:
    """Whether ``raw`` (a value as written) is a string holding a ``${...}``: its expansion
    is text whatever the variable or default held, so it is converted to the option's type
    (``"${MAX_EVENTS:-100}"`` gives ``100`` for an integer option, set or defaulted)."""
    return isinstance(raw, str) and "${" in raw


class TooLargeError(Exception):
    """An option holds more than :data:`MAX_OPTION_VALUES` values."""


class Expander:
    """Expands ``${VAR}`` from ``env``, reporting malformed or missing variables.

    Args:
        env: the variables.
        report: called with each problem (message, dotted path, line).
        refuse: called with each refused YAML tag met inside a value, and its path.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        report: Report,
        refuse: Callable[[UnsafeTag, str], None],
    ) -> None:
        self.env = env
        self._report = report
        self.refuse = refuse
        self.problems = 0
        """How many problems it has reported: a caller compares it before and after a call
        to skip further checks of a value already reported (one message per problem)."""

    def report(self, message: str, path: str, line: int | None) -> None:
        """Report a problem (message, dotted path, line) and count it."""
        self.problems += 1
        self._report(message, path, line)

    def interpolate(
        self, text: str, path: str, line: int | None, *, enabled: bool = True
    ) -> tuple[str, bool]:
        """``text`` expanded, and whether any value came from the environment.

        A default written in the file (``${NAME:-100}``) is not from the environment, but
        the text is still interpolated: see :func:`interpolated` for the conversions both
        kinds of values get.

        A missing variable without a default is reported only when ``enabled`` (a disabled
        node needs none of its variables).
        """
        found = False

        def replace(match: re.Match[str]) -> str:
            nonlocal found
            whole = match.group(0)
            if whole == "$$":
                return "$"
            inner = match.group(1)
            variable = _VARIABLE.fullmatch(inner) if inner is not None else None
            if variable is None:
                self.report(
                    f"malformed interpolation {whole!r}: write ${{NAME}} or ${{NAME:-default}}",
                    path,
                    line,
                )
                return ""
            name, default = variable.group(1), variable.group(2)
            if default is not None and "${" in default:
                self.report(
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
                    self.report(
                        f"the environment variable {name} is not set (and no default is "
                        f"given: write ${{{name}:-default}} for one)",
                        path,
                        line,
                    )
                return ""
            return value

        return _INTERPOLATION.sub(replace, text), found

    def expand(self, value: Any, path: str, line: int | None) -> tuple[Any, bool]:
        """Every string inside ``value`` expanded (a copy), and whether any part of it came
        from the environment; refused tags inside are reported and become ``None``.

        Raises:
            TooLargeError: ``value`` holds more than :data:`MAX_OPTION_VALUES` values.
        """
        budget = MAX_OPTION_VALUES
        from_env = False

        def walk(item: Any, here: str, item_line: int | None) -> Any:
            nonlocal budget, from_env
            budget -= 1
            if budget < 0:
                raise TooLargeError
            if isinstance(item, UnsafeTag):
                self.refuse(item, here)
                return None
            if isinstance(item, str):
                text, interpolated = self.interpolate(item, here, item_line)
                from_env = from_env or interpolated
                return text
            if isinstance(item, Mapping):
                return {
                    key: walk(inner, f"{here}.{key}", value_line(item, key))
                    for key, inner in item.items()
                }
            if isinstance(item, list | tuple):
                return [
                    walk(inner, f"{here}[{i}]", value_line(item, i)) for i, inner in enumerate(item)
                ]
            return item

        return walk(value, path, line), from_env
