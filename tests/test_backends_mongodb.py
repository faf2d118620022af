"""MongoBackend against a real server (nx-27017, or mongod via EVENTROUTER_MONGO_URI).

Everything is checked through a separate MongoClient (the ``mongo_client`` fixture).
"""

from __future__ import annotations

import copy
import datetime as dt
import socket
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    RestartableMongo,
    fork_while_threads_send,
    lock_held_elsewhere,
    needs_fork,
    run_in_fork,
)
from pymongo import MongoClient, monitoring

import eventrouter
import eventrouter.backends.mongodb as mongodb_module
from eventrouter import ConfigError, DeliveryError, MissingExtraError, RoutingBackend, build_event
from eventrouter.backends.buffered import BufferedBackend
from eventrouter.backends.mongodb import MongoBackend
from eventrouter.deadletter import DeadLetterFile, read_dead_letters
from eventrouter.errors import OptionError, PartialDeliveryError
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


@pytest.mark.peers
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


@pytest.mark.peers
def test_send_batch_stores_every_event_once(backend: MongoBackend, stored: Any) -> None:
    events = [event(n=n) for n in range(250)]
    backend.send_batch(events)
    assert stored.count_documents({}) == 250
    assert {doc["_id"] for doc in stored.find({}, {"_id": 1})} == {e["id"] for e in events}


@pytest.mark.peers
def test_timestamp_is_stored_as_a_bson_date(backend: MongoBackend, stored: Any) -> None:
    sent = event()
    backend.send(sent)
    timestamp = stored.find_one({"_id": sent["id"]})["timestamp"]
    assert isinstance(timestamp, dt.datetime)
    assert abs(timestamp - sent["timestamp"]) < dt.timedelta(milliseconds=1)


@pytest.mark.peers
def test_an_iso_timestamp_string_is_stored_as_a_date(backend: MongoBackend, stored: Any) -> None:
    sent = {**event(), "timestamp": "2024-05-01T12:00:00.250000+00:00"}
    backend.send(sent)
    timestamp = stored.find_one({"_id": sent["id"]})["timestamp"]
    assert timestamp == dt.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=dt.UTC)


@pytest.mark.peers
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


@pytest.mark.peers
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


@pytest.mark.peers
def test_awkward_keys_are_kept(backend: MongoBackend, stored: Any) -> None:
    sent = event(placeholder=None)
    sent["data"] = {1: "int key", "a.b": "dotted", "$x": "dollar", None: "none key"}
    backend.send(sent)
    data = stored.find_one({"_id": sent["id"]})["data"]
    assert data == {"1": "int key", "a.b": "dotted", "$x": "dollar", "null": "none key"}


@pytest.mark.peers
def test_a_converted_key_that_collides_keeps_both_values(
    backend: MongoBackend, stored: Any
) -> None:
    sent = event()
    sent["data"] = {1: "from int", "1": "from str"}
    backend.send(sent)
    data = stored.find_one({"_id": sent["id"]})["data"]
    assert data == {"1~int": "from int", "1": "from str"}


@pytest.mark.peers
def test_cyclic_data_is_stored_with_a_marker(backend: MongoBackend, stored: Any) -> None:
    sent = event()
    loop: dict[str, Any] = {"a": 1}
    loop["again"] = loop
    sent["data"] = loop
    backend.send(sent)
    assert stored.find_one({"_id": sent["id"]})["data"] == {"a": 1, "again": "<cycle>"}


@pytest.mark.peers
def test_sending_does_not_modify_the_event(backend: MongoBackend) -> None:
    sent = event(tags={"a"})
    sent["data"][1] = "int key"
    kept = copy.deepcopy(sent)
    backend.send(sent)
    backend.send_batch([sent])
    assert sent == kept


@pytest.mark.peers
def test_resending_an_event_stores_it_once(backend: MongoBackend, stored: Any) -> None:
    sent = event()
    backend.send(sent)
    backend.send(sent)
    backend.send_batch([sent])
    assert stored.count_documents({}) == 1
    assert backend.stats()["duplicates"] == 2


@pytest.mark.peers
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


@pytest.mark.peers
def test_indexes_on_name_and_timestamp_are_created(backend: MongoBackend, stored: Any) -> None:
    backend.send(event())
    assert index_keys(stored) == [("_id",), ("name",), ("timestamp",)]


@pytest.mark.peers
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


@pytest.mark.peers
def test_writes_are_acknowledged_by_default(backend: MongoBackend) -> None:
    assert backend.write_concern.acknowledged
    assert backend.write_concern.document == {"w": 1}


def unreachable_backend(port: int) -> MongoBackend:
    return MongoBackend(uri=f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=200)


@pytest.mark.slow
def test_a_server_that_is_down_raises_a_retryable_delivery_error(unused_port: int) -> None:
    backend = unreachable_backend(unused_port)
    with pytest.raises(DeliveryError) as raised:
        backend.send(event())
    assert raised.value.retryable


@pytest.mark.slow
def test_a_server_that_is_down_never_raises_into_the_app_and_is_counted(
    unused_port: int,
) -> None:
    router = RoutingBackend({"mongo": unreachable_backend(unused_port)})
    router.send(event())
    router.send(event())
    assert router.stats()["backends"]["mongo"]["failed"] == 2


@pytest.mark.slow
def test_a_batch_to_a_server_that_is_down_raises_delivery_error(unused_port: int) -> None:
    with pytest.raises(DeliveryError):
        unreachable_backend(unused_port).send_batch([event(), event()])


def test_without_pymongo_construction_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mongodb_module, "_HAVE_PYMONGO", False)
    with pytest.raises(MissingExtraError, match=r"eventrouter\[mongo\]"):
        MongoBackend()


def test_an_unknown_client_option_is_refused_at_construction() -> None:
    with pytest.raises(OptionError, match="MongoDB client option") as raised:
        MongoBackend(uri="mongodb://127.0.0.1:1", colection="events")
    assert raised.value.option == "colection"


def test_a_client_option_of_the_wrong_type_is_refused_at_construction() -> None:
    with pytest.raises(OptionError) as raised:
        MongoBackend(uri="mongodb://127.0.0.1:1", maxPoolSize="many")
    assert raised.value.option == "maxPoolSize"


@pytest.mark.parametrize(
    ("option", "value"), [("indexes", "mine"), ("timeout", 0), ("timeout", float("nan"))]
)
def test_bad_backend_options_are_refused_naming_the_option(option: str, value: Any) -> None:
    with pytest.raises(OptionError) as raised:
        MongoBackend(uri="mongodb://127.0.0.1:1", **{option: value})
    assert raised.value.option == option


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
@pytest.mark.peers
def test_a_forked_child_can_send_while_another_thread_held_the_lock_at_fork(
    backend: MongoBackend, stored: Any
) -> None:
    backend.send(event("parent"))
    sent = event("child")

    def child() -> int:
        backend.send(sent)  # a new client for the child, created under the lock
        backend.close()
        return 0

    with lock_held_elsewhere(backend), lock_held_elsewhere(backend._connections):
        code = run_in_fork(child)
    assert code == 0
    assert stored.find_one({"_id": sent["id"]})["name"] == "child"


# -- event-tracking's attributes and indexes ----------------------------------------------


@pytest.mark.peers
def test_connection_database_and_collection_are_this_processs_pymongo_objects(
    backend: MongoBackend, stored: Any, collection_name: str
) -> None:
    sent = event()
    backend.send(sent)
    assert backend.connection.address is not None
    assert backend.database.name == DATABASE
    assert backend.collection.full_name == f"{DATABASE}.{collection_name}"
    assert backend.collection.find_one({"_id": sent["id"]})["name"] == "video.played"
    assert backend.connection is backend.connection  # one client, not one per access


@pytest.mark.peers
def test_event_tracking_indexes_are_time_descending_and_name(
    mongo_uri: str, collection_name: str, stored: Any
) -> None:
    commands = CommandRecorder()
    backend = MongoBackend(
        uri=mongo_uri,
        database=DATABASE,
        collection=collection_name,
        indexes="event-tracking",
        event_listeners=[commands],
    )
    backend.send(event())
    backend.close()
    # What was asked for (nx-27017 does not report an index's direction back) ...
    asked = [dict(index["key"]) for c in commands.named("createIndexes") for index in c["indexes"]]
    assert asked == [{"time": -1}, {"name": 1}]
    # ... and what the server has.
    assert index_keys(stored) == [("_id",), ("name",), ("time",)]


class CommandRecorder(monitoring.CommandListener):
    """Records the commands a client sends."""

    def __init__(self) -> None:
        self.commands: list[Any] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append(event.command)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def named(self, name: str) -> list[Any]:
        return [command for command in self.commands if name in command]


@pytest.mark.peers
def test_no_index_is_created_when_create_indexes_is_off(
    mongo_uri: str, collection_name: str, stored: Any
) -> None:
    backend = MongoBackend(
        uri=mongo_uri, database=DATABASE, collection=collection_name, create_indexes=False
    )
    backend.send(event())
    backend.close()
    assert index_keys(stored) == [("_id",)]


# -- documents the server refuses ---------------------------------------------------------


@pytest.mark.peers
def test_a_document_the_server_refuses_fails_alone_and_the_rest_is_stored(
    backend: MongoBackend, stored: Any
) -> None:
    stored.create_index("data.n", unique=True)
    backend.send(event(n=1))
    batch = [event(n=0), event(n=1), event(n=2)]  # n=1 breaks the unique index
    with pytest.raises(PartialDeliveryError) as raised:
        backend.send_batch(batch)
    assert raised.value.failed == (1,)
    assert not raised.value.retryable
    assert stored.count_documents({"_id": {"$in": [batch[0]["id"], batch[2]["id"]]}}) == 2
    assert stored.find_one({"_id": batch[1]["id"]}) is None
    assert backend.stats()["rejected"] == 1


@pytest.mark.peers
def test_a_resent_event_is_a_duplicate_even_with_another_unique_index(
    backend: MongoBackend, stored: Any
) -> None:
    stored.create_index("data.n", unique=True)
    sent = event(n=1)
    backend.send(sent)
    backend.send(sent)  # same _id (and same n): delivered already, not refused
    assert backend.stats() == {"duplicates": 1, "converted": 0, "rejected": 0}


# -- a server that stops, hangs or comes back ---------------------------------------------


@pytest.mark.peers
def test_a_server_stopped_mid_stream_and_restarted_loses_nothing(
    restartable_mongo: RestartableMongo,
) -> None:
    backend = MongoBackend(
        uri=restartable_mongo.uri,
        database=DATABASE,
        collection="restart",
        serverSelectionTimeoutMS=300,
    )
    stored_ok: list[Event] = []
    failed: list[Event] = []
    errors: list[DeliveryError] = []
    for step in range(9):
        if step == 3:
            restartable_mongo.stop()
        if step == 6:
            restartable_mongo.start()
        batch = [event(n=step * 10 + k) for k in range(10)]
        try:
            backend.send_batch(batch)
        except DeliveryError as exc:
            errors.append(exc)
            failed.extend(batch)
        else:
            stored_ok.extend(batch)
    assert len(failed) == 30  # the three batches sent while it was down
    assert all(exc.retryable for exc in errors)
    backend.send_batch(stored_ok[:10] + failed)  # resent after the restart: duplicates are fine
    backend.close()
    client: Any = MongoClient(restartable_mongo.uri)
    try:
        ids = [d["_id"] for d in client[DATABASE]["restart"].find({}, {"_id": 1})]
    finally:
        client.close()
    assert sorted(ids) == sorted(e["id"] for e in stored_ok + failed)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers anything."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    done.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


@pytest.mark.slow
def test_a_server_that_never_answers_raises_a_retryable_error(silent_server: int) -> None:
    backend = MongoBackend(
        uri=f"mongodb://127.0.0.1:{silent_server}",
        serverSelectionTimeoutMS=300,
        connectTimeoutMS=300,
    )
    with pytest.raises(DeliveryError) as raised:
        backend.send(event())  # returns: would hang without the timeouts
    assert raised.value.retryable
    backend.close()


@pytest.mark.peers
def test_a_read_timeout_is_the_timeout_option(mongo_uri: str) -> None:
    backend = MongoBackend(uri=mongo_uri, timeout=2.5)
    assert backend.client_options["socketTimeoutMS"] == 2500
    assert backend.connection.options.pool_options.socket_timeout == 2.5
    backend.close()


# -- fork ---------------------------------------------------------------------------------


@needs_fork
@pytest.mark.peers
def test_forks_while_four_threads_send_store_every_event_once(
    backend: MongoBackend, stored: Any
) -> None:
    backend.send(event("warm.up"))  # the parent's client is connected when it forks
    parents_client = backend.connection

    def child(one: Event) -> int:
        backend.send(one)
        if backend.connection is parents_client:
            return 3  # it would share the parent's sockets
        backend.close()
        return 0

    storm = fork_while_threads_send(event, backend.send, child)
    assert storm.codes == [0] * 50
    assert storm.errors == []
    assert stored.count_documents({"name": "child"}) == 50
    assert stored.count_documents({"name": "parent"}) == len(storm.sent)
    assert {d["_id"] for d in stored.find({"name": {"$ne": "warm.up"}}, {"_id": 1})} == {
        *storm.sent,
        *storm.child_ids,
    }


# -- behind a buffered node ---------------------------------------------------------------


def buffered(backend: MongoBackend, dead: Path) -> BufferedBackend:
    node = BufferedBackend(
        backend,
        batch_size=10,
        flush_interval=0.01,
        backoff=(0.01, 0.05),
        max_retries=1000,
        dead_letter=DeadLetterFile(dead),
    )
    node.bind_path("archive.mongo")
    return node


@pytest.mark.peers
def test_buffered_server_down_then_up_stores_every_event_once(
    restartable_mongo: RestartableMongo, tmp_path: Path
) -> None:
    backend = MongoBackend(
        uri=restartable_mongo.uri,
        database=DATABASE,
        collection="buffered",
        serverSelectionTimeoutMS=200,
    )
    node = buffered(backend, tmp_path / "dead.jsonl")
    events = [event(n=n) for n in range(40)]
    for one in events[:10]:
        node.send(one)
    assert node.flush(timeout=60)
    restartable_mongo.stop()
    for one in events[10:]:
        node.send(one)
    restartable_mongo.start()
    assert node.flush(timeout=60)
    node.close()
    client: Any = MongoClient(restartable_mongo.uri)
    try:
        ids = [d["_id"] for d in client[DATABASE]["buffered"].find({}, {"_id": 1})]
    finally:
        client.close()
    assert sorted(ids) == sorted(e["id"] for e in events)
    assert not (tmp_path / "dead.jsonl").exists()
    assert node.stats()["delivered"] == 40


@pytest.mark.peers
def test_buffered_refused_document_is_dead_lettered_alone(
    backend: MongoBackend, stored: Any, tmp_path: Path
) -> None:
    stored.create_index("data.n", unique=True)
    backend.send(event(n=4))
    node = buffered(backend, tmp_path / "dead.jsonl")
    events = [event(n=n) for n in range(10)]
    for one in events:
        node.send(one)
    assert node.flush(timeout=60)
    node.close()
    (record,) = read_dead_letters(tmp_path / "dead.jsonl")
    assert record["event"]["id"] == events[4]["id"]
    assert record["destination"] == "archive.mongo"
    assert record["error"] == "PartialDeliveryError"
    assert stored.count_documents({}) == 10  # the 9 others, and the first n=4
    assert (node.stats()["delivered"], node.stats()["dead_lettered"]) == (9, 1)
