"""eventrouter.encoding: the documented JSON encoding, strict, one line, never raising."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventrouter import encoding
from eventrouter.encoding import (
    CYCLE_MARKER,
    dict_key,
    dumps,
    dumps_fast,
    json_default,
    to_jsonable,
    walk,
)

Encode = Callable[[Any], str]

ENCODERS = [
    pytest.param(dumps, id="json"),
    pytest.param(
        dumps_fast,
        id="orjson",
        marks=pytest.mark.skipif(
            encoding.orjson is None,
            reason="orjson not in use (not installed, or EVENTROUTER_NO_ORJSON is set)",
        ),
    ),
]
"""Every rule is checked on both encoders: the standard library's and the orjson path."""


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


@pytest.mark.parametrize("encode", ENCODERS)
def test_aware_datetime_is_written_in_utc(encode: Encode) -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    value = dt.datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=paris)
    assert json.loads(encode({"t": value})) == {"t": "2024-05-01T12:00:00.123456+00:00"}


@pytest.mark.parametrize("encode", ENCODERS)
def test_naive_datetime_is_taken_as_utc(encode: Encode) -> None:
    assert json.loads(encode([dt.datetime(2024, 5, 1, 12, 0)])) == ["2024-05-01T12:00:00+00:00"]


@pytest.mark.parametrize("encode", ENCODERS)
def test_date_and_time_are_iso(encode: Encode) -> None:
    assert json.loads(encode([dt.date(2024, 5, 1), dt.time(8, 30)])) == ["2024-05-01", "08:30:00"]


@pytest.mark.parametrize("encode", ENCODERS)
def test_decimal_is_its_exact_string(encode: Encode) -> None:
    assert json.loads(encode({"price": Decimal("12.50")})) == {"price": "12.50"}


@pytest.mark.parametrize("encode", ENCODERS)
def test_uuid_is_its_canonical_string(encode: Encode) -> None:
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert json.loads(encode(value)) == "12345678-1234-5678-1234-567812345678"


@pytest.mark.parametrize("encode", ENCODERS)
def test_bytes_are_base64(encode: Encode) -> None:
    assert json.loads(encode([b"\x00\xffhi", bytearray(b"ok")])) == ["AP9oaQ==", "b2s="]


@pytest.mark.parametrize("encode", ENCODERS)
def test_sets_become_sorted_lists(encode: Encode) -> None:
    assert json.loads(encode({"s": {3, 1, 2}, "f": frozenset({"b", "a"})})) == {
        "s": [1, 2, 3],
        "f": ["a", "b"],
    }


@pytest.mark.parametrize("encode", ENCODERS)
def test_unsortable_set_still_becomes_a_list(encode: Encode) -> None:
    decoded = json.loads(encode({1, "a"}))
    assert sorted(map(str, decoded)) == ["1", "a"]


@pytest.mark.parametrize("encode", ENCODERS)
def test_tuples_become_lists(encode: Encode) -> None:
    assert json.loads(encode({"t": (1, (2, 3))})) == {"t": [1, [2, 3]]}


@pytest.mark.parametrize("encode", ENCODERS)
def test_enum_is_its_value(encode: Encode) -> None:
    assert json.loads(encode({"c": Color.RED})) == {"c": "red"}


@pytest.mark.parametrize("encode", ENCODERS)
def test_unknown_object_is_its_str(encode: Encode) -> None:
    assert json.loads(encode({"o": Opaque()})) == {"o": "opaque!"}


@pytest.mark.parametrize("encode", ENCODERS)
def test_object_whose_str_fails_gets_a_placeholder(encode: Encode) -> None:
    assert json.loads(encode({"o": Unprintable()})) == {"o": "<unencodable Unprintable>"}


@pytest.mark.parametrize("encode", ENCODERS)
def test_non_finite_floats_become_strings_so_output_is_strict_json(encode: Encode) -> None:
    decoded = strict_loads(encode([float("nan"), float("inf"), float("-inf"), 1.5]))
    assert decoded == ["NaN", "Infinity", "-Infinity", 1.5]


@pytest.mark.parametrize("encode", ENCODERS)
def test_scalar_keys_follow_json_rules(encode: Encode) -> None:
    decoded = json.loads(encode({7: "a", 2.5: "b", True: "c", None: "d"}))
    assert decoded == {"7": "a", "2.5": "b", "true": "c", "null": "d"}


@pytest.mark.parametrize("encode", ENCODERS)
def test_other_keys_do_not_make_dumps_fail(encode: Encode) -> None:
    key_date = dt.date(2024, 1, 2)
    decoded = json.loads(encode({(1, 2): "tuple", key_date: "date", "x": 1}))
    assert decoded == {"(1, 2)": "tuple", "2024-01-02": "date", "x": 1}


def test_dict_key_of_a_uuid_is_its_string() -> None:
    assert dict_key(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"


def test_to_jsonable_keeps_both_values_when_keys_collide() -> None:
    assert to_jsonable({1: "int", "1": "str"}) == {"1~int": "int", "1": "str"}


@pytest.mark.parametrize("encode", ENCODERS)
def test_a_cycle_is_replaced_by_a_marker(encode: Encode) -> None:
    data: dict[str, Any] = {"a": 1}
    data["self"] = data
    assert json.loads(encode(data)) == {"a": 1, "self": CYCLE_MARKER}


@pytest.mark.slow
@pytest.mark.parametrize("encode", ENCODERS)
def test_deep_nesting_does_not_raise(encode: Encode) -> None:
    value: list[Any] = []
    for _ in range(5000):
        value = [value]
    assert encode(value).startswith("[[[")


@pytest.mark.parametrize("encode", ENCODERS)
def test_output_is_one_ascii_line(encode: Encode) -> None:
    line = encode({"text": "line one\nline two é ✓", "lone": "\ud800"})
    assert "\n" not in line
    assert line.isascii()
    assert json.loads(line)["text"] == "line one\nline two é ✓"


@pytest.mark.parametrize("encode", ENCODERS)
def test_dumps_does_not_modify_its_input(encode: Encode) -> None:
    data = {"s": {2, 1}, "t": (1,), 1: "x"}
    encode(data)
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


@pytest.mark.slow
@given(json_data)
@pytest.mark.parametrize("encode", ENCODERS)
def test_plain_json_data_round_trips_exactly(encode: Encode, value: Any) -> None:
    assert strict_loads(encode(value)) == value


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


@pytest.mark.slow
@given(awkward)
@pytest.mark.parametrize("encode", ENCODERS)
def test_any_value_encodes_to_strict_json(encode: Encode, value: Any) -> None:
    strict_loads(encode(value))


# -- the orjson path writes the same bytes ------------------------------------------------------


class Level(enum.IntEnum):
    HIGH = 3


class Ratio(float):
    pass


class Name(str):
    pass


class Point(NamedTuple):
    x: int
    y: int


@dataclasses.dataclass
class Spot:
    where: str


class Frozen(Mapping[str, Any]):
    def __init__(self, **items: Any) -> None:
        self._items = items

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def _cyclic() -> dict[str, Any]:
    data: dict[str, Any] = {"a": [1]}
    data["a"].append(data)
    return data


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


TABLE: list[Any] = [
    {"small": 1e-7, "big": 1e16, "huge": 1.5e300, "tiny": 5e-324, "neg": -0.0, "third": 1 / 3},
    [1e-5, 2.5e-9],
    1e-7,
    1e-05,  # orjson writes it out in full: 0.00001
    -3.5e-06,
    {"nan": float("nan"), "inf": float("inf"), "none": None},
    {"text": 'é ✓ 😀 \x7f \x00 \x1f \t \n " \\ / \u2028', "lone": "\ud800"},
    {"int64": 2**63 - 1, "big": 2**64, "bigger": -(2**70)},
    {"level": Level.HIGH, "ratio": Ratio(0.5), "name": Name("n"), "point": Point(1, 2)},
    {"spot": Spot("here"), "frozen": Frozen(a=1), "ordered": collections.OrderedDict(b=2)},
    {"default": collections.defaultdict(list, c=[3])},
    {"paris": dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))},
    {"naive": dt.datetime(2024, 5, 1, 12, 0, 0, 5), "utc": dt.datetime(2024, 5, 1, tzinfo=dt.UTC)},
    {"day": dt.date(2024, 5, 1), "time": dt.time(8, 30), "tztime": dt.time(8, 30, tzinfo=dt.UTC)},
    {"uuid": uuid.UUID(int=7), "decimal": Decimal("1.10"), "bytes": b"\x00\xff", "set": {2, 1}},
    {7: "int key", 2.5: "float key", None: "none key", True: "bool key", (1, 2): "tuple key"},
    {1: "int", "1": "str"},
    {"opaque": Opaque(), "unprintable": Unprintable(), "color": Color.RED},
    _cyclic(),
    _deep(300),
    {"nullable": "null in a string", "code": "course-v1:e-5,x"},
    "\x7f",
]


@pytest.mark.skipif(encoding.orjson is None, reason="orjson not in use")
@pytest.mark.parametrize("value", TABLE)
def test_the_orjson_path_writes_the_same_bytes_as_the_standard_library(value: Any) -> None:
    assert dumps_fast(value) == dumps(value)


@pytest.mark.slow
@pytest.mark.skipif(encoding.orjson is None, reason="orjson not in use")
@given(awkward | json_data)
def test_the_orjson_path_writes_the_same_bytes_for_any_value(value: Any) -> None:
    assert dumps_fast(value) == dumps(value)


@pytest.mark.skipif(encoding.orjson is None, reason="orjson not in use")
def test_the_orjson_path_re_encodes_only_lines_with_an_unlike_spelling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redone: list[Any] = []
    standard = encoding.dumps

    def counting(value: Any, *, spaced: bool = False) -> str:
        redone.append(value)
        return standard(value, spaced=spaced)

    monkeypatch.setattr(encoding, "dumps", counting)
    # Near misses: "e-" after a letter, after a digit but followed by two characters (an id
    # such as 1f3e-4abc), "0.0000" inside a number, two-digit exponents.
    plain = {
        "id": "0d1f3e-4abc-9e-5d",
        "course": "course-v1:edX+Demo",
        "data": {"x": 0.5, "v": 1.5e-10, "w": 12.00001, "big": 1e16, "note": "2e-3x"},
    }
    assert dumps_fast(plain) == standard(plain)
    assert redone == []
    for odd in ({"x": 1e-7}, [2.5e-9], {"x": 1e-5}, {"x": float("nan")}, {"x": None}):
        assert dumps_fast(odd) == standard(odd)
    assert len(redone) == 5


@pytest.mark.slow
@given(json_data)
def test_spaced_output_is_what_json_dumps_writes_by_default(value: Any) -> None:
    assert dumps(value, spaced=True) == json.dumps(value)


# -- the one walker -----------------------------------------------------------------------------


def _upper(value: Any) -> Any:
    if isinstance(value, str):
        return value if value.isupper() else value.upper()  # final: returned as it is
    if isinstance(value, set):
        return sorted(value)
    return value


def test_walk_converts_every_leaf_and_walks_what_a_conversion_returns() -> None:
    assert walk({"a": ["x", ("y",)], "s": {"q", "p"}}, _upper) == {
        "a": ["X", ["Y"]],
        "s": ["P", "Q"],
    }


def test_walk_makes_keys_with_the_key_rule_and_keeps_colliding_keys_apart() -> None:
    assert walk({1: "a", "1": "b"}, _upper, key=str) == {"1~int": "A", "1": "B"}


def test_walk_marks_cycles_and_bounds_depth() -> None:
    assert walk(_cyclic(), _upper) == {"a": [1, CYCLE_MARKER]}
    deep = walk(_deep(10), _upper, max_depth=3)
    assert deep == [[[["list nested too deeply"]]]]


def test_walk_does_not_modify_its_input() -> None:
    data = {"a": ["x"], "s": {"q"}}
    walk(data, _upper)
    assert data == {"a": ["x"], "s": {"q"}}


def test_the_walker_also_makes_mongodb_documents() -> None:
    mongodb = pytest.importorskip("eventrouter.backends.mongodb")
    pytest.importorskip("bson")
    cyclic = _cyclic()
    document = mongodb.to_document(
        {
            "id": "e1",
            "data": {"a\x00b": 1, 7: "int", "7": "str", "lone": "\ud800", "raw": bytearray(b"x")},
            "context": {"big": 2**70, "when": dt.date(2024, 5, 1), "loop": cyclic},
        }
    )
    assert document["_id"] == "e1"
    assert document["data"] == {
        "a\ufffdb": 1,
        "7~int": "int",
        "7": "str",
        "lone": "\ufffd",
        "raw": b"x",
    }
    assert document["context"] == {
        "big": str(2**70),
        "when": "2024-05-01",
        "loop": {"a": [1, CYCLE_MARKER]},
    }
