"""Specification of the safe, line-recording YAML loader (``eventrouter.config.read``)."""

from __future__ import annotations

import datetime
import math
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from eventrouter.config.read import (
    LineDict,
    LineList,
    UnsafeTag,
    YamlProblem,
    key_line,
    line_of,
    line_within,
    load_yaml,
    value_line,
)


def load(text: str) -> tuple[Any, list[YamlProblem]]:
    return load_yaml(textwrap.dedent(text).lstrip("\n"))


def load_clean(text: str) -> Any:
    data, problems = load(text)
    assert problems == []
    return data


# --- line numbers -----------------------------------------------------------------------------


def test_mappings_are_line_dicts_that_know_their_own_line() -> None:
    data = load_clean(
        """
        # a comment
        top:
          inner: 1
        """
    )
    assert isinstance(data, LineDict)
    assert data.line == 2
    assert isinstance(data["top"], LineDict)
    assert data["top"].line == 3


def test_key_and_value_lines_are_one_based() -> None:
    data = load_clean(
        """
        first: 1
        second: two
        third: [a, b]
        """
    )
    assert data.key_lines == {"first": 1, "second": 2, "third": 3}
    assert data.value_lines == {"first": 1, "second": 2, "third": 3}


def test_value_on_the_next_line_has_its_own_line() -> None:
    data = load_clean(
        """
        backends:
          archive:
            class: memory
        """
    )
    assert data.key_lines["backends"] == 1
    assert data.value_lines["backends"] == 2
    assert data["backends"].key_lines["archive"] == 2
    assert data["backends"].value_lines["archive"] == 3


def test_sequences_are_line_lists_with_the_line_of_each_item() -> None:
    data = load_clean(
        """
        items:

          - a
          - b
          # skipped comment
          - c
        """
    )
    items = data["items"]
    assert isinstance(items, LineList)
    assert items == ["a", "b", "c"]
    assert items.line == 3
    assert items.item_lines == [3, 4, 6]


def test_flow_sequence_items_share_the_line_they_are_written_on() -> None:
    data = load_clean("names: [a, b, c]\n")
    assert data["names"].item_lines == [1, 1, 1]


def test_nested_structures_keep_lines_at_every_depth() -> None:
    data = load_clean(
        """
        processors:
          - class: name_filter
            options:
              allow:
                - course.*
                - user.*
          - class: redact
        """
    )
    processors = data["processors"]
    assert processors.item_lines == [2, 7]
    first = processors[0]
    assert isinstance(first, LineDict)
    assert first.key_lines == {"class": 2, "options": 3}
    assert first["options"].value_lines == {"allow": 5}
    assert first["options"]["allow"].item_lines == [5, 6]
    assert processors[1].key_lines == {"class": 7}


def test_line_dict_and_line_list_compare_equal_to_plain_containers() -> None:
    data = load_clean("a: {b: [1, 2]}\n")
    assert data == {"a": {"b": [1, 2]}}


# --- problems while reading -------------------------------------------------------------------


def test_duplicate_key_is_reported_on_its_second_line_and_names_the_first() -> None:
    data, problems = load(
        """
        host: a
        port: 1
        host: b
        """
    )
    assert len(problems) == 1
    assert problems[0].line == 3
    assert "duplicate key 'host'" in problems[0].message
    assert "line 1" in problems[0].message
    assert data["host"] == "a"  # the first one is kept


def test_duplicate_key_inside_a_nested_mapping_is_reported_with_its_line() -> None:
    _, problems = load(
        """
        backends:
          archive: {class: memory}
          archive: {class: memory}
        """
    )
    assert [p.line for p in problems] == [3]


def test_unhashable_mapping_key_is_reported_not_raised() -> None:
    data, problems = load("? [a, b]\n: 1\nok: 2\n")
    assert [p.line for p in problems] == [1]
    assert "key" in problems[0].message
    assert data == {"ok": 2}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("backends:\n  archive: {class: memory\nprocessors: []\n", 3),
        ("a: 1\n  b: 2\n", 2),
        ("a: [1, 2\n", 2),
        ("a: 'unterminated\n", 2),
        ("- a\nb: 1\n", 2),
    ],
    ids=["unclosed_flow_mapping", "bad_indent", "unclosed_flow_sequence", "open_quote", "mixed"],
)
def test_syntax_error_gives_no_data_and_one_problem_with_a_line(text: str, line: int) -> None:
    data, problems = load_yaml(text)
    assert data is None
    assert len(problems) == 1
    assert problems[0].message.startswith("YAML syntax error")
    assert problems[0].line == line


def test_more_than_one_document_is_a_syntax_error() -> None:
    data, problems = load_yaml("a: 1\n---\nb: 2\n")
    assert data is None
    assert [p.line for p in problems] == [2]


def test_recursive_alias_is_reported_not_looped_on() -> None:
    data, problems = load_yaml("a: &x [*x]\n")
    assert data is None
    assert [p.line for p in problems] == [1]


def test_non_printable_character_is_reported_not_raised() -> None:
    data, problems = load_yaml("a: 1\nb: \x07\n")
    assert data is None
    assert len(problems) == 1


def test_empty_text_gives_no_data_and_no_problem() -> None:
    assert load_yaml("") == (None, [])
    assert load_yaml("# only a comment\n") == (None, [])


# --- merge keys -------------------------------------------------------------------------------


def test_merge_key_copies_the_anchored_mapping() -> None:
    data = load_clean(
        """
        base: &base {host: a, port: 1}
        prod:
          <<: *base
        """
    )
    assert data["prod"] == {"host": "a", "port": 1}


def test_explicit_key_overrides_a_merged_key_without_a_problem() -> None:
    text = "base: &base {host: a, port: 1}\nprod:\n  <<: *base\n  host: b\n"
    data, problems = load_yaml(text)
    assert problems == []
    assert data == yaml.safe_load(text)
    assert data["prod"] == {"host": "b", "port": 1}


# --- refused tags -----------------------------------------------------------------------------

PYTHON_TAGS = [
    "!!python/none ''",
    "!!python/bool true",
    "!!python/str abc",
    "!!python/unicode abc",
    "!!python/bytes YWJj",
    "!!python/int 1",
    "!!python/long 1",
    "!!python/float 1.5",
    "!!python/complex 1+2j",
    "!!python/list [1]",
    "!!python/tuple [1, 2]",
    "!!python/dict {a: 1}",
    "!!python/name:os.system ''",
    "!!python/module:os ''",
    "!!python/object:collections.OrderedDict {}",
    "!!python/object/new:collections.OrderedDict []",
    "!!python/object/apply:os.getcwd []",
]


@pytest.mark.parametrize("node", PYTHON_TAGS, ids=lambda n: n.split(maxsplit=1)[0])
def test_every_python_tag_becomes_an_unsafe_tag_marker_with_its_line(node: str) -> None:
    data, problems = load_yaml(f"ok: 1\nvalue: {node}\n")
    assert problems == []
    marker = data["value"]
    assert isinstance(marker, UnsafeTag)
    assert marker.tag == node.split(maxsplit=1)[0]
    assert marker.line == 2


@pytest.mark.parametrize("tag", ["!include", "!env", "!!custom", "!<tag:example.com,2000:app/x>"])
def test_non_standard_tags_are_refused_with_their_line(tag: str) -> None:
    data = load_clean(f"a: 1\nb:\n  - {tag} something\n")
    marker = data["b"][0]
    assert isinstance(marker, UnsafeTag)
    assert marker.line == 3


def test_local_tag_keeps_its_written_form() -> None:
    data = load_clean("a: !include other.yaml\n")
    assert data["a"] == UnsafeTag("!include", 1)


def test_refused_tag_on_a_mapping_or_sequence_constructs_nothing_inside() -> None:
    data = load_clean(
        """
        a: !!python/object:builtins.dict
          x: 1
        b: !custom [1, 2]
        """
    )
    assert data["a"] == UnsafeTag("!!python/object:builtins.dict", 1)
    assert data["b"] == UnsafeTag("!custom", 3)


def test_refused_tag_used_as_a_key_is_a_problem() -> None:
    data, problems = load("? !!python/name:os.system ''\n: 1\nok: 2\n")
    assert [p.line for p in problems] == [1]
    assert data == {"ok": 2}


def test_standard_tags_are_still_constructed() -> None:
    data = load_clean(
        """
        s: !!str 5
        i: !!int "7"
        f: !!float "2"
        b: !!binary YWJj
        n: !!null ''
        """
    )
    assert data == {"s": "5", "i": 7, "f": 2.0, "b": b"abc", "n": None}


def test_loading_never_executes_a_python_tag(tmp_path: Path) -> None:
    by_system = tmp_path / "by_system"
    by_open = tmp_path / "by_open"
    text = (
        f"a: !!python/object/apply:os.system ['touch {by_system}']\n"
        f"b: !!python/object/apply:builtins.open ['{by_open}', 'w']\n"
        f"c: !!python/object/new:builtins.open ['{by_open}', 'w']\n"
    )
    data, problems = load_yaml(text)
    assert problems == []
    assert [type(v) for v in data.values()] == [UnsafeTag, UnsafeTag, UnsafeTag]
    assert not by_system.exists()
    assert not by_open.exists()


def test_loading_does_not_change_the_global_safe_loader() -> None:
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load("a: !!python/name:os.system ''\n")
    assert type(yaml.safe_load("a: {b: 1}\n")["a"]) is dict


# --- scalars ----------------------------------------------------------------------------------

SCALARS: list[tuple[str, Any]] = [
    ("1", 1),
    ("-7", -7),
    ("0x1F", 31),
    ("1_000", 1000),
    ("1.5", 1.5),
    ("1.0e3", "1.0e3"),  # YAML 1.1 wants a signed exponent
    ("1.0e+3", 1000.0),
    (".inf", math.inf),
    ("true", True),
    ("False", False),
    ("yes", True),
    ("off", False),
    ("null", None),
    ("~", None),
    ("", None),
    ("'5'", "5"),
    ('"true"', "true"),
    ("hello world", "hello world"),
    ("course.*", "course.*"),
    ("2024-01-02", datetime.date(2024, 1, 2)),
    (
        "2024-01-02T03:04:05Z",
        datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    ),
]


@pytest.mark.parametrize(("scalar", "expected"), SCALARS, ids=[s or "empty" for s, _ in SCALARS])
def test_plain_scalars_are_typed_as_safe_load_types_them(scalar: str, expected: Any) -> None:
    text = f"v: {scalar}\n"
    value = load_clean(text)["v"]
    reference = yaml.safe_load(text)["v"]
    assert value == expected
    assert type(value) is type(expected)
    assert value == reference
    assert type(value) is type(reference)


def test_nan_scalar_is_a_float_nan() -> None:
    value = load_clean("v: .nan\n")["v"]
    assert isinstance(value, float)
    assert math.isnan(value)


def test_non_printable_character_is_reported_on_its_line() -> None:
    _, problems = load_yaml("a: 1\nb: 2\nc: \x07\n")
    assert [p.line for p in problems] == [3]


def test_a_tag_on_a_merged_mapping_is_reported() -> None:
    _, problems = load_yaml("a:\n  <<: !!python/object:os.system {x: 1}\n")
    assert len(problems) == 1
    assert "!!python/object:os.system" in problems[0].message


def test_explicit_keys_are_still_checked_for_duplicates_next_to_a_merge() -> None:
    _, problems = load_yaml("base: &b {x: 1}\nprod:\n  <<: *b\n  y: 1\n  y: 2\n")
    assert [p.line for p in problems] == [5]


# -- the line-lookup API ------------------------------------------------------------------------

NESTED = """
schemas:
  video.*:
    type: object
    required:
      - id
      - name
"""


def test_line_within_follows_keys_and_indexes_to_the_item() -> None:
    data = load_clean(NESTED)
    assert line_within(data, ["schemas", "video.*", "required", 1], None) == 6


def test_line_within_stops_at_the_deepest_item_found() -> None:
    data = load_clean(NESTED)
    assert line_within(data, ["schemas", "video.*", "missing", 0], None) == 3


def test_key_and_value_lines_of_a_block_mapping_differ() -> None:
    data = load_clean(NESTED)
    assert (key_line(data, "schemas"), value_line(data, "schemas")) == (1, 2)
    assert value_line(data["schemas"]["video.*"]["required"], 0) == 5


def test_missing_key_or_index_falls_back_to_the_container_line() -> None:
    data = load_clean(NESTED)
    inner = data["schemas"]["video.*"]
    assert (key_line(inner, "nope"), value_line(inner["required"], 9)) == (3, 5)


def test_plain_containers_have_no_lines() -> None:
    plain: dict[str, Any] = {"a": [1]}
    assert (key_line(plain, "a"), value_line(plain, "a"), line_of(plain, 7)) == (None, None, 7)
    assert line_within(plain, ["a", 0], None) is None
