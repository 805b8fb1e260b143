"""Mobile-originated messages from deliver_sm: decoding and reassembly in any order.

Concatenation comes either as a UDH in the user data (esm_class 0x40 UDHI; IEI 0x00 8-bit or
0x08 16-bit reference, TS 23.040 §9.2.3.24.1/.8) or as SAR TLVs (sar_msg_ref_num 0x020C,
sar_total_segments 0x020E, sar_segment_seqnum 0x020F; SMPP 3.4 §5.3.2.22-24). The body is
``short_message`` or the ``message_payload`` TLV (0x0424). Parts are joined as bytes before the
text is decoded, so an escape pair or a surrogate pair cut across parts by the sender still
decodes. Pure: time is passed in.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from drivers.smpp.pdu import ShortMessage
from gateway.codec.errors import CodecError
from gateway.codec.udh import UserDataHeader, decode_payload, parse_udh

UDHI = 0x40  # esm_class GSM feature bit: user data starts with a UDH (protocols.md §4.1)


@dataclass(frozen=True, slots=True)
class MoPart:
    source_addr: str
    destination_addr: str
    data_coding: int
    user_data: bytes  # the part's payload, UDH removed
    udh: UserDataHeader | None
    reference: int | None  # None for a single-part message
    total: int
    seq: int
    ref_kind: str  # "udh8" | "udh16" | "sar" | "single"
    source_addr_ton: int = 0
    source_addr_npi: int = 0


@dataclass(frozen=True, slots=True)
class MobileOriginated:
    source_addr: str
    source_addr_ton: int
    source_addr_npi: int
    destination_addr: str
    text: str | None  # None when the data coding is binary (8-bit data): see user_data
    user_data: bytes  # the parts' payloads joined in order (missing parts skipped)
    data_coding: int
    parts: int  # parts received
    total: int  # parts announced
    complete: bool  # False: released by the timeout with parts missing
    missing: tuple[int, ...] = ()
    reference: int | None = None


def split_part(pdu: ShortMessage) -> MoPart:
    """One deliver_sm (or submit_sm, for the simulator) -> its payload and concatenation info.
    CodecError for a malformed UDH."""
    body = pdu.message_payload if pdu.message_payload else pdu.short_message
    udh: UserDataHeader | None = None
    if pdu.esm_class & UDHI and body:
        udh, used = parse_udh(body)
        body = body[used:]
    concat = udh.concat() if udh is not None else None
    if concat is not None:
        kind = "udh16" if concat.ref_bits == 16 else "udh8"
        return MoPart(
            pdu.source_addr,
            pdu.destination_addr,
            pdu.data_coding,
            body,
            udh,
            concat.reference,
            concat.total,
            concat.seq,
            kind,
            pdu.source_addr_ton,
            pdu.source_addr_npi,
        )
    total, seq, ref = pdu.sar_total_segments, pdu.sar_segment_seqnum, pdu.sar_msg_ref_num
    if ref is not None and total and seq and 1 <= seq <= total and total > 1:
        return MoPart(
            pdu.source_addr,
            pdu.destination_addr,
            pdu.data_coding,
            body,
            udh,
            ref,
            total,
            seq,
            "sar",
            pdu.source_addr_ton,
            pdu.source_addr_npi,
        )
    return MoPart(
        pdu.source_addr,
        pdu.destination_addr,
        pdu.data_coding,
        body,
        udh,
        None,
        1,
        1,
        "single",
        pdu.source_addr_ton,
        pdu.source_addr_npi,
    )


def group_key(part: MoPart) -> str:
    """The text key under which a part's message is collected: sender, recipient, reference
    kind, reference and total (two senders may use the same reference). JSON, so a store can
    keep it in one column and nothing in an address can make two keys collide."""
    return json.dumps(
        [part.source_addr, part.destination_addr, part.ref_kind, part.reference, part.total]
    )


def _text(parts: list[MoPart]) -> str | None:
    try:
        if all(p.data_coding == parts[0].data_coding for p in parts):
            return decode_payload(b"".join(p.user_data for p in parts), parts[0].data_coding)
        return "".join(decode_payload(p.user_data, p.data_coding) for p in parts)
    except CodecError:
        return None


def assemble(parts: Iterable[MoPart], total: int | None = None) -> MobileOriginated:
    """The message made of ``parts`` (any order, at least one, duplicates of a seq ignored).
    ``complete`` is whether every seq from 1 to ``total`` (default: the parts' own) is in."""
    by_seq = {p.seq: p for p in parts}
    ordered = [by_seq[s] for s in sorted(by_seq)]
    if not ordered:
        raise ValueError("assemble() needs at least one part")
    total = ordered[0].total if total is None else total
    return _assemble(ordered, total, all(s in by_seq for s in range(1, total + 1)))


def _assemble(parts: list[MoPart], total: int, complete: bool) -> MobileOriginated:
    parts = sorted(parts, key=lambda p: p.seq)
    have = {p.seq for p in parts}
    return MobileOriginated(
        source_addr=parts[0].source_addr,
        source_addr_ton=parts[0].source_addr_ton,
        source_addr_npi=parts[0].source_addr_npi,
        destination_addr=parts[0].destination_addr,
        text=_text(parts),
        user_data=b"".join(p.user_data for p in parts),
        data_coding=parts[0].data_coding,
        parts=len(parts),
        total=total,
        complete=complete,
        missing=tuple(s for s in range(1, total + 1) if s not in have),
        reference=parts[0].reference,
    )


@dataclass
class _Pending:
    first_seen: float
    total: int
    parts: dict[int, MoPart]


@dataclass(frozen=True, slots=True)
class ReassemblyStatistics:
    pending: int
    assembled: int
    timed_out: int
    duplicates: int


class Reassembler:
    """Collects parts keyed by (sender, recipient, reference kind, reference, total).

    ``add`` returns the message once every part is in, whatever their order; ``expire`` releases
    what waited longer than ``timeout`` as incomplete messages (the policy: deliver what we have,
    marked, rather than drop it). At most ``max_pending`` messages wait; the oldest is released
    first when a new one would exceed it.

    Synchronous and memory-only: the simulator uses it to check what it received. The client
    collects parts through a ``mo_store.MoPartStore`` instead, which can be durable.
    """

    def __init__(self, timeout: float = 120.0, max_pending: int = 10_000) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        self._pending: OrderedDict[tuple[object, ...], _Pending] = OrderedDict()
        self._assembled = 0
        self._timed_out = 0
        self._duplicates = 0

    def add(
        self, pdu: ShortMessage, now: float
    ) -> tuple[MobileOriginated | None, list[MobileOriginated]]:
        """(the message this part completes or None, messages released to make room)."""
        part = split_part(pdu)
        if part.reference is None:
            self._assembled += 1
            return _assemble([part], 1, True), []
        key = (part.source_addr, part.destination_addr, part.ref_kind, part.reference, part.total)
        pending = self._pending.get(key)
        evicted: list[MobileOriginated] = []
        if pending is None:
            while len(self._pending) >= self.max_pending:
                evicted.append(self._release(next(iter(self._pending))))
            pending = self._pending[key] = _Pending(now, part.total, {})
        if part.seq in pending.parts:
            self._duplicates += 1
            return None, evicted
        pending.parts[part.seq] = part
        if len(pending.parts) < pending.total:
            return None, evicted
        del self._pending[key]
        self._assembled += 1
        return _assemble(list(pending.parts.values()), pending.total, True), evicted

    def _release(self, key: tuple[object, ...]) -> MobileOriginated:
        pending = self._pending.pop(key)
        self._timed_out += 1
        return _assemble(list(pending.parts.values()), pending.total, False)

    def next_deadline(self) -> float | None:
        if not self._pending:
            return None
        return next(iter(self._pending.values())).first_seen + self.timeout

    def expire(self, now: float) -> list[MobileOriginated]:
        out: list[MobileOriginated] = []
        while self._pending:
            key, pending = next(iter(self._pending.items()))
            if pending.first_seen + self.timeout > now:
                break
            out.append(self._release(key))
        return out

    def statistics(self) -> ReassemblyStatistics:
        return ReassemblyStatistics(
            len(self._pending), self._assembled, self._timed_out, self._duplicates
        )
