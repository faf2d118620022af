"""Helpers for constructors that refuse bad options with :class:`~eventrouter.errors.OptionError`.

A processor or backend checks its options when it is built; raising ``OptionError`` (or
``OptionTypeError`` for a value of the wrong type) with the option's name lets the
configuration loader report the problem at that option's file, line and dotted path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from eventrouter.errors import OptionError, OptionTypeError

__all__ = ["each_item", "refuse_bare_string", "refusing"]

_T = TypeVar("_T")
_R = TypeVar("_R")


def refuse_bare_string(option: str, value: object, wanted: str = "a list") -> None:
    """Refuse a string (or bytes) given where a list is wanted: always a mistake.

    Args:
        option: the option's name, used in the message and the error.
        value: the value given.
        wanted: what the option takes, e.g. ``"a list of name patterns"``.

    Raises:
        OptionTypeError: ``value`` is a ``str`` or ``bytes``.
    """
    if isinstance(value, str | bytes):
        raise OptionTypeError(
            option,
            f"{option} must be {wanted}, not a single string: write {option}=[{value!r}]",
        )


@contextmanager
def refusing(option: str, *where: str | int) -> Iterator[None]:
    """Turn a ``ValueError`` or ``TypeError`` raised inside into an error about ``option``.

    Args:
        option: the option whose value is being checked.
        *where: the steps inside the value (a mapping key, a list index) being checked.

    Raises:
        OptionTypeError: for a ``TypeError`` raised inside.
        OptionError: for a ``ValueError`` raised inside (an ``OptionError`` raised inside is
            restated for ``option``, its own steps following ``where``).
    """
    try:
        yield
    except OptionError as exc:
        raise type(exc)(option, exc.message, where=(*where, *exc.where)) from exc
    except TypeError as exc:
        raise OptionTypeError(option, str(exc), where=where) from exc
    except ValueError as exc:
        raise OptionError(option, str(exc), where=where) from exc


def each_item(option: str, values: Iterable[_T], parse: Callable[[_T], _R]) -> list[_R]:
    """``parse`` applied to every item of an option's list; a refused item is located.

    Args:
        option: the option's name.
        values: its items.
        parse: checks or converts one item, raising ``ValueError``/``TypeError`` if invalid.

    Raises:
        OptionError: an item was refused; ``where`` holds its index.
    """
    parsed: list[_R] = []
    for index, value in enumerate(values):
        with refusing(option, index):
            parsed.append(parse(value))
    return parsed
