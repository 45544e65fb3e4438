"""The storm's latency histogram: bounded error, nearest-rank percentiles, exact merges."""

from __future__ import annotations

import json
import math
import random

import pytest

from tsunagu.storm.histogram import SCALE, Histogram, _bounds, _index


def of(values) -> Histogram:
    h = Histogram()
    for v in values:
        h.record(v)
    return h


def nearest_rank(values, q):
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered) / 100)) - 1]


def spread_values(rng: random.Random, n: int) -> list[float]:
    """Latencies from microseconds to hours, and some exact zeros."""
    return [0.0 if rng.random() < 0.02 else 10 ** rng.uniform(-3, 7) for _ in range(n)]


def test_buckets_tile_the_quantised_values_without_gaps():
    previous_upper = -1
    for i in range(4000):
        lo, hi = _bounds(i)
        assert lo == previous_upper + 1
        assert _index(lo) == i and _index(hi) == i
        if lo >= 256:
            assert (hi + 1 - lo) / lo <= 1 / 128
        previous_upper = hi


def test_empty_histogram_has_no_statistics():
    s = Histogram().summary()
    assert s == {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None,
                 "histogram": {"scale": SCALE, "sub_buckets": 128, "count": 0, "min": None, "max": None,
                               "sum_units": 0, "buckets": []}}


def test_one_value_is_every_percentile():
    h = of([12.5])
    assert (h.count, h.mean, h.min, h.max) == (1, 12.5, 12.5, 12.5)
    assert h.percentiles(0, 50, 99, 100) == [12.5, 12.5, 12.5, 12.5]


def test_nearest_rank_reports_the_upper_edge_of_the_bucket():
    h = of(float(v) for v in range(1, 101))
    # 50 ms = 5e7 units lies in the bucket [190 << 18, (191 << 18) - 1]
    assert h.percentile(50) == ((191 << 18) - 1) / SCALE == 50.069503
    assert h.percentile(0) == 1.0 and h.percentile(100) == 100.0
    assert h.mean == 50.5


def test_percentile_ranks_are_not_bent_by_binary_fractions():
    h = of(n / SCALE for n in range(1, 1001))  # 999 and 1000 units fall in different buckets
    # rank ceil(99.9 / 100 * 1000) = 999, not the 1000 that 99.9 * 1000 in floats would give
    assert h.percentile(99.9) == 999 / SCALE
    assert h.percentile(100) == 1000 / SCALE


@pytest.mark.parametrize("seed", range(3))
def test_percentiles_stay_within_one_percent_above_the_true_value(seed):
    values = spread_values(random.Random(seed), 3000)
    h = of(values)
    for q in (0, 1, 10, 50, 90, 95, 99, 99.9, 100):
        true, got = nearest_rank(values, q), h.percentile(q)
        assert true - 0.5 / SCALE <= got <= true * (1 + 1 / 128) + 1 / SCALE, (q, true, got)
    assert h.count == len(values) and h.min == min(values) and h.max == max(values)
    assert h.mean == pytest.approx(sum(values) / len(values), abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_merging_gives_exactly_what_one_histogram_would_have_recorded(seed):
    rng = random.Random(seed)
    values = spread_values(rng, 2000)
    parts: list[list[float]] = [[] for _ in range(rng.randint(2, 6))]
    for v in values:
        rng.choice(parts).append(v)
    shards = [of(p) for p in parts]
    whole = of(values)
    assert Histogram.merged(shards) == whole
    assert Histogram.merged(reversed(shards)) == whole
    # through JSON, as Locust workers hand them to the master
    wired = [Histogram.from_dict(json.loads(json.dumps(s.to_dict()))) for s in shards]
    assert Histogram.merged(wired).to_dict() == whole.to_dict()
    assert Histogram.merged(wired).summary() == whole.summary()


def test_merging_an_empty_histogram_changes_nothing():
    h = of([3.0, 4.0])
    assert of([3.0, 4.0]).merge(Histogram()) == h
    assert Histogram().merge(h) == h


def test_to_dict_keeps_only_the_buckets_that_hold_values():
    d = of([1.0, 1.0, 2.0, 1000.0]).to_dict()
    assert d["buckets"] == [[_index(1_000_000), 2], [_index(2_000_000), 1], [_index(1_000_000_000), 1]]
    assert d["sum_units"] == 1_004_000_000


def test_from_dict_refuses_another_layout_or_inconsistent_counts():
    d = of([1.0]).to_dict()
    with pytest.raises(ValueError, match="layout"):
        Histogram.from_dict({**d, "sub_buckets": 64})
    with pytest.raises(ValueError, match="add up"):
        Histogram.from_dict({**d, "count": 2})


@pytest.mark.parametrize("bad", [-0.001, math.inf, math.nan])
def test_negative_or_non_finite_values_are_refused(bad):
    with pytest.raises(ValueError):
        Histogram().record(bad)


def test_buckets_give_plot_edges_in_value_units():
    assert list(of([0.0, 0.0001]).buckets()) == [(0.0, 1e-6, 1), (100e-6, 101e-6, 1)]
