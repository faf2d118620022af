"""Filters: processors that keep or veto events, and the predicates to build them from.

Every predicate is a processor: called with an event it returns the event when its test is
true and raises :class:`~eventrouter.errors.EventEmissionExit` (vetoing the event for its
branch) when it is false. Predicates combine with ``&`` (and), ``|`` (or), ``^`` (exclusive
or) and ``~`` (not)::

    keep = NameMatches("problem.#") & FieldExists("context.user_id") & ~FieldEquals(
        "context.org_id", "test-org"
    )

and expose the boolean test as ``predicate.test(event)``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import Any

from eventrouter._options import each_item, refuse_bare_string
from eventrouter.errors import EventEmissionExit, OptionTypeError
from eventrouter.paths import MISSING, format_path, get_path, parse_path
from eventrouter.patterns import NamePattern, PatternSet
from eventrouter.typing import Event

__all__ = [
    "And",
    "FieldEquals",
    "FieldExists",
    "FieldMatches",
    "NameFilter",
    "NameMatches",
    "Not",
    "Or",
    "Predicate",
    "Xor",
]


class Predicate(abc.ABC):
    """A test on an event that is also a processor vetoing the events it rejects.

    Subclasses implement :meth:`test`.
    """

    __slots__ = ()

    @abc.abstractmethod
    def test(self, event: Event) -> bool:
        """Whether the event satisfies the predicate; never raises for odd events."""

    def __call__(self, event: Event) -> Event:
        """Return ``event`` unchanged when :meth:`test` is true, else veto it.

        Raises:
            EventEmissionExit: the test is false.
        """
        if self.test(event):
            return event
        raise EventEmissionExit(f"vetoed by {type(self).__name__}")

    def __and__(self, other: Predicate) -> Predicate:
        if not isinstance(other, Predicate):
            return NotImplemented
        return And(self, other)

    def __or__(self, other: Predicate) -> Predicate:
        if not isinstance(other, Predicate):
            return NotImplemented
        return Or(self, other)

    def __xor__(self, other: Predicate) -> Predicate:
        if not isinstance(other, Predicate):
            return NotImplemented
        return Xor(self, other)

    def __invert__(self) -> Predicate:
        return Not(self)


def _predicates(kind: type[And | Or], parts: Iterable[Predicate]) -> tuple[Predicate, ...]:
    """Check the operands and flatten nested combinations of the same kind."""
    flat: list[Predicate] = []
    for part in parts:
        if not isinstance(part, Predicate):
            raise TypeError(
                f"{kind.__name__} combines predicates, not {type(part).__name__}: {part!r}"
            )
        flat.extend(part.parts if isinstance(part, kind) else (part,))
    if not flat:
        raise ValueError(f"{kind.__name__} needs at least one predicate")
    return tuple(flat)


class And(Predicate):
    """True when every predicate is true (evaluated in order, stopping at the first false).

    Usually written ``a & b``.
    """

    __slots__ = ("parts",)

    def __init__(self, *parts: Predicate) -> None:
        self.parts: tuple[Predicate, ...] = _predicates(And, parts)

    def test(self, event: Event) -> bool:
        for part in self.parts:  # noqa: SIM110 - a loop allocates no generator per event
            if not part.test(event):
                return False
        return True

    def __repr__(self) -> str:
        return "(" + " & ".join(map(repr, self.parts)) + ")"


class Or(Predicate):
    """True when any predicate is true (evaluated in order, stopping at the first true).

    Usually written ``a | b``.
    """

    __slots__ = ("parts",)

    def __init__(self, *parts: Predicate) -> None:
        self.parts: tuple[Predicate, ...] = _predicates(Or, parts)

    def test(self, event: Event) -> bool:
        for part in self.parts:  # noqa: SIM110 - a loop allocates no generator per event
            if part.test(event):
                return True
        return False

    def __repr__(self) -> str:
        return "(" + " | ".join(map(repr, self.parts)) + ")"


class Xor(Predicate):
    """True when exactly one of the two predicates is true. Usually written ``a ^ b``."""

    __slots__ = ("left", "right")

    def __init__(self, left: Predicate, right: Predicate) -> None:
        for part in (left, right):
            if not isinstance(part, Predicate):
                raise TypeError(f"Xor combines predicates, not {type(part).__name__}: {part!r}")
        self.left = left
        self.right = right

    def test(self, event: Event) -> bool:
        return self.left.test(event) != self.right.test(event)

    def __repr__(self) -> str:
        return f"({self.left!r} ^ {self.right!r})"


class Not(Predicate):
    """True when the predicate is false. Usually written ``~a``."""

    __slots__ = ("inner",)

    def __init__(self, inner: Predicate) -> None:
        if not isinstance(inner, Predicate):
            raise TypeError(f"Not negates a predicate, not {type(inner).__name__}: {inner!r}")
        self.inner = inner

    def test(self, event: Event) -> bool:
        return not self.inner.test(event)

    def __invert__(self) -> Predicate:
        return self.inner

    def __repr__(self) -> str:
        return f"~{self.inner!r}"


class NameMatches(Predicate):
    """True when the event's ``name`` matches any of the patterns.

    Args:
        *patterns: name patterns (exact, topic ``video.*`` / ``problem.#``, or ``re:...``;
            see :mod:`eventrouter.patterns`). An event without a string name never matches.

    Raises:
        TypeError: a pattern is not a string (pass patterns as separate arguments).
        ValueError: a pattern is invalid, or none is given.
    """

    __slots__ = ("_patterns",)

    def __init__(self, *patterns: str) -> None:
        if not patterns:
            raise ValueError("NameMatches needs at least one pattern")
        self._patterns = PatternSet(patterns)

    def test(self, event: Event) -> bool:
        return self._patterns.matches(event.get("name"))

    def __repr__(self) -> str:
        return "NameMatches(" + ", ".join(map(repr, self._patterns.patterns)) + ")"


def _pattern_set(option: str, value: object) -> PatternSet | None:
    """The patterns of ``allow``/``block`` compiled, each refused one located by its index."""
    if value is None:
        return None
    refuse_bare_string(option, value, "a list of name patterns")
    if not isinstance(value, Iterable):
        raise OptionTypeError(
            option, f"{option} must be a list of name patterns, not {type(value).__name__}"
        )
    patterns = list(value)
    each_item(option, patterns, NamePattern)
    return PatternSet(patterns)


class NameFilter(Predicate):
    """Keep the events whose name is allowed and not blocked; veto the others.

    YAML short name ``name_filter``. ``block`` wins over ``allow``. An event without a string
    ``name`` is vetoed when ``allow`` is given (it matches nothing) and kept otherwise.

    Args:
        allow: name patterns to keep; ``None`` (the default) allows every name, an empty list
            allows none.
        block: name patterns to veto, even when allowed.

    Raises:
        OptionTypeError: ``allow`` or ``block`` is a bare string (always a mistake for a
            list); a :class:`TypeError`.
        OptionError: a pattern is invalid (the message names it, ``where`` holds its index);
            a :class:`ValueError`.
    """

    __slots__ = ("_allow", "_block")

    def __init__(self, allow: list[str] | None = None, block: list[str] | None = None) -> None:
        self._allow = _pattern_set("allow", allow)
        block_set = _pattern_set("block", block)
        self._block = block_set if block_set else None

    def test(self, event: Event) -> bool:
        name = event.get("name")
        if self._block is not None and self._block.matches(name):
            return False
        return self._allow is None or self._allow.matches(name)

    def __repr__(self) -> str:
        allow = list(self._allow.patterns) if self._allow is not None else None
        block = list(self._block.patterns) if self._block is not None else []
        return f"NameFilter(allow={allow!r}, block={block!r})"


class FieldExists(Predicate):
    """True when the dotted ``path`` is present in the event (a present ``None`` counts).

    Args:
        path: a dotted path such as ``context.user_id`` (see :mod:`eventrouter.paths`).
    """

    __slots__ = ("_path",)

    def __init__(self, path: str) -> None:
        self._path = parse_path(path)

    def test(self, event: Event) -> bool:
        return get_path(event, self._path) is not MISSING

    def __repr__(self) -> str:
        return f"FieldExists({format_path(self._path)!r})"


class FieldEquals(Predicate):
    """True when the value at ``path`` equals ``value``.

    Equality is Python's ``==`` except that booleans never equal numbers (``True`` is not
    ``1``), as in JSON. A missing field never equals anything, not even ``None``.

    Args:
        path: a dotted path such as ``context.org_id``.
        value: the value to compare with.
    """

    __slots__ = ("_is_bool", "_path", "_value")

    def __init__(self, path: str, value: Any) -> None:
        self._path = parse_path(path)
        self._value = value
        self._is_bool = isinstance(value, bool)

    def test(self, event: Event) -> bool:
        found = get_path(event, self._path)
        if found is MISSING or isinstance(found, bool) is not self._is_bool:
            return False
        return bool(found == self._value)

    def __repr__(self) -> str:
        return f"FieldEquals({format_path(self._path)!r}, {self._value!r})"


class FieldMatches(Predicate):
    """True when the value at ``path`` is a string matching ``pattern``.

    Args:
        path: a dotted path such as ``context.course_id``.
        pattern: a pattern in the name syntax (exact, topic ``*`` / ``#`` words, or
            ``re:...`` matched against the whole value); see :mod:`eventrouter.patterns`.

    Raises:
        ValueError: the path or the pattern is invalid.
    """

    __slots__ = ("_path", "_pattern")

    def __init__(self, path: str, pattern: str) -> None:
        self._path = parse_path(path)
        self._pattern = NamePattern(pattern)

    def test(self, event: Event) -> bool:
        return self._pattern.matches(get_path(event, self._path))

    def __repr__(self) -> str:
        return f"FieldMatches({format_path(self._path)!r}, {self._pattern.text!r})"
