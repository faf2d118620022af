"""Specification of checking option values against annotations (``eventrouter._typecheck``)."""

from __future__ import annotations

import collections.abc as cabc
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, Optional, Protocol

import pytest

from eventrouter._typecheck import (
    Mismatch,
    Parameters,
    coerce_text,
    describe_type,
    kind_of,
    mismatch,
    parse_bool,
    wants_callable,
)
from eventrouter.config.read import load_yaml


class Widget:
    pass


class _NotRuntimeCheckable(Protocol):
    def send(self) -> None: ...


# --- mismatch: which values satisfy which annotations -----------------------------------------

# (value, annotation, accepted?)
TABLE: list[tuple[Any, Any, bool]] = [
    # str
    ("x", str, True),
    ("", str, True),
    (1, str, False),
    (None, str, False),
    # int: a bool is not an integer here, nor is a float
    (3, int, True),
    (-3, int, True),
    (True, int, False),
    (3.0, int, False),
    ("3", int, False),
    # float: an int is a number, a bool is not
    (1.5, float, True),
    (2, float, True),
    (False, float, False),
    ("1.5", float, False),
    # bool: only true/false
    (True, bool, True),
    (False, bool, True),
    (1, bool, False),
    ("true", bool, False),
    # None and X | None
    (None, None, True),
    (None, type(None), True),
    (0, None, False),
    (None, int | None, True),
    (4, int | None, True),
    ("4", int | None, False),
    (None, Optional[str], True),  # noqa: UP045 (the typing spelling is checked too)
    (True, int | float, False),
    (True, int | bool, True),
    # list[str]: list or tuple, never a string, every item checked
    (["a", "b"], list[str], True),
    ([], list[str], True),
    (("a",), list[str], True),
    (["a", 1], list[str], False),
    ("ab", list[str], False),
    ({"a"}, list[str], False),
    ({"a": 1}, list[str], False),
    ([1, "x"], list[Any], True),
    ([1], list, True),
    # Sequence
    (["a"], Sequence[str], True),
    (("a", "b"), Sequence[str], True),
    ("ab", Sequence[str], False),
    (b"ab", Sequence[int], False),
    ([1], Sequence[str], False),
    # sets and iterables also accept sets
    ({"a"}, set[str], True),
    (["a"], set[str], True),
    (frozenset({1}), cabc.Iterable[int], True),
    ("a", cabc.Iterable[str], False),
    # tuples: fixed length or ``...``
    ((1, "a"), tuple[int, str], True),
    ([1, "a"], tuple[int, str], True),
    ((1, "a", 2), tuple[int, str], False),
    (("a", 1), tuple[int, str], False),
    ((1, 2, 3), tuple[int, ...], True),
    ((1, "x"), tuple[int, ...], False),
    # Mapping / dict[str, Any]
    ({"a": 1}, Mapping[str, Any], True),
    ({}, dict[str, Any], True),
    ({"a": object()}, dict[str, Any], True),
    ({1: "a"}, dict[str, Any], False),
    ([("a", 1)], dict[str, Any], False),
    ("a", Mapping[str, Any], False),
    ({"a": 1}, dict[str, int], True),
    ({"a": "1"}, dict[str, int], False),
    ({"a": 1}, dict, True),
    # Literal: equal value of the same type
    ("a", Literal["a", "b"], True),
    ("c", Literal["a", "b"], False),
    (1, Literal[1, 2], True),
    (True, Literal[1, 2], False),
    (1.0, Literal[1, 2], False),
    (None, Literal["a"] | None, True),
    # Callable
    (len, Callable[..., Any], True),
    (Widget, Callable[[], Widget], True),
    (lambda event: event, cabc.Callable, True),
    ("os.path.join", Callable[..., Any], False),
    (None, Callable[..., Any] | None, True),
    # Any / object accept everything
    (object(), Any, True),
    (None, Any, True),
    ([1, {"x": None}], object, True),
    # Annotated is checked by its first argument
    (1, Annotated[int, "port"], True),
    ("1", Annotated[int, "port"], False),
    # plain classes by isinstance; unknown shapes are accepted
    (Widget(), Widget, True),
    ("w", Widget, False),
    ("anything", _NotRuntimeCheckable, True),
    ("anything", type[Widget], True),
    ("anything", "ForwardRefString", True),
    ("anything", typing.TypeVar("T"), True),
]


@pytest.mark.parametrize(
    ("value", "annotation", "accepted"),
    TABLE,
    ids=[f"{i}-{kind_of(v)}-{describe_type(t)}" for i, (v, t, _) in enumerate(TABLE)],
)
def test_mismatch_accepts_exactly_the_values_the_annotation_allows(
    value: Any, annotation: Any, accepted: bool
) -> None:
    result = mismatch(value, annotation)
    if accepted:
        assert result is None
    else:
        assert isinstance(result, Mismatch)


def test_mismatch_at_top_level_has_an_empty_where_and_the_description() -> None:
    assert mismatch("3", int) == Mismatch("", "an integer", "3")


def test_bad_list_item_is_reported_at_its_position() -> None:
    assert mismatch(["a", "b", 3], list[str]) == Mismatch("[2]", "a string", 3)


def test_bad_mapping_value_is_reported_at_its_key() -> None:
    assert mismatch({"port": "x"}, dict[str, int]) == Mismatch(".port", "an integer", "x")


def test_bad_mapping_key_is_reported_as_a_key() -> None:
    assert mismatch({1: "a"}, dict[str, str]) == Mismatch(".1", "a key that is a string", 1)


def test_position_is_reported_through_nested_containers() -> None:
    value = {"a": {"b": [1, "x"]}}
    annotation = dict[str, dict[str, list[int]]]
    assert mismatch(value, annotation) == Mismatch(".a.b[1]", "an integer", "x")


def test_optional_container_reports_the_position_inside_the_container() -> None:
    assert mismatch(["a", 2], list[str] | None) == Mismatch("[1]", "a string", 2)


def test_union_of_scalars_reports_the_whole_union() -> None:
    assert mismatch([1], int | str) == Mismatch("", "an integer or a string", [1])


def test_fixed_length_tuple_reports_the_expected_length() -> None:
    assert mismatch([1], tuple[int, str]) == Mismatch("", "a list of 2 items", [1])


def test_values_loaded_from_yaml_are_checked_like_plain_containers() -> None:
    data, problems = load_yaml("allow: [a, b]\noptions: {retries: 3}\n")
    assert problems == []
    assert mismatch(data["allow"], list[str]) is None
    assert mismatch(data["options"], Mapping[str, int]) is None
    assert mismatch(data, dict[str, Any]) is None


# --- describe_type / kind_of / wants_callable -------------------------------------------------

DESCRIPTIONS: list[tuple[Any, str]] = [
    (str, "a string"),
    (int, "an integer"),
    (float, "a number"),
    (bool, "true or false"),
    (None, "null"),
    (type(None), "null"),
    (int | None, "an integer or null"),
    (list[str], "a list of strings"),
    (list[int], "a list of integers"),
    (list[Any], "a list"),
    (Sequence[str], "a list of strings"),
    (tuple[int, ...], "a list of integers"),
    (dict[str, Any], "a mapping"),
    (Mapping[str, int], "a mapping"),
    (Literal["a", 1], "one of 'a', 1"),
    (Callable[..., Any], "a callable (a dotted path to it)"),
    (Annotated[int, "x"], "an integer"),
    (Widget, "a Widget"),
]


@pytest.mark.parametrize(("annotation", "text"), DESCRIPTIONS, ids=[t for _, t in DESCRIPTIONS])
def test_describe_gives_short_english(annotation: Any, text: str) -> None:
    assert describe_type(annotation) == text


def test_describe_pluralises_a_nested_list() -> None:
    assert describe_type(list[list[str]]) == "a list of lists of strings"


KINDS: list[tuple[Any, str]] = [
    (None, "null"),
    (True, "a boolean"),
    (3, "an integer"),
    (1.5, "a number"),
    ("x", "a string"),
    ({"a": 1}, "a mapping"),
    ([1], "a list"),
    ((1,), "a list"),
    (Widget(), "a Widget"),
]


@pytest.mark.parametrize(("value", "text"), KINDS, ids=[t for _, t in KINDS])
def test_kind_of_names_the_type_of_a_value(value: Any, text: str) -> None:
    assert kind_of(value) == text


@pytest.mark.parametrize(
    ("annotation", "wanted"),
    [
        (Callable[..., Any], True),
        (cabc.Callable, True),
        (typing.Callable, True),  # the typing spelling too
        (Callable[[dict[str, Any]], None] | None, True),
        (str | Callable[..., Any], True),
        (str, False),
        (str | None, False),
        (list[Callable[..., Any]], False),
        (Any, False),
    ],
)
def test_wants_callable_when_the_annotation_or_one_arm_is_callable(
    annotation: Any, wanted: bool
) -> None:
    assert wants_callable(annotation) is wanted


# --- parse_bool -------------------------------------------------------------------------------

BOOLS: list[tuple[str, bool | None]] = [
    ("true", True),
    ("TRUE", True),
    ("Yes", True),
    ("on", True),
    ("1", True),
    ("  true \n", True),
    ("false", False),
    ("No", False),
    ("OFF", False),
    ("0", False),
    ("", False),
    ("2", None),
    ("y", None),
    ("t", None),
    ("enabled", None),
    ("null", None),
]


@pytest.mark.parametrize(("text", "expected"), BOOLS, ids=[repr(t) for t, _ in BOOLS])
def test_parse_bool_knows_the_usual_words(text: str, expected: bool | None) -> None:
    assert parse_bool(text) is expected


# --- coerce_text ------------------------------------------------------------------------------

COERCIONS: list[tuple[str, Any, Any]] = [
    ("42", int, 42),
    (" 42 ", int, 42),
    ("-1", int | None, -1),
    ("1.5", float, 1.5),
    ("3", float, 3),  # an integer is tried first, and a float annotation accepts it
    ("true", bool, True),
    ("off", bool, False),
    ("1", bool, True),
    ("0", bool, False),
    ("1", int | bool, 1),
    ("null", int | None, None),
    ("~", float | None, None),
    ("None", bool | None, None),
    ("7", Literal[7, 8], 7),
    ("5", str, "5"),  # a string is accepted as it is
    ("5", str | int, "5"),
    ("5", Any, "5"),
]


@pytest.mark.parametrize(
    ("text", "annotation", "expected"),
    COERCIONS,
    ids=[f"{t!r}-{describe_type(a)}" for t, a, _ in COERCIONS],
)
def test_coerce_text_converts_to_the_first_type_the_annotation_accepts(
    text: str, annotation: Any, expected: Any
) -> None:
    result = coerce_text(text, annotation)
    assert result == expected
    assert type(result) is type(expected)


FAILURES: list[tuple[str, Any]] = [
    ("abc", int),
    ("1.5", int),
    ("1e3x", float),
    ("yes", int),
    ("maybe", bool),
    ("", bool),  # parse_bool says False, but an empty text is not a boolean value
    ("2", bool),
    ("null", int),
    ("9", Literal[7, 8]),
    ("5", list[int]),
]


@pytest.mark.parametrize(
    ("text", "annotation"), FAILURES, ids=[f"{t!r}-{describe_type(a)}" for t, a in FAILURES]
)
def test_coerce_text_returns_the_text_unchanged_when_nothing_fits(
    text: str, annotation: Any
) -> None:
    result = coerce_text(text, annotation)
    assert result == text
    assert type(result) is str
    assert mismatch(result, annotation) is not None  # so the validator still reports it


def test_coerce_text_accepts_special_floats() -> None:
    result = coerce_text("inf", float)
    assert isinstance(result, float)
    assert math.isinf(result)


# --- Parameters -------------------------------------------------------------------------------


class _Backend:
    def __init__(
        self,
        host: str,
        port: int = 27017,
        *args: Any,
        collection: str,
        tls: bool = False,
        **extra: Any,
    ) -> None:
        pass


class _Closed:
    def __init__(self, name: str, /, level: int = 0) -> None:
        pass


def _processor(event: dict[str, Any], *, drop: bool = False) -> dict[str, Any]:
    return event


def _unresolvable(target: UndefinedName, count: int = 1) -> None:  # type: ignore[name-defined]  # noqa: F821
    pass


def test_parameters_of_a_class_lists_keyword_names_without_self() -> None:
    params = Parameters.of(_Backend)
    assert params is not None
    assert params.names == ("host", "port", "collection", "tls")
    assert params.required == ("host", "collection")
    assert params.any_keyword is True


def test_parameters_of_a_class_resolves_constructor_hints() -> None:
    params = Parameters.of(_Backend)
    assert params is not None
    assert params.hints["host"] is str
    assert params.hints["port"] is int
    assert params.hints["tls"] is bool


def test_parameters_skip_positional_only_and_star_args() -> None:
    params = Parameters.of(_Closed)
    assert params is not None
    assert params.names == ("level",)
    assert params.required == ()
    assert params.any_keyword is False


def test_parameters_of_a_function() -> None:
    params = Parameters.of(_processor)
    assert params is not None
    assert params.names == ("event", "drop")
    assert params.required == ("event",)
    assert params.hints["drop"] is bool


def test_parameters_with_unresolvable_hints_keep_the_names_only() -> None:
    params = Parameters.of(_unresolvable)
    assert params is not None
    assert params.names == ("target", "count")
    assert params.required == ("target",)
    assert params.hints == {}


def test_parameters_of_something_without_a_signature_is_none() -> None:
    assert Parameters.of(42) is None
