"""Checking configuration values against constructor annotations.

Only the annotation shapes that constructors actually use are understood (``str``, ``int``,
``float``, ``bool``, ``None``, unions, ``Literal``, lists/sequences/sets, mappings,
``Callable``, plain classes); anything else is accepted as it is, so an exotic annotation
never makes a valid configuration fail.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Mismatch",
    "Parameters",
    "coerce_text",
    "describe_type",
    "kind_of",
    "mismatch",
    "parse_bool",
    "wants_callable",
]

_SEQUENCES = {list, tuple, cabc.Sequence, cabc.MutableSequence}
_COLLECTIONS = {cabc.Iterable, cabc.Collection, set, frozenset, cabc.Set, cabc.MutableSet}
_MAPPINGS = {dict, cabc.Mapping, cabc.MutableMapping}


@dataclass(frozen=True, slots=True)
class Parameters:
    """What a callable accepts as keyword arguments."""

    names: tuple[str, ...]
    required: tuple[str, ...]
    any_keyword: bool
    hints: dict[str, Any]

    @classmethod
    def of(cls, target: Any) -> Parameters | None:
        """The keyword parameters of ``target`` (a class or callable), or ``None`` if unknown."""
        try:
            signature = inspect.signature(target)
        except (TypeError, ValueError):
            return None
        hint_source = target.__init__ if inspect.isclass(target) else target
        try:
            hints = typing.get_type_hints(hint_source, include_extras=False)
        except Exception:  # unresolvable forward references: check names only
            hints = {}
        names: list[str] = []
        required: list[str] = []
        any_keyword = False
        for param in signature.parameters.values():
            if param.kind is param.VAR_KEYWORD:
                any_keyword = True
            elif param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                names.append(param.name)
                if param.default is param.empty:
                    required.append(param.name)
        return cls(tuple(names), tuple(required), any_keyword, hints)


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Where inside a value (``""``, ``"[2]"``, ``".host"``) it stops matching, and what was
    expected there; ``steps`` says the same as keys and indexes (``(2,)``, ``("host",)``)."""

    where: str
    expected: str
    got: Any
    steps: tuple[Any, ...] = field(default=(), compare=False)

    def inside(self, step: Any) -> Mismatch:
        """This mismatch, found inside the item ``step`` of a list or mapping."""
        where = f"[{step}]" if isinstance(step, int) else f".{step}"
        return Mismatch(where + self.where, self.expected, self.got, (step, *self.steps))


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def describe_type(tp: Any) -> str:
    """A short English description of an annotation (``"a list of strings"``)."""
    if tp is type(None) or tp is None:
        return "null"
    args = _union_args(tp)
    if args is not None:
        return " or ".join(describe_type(arm) for arm in args)
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is typing.Annotated:
        return describe_type(typing.get_args(tp)[0])
    simple = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        bytes: "bytes",
    }
    if tp in simple:
        return simple[tp]
    base = origin or tp
    if base in _SEQUENCES or base in _COLLECTIONS:
        inner = typing.get_args(tp)
        if inner and inner[0] is not Any and inner[-1] is not Ellipsis:
            return f"a list of {_plural(describe_type(inner[0]))}"
        if inner and len(inner) == 2 and inner[1] is Ellipsis:
            return f"a list of {_plural(describe_type(inner[0]))}"
        return "a list"
    if base in _MAPPINGS:
        return "a mapping"
    if base is cabc.Callable:
        return "a callable (a dotted path to it)"
    return f"a {getattr(base, '__name__', str(base))}"


def _plural(text: str) -> str:
    """``"a list of strings or null"`` -> ``"lists of strings or null"``: each alternative
    with an article loses it and its first noun takes an ``s``."""
    return " or ".join(_plural_one(part) for part in text.split(" or "))


def _plural_one(text: str) -> str:
    for article in ("a ", "an "):
        if text.startswith(article):
            noun, of, rest = text[len(article) :].partition(" of ")
            return (noun if noun.endswith("s") else noun + "s") + of + rest
    return text


def kind_of(value: Any) -> str:
    """A short English description of a value's type (``"a string"``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, cabc.Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def wants_callable(tp: Any) -> bool:
    """Whether the annotation is, or has an arm that is, ``Callable``."""
    arms = _union_args(tp) or (tp,)
    return any((typing.get_origin(arm) or arm) is cabc.Callable for arm in arms)


def mismatch(value: Any, tp: Any) -> Mismatch | None:
    """``None`` when ``value`` satisfies the annotation ``tp``, else where and why not."""
    if tp is Any or tp is object or isinstance(tp, typing.TypeVar | str | typing.ForwardRef):
        return None
    if tp is None or tp is type(None):
        return None if value is None else Mismatch("", "null", value)
    arms = _union_args(tp)
    if arms is not None:
        problems = [mismatch(value, arm) for arm in arms]
        if any(problem is None for problem in problems):
            return None
        deeper = [p for p in problems if p is not None and p.where]
        if len(deeper) == 1:  # the value has the right shape for one arm: say where inside
            return deeper[0]
        return Mismatch("", describe_type(tp), value)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return mismatch(value, args[0])
    if origin is typing.Literal:
        ok = any(value == a and type(value) is type(a) for a in args)
        return None if ok else Mismatch("", describe_type(tp), value)
    if tp is bool:
        return None if isinstance(value, bool) else Mismatch("", describe_type(tp), value)
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else Mismatch("", describe_type(tp), value)
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else Mismatch("", describe_type(tp), value)
    base = origin or tp
    if base in _SEQUENCES or base in _COLLECTIONS:
        return _check_items(value, tp, base, args)
    if base in _MAPPINGS:
        if not isinstance(value, cabc.Mapping):
            return Mismatch("", describe_type(tp), value)
        if len(args) == 2:
            for key, item in value.items():
                if mismatch(key, args[0]) is not None:
                    expected = f"a key that is {describe_type(args[0])}"
                    return Mismatch(f".{key}", expected, key, (key,))
                inner = mismatch(item, args[1])
                if inner is not None:
                    return inner.inside(key)
        return None
    if base is cabc.Callable:
        return None if callable(value) else Mismatch("", describe_type(tp), value)
    if origin is type:
        return None
    if inspect.isclass(base):
        try:
            ok = isinstance(value, base)
        except TypeError:  # a Protocol that is not runtime-checkable, ...
            return None
        return None if ok else Mismatch("", describe_type(tp), value)
    return None


def _check_items(value: Any, tp: Any, base: Any, args: tuple[Any, ...]) -> Mismatch | None:
    allowed: tuple[type, ...] = (list, tuple)
    if base in _COLLECTIONS:
        allowed = (list, tuple, set, frozenset)
    if isinstance(value, str | bytes) or not isinstance(value, allowed):
        return Mismatch("", describe_type(tp), value)
    items: list[Any] = list(typing.cast(cabc.Iterable[Any], value))
    if not args:
        return None
    if base is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        if len(items) != len(args):
            return Mismatch("", f"a list of {len(args)} items", value)
        pairs = list(zip(items, args, strict=True))
    else:
        pairs = [(item, args[0]) for item in items]
    for index, (item, item_tp) in enumerate(pairs):
        inner = mismatch(item, item_tp)
        if inner is not None:
            return inner.inside(index)
    return None


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}


def parse_bool(text: str) -> bool | None:
    """``True``/``False`` for the usual words (``true``, ``yes``, ``on``, ``1``...), else None."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def coerce_text(text: str, tp: Any) -> Any:
    """Convert a string from ``${VAR}`` to the annotated type when a string is not accepted.

    Tries an integer, a number, then a boolean, in that order, keeping the first the
    annotation accepts. Returns ``text`` unchanged when none does.
    """
    if mismatch(text, tp) is None:
        return text
    candidates: list[Any] = []
    for convert in (int, float):
        with contextlib.suppress(ValueError):
            candidates.append(convert(text))
    flag = parse_bool(text)
    if flag is not None and text.strip():
        candidates.append(flag)
    if text.strip().lower() in {"null", "none", "~"}:
        candidates.append(None)
    for candidate in candidates:
        if mismatch(candidate, tp) is None:
            return candidate
    return text
