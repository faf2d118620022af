"""Name patterns: exact, AMQP topic wildcards, `re:` expressions, and compiled pattern sets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventrouter.patterns import NamePattern, PatternSet

TABLE = [
    # exact
    ("video.played", "video.played", True),
    ("video.played", "video.played.x", False),
    ("video.played", "video", False),
    ("video", "video", True),
    ("a..b", "a..b", True),
    ("a..b", "a.b", False),
    # * : exactly one word
    ("video.*", "video.played", True),
    ("video.*", "video", False),
    ("video.*", "video.a.b", False),
    ("video.*", "video.", True),  # one empty word
    ("*", "video", True),
    ("*", "video.played", False),
    ("*.played", "video.played", True),
    ("a.*.b", "a.x.b", True),
    ("a.*.b", "a..b", True),
    ("a.*.b", "a.b", False),
    ("*.*", "a.b", True),
    ("*.*", "a", False),
    # # : zero or more words
    ("#", "video", True),
    ("#", "a.b.c", True),
    ("#", "", True),
    ("problem.#", "problem", True),
    ("problem.#", "problem.check", True),
    ("problem.#", "problem.a.b", True),
    ("problem.#", "problems", False),
    ("problem.#", "x.problem", False),
    ("#.graded", "graded", True),
    ("#.graded", "problem.graded", True),
    ("#.graded", "a.b.graded", True),
    ("#.graded", "ungraded", False),
    ("#.graded", "graded.x", False),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "ab", False),
    ("a.#.b", "a.x.c", False),
    ("#.#", "a", True),
    ("#.*", "a", True),
    ("#.*", "a.b.c", True),
    ("*.#", "a", True),
    # * inside a word
    ("video.play*", "video.played", True),
    ("video.play*", "video.play", True),
    ("video.play*", "video.play.x", False),
    ("*password*", "new_password_hash", True),
    ("*password*", "pass", False),
    # literal characters
    ("a#b", "a#b", True),
    ("a#b", "ab", False),
    ("a+b", "a+b", True),
    ("a+b", "aab", False),
    ("a?b", "axb", False),
    ("[a]", "[a]", True),
    # re: must match the whole name
    (r"re:video\..*", "video.played", True),
    (r"re:video\..*", "xvideo.played", False),
    ("re:video", "video.played", False),
    ("re:.*played", "video.played", True),
    ("re:(video|audio)\\.played", "audio.played", True),
    ("re:(?:edx\\.).*", "edx.ui", True),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), TABLE)
def test_pattern_table(pattern: str, name: str, expected: bool) -> None:
    assert NamePattern(pattern).matches(name) is expected


@pytest.mark.parametrize(("pattern", "name", "expected"), TABLE)
def test_pattern_set_of_one_agrees_with_the_table(pattern: str, name: str, expected: bool) -> None:
    assert PatternSet([pattern]).matches(name) is expected


@pytest.mark.parametrize(
    ("pattern", "kind"),
    [("a.b", "exact"), ("a.*", "topic"), ("a.#", "topic"), ("a*", "topic"), ("re:a", "regex")],
)
def test_pattern_kind(pattern: str, kind: str) -> None:
    assert NamePattern(pattern).kind == kind


def test_an_invalid_regex_raises_value_error_naming_the_pattern() -> None:
    with pytest.raises(ValueError, match=r"re:\(unclosed"):
        NamePattern("re:(unclosed")


@pytest.mark.parametrize("pattern", ["", "re:"])
def test_an_empty_pattern_is_a_value_error(pattern: str) -> None:
    with pytest.raises(ValueError, match="invalid name pattern"):
        NamePattern(pattern)


def test_a_non_string_pattern_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        NamePattern(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", [None, 3, ["video.played"]])
def test_a_non_string_name_never_matches(name: object) -> None:
    assert not NamePattern("#").matches(name)
    assert not PatternSet(["#", "re:.*"]).matches(name)


def test_ignore_case_applies_to_every_kind() -> None:
    patterns = PatternSet(["Video.Played", "problem.*", "re:audio"], ignore_case=True)
    assert patterns.matches("video.played")
    assert patterns.matches("PROBLEM.CHECK")
    assert patterns.matches("Audio")


def test_matching_is_case_sensitive_by_default() -> None:
    assert not PatternSet(["video.played", "problem.*"]).matches("Video.played")
    assert not PatternSet(["problem.*"]).matches("Problem.check")


def test_pattern_set_matches_when_any_pattern_does() -> None:
    patterns = PatternSet(["video.played", "problem.#", "re:audio\\.[a-z]+"])
    assert patterns.matches("video.played")
    assert patterns.matches("problem.check.x")
    assert patterns.matches("audio.paused")
    assert not patterns.matches("audio.1")
    assert not patterns.matches("video.paused")


def test_an_empty_pattern_set_matches_nothing() -> None:
    assert not PatternSet([]).matches("anything")


def test_a_bare_string_instead_of_a_list_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="single string"):
        PatternSet("video.*")


def test_an_invalid_pattern_in_a_set_is_named() -> None:
    with pytest.raises(ValueError, match=r"re:\["):
        PatternSet(["ok", "re:["])


def test_regex_back_references_keep_their_meaning_in_a_set() -> None:
    patterns = PatternSet(["re:(x)y", r"re:(a)\1"])
    assert patterns.matches("aa")
    assert not patterns.matches("ax")


def test_the_same_group_name_in_two_regexes_is_allowed() -> None:
    assert PatternSet(["re:(?P<w>a)", "re:(?P<w>b)"]).matches("b")


def test_answers_stay_right_when_the_cache_is_full() -> None:
    patterns = PatternSet(["a.*"], cache_size=2)
    names = ["a.1", "b.1", "a.2", "b.2", "a.1", "b.1"]
    assert [patterns.matches(n) for n in names] == [True, False, True, False, True, False]


def test_answers_are_right_without_a_cache() -> None:
    patterns = PatternSet(["a.*"], cache_size=0)
    assert [patterns.matches(n) for n in ["a.1", "a.1", "b"]] == [True, True, False]


# Property: topic patterns agree with a direct word-by-word definition of AMQP matching.


def reference_match(pattern: list[str], name: list[str]) -> bool:
    if not pattern:
        return not name
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(reference_match(rest, name[i:]) for i in range(len(name) + 1))
    if not name:
        return False
    return (head == "*" or head == name[0]) and reference_match(rest, name[1:])


WORDS = st.sampled_from(["a", "b", ""])


@pytest.mark.slow
@given(
    st.lists(st.sampled_from(["a", "b", "", "*", "#"]), min_size=1, max_size=5),
    st.lists(WORDS, min_size=1, max_size=5),
)
def test_topic_patterns_agree_with_word_by_word_matching(
    pattern_words: list[str], name_words: list[str]
) -> None:
    pattern, name = ".".join(pattern_words), ".".join(name_words)
    if pattern == "":
        return  # the empty pattern is refused (tested above)
    expected = reference_match(pattern_words, name_words)
    assert NamePattern(pattern).matches(name) is expected, (pattern, name)


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("*password*", "user.password", True),
        ("*password*", "password", True),
        ("a.*", "a.b.c", True),
        ("#", "#", True),
        ("#", "anything", False),
        ("api_key", "api_key", True),
        ("api_key", "api.key", False),
    ],
)
def test_key_patterns_treat_dots_as_ordinary_characters(
    pattern: str, key: str, expected: bool
) -> None:
    assert NamePattern(pattern, dotted=False).matches(key) is expected
    assert PatternSet([pattern], dotted=False).matches(key) is expected
