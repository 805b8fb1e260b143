"""The outbox's state machine as pure data and functions: no SQLite, no clock, no I/O.

``gateway.outbox`` stores what these functions decide. Keeping the rules here lets Hypothesis
drive every (state, input) pair without a database.

Message states (DESIGN.md "Durability and delivery semantics")::

    queued ─┬─> sending ─┬─> submitted ─┬─> delivered
    scheduled┘     │     │              ├─> undeliverable
                   │     │              ├─> expired      (the carrier gave up: report EXPIRED)
                   │     │              └─> unknown      (no report in dlr_unknown_after_s)
                   │     ├─> queued      (temporary error: backoff; link error; crash recovery;
                   │     │                only while a part is still unsent)
                   │     ├─> failed      (permanent error, or retries used up)
                   │     └─> expired     (retry would fall past the validity deadline)
    queued/scheduled ─> expired (deadline passed before sending), cancelled
    failed ─> queued (operator retry)

A message is handed out whole (all its unsent parts on one route), but each part keeps its own
carrier id and state, because delivery reports come per part (field-failures.md §3.5).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Lane(enum.IntEnum):
    """Priority lanes, claimed in this order (lower value first)."""

    TRANSACTIONAL = 0  # API, OTP: waits for no campaign
    AUTOMATION = 1  # triggered by events (cart reminders, ...)
    CAMPAIGN = 2  # bulk


class State(enum.StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


class PartState(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


WAITING: frozenset[State] = frozenset({State.QUEUED, State.SCHEDULED})
"""Not yet handed to a driver: may be claimed, cancelled or expire."""

FINAL: frozenset[State] = frozenset(
    {State.DELIVERED, State.UNDELIVERABLE, State.EXPIRED, State.FAILED, State.CANCELLED}
)
"""No further change except an operator retry of ``failed``. ``unknown`` is not final: a late
report may still turn it into delivered or undeliverable."""

TRANSITIONS: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({
        State.SENDING, State.EXPIRED, State.CANCELLED,
        # waiting to resend some parts while a report for an earlier part says it failed
        State.UNDELIVERABLE,
    }),
    State.SCHEDULED: frozenset({State.SENDING, State.EXPIRED, State.CANCELLED}),
    State.SENDING: frozenset({
        State.SUBMITTED, State.QUEUED, State.FAILED, State.EXPIRED,
        # a report can overtake the submit response of the last part (field-failures.md §3.4)
        State.DELIVERED, State.UNDELIVERABLE,
    }),
    State.SUBMITTED: frozenset({
        State.DELIVERED, State.UNDELIVERABLE, State.EXPIRED, State.UNKNOWN,
    }),
    State.UNKNOWN: frozenset({State.DELIVERED, State.UNDELIVERABLE, State.EXPIRED}),
    State.FAILED: frozenset({State.QUEUED}),
    State.DELIVERED: frozenset(),
    State.UNDELIVERABLE: frozenset(),
    State.EXPIRED: frozenset(),
    State.CANCELLED: frozenset(),
}


def can_move(old: State, new: State) -> bool:
    return new == old or new in TRANSITIONS[old]


class ReportOutcome(enum.StrEnum):
    """What a delivery report says about one part (SMPP 3.4 Appendix B ``stat:`` / §5.2.28
    ``message_state``; 3GPP TS 23.040 §9.2.3.15 TP-Status for modems)."""

    DELIVERED = "delivered"  # DELIVRD / TP-ST 0x00-0x02
    UNDELIVERABLE = "undeliverable"  # UNDELIV, REJECTD, DELETED / TP-ST 0x40-0x7F permanent
    EXPIRED = "expired"  # EXPIRED / TP-ST 0x46 validity period expired
    UNKNOWN = "unknown"  # UNKNOWN: the carrier itself does not know
    ENROUTE = "enroute"  # ENROUTE, ACCEPTD / TP-ST 0x20-0x3F: intermediate, still trying


_PART_FROM_REPORT: dict[ReportOutcome, PartState] = {
    ReportOutcome.DELIVERED: PartState.DELIVERED,
    ReportOutcome.UNDELIVERABLE: PartState.UNDELIVERABLE,
    ReportOutcome.EXPIRED: PartState.EXPIRED,
    ReportOutcome.UNKNOWN: PartState.UNKNOWN,
}

PART_REPORTED: frozenset[PartState] = frozenset(
    {PartState.DELIVERED, PartState.UNDELIVERABLE, PartState.EXPIRED}
)


def part_after_report(current: PartState, outcome: ReportOutcome) -> PartState:
    """A part's state after a report. Final outcomes win; intermediate ones change nothing.

    A final report is never overridden by a later one (carriers repeat reports), and a report
    can arrive while the part is still ``sending`` (the report overtook the submit response).
    """
    if current in PART_REPORTED or current in (PartState.FAILED, PartState.CANCELLED):
        return current
    new = _PART_FROM_REPORT.get(outcome)
    if new is None:
        return current
    if new == PartState.UNKNOWN and current not in (PartState.SUBMITTED, PartState.SENDING):
        return current
    return new


def aggregate(parts: Iterable[str]) -> State | None:
    """A sent message's state from its parts' states; None while reports are still due.

    Rules, in order:
      1. any part undeliverable              -> undeliverable (the recipient misses text)
      2. any part expired at the carrier     -> expired
      3. every part delivered                -> delivered
      4. every part has an answer, some of them "unknown" (no report in time, or the carrier
         said UNKNOWN)                      -> unknown (never "delivered" without proof)
      5. otherwise                           -> None: keep waiting for reports
    """
    # ``parts`` may be PartState members or their raw values (PartState is a StrEnum).
    states = set(parts)
    if not states:
        return None
    if PartState.UNDELIVERABLE in states:
        return State.UNDELIVERABLE
    if PartState.EXPIRED in states:
        return State.EXPIRED
    if states == _DELIVERED_ONLY:
        return State.DELIVERED
    if states <= _ANSWERED:
        return State.UNKNOWN
    return None


_DELIVERED_ONLY = frozenset({PartState.DELIVERED})
_ANSWERED = frozenset({PartState.DELIVERED, PartState.UNKNOWN})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff for temporary errors: base, 2*base, 4*base, ... <= cap, each
    spread by up to ``jitter`` (a fraction) either way.

    Without the spread, messages that failed together (a carrier's queue full, a bind that
    dropped a window of submits) come back together, attempt after attempt, and hit the same
    wall in lock-step. The spread never goes past the cap (at the cap it only shortens)."""

    base_s: float = 5.0
    cap_s: float = 600.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"retry jitter is a fraction in [0, 1), got {self.jitter}")

    def delay_ms(self, attempt: int, u: float = 0.5) -> int:
        """Delay before retry number ``attempt`` (1 for the first retry); ``u`` in [0, 1]
        places it in the spread (0.5: the nominal delay, 0: shortest, 1: longest)."""
        if attempt < 1:
            return 0
        # 2**40 * base already exceeds any sane cap; clamp the exponent to avoid huge ints.
        nominal = min(self.cap_s, self.base_s * 2.0 ** min(attempt - 1, 40))
        delay = min(self.cap_s, nominal * (1.0 + self.jitter * (2.0 * u - 1.0)))
        return int(delay * 1000)


class RetryDecision(enum.Enum):
    RETRY = "retry"
    FAIL = "fail"  # retries used up
    EXPIRE = "expire"  # the retry would go out after the validity deadline


def decide_retry(
    *, attempts: int, max_retries: int, now_ms: int, expires_ms: int | None, policy: RetryPolicy,
    u: float = 0.5,
) -> tuple[RetryDecision, int]:
    """After a temporary error on attempt number ``attempts`` (1-based): what next, and when.

    Returns the decision and the ``not_before`` time (meaningful for RETRY only). ``u`` (in
    [0, 1], from the caller's random source) only moves the time within the policy's spread:
    the decision is the nominal delay's, and a retry is never placed at or past the deadline.
    """
    if attempts > max_retries:
        return RetryDecision.FAIL, now_ms
    if expires_ms is not None and now_ms + policy.delay_ms(attempts) >= expires_ms:
        return RetryDecision.EXPIRE, now_ms
    not_before = now_ms + policy.delay_ms(attempts, u)
    if expires_ms is not None:
        not_before = min(not_before, expires_ms - 1)
    return RetryDecision.RETRY, not_before
