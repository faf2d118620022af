"""MongoBackend against a real server (nx-27017, or mongod via EVENTROUTER_MONGO_URI).

Everything is checked through a separate MongoClient (the ``mongo_client`` fixture).
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import lock_held_elsewhere, needs_fork, run_in_fork

import eventrouter
import eventrouter.backends.mongodb as mongodb_module
from eventrouter import ConfigError, DeliveryError, MissingExtraError, RoutingBackend, build_event
from eventrouter.backends.mongodb import MongoBackend
from eventrouter.typing import Event

DATABASE = "eventrouter_tests"


def event(name: str = "video.played", **data: Any) -> Event:
    return build_event(name, data or {"video": "intro"}, context={"user_id": 7})


@pytest.fixture
def collection_name() -> str:
    return f"events_{uuid.uuid4().hex}"


@pytest.fixture
def stored(mongo_client: Any, collection_name: str) -> Any:
    """The test's collection, seen through the tests' own client."""
    return mongo_client[DATABASE][collection_name]


@pytest.fixture
def backend(mongo_uri: str, collection_name: str) -> Iterator[MongoBackend]:
    instance = MongoBackend(uri=mongo_uri, database=DATABASE, collection=collection_name)
    yield instance
    instance.close()


def test_send_stores_the_event_with_its_id_as__id(backend: MongoBackend, stored: Any) -> None:
    sent = event()
    backend.send(sent)
    doc = stored.find_one({"_id": sent["id"]})
    assert doc is not None
    assert (doc["name"], doc["data"], doc["context"]) == (
        "video.played",
        sent["data"],
        {"user_id": 7},
    )
    assert "id" not in doc


def test_send_batch_stores_every_event_once(backend: MongoBackend, stored: Any) -> None:
    events = [event(n=n) for n in range(250)]
    backend.send_batch(events)
    assert stored.count_documents({}) == 250
    assert {doc["_id"] for doc in stored.find({}, {"_id": 1})} == {e["id"] for e in events}


def test_timestamp_is_stored_as_a_bson_date(backend: MongoBackend, stored: Any) -> None:
    sent = event()
    backend.send(sent)
    timestamp = stored.find_one({"_id": sent["id"]})["timestamp"]
    assert isinstance(timestamp, dt.datetime)
    assert abs(timestamp - sent["timestamp"]) < dt.timedelta(milliseconds=1)


def test_an_iso_timestamp_string_is_stored_as_a_date(backend: MongoBackend, stored: Any) -> None:
    sent = {**event(), "timestamp": "2024-05-01T12:00:00.250000+00:00"}
    backend.send(sent)
    timestamp = stored.find_one({"_id": sent["id"]})["timestamp"]
    assert timestamp == dt.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=dt.UTC)


def test_native_types_keep_their_types(backend: MongoBackend, stored: Any) -> None:
    sent = event(
        i=3, f=1.5, b=True, none=None, items=[1, "two"], nested={"k": [1]}, raw=b"\x00\x01"
    )
    backend.send(sent)
    data = stored.find_one({"_id": sent["id"]})["data"]
    assert data == {
        "i": 3,
        "f": 1.5,
        "b": True,
        "none": None,
        "items": [1, "two"],
        "nested": {"k": [1]},
        "raw": b"\x00\x01",
    }


def test_values_bson_cannot_hold_follow_the_json_encoding(
    backend: MongoBackend, stored: Any
) -> None:
    sent = event(
        price=Decimal("9.90"),
        ref=uuid.UUID(int=5),
        tags={"b", "a"},
        pair=(1, 2),
        day=dt.date(2024, 5, 1),
        huge=2**80,
    )
    backend.send(sent)
    data = stored.find_one({"_id": sent["id"]})["data"]
    assert data == {
        "price": "9.90",
        "ref": "00000000-0000-0000-0000-000000000005",
        "tags": ["a", "b"],
        "pair": [1, 2],
        "day": "2024-05-01",
        "huge": str(2**80),
    }
    assert backend.stats()["converted"] == 1


def test_awkward_keys_are_kept(backend: MongoBackend, stored: Any) -> None:
    sent = event(placeholder=None)
    sent["data"] = {1: "int key", "a.b": "dotted", "$x": "dollar", None: "none key"}
    backend.send(sent)
    data = stored.find_one({"_id": sent["id"]})["data"]
    assert data == {"1": "int key", "a.b": "dotted", "$x": "dollar", "null": "none key"}


def test_a_converted_key_that_collides_keeps_both_values(
    backend: MongoBackend, stored: Any
) -> None:
    sent = event()
    sent["data"] = {1: "from int", "1": "from str"}
    backend.send(sent)
    data = stored.find_one({"_id": sent["id"]})["data"]
    assert data == {"1~int": "from int", "1": "from str"}


def test_cyclic_data_is_stored_with_a_marker(backend: MongoBackend, stored: Any) -> None:
    sent = event()
    loop: dict[str, Any] = {"a": 1}
    loop["again"] = loop
    sent["data"] = loop
    backend.send(sent)
    assert stored.find_one({"_id": sent["id"]})["data"] == {"a": 1, "again": "<cycle>"}


def test_sending_does_not_modify_the_event(backend: MongoBackend) -> None:
    sent = event(tags={"a"})
    sent["data"][1] = "int key"
    kept = copy.deepcopy(sent)
    backend.send(sent)
    backend.send_batch([sent])
    assert sent == kept


def test_resending_an_event_stores_it_once(backend: MongoBackend, stored: Any) -> None:
    sent = event()
    backend.send(sent)
    backend.send(sent)
    backend.send_batch([sent])
    assert stored.count_documents({}) == 1
    assert backend.stats()["duplicates"] == 2


def test_a_batch_partly_stored_already_stores_the_rest(backend: MongoBackend, stored: Any) -> None:
    events = [event(n=n) for n in range(10)]
    backend.send_batch(events[:4])
    backend.send_batch(events)
    assert stored.count_documents({}) == 10
    assert backend.stats()["duplicates"] == 4


def index_keys(collection: Any) -> list[tuple[str, ...]]:
    return sorted(
        tuple(field for field, _ in spec["key"]) for spec in collection.index_information().values()
    )


def test_indexes_on_name_and_timestamp_are_created(backend: MongoBackend, stored: Any) -> None:
    backend.send(event())
    assert index_keys(stored) == [("_id",), ("name",), ("timestamp",)]


def test_existing_indexes_are_not_created_again(
    mongo_uri: str, collection_name: str, stored: Any
) -> None:
    stored.create_index("name", name="by_name")
    stored.create_index("timestamp", name="by_time")
    names_before = sorted(stored.index_information())
    backend = MongoBackend(uri=mongo_uri, database=DATABASE, collection=collection_name)
    backend.send(event())
    backend.close()
    assert sorted(stored.index_information()) == names_before


def test_writes_are_acknowledged_by_default(backend: MongoBackend) -> None:
    assert backend.write_concern.acknowledged
    assert backend.write_concern.document == {"w": 1}


def unreachable_backend(port: int) -> MongoBackend:
    return MongoBackend(uri=f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=200)


def test_a_server_that_is_down_raises_a_retryable_delivery_error(unused_port: int) -> None:
    backend = unreachable_backend(unused_port)
    with pytest.raises(DeliveryError) as raised:
        backend.send(event())
    assert raised.value.retryable


def test_a_server_that_is_down_never_raises_into_the_app_and_is_counted(
    unused_port: int,
) -> None:
    router = RoutingBackend({"mongo": unreachable_backend(unused_port)})
    router.send(event())
    router.send(event())
    assert router.stats()["backends"]["mongo"]["failed"] == 2


def test_a_batch_to_a_server_that_is_down_raises_delivery_error(unused_port: int) -> None:
    with pytest.raises(DeliveryError):
        unreachable_backend(unused_port).send_batch([event(), event()])


def test_without_pymongo_construction_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mongodb_module, "_HAVE_PYMONGO", False)
    with pytest.raises(MissingExtraError, match=r"eventrouter\[mongo\]"):
        MongoBackend()


def test_an_unknown_client_option_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="MongoDB client option 'colection'"):
        MongoBackend(uri="mongodb://127.0.0.1:1", colection="events")


def test_a_client_option_of_the_wrong_type_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="maxPoolSize"):
        MongoBackend(uri="mongodb://127.0.0.1:1", maxPoolSize="many")


def test_the_loader_reports_a_bad_client_option_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "routing.yaml"
    config.write_text(
        "backends:\n"
        "  archive:\n"
        "    class: mongodb\n"
        "    options:\n"
        "      uri: mongodb://127.0.0.1:1\n"
        "      colection: events\n"
    )
    with pytest.raises(ConfigError) as caught:
        eventrouter.load(config)
    [issue] = caught.value.issues
    assert issue.path == "backends.archive.options.colection"
    assert issue.line == 6
    assert "colection" in issue.message


@needs_fork
def test_a_forked_child_can_send_while_another_thread_held_the_lock_at_fork(
    backend: MongoBackend, stored: Any
) -> None:
    backend.send(event("parent"))
    sent = event("child")

    def child() -> int:
        backend.send(sent)  # a new client for the child, created under the lock
        backend.close()
        return 0

    with lock_held_elsewhere(backend):
        code = run_in_fork(child)
    assert code == 0
    assert stored.find_one({"_id": sent["id"]})["name"] == "child"
