"""Rename: move values between dotted paths."""

from __future__ import annotations

from collections.abc import Mapping

from eventrouter._options import refusing
from eventrouter.errors import OptionError, OptionTypeError
from eventrouter.paths import (
    MISSING,
    ParsedPath,
    format_path,
    get_path,
    parse_path,
    pop_path,
    set_path,
)
from eventrouter.typing import Event

__all__ = ["Rename"]


class Rename:
    """Move the value at each source path to its destination path.

    YAML short name ``rename``. ``fields`` maps source paths to destination paths
    (:mod:`eventrouter.paths`), applied in order: ``{"context.username": "data.user"}``.

    - A missing source is skipped (the destination is left as it is).
    - An existing destination is overwritten; intermediate dicts are created.
    - The source key is removed (from a list, the element is removed and the rest shift).
    - A destination may lie inside its source or the other way round (``data.a`` ->
      ``data.a.b`` nests the value; ``data.a.b`` -> ``data.a`` lifts it).
    - When the destination cannot be set (a string where a mapping is needed), the value is
      put back and :class:`TypeError` is raised, so the router counts a processor error and
      the event goes on unchanged by that move.

    Args:
        fields: source dotted path -> destination dotted path.

    Raises:
        OptionError: a path is invalid, a source equals its destination, or ``fields`` is
            empty (a :class:`ValueError` naming the option and the entry).
        OptionTypeError: ``fields`` is not a mapping of strings (also a :class:`TypeError`).
    """

    __slots__ = ("_moves",)

    def __init__(self, fields: Mapping[str, str]) -> None:
        if not isinstance(fields, Mapping):
            raise OptionTypeError(
                "fields",
                f"fields must map source paths to destination paths, not {type(fields).__name__}",
            )
        moves: list[tuple[ParsedPath, ParsedPath]] = []
        for source, destination in fields.items():
            if not isinstance(destination, str):
                raise OptionTypeError(
                    "fields",
                    f"the destination of {source!r} must be a dotted path, not {destination!r}",
                    where=(source,),
                )
            with refusing("fields", source):
                source_path, destination_path = parse_path(source), parse_path(destination)
            if source_path == destination_path:
                raise OptionError("fields", f"cannot rename {source!r} to itself", where=(source,))
            moves.append((source_path, destination_path))
        if not moves:
            raise OptionError(
                "fields", "Rename needs at least one source -> destination in `fields`"
            )
        self._moves: tuple[tuple[ParsedPath, ParsedPath], ...] = tuple(moves)

    def __call__(self, event: Event) -> Event:
        """Move the fields of ``event`` in place and return it.

        Raises:
            TypeError: a destination cannot be set; the value is first put back.
        """
        for source, destination in self._moves:
            value = pop_path(event, source)
            if value is MISSING:
                continue
            try:
                set_path(event, destination, value)
            except (TypeError, IndexError):
                _put_back(event, source, value)
                raise
        return event

    def __repr__(self) -> str:
        moves = {format_path(src): format_path(dst) for src, dst in self._moves}
        return f"Rename({moves!r})"


def _put_back(event: Event, source: ParsedPath, value: object) -> None:
    """Undo ``pop_path``: re-insert into a list (elements had shifted), else set the key."""
    parent = get_path(event, source[:-1]) if len(source) > 1 else event
    list_index = source[-1].list_index
    if isinstance(parent, list) and list_index is not None:
        parent.insert(list_index, value)
    else:
        set_path(event, source, value)
