"""The JSON a Celery task carries: a batch of events whose datetimes, Decimals, UUIDs and
bytes come back as the same types on the worker.

Such values are written as tags, ``{"$eventrouter": "decimal", "value": "1.10"}``. A user
dict with a key spelled like the tag's (``$eventrouter``, ``$$eventrouter`` ...) is escaped
with one more ``$`` on the way out and unescaped on the way in, so it is never mistaken for a
tag. :mod:`eventrouter.backends.celery` re-exports :func:`encode_batch` and
:func:`decode_batch`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from eventrouter.encoding import dumps, json_default
from eventrouter.typing import Event

__all__ = ["decode_batch", "encode_batch"]

_TYPE_KEY = "$eventrouter"
_TAG_KEYS = re.compile(r'"\$+eventrouter":')
"""A key spelled like the tag's in the encoded text (in a string value the quote before the
colon would be escaped, so only keys match)."""
_ESCAPED = re.compile(r"\$+eventrouter")


def _tagger() -> tuple[Callable[[object], Any], list[int]]:
    """A ``json`` default hook that tags the types a worker must get back, and the count of
    tags it made (so the encoder can tell its own tags from user keys)."""
    made = [0]

    def tag(obj: object) -> Any:
        kind: str
        if isinstance(obj, dt.datetime):
            kind, value = "datetime", obj.isoformat()
        elif isinstance(obj, dt.date):
            kind, value = "date", obj.isoformat()
        elif isinstance(obj, dt.time):
            kind, value = "time", obj.isoformat()
        elif isinstance(obj, Decimal):
            kind, value = "decimal", str(obj)
        elif isinstance(obj, uuid.UUID):
            kind, value = "uuid", str(obj)
        elif isinstance(obj, bytes | bytearray):
            kind, value = "bytes", base64.b64encode(bytes(obj)).decode("ascii")
        else:
            return json_default(obj)
        made[0] += 1
        return {_TYPE_KEY: kind, "value": value}

    return tag, made


_DECODERS: dict[str, Callable[[str], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "decimal": Decimal,
    "uuid": uuid.UUID,
    "bytes": base64.b64decode,
}


def _escape(value: Any, depth: int = 0) -> Any:
    """``value`` with every dict key spelled like the tag's given one more ``$``."""
    if depth > 200:
        return value
    if isinstance(value, dict):
        return {
            ("$" + key if isinstance(key, str) and _ESCAPED.fullmatch(key) else key): _escape(
                item, depth + 1
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_escape(item, depth + 1) for item in value]
    return value


def _encode_one(event: Event) -> str:
    tag, made = _tagger()
    encoder = json.JSONEncoder(
        ensure_ascii=True, check_circular=True, allow_nan=False, separators=(",", ":"), default=tag
    )
    text = encoder.encode(event)
    if len(_TAG_KEYS.findall(text)) > made[0]:  # a user key looks like a tag: escape them
        tag, made = _tagger()
        encoder = json.JSONEncoder(
            ensure_ascii=True,
            check_circular=True,
            allow_nan=False,
            separators=(",", ":"),
            default=tag,
        )
        text = encoder.encode(_escape(event))
    return text


def encode_batch(events: Sequence[Event]) -> str:
    """Encode events as the JSON text a task carries; never raises.

    Datetimes (naive or aware, offset kept), dates, times, ``Decimal``, ``UUID`` and bytes come
    back as the same values from :func:`decode_batch`. Any other value is written as
    :mod:`eventrouter.encoding` writes it (a set becomes a list, an object its ``str``). An
    event that plain JSON cannot hold (non-string keys, a cycle, NaN) is converted whole by
    that encoding's rules, and arrives with those values as strings; its neighbours in the
    batch are not affected.
    """
    parts: list[str] = []
    for event in events:
        try:
            parts.append(_encode_one(event))
        except (TypeError, ValueError, RecursionError):
            parts.append(dumps(event))
    return "[" + ",".join(parts) + "]"


def _untag(obj: dict[str, Any]) -> Any:
    if _TYPE_KEY in obj and len(obj) == 2 and "value" in obj:
        decode = _DECODERS.get(obj[_TYPE_KEY])
        if decode is not None and isinstance(obj["value"], str):
            try:
                return decode(obj["value"])
            except (ValueError, ArithmeticError):
                return obj
    return obj


def _untag_and_unescape(obj: dict[str, Any]) -> Any:
    value = _untag(obj)
    if value is not obj or not any(isinstance(k, str) and k.startswith("$$") for k in obj):
        return value
    return {
        key[1:] if key.startswith("$$") and _ESCAPED.fullmatch(key) else key: item
        for key, item in obj.items()
    }


def decode_batch(text: str) -> list[Event]:
    """The events :func:`encode_batch` encoded.

    Raises:
        ValueError: ``text`` is not an encoded batch (not JSON, or not a list of objects).
    """
    hook = _untag_and_unescape if "$$eventrouter" in text else _untag
    events = json.loads(text, object_hook=hook)
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ValueError("a task's events must be a JSON list of event objects")
    return events
