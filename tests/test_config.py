"""Specification of routing configurations: loading, validation, interpolation, secrets."""

from __future__ import annotations

import importlib
import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventrouter.backends.memory import MemoryBackend
from eventrouter.backends.routing import RoutingBackend
from eventrouter.config import ConfigTree, load, read_config
from eventrouter.errors import ConfigError, ConfigIssue


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def issues_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[ConfigIssue]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        read_config(path, env=env or {})
    return list(caught.value.issues)


# Each case: YAML text, expected line, expected dotted path, a fragment of the message.
BAD_CONFIGS: list[tuple[str, str, int, str, str]] = [
    (
        "yaml_syntax_error",
        """
        backends:
          archive: {class: memory
        processors: []
        """,
        3,
        "",
        "YAML syntax error",
    ),
    (
        "unknown_top_level_key",
        """
        backends: {a: memory}
        procesors: []
        """,
        2,
        "procesors",
        "did you mean 'processors'",
    ),
    (
        "unknown_backend_class",
        """
        backends:
          archive:
            class: memry
        """,
        3,
        "backends.archive.class",
        "did you mean 'memory'",
    ),
    (
        "unknown_processor_short_name",
        """
        processors:
          - redactt
        backends: {a: memory}
        """,
        2,
        "processors[0]",
        "did you mean 'redact'",
    ),
    (
        "unknown_option_name",
        """
        backends:
          archive:
            class: memory
            options:
              max_event: 3
        """,
        5,
        "backends.archive.options.max_event",
        "did you mean 'max_events'",
    ),
    (
        "wrong_option_type",
        """
        backends:
          archive:
            class: memory
            options: {max_events: lots}
        """,
        4,
        "backends.archive.options.max_events",
        "expected an integer or null, got a string ('lots')",
    ),
    (
        "bare_string_where_list_expected",
        """
        backends:
          analytics:
            processors:
              - class: name_filter
                options:
                  allow: "video.*"
            backends: {m: memory}
        """,
        6,
        "backends.analytics.processors[0].options.allow",
        "expected a list of strings",
    ),
    (
        "wrong_item_type_in_list",
        """
        processors:
          - class: name_filter
            options:
              allow:
                - video.*
                - 42
        backends: {a: memory}
        """,
        6,
        "processors[0].options.allow[1]",
        "expected a string",
    ),
    (
        "options_not_a_mapping",
        """
        backends:
          archive:
            class: memory
            options: [max_events, 3]
        """,
        4,
        "backends.archive.options",
        "`options` must be a mapping",
    ),
    (
        "backends_not_a_mapping",
        """
        backends:
          - memory
        """,
        2,
        "backends",
        "`backends` must be a mapping",
    ),
    (
        "processors_not_a_list",
        """
        processors:
          class: redact
        backends: {a: memory}
        """,
        2,
        "processors",
        "`processors` must be a list",
    ),
    (
        "unknown_node_key",
        """
        backends:
          archive:
            class: memory
            option: {}
        """,
        4,
        "backends.archive.option",
        "did you mean 'options'",
    ),
    (
        "missing_class",
        """
        backends:
          archive:
            options: {max_events: 3}
        """,
        3,
        "backends.archive",
        "`class` is missing",
    ),
    (
        "missing_required_option",
        """
        processors:
          - class: sample
            options: {key: context.user_id}
        backends: {a: memory}
        """,
        3,
        "processors[0].options",
        "needs the option 'rate'",
    ),
    (
        "python_tag_refused",
        """
        backends:
          archive:
            class: memory
            options:
              max_events: !!python/object/apply:os.system ["echo owned"]
        """,
        5,
        "backends.archive.options.max_events",
        "!!python/object/apply:os.system is not allowed",
    ),
    (
        "missing_environment_variable",
        """
        backends:
          archive:
            class: jsonlog
            options: {path: "${ARCHIVE_PATH}"}
        """,
        4,
        "backends.archive.options.path",
        "ARCHIVE_PATH is not set",
    ),
    (
        "children_on_a_non_router",
        """
        backends:
          archive:
            class: memory
            backends: {x: memory}
        """,
        4,
        "backends.archive.backends",
        "only allowed on a router",
    ),
    (
        "processor_name_used_as_backend",
        """
        backends:
          archive: redact
        """,
        2,
        "backends.archive",
        "'redact' is a processor, not a backend",
    ),
    (
        "dotted_path_with_typo",
        """
        backends:
          archive:
            class: eventrouter.backends.memory.MemoryBackand
        """,
        3,
        "backends.archive.class",
        "did you mean 'MemoryBackend'",
    ),
    (
        "enabled_not_a_boolean",
        """
        backends:
          archive:
            class: memory
            enabled: sometimes
        """,
        4,
        "backends.archive.enabled",
        "expected true or false",
    ),
    (
        "duplicate_key",
        """
        backends:
          archive: memory
          archive: memory
        """,
        3,
        "",
        "duplicate key 'archive'",
    ),
    (
        "literal_option_out_of_range",
        """
        processors:
          - class: schema
            options:
              schemas: {}
              on_invalid: explode
        backends: {a: memory}
        """,
        5,
        "processors[0].options.on_invalid",
        "one of 'drop', 'tag', 'pass'",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "path", "message"),
    [case[1:] for case in BAD_CONFIGS],
    ids=[case[0] for case in BAD_CONFIGS],
)
def test_bad_config_is_reported_with_file_line_and_path(
    tmp_path: Path, text: str, line: int, path: str, message: str
) -> None:
    issues = issues_of(tmp_path, text)
    matching = [i for i in issues if message in i.message]
    assert matching, f"no issue mentions {message!r}: {issues}"
    issue = matching[0]
    assert (issue.line, issue.path) == (line, path)
    assert issue.file == str(tmp_path / "routing.yaml")
    rendered = str(issue)
    assert f"routing.yaml:{line}" in rendered
    assert path in rendered


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        """
        processors:
          - redactt
        backends:
          archive: {class: memry}
          other:
            class: memory
            options: {max_event: 3}
          third: {class: jsonlog, options: {path: "${NOPE}"}}
        """,
    )
    assert [i.line for i in issues] == [2, 4, 7, 8]


def test_error_message_lists_issues_in_line_order(tmp_path: Path) -> None:
    path = write(tmp_path, "backends:\n  b: {class: memry}\n  a: {class: memmory}\n")
    with pytest.raises(ConfigError) as caught:
        read_config(path, env={})
    lines = str(caught.value).splitlines()
    assert lines[0] == "2 problems in the routing configuration:"
    assert ":2 at backends.b.class" in lines[1]
    assert ":3 at backends.a.class" in lines[2]


def test_nothing_is_built_when_any_node_is_invalid(tmp_path: Path) -> None:
    out = tmp_path / "out" / "archive.jsonl"
    path = write(
        tmp_path,
        f"""
        backends:
          archive: {{class: jsonlog, options: {{path: "{out}"}}}}
          broken: {{class: memry}}
        """,
    )
    with pytest.raises(ConfigError):
        load(path, env={})
    assert not out.parent.exists()


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    issues = issues_of(tmp_path, "# nothing\n")
    assert "empty" in issues[0].message


def test_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        read_config(tmp_path / "nope.yaml")
    assert caught.value.issues[0].file == str(tmp_path / "nope.yaml")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    issues = issues_of(tmp_path, "- memory\n")
    assert "must be a mapping" in issues[0].message


def test_python_name_tag_is_refused_anywhere(tmp_path: Path) -> None:
    issues = issues_of(tmp_path, "backends: !!python/name:os.system\n")
    assert "!!python/name:os.system is not allowed" in issues[0].message


# -- good configurations ------------------------------------------------------------------


def test_router_tree_is_built_with_processors_and_backends(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        processors:
          - class: name_filter
            options: {allow: ["video.*"]}
        backends:
          archive: {class: memory}
          analytics:
            processors: [{class: redact, options: {fields: [context.ip]}}]
            backends:
              inbox: memory
        """,
    )
    tracker = load(path, env={})
    tracker.emit("video.played", {"id": 1})
    tracker.emit("problem.checked", {})
    with tracker.context("request", {"ip": "203.0.113.9"}):
        tracker.emit("video.paused", {})
    archive = tracker.get_backend("archive")
    analytics = tracker.get_backend("analytics")
    assert isinstance(archive, MemoryBackend)
    assert isinstance(analytics, RoutingBackend)
    inbox = analytics.backends["inbox"]
    assert isinstance(inbox, MemoryBackend)
    assert [e["name"] for e in archive.events] == ["video.played", "video.paused"]
    assert inbox.events[1]["context"]["ip"] == "[REDACTED]"
    assert archive.events[1]["context"]["ip"] == "203.0.113.9"


def test_mapping_is_accepted_as_well_as_a_file() -> None:
    tracker = load({"backends": {"mem": {"class": "memory", "options": {"max_events": 2}}}})
    backend = tracker.get_backend("mem")
    assert isinstance(backend, MemoryBackend)
    assert backend.max_events == 2


def test_mapping_errors_have_paths_but_no_file_or_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"backends": {"mem": {"class": "memory", "options": {"max": 2}}}})
    (issue,) = caught.value.issues
    assert (issue.file, issue.line, issue.path) == (None, None, "backends.mem.options.max")


def test_a_mapping_without_backends_gets_no_made_up_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"processors": []})
    (issue,) = caught.value.issues
    assert (issue.file, issue.line) == (None, None)
    assert str(issue).startswith("<config>: `backends` is missing")


def test_a_file_without_backends_names_the_line_its_settings_start_on(tmp_path: Path) -> None:
    (issue,) = issues_of(tmp_path, "# routing\n\nprocessors: []\n")
    assert (issue.line, issue.path) == (3, "")
    assert "`backends` is missing" in issue.message


USER_MODULE = """
def add_site(event):
    event["context"]["site"] = "example.org"



class EchoingBackend:
    def __init__(self, api_token: str) -> None:
        raise ValueError(f"token {api_token} rejected")


class QuotingBackend:
    def __init__(self, target: str) -> None:
        raise ValueError(f"cannot use {target!r}")

    def send(self, event):
        pass


class Refuses:
    def __init__(self, size: int) -> None:
        raise RuntimeError(f"no room for {size}")

    def send(self, event):
        pass


CONSTRUCTED = []


class Counted:
    def __init__(self, label: str = "x") -> None:
        CONSTRUCTED.append(label)

    def __call__(self, event):
        event["context"]["counted"] = label_of(self)
        return event


def label_of(processor):
    return id(processor)


class RefusesALabel:
    def __init__(self, labels: list, strict: bool = False) -> None:
        from eventrouter.errors import OptionError

        if strict:
            raise OptionError("mode", "strict needs a mode")
        raise OptionError("labels", f"label {labels[1]!r} is taken", where=(1,))

    def __call__(self, event):
        return event


class KeepsTheDeadLetter:
    def __init__(self, dead_letter=None) -> None:
        CONSTRUCTED.append("dead_letter")
        self.dead_letter = dead_letter

    def __call__(self, event):
        return event


class QuotesItsOption:
    def __init__(self, label: str) -> None:
        raise ValueError(f"cannot use {label!r}")

    def __call__(self, event):
        return event


class JsonQuotingBackend:
    def __init__(self, target: str) -> None:
        import json

        raise ValueError(f"cannot use {json.dumps(target)}")

    def send(self, event):
        pass
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A user's own module, importable by a dotted path, as in an application."""
    (tmp_path / "myapp_tracking.py").write_text(USER_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "myapp_tracking"
    sys.modules.pop("myapp_tracking", None)


def test_each_processor_is_constructed_once_per_load(user_module: str) -> None:
    constructed: list[str] = importlib.import_module(user_module).CONSTRUCTED
    tracker = load(
        {
            "processors": [
                {"class": f"{user_module}.Counted", "options": {"label": "root"}},
            ],
            "backends": {
                "mem": "memory",
                "branch": {
                    "processors": [{"class": f"{user_module}.Counted", "options": {"label": "in"}}],
                    "backends": {"mem": "memory"},
                },
            },
        }
    )
    assert sorted(constructed) == ["in", "root"]
    tracker.emit("a", {})
    assert sorted(constructed) == ["in", "root"]
    (root,) = tracker.processors
    assert tracker.get_backend("mem").events[0]["context"]["counted"] == id(root)


def test_processor_taking_the_dead_letter_is_constructed_once_by_the_builder(
    tmp_path: Path, user_module: str
) -> None:
    constructed: list[str] = importlib.import_module(user_module).CONSTRUCTED
    tracker = load(
        {
            "dead_letter": str(tmp_path / "dead.jsonl"),
            "processors": [f"{user_module}.KeepsTheDeadLetter"],
            "backends": {"mem": "memory"},
        }
    )
    assert constructed == ["dead_letter"]
    assert tracker.processors[0].dead_letter is tracker.router.dead_letter  # type: ignore[attr-defined]


def test_a_second_build_of_a_tree_constructs_its_own_processors(user_module: str) -> None:
    from eventrouter.config import build

    constructed: list[str] = importlib.import_module(user_module).CONSTRUCTED
    tree = read_config(
        {"processors": [f"{user_module}.Counted"], "backends": {"mem": "memory"}}, env={}
    )
    assert constructed == ["x"]
    first, second = build(tree), build(tree)
    assert constructed == ["x", "x"]
    assert first.processors[0] is not second.processors[0]


def test_processor_option_error_is_reported_at_the_line_of_the_item(
    tmp_path: Path, user_module: str
) -> None:
    (issue,) = issues_of(
        tmp_path,
        f"""
        backends:
          a: {{class: memory}}
        processors:
          - class: {user_module}.RefusesALabel
            options:
              labels:
                - free
                - taken
        """,
    )
    assert (issue.line, issue.path) == (8, "processors[0].options.labels[1]")
    assert issue.message == (
        f"'{user_module}.RefusesALabel' refused its options: label 'taken' is taken"
    )


def test_option_error_for_an_option_not_written_is_reported_at_the_options(
    tmp_path: Path, user_module: str
) -> None:
    (issue,) = issues_of(
        tmp_path,
        f"""
        backends:
          a: {{class: memory}}
        processors:
          - class: {user_module}.RefusesALabel
            options:
              labels: [a, b]
              strict: true
        """,
    )
    assert (issue.line, issue.path) == (6, "processors[0].options")


def test_other_constructor_errors_are_reported_at_the_node_even_when_quoting_an_option(
    tmp_path: Path, user_module: str
) -> None:
    (issue,) = issues_of(
        tmp_path,
        f"""
        backends:
          a: {{class: memory}}
        processors:
          - class: {user_module}.QuotesItsOption
            options:
              label: "lbl"
        """,
    )
    assert (issue.line, issue.path) == (4, "processors[0]")
    assert "ValueError: cannot use 'lbl'" in issue.message


def test_bare_string_processor_is_a_callable_used_as_it_is(user_module: str) -> None:
    tracker = load({"processors": [f"{user_module}.add_site"], "backends": {"mem": "memory"}})
    tracker.emit("a", {})
    assert tracker.get_backend("mem").events[0]["context"]["site"] == "example.org"


def test_dotted_path_class_with_options_is_validated_against_its_signature() -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            {
                "backends": {
                    "mem": {
                        "class": "eventrouter.backends.memory:MemoryBackend",
                        "options": {"max_events": "3"},
                    }
                }
            }
        )
    assert caught.value.issues[0].path == "backends.mem.options.max_events"


def test_disabled_node_is_not_built_nor_checked_for_variables(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        backends:
          mem: memory
          segment:
            class: segment
            enabled: ${SEGMENT_ENABLED:-false}
            options: {write_key: "${SEGMENT_WRITE_KEY}"}
        """,
    )
    tree = read_config(path, env={})
    assert not tree.backends["segment"].enabled
    assert "disabled: backends.segment" in tree.summary()
    tracker = load(path, env={})
    assert list(tracker.backends) == ["mem"]


def test_enabled_from_environment_turns_a_node_on(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        backends:
          extra:
            class: memory
            enabled: ${EXTRA_ENABLED:-false}
        """,
    )
    assert list(load(path, env={"EXTRA_ENABLED": "true"}).backends) == ["extra"]
    assert list(load(path, env={}).backends) == []


def test_disabled_node_still_reports_unknown_options(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        """
        backends:
          mem:
            class: memory
            enabled: false
            options: {max_event: 3}
        """,
    )
    assert issues[0].path == "backends.mem.options.max_event"


def test_dead_letter_is_accepted_as_a_path(tmp_path: Path) -> None:
    path = write(tmp_path, "dead_letter: out/dead.jsonl\nbackends: {m: memory}\n")
    assert read_config(path, env={}).dead_letter == "out/dead.jsonl"


def test_backend_refusing_an_option_is_reported_at_the_option_path() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"backends": {"mem": {"class": "memory", "options": {"max_events": 0}}}})
    (issue,) = caught.value.issues
    assert issue.path == "backends.mem.options.max_events"
    assert "'memory' refused its options: max_events must be a positive int" in issue.message


def test_backend_refusing_an_option_is_reported_at_the_option_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        backends:
          mem:
            class: memory
            options:
              max_events: 0
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load(path, env={})
    (issue,) = caught.value.issues
    assert (issue.line, issue.path) == (5, "backends.mem.options.max_events")


def test_constructor_error_other_than_option_error_is_reported_at_the_node(
    user_module: str,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load({"backends": {"b": {"class": f"{user_module}.Refuses", "options": {"size": 3}}}})
    (issue,) = caught.value.issues
    assert issue.path == "backends.b"
    assert "RuntimeError: no room for 3" in issue.message


# -- interpolation ------------------------------------------------------------------------


def test_variable_is_expanded_inside_a_string(tmp_path: Path) -> None:
    path = write(tmp_path, 'dead_letter: "${SPOOL}/dead.jsonl"\nbackends: {m: memory}\n')
    assert read_config(path, env={"SPOOL": "/var/spool"}).dead_letter == "/var/spool/dead.jsonl"


def test_default_is_used_when_variable_is_unset_or_empty(tmp_path: Path) -> None:
    path = write(tmp_path, 'dead_letter: "${SPOOL:-/tmp}/d"\nbackends: {m: memory}\n')
    assert read_config(path, env={}).dead_letter == "/tmp/d"
    assert read_config(path, env={"SPOOL": ""}).dead_letter == "/tmp/d"


def test_double_dollar_is_a_literal_dollar(tmp_path: Path) -> None:
    path = write(tmp_path, 'dead_letter: "$${HOME}"\nbackends: {m: memory}\n')
    assert read_config(path, env={"HOME": "/root"}).dead_letter == "${HOME}"


def test_malformed_interpolation_is_an_error(tmp_path: Path) -> None:
    issues = issues_of(tmp_path, 'dead_letter: "${not valid}"\nbackends: {m: memory}\n')
    assert "malformed interpolation" in issues[0].message


def test_environment_value_is_converted_to_the_annotated_type() -> None:
    tracker = load(
        {"backends": {"m": {"class": "memory", "options": {"max_events": "${MAX}"}}}},
        env={"MAX": "5"},
    )
    assert tracker.get_backend("m").max_events == 5


@pytest.mark.parametrize("env", [{}, {"MAX": "100"}], ids=["default", "set"])
def test_an_interpolated_value_is_converted_whether_set_or_defaulted(env: dict[str, str]) -> None:
    tracker = load(
        {"backends": {"m": {"class": "memory", "options": {"max_events": "${MAX:-100}"}}}},
        env=env,
    )
    assert tracker.get_backend("m").max_events == 100


@pytest.mark.parametrize("env", [{}, {"DBG": "false"}], ids=["default", "set"])
def test_an_interpolated_boolean_is_converted_whether_set_or_defaulted(
    tmp_path: Path, env: dict[str, str]
) -> None:
    path = write(
        tmp_path,
        """
        backends:
          j:
            class: jsonlog
            options: {path: out.jsonl, utc: "${DBG:-false}", flush_interval: "${FI:-0.5}"}
        """,
    )
    node = read_config(path, env=env).backends["j"]
    assert node.options["utc"] is False
    assert node.options["flush_interval"] == 0.5


def test_a_literal_quoted_number_is_still_not_converted(tmp_path: Path) -> None:
    issues = issues_of(tmp_path, 'backends: {m: {class: memory, options: {max_events: "100"}}}\n')
    assert "expected an integer" in issues[0].message


def test_an_unset_variable_is_reported_once(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        """
        backends:
          s: {class: segment, options: {write_key: "${KEY}", debug: "${DBG}"}}
        """,
    )
    assert [i.path for i in issues] == ["backends.s.options.write_key", "backends.s.options.debug"]
    assert all("is not set" in i.message for i in issues)


def test_an_unset_variable_with_an_empty_default_is_not_called_set(tmp_path: Path) -> None:
    text = 'backends: {s: {class: segment, options: {write_key: "${KEY:-}"}}}\n'
    [issue] = issues_of(tmp_path, text)
    assert "KEY is not set and the default is empty" in issue.message
    [issue] = issues_of(tmp_path, text, env={"KEY": ""})
    assert "KEY is set but empty" in issue.message


@pytest.mark.parametrize("value", ['""', '"${LOGP}"'])
def test_an_empty_jsonlog_path_is_reported_at_the_option(tmp_path: Path, value: str) -> None:
    [issue] = issues_of(
        tmp_path, f"backends:\n  c: {{class: jsonlog, options: {{path: {value}}}}}\n", {"LOGP": ""}
    )
    assert issue.path == "backends.c.options.path"
    assert "'path' is empty" in issue.message


@pytest.mark.parametrize(
    "options", ["{}", "{allow: null, block: []}", "{block: []}"], ids=["none", "null", "empty"]
)
def test_a_name_filter_with_nothing_to_filter_is_reported(tmp_path: Path, options: str) -> None:
    text = f"processors:\n  - {{class: name_filter, options: {options}}}\nbackends: {{m: memory}}\n"
    [issue] = issues_of(tmp_path, text)
    assert "filters nothing" in issue.message


def test_a_name_filter_allowing_no_name_is_not_said_to_filter_nothing(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "processors:\n  - {class: name_filter, options: {allow: []}}\nbackends: {m: memory}\n",
    )
    read_config(path, env={})


# -- secrets ------------------------------------------------------------------------------


def test_value_from_environment_never_appears_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            {"backends": {"m": {"class": "memory", "options": {"max_events": "${MAX}"}}}},
            env={"MAX": "hunter2-secret"},
        )
    assert "hunter2-secret" not in str(caught.value)
    assert "from the environment" in str(caught.value)


def test_secret_named_option_value_never_appears_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            {
                "backends": {
                    "seg": {"class": "segment", "options": {"write_key": 1234567, "bogus": 1}},
                }
            }
        )
    assert "1234567" not in str(caught.value)
    assert "write_key" in str(caught.value)


def test_tree_masks_secret_options_and_uri_passwords(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        backends:
          seg:
            class: segment
            enabled: false
            options: {write_key: abcdef-write-key}
          db:
            class: mongodb
            enabled: false
            options: {uri: "mongodb://app:s3cr3t@db.example.org/"}
        """,
    )
    tree = read_config(path, env={})
    shown = {**tree.backends["seg"].shown_options(), **tree.backends["db"].shown_options()}
    assert shown["write_key"] == "***"
    assert shown["uri"] == "mongodb://app:***@db.example.org/"


def test_value_from_environment_is_shown_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, "backends:\n  j: {class: jsonlog, options: {path: '${P}'}}\n")
    tree: ConfigTree = read_config(path, env={"P": str(tmp_path / "private.jsonl")})
    assert tree.backends["j"].shown_options() == {"path": "${P}"}


def test_constructor_error_message_is_scrubbed_of_secrets(
    caplog: pytest.LogCaptureFixture, user_module: str
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as caught:
        load(
            {
                "backends": {
                    "bad": {
                        "class": f"{user_module}.EchoingBackend",
                        "options": {"api_token": "tok-123456"},
                    }
                }
            }
        )
    assert "tok-123456" not in str(caught.value)
    assert "tok-123456" not in caplog.text
    assert "***" in str(caught.value)


def test_dead_letter_is_given_to_every_router_of_the_tree(tmp_path: Path) -> None:
    from eventrouter.deadletter import read_dead_letters

    dead = tmp_path / "dead.jsonl"
    tracker = load(
        {
            "dead_letter": str(dead),
            "backends": {
                "nested": {"backends": {"broken": {"class": "tests.test_config.Broken"}}},
                "top_broken": {"class": "tests.test_config.Broken"},
            },
        }
    )
    tracker.emit("video.played")
    records = list(read_dead_letters(dead))
    assert sorted(r["backend"] for r in records) == ["nested.broken", "top_broken"]
    assert tracker.router.dead_letter is tracker.router.backends["nested"].dead_letter  # type: ignore[attr-defined]


class Broken:
    """A backend that always fails (for the dead-letter test)."""

    def send(self, event: dict[str, Any]) -> None:
        raise ConnectionError("down")


class KeepsItsFailures:
    """A backend that writes its own (asynchronous) failures to the dead-letter file."""

    def __init__(self, dead_letter: Any = None) -> None:
        self.dead_letter = dead_letter

    def send(self, event: dict[str, Any]) -> None:
        pass


def test_dead_letter_is_given_to_backends_that_take_one(tmp_path: Path) -> None:
    tracker = load(
        {
            "dead_letter": str(tmp_path / "dead.jsonl"),
            "backends": {"mine": {"class": "tests.test_config.KeepsItsFailures"}},
        }
    )
    backend = tracker.get_backend("mine")
    assert type(backend).__name__ == "KeepsItsFailures"  # imported as tests.test_config
    assert backend.dead_letter is tracker.router.dead_letter  # type: ignore[attr-defined]


# -- processors' constructors are run by validation ----------------------------------------


def test_validation_reports_a_processor_refusing_a_bad_regex_at_its_line(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        """
        backends:
          a: {class: memory}
        processors:
          - class: name_filter
            options:
              allow:
                - video.*
                - "re:(video"
        """,
    )
    (issue,) = issues
    assert (issue.line, issue.path) == (8, "processors[0].options.allow[1]")
    assert "'name_filter' refused its options" in issue.message
    assert "invalid name pattern" in issue.message


def test_validation_reports_every_refusing_processor_at_once(tmp_path: Path) -> None:
    issues = issues_of(
        tmp_path,
        """
        backends:
          a: {class: memory}
        processors:
          - class: redact
            options: {fields: ["data..email"]}
          - class: sample
            options:
              rate: 5
          - class: schema
            options: {schemas: {"#": {type: objekt}}}
        """,
    )
    assert [(i.line, i.path) for i in issues] == [
        (5, "processors[0].options.fields[0]"),
        (8, "processors[1].options.rate"),
        (10, "processors[2].options.schemas.#.type"),
    ]


def test_validation_does_not_construct_disabled_processors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        backends:
          a: {class: memory}
        processors:
          - {class: sample, enabled: false, options: {rate: 5}}
        """,
    )
    assert read_config(path, env={}).processors[0].enabled is False


def test_validation_does_not_construct_backends(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        backends:
          a: {class: jsonlog, options: {path: "%s"}}
        """
        % (tmp_path / "never" / "events.log"),
    )
    read_config(path, env={})
    assert not (tmp_path / "never").exists()


# -- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (
            "mongodb://app:pa/ss@db:27017/?authSource=admin",
            "mongodb://app:***@db:27017/?authSource=admin",
        ),
        ("mongodb://app:p@ss@db:27017", "mongodb://app:***@db:27017"),
        ("https://tok3n@example.org/x", "https://***@example.org/x"),
    ],
    ids=["slash_in_password", "at_in_password", "userinfo_without_user"],
)
def test_mask_uri_hides_the_whole_password(uri: str, shown: str) -> None:
    from eventrouter.config import mask_uri

    assert mask_uri(uri) == shown


def test_mask_uri_hides_query_values_with_secret_names() -> None:
    from eventrouter.config import mask_uri

    uri = "mongodb://db/?authMechanism=PLAIN&password=hunter2&tlsCertificateKeyFilePassword=top"
    assert mask_uri(f"cannot use {uri} now") == (
        "cannot use mongodb://db/?authMechanism=PLAIN&password=***"
        "&tlsCertificateKeyFilePassword=*** now"
    )


@pytest.mark.parametrize("backend", ["QuotingBackend", "JsonQuotingBackend"])
def test_refusal_message_is_scrubbed_of_escaped_secrets(user_module: str, backend: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            {
                "backends": {
                    "b": {"class": f"{user_module}.{backend}", "options": {"target": "${T}"}}
                }
            },
            env={"T": "se\\cr\\et-value"},
        )
    message = str(caught.value)
    assert "cr" not in message.replace("refused", "")
    assert "***" in message


@pytest.mark.parametrize("name", ["write_key", "api_key", "apiKey", "key_file", "API_KEY"])
def test_names_with_key_as_one_of_their_words_are_secret(name: str) -> None:
    from eventrouter.config import is_secret_name

    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["key", "monkey", "keyboard"])
def test_key_alone_or_inside_a_word_is_not_secret(name: str) -> None:
    from eventrouter.config import is_secret_name

    assert not is_secret_name(name)


def test_sample_key_option_is_shown(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        backends: {a: memory}
        processors:
          - {class: sample, options: {rate: 0.1, key: context.user_id}}
        """,
    )
    assert read_config(path, env={}).processors[0].shown_options()["key"] == "context.user_id"


def test_variable_inside_a_list_option_is_shown_per_element(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        backends: {a: memory}
        processors:
          - {class: name_filter, options: {allow: ["${EXTRA}", "video.*"]}}
        """,
    )
    shown = read_config(path, env={"EXTRA": "private.name"}).processors[0].shown_options()
    assert shown["allow"] == "[${EXTRA}, video.*]"


# -- interpolation and tags -------------------------------------------------------------------


def test_unset_enabled_variable_inside_a_disabled_router_is_not_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        backends:
          a: {class: memory}
          paused:
            enabled: false
            backends:
              b: {class: memory, enabled: "${UNSET}"}
        """,
    )
    assert read_config(path, env={}).backends["paused"].backends["b"].enabled is False


def test_nested_interpolation_in_a_default_is_malformed(tmp_path: Path) -> None:
    (issue,) = issues_of(
        tmp_path,
        """
        backends:
          a: {class: jsonlog, options: {path: "${A:-${B}}"}}
        """,
        env={"B": "x"},
    )
    assert "malformed interpolation" in issue.message
    assert issue.path == "backends.a.options.path"


def test_python_tag_as_class_is_refused_as_a_tag(tmp_path: Path) -> None:
    (issue,) = issues_of(tmp_path, "backends: {a: {class: !!python/name:os.system }}\n")
    assert "the YAML tag !!python/name:os.system is not allowed" in issue.message
    assert issue.path == "backends.a.class"


@pytest.mark.slow
def test_nested_aliases_are_refused_quickly(tmp_path: Path) -> None:
    levels = ["a: &a [" + ", ".join(['"x"'] * 10) + "]"]
    for prev, name in zip("abcdefg", "bcdefgh", strict=True):
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    text = "backends:\n  a: {class: memory}\nprocessors:\n  - class: enrich\n"
    text += "    options:\n      fields:\n" + "".join(f"        {line}\n" for line in levels)
    (tmp_path / "bomb.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_config(tmp_path / "bomb.yaml", env={})
    (issue,) = caught.value.issues
    assert "more than" in issue.message
    assert (issue.line, issue.path) == (7, "processors[0].options.fields")
