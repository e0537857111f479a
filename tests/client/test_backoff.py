"""The reconnection back-off schedule and the reconnection record (pure)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qosinspect.client.reconnect import Backoff, ReconnectEvent


def test_delays_grow_by_factor_up_to_maximum_without_jitter() -> None:
    delays = list(itertools.islice(Backoff(0.1, 1.0, 2.0, 0.0).delays(), 6))
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_max_attempts_bounds_the_schedule() -> None:
    assert len(list(Backoff(max_attempts=3).delays())) == 3


@settings(max_examples=60, deadline=None)
@given(initial=st.floats(0, 5), extra=st.floats(0, 60), factor=st.floats(1, 4),
       jitter=st.floats(0, 0.99), seed=st.integers(0, 2 ** 32))
def test_every_delay_stays_within_jitter_and_maximum(initial: float, extra: float,
                                                     factor: float, jitter: float,
                                                     seed: int) -> None:
    policy = Backoff(initial, initial + extra, factor, jitter)
    base = initial
    for delay in itertools.islice(policy.delays(random.Random(seed)), 20):
        assert 0 <= delay <= policy.maximum
        assert delay >= base * (1 - jitter) - 1e-9
        base = min(policy.maximum, base * factor)


@pytest.mark.parametrize("kwargs", [{"initial": -1}, {"initial": 2, "maximum": 1},
                                    {"factor": 0.5}, {"jitter": 1.0}, {"max_attempts": 0}])
def test_bad_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_reconnect_event_gap() -> None:
    event = ReconnectEvent(ts_ns=3_500_000_000, t_lost_ns=1_000_000_000, cause="reset",
                           session_present=True, attempts=2, conn_id=1, previous_conn_id=0)
    assert event.gap_ns == 2_500_000_000
    assert event.gap_s == pytest.approx(2.5)
