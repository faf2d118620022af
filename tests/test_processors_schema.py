"""SchemaValidator: schemas checked at construction; drop, tag or pass invalid events."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import pytest

from eventrouter.errors import EventEmissionExit, MissingExtraError
from eventrouter.processors import SchemaValidator
from eventrouter.processors.schema import MAX_ERRORS

SECRET = "private@example.com"

PLAYED = {
    "type": "object",
    "properties": {"user_id": {"type": "integer"}, "speed": {"enum": [1, 1.5, 2]}},
    "required": ["user_id"],
}


def ev(name: str = "video.played", **data: Any) -> dict[str, Any]:
    return {"id": "e1", "name": name, "data": data, "context": {}}


def kept(processor: Any, event: dict[str, Any]) -> bool:
    try:
        processor(event)
    except EventEmissionExit:
        return False
    return True


# construction


def test_an_invalid_schema_is_a_value_error_naming_its_pattern() -> None:
    with pytest.raises(ValueError, match=r"'video\.\*'.*not a valid JSON Schema"):
        SchemaValidator({"video.*": {"type": "no-such-type"}})


def test_an_invalid_nested_schema_is_caught_at_construction() -> None:
    with pytest.raises(ValueError, match="properties"):
        SchemaValidator({"#": {"properties": {"a": {"minimum": "ten"}}}})


def test_a_schema_that_is_not_a_mapping_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="video"):
        SchemaValidator({"video.*": ["type", "object"]})  # type: ignore[dict-item]


def test_an_unknown_on_invalid_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="on_invalid"):
        SchemaValidator({"#": {}}, on_invalid="warn")  # type: ignore[arg-type]


def test_an_invalid_name_pattern_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"re:\("):
        SchemaValidator({"re:(": {}})


def test_without_jsonschema_it_raises_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    monkeypatch.setitem(sys.modules, "jsonschema.validators", None)
    with pytest.raises(MissingExtraError, match=r"eventrouter\[schema\]"):
        SchemaValidator({"#": {}})


@pytest.mark.slow
def test_importing_the_processors_does_not_import_jsonschema() -> None:
    code = "import sys, eventrouter.processors; print('jsonschema' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# drop (default)


def test_a_valid_event_is_kept() -> None:
    assert kept(SchemaValidator({"video.*": PLAYED}), ev(user_id=1, speed=2))


def test_an_invalid_event_is_dropped() -> None:
    assert not kept(SchemaValidator({"video.*": PLAYED}), ev(user_id="one"))


def test_an_event_no_pattern_matches_is_not_checked() -> None:
    assert kept(SchemaValidator({"video.*": PLAYED}), ev("page.view", user_id="one"))


def test_every_matching_schema_applies() -> None:
    validator = SchemaValidator(
        {"video.*": PLAYED, "#": {"type": "object", "required": ["course"]}}
    )
    assert not kept(validator, ev(user_id=1))
    assert kept(validator, ev(user_id=1, course="c"))


def test_missing_data_is_invalid() -> None:
    event = ev()
    del event["data"]
    assert not kept(SchemaValidator({"#": {}}), event)


def test_path_selects_the_value_validated() -> None:
    validator = SchemaValidator({"#": {"required": ["org"]}}, path="context")
    assert not kept(validator, ev())
    event = ev()
    event["context"]["org"] = "x"
    assert kept(validator, event)


# tag


def test_tag_keeps_the_event_with_its_errors_under_context_schema_errors() -> None:
    event = SchemaValidator({"video.*": PLAYED}, on_invalid="tag")(ev(speed=3))
    assert sorted(event["context"]["schema_errors"]) == [
        "data.speed: enum [1, 1.5, 2]",
        'data: required ["user_id"]',
    ]


def test_tag_errors_never_hold_the_event_values() -> None:
    event = SchemaValidator({"video.*": PLAYED}, on_invalid="tag")(ev(user_id=SECRET))
    assert event["context"]["schema_errors"] == ['data.user_id: type "integer"']


def test_tag_leaves_a_valid_event_untouched() -> None:
    event = SchemaValidator({"video.*": PLAYED}, on_invalid="tag")(ev(user_id=1))
    assert event == ev(user_id=1)


def test_tag_path_is_configurable() -> None:
    validator = SchemaValidator({"#": PLAYED}, on_invalid="tag", tag_path="validation")
    assert validator(ev())["validation"] == ['data: required ["user_id"]']


def test_tag_records_at_most_max_errors() -> None:
    schema = {"type": "array", "items": {"type": "string"}}
    validator = SchemaValidator({"#": schema}, on_invalid="tag", path="data.values")
    event = validator(ev(values=list(range(MAX_ERRORS + 5))))
    assert len(event["context"]["schema_errors"]) == MAX_ERRORS


def test_tag_reports_a_missing_value() -> None:
    validator = SchemaValidator({"#": {}}, on_invalid="tag", path="data.payload")
    assert validator(ev())["context"]["schema_errors"] == ["data.payload: missing"]


# pass


def test_pass_keeps_the_event_unchanged_and_warns_without_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        event = SchemaValidator({"#": PLAYED}, on_invalid="pass")(ev(user_id=SECRET))
    assert event == ev(user_id=SECRET)
    assert "video.played" in caplog.text
    assert "e1" in caplog.text
    assert SECRET not in caplog.text


def test_format_is_checked() -> None:
    validator = SchemaValidator({"#": {"properties": {"at": {"format": "date"}}}})
    assert kept(validator, ev(at="2024-01-31"))
    assert not kept(validator, ev(at="31/01/2024"))
