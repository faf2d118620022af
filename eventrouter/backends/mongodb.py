"""MongoDB: one document per event, written with pymongo.

Needs the ``mongo`` extra (``pip install 'eventrouter[mongo]'``). Since 0.1.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from eventrouter import _fork
from eventrouter.encoding import (
    CYCLE_MARKER,
    dict_key,
    json_default,
    parse_timestamp,
    unique_key,
)
from eventrouter.errors import DeliveryError, MissingExtraError, OptionError
from eventrouter.typing import Event

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.collection import Collection

try:
    import bson
    import pymongo
    from bson.errors import InvalidDocument
    from pymongo import common as pymongo_common
    from pymongo import errors as mongo_errors
    from pymongo.write_concern import WriteConcern
except ImportError:  # pragma: no cover - exercised only without the extra
    _HAVE_PYMONGO = False
else:
    _HAVE_PYMONGO = True

__all__ = ["DEFAULT_SERVER_SELECTION_TIMEOUT_MS", "MongoBackend", "to_document"]

log = logging.getLogger(__name__)

DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 2000
"""How long a send waits for a reachable server unless told otherwise. Since 0.1."""

_INDEXED_FIELDS = ("name", "timestamp")
_DUPLICATE_KEY = 11000
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


def _convert(value: Any, active: set[int], depth: int) -> Any:
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
    if depth > _MAX_DEPTH:
        return f"{type(value).__name__} nested too deeply"
    marker = id(value)
    if marker in active:
        return CYCLE_MARKER
    active.add(marker)
    try:
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for key, item in value.items():
                name = _clean_str(dict_key(key)).replace("\x00", "\ufffd")
                if name != key or name in out:
                    name = unique_key(name, key, out, value)
                out[name] = _convert(item, active, depth + 1)
            return out
        if isinstance(value, list | tuple):
            return [_convert(item, active, depth + 1) for item in value]
        if isinstance(value, Decimal):
            return str(value)
        return _convert(json_default(value), active, depth + 1)
    finally:
        active.discard(marker)


def _document(event: Event) -> dict[str, Any]:
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

    Since 0.1.
    """
    converted: dict[str, Any] = _convert(_document(event), set(), 0)
    return converted


class MongoBackend:
    """Store each event as a MongoDB document whose ``_id`` is the event's ``id``.

    The client is created on first use (and again in a forked child, whose lock is new too,
    so a fork while another thread sends cannot deadlock the child); writes are
    acknowledged (``w=1``) unless ``write_concern`` says otherwise. Indexes on ``name`` and
    ``timestamp`` are created once, when the first write finds them missing. Re-sending an
    event is a no-op: duplicate ``_id`` errors count as success. Documents are built by
    :func:`to_document`.

    Args:
        uri: the MongoDB connection string.
        database: the database name.
        collection: the collection name.
        write_concern: a ``WriteConcern`` document such as ``{"w": "majority", "j": True}``
            (``None``: acknowledged, ``w=1``).
        create_indexes: check for, and create, the ``name`` and ``timestamp`` indexes.
        **client_options: passed to ``pymongo.MongoClient`` (``serverSelectionTimeoutMS``
            defaults to 2000 and ``connectTimeoutMS`` to 2000, so a down server fails fast).

    Raises:
        MissingExtraError: pymongo is not installed.

    Since 0.1.
    """

    def __init__(
        self,
        *,
        uri: str = "mongodb://localhost:27017",
        database: str = "eventrouter",
        collection: str = "events",
        write_concern: Mapping[str, Any] | None = None,
        create_indexes: bool = True,
        **client_options: Any,
    ) -> None:
        if not _HAVE_PYMONGO:
            raise MissingExtraError("the MongoDB backend", "mongo", "pymongo")
        self.uri = uri
        self.database_name = database
        self.collection_name = collection
        self.write_concern = WriteConcern(**dict(write_concern or {"w": 1}))
        self.create_indexes = create_indexes
        lowered = uri.lower()
        options = dict(client_options)
        for option, value in options.items():
            try:
                pymongo_common.validate(option, value)
            except (mongo_errors.ConfigurationError, ValueError, TypeError) as exc:
                # pymongo's messages name the option and what it wants, never the value.
                raise OptionError(option, f"MongoDB client option {option!r}: {exc}") from None
        for option in ("serverSelectionTimeoutMS", "connectTimeoutMS"):
            if option.lower() not in lowered and option not in options:
                options[option] = DEFAULT_SERVER_SELECTION_TIMEOUT_MS
        self.client_options = options
        self._lock = threading.Lock()
        self._client: MongoClient[dict[str, Any]] | None = None
        self._collection: Collection[dict[str, Any]] | None = None
        self._pid = 0
        self._indexes_ready = not create_indexes
        self._counters = {"duplicates": 0, "converted": 0}
        _fork.register(self)

    # -- connection -------------------------------------------------------------------------

    def _get_collection(self) -> Collection[dict[str, Any]]:
        collection = self._collection
        if collection is not None and self._pid == os.getpid():
            return collection
        with self._lock:
            if self._collection is None or self._pid != os.getpid():
                self._client = pymongo.MongoClient(self.uri, **self.client_options)
                self._collection = self._client[self.database_name].get_collection(
                    self.collection_name, write_concern=self.write_concern
                )
                self._pid = os.getpid()
                self._indexes_ready = not self.create_indexes
            return self._collection

    def _ensure_indexes(self, collection: Collection[dict[str, Any]]) -> None:
        """Create the missing indexes; compare by key, since servers name them differently.

        Called after a successful write, so a server that is down costs one timeout, not two.
        """
        try:
            existing = {
                tuple(field for field, _direction in spec["key"])
                for spec in collection.index_information().values()
            }
            for field in _INDEXED_FIELDS:
                if (field,) not in existing:
                    collection.create_index([(field, pymongo.ASCENDING)])
        except mongo_errors.OperationFailure as exc:
            # Not allowed (e.g. a user without createIndex): say so once and go on.
            log.warning(
                "MongoDB backend: could not create the indexes on %s.%s (%s); "
                "create them on name and timestamp yourself",
                self.database_name,
                self.collection_name,
                type(exc).__name__,
            )
        except mongo_errors.PyMongoError:
            return  # the server is not reachable: the write that follows will say so
        self._indexes_ready = True

    # -- delivery ---------------------------------------------------------------------------

    def send(self, event: Event) -> None:
        """Insert ``event``; an event already stored (same ``id``) counts as delivered.

        A batch of one: see :meth:`send_batch`.

        Raises:
            DeliveryError: the server is unreachable or rejected the document.
        """
        self.send_batch((event,))

    def send_batch(self, events: Sequence[Event]) -> None:
        """Insert ``events`` with one unordered ``insert_many``; duplicates count as delivered.

        Raises:
            DeliveryError: the server is unreachable or rejected a document; re-sending the
                whole batch is safe, as the stored ones count as duplicates.
        """
        if not events:
            return
        collection = self._connected()
        try:
            try:
                collection.insert_many([_document(event) for event in events], ordered=False)
            except (InvalidDocument, ValueError, OverflowError, RecursionError):
                # Some batches may be stored already: the retry counts them as duplicates.
                self._count("converted", len(events))
                collection.insert_many([to_document(event) for event in events], ordered=False)
        except mongo_errors.BulkWriteError as exc:
            self._bulk_error(exc)
        except mongo_errors.PyMongoError as exc:
            raise self._error(exc) from exc
        except (InvalidDocument, ValueError, OverflowError, RecursionError) as exc:
            raise DeliveryError(
                f"MongoDB backend: a document could not be encoded ({type(exc).__name__})",
                retryable=False,
            ) from exc
        if not self._indexes_ready:
            self._ensure_indexes(collection)

    def _connected(self) -> Collection[dict[str, Any]]:
        try:
            return self._get_collection()
        except mongo_errors.PyMongoError as exc:  # e.g. an invalid URI option
            raise self._error(exc) from exc

    def _bulk_error(self, exc: Any) -> None:
        details = exc.details
        errors = [e for e in details.get("writeErrors", []) if e.get("code") != _DUPLICATE_KEY]
        self._count("duplicates", len(details.get("writeErrors", [])) - len(errors))
        if errors:
            codes = sorted({str(e.get("code")) for e in errors})
            raise DeliveryError(
                f"MongoDB backend: {len(errors)} document(s) rejected (codes {', '.join(codes)})",
                retryable=False,
            ) from exc
        if details.get("writeConcernErrors"):
            raise DeliveryError(
                "MongoDB backend: the write concern was not satisfied", retryable=True
            ) from exc

    def _error(self, exc: Exception) -> DeliveryError:
        retryable = isinstance(
            exc,
            mongo_errors.ConnectionFailure
            | mongo_errors.ExecutionTimeout
            | mongo_errors.WTimeoutError
            | mongo_errors.WriteConcernError,
        ) or (
            isinstance(exc, mongo_errors.PyMongoError)
            and exc.has_error_label("RetryableWriteError")
        )
        if isinstance(exc, mongo_errors.OperationFailure) and not retryable:
            reason = f"the server refused the write (code {exc.code})"
        elif retryable:
            reason = f"the server is unreachable or timed out ({type(exc).__name__})"
        else:
            reason = type(exc).__name__
        return DeliveryError(
            f"MongoDB backend ({self.database_name}.{self.collection_name}): {reason}",
            retryable=retryable,
        )

    # -- hooks ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the client (a later send opens a new one).

        In a forked child, a client inherited from the parent is only dropped: closing it
        would end the parent's sessions over the parent's connections.
        """
        with self._lock:
            client, self._client, self._collection = self._client, None, None
        if client is not None and self._pid == os.getpid():
            client.close()

    def stats(self) -> dict[str, int]:
        """Counters: ``duplicates`` (events already stored), ``converted`` (documents that
        needed :func:`to_document`'s conversions)."""
        with self._lock:
            return dict(self._counters)

    def _count(self, counter: str, n: int) -> None:
        with self._lock:
            self._counters[counter] += n
