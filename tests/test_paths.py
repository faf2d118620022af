"""Dotted paths: parsing, escaping, and get / has / set / pop / delete on nested events."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventrouter.paths import (
    MISSING,
    Segment,
    delete_path,
    format_path,
    get_path,
    has_path,
    parse_path,
    pop_path,
    set_path,
)


def event() -> dict[str, Any]:
    return {
        "name": "video.played",
        "context": {"user_id": 7, "nothing": None},
        "data": {"items": [{"id": "a"}, {"id": "b"}], "pair": ("x", {"y": 1}), "0": "zero"},
    }


# parsing


def test_parse_splits_on_dots() -> None:
    assert [s.key for s in parse_path("context.user_id")] == ["context", "user_id"]


def test_parse_marks_digit_segments_as_list_indexes() -> None:
    assert parse_path("data.items.10") == (
        Segment("data", None),
        Segment("items", None),
        Segment("10", 10),
    )


def test_backslash_escapes_a_dot_inside_a_key() -> None:
    assert [s.key for s in parse_path(r"data.user\.name")] == ["data", "user.name"]


def test_double_backslash_is_a_literal_backslash() -> None:
    assert [s.key for s in parse_path(r"data.a\\.b")] == ["data", "a\\", "b"]


def test_a_sequence_of_keys_is_taken_literally() -> None:
    assert [s.key for s in parse_path(["data", "a.b", "0"])] == ["data", "a.b", "0"]


@pytest.mark.parametrize("text", ["", "a..b", ".a", "a.", ".", r"a\x", "a\\"])
def test_invalid_paths_raise_value_error_naming_them(text: str) -> None:
    with pytest.raises(ValueError, match="invalid path"):
        parse_path(text)


def test_empty_segment_in_a_sequence_is_invalid() -> None:
    with pytest.raises(ValueError, match="invalid path"):
        parse_path(["data", ""])


def test_a_non_string_path_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_path(3)  # type: ignore[arg-type]


@pytest.mark.slow
@given(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=4))
def test_format_path_round_trips_any_keys(keys: list[str]) -> None:
    parsed = parse_path(keys)
    assert parse_path(format_path(parsed)) == parsed


def test_format_path_accepts_keys_and_indexes() -> None:
    assert format_path(["data", "a.b", 0]) == r"data.a\.b.0"


# reading


def test_get_returns_a_nested_value() -> None:
    assert get_path(event(), parse_path("context.user_id")) == 7


def test_get_returns_missing_for_an_absent_key() -> None:
    assert get_path(event(), parse_path("context.org_id")) is MISSING


def test_get_returns_the_default_for_an_absent_key() -> None:
    assert get_path(event(), parse_path("context.org_id"), None) is None


def test_get_indexes_into_lists() -> None:
    assert get_path(event(), parse_path("data.items.1.id")) == "b"


def test_get_indexes_into_tuples() -> None:
    assert get_path(event(), parse_path("data.pair.1.y")) == 1


def test_get_past_the_end_of_a_list_is_missing() -> None:
    assert get_path(event(), parse_path("data.items.5.id")) is MISSING


def test_a_digit_segment_is_a_string_key_on_a_mapping() -> None:
    assert get_path(event(), parse_path("data.0")) == "zero"


def test_a_word_segment_on_a_list_is_missing() -> None:
    assert get_path(event(), parse_path("data.items.id")) is MISSING


def test_get_through_a_scalar_is_missing() -> None:
    assert get_path(event(), parse_path("name.first")) is MISSING


def test_has_path_counts_a_present_none() -> None:
    assert has_path(event(), parse_path("context.nothing"))


def test_has_path_is_false_for_an_absent_key() -> None:
    assert not has_path(event(), parse_path("context.absent"))


def test_missing_is_falsy_and_reads_well() -> None:
    assert not MISSING
    assert repr(MISSING) == "MISSING"


# writing


def test_set_replaces_an_existing_value() -> None:
    e = event()
    set_path(e, parse_path("context.user_id"), 8)
    assert e["context"]["user_id"] == 8


def test_set_creates_intermediate_dicts() -> None:
    e = event()
    set_path(e, parse_path("context.host.name"), "web-1")
    assert e["context"]["host"] == {"name": "web-1"}


def test_set_creates_a_dict_even_for_a_digit_segment() -> None:
    e: dict[str, Any] = {}
    set_path(e, parse_path("a.0"), "x")
    assert e == {"a": {"0": "x"}}


def test_set_replaces_a_list_element() -> None:
    e = event()
    set_path(e, parse_path("data.items.0.id"), "z")
    assert e["data"]["items"][0] == {"id": "z"}


def test_set_past_the_end_of_a_list_is_an_index_error() -> None:
    with pytest.raises(IndexError, match=r"data\.items\.2"):
        set_path(event(), parse_path("data.items.2"), "z")


def test_set_through_a_scalar_is_a_type_error_naming_the_path() -> None:
    with pytest.raises(TypeError, match=r"name\.first"):
        set_path(event(), parse_path("name.first"), "x")


def test_set_inside_a_tuple_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        set_path(event(), parse_path("data.pair.0"), "x")


def test_pop_removes_and_returns_the_value() -> None:
    e = event()
    assert pop_path(e, parse_path("context.user_id")) == 7
    assert "user_id" not in e["context"]


def test_pop_of_an_absent_path_returns_the_default() -> None:
    assert pop_path(event(), parse_path("context.x.y"), "none") == "none"


def test_pop_of_a_list_index_removes_the_element() -> None:
    e = event()
    assert pop_path(e, parse_path("data.items.0")) == {"id": "a"}
    assert e["data"]["items"] == [{"id": "b"}]


def test_pop_inside_a_tuple_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        pop_path(event(), parse_path("data.pair.0"))


def test_pop_from_a_read_only_mapping_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        pop_path({"a": MappingProxyType({"b": 1})}, parse_path("a.b"))


def test_delete_reports_whether_there_was_a_value() -> None:
    e = event()
    assert delete_path(e, parse_path("context.nothing")) is True
    assert delete_path(e, parse_path("context.nothing")) is False


def test_an_escaped_trailing_dot_belongs_to_the_key() -> None:
    assert [s.key for s in parse_path(r"a\.")] == ["a."]


def test_reading_a_defaultdict_neither_inserts_nor_finds_a_missing_key() -> None:
    from collections import defaultdict

    data: defaultdict[str, list[int]] = defaultdict(list)
    event = {"data": data}
    assert not has_path(event, parse_path("data.tags"))
    assert get_path(event, parse_path("data.tags"), "absent") == "absent"
    assert dict(data) == {}
