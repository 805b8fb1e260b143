"""Pure pacing: adaptive rate after throttle responses, reconnect backoff; plain numbers."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from drivers.smpp.throttle import AdaptiveRate, reconnect_delay


@given(st.integers(0, 100), st.floats(0.01, 5), st.floats(5, 300), st.integers(0, 2**32))
def test_reconnect_delay_is_jittered_exponential_and_capped(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    ceiling = min(cap, base * 2**attempt)
    d = reconnect_delay(attempt, base, cap, random.Random(seed))
    assert ceiling / 2 <= d <= ceiling


def test_reconnect_delays_spread_out() -> None:
    rng = random.Random(1)
    delays = {round(reconnect_delay(3, 1.0, 60.0, rng), 3) for _ in range(20)}
    assert len(delays) > 10  # jitter: a fleet does not come back in lockstep


def test_unlimited_until_throttled() -> None:
    r = AdaptiveRate(None)
    assert all(r.wait(0.0) == 0.0 for _ in range(1000))
    assert r.limit(0.0) is None


def test_throttle_pauses_then_cuts_the_rate_to_half_of_what_was_achieved() -> None:
    r = AdaptiveRate(None, pause=1.0, recovery=0.0)  # no recovery: measure the cut alone
    r.on_throttle(10.0, observed_rate=400.0)
    assert r.limit(10.0) == 200.0
    assert r.wait(10.0) >= 1.0  # paused
    # after the pause, paced at the cut rate: 200 sends take about one second
    waits = [r.wait(11.0) for _ in range(200)]
    assert 0.9 <= max(waits) <= 1.1


def test_one_window_of_throttles_is_one_cut() -> None:
    r = AdaptiveRate(None, pause=1.0)
    r.on_throttle(10.0, 400.0)
    for i in range(63):  # the rest of an in-flight window answered "throttled" too
        r.on_throttle(10.0 + i / 1000, 10.0)
    assert r.limit(10.1) is not None and r.limit(10.1) >= 200.0  # type: ignore[operator]
    assert r.statistics(10.1).throttles == 64


def test_recovers_gradually_to_the_ceiling() -> None:
    r = AdaptiveRate(100.0, pause=0.5, recovery=0.5)
    r.on_throttle(0.0, observed_rate=100.0)
    assert r.limit(0.0) == 50.0
    assert 50.0 < r.limit(1.0) < 100.0  # type: ignore[operator]
    assert r.limit(10.0) == 100.0  # never above the configured ceiling


def test_unconfigured_limit_is_lifted_after_recovering() -> None:
    r = AdaptiveRate(None, pause=0.1, recovery=0.5)
    r.on_throttle(0.0, 1000.0)
    assert r.limit(1.0) is not None
    assert r.limit(60.0) is None
    assert r.wait(60.0) == 0.0


def test_floor_keeps_a_trickle() -> None:
    r = AdaptiveRate(None, floor=2.0)
    r.on_throttle(0.0, observed_rate=0.0)
    assert r.limit(0.0) == 2.0
