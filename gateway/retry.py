"""Retry policy: after a failed attempt, when to try again, or why to give up.

Pure arithmetic: the caller passes the failure class, how many message-level attempts were
made, the message's validity deadline, the time now and a random source; nothing here sleeps
or reads a clock.

Failure classes (DESIGN.md "Durability and delivery semantics"):

* ``TEMPORARY`` (message-level, e.g. SMPP ESME_RSYSERR, a modem's +CMS ERROR 500): counts as
  an attempt; retried after a capped exponential backoff with jitter, up to ``max_attempts``.
* ``PERMANENT`` (message-level, e.g. ESME_RINVDSTADR): fails at once; the caller keeps the code.
* ``LINK`` (the bind dropped, the modem hung): not the message's fault, so it does not count as
  an attempt; the message goes straight to another route (``reroute=True``) and only its
  deadline can end it.

A message never goes out after its validity deadline: a retry that would fall after it is
"expired" instead (issue 5, "Validity").

Backoff: the n-th temporary failure waits ``min(cap, base * factor**(n-1))`` scaled down by up
to ``jitter`` (0.5: between half and all of it), so a burst of failures does not come back as a
burst of retries, while the wait never drops below ``(1 - jitter)`` of the nominal one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.config import DaemonConfig


class Failure(enum.Enum):
    TEMPORARY = "temporary"
    PERMANENT = "permanent"
    LINK = "link"


class RandomSource(Protocol):
    """What we need of :class:`random.Random`: a float in [0, 1)."""

    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Try again at ``at``; ``attempts`` message-level attempts have been used so far."""

    at: float
    attempts: int
    reroute: bool = False


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop: ``failed`` (permanent, or out of attempts) or ``expired`` (validity passed)."""

    reason: Literal["failed", "expired"]
    attempts: int


Outcome = RetryAt | GiveUp


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    base_s: float = 5.0
    factor: float = 2.0
    cap_s: float = 600.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not (0 < self.base_s <= self.cap_s):
            raise ValueError("expected 0 < base_s <= cap_s")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")
        if not (0.0 <= self.jitter <= 1.0):
            raise ValueError("jitter must be within [0, 1]")

    @classmethod
    def from_config(cls, config: DaemonConfig) -> RetryPolicy:
        """``max_retries`` retries after the first attempt."""
        return cls(max_attempts=config.max_retries + 1)

    def nominal_delay(self, failures: int) -> float:
        """The wait after the ``failures``-th temporary failure, before jitter."""
        try:
            return min(self.cap_s, self.base_s * self.factor ** (failures - 1))
        except OverflowError:  # factor**n beyond a float: far past the cap anyway
            return self.cap_s

    def delay(self, failures: int, rng: RandomSource) -> float:
        return self.nominal_delay(failures) * (1.0 - self.jitter * rng.random())

    def after_failure(
        self,
        failure: Failure,
        *,
        attempts: int,
        now: float,
        deadline: float | None,
        rng: RandomSource,
    ) -> Outcome:
        """What to do after an attempt failed; ``attempts`` counts message-level attempts
        made before this one (the one that just failed is not included)."""
        if deadline is not None and now >= deadline:
            return GiveUp("expired", attempts + (failure is not Failure.LINK))
        if failure is Failure.LINK:
            return RetryAt(now, attempts, reroute=True)
        used = attempts + 1
        if failure is Failure.PERMANENT or used >= self.max_attempts:
            return GiveUp("failed", used)
        at = now + self.delay(used, rng)
        if deadline is not None and at >= deadline:
            return GiveUp("expired", used)
        return RetryAt(at, used)
