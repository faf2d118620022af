"""The MongoDB document an event is stored as.

pymongo is first asked to store :func:`document` (the event with ``_id`` and a BSON date,
nothing converted); only when BSON refuses it are the events converted with
:func:`to_document`. Needs the ``mongo`` extra: :mod:`eventrouter.backends.mongodb` imports
this module only when it is installed.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import bson

from eventrouter.encoding import dict_key, json_default, parse_timestamp, walk
from eventrouter.typing import Event

__all__ = ["document", "encodable", "to_document"]

_INT64 = (-(2**63), 2**63 - 1)
_MAX_DEPTH = 100


def _bson_native(value: object) -> bool:
    return isinstance(
        value,
        bytes
        | _dt.datetime
        | bson.ObjectId
        | bson.Binary
        | bson.Decimal128
        | bson.Int64
        | bson.Timestamp
        | bson.Regex
        | bson.Code
        | bson.DBRef
        | bson.MinKey
        | bson.MaxKey,
    )


def _clean_str(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def _bson_leaf(value: Any) -> Any:
    """A leaf as BSON can store it: the JSON rules, except bytes and datetimes stay."""
    if isinstance(value, str):
        return _clean_str(value)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else str(value)
    if _bson_native(value):
        return value
    if isinstance(value, Decimal):
        return str(value)
    return json_default(value)


def _bson_key(key: object) -> str:
    return _clean_str(dict_key(key)).replace("\x00", "\ufffd")


def document(event: Event) -> dict[str, Any]:
    """The document as pymongo is first asked to store it (no conversion)."""
    doc: dict[str, Any] = {}
    if "id" in event:
        doc["_id"] = event["id"]
    for key, value in event.items():
        if key != "id":
            doc[key] = value
    if "timestamp" in doc:
        parsed = parse_timestamp(doc["timestamp"])
        if parsed is not None:
            doc["timestamp"] = parsed
    return doc


def to_document(event: Event) -> dict[str, Any]:
    """Return the MongoDB document stored for ``event`` (the event is not modified).

    ``_id`` is the event's ``id``; ``timestamp`` is a BSON date (an ISO-8601 string is parsed;
    a naive datetime is taken as UTC). Values BSON cannot hold follow
    :mod:`eventrouter.encoding` (``Decimal``, ``UUID``, dates, sets, unknown objects become
    strings or lists), except that ``bytes`` stay binary and datetimes stay dates; integers
    outside 64 bits become strings. Keys become strings by the encoding's key rule, a NUL
    in a key becomes U+FFFD, and a converted key that would collide gets ``~TYPE`` appended.
    Keys with dots or a leading ``$`` are stored as they are (MongoDB 5.0+).

    Args:
        event: the event envelope.
    """
    converted: dict[str, Any] = walk(
        document(event), _bson_leaf, key=_bson_key, max_depth=_MAX_DEPTH
    )
    return converted


def encodable(events: Sequence[Event]) -> tuple[list[dict[str, Any]], list[int], list[int]]:
    """Convert each event; return the documents BSON takes, their positions, and the
    positions of the events that cannot be stored at all."""
    docs: list[dict[str, Any]] = []
    positions: list[int] = []
    rejected: list[int] = []
    for position, event in enumerate(events):
        try:
            doc = to_document(event)
            bson.encode(doc)
        except Exception:
            rejected.append(position)
        else:
            docs.append(doc)
            positions.append(position)
    return docs, positions, rejected
