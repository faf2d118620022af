"""MongoDB: one document per event, written with pymongo.

Needs the ``mongo`` extra (``pip install 'eventrouter[mongo]'``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from eventrouter import _fork
from eventrouter.backends._mongo_indexes import INDEX_LAYOUTS, create_missing_indexes
from eventrouter.config.quiet import quiet_third_party_loggers
from eventrouter.errors import (
    DeliveryError,
    MissingExtraError,
    OptionError,
    PartialDeliveryError,
)
from eventrouter.typing import Event

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.collection import Collection

try:
    import pymongo
    from bson.errors import InvalidDocument
    from pymongo import common as pymongo_common
    from pymongo import errors as mongo_errors
    from pymongo.write_concern import WriteConcern

    from eventrouter.backends._mongo_documents import document, encodable, to_document
except ImportError:  # pragma: no cover - exercised only without the extra
    _HAVE_PYMONGO = False
else:
    _HAVE_PYMONGO = True

__all__ = [
    "DEFAULT_SERVER_SELECTION_TIMEOUT_MS",
    "DEFAULT_TIMEOUT",
    "INDEX_LAYOUTS",
    "MongoBackend",
    "to_document",
]

log = logging.getLogger(__name__)

DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 2000
"""How long a send waits for a reachable server unless told otherwise."""

_DUPLICATE_KEY = 11000
"""The server's error code for a document whose ``_id`` (or other unique key) is taken."""

DEFAULT_TIMEOUT = 10.0
"""Seconds a send waits for the server's answer once its request is written."""

_RETRYABLE_CODES = frozenset(
    {6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 64, 100}
)
"""Server error codes that say "not now" rather than "never": host unreachable or down,
time limits, shutdown, stepped down or not primary, write concern failures."""


class _Connection:
    """One process's client and the collection handle made from it."""

    __slots__ = ("client", "collection", "indexes_ready")

    def __init__(
        self, client: MongoClient[dict[str, Any]], collection: Collection[dict[str, Any]]
    ) -> None:
        self.client = client
        self.collection = collection
        self.indexes_ready = False


class MongoBackend:
    """Store each event as a MongoDB document whose ``_id`` is the event's ``id``.

    Each process has its own client, made on first use: a forked child (gunicorn, Celery
    prefork) never touches its parent's connections. Writes are acknowledged (``w=1``)
    unless ``write_concern`` says otherwise. Every call is bounded: finding a server (2 s),
    connecting (2 s) and waiting for an answer (``timeout``).
    ``send_batch`` inserts a batch with one unordered ``insert_many``; an event stored already
    (same ``_id``) counts as delivered, so sending a batch again is always safe. Documents are
    built by :func:`to_document`.

    Failures raise :class:`~eventrouter.DeliveryError`: retryable when the server is down,
    unreachable, too slow or not primary; permanent when it will never take the write. When the
    server rejects some documents of a batch and stores the others, the error is a
    :class:`~eventrouter.errors.PartialDeliveryError` whose ``failed`` lists the positions of
    the rejected events, so the caller dead-letters only those.

    Attributes:
        connection: this process's ``pymongo.MongoClient`` (made on first access).
        database: this process's ``pymongo.database.Database`` for ``database``.
        collection: this process's ``pymongo.collection.Collection`` written to (with the
            backend's write concern).

    Args:
        uri: the MongoDB connection string.
        database: the database name.
        collection: the collection name.
        write_concern: a ``WriteConcern`` document such as ``{"w": "majority", "j": True}``
            (``None``: acknowledged, ``w=1``).
        create_indexes: after the first successful write in a process, create the indexes of
            the ``indexes`` layout that are missing (compared by key, whatever their names).
        indexes: ``"eventrouter"`` (``name`` and ``timestamp``, ascending) or
            ``"event-tracking"`` (``time`` descending and ``name``, as event-tracking made).
        timeout: the most seconds to wait for the server's answer on a connection
            (pymongo's ``socketTimeoutMS``, which wins when given in ``uri`` or the options).
        **client_options: passed to ``pymongo.MongoClient`` (``serverSelectionTimeoutMS``
            and ``connectTimeoutMS`` default to 2000, so a server that is down fails fast).
            Do not give ``timeoutMS``: it overrides the server selection timeout.

    Raises:
        MissingExtraError: pymongo is not installed.
        OptionError: an option is unknown to pymongo or has the wrong type or value.
    """

    buffered_by_default = True
    """A YAML node of this class, or of a subclass, is buffered unless it says
    ``buffered: false``."""

    def __init__(
        self,
        *,
        uri: str = "mongodb://localhost:27017",
        database: str = "eventrouter",
        collection: str = "events",
        write_concern: Mapping[str, Any] | None = None,
        create_indexes: bool = True,
        indexes: str = "eventrouter",
        timeout: float = DEFAULT_TIMEOUT,
        **client_options: Any,
    ) -> None:
        if not _HAVE_PYMONGO:
            raise MissingExtraError("the MongoDB backend", "mongo", "pymongo")
        quiet_third_party_loggers()  # their DEBUG lines can quote secrets and events
        if indexes not in INDEX_LAYOUTS:
            raise OptionError(
                "indexes",
                f"indexes must be one of {', '.join(map(repr, INDEX_LAYOUTS))}, not {indexes!r}",
            )
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout < float("inf")
        ):
            raise OptionError(
                "timeout",
                f"timeout must be a positive number of seconds, not {type(timeout).__name__}",
            )
        self.uri = uri
        self.database_name = database
        self._path = "mongodb"
        self.collection_name = collection
        self.write_concern = WriteConcern(**dict(write_concern or {"w": 1}))
        self.create_indexes = create_indexes
        self.indexes = indexes
        self.timeout = float(timeout)
        options = dict(client_options)
        for option, value in options.items():
            try:
                pymongo_common.validate(option, value)
            except (mongo_errors.ConfigurationError, ValueError, TypeError) as exc:
                # pymongo's messages name the option and what it wants, never the value.
                raise OptionError(option, f"MongoDB client option {option!r}: {exc}") from None
        lowered = uri.lower()
        given = {option.lower() for option in options}
        defaults = {
            "serverSelectionTimeoutMS": DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
            "connectTimeoutMS": DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
            "socketTimeoutMS": round(self.timeout * 1000),
        }
        for option, value in defaults.items():
            if option.lower() not in lowered and option.lower() not in given:
                options[option] = value
        self.client_options = options
        self._lock = threading.Lock()
        self._connections: _fork.PerProcess[_Connection] = _fork.PerProcess(self._connect)
        self._counters = {"duplicates": 0, "converted": 0, "rejected": 0}

    # -- connection -------------------------------------------------------------------------

    def _connect(self) -> _Connection:
        client: MongoClient[dict[str, Any]] = pymongo.MongoClient(self.uri, **self.client_options)
        collection = client[self.database_name].get_collection(
            self.collection_name, write_concern=self.write_concern
        )
        return _Connection(client, collection)

    @property
    def connection(self) -> MongoClient[dict[str, Any]]:
        """This process's client (made now if there is none yet)."""
        return self._connections.get().client

    @property
    def database(self) -> Any:
        """This process's ``Database`` object for the backend's database."""
        return self._connections.get().client[self.database_name]

    @property
    def collection(self) -> Collection[dict[str, Any]]:
        """This process's ``Collection`` object the backend writes to."""
        return self._connections.get().collection

    def _ensure_indexes(self, connection: _Connection) -> None:
        """Create the missing indexes of the layout, after a successful write, so a server
        that is down costs one timeout, not two."""
        try:
            create_missing_indexes(connection.collection, INDEX_LAYOUTS[self.indexes])
        except mongo_errors.OperationFailure as exc:
            # Not allowed (e.g. a user without createIndex): say so once and go on.
            log.warning(
                "MongoDB backend %r: could not create the indexes of its collection (%s); "
                "create them yourself: %s",
                self._path,
                type(exc).__name__,
                INDEX_LAYOUTS[self.indexes],
            )
        except mongo_errors.PyMongoError:
            return  # not reachable now: the next successful write tries again
        connection.indexes_ready = True

    # -- delivery ---------------------------------------------------------------------------

    def send(self, event: Event) -> None:
        """Insert ``event``; an event already stored (same ``id``) counts as delivered.

        A batch of one: see :meth:`send_batch`.

        Raises:
            DeliveryError: the server is unreachable, too slow, or rejected the document.
        """
        self.send_batch((event,))

    def send_batch(self, events: Sequence[Event]) -> None:
        """Insert ``events`` with one unordered ``insert_many``; stored ones count as delivered.

        Raises:
            PartialDeliveryError: the server (or BSON) rejected some of the documents for
                good; ``failed`` gives their positions in ``events``, every other event is
                stored.
            DeliveryError: nothing can be said to be stored: retryable when the server is
                down, unreachable, timed out or not primary; re-sending the whole batch is
                safe, as the stored events count as duplicates.
        """
        if not events:
            return
        try:
            connection = self._connections.get()
        except mongo_errors.PyMongoError as exc:  # e.g. an invalid URI option
            raise self._error(exc) from exc
        positions = list(range(len(events)))
        rejected: list[int] = []
        try:
            try:
                docs = [document(event) for event in events]
                connection.collection.insert_many(docs, ordered=False)
            except (InvalidDocument, ValueError, OverflowError, RecursionError):
                # Some wire batches may be stored already: their events count as duplicates.
                self._count("converted", len(events))
                docs, positions, rejected = encodable(events)
                if docs:
                    connection.collection.insert_many(docs, ordered=False)
        except mongo_errors.BulkWriteError as exc:
            rejected.extend(self._settle(connection, exc, docs, positions))
        except mongo_errors.PyMongoError as exc:
            raise self._error(exc) from exc
        except (InvalidDocument, ValueError, OverflowError, RecursionError) as exc:
            raise DeliveryError(
                f"MongoDB backend: a document could not be encoded ({type(exc).__name__})",
                retryable=False,
            ) from None
        if not connection.indexes_ready and self.create_indexes:
            self._ensure_indexes(connection)
        if rejected:
            self._count("rejected", len(rejected))
            raise PartialDeliveryError(
                f"MongoDB backend: {len(rejected)} of {len(events)} document(s) rejected",
                failed=rejected,
            )

    def _settle(
        self,
        connection: _Connection,
        exc: mongo_errors.BulkWriteError,
        docs: list[dict[str, Any]],
        positions: list[int],
    ) -> list[int]:
        """Sort a batch's write errors into duplicates (delivered) and rejected positions.

        A duplicate-key error is a duplicate delivery only when a document with that ``_id``
        is stored; otherwise another unique index refused the document, for good.

        Raises:
            DeliveryError: an error that may pass (retryable); re-sending the batch is safe.
        """
        details = exc.details
        errors: list[dict[str, Any]] = list(details.get("writeErrors", []))
        if any(e.get("code") in _RETRYABLE_CODES for e in errors) or details.get(
            "writeConcernErrors"
        ):
            raise DeliveryError(
                "MongoDB backend: the server "
                "could not take every document now, or not at the write concern",
                retryable=True,
            ) from exc
        duplicate_ids = [
            docs[e["index"]].get("_id") for e in errors if e.get("code") == _DUPLICATE_KEY
        ]
        stored: list[Any] = []
        if duplicate_ids:
            try:
                stored = [
                    doc["_id"]
                    for doc in connection.collection.find(
                        {"_id": {"$in": duplicate_ids}}, {"_id": 1}
                    )
                ]
            except mongo_errors.PyMongoError as find_exc:
                raise self._error(find_exc) from find_exc
        rejected: list[int] = []
        duplicates = 0
        for error in errors:
            index = error.get("index")
            if not isinstance(index, int) or not 0 <= index < len(docs):
                continue
            if error.get("code") == _DUPLICATE_KEY and docs[index].get("_id") in stored:
                duplicates += 1
            else:
                rejected.append(positions[index])
        self._count("duplicates", duplicates)
        return rejected

    def _error(self, exc: Exception) -> DeliveryError:
        retryable = isinstance(
            exc,
            mongo_errors.ConnectionFailure
            | mongo_errors.ExecutionTimeout
            | mongo_errors.WTimeoutError
            | mongo_errors.WriteConcernError,
        ) or (
            isinstance(exc, mongo_errors.PyMongoError)
            and (
                exc.timeout
                or exc.has_error_label("RetryableWriteError")
                or (isinstance(exc, mongo_errors.OperationFailure) and exc.code in _RETRYABLE_CODES)
            )
        )
        if isinstance(exc, mongo_errors.OperationFailure) and not retryable:
            reason = f"the server refused the write (code {exc.code})"
        elif retryable:
            reason = f"the server is unreachable, too slow or not primary ({type(exc).__name__})"
        else:
            reason = type(exc).__name__
        return DeliveryError(
            f"MongoDB backend: {reason}",
            retryable=retryable,
        )

    # -- hooks ------------------------------------------------------------------------------

    def bind_path(self, path: str) -> None:
        """Learn this node's dotted path, which log lines name instead of the database and
        collection (those may come from the environment, and are never logged)."""
        self._path = path

    def close(self) -> None:
        """Close this process's client (a later send opens a new one).

        In a forked child, a client inherited from the parent is only dropped: closing it
        would end the parent's sessions over the parent's connections.
        """
        connection = self._connections.take()
        if connection is not None:
            connection.client.close()

    def stats(self) -> dict[str, int]:
        """Counters: ``duplicates`` (events already stored), ``converted`` (events in batches
        that needed :func:`to_document`'s conversions), ``rejected`` (events the server or
        BSON refused for good)."""
        with self._lock:
            return dict(self._counters)

    def _count(self, counter: str, n: int) -> None:
        if n:
            with self._lock:
                self._counters[counter] += n
