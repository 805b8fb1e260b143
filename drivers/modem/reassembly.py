"""Inbound concatenated SMS reassembly (TS 23.040 §9.2.3.24.1 / .8): pure, any order, timeout.

Parts are keyed by (originator, reference, total, reference width); duplicates of a part are
ignored; a part whose concatenation IE is invalid was already treated as a single message by
the TPDU decoder. Each part carries an opaque ``token`` (the modem's storage index) so the
caller deletes the stored parts only after the whole message was handed over: nothing is lost
if the process dies half-way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class InboundPart:
    originator: str
    text: str
    scts: datetime
    reference: int | None  # None: a single-part message
    total: int
    seq: int
    ref_bits: int
    token: object = None  # storage index (or None for +CMT) for the caller to delete later


@dataclass(frozen=True, slots=True)
class Reassembled:
    originator: str
    text: str
    scts: datetime  # of the first part
    parts: int  # parts received
    total: int  # parts announced
    tokens: tuple[object, ...]

    @property
    def complete(self) -> bool:
        return self.parts == self.total


@dataclass(slots=True)
class _Pending:
    first_seen: float
    total: int
    parts: dict[int, InboundPart] = field(default_factory=dict)
    duplicate_tokens: list[object] = field(default_factory=list)


Key = tuple[str, int, int, int]


class Reassembler:
    """Collects parts; :meth:`add` returns the message once complete, :meth:`expire` the
    partial ones older than ``timeout`` seconds (handed over as they are, marked incomplete)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._pending: dict[Key, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, part: InboundPart, now: float) -> Reassembled | None:
        if part.reference is None or part.total <= 1:
            return Reassembled(part.originator, part.text, part.scts, 1, 1, (part.token,))
        key = (part.originator, part.reference, part.total, part.ref_bits)
        pending = self._pending.setdefault(key, _Pending(now, part.total))
        if part.seq in pending.parts:
            pending.duplicate_tokens.append(part.token)  # the same part stored twice
            return None
        pending.parts[part.seq] = part
        if len(pending.parts) < pending.total:
            return None
        del self._pending[key]
        return self._build(pending)

    def next_expiry(self) -> float | None:
        if not self._pending:
            return None
        return min(p.first_seen for p in self._pending.values()) + self.timeout

    def expire(self, now: float) -> list[Reassembled]:
        old = [k for k, p in self._pending.items() if now - p.first_seen >= self.timeout]
        return [self._build(self._pending.pop(k)) for k in old]

    @staticmethod
    def _build(pending: _Pending) -> Reassembled:
        ordered = [pending.parts[s] for s in sorted(pending.parts)]
        first = ordered[0]
        tokens = tuple(p.token for p in ordered) + tuple(pending.duplicate_tokens)
        return Reassembled(
            first.originator,
            "".join(p.text for p in ordered),
            first.scts,
            len(ordered),
            pending.total,
            tokens,
        )
