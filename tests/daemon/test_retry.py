"""Retry policy: backoff schedule, jitter bounds, attempt limit, validity, link failures."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import DaemonConfig
from gateway.retry import Failure, GiveUp, RetryAt, RetryPolicy


class Fixed:
    """A random source that always returns ``value`` (0: no jitter, ~1: the most)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def schedule(policy: RetryPolicy, *, start: float, deadline: float | None,
             rng: Fixed | random.Random, failures: list[Failure]) -> list[RetryAt | GiveUp]:
    """Drive the policy with an injected clock: each retry happens exactly when asked."""
    now, attempts, out = start, 0, []
    for failure in failures:
        step = policy.after_failure(failure, attempts=attempts, now=now, deadline=deadline,
                                    rng=rng)
        out.append(step)
        if isinstance(step, GiveUp):
            break
        now, attempts = step.at, step.attempts
    return out


def test_exponential_capped_schedule_without_jitter() -> None:
    policy = RetryPolicy(max_attempts=8, base_s=5, factor=2, cap_s=60, jitter=0.0)
    steps = schedule(policy, start=1000.0, deadline=None, rng=Fixed(0.7),
                     failures=[Failure.TEMPORARY] * 10)
    assert steps == [
        RetryAt(1005.0, 1), RetryAt(1015.0, 2), RetryAt(1035.0, 3), RetryAt(1075.0, 4),
        RetryAt(1135.0, 5), RetryAt(1195.0, 6), RetryAt(1255.0, 7), GiveUp("failed", 8),
    ]


def test_jitter_shortens_the_wait_by_at_most_its_share() -> None:
    policy = RetryPolicy(base_s=10, jitter=0.5)
    assert policy.delay(1, Fixed(0.0)) == 10.0
    assert policy.delay(1, Fixed(0.5)) == 7.5
    assert policy.delay(1, Fixed(0.999999)) == pytest.approx(5.0, abs=1e-4)


def test_seeded_rng_gives_a_reproducible_schedule() -> None:
    policy = RetryPolicy()
    failures = [Failure.TEMPORARY] * 6
    a = schedule(policy, start=0, deadline=None, rng=random.Random(7), failures=failures)
    b = schedule(policy, start=0, deadline=None, rng=random.Random(7), failures=failures)
    c = schedule(policy, start=0, deadline=None, rng=random.Random(8), failures=failures)
    assert a == b
    assert a != c


def test_permanent_fails_at_once() -> None:
    policy = RetryPolicy()
    step = policy.after_failure(Failure.PERMANENT, attempts=0, now=0, deadline=None,
                                rng=Fixed(0))
    assert step == GiveUp("failed", 1)


def test_link_failure_reroutes_now_without_counting() -> None:
    policy = RetryPolicy(max_attempts=2, jitter=0.0)
    steps = schedule(policy, start=50.0, deadline=None, rng=Fixed(0),
                     failures=[Failure.LINK] * 20 + [Failure.TEMPORARY, Failure.LINK,
                                                     Failure.TEMPORARY])
    assert all(s == RetryAt(50.0, 0, reroute=True) for s in steps[:20])
    assert steps[20] == RetryAt(55.0, 1)
    assert steps[21] == RetryAt(55.0, 1, reroute=True)
    assert steps[22] == GiveUp("failed", 2)


def test_retry_past_the_deadline_expires_instead() -> None:
    policy = RetryPolicy(base_s=5, jitter=0.0)
    steps = schedule(policy, start=0.0, deadline=16.0, rng=Fixed(0),
                     failures=[Failure.TEMPORARY] * 5)
    # 5, 15, then 35 would be after the deadline: expired, not sent late.
    assert steps == [RetryAt(5.0, 1), RetryAt(15.0, 2), GiveUp("expired", 3)]


def test_failure_at_or_after_the_deadline_expires() -> None:
    policy = RetryPolicy()
    for failure in Failure:
        step = policy.after_failure(failure, attempts=2, now=100.0, deadline=100.0,
                                    rng=Fixed(0))
        assert isinstance(step, GiveUp) and step.reason == "expired"
    link = policy.after_failure(Failure.LINK, attempts=2, now=100.0, deadline=100.0,
                                rng=Fixed(0))
    assert link == GiveUp("expired", 2)  # a link failure still did not use an attempt


def test_from_config_counts_retries_after_the_first_attempt() -> None:
    assert RetryPolicy.from_config(DaemonConfig(max_retries=0)).max_attempts == 1
    assert RetryPolicy.from_config(DaemonConfig(max_retries=5)).max_attempts == 6
    policy = RetryPolicy.from_config(DaemonConfig(max_retries=0))
    assert policy.after_failure(Failure.TEMPORARY, attempts=0, now=0, deadline=None,
                                rng=Fixed(0)) == GiveUp("failed", 1)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"base_s": 0}, {"base_s": 10, "cap_s": 5}, {"factor": 0.5},
     {"jitter": 1.5}, {"jitter": -0.1}],
)
def test_bad_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_huge_failure_counts_stay_at_the_cap() -> None:
    assert RetryPolicy(cap_s=600).nominal_delay(10_000) == 600.0
    assert RetryPolicy(cap_s=600, factor=1e6).nominal_delay(100) == 600.0


POLICIES = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 12),
    base_s=st.floats(0.1, 30),
    factor=st.floats(1, 4),
    cap_s=st.just(900.0),
    jitter=st.floats(0, 1),
)


@given(
    policy=POLICIES,
    failures=st.lists(st.sampled_from(Failure), max_size=40),
    seed=st.integers(0, 2**32),
    start=st.floats(0, 1e9),
    validity=st.none() | st.floats(0, 1e5),
)
def test_schedule_properties(
    policy: RetryPolicy, failures: list[Failure], seed: int, start: float,
    validity: float | None,
) -> None:
    deadline = None if validity is None else start + validity
    steps = schedule(policy, start=start, deadline=deadline, rng=random.Random(seed),
                     failures=failures)
    now, attempts = start, 0
    for failure, step in zip(failures, steps, strict=False):
        if isinstance(step, RetryAt):
            assert step.at >= now
            assert deadline is None or step.at < deadline  # never after the validity
            if failure is Failure.LINK:
                assert step == RetryAt(now, attempts, reroute=True)
            else:
                assert failure is Failure.TEMPORARY
                assert step.attempts == attempts + 1 <= policy.max_attempts - 1
                nominal = policy.nominal_delay(step.attempts)
                wait = step.at - now
                assert nominal * (1 - policy.jitter) - 1e-6 <= wait
                assert wait <= nominal + 1e-6 <= policy.cap_s + 1e-6
            now, attempts = step.at, step.attempts
        else:
            assert step is steps[-1]
            assert step.attempts <= policy.max_attempts
            if step.reason == "failed":
                assert failure is Failure.PERMANENT or step.attempts == policy.max_attempts
