"""eventrouter.encoding: the documented JSON encoding, strict, one line, never raising."""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from eventrouter.encoding import CYCLE_MARKER, dict_key, dumps, json_default, to_jsonable


def strict_loads(text: str) -> Any:
    """Parse as strict JSON: NaN and Infinity literals are errors."""

    def reject(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=reject)


class Color(enum.Enum):
    RED = "red"


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_aware_datetime_is_written_in_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    value = dt.datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=paris)
    assert json.loads(dumps({"t": value})) == {"t": "2024-05-01T12:00:00.123456+00:00"}


def test_naive_datetime_is_taken_as_utc() -> None:
    assert json.loads(dumps([dt.datetime(2024, 5, 1, 12, 0)])) == ["2024-05-01T12:00:00+00:00"]


def test_date_and_time_are_iso() -> None:
    assert json.loads(dumps([dt.date(2024, 5, 1), dt.time(8, 30)])) == ["2024-05-01", "08:30:00"]


def test_decimal_is_its_exact_string() -> None:
    assert json.loads(dumps({"price": Decimal("12.50")})) == {"price": "12.50"}


def test_uuid_is_its_canonical_string() -> None:
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert json.loads(dumps(value)) == "12345678-1234-5678-1234-567812345678"


def test_bytes_are_base64() -> None:
    assert json.loads(dumps([b"\x00\xffhi", bytearray(b"ok")])) == ["AP9oaQ==", "b2s="]


def test_sets_become_sorted_lists() -> None:
    assert json.loads(dumps({"s": {3, 1, 2}, "f": frozenset({"b", "a"})})) == {
        "s": [1, 2, 3],
        "f": ["a", "b"],
    }


def test_unsortable_set_still_becomes_a_list() -> None:
    decoded = json.loads(dumps({1, "a"}))
    assert sorted(map(str, decoded)) == ["1", "a"]


def test_tuples_become_lists() -> None:
    assert json.loads(dumps({"t": (1, (2, 3))})) == {"t": [1, [2, 3]]}


def test_enum_is_its_value() -> None:
    assert json.loads(dumps({"c": Color.RED})) == {"c": "red"}


def test_unknown_object_is_its_str() -> None:
    assert json.loads(dumps({"o": Opaque()})) == {"o": "opaque!"}


def test_object_whose_str_fails_gets_a_placeholder() -> None:
    assert json.loads(dumps({"o": Unprintable()})) == {"o": "<unencodable Unprintable>"}


def test_non_finite_floats_become_strings_so_output_is_strict_json() -> None:
    decoded = strict_loads(dumps([float("nan"), float("inf"), float("-inf"), 1.5]))
    assert decoded == ["NaN", "Infinity", "-Infinity", 1.5]


def test_scalar_keys_follow_json_rules() -> None:
    decoded = json.loads(dumps({7: "a", 2.5: "b", True: "c", None: "d"}))
    assert decoded == {"7": "a", "2.5": "b", "true": "c", "null": "d"}


def test_other_keys_do_not_make_dumps_fail() -> None:
    key_date = dt.date(2024, 1, 2)
    decoded = json.loads(dumps({(1, 2): "tuple", key_date: "date", "x": 1}))
    assert decoded == {"(1, 2)": "tuple", "2024-01-02": "date", "x": 1}


def test_dict_key_of_a_uuid_is_its_string() -> None:
    assert dict_key(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"


def test_to_jsonable_keeps_both_values_when_keys_collide() -> None:
    assert to_jsonable({1: "int", "1": "str"}) == {"1~int": "int", "1": "str"}


def test_a_cycle_is_replaced_by_a_marker() -> None:
    data: dict[str, Any] = {"a": 1}
    data["self"] = data
    assert json.loads(dumps(data)) == {"a": 1, "self": CYCLE_MARKER}


def test_deep_nesting_does_not_raise() -> None:
    value: list[Any] = []
    for _ in range(5000):
        value = [value]
    assert dumps(value).startswith("[[[")


def test_output_is_one_ascii_line() -> None:
    line = dumps({"text": "line one\nline two é ✓", "lone": "\ud800"})
    assert "\n" not in line
    assert line.isascii()
    assert json.loads(line)["text"] == "line one\nline two é ✓"


def test_dumps_does_not_modify_its_input() -> None:
    data = {"s": {2, 1}, "t": (1,), 1: "x"}
    dumps(data)
    assert data == {"s": {2, 1}, "t": (1,), 1: "x"}


def test_json_default_plugs_into_json_dumps() -> None:
    assert json.dumps({"d": Decimal("1.0")}, default=json_default) == '{"d": "1.0"}'


json_data = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(json_data)
def test_plain_json_data_round_trips_exactly(value: Any) -> None:
    assert strict_loads(dumps(value)) == value


awkward = st.recursive(
    st.none()
    | st.floats()
    | st.decimals()
    | st.uuids()
    | st.binary()
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.dates()
    | st.sets(st.integers()),
    lambda children: (
        st.lists(children).map(tuple)
        | st.dictionaries(st.integers() | st.text() | st.dates() | st.none(), children)
    ),
    max_leaves=30,
)


@given(awkward)
def test_any_value_encodes_to_strict_json(value: Any) -> None:
    strict_loads(dumps(value))
