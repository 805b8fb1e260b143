"""What the SMSC simulator sends on its own: MO messages split into parts, receipts, and
deliberately malformed frames.

MO parts are built here without the codec's ``encode()`` (the simulator must be able to produce
what real handsets and SMSCs send, including orders and references the codec would never pick):
GSM-7 when every character is in the default alphabet, else UCS-2 (UTF-16BE); parts are cut on
character boundaries so no escape pair or surrogate pair is split (TS 23.040 §9.2.3.24.1).
"""

from __future__ import annotations

import random
from datetime import datetime

from drivers.smpp.pdu import HEADER_SIZE, DeliverSm, SubmitSm
from drivers.smpp.receipts import STAT_TO_STATE, format_receipt_text
from gateway.codec.gsm7 import encode_septets, is_gsm7
from gateway.codec.udh import build_udh, concat_ie

# Capacity per part in SMPP unpacked units (protocols.md §0 rule 2 / §2.1).
_SINGLE = {0x00: 160, 0x08: 140}
_WITH_UDH = {0x00: 153, 0x08: 134}
_WITH_UDH16 = {0x00: 152, 0x08: 132}


def _chunks(text: str, data_coding: int, limit: int) -> list[bytes]:
    out: list[bytes] = []
    current = bytearray()
    for ch in text:
        unit = encode_septets(ch) if data_coding == 0x00 else ch.encode("utf-16-be")
        if len(current) + len(unit) > limit:
            out.append(bytes(current))
            current = bytearray()
        current += unit
    out.append(bytes(current))
    return out


def mo_parts(
    text: str,
    source_addr: str,
    destination_addr: str,
    *,
    concat: str = "udh8",
    reference: int = 1,
    shuffle: random.Random | None = None,
    source_addr_ton: int = 1,
    source_addr_npi: int = 1,
) -> list[DeliverSm]:
    """deliver_sm PDUs for one MO message; ``concat`` is udh8, udh16, sar or payload."""
    dc = 0x00 if is_gsm7(text) else 0x08
    common = dict(
        source_addr=source_addr,
        source_addr_ton=source_addr_ton,
        source_addr_npi=source_addr_npi,
        destination_addr=destination_addr,
        data_coding=dc,
    )
    if concat == "payload":
        body = encode_septets(text) if dc == 0 else text.encode("utf-16-be")
        return [DeliverSm(message_payload=body or None, **common)]  # type: ignore[arg-type]
    single = _chunks(text, dc, _SINGLE[dc])
    if len(single) == 1:
        return [DeliverSm(short_message=single[0], **common)]  # type: ignore[arg-type]
    limit = (_WITH_UDH16 if concat == "udh16" else _WITH_UDH)[dc]
    if concat == "sar":
        limit = _SINGLE[dc] - 7  # carriers keep SAR parts within a UDH-sized part too
    chunks = _chunks(text, dc, limit)
    total = len(chunks)
    parts: list[DeliverSm] = []
    for i, chunk in enumerate(chunks, start=1):
        if concat == "sar":
            parts.append(
                DeliverSm(
                    short_message=chunk,
                    sar_msg_ref_num=reference & 0xFFFF,
                    sar_total_segments=total,
                    sar_segment_seqnum=i,
                    **common,  # type: ignore[arg-type]
                )
            )
        else:
            bits = 16 if concat == "udh16" else 8
            mask = 0xFFFF if bits == 16 else 0xFF
            udh = build_udh(concat_ie(reference & mask, total, i, bits))
            parts.append(
                DeliverSm(short_message=udh + chunk, esm_class=0x40, **common)  # type: ignore[arg-type]
            )
    if shuffle is not None:
        shuffle.shuffle(parts)
    return parts


# Error codes written in receipts per outcome (the `err:` field is vendor specific; these are
# GSM MAP-style values as carriers commonly send them).
_ERR = {"DELIVRD": 0, "UNDELIV": 1, "EXPIRED": 27, "REJECTD": 11, "DELETED": 0, "UNKNOWN": 0}


def receipt_pdu(
    submit: SubmitSm,
    resp_id: str,
    text_id: str,
    stat: str,
    submitted: datetime,
    done: datetime,
    *,
    with_tlvs: bool = True,
) -> DeliverSm:
    """The deliver_sm receipt for ``submit`` (esm_class 0x04, protocols.md §4.4)."""
    excerpt = ""
    if submit.data_coding in (0x00, 0x01, 0x03) and not submit.esm_class & 0x40:
        excerpt = submit.short_message[:20].decode("latin-1", errors="replace")
        excerpt = "".join(c if c.isprintable() else "?" for c in excerpt)
    body = format_receipt_text(text_id, stat, _ERR.get(stat, 0), submitted, done, excerpt)
    return DeliverSm(
        source_addr=submit.destination_addr,
        source_addr_ton=submit.dest_addr_ton,
        source_addr_npi=submit.dest_addr_npi,
        destination_addr=submit.source_addr,
        dest_addr_ton=submit.source_addr_ton,
        dest_addr_npi=submit.source_addr_npi,
        esm_class=0x04,
        short_message=body.encode("latin-1"),
        receipted_message_id=resp_id if with_tlvs else None,
        message_state=int(STAT_TO_STATE[stat]) if with_tlvs else None,
    )


def _frame(command_id: int, body: bytes, sequence: int, length: int | None = None) -> bytes:
    size = HEADER_SIZE + len(body) if length is None else length
    return (
        size.to_bytes(4, "big")
        + command_id.to_bytes(4, "big")
        + bytes(4)
        + sequence.to_bytes(4, "big")
        + body
    )


MALFORMED_KINDS = ("unknown_command", "truncated_tlv", "bad_cstring", "bad_length")


def malformed_frame(kind: str, sequence: int) -> bytes:
    """A frame that breaks SMPP 3.4 in one named way. ``bad_length`` breaks the framing itself
    (command_length below the header size): the peer cannot resynchronise after it."""
    if kind == "unknown_command":
        return _frame(0x00000077, b"", sequence)
    if kind == "truncated_tlv":
        # deliver_sm with a TLV announcing 9 octets and carrying 2
        body = b"\x00" + b"\x01\x01" + b"4477\x00" + b"\x00\x00" + b"1\x00" + bytes(3)
        body += b"\x00\x00" + bytes(5) + b"\x04\x24\x00\x09ab"
        return _frame(0x00000005, body, sequence)
    if kind == "bad_cstring":
        # deliver_sm whose source_addr never ends
        return _frame(0x00000005, b"\x00\x01\x01" + b"9" * 40, sequence)
    if kind == "bad_length":
        return _frame(0x00000015, b"", sequence, length=8)
    raise ValueError(f"unknown malformed kind {kind!r}; one of {MALFORMED_KINDS}")
