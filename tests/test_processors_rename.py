"""Rename: values move between dotted paths."""

from __future__ import annotations

from typing import Any

import pytest

from eventrouter.processors import Rename


def ev() -> dict[str, Any]:
    return {
        "id": "e1",
        "name": "video.played",
        "data": {"a": 1, "b": 2, "items": ["x", "y"], "text": "t"},
        "context": {"username": "ann"},
    }


def test_the_value_moves_and_the_source_key_is_removed() -> None:
    event = Rename({"context.username": "data.user"})(ev())
    assert event["data"]["user"] == "ann"
    assert "username" not in event["context"]


def test_a_missing_source_leaves_the_destination_alone() -> None:
    event = Rename({"context.absent": "data.a"})(ev())
    assert event == ev()


def test_an_existing_destination_is_overwritten() -> None:
    event = Rename({"data.a": "data.b"})(ev())
    assert event["data"]["b"] == 1
    assert "a" not in event["data"]


def test_intermediate_dicts_are_created() -> None:
    event = Rename({"context.username": "data.user.name"})(ev())
    assert event["data"]["user"] == {"name": "ann"}


def test_a_value_can_be_nested_under_its_own_path() -> None:
    assert Rename({"data.a": "data.a.value"})(ev())["data"]["a"] == {"value": 1}


def test_a_value_can_be_lifted_over_its_parent() -> None:
    event = ev()
    event["data"]["a"] = {"value": 1, "other": 2}
    assert Rename({"data.a.value": "data.a"})(event)["data"]["a"] == 1


def test_moves_apply_in_order() -> None:
    swap = Rename({"data.a": "data.tmp", "data.b": "data.a", "data.tmp": "data.b"})
    data = swap(ev())["data"]
    assert (data["a"], data["b"], "tmp" in data) == (2, 1, False)


def test_a_list_element_moves_and_the_rest_shift() -> None:
    data = Rename({"data.items.0": "data.first"})(ev())["data"]
    assert (data["first"], data["items"]) == ("x", ["y"])


def test_a_destination_that_cannot_be_set_puts_the_value_back() -> None:
    event = ev()
    with pytest.raises(TypeError, match=r"data\.text\.x"):
        Rename({"data.a": "data.text.x"})(event)
    assert event == ev()


def test_a_failed_move_from_a_list_puts_the_element_back_in_place() -> None:
    event = ev()
    with pytest.raises(TypeError):
        Rename({"data.items.0": "data.text.x"})(event)
    assert event["data"]["items"] == ["x", "y"]


def test_renaming_a_path_to_itself_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="itself"):
        Rename({"data.a": "data.a"})


def test_no_fields_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Rename({})


def test_a_non_string_destination_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"data\.a"):
        Rename({"data.a": ["data.b"]})  # type: ignore[dict-item]


def test_fields_must_be_a_mapping() -> None:
    with pytest.raises(TypeError):
        Rename(["data.a", "data.b"])  # type: ignore[arg-type]


def test_an_invalid_path_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid path"):
        Rename({"data.a": "data..b"})
