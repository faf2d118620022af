"""The JSON encoding eventrouter writes everywhere (log lines, dead-letter files, Segment).

The output is strict JSON (RFC 8259), ASCII only, on one line, and encoding never raises:

========================  =====================================================================
Python value              JSON
========================  =====================================================================
``datetime``              ISO-8601 in UTC with an offset: ``"2024-05-01T12:00:00.123456+00:00"``;
                          a naive datetime is taken to be UTC already
``date`` / ``time``       ISO-8601: ``"2024-05-01"``, ``"12:00:00"``
``Decimal``               the exact decimal as a string: ``"12.50"``
``UUID``                  the canonical string: ``"5f0c...-..."``
``bytes``/``bytearray``   standard base64 (with padding) as a string
``set``/``frozenset``     a list, sorted when the members can be compared
``tuple``                 a list
``Enum``                  its ``value`` (encoded by these same rules)
other ``Mapping``         an object
NaN / infinity            the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``
a cycle                   the string ``"<cycle>"`` where the value repeats inside itself
anything else             ``str(value)`` (``"<unencodable TYPE>"`` if even that fails)
========================  =====================================================================

Dictionary keys become strings: a ``str`` key is kept; ``int``/``float``/``bool``/``None`` keys
become what JSON makes of them (``1`` -> ``"1"``, ``True`` -> ``"true"``, ``None`` ->
``"null"``); any other key is encoded by the table above and then made a string (a tuple key
``(1, 2)`` becomes ``"(1, 2)"``). When a converted key equals another key of the same
dictionary (``{1: "a", "1": "b"}``), :func:`to_jsonable` appends the type name (``"1~int"``)
so no value is lost; :func:`dumps` may write both members under the same name, which JSON
allows (most parsers keep the last).

Since 0.1.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from typing import Any

__all__ = [
    "CYCLE_MARKER",
    "dict_key",
    "dumps",
    "json_default",
    "parse_timestamp",
    "to_jsonable",
    "unique_key",
]

CYCLE_MARKER = "<cycle>"
"""What a value that contains itself is replaced with. Since 0.1."""

_UTC = _dt.UTC
_SCALARS = (str, int, float, bool, type(None))
_ENCODER = json.JSONEncoder(
    ensure_ascii=True,
    check_circular=True,
    allow_nan=False,
    separators=(",", ":"),
)


def _datetime_to_str(value: _dt.datetime) -> str:
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        value = value.replace(tzinfo=_UTC)
    elif value.tzinfo is not _UTC:
        value = value.astimezone(_UTC)
    return value.isoformat()


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unencodable {type(value).__name__}>"


def parse_timestamp(value: object) -> _dt.datetime | None:
    """Return ``value`` as an aware datetime, or ``None`` when it is not a timestamp.

    The reverse of this module's datetime rule: a ``datetime`` is kept and an ISO-8601 string
    is parsed; either one without a UTC offset is taken to be UTC already. Anything else
    (a number, an unparsable string) gives ``None``.

    Args:
        value: an event's ``timestamp``, as built or as read back from JSON.

    Since 0.1.
    """
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, _dt.datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=_UTC)


def json_default(obj: object) -> Any:
    """Encode one value the ``json`` module does not know (use as ``json.dumps(default=...)``).

    Implements the value rules in this module's table; never raises. It cannot fix what
    ``json`` rejects before calling it (non-string keys of unusual types, cycles, NaN):
    :func:`dumps` handles those too.

    Args:
        obj: the value ``json`` could not encode.

    Since 0.1.
    """
    if isinstance(obj, _dt.datetime):
        return _datetime_to_str(obj)
    if isinstance(obj, _dt.date | _dt.time):
        return obj.isoformat()
    if isinstance(obj, Decimal | uuid.UUID):
        return str(obj)
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, set | frozenset):
        try:
            return sorted(obj)
        except Exception:
            return list(obj)
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return dict(obj)
    return _safe_str(obj)


def dict_key(key: object) -> str:
    """Return the string a dictionary key is written as (the module's key rule).

    Args:
        key: any dictionary key.

    Since 0.1.
    """
    if isinstance(key, str):
        return key
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        if math.isnan(key):
            return "NaN"
        if math.isinf(key):
            return "Infinity" if key > 0 else "-Infinity"
        return float.__repr__(key)
    encoded = json_default(key)
    return encoded if isinstance(encoded, str) else _safe_str(encoded)


def _float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _jsonable(value: Any, active: set[int], depth: int) -> Any:
    if isinstance(value, str | bool | int) or value is None:
        return value
    if isinstance(value, float):
        return _float(value)
    if depth > 200:
        return _safe_str(type(value).__name__ + " nested too deeply")
    marker = id(value)
    if isinstance(value, dict | list | tuple):
        if marker in active:
            return CYCLE_MARKER
        active.add(marker)
        try:
            if isinstance(value, dict):
                out: dict[str, Any] = {}
                for key, item in value.items():
                    name = dict_key(key)
                    if name in out or (name != key and name in value):
                        name = unique_key(name, key, out, value)
                    out[name] = _jsonable(item, active, depth + 1)
                return out
            return [_jsonable(item, active, depth + 1) for item in value]
        finally:
            active.discard(marker)
    if marker in active:
        return CYCLE_MARKER
    active.add(marker)
    try:
        return _jsonable(json_default(value), active, depth + 1)
    finally:
        active.discard(marker)


def unique_key(name: str, key: object, out: Mapping[str, Any], source: Mapping[Any, Any]) -> str:
    """``name`` if neither ``out`` nor ``source`` uses it, else ``name~TYPE`` (then ``~TYPE2``...).

    ``key`` is the original key ``name`` was converted from; its type names the variant.
    """
    if name not in out and name not in source:
        return name
    base = f"{name}~{type(key).__name__}"
    candidate, n = base, 1
    while candidate in out or candidate in source:
        n += 1
        candidate = f"{base}{n}"
    return candidate


def to_jsonable(value: Any) -> Any:
    """Return ``value`` as JSON-native data (dict with str keys, list, str, int, float, ...).

    Applies this module's rules recursively; the result is what :func:`dumps` writes. Never
    raises, never mutates ``value``.

    Args:
        value: any Python value.

    Since 0.1.
    """
    return _jsonable(value, set(), 0)


def dumps(event: Any) -> str:
    """Encode ``event`` as one line of strict, ASCII-only JSON; never raises.

    Plain JSON data takes the C encoder's fast path; data it rejects (unusual keys, cycles,
    NaN) is converted by :func:`to_jsonable` first.

    Args:
        event: the event (or any value) to encode.

    Since 0.1.
    """
    try:
        return _ENCODER_WITH_DEFAULT.encode(event)
    except (TypeError, ValueError, RecursionError):
        return _ENCODER.encode(to_jsonable(event))


_ENCODER_WITH_DEFAULT = json.JSONEncoder(
    ensure_ascii=True,
    check_circular=True,
    allow_nan=False,
    separators=(",", ":"),
    default=json_default,
)
