"""Pure rate limiting for binds and modems: a token bucket driven by an injected clock.

The bucket never sleeps and never reads the time itself: callers pass ``now`` (seconds from any
monotonic clock) and get back how long to wait. The asyncio layers only sleep for that long.
Parts count, not messages: a 3-part message takes 3 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BucketStatistics:
    rate: float
    burst: float
    tokens: float
    taken: int
    waits: int


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst`` tokens (>= 1).

    ``take(now, n)`` reserves ``n`` tokens and returns the seconds until they are really there
    (0.0 when they are available now). Reservations may drive the level negative, so concurrent
    takers queue up fairly in the order they called, each told its own wait.
    """

    __slots__ = ("_burst", "_last", "_rate", "_taken", "_tokens", "_waits")

    def __init__(self, rate: float, burst: float = 1.0, *, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 tokens per second, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1 token, got {burst!r}")
        self._rate = float(rate)
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = now
        self._taken = 0
        self._waits = 0

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float, now: float) -> None:
        """Change the rate (throttle handling); tokens earned so far are kept."""
        if rate <= 0:
            raise ValueError(f"rate must be > 0 tokens per second, got {rate!r}")
        self._refill(now)
        self._rate = float(rate)

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now

    def peek(self, now: float, n: int = 1) -> float:
        """Seconds until ``n`` tokens would be available, without taking them."""
        self._refill(now)
        missing = n - self._tokens
        return 0.0 if missing <= 0 else missing / self._rate

    def take(self, now: float, n: int = 1) -> float:
        """Reserve ``n`` tokens; return the seconds to wait before using them."""
        if n < 1:
            raise ValueError(f"take at least one token, got {n!r}")
        wait = self.peek(now, n)
        self._tokens -= n
        self._taken += n
        if wait > 0:
            self._waits += 1
        return wait

    def statistics(self, now: float) -> BucketStatistics:
        self._refill(now)
        return BucketStatistics(self._rate, self._burst, self._tokens, self._taken, self._waits)
