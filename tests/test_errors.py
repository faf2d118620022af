"""The library's exceptions say what went wrong and what to do next."""

from __future__ import annotations

import pytest

from eventrouter.errors import (
    ConfigError,
    ConfigIssue,
    DeliveryError,
    EventRouterError,
    MissingExtraError,
    OptionError,
    OptionTypeError,
    TrackerNotRegisteredError,
)


def test_config_issue_reads_file_line_and_path() -> None:
    issue = ConfigIssue("unknown key 'clas'", "backends.archive", "routing.yaml", 4)
    assert str(issue) == "routing.yaml:4 at backends.archive: unknown key 'clas'"


def test_config_issue_without_file_or_line() -> None:
    assert str(ConfigIssue("bad", "processors[0]")) == "<config> at processors[0]: bad"


def test_config_error_lists_every_issue_and_is_a_value_error() -> None:
    error = ConfigError([ConfigIssue("a", "x", "f.yaml", 1), ConfigIssue("b", "y", "f.yaml", 2)])
    assert isinstance(error, ValueError)
    assert str(error).splitlines() == [
        "2 problems in the routing configuration:",
        "  f.yaml:1 at x: a",
        "  f.yaml:2 at y: b",
    ]


def test_missing_extra_names_the_pip_command() -> None:
    error = MissingExtraError("the MongoDB backend", "mongo", "pymongo")
    assert isinstance(error, ImportError)
    assert "pip install 'eventrouter[mongo]'" in str(error)


def test_tracker_not_registered_says_how_to_register() -> None:
    error = TrackerNotRegisteredError("lms")
    assert isinstance(error, LookupError)
    assert "register_tracker(" in str(error)
    assert "'lms'" in str(error)


@pytest.mark.parametrize("retryable", [True, False])
def test_delivery_error_carries_whether_to_retry(retryable: bool) -> None:
    error = DeliveryError("segment answered 500", retryable=retryable)
    assert isinstance(error, EventRouterError)
    assert error.retryable is retryable


def test_option_error_names_the_option_and_is_a_value_error() -> None:
    error = OptionError("rate", "rate must be from 0 to 1, not 5")
    assert isinstance(error, EventRouterError)
    assert isinstance(error, ValueError)
    assert (error.option, error.where, str(error)) == ("rate", (), error.message)


def test_option_error_location_reads_as_a_path_into_the_value() -> None:
    error = OptionError("schemas", "not a valid JSON Schema", where=["video.*", "items", 2])
    assert error.where == ("video.*", "items", 2)
    assert error.location == "schemas.video.*.items[2]"


def test_option_type_error_is_both_an_option_error_and_a_type_error() -> None:
    error = OptionTypeError("allow", "allow must be a list, not a single string")
    assert isinstance(error, OptionError)
    assert isinstance(error, TypeError)
    assert error.option == "allow"
