"""Specification of short names and dotted paths."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from eventrouter import registry
from eventrouter.backends.memory import MemoryBackend
from eventrouter.backends.routing import RoutingBackend
from eventrouter.registry import UnknownNameError


def test_built_in_backend_short_names_resolve_to_their_classes() -> None:
    assert registry.resolve("backend", "memory") is MemoryBackend
    assert registry.resolve("backend", "router") is RoutingBackend


def test_jsonlog_and_logger_are_the_same_backend() -> None:
    assert registry.resolve("backend", "jsonlog") is registry.resolve("backend", "logger")


def test_built_in_processor_short_names_resolve() -> None:
    from eventrouter.processors.filters import NameFilter

    assert registry.resolve("processor", "name_filter") is NameFilter


def test_known_names_include_every_built_in_name() -> None:
    assert {"router", "memory", "jsonlog", "logger", "mongodb", "segment"} <= set(
        registry.known_names("backend")
    )
    assert {"name_filter", "redact", "enrich", "schema", "sample", "rename"} <= set(
        registry.known_names("processor")
    )


def test_unknown_short_name_suggests_the_nearest_known_name() -> None:
    with pytest.raises(UnknownNameError, match=r"did you mean 'mongodb'\?"):
        registry.resolve("backend", "mongo_db")


def test_short_name_of_the_other_kind_says_so() -> None:
    with pytest.raises(UnknownNameError, match="'memory' is a backend, not a processor"):
        registry.resolve("processor", "memory")


@pytest.mark.usefixtures("rescanned")
def test_short_names_come_only_from_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "entry_points", lambda *, group: [])
    assert registry.known_names("backend") == []
    with pytest.raises(UnknownNameError, match="unknown backend 'memory'"):
        registry.resolve("backend", "memory")


@pytest.mark.usefixtures("rescanned")
def test_short_name_whose_module_is_gone_is_not_available(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    declared = [EntryPoint("stale", "eventrouter.backends.gone:GoneBackend", "x")]
    monkeypatch.setattr(registry, "entry_points", lambda *, group: declared)
    with pytest.raises(UnknownNameError, match=r"'stale' is not available.*reinstall"):
        registry.resolve("backend", "stale")


@dataclass
class _Dist:
    name: str


@dataclass
class _Declared:
    """What the registry reads of an entry point, with the distribution declaring it."""

    name: str
    value: str
    dist: _Dist


@pytest.mark.usefixtures("rescanned")
def test_eventrouter_keeps_its_own_names_when_another_package_declares_them(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    theirs = _Declared("memory", "eventrouter.backends.routing:RoutingBackend", _Dist("hijacker"))
    ours = _Declared("memory", "eventrouter.backends.memory:MemoryBackend", _Dist("eventrouter"))
    monkeypatch.setattr(registry, "entry_points", lambda *, group: [theirs, ours])
    assert registry.resolve("backend", "memory") is MemoryBackend
    assert "ignoring the backend name 'memory'" in caplog.text
    assert "from hijacker" in caplog.text


def test_dotted_path_is_imported_as_it_is() -> None:
    assert registry.resolve("backend", "eventrouter.backends.memory.MemoryBackend") is (
        MemoryBackend
    )


def test_colon_form_of_a_dotted_path_is_imported() -> None:
    assert registry.resolve("backend", "eventrouter.backends.memory:MemoryBackend") is (
        MemoryBackend
    )


def test_dotted_path_to_a_missing_module_names_the_module() -> None:
    with pytest.raises(UnknownNameError, match="no module named 'myapp'"):
        registry.resolve("processor", "myapp.tracking.add_site")


def test_dotted_path_to_a_missing_attribute_suggests_the_nearest() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'MemoryBackend'"):
        registry.import_path("eventrouter.backends.memory.MemoryBackand")


def test_suggest_is_empty_when_nothing_is_close() -> None:
    assert registry.suggest("zzzz", ["memory", "router"]) == ""


@pytest.fixture
def rescanned() -> Iterator[None]:
    """Entry points are scanned afresh before and after the test."""
    registry.refresh()
    yield
    registry.refresh()


@pytest.mark.usefixtures("rescanned")
def test_entry_points_are_scanned_once_per_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    scans: list[str] = []
    real = registry.entry_points

    def counting(*, group: str) -> Any:
        scans.append(group)
        return real(group=group)

    monkeypatch.setattr(registry, "entry_points", counting)
    for _ in range(5):
        registry.resolve("backend", "memory")
        registry.resolve("processor", "sample")
    assert sorted(scans) == ["eventrouter.backends", "eventrouter.processors"]


@pytest.mark.usefixtures("rescanned")
def test_refresh_finds_entry_points_declared_since(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    registry.resolve("backend", "memory")  # fill the cache
    declared = [EntryPoint("inbox", "eventrouter.backends.memory:MemoryBackend", "x")]
    monkeypatch.setattr(registry, "entry_points", lambda *, group: declared)
    registry.refresh()
    assert registry.resolve("backend", "inbox") is MemoryBackend
