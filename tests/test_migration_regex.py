"""RegexFilter's expressions, translated to ``re:`` name patterns, match exactly the names
event-tracking's own ``RegexFilter`` (``re.match``) matched, side by side."""

from __future__ import annotations

from typing import Any

import pytest

from eventrouter.config import read_config
from eventrouter.patterns import PatternSet

ENGINE = "eventtracking.processors.regex_filter.RegexFilter"

EXPRESSIONS = [
    r"a$",
    r"edx\.bi",
    r"(?i)edx\.VIDEO",
    "(?x) edx \\. course  # the course events\n  \\. (enrolled|left)  # verbose, commented",
    "(?ix)problem\\.  # any problem event",
    r"(?s)x.y",
    r"(?m)^z$",
    r"b|c\.d",
]

NAMES = [
    "a",
    "a\n",
    "a\nb",
    "ab",
    "edx.bi.x",
    "x.edx.bi",
    "EDX.video.played",
    "edx.course.enrolled",
    "edx.course.enrolled.late",
    "edx.course.viewed",
    "Problem.check",
    "x\ny",
    "z\nq",
    "b.anything",
    "c.d",
    "c.e",
    "",
]


def translated(expression: str) -> Any:
    tree = read_config(
        {
            "EVENT_TRACKING_BACKENDS": {
                "l": {"ENGINE": "eventrouter.backends.memory.MemoryBackend"}
            },
            "EVENT_TRACKING_PROCESSORS": [
                {"ENGINE": ENGINE, "OPTIONS": {"regular_expressions": [expression]}}
            ],
        }
    )
    return tree.processors[0].options["allow"]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_each_expression_matches_the_names_event_tracking_matched(expression: str) -> None:
    regex_filter = pytest.importorskip("eventtracking.processors.regex_filter")
    exit_type = pytest.importorskip("eventtracking.processors.exceptions").EventEmissionExit
    theirs = regex_filter.RegexFilter(regular_expressions=[expression])
    ours = PatternSet(translated(expression))
    for name in NAMES:
        try:
            theirs({"name": name})
            kept = True
        except exit_type:
            kept = False
        assert ours.matches(name) is kept, (expression, name)
