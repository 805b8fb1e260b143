"""Delivery receipts in deliver_sm: the TLVs, the text form, and message-id normalisation.

Sources (``../shared/reference/protocols.md``): §4.3 TLVs receipted_message_id (0x001E) and
message_state (0x0427, SMPP 3.4 §5.2.28 values); §4.4 the Appendix B text form
``id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…`` and the variants carriers
really send (seconds in dates, ``submitdate:``, upper-case ``Text:``, alphanumeric ids, long
``err:``); §4.5 the hex/decimal message-id pitfall (Vonage: hex in submit_sm_resp, decimal in the
receipt text; Jasmin lost receipts to stripped leading zeros).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum

from drivers.smpp.pdu import DeliverSm


class MessageState(IntEnum):
    """SMPP 3.4 §5.2.28 message_state."""

    ENROUTE = 1
    DELIVERED = 2
    EXPIRED = 3
    DELETED = 4
    UNDELIVERABLE = 5
    ACCEPTED = 6
    UNKNOWN = 7
    REJECTED = 8

    @property
    def final(self) -> bool:
        return self not in (MessageState.ENROUTE, MessageState.ACCEPTED, MessageState.UNKNOWN)


# Appendix B stat strings -> message_state (protocols.md §4.4, Vonage and Camel tables).
STAT_TO_STATE: dict[str, MessageState] = {
    "ENROUTE": MessageState.ENROUTE,
    "DELIVRD": MessageState.DELIVERED,
    "DELIVERED": MessageState.DELIVERED,
    "EXPIRED": MessageState.EXPIRED,
    "DELETED": MessageState.DELETED,
    "UNDELIV": MessageState.UNDELIVERABLE,
    "UNDELIVERABLE": MessageState.UNDELIVERABLE,
    "ACCEPTD": MessageState.ACCEPTED,
    "ACCEPTED": MessageState.ACCEPTED,
    "UNKNOWN": MessageState.UNKNOWN,
    "REJECTD": MessageState.REJECTED,
    "REJECTED": MessageState.REJECTED,
}
STATE_TO_STAT: dict[MessageState, str] = {
    MessageState.ENROUTE: "ENROUTE",
    MessageState.DELIVERED: "DELIVRD",
    MessageState.EXPIRED: "EXPIRED",
    MessageState.DELETED: "DELETED",
    MessageState.UNDELIVERABLE: "UNDELIV",
    MessageState.ACCEPTED: "ACCEPTD",
    MessageState.UNKNOWN: "UNKNOWN",
    MessageState.REJECTED: "REJECTD",
}


class IdFormat(StrEnum):
    """How a carrier writes a message id in one place (submit_sm_resp, or the receipt text).
    The values are the config words of ``id_format = "SUBMIT/REPORT"``."""

    TEXT = "text"  # opaque: compared case-folded, without leading zeros
    DECIMAL = "dec"
    HEX = "hex"


_HEX_ID = re.compile(r"(?:0[xX])?([0-9A-Fa-f]+)")
_DEC_ID = re.compile(r"[0-9]+")


def normalise_id(raw: str, fmt: IdFormat = IdFormat.TEXT) -> str:
    """The canonical form ids are matched on.

    Numeric formats become the decimal value without leading zeros, so hex ``33E95179`` and
    decimal ``0870928761`` meet at ``870928761``. An id that is not valid in its declared base
    (carriers change formats) falls back to the text form: case-folded, leading zeros dropped.
    This is the same canonical form as the outbox's ``normalise_message_id`` (a test holds the
    two together), so ids normalised here and there always compare equal.
    """
    text = raw.strip().strip("\x00")
    if fmt is IdFormat.HEX:
        m = _HEX_ID.fullmatch(text)
        if m is not None:
            return str(int(m.group(1), 16))
    elif fmt is IdFormat.DECIMAL and _DEC_ID.fullmatch(text):
        return str(int(text, 10))
    folded = text.casefold()
    stripped = folded.lstrip("0")
    return stripped if stripped or not folded else "0"


@dataclass(frozen=True, slots=True)
class IdConvention:
    """Per-bind convention for the two places an id appears (Kannel's ``msg-id-type``)."""

    submit_resp: IdFormat = IdFormat.TEXT
    receipt: IdFormat = IdFormat.TEXT

    @classmethod
    def kannel(cls, msg_id_type: int) -> IdConvention:
        """Kannel ``msg-id-type`` bits: 0x01 submit_sm_resp id is hex, 0x02 receipt id is hex;
        unset bits mean decimal (protocols.md §4.5, Kannel semantics as commonly documented)."""
        return cls(
            IdFormat.HEX if msg_id_type & 0x01 else IdFormat.DECIMAL,
            IdFormat.HEX if msg_id_type & 0x02 else IdFormat.DECIMAL,
        )

    def from_submit_resp(self, raw: str) -> str:
        return normalise_id(raw, self.submit_resp)

    def from_receipt_text(self, raw: str) -> str:
        return normalise_id(raw, self.receipt)


class ReceiptSource(StrEnum):
    TLV = "tlv"  # receipted_message_id (+ message_state when present)
    TEXT = "text"  # the Appendix B text only


@dataclass(frozen=True, slots=True)
class ReceiptText:
    """The fields of an Appendix B receipt text, as written (dates parsed when they parse)."""

    id: str | None
    sub: str | None
    dlvrd: str | None
    submit_date: datetime | None
    done_date: datetime | None
    stat: str | None
    err: str | None
    text: str | None


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    message_id: str  # normalised per the bind's IdConvention: what the outbox matches on
    raw_id: str
    state: MessageState | None
    stat: str | None
    err: str | None
    network_error_code: bytes | None
    submitted: datetime | None  # SMSC local time as written (the format carries no zone)
    done: datetime | None
    source: ReceiptSource
    source_addr: str
    destination_addr: str
    text: str | None = None

    @property
    def final(self) -> bool:
        return self.state is not None and self.state.final


_KEY = re.compile(
    r"(?i)(?<![A-Za-z0-9_])"
    r"(id|submit[ _]?date|done[ _]?date|sub|dlvrd|stat|err|text)\s*:"
)
_NAMES = {"submitdate": "submit_date", "donedate": "done_date"}


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    digits = value.strip()
    if not digits.isdigit() or len(digits) not in (10, 12) or not digits.strip("0"):
        return None
    fmt = "%y%m%d%H%M%S" if len(digits) == 12 else "%y%m%d%H%M"
    try:
        return datetime.strptime(digits, fmt)
    except ValueError:
        return None


def parse_receipt_text(text: str) -> ReceiptText | None:
    """Parse ``id:… stat:…``; None when the text has neither an id nor a stat field."""
    fields: dict[str, str] = {}
    matches = list(_KEY.finditer(text))
    for i, m in enumerate(matches):
        key = re.sub(r"[ _]", "", m.group(1).lower())
        key = _NAMES.get(key, key)
        if key == "text":
            fields.setdefault("text", text[m.end() :])
            break
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        fields.setdefault(key, text[m.end() : end].strip())
    if "id" not in fields and "stat" not in fields:
        return None
    return ReceiptText(
        id=fields.get("id") or None,
        sub=fields.get("sub"),
        dlvrd=fields.get("dlvrd"),
        submit_date=_date(fields.get("submit_date")),
        done_date=_date(fields.get("done_date")),
        stat=(fields.get("stat") or "").upper() or None,
        err=fields.get("err"),
        text=fields.get("text"),
    )


def format_receipt_text(
    message_id: str,
    stat: str,
    err: int,
    submitted: datetime,
    done: datetime,
    text: str = "",
) -> str:
    """The Appendix B form, as the simulator writes it."""
    delivered = "001" if stat == "DELIVRD" else "000"
    return (
        f"id:{message_id} sub:001 dlvrd:{delivered} submit date:{submitted:%y%m%d%H%M} "
        f"done date:{done:%y%m%d%H%M} stat:{stat} err:{err:03d} text:{text[:20]}"
    )


def is_receipt(pdu: DeliverSm) -> bool:
    """esm_class message type 0x04 (SMSC delivery receipt; protocols.md §4.1), or an SMSC that
    forgets the bit but sends receipted_message_id."""
    return (pdu.esm_class & 0x3C) == 0x04 or pdu.receipted_message_id is not None


def receipt_from_deliver(pdu: DeliverSm, convention: IdConvention) -> DeliveryReceipt | None:
    """The receipt a deliver_sm carries, or None when it carries none we can match."""
    body = pdu.message_payload if pdu.message_payload else pdu.short_message
    parsed = parse_receipt_text(body.decode("latin-1")) if body else None
    state: MessageState | None = None
    if pdu.message_state is not None and pdu.message_state in MessageState._value2member_map_:
        state = MessageState(pdu.message_state)
    elif parsed is not None and parsed.stat is not None:
        state = STAT_TO_STATE.get(parsed.stat)
    if pdu.receipted_message_id:
        # SMPP 3.4 §5.3.2.12: the id the SMSC returned in submit_sm_resp, in the same format.
        raw_id = pdu.receipted_message_id
        message_id = convention.from_submit_resp(raw_id)
        source = ReceiptSource.TLV
    elif parsed is not None and parsed.id:
        raw_id = parsed.id
        message_id = convention.from_receipt_text(raw_id)
        source = ReceiptSource.TEXT
    else:
        return None
    return DeliveryReceipt(
        message_id=message_id,
        raw_id=raw_id,
        state=state,
        stat=parsed.stat if parsed else (STATE_TO_STAT[state] if state else None),
        err=parsed.err if parsed else None,
        network_error_code=pdu.network_error_code,
        submitted=parsed.submit_date if parsed else None,
        done=parsed.done_date if parsed else None,
        source=source,
        source_addr=pdu.source_addr,
        destination_addr=pdu.destination_addr,
        text=parsed.text if parsed else None,
    )
