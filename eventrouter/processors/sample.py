"""Sample: keep a fraction of the events, at random or consistently per key."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

from eventrouter._options import refusing
from eventrouter.errors import EventEmissionExit, OptionError, OptionTypeError
from eventrouter.paths import MISSING, format_path, get_path, parse_path
from eventrouter.typing import Event

__all__ = ["Sample", "sample_point"]

_SPAN = 1 << 64


def _key_bytes(value: Any) -> bytes:
    """The bytes hashed for a key value; ``123`` and ``"123"`` give the same bytes."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value).encode("ascii")
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":")).encode()


def sample_point(value: Any, salt: str = "") -> int:
    """The position, in ``[0, 2**64)``, of a key value on the sampling line.

    ``Sample`` keeps an event when ``sample_point(key) < rate * 2**64``. It is the first 8
    bytes (big-endian) of the BLAKE2b digest of the value (strings as UTF-8, integers as their
    decimal digits, anything else as compact sorted JSON), keyed with ``salt``: stable across
    processes, machines and Python versions.
    """
    return _point(value, salt.encode())


def _point(value: Any, salt: bytes) -> int:
    digest = hashlib.blake2b(_key_bytes(value), digest_size=8, key=salt).digest()
    return int.from_bytes(digest, "big")


class Sample:
    """Keep a fraction ``rate`` of the events and veto the others.

    YAML short name ``sample``. Without ``key`` each event is kept at random. With ``key`` (a
    dotted path such as ``context.user_id``) the decision is a stable hash of the key's value
    (see :func:`sample_point`), so all the events of one user are kept or dropped together, in
    every process and on every run. ``123`` and ``"123"`` are the same key. Events without
    the key are kept at random with the same rate.

    Two samplers with the same ``rate`` and ``salt`` keep the same keys; a larger rate keeps
    a superset. Give a ``salt`` to draw an independent sample.

    Args:
        rate: the fraction kept, from 0.0 (none) to 1.0 (all).
        key: the dotted path of the value to sample by.
        salt: a string (at most 64 bytes) mixed into the hash.

    Raises:
        OptionError: ``rate`` is outside [0, 1], or the path or salt is invalid (a
            :class:`ValueError` naming the option).
        OptionTypeError: ``rate`` is not a number (also a :class:`TypeError`).
    """

    __slots__ = ("_key", "_salt", "_threshold", "rate")

    def __init__(self, rate: float, key: str | None = None, salt: str = "") -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise OptionTypeError("rate", f"rate must be a number from 0 to 1, not {rate!r}")
        if not 0.0 <= rate <= 1.0:
            raise OptionError("rate", f"rate must be from 0 to 1, not {rate!r}")
        salt_bytes = salt.encode()
        if len(salt_bytes) > hashlib.blake2b.MAX_KEY_SIZE:
            raise OptionError("salt", "salt must be at most 64 bytes long")
        self.rate = float(rate)
        with refusing("key"):
            self._key = parse_path(key) if key is not None else None
        self._salt = salt_bytes
        self._threshold = int(self.rate * _SPAN) if self.rate < 1.0 else _SPAN

    def keeps(self, value: Any) -> bool:
        """Whether events whose key has this ``value`` are kept."""
        return _point(value, self._salt) < self._threshold

    def __call__(self, event: Event) -> Event:
        """Return ``event`` when it is in the sample.

        Raises:
            EventEmissionExit: the event is not in the sample.
        """
        if self._key is not None:
            value = get_path(event, self._key)
            if value is not MISSING:
                if self.keeps(value):
                    return event
                raise EventEmissionExit("not sampled")
        if random.random() < self.rate:
            return event
        raise EventEmissionExit("not sampled")

    def __repr__(self) -> str:
        key = format_path(self._key) if self._key is not None else None
        return f"Sample({self.rate!r}, key={key!r})"
