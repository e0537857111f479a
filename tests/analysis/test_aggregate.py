"""The aggregate the report is read from (qosinspect.analysis.aggregate): exact up to its bound,
within the stated relative error of numpy past it, and mergeable."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qosinspect.analysis.aggregate import Aggregate, Series, add_sorted, percentiles
from qosinspect.analysis.records import NO_TS, OUTCOMES, REPORT_EXCHANGE_COLUMNS, RowStore

ACC = 0.01
values_ns = st.lists(st.integers(1, 10**12), min_size=1, max_size=300)


def _unrounded(s: Series) -> dict[str, float]:
    """The sketch's p50/p90/p99 before rounding to the microsecond (the guarantee is on
    these; the report rounds them as it rounds exact ones)."""
    return s.quantiles_ms()


def _numpy(values: list[int] | np.ndarray, method: str = "linear") -> dict[str, float]:
    ms = np.asarray(values, dtype=np.float64) / 1e6
    return {f"p{p}": float(np.percentile(ms, p, method=method)) for p in (50, 90, 99)}


@settings(max_examples=200, deadline=None)
@given(values_ns, st.integers(1, 16))
def test_a_sketched_series_is_within_its_relative_error_of_numpy(values: list[int],
                                                                 bound: int) -> None:
    """Past the bound the percentiles come from a DDSketch: each of p50/p90/p99 within the
    relative accuracy of numpy's (linear interpolation, as the exact path), whatever the data."""
    s = Series(exact_up_to=bound, accuracy=ACC)
    s.add(np.array(values, dtype=np.int64))
    assert s.exact == (len(values) <= bound)
    if s.exact:
        return
    got, want = _unrounded(s), _numpy(values)
    for p in ("p50", "p90", "p99"):
        assert abs(got[p] - want[p]) <= ACC * abs(want[p]) * (1 + 1e-9), (p, got, want)
    assert s.n == len(values) and s.max_ns == max(values) and s.min_ns == min(values)


@pytest.mark.parametrize("dist", ["lognormal", "exponential", "uniform", "bimodal"])
def test_sketch_percentiles_on_random_latencies(dist: str) -> None:
    """200,000 random latencies, fed in batches as the folding does: within 1 % of numpy."""
    rng = np.random.default_rng(14)
    n = 200_000
    if dist == "lognormal":
        v = rng.lognormal(np.log(2e6), 1.5, n)
    elif dist == "exponential":
        v = rng.exponential(5e6, n)
    elif dist == "uniform":
        v = rng.uniform(1e3, 1e9, n)
    else:
        v = np.concatenate([rng.normal(1e6, 1e5, n // 2), rng.normal(9e9, 1e8, n // 2)])
    values = np.maximum(v, 1).astype(np.int64)
    s = Series()
    for part in np.array_split(values, 37):
        s.add(part)
    assert not s.exact
    got, want = _unrounded(s), _numpy(values)
    for p in ("p50", "p90", "p99"):
        assert abs(got[p] - want[p]) <= ACC * want[p], (p, got[p], want[p])
    assert s.percentiles()["max"] == round(values.max() / 1e6, 3)


@settings(max_examples=200, deadline=None)
@given(values_ns, values_ns, st.integers(1, 400))
def test_merging_two_series_is_the_series_of_both(a: list[int], b: list[int],
                                                   bound: int) -> None:
    """merge(a, b) == series(a + b): exact while both fit in the bound (same values), and
    the same sketch buckets past it (so the same percentiles)."""
    sa, sb, both = (Series(bound), Series(bound), Series(bound))
    sa.add(np.array(a, dtype=np.int64))
    sb.add(np.array(b, dtype=np.int64))
    both.add(np.array(a + b, dtype=np.int64))
    merged = sa.copy()
    merged.merge(sb)
    assert merged.exact == both.exact == (len(a) + len(b) <= bound)
    assert merged.percentiles() == both.percentiles()
    assert (merged.n, merged.min_ns, merged.max_ns) == (both.n, both.min_ns, both.max_ns)
    if merged.exact:
        assert sorted(merged.values().tolist()) == sorted(a + b)
    assert sa.n == len(a) and sb.n == len(b)        # the operands are left as they were


def test_an_exact_series_is_numpys_percentile_to_the_digit() -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 10**10, 65_536)
    s = Series()
    for part in np.array_split(values, 5):
        s.add(part)
    assert s.exact and s.percentiles() == percentiles(values)
    ms = values / 1e6
    assert s.percentiles()["p99"] == round(float(np.percentile(ms, 99)), 3)
    s.add(np.array([5], dtype=np.int64))            # one more: past the bound, a sketch
    assert not s.exact


def _rows(rng: np.random.Generator, n: int) -> Any:
    """Random finished-exchange rows in the report's columns (brokers 0..2)."""
    st_ = RowStore(REPORT_EXCHANGE_COLUMNS)
    for _ in range(n):
        qos = int(rng.integers(1, 3))
        t0 = int(rng.integers(10**18, 10**18 + 10**12))
        steps = [t0 + int(x) for x in np.cumsum(rng.integers(0, 10**8, 4))]
        have = rng.random(4) < 0.9
        t = [s if h else NO_TS for s, h in zip(steps, have, strict=True)]
        outcome = int(rng.integers(1, len(OUTCOMES)))
        end = t[0] if qos == 1 else t[3]
        st_.append(int(rng.integers(0, 50)), qos, t0, int(rng.integers(1, 4)),
                   int(rng.integers(0, 3)), t[0] if qos == 1 else NO_TS,
                   t[1] if qos == 2 else NO_TS, int(rng.integers(0, 3)),
                   t[2] if qos == 2 else NO_TS, int(rng.integers(0, 3)),
                   end if qos == 2 else NO_TS, end, outcome, int(rng.integers(0, 5)),
                   int(rng.integers(-2**40, 2**40)), int(rng.integers(0, 3)))
    return st_.view()


@pytest.mark.parametrize("bound", [10, 65_536])
def test_merging_two_aggregates_is_the_aggregate_of_both(bound: int) -> None:
    """Counters, outcomes and latency series of finished exchanges, per broker: folding two
    halves apart and merging equals folding everything (a batch of captures, two workers)."""
    rows = _rows(np.random.default_rng(7), 600)
    a, b, both = Aggregate(bound), Aggregate(bound), Aggregate(bound)
    a.fold(rows[:250])
    b.fold(rows[250:])
    both.fold(rows)
    for i in range(3):
        a.q0(i, i % 2)
        both.q0(i, i % 2)
    b.delivery(1, 2, 1, 1, 0)
    both.delivery(1, 2, 1, 1, 0)
    merged = a.copy()
    merged.merge(b)
    for broker in (None, 0, 1, 2):
        assert merged.qos_rows(broker) == both.qos_rows(broker)
    assert merged.sketched() == both.sketched()
    assert (not merged.sketched()) == (bound == 65_536)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=400),
       st.integers(-400, 400))
def test_add_sorted_fills_the_buckets_one_add_per_value_would(values: list[float],
                                                               edge: int) -> None:
    """Values added a bucket at a time (numpy's logarithms find the runs, the mapping's own key
    checks them) land in the buckets DDSketch's ``add`` of each value gives: values at and
    next to bucket edges included, where numpy's and math's logarithms may round apart."""
    from ddsketch import DDSketch, LogarithmicMapping

    mapping = LogarithmicMapping(ACC)
    edges = [mapping.gamma ** (edge + k) for k in range(-3, 4)]
    values = values + edges + [float(np.nextafter(e, np.inf)) for e in edges] + \
        [float(np.nextafter(e, -np.inf)) for e in edges] + [-e for e in edges]
    one, bulk = DDSketch(ACC), DDSketch(ACC)
    for v in values:
        one.add(v)
    add_sorted(bulk, np.sort(np.array(values)), ACC)
    assert bulk.count == one.count
    for q in np.linspace(0, 1, 101):
        assert bulk.get_quantile_value(q) == pytest.approx(one.get_quantile_value(q),
                                                           rel=1e-9, abs=1e-12)
