"""NameFilter and the composable predicates (NameMatches, Field*, &, |, ^, ~)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from eventrouter.backends.memory import MemoryBackend
from eventrouter.backends.routing import RoutingBackend
from eventrouter.errors import EventEmissionExit
from eventrouter.processors import (
    And,
    FieldEquals,
    FieldExists,
    FieldMatches,
    NameFilter,
    NameMatches,
    Not,
    Or,
    Predicate,
)


def ev(name: Any = "video.played", **data: Any) -> dict[str, Any]:
    return {"id": "1", "name": name, "data": data, "context": {"user_id": 7}}


def kept(processor: Any, event: dict[str, Any]) -> bool:
    try:
        processor(event)
    except EventEmissionExit:
        return False
    return True


# NameFilter


def test_allow_keeps_matching_names_only() -> None:
    f = NameFilter(allow=["video.*", "problem.#"])
    assert [kept(f, ev(n)) for n in ["video.played", "problem.check.x", "page.view"]] == [
        True,
        True,
        False,
    ]


def test_block_vetoes_matching_names_only() -> None:
    f = NameFilter(block=["#.graded"])
    assert [kept(f, ev(n)) for n in ["problem.graded", "graded", "video.played"]] == [
        False,
        False,
        True,
    ]


def test_block_wins_over_allow() -> None:
    f = NameFilter(allow=["problem.#"], block=["problem.secret"])
    assert kept(f, ev("problem.check"))
    assert not kept(f, ev("problem.secret"))


def test_no_options_allow_everything() -> None:
    assert kept(NameFilter(), ev("anything.at.all"))


def test_an_empty_allow_list_allows_nothing() -> None:
    assert not kept(NameFilter(allow=[]), ev("video.played"))


@pytest.mark.parametrize("option", ["allow", "block"])
def test_a_bare_string_is_a_type_error(option: str) -> None:
    options: dict[str, Any] = {option: "video.*"}
    with pytest.raises(TypeError, match=r"\['video\.\*'\]"):
        NameFilter(**options)


def test_an_invalid_pattern_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"re:\(oops"):
        NameFilter(allow=["ok", "re:(oops"])


def test_an_event_without_a_name_is_vetoed_by_an_allow_list() -> None:
    event = ev()
    del event["name"]
    assert not kept(NameFilter(allow=["#"]), event)


def test_an_event_without_a_name_passes_a_block_list() -> None:
    assert kept(NameFilter(block=["#"]), ev(name=None))


def test_a_kept_event_is_returned_unchanged() -> None:
    event = ev()
    assert NameFilter(allow=["video.*"])(event) is event


def test_name_filter_in_a_router_vetoes_only_that_branch() -> None:
    filtered, unfiltered = MemoryBackend(), MemoryBackend()
    root = RoutingBackend(
        backends={
            "a": RoutingBackend(backends={"m": filtered}, processors=[NameFilter(allow=["a.*"])]),
            "b": unfiltered,
        }
    )
    root.send(ev("a.x"))
    root.send(ev("b.x"))
    assert filtered.names() == ["a.x"]
    assert unfiltered.names() == ["a.x", "b.x"]


# Combinators: truth tables over two real predicates.

A = FieldEquals("data.a", True)
B = FieldEquals("data.b", True)
CASES = list(itertools.product([False, True], repeat=2))


@pytest.mark.parametrize(("a", "b"), CASES)
def test_and_truth_table(a: bool, b: bool) -> None:
    assert (A & B).test(ev(a=a, b=b)) is (a and b)


@pytest.mark.parametrize(("a", "b"), CASES)
def test_or_truth_table(a: bool, b: bool) -> None:
    assert (A | B).test(ev(a=a, b=b)) is (a or b)


@pytest.mark.parametrize(("a", "b"), CASES)
def test_xor_truth_table(a: bool, b: bool) -> None:
    assert (A ^ B).test(ev(a=a, b=b)) is (a != b)


@pytest.mark.parametrize("a", [False, True])
def test_not_truth_table(a: bool) -> None:
    assert (~A).test(ev(a=a)) is (not a)


@pytest.mark.parametrize(("a", "b"), CASES)
def test_a_combination_vetoes_exactly_when_its_test_is_false(a: bool, b: bool) -> None:
    predicate = (A & ~B) | (~A & B)
    assert kept(predicate, ev(a=a, b=b)) is (a != b)


def test_and_of_ands_is_flattened() -> None:
    c = FieldExists("data.c")
    combined = (A & B) & c
    assert isinstance(combined, And)
    assert combined.parts == (A, B, c)


def test_or_of_ors_is_flattened() -> None:
    c = FieldExists("data.c")
    combined = A | (B | c)
    assert isinstance(combined, Or)
    assert combined.parts == (A, B, c)


def test_double_negation_is_the_predicate_itself() -> None:
    assert ~~A is A


def test_and_stops_at_the_first_false() -> None:
    class Boom(Predicate):
        def test(self, event: dict[str, Any]) -> bool:
            raise AssertionError("evaluated")

    assert not (A & Boom()).test(ev(a=False))


def test_combining_with_a_non_predicate_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        A & (lambda event: True)  # type: ignore[operator]
    with pytest.raises(TypeError):
        Not("x")  # type: ignore[arg-type]


def test_name_filter_composes_with_predicates() -> None:
    predicate = NameFilter(allow=["video.*"]) & FieldEquals("context.user_id", 7)
    assert predicate.test(ev("video.played"))
    assert not predicate.test(ev("page.view"))


# Predicates


def test_name_matches_any_of_its_patterns() -> None:
    predicate = NameMatches("video.*", "re:page\\..*")
    assert predicate.test(ev("page.view"))
    assert predicate.test(ev("video.played"))
    assert not predicate.test(ev("problem.check"))


def test_name_matches_needs_a_pattern() -> None:
    with pytest.raises(ValueError):
        NameMatches()


def test_name_matches_refuses_a_list_argument() -> None:
    with pytest.raises(TypeError):
        NameMatches(["video.*"])  # type: ignore[arg-type]


def test_field_equals_compares_the_value_at_the_path() -> None:
    assert FieldEquals("context.user_id", 7).test(ev())
    assert not FieldEquals("context.user_id", 8).test(ev())


def test_field_equals_never_confuses_booleans_and_numbers() -> None:
    assert not FieldEquals("data.x", 1).test(ev(x=True))
    assert not FieldEquals("data.x", True).test(ev(x=1))
    assert FieldEquals("data.x", 1.0).test(ev(x=1))


def test_a_missing_field_does_not_equal_none() -> None:
    assert not FieldEquals("data.x", None).test(ev())
    assert FieldEquals("data.x", None).test(ev(x=None))


def test_field_exists_counts_a_present_none() -> None:
    assert FieldExists("data.x").test(ev(x=None))
    assert not FieldExists("data.y").test(ev(x=None))


def test_field_exists_reaches_into_lists() -> None:
    assert FieldExists("data.items.0.id").test(ev(items=[{"id": 1}]))
    assert not FieldExists("data.items.1.id").test(ev(items=[{"id": 1}]))


def test_field_matches_uses_the_name_pattern_syntax() -> None:
    assert FieldMatches("data.course", "course-v1:edX+*").test(ev(course="course-v1:edX+DemoX"))
    assert FieldMatches("data.org", "re:ed[xX]").test(ev(org="edX"))
    assert not FieldMatches("data.org", "re:ed").test(ev(org="edX"))


def test_field_matches_is_false_for_a_non_string_value() -> None:
    assert not FieldMatches("data.n", "#").test(ev(n=3))
    assert not FieldMatches("data.n", "#").test(ev())


def test_an_invalid_path_is_a_value_error_at_construction() -> None:
    with pytest.raises(ValueError, match="invalid path"):
        FieldExists("data..x")


def test_a_predicate_used_as_a_processor_returns_the_event() -> None:
    event = ev()
    assert FieldExists("context.user_id")(event) is event
