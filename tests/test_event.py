"""The envelope and the copy every router makes."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventrouter.event import build_event, copy_event, new_event_id

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=40,
)


def mutable_ids(value: Any) -> set[int]:
    """The ids of every dict and list reachable from ``value``."""
    found: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.add(id(item))
            stack.extend(item.values())
        elif isinstance(item, list):
            found.add(id(item))
            stack.extend(item)
    return found


def same_structure(a: Any, b: Any) -> bool:
    """Equality that also tells True from 1, 0.0 from -0.0 and NaN from NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_structure(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_structure(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)


@pytest.mark.slow
@given(json_values)
def test_copy_of_json_like_data_is_exact(value: Any) -> None:
    assert same_structure(copy_event(value), value)


@pytest.mark.slow
@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_copy_shares_no_mutable_container_with_the_original(value: dict[str, Any]) -> None:
    assert mutable_ids(copy_event(value)).isdisjoint(mutable_ids(value))


def test_copy_keeps_rich_values_equal_and_their_types() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    original = {
        "when": when,
        "price": Decimal("9.99"),
        "uid": uuid.UUID(int=7),
        "pair": (1, [2, 3]),
        "tags": {"a", "b"},
        "frozen": frozenset({(1, 2)}),
        "raw": b"\x00\x01",
    }
    copied = copy_event(original)
    assert copied == original
    assert {k: type(v) for k, v in copied.items()} == {k: type(v) for k, v in original.items()}
    assert copied["pair"][1] is not original["pair"][1]
    assert copied["tags"] is not original["tags"]


class Point:
    def __init__(self, xs: list[int]) -> None:
        self.xs = xs

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and other.xs == self.xs

    __hash__ = None  # type: ignore[assignment]


def test_unknown_objects_are_deep_copied() -> None:
    original = {"p": Point([1, 2])}
    copied = copy_event(original)
    assert copied == original
    assert copied["p"] is not original["p"]
    assert copied["p"].xs is not original["p"].xs


def test_dict_subclasses_are_copied_with_their_type() -> None:
    from collections import OrderedDict

    original = {"o": OrderedDict(b=[1], a=2)}
    copied = copy_event(original)
    assert type(copied["o"]) is OrderedDict
    assert copied["o"] == original["o"]
    assert copied["o"]["b"] is not original["o"]["b"]


def test_an_object_that_cannot_be_deep_copied_is_shared_not_lost() -> None:
    import threading

    lock = threading.Lock()
    copied = copy_event({"lock": lock, "data": [1]})
    assert copied["lock"] is lock
    assert copied["data"] == [1]


def test_cyclic_data_is_copied_with_its_cycle() -> None:
    node: dict[str, Any] = {"name": "a", "children": []}
    node["children"].append(node)
    copied = copy_event(node)
    assert copied is not node
    assert copied["children"][0] is copied


def test_cycle_through_a_tuple_is_copied() -> None:
    holder: list[Any] = []
    pair = (1, holder)
    holder.append(pair)
    copied = copy_event({"pair": pair})
    assert copied["pair"][1][0] is copied["pair"]
    assert copied["pair"][1] is not holder


@pytest.mark.slow
def test_very_deep_data_is_copied_without_recursion_error() -> None:
    root: list[Any] = []
    current = root
    for _ in range(50_000):
        child: list[Any] = []
        current.append({"next": child})
        current = child
    copied = copy_event(root)
    depth = 0
    walker: Any = copied
    while walker:
        walker = walker[0]["next"]
        depth += 1
    assert depth == 50_000


def test_build_event_has_the_envelope_fields() -> None:
    event = build_event("video.played", {"id": 1}, context={"user_id": 5})
    assert set(event) == {"id", "name", "timestamp", "data", "context"}
    assert str(uuid.UUID(event["id"])) == event["id"]
    assert event["timestamp"].tzinfo is dt.UTC
    assert event["data"] == {"id": 1}
    assert event["context"] == {"user_id": 5}


def test_build_event_ids_are_unique() -> None:
    assert len({build_event("a")["id"] for _ in range(1000)}) == 1000


def test_event_ids_are_version_4_uuids_in_their_canonical_spelling() -> None:
    for _ in range(2000):  # every bit pattern of the version and variant bytes shows up
        made = new_event_id()
        parsed = uuid.UUID(made)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == made


def test_build_event_treats_naive_timestamps_as_utc_and_converts_aware_ones() -> None:
    naive = dt.datetime(2026, 5, 1, 12, 0)
    assert build_event("a", timestamp=naive)["timestamp"] == naive.replace(tzinfo=dt.UTC)
    plus_two = dt.datetime(2026, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    converted = build_event("a", timestamp=plus_two)["timestamp"]
    assert converted.tzinfo is dt.UTC
    assert converted.hour == 12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((None, {}), "event name must be a str, not NoneType"),
        ((b"video", {}), "event name must be a str, not bytes"),
        (("video", ["not", "a", "mapping"]), "event data must be a mapping or None, not list"),
        (("video", "text"), "event data must be a mapping or None, not str"),
    ],
)
def test_wrong_argument_types_raise_type_error_naming_the_argument(
    args: tuple[Any, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        build_event(*args)


def test_empty_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        build_event("")


def test_mapping_data_is_taken_as_a_dict() -> None:
    from types import MappingProxyType

    event = build_event("a", MappingProxyType({"x": 1}))
    assert type(event["data"]) is dict
    assert event["data"] == {"x": 1}


class Link:
    def __init__(self, next_link: Link | None) -> None:
        self.next = next_link


@pytest.mark.slow
def test_objects_too_deep_for_deepcopy_are_shared_instead_of_raising() -> None:
    chain: Link | None = None
    for _ in range(20_000):
        chain = Link(chain)
    copied = copy_event({"chain": chain, "data": [1]})
    assert copied["chain"] is chain
    assert copied["data"] == [1]
