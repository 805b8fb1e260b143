"""Pure pacing for a bind: adaptive rate on ESME_RTHROTTLED / ESME_RMSGQFUL, reconnect backoff.

Throttle handling is AIMD-like: a throttle response pauses sending briefly and cuts the rate
(multiplicative decrease from what the bind was really achieving); the rate then recovers
gradually (multiplicative increase per elapsed second) up to the configured ceiling, after
which, for a bind without a configured ceiling, the limit is lifted. Kannel-users and Sun JMS
(protocols.md §4.6) describe the "pause, then adjust the pages per bind" behaviour carriers want.
Time is passed in; nothing here sleeps.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass

from drivers.ratelimit import TokenBucket


def reconnect_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Capped exponential backoff with equal jitter: half fixed, half random, so a fleet of
    binds that dropped together does not come back in lockstep (naz #192, ksmppd #39)."""
    ceiling = min(cap, base * math.pow(2.0, min(attempt, 30)))
    return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


@dataclass(frozen=True, slots=True)
class RateStatistics:
    limit: float | None  # parts/s now allowed; None = unlimited
    ceiling: float | None
    throttles: int
    paused_until: float


class AdaptiveRate:
    def __init__(
        self,
        ceiling: float | None,
        *,
        now: float = 0.0,
        floor: float = 1.0,
        decrease: float = 0.5,
        recovery: float = 0.5,
        pause: float = 1.0,
    ) -> None:
        """``ceiling``: configured parts/s (None: unlimited until the carrier throttles);
        ``decrease``: factor applied on a throttle; ``recovery``: growth per second after it;
        ``pause``: seconds without sending after a throttle response."""
        self.ceiling = ceiling
        self.floor = floor
        self.decrease = decrease
        self.recovery = recovery
        self.pause = pause
        self._limit: float | None = ceiling
        self._base_limit: float | None = ceiling
        self._since = now
        self._paused_until = -math.inf
        self._throttles = 0
        self._bucket = TokenBucket(ceiling, max(1.0, ceiling / 10), now=now) if ceiling else None

    def limit(self, now: float) -> float | None:
        """The current parts/s limit, recovering since the last throttle."""
        if self._base_limit is None:
            return None
        grown = self._base_limit * math.pow(1.0 + self.recovery, max(0.0, now - self._since))
        if self.ceiling is not None:
            return min(self.ceiling, grown)
        if grown >= self._base_limit / self.decrease * 2:
            # Recovered well past where the carrier pushed back: lift the limit.
            self._base_limit = None
            self._bucket = None
            return None
        return grown

    def wait(self, now: float, parts: int = 1) -> float:
        """Reserve ``parts`` sends; seconds to wait before the first may go."""
        pause = self._paused_until - now
        limit = self.limit(now)
        if limit is None or self._bucket is None:
            return max(0.0, pause)
        if abs(self._bucket.rate - limit) > 1e-9:
            self._bucket.set_rate(limit, now)
        return max(pause, self._bucket.take(now, parts))

    def on_throttle(self, now: float, observed_rate: float) -> None:
        """A throttle response arrived; ``observed_rate`` is what the bind achieved lately."""
        self._throttles += 1
        current = self.limit(now)
        reference = observed_rate if current is None else min(current, max(observed_rate, 1.0))
        new = max(self.floor, reference * self.decrease)
        if self._paused_until > now:
            # The rest of an in-flight window answering "throttled" is one event, not many.
            new = max(new, self._base_limit or new)
        self._base_limit = new
        self._since = now
        self._paused_until = now + self.pause
        if self._bucket is None:
            self._bucket = TokenBucket(new, 1.0, now=now)
        else:
            self._bucket.set_rate(new, now)

    def statistics(self, now: float) -> RateStatistics:
        return RateStatistics(self.limit(now), self.ceiling, self._throttles, self._paused_until)


class RateMeter:
    """Events per second over a recent span, counted in 0.1 s buckets (constant memory)."""

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        self._buckets: deque[list[int]] = deque(maxlen=100)  # [bucket number, count]

    def add(self, now: float) -> None:
        bucket = int(now * 10)
        buckets = self._buckets
        if buckets and buckets[-1][0] == bucket:
            buckets[-1][1] += 1
        else:
            buckets.append([bucket, 1])

    def rate(self, now: float, span: float = 5.0) -> float:
        first = int((now - span) * 10)
        recent = [(b, n) for b, n in self._buckets if b > first]
        if not recent:
            return 0.0
        # Over a young bind, divide by the time it has really been sending.
        elapsed = min(span, max(now - recent[0][0] / 10, 0.1))
        return sum(n for _, n in recent) / elapsed
