import pytest

from drivers.ratelimit import TokenBucket


def test_burst_then_steady_rate() -> None:
    b = TokenBucket(rate=2.0, burst=3.0, now=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    # the 4th token arrives after 1/rate seconds, the 5th after 2/rate
    assert b.take(0.0) == pytest.approx(0.5)
    assert b.take(0.0) == pytest.approx(1.0)


def test_parts_count_not_messages() -> None:
    b = TokenBucket(rate=10.0, burst=1.0, now=0.0)
    assert b.take(0.0, n=1) == 0.0
    assert b.take(0.0, n=3) == pytest.approx(0.3)


def test_refill_is_capped_at_burst() -> None:
    b = TokenBucket(rate=1.0, burst=2.0, now=0.0)
    b.take(0.0, 2)
    assert b.peek(100.0, 2) == 0.0
    assert b.peek(100.0, 3) == pytest.approx(1.0)


def test_rate_change_keeps_earned_tokens() -> None:
    b = TokenBucket(rate=1.0, burst=1.0, now=0.0)
    b.take(0.0)
    b.set_rate(4.0, now=0.5)  # 0.5 token earned at the old rate
    assert b.take(0.5) == pytest.approx(0.125)


def test_long_run_never_exceeds_rate() -> None:
    b = TokenBucket(rate=5.0, burst=1.0, now=0.0)
    now = 0.0
    sends = []
    for _ in range(100):
        now += b.take(now)
        sends.append(now)
    # 100 sends at 5/s with burst 1: the last one cannot be before 99/5 s
    assert sends[-1] == pytest.approx(99 / 5)
    assert b.statistics(now).taken == 100


@pytest.mark.parametrize("rate,burst", [(0, 1), (-1, 1), (1, 0.5)])
def test_bad_parameters_are_rejected(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst)
