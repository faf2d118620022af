"""Posting messages to Segment's batch API, and what its answer means for delivery.

The request is the one segment-analytics-python's consumer makes (``/v1/batch``, basic auth
with the write key, its ``User-Agent``, optionally gzipped), made over the session given, in
the calling thread. Needs the ``segment`` extra: :mod:`eventrouter.backends.segment` imports
this module only when it is installed.
"""

from __future__ import annotations

import base64
import datetime as _dt
import email.utils
import gzip as _gzip
import json
import math
import time
from typing import Any

import requests
from segment.analytics.request import DatetimeSerializer
from segment.analytics.version import VERSION as SEGMENT_VERSION

from eventrouter.errors import DeliveryError

__all__ = ["chunks", "post_batch"]

_MAX_RETRY_AFTER = 300.0
"""A ``Retry-After`` longer than this is taken as this many seconds."""


def chunks(messages: list[dict[str, Any]], max_bytes: int) -> list[tuple[int, int]]:
    """Split ``messages`` into ``(start, end)`` runs of at most ``max_bytes`` as JSON (a
    message larger than that alone is a run of its own)."""
    runs: list[tuple[int, int]] = []
    start, size = 0, 0
    for index, message in enumerate(messages):
        length = len(json.dumps(message, cls=DatetimeSerializer).encode())
        if index > start and size + length > max_bytes:
            runs.append((start, index))
            start, size = index, 0
        size += length
    if start < len(messages):
        runs.append((start, len(messages)))
    return runs


def post_batch(
    session: requests.Session,
    batch: list[dict[str, Any]],
    *,
    write_key: str,
    host: str,
    gzip: bool,
    timeout: float,
    proxies: dict[str, str] | None,
) -> None:
    """One request to ``{host}/v1/batch``.

    Raises:
        DeliveryError: Segment did not take the batch: retryable for timeouts, connection
            errors, 408, 429 (``retry_after`` from its ``Retry-After``) and 5xx; permanent
            for other answers and for a request that cannot be made.
    """
    body = {
        "batch": batch,
        "sentAt": _dt.datetime.now(_dt.UTC).isoformat(),
        "writeKey": write_key,
    }
    data = json.dumps(body, cls=DatetimeSerializer).encode()
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
