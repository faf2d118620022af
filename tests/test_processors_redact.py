"""Redact: values at paths and under matching keys are replaced and never leak."""

from __future__ import annotations

import logging
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventrouter.errors import EventEmissionExit
from eventrouter.processors import Redact

SECRET = "s3cr3t-VALUE"


def ev(**data: Any) -> dict[str, Any]:
    return {"id": "e1", "name": "user.login", "data": data, "context": {"ip": "10.0.0.1"}}


def test_a_field_is_replaced_and_its_key_kept() -> None:
    event = Redact(["context.ip"])(ev())
    assert event["context"] == {"ip": "[REDACTED]"}


def test_a_missing_path_is_fine() -> None:
    event = ev()
    assert Redact(["context.absent", "data.x.y"])(event) == ev()


def test_a_mapping_value_is_replaced_whole() -> None:
    event = Redact(["data.card"])(ev(card={"number": SECRET, "cvc": SECRET}))
    assert event["data"]["card"] == "[REDACTED]"


def test_a_path_through_a_list_applies_to_every_element() -> None:
    event = ev(students=[{"email": SECRET, "id": 1}, {"email": SECRET, "id": 2}, "x"])
    Redact(["data.students.email"])(event)
    assert event["data"]["students"] == [
        {"email": "[REDACTED]", "id": 1},
        {"email": "[REDACTED]", "id": 2},
        "x",
    ]


def test_a_digit_segment_redacts_one_list_element() -> None:
    event = ev(items=[SECRET, "kept"])
    Redact(["data.items.0"])(event)
    assert event["data"]["items"] == ["[REDACTED]", "kept"]


def test_a_tuple_on_the_way_is_rebuilt() -> None:
    event = ev(pair=({"email": SECRET}, "kept"))
    Redact(["data.pair.email"])(event)
    assert event["data"]["pair"] == ({"email": "[REDACTED]"}, "kept")


def test_a_path_through_a_mapping_that_is_not_a_dict_is_redacted() -> None:
    from collections import UserDict

    event = ev(account=UserDict({"email": SECRET, "id": 1}))
    Redact(["data.account.email"])(event)
    assert dict(event["data"]["account"]) == {"email": "[REDACTED]", "id": 1}


def test_a_path_through_a_scalar_or_none_is_not_in_the_event() -> None:
    event = ev(account=None, user="ada")
    Redact(["data.account.email", "data.user.name"])(event)
    assert event["data"] == {"account": None, "user": "ada"}


def test_the_replacement_is_configurable() -> None:
    assert Redact(["context.ip"], replacement=None)(ev())["context"]["ip"] is None


def test_key_patterns_redact_at_any_depth() -> None:
    event = ev(
        password=SECRET,
        user={"old_password": SECRET, "name": "ann"},
        sessions=[{"auth": {"api_token": SECRET}}, [{"refresh_token": SECRET}]],
    )
    Redact(patterns=["*password*", "*token*"])(event)
    assert SECRET not in repr(event)
    assert event["data"]["user"] == {"old_password": "[REDACTED]", "name": "ann"}
    assert event["data"]["sessions"][0] == {"auth": {"api_token": "[REDACTED]"}}


def test_key_patterns_ignore_case() -> None:
    event = Redact(patterns=["*password*"])(ev(NewPassword=SECRET, PASSWORD=SECRET))
    assert event["data"] == {"NewPassword": "[REDACTED]", "PASSWORD": "[REDACTED]"}


def test_key_patterns_leave_other_keys_alone() -> None:
    event = Redact(patterns=["*password*"])(ev(passage="kept", nested={"pass": "kept"}))
    assert event["data"] == {"passage": "kept", "nested": {"pass": "kept"}}


def test_key_patterns_survive_cyclic_data() -> None:
    loop: dict[str, Any] = {"token": SECRET}
    loop["self"] = loop
    event = Redact(patterns=["token"])(ev(loop=loop))
    assert event["data"]["loop"]["token"] == "[REDACTED]"


def test_fields_and_patterns_together() -> None:
    event = Redact(["context.ip"], patterns=["*token*"])(ev(token=SECRET))
    assert SECRET not in repr(event)
    assert "10.0.0.1" not in repr(event)


def test_nothing_to_redact_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nothing to redact"):
        Redact()


@pytest.mark.parametrize("option", ["fields", "patterns"])
def test_a_bare_string_is_a_type_error(option: str) -> None:
    options: dict[str, Any] = {option: "context.ip"}
    with pytest.raises(TypeError, match="single string"):
        Redact(**options)


def test_an_invalid_path_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid path"):
        Redact(["context..ip"])


def test_it_fails_closed_when_a_value_cannot_be_replaced(caplog: pytest.LogCaptureFixture) -> None:
    event = ev(user=MappingProxyType({"email": SECRET}))
    with caplog.at_level(logging.WARNING), pytest.raises(EventEmissionExit):
        Redact(["data.user.email"])(event)
    assert "user.login" in caplog.text
    assert SECRET not in caplog.text


def test_the_event_is_redacted_in_place_and_returned() -> None:
    event = ev()
    assert Redact(["context.ip"])(event) is event
    assert event["context"]["ip"] == "[REDACTED]"  # the caller's own dict, not only a copy


# Property: whatever the shape, a value under a sensitive key never survives.

SENSITIVE_KEYS = [
    "password",
    "user_password",
    "PASSWORD",
    "apiToken",
    "token",
    "user.password",
    "auth.token.v2",
]
NORMAL_KEYS = ["name", "items", "x", "pass", "tok", "0"]
LEAVES = st.none() | st.booleans() | st.integers() | st.text(alphabet="abc", max_size=3)
SECRET_VALUES = st.recursive(
    st.just(SECRET) | LEAVES,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet="abc"), children, max_size=3)
    ),
    max_leaves=6,
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    normal = st.dictionaries(st.sampled_from(NORMAL_KEYS), children, max_size=3)
    sensitive = st.dictionaries(st.sampled_from(SENSITIVE_KEYS), SECRET_VALUES, max_size=2)
    return (
        st.lists(children, max_size=3)
        | st.tuples(children, children)
        | st.builds(lambda a, b: {**a, **b}, normal, sensitive)
    )


TREES = st.recursive(LEAVES, _containers, max_leaves=20)


@pytest.mark.slow
@settings(max_examples=300)
@given(TREES, SECRET_VALUES)
def test_no_value_under_a_sensitive_key_leaks(tree: Any, top: Any) -> None:
    event = {"id": "e1", "name": "x", "data": tree, "context": {"auth_token": top}}
    Redact(patterns=["*password*", "*token*"])(event)
    assert SECRET not in repr(event)


@pytest.mark.slow
@given(st.lists(st.dictionaries(st.sampled_from(["email", "id"]), SECRET_VALUES), max_size=5))
def test_no_value_at_a_field_leaks_from_a_list_of_dicts(students: list[dict[str, Any]]) -> None:
    event = ev(students=[{**student, "email": SECRET} for student in students])
    Redact(["data.students.email"])(event)
    assert all(student["email"] == "[REDACTED]" for student in event["data"]["students"])


def test_key_patterns_match_keys_that_contain_dots() -> None:
    redact = Redact(patterns=["*password*", "*token*", "secret*"])
    event = {
        "data": {
            "user.password": "P1",
            "form": {"auth.token": "T1"},
            "meta": {"password.reset": "P3", "secret.x": "S2", "plain.key": "ok"},
        }
    }
    redact(event)
    assert event["data"] == {
        "user.password": "[REDACTED]",
        "form": {"auth.token": "[REDACTED]"},
        "meta": {"password.reset": "[REDACTED]", "secret.x": "[REDACTED]", "plain.key": "ok"},
    }


def test_decisions_stay_right_past_the_number_of_keys_remembered() -> None:
    from eventrouter.processors import redact as redact_module

    redact = Redact(patterns=["*token*"])
    keys = [f"field{n}" for n in range(redact_module._MAX_DECISIONS + 50)]
    for round_ in range(2):  # the second round meets keys whose decisions were forgotten
        event = {"data": {key: round_ for key in keys} | {"apiToken": "t", "x_TOKEN_y": "u"}}
        redacted = redact(event)["data"]
        assert redacted["apiToken"] == redacted["x_TOKEN_y"] == "[REDACTED]"
        assert all(redacted[key] == round_ for key in keys)
