"""Enrich: static values, callables, and process facts read at load time."""

from __future__ import annotations

import importlib.metadata
import itertools
import os
import socket
from typing import Any

import pytest

from eventrouter.processors import Enrich


def ev() -> dict[str, Any]:
    return {"id": "e1", "name": "video.played", "data": {"x": "text"}, "context": {"user_id": 7}}


def test_a_static_value_is_set_at_its_path() -> None:
    event = Enrich({"context.service": "lms"})(ev())
    assert event["context"] == {"user_id": 7, "service": "lms"}


def test_intermediate_dicts_are_created() -> None:
    event = Enrich({"context.deploy.region": "eu"})(ev())
    assert event["context"]["deploy"] == {"region": "eu"}


def test_an_existing_value_is_overwritten_by_default() -> None:
    assert Enrich({"context.user_id": 8})(ev())["context"]["user_id"] == 8


def test_overwrite_false_keeps_an_existing_value() -> None:
    enrich = Enrich({"context.user_id": 8, "context.site": "a"}, overwrite=False)
    assert enrich(ev())["context"] == {"user_id": 7, "site": "a"}


def test_a_callable_is_called_for_every_event() -> None:
    counter = itertools.count(1)
    enrich = Enrich({"context.seq": lambda: next(counter)})
    assert [enrich(ev())["context"]["seq"] for _ in range(3)] == [1, 2, 3]


def test_a_mutable_static_value_is_not_shared_between_events() -> None:
    enrich = Enrich({"context.tags": ["a"]})
    first, second = enrich(ev()), enrich(ev())
    first["context"]["tags"].append("changed")
    assert second["context"]["tags"] == ["a"]


def test_source_hostname_is_the_machine_host_name() -> None:
    event = Enrich(sources={"context.host": "hostname"})(ev())
    assert event["context"]["host"] == socket.gethostname()


def test_source_pid_is_the_current_process_id() -> None:
    assert Enrich(sources={"context.pid": "pid"})(ev())["context"]["pid"] == os.getpid()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork exists on POSIX only")
def test_source_pid_is_right_in_a_forked_child() -> None:
    enrich = Enrich(sources={"context.pid": "pid"})
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            ok = enrich(ev())["context"]["pid"] == os.getpid()
            os.write(write_end, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 1)
    os.close(read_end)
    os.waitpid(child, 0)
    assert answer == b"1"


def test_source_version_reads_an_installed_distribution() -> None:
    event = Enrich(sources={"context.version": "version:eventrouter"})(ev())
    assert event["context"]["version"] == importlib.metadata.version("eventrouter")


def test_source_version_of_an_unknown_distribution_fails_at_load() -> None:
    with pytest.raises(ValueError, match="no-such-distribution-xyz"):
        Enrich(sources={"context.version": "version:no-such-distribution-xyz"})


def test_source_env_reads_the_variable_at_load_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTROUTER_TEST_REGION", "eu-west")
    enrich = Enrich(sources={"context.region": "env:EVENTROUTER_TEST_REGION"})
    monkeypatch.setenv("EVENTROUTER_TEST_REGION", "changed")
    assert enrich(ev())["context"]["region"] == "eu-west"


def test_source_env_without_the_variable_fails_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTROUTER_TEST_UNSET", raising=False)
    with pytest.raises(ValueError, match="EVENTROUTER_TEST_UNSET"):
        Enrich(sources={"context.region": "env:EVENTROUTER_TEST_UNSET"})


def test_source_env_falls_back_to_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTROUTER_TEST_UNSET", raising=False)
    enrich = Enrich(sources={"context.region": "env:EVENTROUTER_TEST_UNSET:-local"})
    assert enrich(ev())["context"]["region"] == "local"


def test_an_unknown_source_is_a_value_error_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match="hostname"):
        Enrich(sources={"context.host": "host"})


def test_nothing_to_add_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nothing to add"):
        Enrich()


def test_an_invalid_path_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid path"):
        Enrich({"context.": 1})


def test_a_path_through_a_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"data\.x\.y"):
        Enrich({"data.x.y": 1})(ev())
