"""The outbox's inputs and results: frozen dataclasses, plus the part-count estimate.

Split from :mod:`gateway.outbox` (which re-exports every name here) so the store stays one
readable class. Carrier ids in :class:`Submitted` and :class:`Report` are already normalised
with :mod:`gateway.outbox_ids` by the caller, which knows the route's id convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.codec.gsm7 import encode_septets, is_gsm7
from gateway.errors import SmsgateError
from gateway.outbox_states import WAITING, Lane, PartState, ReportOutcome, State


class OutboxError(SmsgateError):
    """The outbox was used wrongly: schema newer than this code, bad input."""


def estimate_parts(text: str) -> int:
    """How many parts ``text`` takes with 8-bit concatenation references.

    3GPP TS 23.038 §6.1.2 / TS 23.040 §9.2.3.24.1: 160 GSM-7 septets (140 octets) in one part,
    153 per part with the 6-octet concatenation UDH; UCS-2 70 / 67 UTF-16 code units. The codec
    never splits an escape pair, which can add a part the exact count would show; a dispatcher
    that splits differently (16-bit references, SAR, payload) fixes the count with
    :meth:`Outbox.reshape` before the first part goes out.
    """
    if is_gsm7(text):
        units, single, multi = len(encode_septets(text)), 160, 153
    else:
        units, single, multi = len(text.encode("utf-16-be")) // 2, 70, 67
    return 1 if units <= single else math.ceil(units / multi)


# -- inputs and results ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to accept. ``to`` is E.164 (the CLI and API normalise with phonenumbers)."""

    to: str
    text: str
    sender: str = ""
    ref: str | None = None
    lane: Lane = Lane.TRANSACTIONAL
    not_before_ms: int | None = None
    expires_ms: int | None = None
    parts: int | None = None
    max_retries: int | None = None
    campaign_id: int | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    id: int
    created: bool  # False: the (sender, ref) was already accepted; ``id`` is the first one


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message handed to the dispatcher: send ``parts`` (0-based) of ``total_parts``."""

    id: int
    lane: Lane
    to: str
    sender: str
    text: str
    total_parts: int
    parts: tuple[int, ...]
    retries: int
    expires_ms: int | None


@dataclass(frozen=True, slots=True)
class Submitted:
    """The carrier or modem accepted part ``seq``; ``carrier_id`` already normalised."""

    message_id: int
    seq: int
    route: str
    carrier_id: str


@dataclass(frozen=True, slots=True)
class TemporaryFailure:
    """Message-level temporary error: retry with backoff (``code`` kept for operators).

    Give it once the responses of all the message's parts in flight are in: its unsent parts
    go back to ``queued`` together, and a part answered later would be sent twice."""

    message_id: int
    code: int | None = None
    text: str = ""
    route: str | None = None


@dataclass(frozen=True, slots=True)
class PermanentFailure:
    """Message-level permanent error: fail now, keep the carrier or modem code."""

    message_id: int
    code: int | None = None
    text: str = ""
    route: str | None = None


@dataclass(frozen=True, slots=True)
class Requeue:
    """Not the message's fault (link down, route refused): back in line, no retry counted.

    Like :class:`TemporaryFailure`, give it when none of the message's parts is awaiting a
    response any more."""

    message_id: int


Outcome = Submitted | TemporaryFailure | PermanentFailure | Requeue


@dataclass(frozen=True, slots=True)
class Report:
    """A delivery report for one part, from ``route``; ``carrier_id`` already normalised."""

    route: str
    carrier_id: str
    outcome: ReportOutcome
    code: int | None = None


@dataclass(frozen=True, slots=True)
class ReportResult:
    matched: int
    pending: int  # stored to be matched when their id arrives


@dataclass(frozen=True, slots=True)
class Part:
    seq: int
    state: PartState
    route: str | None
    carrier_id: str | None
    error_code: int | None


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    lane: Lane
    state: State
    to: str
    sender: str
    text: str
    ref: str | None
    total_parts: int
    created_ms: int
    not_before_ms: int
    expires_ms: int | None
    retries: int
    max_retries: int
    route: str | None
    error_code: int | None
    error_text: str | None
    updated_ms: int
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    ts_ms: int
    state: State
    detail: str | None


@dataclass(frozen=True, slots=True)
class OutboxStatistics:
    """Message counts per (lane, state), and reports waiting for their id."""

    counts: tuple[tuple[Lane, State, int], ...]
    pending_reports: int

    def count(self, *, lane: Lane | None = None, state: State | None = None) -> int:
        return sum(
            n for ln, st, n in self.counts
            if (lane is None or ln == lane) and (state is None or st == state)
        )

    def depth(self, lane: Lane) -> int:
        """Messages of ``lane`` waiting to be sent (queued or scheduled)."""
        return sum(n for ln, st, n in self.counts if ln == lane and st in WAITING)
