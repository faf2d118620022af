"""The event envelope and the fast, safe copy every router makes of it.

An event is a plain dict::

    {"id": "<uuid4>", "name": "video.played", "timestamp": <aware UTC datetime>,
     "data": {...}, "context": {...}}

:func:`copy_event` is on the hot path: each router level copies the event once, so that
processors may mutate their branch's copy freely. It is exact for JSON-like data, shares
immutable values (str, numbers, datetimes, Decimals, UUIDs, bytes ...), copies tuples and sets
element-wise, and hands everything else to :func:`copy.deepcopy`. Cyclic or very deep data is
copied by an iterative copier that neither hangs nor overflows the stack.
"""

from __future__ import annotations

import copy
import datetime as dt
import fractions
import logging
import os
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from eventrouter.typing import Event

__all__ = ["IMMUTABLE_TYPES", "build_event", "copy_event", "new_event_id"]

log = logging.getLogger("eventrouter.event")

_UTC = dt.UTC
_now = dt.datetime.now
_urandom = os.urandom


def new_event_id() -> str:
    """A new random event id: a version-4 UUID string, as ``str(uuid.uuid4())`` makes.

    Made from the same 16 random bytes (``os.urandom``) with the version and variant bits
    set, but without building a :class:`uuid.UUID` object, which costs more than the rest of
    the envelope together.
    """
    raw = bytearray(_urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


#: Exact types whose values never change, so a copy may share them. Subclasses are not
#: included: a subclass of ``str`` may carry mutable attributes.
IMMUTABLE_TYPES: frozenset[type] = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
        bytes,
        complex,
        Decimal,
        fractions.Fraction,
        uuid.UUID,
        dt.datetime,
        dt.date,
        dt.time,
        dt.timedelta,
        dt.timezone,
        range,
        type(Ellipsis),
    }
)
_IMMUTABLE = IMMUTABLE_TYPES  # the hot path's local name

#: How deep the recursive fast path goes before the iterative copier takes over. Real events
#: are a handful of levels deep; anything deeper is probably cyclic.
_FAST_DEPTH = 48

#: A memo lookup's default: no copy of that object yet (``None`` can be a copy).
_MISSING: Any = object()


class _TooDeep(Exception):
    """Internal: the fast path met data deeper than ``_FAST_DEPTH`` (or a cycle)."""


def build_event(
    name: str,
    data: Mapping[str, Any] | None = None,
    *,
    context: Mapping[str, Any] | None = None,
    timestamp: dt.datetime | None = None,
    event_id: str | None = None,
) -> Event:
    """Build an event envelope, checking the arguments a caller controls.

    Args:
        name: the event's name, a non-empty ``str`` such as ``"video.played"``.
        data: the payload, a mapping (``None`` means ``{}``). It is not copied here: the
            router copies the whole envelope before anything may change it.
        context: the context to attach (``None`` means ``{}``).
        timestamp: when it happened; defaults to now. Naive datetimes are taken as UTC,
            aware ones are converted to UTC.
        event_id: the event's id; defaults to a new UUID4 string.

    Raises:
        TypeError: an argument has the wrong type; the message names the argument.
        ValueError: ``name`` is empty.
    """
    if type(name) is not str:
        if not isinstance(name, str):
            raise TypeError(f"event name must be a str, not {type(name).__name__}")
        name = str(name)
    if not name:
        raise ValueError("event name must not be empty")
    if data is None:
        data = {}
    elif type(data) is not dict:
        if not isinstance(data, Mapping):
            raise TypeError(f"event data must be a mapping or None, not {type(data).__name__}")
        data = dict(data)
    if context is None:
        context = {}
    elif type(context) is not dict and not isinstance(context, Mapping):
        raise TypeError(f"event context must be a mapping or None, not {type(context).__name__}")
    if timestamp is None:
        timestamp = _now(_UTC)
    elif not isinstance(timestamp, dt.datetime):
        raise TypeError(f"event timestamp must be a datetime, not {type(timestamp).__name__}")
    elif timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=_UTC)
    elif timestamp.utcoffset() != dt.timedelta(0) or timestamp.tzinfo is not _UTC:
        timestamp = timestamp.astimezone(_UTC)
    if event_id is None:
        event_id = new_event_id()
    elif type(event_id) is not str:
        raise TypeError(f"event id must be a str, not {type(event_id).__name__}")
    return {
        "id": event_id,
        "name": name,
        "timestamp": timestamp,
        "data": data,
        "context": context,
    }


def copy_event(event: Any) -> Any:
    """Return a copy of ``event`` that shares no mutable container with it.

    Exact for JSON-like data (dict, list, str, int, float, bool, None). Immutable values
    (numbers, strings, bytes, datetimes, Decimals, UUIDs) are shared; tuples and sets are
    rebuilt from copied items; other objects go through :func:`copy.deepcopy`, and an object
    that cannot be deep-copied is shared as it is (logged once per type) rather than losing the
    event (that includes objects nested too deeply for :func:`copy.deepcopy`). Cyclic data
    keeps its cycles; very deep dicts, lists, tuples and sets are copied without recursion.
    It never raises.

    Two references to the same list inside the event become two equal lists in the fast
    path (as JSON would make them); cyclic or very deep events keep their sharing exactly.
    """
    try:
        return _copy_fast(event, 0)
    except _TooDeep:
        return _copy_iterative(event)


def _copy_fast(value: Any, depth: int) -> Any:
    """Recursive copy for the common case; raises ``_TooDeep`` past ``_FAST_DEPTH``.

    Containers are first copied shallowly in C; only their mutable items are then replaced,
    so the Python-level work is one type test per item.
    """
    cls = type(value)
    if cls is dict:
        if depth > _FAST_DEPTH:
            raise _TooDeep
        out = value.copy()
        for key, item in value.items():
            if type(item) not in _IMMUTABLE:
                out[key] = _copy_fast(item, depth + 1)
        return out
    if cls is list:
        if depth > _FAST_DEPTH:
            raise _TooDeep
        out_list = value.copy()
        for index, item in enumerate(value):
            if type(item) not in _IMMUTABLE:
                out_list[index] = _copy_fast(item, depth + 1)
        return out_list
    if cls in _IMMUTABLE:
        return value
    if cls is tuple:
        if depth > _FAST_DEPTH:
            raise _TooDeep
        return tuple([v if type(v) in _IMMUTABLE else _copy_fast(v, depth + 1) for v in value])
    if cls is set or cls is frozenset:
        if all(type(v) in _IMMUTABLE for v in value):
            return cls(value)
        raise _TooDeep  # rare: sets of tuples or objects take the careful path
    return _deepcopy_leaf(value, {})


_uncopyable_logged: set[type] = set()


def _deepcopy_leaf(value: Any, memo: dict[int, Any]) -> Any:
    """Deep-copy an object of a type the fast path does not know; share it if impossible."""
    try:
        return copy.deepcopy(value, memo)
    except Exception as exc:  # includes RecursionError from very deep objects
        cls = type(value)
        if cls not in _uncopyable_logged:
            _uncopyable_logged.add(cls)
            log.warning(
                "values of type %s.%s cannot be deep-copied (%s); they are passed on shared, "
                "not copied, so processors must not mutate them",
                cls.__module__,
                cls.__qualname__,
                type(exc).__name__,
            )
        return value


def _copy_iterative(root: Any) -> Any:
    """Copy any data without recursion on dicts, lists, tuples and sets, keeping cycles.

    Mutable containers are created empty and recorded in ``memo`` before their items are
    visited, so a cycle finds the copy under construction. Tuples are built after their items;
    a cycle through a tuple always passes a mutable container, which stops it.
    """
    memo: dict[int, Any] = {}
    keep_alive: list[Any] = []  # originals stay referenced, so their ids stay unique

    # A frame is [kind, original, copy-or-items, iterator, pending key, parent frame slot].
    # Results flow back to the parent through `_store`.
    result: list[Any] = [None]

    def new_frame(value: Any) -> tuple[bool, Any]:
        """Start copying ``value``: (True, frame) for a container, (False, copy) otherwise."""
        cls = type(value)
        if cls in _IMMUTABLE:
            return False, value
        found = memo.get(id(value), _MISSING)
        if found is not _MISSING:
            return False, found
        if cls is dict:
            out: Any = {}
            memo[id(value)] = out
            keep_alive.append(value)
            return True, ["dict", value, out, iter(value.items()), None]
        if cls is list:
            out = []
            memo[id(value)] = out
            keep_alive.append(value)
            return True, ["list", value, out, iter(value), None]
        if cls is tuple:
            return True, ["tuple", value, [], iter(value), None]
        if cls is set or cls is frozenset:
            return True, ["set", value, [], iter(value), None]
        keep_alive.append(value)
        return False, _deepcopy_leaf(value, memo)

    def store(frame: list[Any] | None, copied: Any) -> None:
        if frame is None:
            result[0] = copied
        elif frame[0] == "dict":
            frame[2][frame[4]] = copied
        else:
            frame[2].append(copied)

    is_container, first = new_frame(root)
    if not is_container:
        return first
    stack: list[list[Any]] = [first]
    while stack:
        frame = stack[-1]
        try:
            item = next(frame[3])
        except StopIteration:
            stack.pop()
            kind, original, built = frame[0], frame[1], frame[2]
            if kind == "tuple":
                # A cycle may have copied this tuple already while its items were visited.
                done = memo.get(id(original), _MISSING)
                if done is _MISSING:
                    done = tuple(built)
                    memo[id(original)] = done
                    keep_alive.append(original)
                built = done
            elif kind == "set":
                built = type(original)(built)
                memo[id(original)] = built
                keep_alive.append(original)
            store(stack[-1] if stack else None, built)
            continue
        if frame[0] == "dict":
            frame[4], item = item
        is_container, child = new_frame(item)
        if is_container:
            stack.append(child)
        else:
            store(frame, child)
    return result[0]
