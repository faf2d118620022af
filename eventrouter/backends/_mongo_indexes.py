"""The indexes a MongoDB backend creates in its collection, by layout."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pymongo.collection import Collection

__all__ = ["INDEX_LAYOUTS", "create_missing_indexes"]

IndexKey = tuple[tuple[str, int], ...]
"""An index's key pattern: ``(field, 1 or -1)`` pairs."""

INDEX_LAYOUTS: dict[str, tuple[IndexKey, ...]] = {
    "eventrouter": ((("name", 1),), (("timestamp", 1),)),
    "event-tracking": ((("time", -1),), (("name", 1),)),
}
"""The indexes ``create_indexes`` makes, by the ``indexes`` option: each a key pattern.

``event-tracking`` is what openedx event-tracking 4.0.2's ``MongoBackend`` created: ``time``
descending and ``name`` ascending."""


def create_missing_indexes(
    collection: Collection[dict[str, Any]], keys: tuple[IndexKey, ...]
) -> None:
    """Create each index of ``keys`` that ``collection`` lacks, compared by key (the names
    of indexes made by other tools differ).

    Raises:
        pymongo.errors.PyMongoError: listing or creating the indexes failed.
    """
    existing = {
        tuple((field, int(direction)) for field, direction in spec["key"])
        for spec in collection.index_information().values()
    }
    for key in keys:
        if key not in existing:
            collection.create_index(list(key))
