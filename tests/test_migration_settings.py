"""Specification of migrated settings that event-tracking loaded: dead letters, options its
classes ignored, refusals and the nodes they build."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pytest

import eventrouter
from eventrouter.backends.buffered import BufferedBackend
from eventrouter.backends.memory import MemoryBackend
from eventrouter.config import load, read_config
from eventrouter.deadletter import DeadLetterReader
from eventrouter.errors import ConfigError, EventEmissionExit

LOGGER = "eventtracking.backends.logger.LoggerBackend"
MONGO = "eventtracking.backends.mongodb.MongoBackend"
WHITELIST = "eventtracking.processors.whitelist.NameWhitelistProcessor"
REGEX = "eventtracking.processors.regex_filter.RegexFilter"
MEMORY = {"ENGINE": "eventrouter.backends.memory.MemoryBackend"}


def _with_processor(engine: str, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "EVENT_TRACKING_BACKENDS": {"mem": MEMORY},
        "EVENT_TRACKING_PROCESSORS": [{"ENGINE": engine, "OPTIONS": options}],
    }


def _names(tracker: Any) -> list[str]:
    return [event["name"] for event in tracker.get_backend("mem").events]


# --- a buffered node shows the wrapped backend's attributes --------------------------------------


class _BatchMemory(MemoryBackend):
    label = "inner"
    _secret = "inner"

    def send_batch(self, events: list[Any]) -> None:
        for event in events:
            self.send(event)


def test_a_buffered_node_shows_the_public_attributes_of_the_backend_it_wraps() -> None:
    inner = _BatchMemory()
    node = BufferedBackend(inner)
    try:
        assert node.label == "inner"
        assert node.events is inner.events
    finally:
        node.close(0)


def test_a_buffered_node_never_shows_the_wrapped_backends_delivery_hooks_or_privates() -> None:
    node = BufferedBackend(_BatchMemory())
    try:
        assert not hasattr(node, "send_batch")  # a caller would skip the queue
        assert not hasattr(node, "_secret")
        with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
            _ = node.nothing_here
    finally:
        node.close(0)


@pytest.mark.peers
def test_a_migrated_mongodb_node_has_event_trackings_connection_database_and_collection(
    mongo_uri: str,
) -> None:
    settings = {
        "EVENT_TRACKING_BACKENDS": {
            "mongo": {"ENGINE": MONGO, "OPTIONS": {"host": mongo_uri, "database": "mig_attrs"}}
        }
    }
    tracker = eventrouter.load_settings(settings)
    try:
        node = tracker.get_backend("mongo")
        assert isinstance(node, BufferedBackend)
        assert node.database.name == "mig_attrs"
        assert node.collection.name == "events"
        tracker.emit("a.b", {"n": 1})
        tracker.flush(timeout=30)
        assert node.collection.count_documents({"name": "a.b"}) == 1
        node.connection.drop_database("mig_attrs")
    finally:
        tracker.close()


@pytest.mark.peers
def test_a_migrated_mongodb_node_reads_dates_back_aware_as_event_trackings_client_did(
    mongo_uri: str,
) -> None:
    settings = {
        "EVENT_TRACKING_BACKENDS": {
            "mongo": {"ENGINE": MONGO, "OPTIONS": {"host": mongo_uri, "database": "mig_tz"}}
        }
    }
    tracker = eventrouter.load_settings(settings)
    try:
        when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        tracker.emit("a.b", {"when": when})
        tracker.flush(timeout=30)
        node = tracker.get_backend("mongo")
        [document] = node.collection.find()
        assert document["data"]["when"] == when  # a naive datetime never equals an aware one
        node.connection.drop_database("mig_tz")
    finally:
        tracker.close()


def test_migrated_mongodb_keeps_tz_aware_when_extra_gives_it() -> None:
    tree = read_config({"m": {"ENGINE": MONGO, "OPTIONS": {"extra": {"tz_aware": False}}}})
    assert tree.backends["m"].options["tz_aware"] is False


# --- a dead-letter file for migrated settings ----------------------------------------------------


def _mongo_down(port: int) -> dict[str, Any]:
    return {
        "EVENT_TRACKING_BACKENDS": {
            "mongo": {"ENGINE": MONGO, "OPTIONS": {"host": "127.0.0.1", "port": port}}
        }
    }


def _dead_lettered_when_mongodb_is_down(tracker: Any, path: Path) -> None:
    for i in range(5):
        tracker.emit("x.y", {"i": i})
    tracker.close(timeout=0.5)
    stats = tracker.stats()["backends"]["mongo"]["stats"]
    assert (stats["received"], stats["dead_lettered"], stats["lost"]) == (5, 5, 0)
    records = list(DeadLetterReader(path))
    assert sorted(r["event"]["data"]["i"] for r in records) == [0, 1, 2, 3, 4]
    assert {r["destination"] for r in records} == {"mongo"}


def test_load_settings_dead_letters_what_mongodb_down_never_took(
    tmp_path: Path, unused_port: int
) -> None:
    path = tmp_path / "dead.jsonl"
    tracker = eventrouter.load_settings(_mongo_down(unused_port), dead_letter=path)
    _dead_lettered_when_mongodb_is_down(tracker, path)


def test_load_settings_reads_the_eventrouter_dead_letter_setting(
    tmp_path: Path, unused_port: int
) -> None:
    path = tmp_path / "dead.jsonl"

    class Settings:
        EVENT_TRACKING_BACKENDS = _mongo_down(unused_port)["EVENT_TRACKING_BACKENDS"]
        EVENTROUTER_DEAD_LETTER = str(path)

    _dead_lettered_when_mongodb_is_down(eventrouter.load_settings(Settings()), path)


def test_the_dead_letter_argument_wins_over_the_setting(tmp_path: Path) -> None:
    settings = {"EVENT_TRACKING_BACKENDS": {"mem": MEMORY}, "EVENTROUTER_DEAD_LETTER": "a.jsonl"}
    given = tmp_path / "b.jsonl"
    tracker = eventrouter.load_settings(settings, dead_letter=given)
    assert tracker.router.dead_letter is not None
    assert tracker.router.dead_letter.path == given


def test_load_takes_a_dead_letter_key_next_to_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    tracker = load({"EVENT_TRACKING_BACKENDS": {"mem": MEMORY}, "dead_letter": str(path)})
    assert tracker.router.dead_letter is not None
    assert tracker.router.dead_letter.path == path


def test_a_dead_letter_given_twice_is_reported() -> None:
    with pytest.raises(ConfigError, match="give the dead-letter file once"):
        load(
            {
                "EVENT_TRACKING_BACKENDS": {"mem": MEMORY},
                "dead_letter": "a.jsonl",
                "EVENTROUTER_DEAD_LETTER": "b.jsonl",
            }
        )


def test_a_migrated_logger_dead_letters_oversize_events_to_the_settings_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dead.jsonl"
    settings = {
        "EVENT_TRACKING_BACKENDS": {
            "log": {"ENGINE": LOGGER, "OPTIONS": {"name": "mig.dl", "max_event_size": 200}}
        }
    }
    tracker = eventrouter.load_settings(settings, dead_letter=path)
    tracker.emit("big.one", {"blob": "x" * 500})
    tracker.close()
    [record] = DeadLetterReader(path)
    assert (record["event"]["name"], record["destination"]) == ("big.one", "log")


def test_a_migrated_logger_takes_its_own_dead_letter_option(tmp_path: Path) -> None:
    path = tmp_path / "own.jsonl"
    tree = read_config(
        {"log": {"ENGINE": LOGGER, "OPTIONS": {"name": "mig.dl", "dead_letter": str(path)}}}
    )
    assert tree.backends["log"].options["dead_letter"] == str(path)


# --- options event-tracking's classes took as **kwargs and ignored -------------------------------


@pytest.mark.parametrize(
    ("engine", "options"),
    [
        (LOGGER, {"name": "mig.extra", "extra_thing": 1, "other": 2}),
        (MONGO, {"database": "d", "extra_thing": 1, "other": 2}),
    ],
    ids=["logger", "mongodb"],
)
def test_unknown_options_of_a_kwargs_backend_are_ignored_with_one_warning(
    engine: str, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="eventrouter.config"):
        tree = read_config(
            {"EVENT_TRACKING_BACKENDS": {"x": {"ENGINE": engine, "OPTIONS": options}}}
        )
    assert "extra_thing" not in tree.backends["x"].options
    [warning] = [r.getMessage() for r in caplog.records if "ignores" in r.getMessage()]
    assert "EVENT_TRACKING_BACKENDS.x.OPTIONS" in warning
    assert "'extra_thing', 'other'" in warning


def test_unknown_options_of_the_whitelist_are_ignored_and_it_still_filters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="eventrouter.config"):
        tracker = eventrouter.load_settings(
            _with_processor(WHITELIST, {"whitelist": ["keep.me"], "foo": 1})
        )
    tracker.emit("keep.me", {})
    tracker.emit("drop.me", {})
    assert _names(tracker) == ["keep.me"]
    assert any("'foo'" in r.getMessage() for r in caplog.records)


def test_the_warning_for_ignored_options_names_their_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(
        "log:\n  ENGINE: eventtracking.backends.logger.LoggerBackend\n  OPTIONS:\n"
        "    name: tracking\n    nmae: x\n",
        encoding="utf-8",
    )
    with caplog.at_level(logging.WARNING, logger="eventrouter.config"):
        read_config(path)
    [warning] = [r.getMessage() for r in caplog.records if "ignores" in r.getMessage()]
    assert "log.OPTIONS (line 5)" in warning


def test_an_unknown_option_of_a_class_without_kwargs_is_still_refused_as_a_type_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load(_with_processor(REGEX, {"regular_expressions": ["a"], "nmae": 1}))
    assert isinstance(caught.value, TypeError)
    [issue] = caught.value.issues
    assert issue.path == "EVENT_TRACKING_PROCESSORS[0].OPTIONS.nmae"


# --- whitelists ----------------------------------------------------------------------------------


def test_a_whitelist_with_items_that_are_not_strings_loads_and_they_match_nothing() -> None:
    tracker = eventrouter.load_settings(_with_processor(WHITELIST, {"whitelist": ["a.b", 5, ""]}))
    tracker.emit("a.b", {})
    tracker.emit("c.d", {})
    tracker.emit("5", {})
    assert _names(tracker) == ["a.b"]


def test_a_whitelist_of_only_items_that_are_not_strings_lets_nothing_through() -> None:
    from eventrouter.config.migrate import build_engine

    processor = build_engine(WHITELIST, {"whitelist": [5, None]})
    with pytest.raises(EventEmissionExit):
        processor({"name": "a.b", "data": {}})


def test_a_whitelist_with_an_unhashable_item_is_refused_as_event_tracking_did() -> None:
    with pytest.raises(TypeError, match="the whitelist holds a list"):
        load(_with_processor(WHITELIST, {"whitelist": ["a.b", ["c.d"]]}))


# --- refusals are ConfigErrors that are also event-tracking's exceptions -------------------------


@pytest.mark.parametrize(
    "options", [{"whitelist": None}, {"whitelist": "a.b"}, {}], ids=["none", "str", "missing"]
)
def test_a_refused_whitelist_is_a_config_error_and_a_type_error_at_its_path(
    options: dict[str, Any],
) -> None:
    with pytest.raises(ConfigError) as caught:
        eventrouter.load_settings(_with_processor(WHITELIST, options))
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, ValueError)  # as every ConfigError
    [issue] = caught.value.issues
    assert issue.path.startswith("EVENT_TRACKING_PROCESSORS[0].OPTIONS")
    assert "EVENT_TRACKING_PROCESSORS[0].OPTIONS" in str(caught.value)


def test_a_refused_regex_filter_is_a_config_error_and_improperly_configured() -> None:
    from eventtracking.exceptions import ImproperlyConfigured

    with pytest.raises(ConfigError) as caught:
        load(_with_processor(REGEX, {"regular_expressions": ["***"]}))
    assert isinstance(caught.value, ImproperlyConfigured)
    [issue] = caught.value.issues
    assert issue.path == "EVENT_TRACKING_PROCESSORS[0].OPTIONS.regular_expressions[0]"


def test_a_problem_event_tracking_accepted_stays_a_plain_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            {
                "EVENT_TRACKING_BACKENDS": {
                    "x": {"ENGINE": LOGGER, "OPTIONS": {"max_event_size": "1k"}}
                }
            }
        )
    assert not isinstance(caught.value, TypeError)
