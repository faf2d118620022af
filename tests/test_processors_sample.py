"""Sample: the kept fraction, per-key determinism, and stability across processes."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from eventrouter.errors import EventEmissionExit
from eventrouter.processors import Sample
from eventrouter.processors.sample import sample_point

KEYS = [f"user-{i}" for i in range(10_000)]


def ev(user_id: Any = None) -> dict[str, Any]:
    context = {} if user_id is None else {"user_id": user_id}
    return {"id": "e1", "name": "video.played", "data": {}, "context": context}


def kept(processor: Any, event: dict[str, Any]) -> bool:
    try:
        processor(event)
    except EventEmissionExit:
        return False
    return True


def bound(rate: float, n: int) -> float:
    """Six standard deviations of a binomial count: a hash this far off is broken."""
    return 6 * math.sqrt(n * rate * (1 - rate))


@pytest.fixture
def seeded_random() -> Iterator[None]:
    state = random.getstate()
    random.seed(20240131)
    yield
    random.setstate(state)


# options


@pytest.mark.parametrize("rate", [-0.1, 1.01, float("nan")])
def test_a_rate_outside_zero_to_one_is_a_value_error(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        Sample(rate)


@pytest.mark.parametrize("rate", [True, "0.5", None])
def test_a_rate_that_is_not_a_number_is_a_type_error(rate: Any) -> None:
    with pytest.raises(TypeError, match="rate"):
        Sample(rate)


def test_a_salt_longer_than_64_bytes_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="salt"):
        Sample(0.5, key="context.user_id", salt="x" * 65)


# random sampling


def test_rate_zero_drops_every_event() -> None:
    assert not any(kept(Sample(0.0), ev()) for _ in range(100))
    assert not any(kept(Sample(0, key="context.user_id"), ev(k)) for k in KEYS[:1000])


def test_rate_one_keeps_every_event() -> None:
    assert all(kept(Sample(1.0), ev()) for _ in range(100))
    assert all(kept(Sample(1, key="context.user_id"), ev(k)) for k in KEYS[:1000])


@pytest.mark.usefixtures("seeded_random")
def test_without_a_key_the_kept_fraction_is_the_rate() -> None:
    sample = Sample(0.3)
    count = sum(kept(sample, ev()) for _ in range(10_000))
    assert abs(count - 3_000) <= bound(0.3, 10_000)


@pytest.mark.usefixtures("seeded_random")
def test_events_without_the_key_are_sampled_at_random() -> None:
    sample = Sample(0.5, key="context.user_id")
    count = sum(kept(sample, ev()) for _ in range(10_000))
    assert abs(count - 5_000) <= bound(0.5, 10_000)


# keyed sampling


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.25, 0.5, 0.9])
def test_over_10000_keys_the_kept_fraction_is_the_rate(rate: float) -> None:
    sample = Sample(rate, key="context.user_id")
    count = sum(kept(sample, ev(key)) for key in KEYS)
    assert abs(count - rate * len(KEYS)) <= bound(rate, len(KEYS))


def test_all_events_of_one_key_share_their_fate() -> None:
    sample = Sample(0.5, key="context.user_id")
    for key in KEYS[:200]:
        assert len({kept(sample, ev(key)) for _ in range(5)}) == 1


def test_two_samplers_with_the_same_rate_keep_the_same_keys() -> None:
    first = Sample(0.2, key="context.user_id")
    second = Sample(0.2, key="data.user")
    assert [first.keeps(k) for k in KEYS] == [second.keeps(k) for k in KEYS]


def test_a_larger_rate_keeps_a_superset_of_the_keys() -> None:
    small, large = Sample(0.1, key="context.user_id"), Sample(0.3, key="context.user_id")
    assert all(large.keeps(k) for k in KEYS if small.keeps(k))


def test_a_salt_draws_a_different_sample() -> None:
    plain = Sample(0.5, key="context.user_id")
    salted = Sample(0.5, key="context.user_id", salt="experiment-2")
    assert [plain.keeps(k) for k in KEYS] != [salted.keeps(k) for k in KEYS]


def test_an_int_key_and_its_digits_are_the_same_key() -> None:
    sample = Sample(0.5, key="context.user_id")
    assert [sample.keeps(i) for i in range(1000)] == [sample.keeps(str(i)) for i in range(1000)]


def test_non_string_keys_are_sampled_deterministically() -> None:
    sample = Sample(0.5, key="context.user_id")
    key = {"org": "x", "ids": [1, 2]}
    assert len({sample.keeps(dict(key)) for _ in range(10)}) == 1


def test_the_hash_is_pinned() -> None:
    # Changing these changes which users every deployment keeps: never do it silently.
    assert sample_point("user-1") == 11145382709976293768
    assert sample_point("user-2") == 5050724062434257864
    assert sample_point(42) == 6319743179241711738


CHILD = """
import json, sys
from eventrouter.processors import Sample
sample = Sample(0.5, key="context.user_id")
print(json.dumps([sample.keeps(k) for k in json.loads(sys.stdin.read())]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("hash_seed", ["1", "4242"])
def test_decisions_are_the_same_in_another_process(hash_seed: str) -> None:
    keys = KEYS[:2000]
    environment = {**os.environ, "PYTHONHASHSEED": hash_seed}
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=json.dumps(keys),
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    sample = Sample(0.5, key="context.user_id")
    assert json.loads(result.stdout) == [sample.keeps(k) for k in keys]
