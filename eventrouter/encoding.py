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

The public functions:

- :func:`dumps` encodes with the standard library; :func:`dumps_fast` writes the same bytes
  through ``orjson`` when it is installed (the ``fast`` extra) and ``EVENTROUTER_NO_ORJSON``
  is not set.
- :func:`json_default` is the value table as a ``default=`` hook for ``json.dumps``,
  ``orjson.dumps`` or a python-json-logger formatter.
- :func:`to_jsonable` returns the JSON-native data :func:`dumps` writes (Segment's
  properties); :func:`dict_key` is the key rule alone (MongoDB's field names).
- :func:`walk` is the one conversion walk: :func:`to_jsonable` and the MongoDB backend's
  documents are both made by it.
- :func:`parse_timestamp` reads a timestamp back (replay, MongoDB, Segment).
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import os
import re
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from enum import Enum
from typing import Any

__all__ = [
    "CYCLE_MARKER",
    "dict_key",
    "dumps",
    "dumps_fast",
    "json_default",
    "parse_timestamp",
    "to_jsonable",
    "walk",
]

CYCLE_MARKER = "<cycle>"
"""What a value that contains itself is replaced with."""

_UTC = _dt.UTC


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
    if isinstance(obj, float):  # a float subclass, as json writes it
        return float(obj)
    if isinstance(obj, list | tuple):  # a tuple subclass (namedtuple), as json writes it
        return list(obj)
    return _safe_str(obj)


def dict_key(key: object) -> str:
    """Return the string a dictionary key is written as (the module's key rule).

    Args:
        key: any dictionary key.
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
    if isinstance(key, tuple):
        return _safe_str(key)
    encoded = json_default(key)
    return encoded if isinstance(encoded, str) else _safe_str(encoded)


def walk(
    value: Any,
    convert: Callable[[Any], Any],
    *,
    key: Callable[[object], str] = dict_key,
    max_depth: int = 200,
) -> Any:
    """Rebuild ``value`` with every mapping, list and tuple walked and every leaf converted.

    The one conversion walk of the package: :func:`to_jsonable` (JSON) and the MongoDB
    backend's document conversion (BSON) differ only in ``convert``, ``key`` and
    ``max_depth``. Mappings become ``dict`` with keys made by ``key`` (a converted key that
    collides with another key gets ``~TYPE`` appended, see :func:`_unique_key`); lists and
    tuples become lists; anything else is passed to ``convert``, whose result is walked
    again when it is a new object (a set made a list, an ``Enum`` made its value). A value
    inside itself becomes :data:`CYCLE_MARKER`; a container deeper than ``max_depth`` becomes
    the string ``"<TYPE> nested too deeply"``. Never mutates ``value``.

    Args:
        value: the value to rebuild.
        convert: maps a leaf to its converted form; returns the leaf itself when it is final.
        key: maps a mapping key to its string.
        max_depth: how deep containers may nest.
    """
    return _Walker(convert, key, max_depth).walk(value, 0)


class _Walker:
    """One run of :func:`walk`: its rules and the containers being walked (for cycles)."""

    __slots__ = ("active", "convert", "key", "max_depth")

    def __init__(
        self, convert: Callable[[Any], Any], key: Callable[[object], str], max_depth: int
    ) -> None:
        self.convert = convert
        self.key = key
        self.max_depth = max_depth
        self.active: set[int] = set()

    def walk(self, value: Any, depth: int) -> Any:
        container = isinstance(value, Mapping | list | tuple)
        if not container:
            converted = self.convert(value)
            if converted is value:
                return value
        if depth > self.max_depth:
            return f"{type(value).__name__} nested too deeply"
        marker = id(value)
        if marker in self.active:
            return CYCLE_MARKER
        self.active.add(marker)
        try:
            if not container:
                return self.walk(converted, depth + 1)
            if isinstance(value, Mapping):
                out: dict[str, Any] = {}
                for original, item in value.items():
                    name = self.key(original)
                    if name in out or (name != original and name in value):
                        name = _unique_key(name, original, out, value)
                    out[name] = self.walk(item, depth + 1)
                return out
            return [self.walk(item, depth + 1) for item in value]
        finally:
            self.active.discard(marker)


def _json_leaf(value: Any) -> Any:
    """A leaf as JSON-native data: the value table of this module."""
    if isinstance(value, str | bool | int) or value is None:
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    return json_default(value)


def _unique_key(name: str, key: object, out: Mapping[str, Any], source: Mapping[Any, Any]) -> str:
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

    Applies this module's rules recursively through :func:`walk`; the result is what
    :func:`dumps` writes. Never raises, never mutates ``value``.

    Args:
        value: any Python value.
    """
    return walk(value, _json_leaf)


def dumps(value: Any, *, spaced: bool = False) -> str:
    """Encode ``value`` as one line of strict, ASCII-only JSON with the standard library.

    Plain JSON data takes the C encoder's fast path; data it rejects (unusual keys, cycles,
    NaN) is converted by :func:`to_jsonable` first. Never raises.

    Args:
        value: the event (or any value) to encode.
        spaced: separate with ``", "`` and ``": "`` (``json.dumps``' defaults, the form
            event-tracking wrote) instead of the compact ``","`` and ``":"``.
    """
    encoders = _SPACED if spaced else _COMPACT
    try:
        return encoders[0].encode(value)
    except (TypeError, ValueError, RecursionError):
        return encoders[1].encode(to_jsonable(value))


def _encoders(separators: tuple[str, str]) -> tuple[json.JSONEncoder, json.JSONEncoder]:
    options: dict[str, Any] = {
        "ensure_ascii": True,
        "check_circular": True,
        "allow_nan": False,
        "separators": separators,
    }
    return json.JSONEncoder(default=json_default, **options), json.JSONEncoder(**options)


_COMPACT = _encoders((",", ":"))
_SPACED = _encoders((", ", ": "))


# -- orjson, the fast path ---------------------------------------------------------------------

ORJSON_OPTIONS = 0
"""The ``orjson.dumps`` options that keep this module's rules (datetimes and dataclasses go
through :func:`json_default`); 0 when orjson is not in use."""


def _load_orjson() -> Any:
    if os.environ.get("EVENTROUTER_NO_ORJSON"):
        return None
    try:
        import orjson
    except ImportError:
        return None
    return orjson


orjson: Any = _load_orjson()
"""The ``orjson`` module when it is installed and ``EVENTROUTER_NO_ORJSON`` is not set, else
``None``."""

if orjson is not None:
    ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

# orjson spells some values unlike the standard library; lines holding such a spelling are
# re-encoded by ``dumps`` (or, for non-ASCII characters, escaped) so that the output is byte
# for byte what the standard library writes:
# - NaN and the infinities become ``null``, like ``None``;
# - floats from 1e-10 to 1e-4 are spelled with a one-digit exponent (``1e-7`` for ``1e-07``)
#   or written out in full (``0.00001`` for ``1e-05``);
# - non-ASCII characters (and DEL) are written as they are.
# Each check is one search in C; the regular expressions start with a literal, which the
# regular expression engine looks for as fast as a substring search. A match in a string
# (not a number) only costs a re-encoding, never a wrong line.
_SHORT_EXPONENT = re.compile(rb"e-(?<=[0-9]e-)[0-9](?=[,\]}]|\Z)")
_WRITTEN_OUT = re.compile(rb"0\.0000(?<![0-9.]0\.0000)")
_NOT_ASCII = re.compile("[^\x00-\x7e]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def _finish_orjson(raw: bytes, value: Any, redo: Callable[[Any], str] | None = None) -> str:
    """Turn orjson's encoding ``raw`` of ``value`` into exactly the line :func:`dumps` writes.

    Args:
        raw: what ``orjson.dumps(value, default=json_default, option=ORJSON_OPTIONS)`` gave.
        value: the value it encoded, re-encoded by ``redo`` when orjson's spelling cannot be
            fixed in place (a ``null`` that may have been a NaN, a float spelled otherwise).
        redo: the standard-library encoding of ``value``; :func:`dumps` when ``None``.
    """
    if (
        b"null" in raw
        or _SHORT_EXPONENT.search(raw) is not None
        or _WRITTEN_OUT.search(raw) is not None
    ):
        return dumps(value) if redo is None else redo(value)
    if raw.isascii() and b"\x7f" not in raw:  # json escapes DEL too
        return raw.decode("ascii")
    return _NOT_ASCII.sub(_escape, raw.decode("utf-8"))


def dumps_fast(value: Any) -> str:
    """The same line as :func:`dumps`, encoded by orjson when it is in use; never raises.

    Args:
        value: the event (or any value) to encode.
    """
    if orjson is None:
        return dumps(value)
    try:
        raw = orjson.dumps(value, default=json_default, option=ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: odd keys, cycles, deep nesting, big ints
        return dumps(value)
    return _finish_orjson(raw, value)
