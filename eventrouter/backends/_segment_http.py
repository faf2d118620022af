"""Posting messages to Segment's batch API, and what its answer means for delivery.

The request is the one segment-analytics-python's consumer makes (``/v1/batch``, basic auth
with the write key, its ``User-Agent``, optionally gzipped, the body byte for byte what its
``json.dumps`` writes), made over the session given, in the calling thread. Each message is
encoded once, by :func:`chunks`, which measures it; :func:`post_batch` joins those texts.
Needs the ``segment`` extra: :mod:`eventrouter.backends.segment` imports this module only
when it is installed.
"""

from __future__ import annotations

import base64
import datetime as _dt
import email.utils
import gzip as _gzip
import json
import math
import time
from collections.abc import Sequence
from typing import Any

import requests
from segment.analytics.request import DatetimeSerializer
from segment.analytics.version import VERSION as SEGMENT_VERSION

from eventrouter.errors import DeliveryError

__all__ = ["chunks", "encode", "post_batch"]

_MAX_RETRY_AFTER = 300.0
"""A ``Retry-After`` longer than this is taken as this many seconds."""


def encode(message: dict[str, Any]) -> str:
    """``message`` as JSON, as segment-analytics-python encodes it (ASCII only, so its
    length in characters is its length in bytes)."""
    return json.dumps(message, cls=DatetimeSerializer)


def chunks(messages: Sequence[dict[str, Any]], max_bytes: int) -> list[tuple[int, int, list[str]]]:
    """Split ``messages`` into runs of at most ``max_bytes`` of JSON (a message larger than
    that alone is a run of its own).

    Returns ``(start, end, encoded)`` per run: ``messages[start:end]`` and those messages
    encoded (by :func:`encode`), for :func:`post_batch`.
    """
    runs: list[tuple[int, int, list[str]]] = []
    start, size = 0, 0
    encoded: list[str] = []
    for index, message in enumerate(messages):
        text = encode(message)
        if index > start and size + len(text) > max_bytes:
            runs.append((start, index, encoded))
            start, size, encoded = index, 0, []
        size += len(text)
        encoded.append(text)
    if start < len(messages):
        runs.append((start, len(messages), encoded))
    return runs


def post_batch(
    session: requests.Session,
    encoded: Sequence[str],
    *,
    write_key: str,
    host: str,
    gzip: bool,
    timeout: float,
    proxies: dict[str, str] | None,
) -> None:
    """One request to ``{host}/v1/batch`` carrying the ``encoded`` messages (see
    :func:`chunks`).

    Raises:
        DeliveryError: Segment did not take the batch: retryable for timeouts, connection
            errors, 408, 429 (``retry_after`` from its ``Retry-After``) and 5xx; permanent
            for other answers and for a request that cannot be made.
    """
    data = _body(encoded, _dt.datetime.now(_dt.UTC).isoformat(), write_key)
    credentials = base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"analytics-python/{SEGMENT_VERSION}",
        "Authorization": f"Basic {credentials}",
    }
    if gzip:
        headers["Content-Encoding"] = "gzip"
        data = _gzip.compress(data)
    url = host.rstrip("/") + "/v1/batch"
    try:
        response = session.post(
            url, data=data, headers=headers, timeout=(timeout, timeout), proxies=proxies
        )
        status = response.status_code
        response.close()
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise DeliveryError(
            f"Segment backend: no answer from Segment ({type(exc).__name__})", retryable=True
        ) from exc
    except requests.RequestException as exc:
        raise DeliveryError(
            f"Segment backend: the request could not be made ({type(exc).__name__})",
            retryable=False,
        ) from exc
    if 200 <= status < 300:
        return
    reason, retryable = _http_error(status)
    retry_after = _retry_after(response) if retryable else None
    raise DeliveryError(f"Segment backend: {reason}", retryable=retryable, retry_after=retry_after)


def _body(encoded: Sequence[str], sent_at: str, write_key: str) -> bytes:
    """The JSON body ``json.dumps({"batch": [...], "sentAt": ..., "writeKey": ...})`` would
    write, built from messages already encoded (default separators, keys in that order)."""
    return (
        f'{{"batch": [{", ".join(encoded)}], "sentAt": {json.dumps(sent_at)}, '
        f'"writeKey": {json.dumps(write_key)}}}'
    ).encode()


def _retry_after(response: Any) -> float | None:
    """The seconds a ``Retry-After`` header asks for (a number or an HTTP date), capped."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.UTC)
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def _http_error(status: int) -> tuple[str, bool]:
    """The reason for an HTTP status Segment answered, and whether trying again may help."""
    if status in (408, 429) or (500 <= status < 600 and status not in (501, 505)):
        return f"Segment answered HTTP {status}", True
    return f"Segment refused the batch (HTTP {status})", False
