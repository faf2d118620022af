"""The request context: one builder that Django, Flask and ASGI all feed the same facts.

Every framework integration turns its request into the same keys, named as edx-platform's
tracking logs name them (see :data:`CONTEXT_KEYS`), every one present (``None`` when the
framework does not know it), every string bounded in length. The builder is made once, at
start-up, from the options all three integrations share:

- ``ignore_paths``: patterns (see :mod:`eventrouter.patterns`; ``*`` matches any run of
  characters, ``re:`` a whole-path regular expression) of paths that get no context and whose
  events are dropped (health checks);
- ``trusted_proxies``: addresses or networks of the proxies in front of the app; only when
  the peer is one of them is ``X-Forwarded-For`` read, right to left, up to the first address
  that is not;
- ``secret``: the key of the HMAC that stands in for the session key (never the key itself);
- ``context_hook``: a callable given the framework's request that returns the app's own keys
  (``course_id`` from the URL, a tenant); its failures are counted and logged by type only.

Each integration finds its tracker through a :class:`TrackerRef`, and serves an ignored
path inside the tracker's :meth:`~eventrouter.tracker.Tracker.muted` block: what is emitted
there is dropped before routing, counted as ``muted`` in the tracker's ``stats()``.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import itertools
import logging
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from hashlib import sha256
from typing import Any, NamedTuple

from eventrouter import _fork
from eventrouter.errors import TrackerNotRegisteredError
from eventrouter.patterns import PatternSet
from eventrouter.tracker import Tracker, get_tracker

__all__ = [
    "CONTEXT_KEYS",
    "CONTEXT_NAME",
    "DEFAULT_MAX_LENGTH",
    "HEADERS",
    "MAX_FORWARDED_HOPS",
    "ContextHook",
    "Header",
    "HeaderGetter",
    "RequestContextBuilder",
    "TrackerRef",
    "astream_in_context",
    "parse_proxies",
    "stream_in_context",
]

log = logging.getLogger("eventrouter.integrations")

CONTEXT_NAME = "request"
"""The name the request context is entered under (``tracker.context(CONTEXT_NAME, ...)``)."""

CONTEXT_KEYS = (
    "user_id",
    "username",
    "session",
    "ip",
    "agent",
    "host",
    "path",
    "method",
    "referer",
    "accept_language",
    "request_id",
    "route",
)
"""The keys of every request context, in every framework."""


class Header(NamedTuple):
    """A request header a context key is read from, as each kind of framework spells it."""

    field: str
    """The context key it fills (``agent``)."""
    name: str
    """The header's name in lower case, as ASGI gives it (``user-agent``)."""
    environ: str
    """Its key in a WSGI environ and in Django's ``request.META`` (``HTTP_USER_AGENT``)."""


HEADERS = (
    Header("host", "host", "HTTP_HOST"),
    Header("forwarded_for", "x-forwarded-for", "HTTP_X_FORWARDED_FOR"),
    Header("agent", "user-agent", "HTTP_USER_AGENT"),
    Header("referer", "referer", "HTTP_REFERER"),
    Header("accept_language", "accept-language", "HTTP_ACCEPT_LANGUAGE"),
    Header("request_id", "x-request-id", "HTTP_X_REQUEST_ID"),
)
"""The headers every integration reads, the one table of them."""

HeaderGetter = Callable[[Header], str | None]
"""Given a :class:`Header`, the request's value of it (``None`` when it has none)."""

DEFAULT_MAX_LENGTH = 512
"""The longest a string value of the context may be, unless ``max_length`` says otherwise."""
MAX_FORWARDED_HOPS = 20
"""The most ``X-Forwarded-For`` entries read (from the right): a longer header is cut."""
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")

ContextHook = Callable[[Any], Mapping[str, Any] | None]
"""The app's own keys: called with the framework's request, returns a mapping (or None)."""

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TrackerRef:
    """The tracker an integration works with: a given one, or one looked up by name.

    A name is looked up at each :meth:`get`, so a tracker registered (or replaced) after
    start-up is used from then on. When none is registered the integration goes on without
    one, and the first time that happens it logs a WARNING that says what to do.

    Args:
        tracker: a :class:`Tracker`, or the name it is registered under.
        without: what the integration does without a tracker (``"requests get no
            context"``), for the warning.
        hint: how to register one (``"set EVENTROUTER_CONFIG"``), for the warning.

    Raises:
        TypeError: ``tracker`` is neither a :class:`Tracker` nor a name.
    """

    __slots__ = ("_misses", "fixed", "hint", "name", "without")

    def __init__(
        self,
        tracker: Tracker | str = "default",
        *,
        without: str = "requests get no context",
        hint: str = "register one at start-up",
    ) -> None:
        if not isinstance(tracker, (Tracker, str)):
            raise TypeError(f"tracker must be a Tracker or a name, not {type(tracker).__name__}")
        self.fixed: Tracker | None = tracker if isinstance(tracker, Tracker) else None
        self.name: str | None = tracker if isinstance(tracker, str) else None
        self.without = without
        self.hint = hint
        self._misses = itertools.count()

    def get(self) -> Tracker | None:
        """The tracker, or ``None`` when none is registered under the name (warned once)."""
        fixed = self.fixed
        if fixed is not None:
            return fixed
        name = self.name or "default"
        try:
            return get_tracker(name)
        except TrackerNotRegisteredError:
            if next(self._misses) == 0:  # atomic: exactly one warning, whatever the threads
                log.warning(
                    "eventrouter: no tracker is registered as %r, so %s: %s",
                    name,
                    self.without,
                    self.hint,
                )
            return None

    def __repr__(self) -> str:
        target = self.fixed if self.fixed is not None else self.name
        return f"TrackerRef({target!r})"


def parse_proxies(proxies: Iterable[str]) -> tuple[_Network, ...]:
    """Parse ``trusted_proxies``: addresses (``10.0.0.5``) or networks (``10.0.0.0/8``).

    Raises:
        TypeError: ``proxies`` is a single string, or holds a non-string.
        ValueError: an entry is neither an address nor a network (the message names it).
    """
    if isinstance(proxies, (str, bytes)):
        raise TypeError(f"trusted_proxies must be a list, not a single string: write [{proxies!r}]")
    networks: list[_Network] = []
    for entry in proxies:
        if not isinstance(entry, str):
            raise TypeError(f"trusted_proxies holds {entry!r}: write each address as a string")
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"trusted_proxies holds {entry!r}, which is not an IP address or network: "
                "write addresses like '10.0.0.5' or networks like '10.0.0.0/8'"
            ) from None
    return tuple(networks)


@functools.lru_cache(maxsize=4096)  # parsing costs ~10 µs; clients and proxies repeat
def _address(text: str) -> _Address | None:
    text = text.strip()
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        host = text[1 : text.index("]")]
    elif text.count(":") == 1:  # 203.0.113.9:443
        host = text.split(":", 1)[0]
    else:
        return None
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class RequestContextBuilder:
    """Turns the facts of one request into the request context (see :data:`CONTEXT_KEYS`).

    Args:
        ignore_paths: path patterns that get no context and whose events are dropped.
        trusted_proxies: addresses or networks whose ``X-Forwarded-For`` is believed.
        secret: the HMAC key for ``session``; without one, ``session`` is ``None``.
        context_hook: returns the app's own keys for a request (see :data:`ContextHook`).
        max_length: the longest a string value may be; longer ones are cut.

    Raises:
        TypeError, ValueError: an option is malformed; the message names it.
    """

    def __init__(
        self,
        *,
        ignore_paths: Iterable[str] = (),
        trusted_proxies: Iterable[str] = (),
        secret: str | bytes | None = None,
        context_hook: ContextHook | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> None:
        if isinstance(ignore_paths, (str, bytes)):
            raise TypeError(
                f"ignore_paths must be a list, not a single string: write [{ignore_paths!r}]"
            )
        self.ignore_paths = PatternSet(list(ignore_paths), dotted=False, cache_size=4096)
        self.trusted_proxies = parse_proxies(trusted_proxies)
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if secret is not None and not isinstance(secret, bytes):
            raise TypeError(f"secret must be str or bytes, not {type(secret).__name__}")
        self._secret = secret or None
        if context_hook is not None and not callable(context_hook):
            raise TypeError(f"context_hook must be callable, not {type(context_hook).__name__}")
        self.context_hook = context_hook
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
            raise ValueError(f"max_length must be a positive int, not {max_length!r}")
        self.max_length = max_length
        self.hook_errors = 0
        self.build_errors = 0
        self._lock = threading.Lock()
        _fork.register(self)

    # -- the pieces ---------------------------------------------------------------------------

    def ignored(self, path: str) -> bool:
        """Whether ``path`` is one of ``ignore_paths``."""
        return bool(self.ignore_paths) and self.ignore_paths.matches(path)

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address: the peer, or behind trusted proxies, ``X-Forwarded-For``'s.

        The header is read right to left (each proxy appends the address it saw) and the
        first address that is not a trusted proxy is the client; a malformed entry stops the
        walk at the last address that was believable.
        """
        if peer is None:
            return None
        if not forwarded_for or not self.trusted_proxies:
            return peer[: self.max_length]
        current = _address(peer)
        if current is None or not self._trusted(current):
            return peer[: self.max_length]
        hops = forwarded_for.split(",")[-MAX_FORWARDED_HOPS:]
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                break
            current = address
            if not self._trusted(address):
                break
        return str(current)

    def _trusted(self, address: _Address) -> bool:
        return any(address in network for network in self.trusted_proxies)

    def session_hash(self, session_key: str | None) -> str | None:
        """An HMAC-SHA256 of the session key (hex, 32 characters), or ``None``."""
        if not session_key or self._secret is None:
            return None
        digest = hmac.new(self._secret, session_key.encode("utf-8", "replace"), sha256)
        return digest.hexdigest()[:32]

    @staticmethod
    def request_id(header: str | None) -> str:
        """The ``X-Request-ID`` header when it is a sane token, else a new random id."""
        if isinstance(header, str) and _REQUEST_ID.fullmatch(header):
            return header
        return uuid.uuid4().hex

    def _bound(self, value: Any) -> Any:
        if isinstance(value, str) and len(value) > self.max_length:
            return value[: self.max_length]
        return value

    def user_fields(self, user_id: Any, username: str | None) -> dict[str, Any]:
        """``user_id`` and ``username`` as :meth:`build` makes them (ids that are not ints
        or strings become strings; both bounded)."""
        if user_id is not None and not isinstance(user_id, (int, str)):
            user_id = str(user_id)
        return {
            "user_id": self._bound(user_id),
            "username": self._bound(username) if username else None,
        }

    def route(self, route: str | None) -> str | None:
        """``route`` as :meth:`build` makes it (bounded)."""
        bounded: str | None = self._bound(route)
        return bounded

    # -- the whole context ------------------------------------------------------------------

    def build(
        self,
        header: HeaderGetter,
        *,
        path: str,
        method: str,
        peer: str | None,
        user_id: Any = None,
        username: str | None = None,
        session_key: str | None = None,
        route: str | None = None,
    ) -> dict[str, Any]:
        """The request context; every key is present.

        Args:
            header: reads each of :data:`HEADERS` from the request.
            path, method: the request's.
            peer: the address the connection comes from.
            user_id, username: the authenticated user's (``None``: anonymous).
            session_key: the session's key, hashed into ``session`` (never kept itself).
            route: the matched route's template.
        """
        bound = self._bound
        headers = {h.field: header(h) for h in HEADERS}
        return {
            **self.user_fields(user_id, username),
            "session": self.session_hash(session_key),
            "ip": self.client_ip(peer, headers["forwarded_for"]),
            "agent": bound(headers["agent"]),
            "host": bound(headers["host"]),
            "path": bound(path),
            "method": bound(method),
            "referer": bound(headers["referer"]),
            "accept_language": bound(headers["accept_language"]),
            "request_id": self.request_id(headers["request_id"]),
            "route": self.route(route),
        }

    def guarded(self, build: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """``build()``, or ``None`` when it fails: the request then goes on without context.

        The failure (a lazy user object whose database is down, a framework quirk) is counted
        in :attr:`build_errors` and logged by type only, at WARNING the first time.
        """
        try:
            return build()
        except Exception as exc:
            self.count_failure("building the request context", exc)
            return None

    def count_failure(self, what: str, exc: Exception, counter: str = "build_errors") -> None:
        """Count a failure in ``counter`` and log it, by type only (WARNING the first time)."""
        with self._lock:
            count = getattr(self, counter) + 1
            setattr(self, counter, count)
        # The type only: a message could quote request data.
        log.log(
            logging.WARNING if count == 1 else logging.DEBUG,
            "eventrouter: %s failed (%s); the request goes on without it",
            what,
            type(exc).__name__,
        )

    def extra(self, request: Any) -> dict[str, Any]:
        """The app's own keys from ``context_hook`` (bounded); ``{}`` when it fails."""
        hook = self.context_hook
        if hook is None:
            return {}
        try:
            values = hook(request)
            if values is None:
                return {}
            if not isinstance(values, Mapping):
                raise TypeError("context_hook returned a non-mapping")
            return {str(key): self._bound(value) for key, value in values.items()}
        except Exception as exc:
            name = getattr(hook, "__qualname__", type(hook).__name__)
            self.count_failure(f"the request context hook {name}", exc, "hook_errors")
            return {}


def stream_in_context(
    chunks: Iterable[Any], scope: Callable[[], AbstractContextManager[Any]]
) -> Iterator[Any]:
    """Iterate ``chunks`` with ``scope()`` entered around each step (a streamed body runs
    after the view returned, when the request's context has been left)."""
    iterator = iter(chunks)
    try:
        while True:
            with scope():
                try:
                    chunk = next(iterator)
                except StopIteration:
                    return
            yield chunk
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            with scope():
                close()


async def astream_in_context(
    chunks: Any, scope: Callable[[], AbstractContextManager[Any]]
) -> AsyncIterator[Any]:
    """The asynchronous twin of :func:`stream_in_context`."""
    iterator = chunks.__aiter__()
    try:
        while True:
            with scope():
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    return
            yield chunk
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with scope():
                await aclose()
