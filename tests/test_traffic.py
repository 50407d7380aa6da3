"""The routing table on its own: split checks, weighted and sticky choice, shadow, table building."""

from __future__ import annotations

import math
import random

import pytest

from nbdeploy.serve.traffic import (
    RoutingTable,
    SplitError,
    check_key,
    key_point,
    normalize_split,
    pick,
    table_from_rows,
)


def test_normalize_split_accepts_ints_strings_and_v_prefix() -> None:
    assert normalize_split({4: 10, "3": 90}) == {3: 90, 4: 10}
    assert normalize_split({"v2": 50, "V1": 50.0}) == {1: 50, 2: 50}
    assert list(normalize_split({9: 30, 2: 70})) == [2, 9]  # sorted by version
    assert normalize_split(None) == {}
    assert normalize_split({}) == {}


@pytest.mark.parametrize(
    ("weights", "words"),
    [
        ({3: 90, 4: 20}, "add up to 110"),
        ({3: 90}, "add up to 90"),
        ({3: -10, 4: 110}, "v3 is -10"),
        ({3: 50.5, 4: 49.5}, "whole percentage"),
        ({3: "90", 4: 10}, "weight of v3"),
        ({"three": 100}, "'three' is not a version"),
        ({0: 100}, "versions count from 1"),
        ({True: 100}, "not a version"),
        ({3: 50, "3": 50}, "v3 twice"),
        ([(3, 100)], "mapping"),
    ],
)
def test_normalize_split_rejects_with_a_reason(weights: object, words: str) -> None:
    with pytest.raises(SplitError) as err:
        normalize_split(weights)  # type: ignore[arg-type]
    assert words in str(err.value)


def test_pick_follows_cumulative_weights() -> None:
    weights = ((3, 90), (4, 10))
    assert pick(weights, 0.0) == 3
    assert pick(weights, 0.8999) == 3
    assert pick(weights, 0.9) == 4
    assert pick(weights, 0.99999) == 4


def test_weighted_choice_matches_weights_within_four_sigma() -> None:
    table = RoutingTable("m", serving=3, split=((3, 80), (4, 20)))
    rng = random.Random(7)
    n = 20_000
    hits = sum(table.choose(None, rng.random()) == 4 for _ in range(n))
    sigma = math.sqrt(n * 0.2 * 0.8)
    assert abs(hits - 0.2 * n) < 4 * sigma


def test_sticky_keys_are_deterministic_and_spread_by_weight() -> None:
    table = RoutingTable("m", serving=1, split=((1, 50), (2, 50)))
    keys = [f"user-{i}" for i in range(2000)]
    first = {k: table.choose(k) for k in keys}
    # the same key always lands on the same version, whatever random draw comes with it
    assert all(table.choose(k, rand) == first[k] for k in keys[:200] for rand in (0.0, 0.99))
    share = sum(v == 2 for v in first.values()) / len(keys)
    assert abs(share - 0.5) < 4 * math.sqrt(0.25 / len(keys))
    # a fixed value: blake2b, not Python's per-process salted hash(), so every router agrees
    assert key_point("user-1") == pytest.approx(0.6041924073669338, abs=1e-15)
    assert 0.0 <= key_point("") < 1.0


def test_sticky_key_keeps_its_version_when_the_canary_grows() -> None:
    small = RoutingTable("m", split=((1, 90), (2, 10)))
    large = RoutingTable("m", split=((1, 50), (2, 50)))
    keys = [f"k{i}" for i in range(1000)]
    # keys already on the canary stay there when its share grows (points do not move)
    assert all(large.choose(k) == 2 for k in keys if small.choose(k) == 2)


def test_no_split_means_the_serving_version_and_single_entry_split_pins() -> None:
    assert RoutingTable("m", serving=5).choose("any") == 5
    assert RoutingTable("m").choose() is None
    assert RoutingTable("m", serving=5, split=((6, 100),)).choose(None, 0.1) == 6


def test_shadow_never_mirrors_to_itself() -> None:
    table = RoutingTable("m", serving=2, shadow=3)
    assert table.shadow_for(2) == 3
    assert table.shadow_for(3) is None
    assert RoutingTable("m", serving=2).shadow_for(2) is None


def test_check_key_limits_length() -> None:
    assert check_key(None) is None
    assert check_key("") is None
    assert check_key("abc") == "abc"
    with pytest.raises(SplitError, match="under 256"):
        check_key("x" * 300)


def test_table_from_rows_reads_registry_shapes() -> None:
    dep = {"serving_version": 2, "split": {"1": 20, "2": 80, "3": 0}, "shadow_version": 3}
    rows = [
        {"version": 1, "pid": 11, "host": "127.0.0.1", "port": 5001},
        {"version": 2, "pid": 12, "host": "0.0.0.0", "port": 5002},
        {"version": 3, "pid": None, "host": "127.0.0.1", "port": 5003},  # stopped
    ]
    table = table_from_rows("m", dep, rows, generation=4)
    assert table.serving == 2
    assert table.split == ((1, 20), (2, 80))  # zero weight dropped
    assert table.shadow == 3
    assert table.url(1) == "http://127.0.0.1:5001"
    assert table.url(2) == "http://127.0.0.1:5002"  # 0.0.0.0 is reached on loopback
    assert table.url(3) is None
    assert table.to_dict()["split"] == {"1": 20, "2": 80}
    assert table.generation == 4


def test_table_from_rows_raw_json_invalid_split_and_missing_deployment() -> None:
    raw = table_from_rows("m", {"serving_version": 1, "split_json": '{"1": 30, "2": 70}'}, [])
    assert raw.split == ((1, 30), (2, 70))
    broken = table_from_rows("m", {"serving_version": 1, "split": {"1": 30}}, [])
    assert broken.split == () and broken.choose() == 1
    empty = table_from_rows("m", None, [], generation=2)
    assert empty.serving is None and empty.choose() is None and empty.generation == 2


def test_same_routes_ignores_generation_only() -> None:
    a = RoutingTable("m", serving=1, urls={1: "http://x:1"}, generation=1)
    b = RoutingTable("m", serving=1, urls={1: "http://x:1"}, generation=9)
    c = RoutingTable("m", serving=1, urls={1: "http://x:2"}, generation=1)
    assert a.same_routes(b)
    assert not a.same_routes(c)
    assert not a.same_routes(None)
