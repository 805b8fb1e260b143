"""Per-modem sending limits, pure (no clock reads, no sleeping): parts per minute (the token
bucket in :mod:`drivers.ratelimit`), parts per day with a reset time, and a random gap.

Carriers block consumer SIMs that send too much or in bursts (field-failures.md §15:
per-day limits with a reset time and "random delay between every messages" are what users of
SIM-based gateways ask for). Every part counts, not every message.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from drivers.modem.config import ModemConfig
from drivers.ratelimit import TokenBucket


class DailyCap:
    """At most ``limit`` parts per day; the day starts at ``reset`` (UTC time of day)."""

    def __init__(self, limit: int | None, reset: time) -> None:
        self.limit = limit
        self.reset = reset
        self._day_start: datetime | None = None
        self.count = 0

    def _start_of_day(self, now: datetime) -> datetime:
        start = now.replace(
            hour=self.reset.hour, minute=self.reset.minute, second=self.reset.second,
            microsecond=0,
        )
        return start if start <= now else start - timedelta(days=1)

    def _roll(self, now: datetime) -> None:
        start = self._start_of_day(now)
        if start != self._day_start:
            self._day_start = start
            self.count = 0

    def sent_today(self, now: datetime) -> int:
        self._roll(now)
        return self.count

    def seconds_blocked(self, now: datetime, parts: int = 1) -> float:
        """0 when ``parts`` more fit today, else the seconds until the next reset."""
        self._roll(now)
        if self.limit is None or self.count + parts <= self.limit:
            return 0.0
        assert self._day_start is not None
        return (self._day_start + timedelta(days=1) - now).total_seconds()

    def add(self, now: datetime, parts: int = 1) -> None:
        self._roll(now)
        self.count += parts


RATE_MARGIN = 0.005


@dataclass(slots=True)
class ModemLimits:
    """Everything that decides when one modem may send its next part."""

    bucket: TokenBucket
    daily: DailyCap
    gap: tuple[float, float]
    rng: random.Random

    @classmethod
    def from_config(cls, config: ModemConfig, now: float, rng: random.Random) -> ModemLimits:
        # Burst 1: evenly spaced parts, never a burst. The 0.5 % margin absorbs scheduling
        # jitter, so no 60-second window as the carrier sees it ever holds more than the cap.
        rate = config.rate_per_minute / 60.0 * (1.0 - RATE_MARGIN)
        return cls(
            TokenBucket(rate, burst=1.0, now=now),
            DailyCap(config.parts_per_day, config.day_reset),
            config.random_gap,
            rng,
        )

    def wait_before(self, now: float, wall: datetime, parts: int = 1) -> float:
        """Seconds until this modem may start ``parts`` more parts (peek, nothing reserved)."""
        return max(self.daily.seconds_blocked(wall, parts), self.bucket.peek(now))

    def take(self, now: float, wall: datetime) -> float:
        """Reserve one part; return the seconds to wait before sending it (gap included).

        The random gap comes first and the bucket is charged at ``now + gap``, so the instants
        parts are released at are the bucket's own (spaced by the rate). A gap added after the
        bucket's instant would let a long gap followed by a short one put two parts closer
        together than the cap allows."""
        lo, hi = self.gap
        gap = self.rng.uniform(lo, hi) if hi > 0 else 0.0
        self.daily.add(wall)
        return gap + self.bucket.take(now + gap)
