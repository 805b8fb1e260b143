"""SMS-STATUS-REPORT (3GPP TS 23.040 §9.2.2.3): delivery reports for our SMS-SUBMITs.

Decoded for the modem driver (``+CDS``, ``+CMGR`` of an SR storage slot) and encoded for the
modem simulator. TP-ST is named by :class:`TpStatus` and sorted into a :class:`StatusCategory`
(§9.2.3.15). Pure, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum

from drivers.modem.pdu_fields import (
    DCS_GSM7,
    MMS,
    MTI_MASK,
    MTI_STATUS_REPORT,
    PI_DCS,
    PI_EXTENSION,
    PI_PID,
    PI_UDL,
    SRQ,
    UDHI,
    PduError,
    Reader,
    decode_address,
    decode_dcs,
    decode_timestamp,
    encode_address,
    encode_sca,
    encode_timestamp,
    read_dcs,
    start_reader,
)
from drivers.modem.pdu_userdata import UserData, decode_user_data
from gateway.codec.errors import CodecError
from gateway.codec.udh import UserDataHeader


class TpStatus(IntEnum):
    """TS 23.040 §9.2.3.15 TP-Status values with a name (others, reserved or specific to an
    SC, stay plain ints)."""

    RECEIVED = 0x00  # short message received by the SME
    FORWARDED_UNCONFIRMED = 0x01  # forwarded to the SME, delivery not confirmed
    REPLACED = 0x02  # replaced by the SC
    TRYING_CONGESTION = 0x20  # temporary, SC still trying
    TRYING_SME_BUSY = 0x21
    TRYING_NO_RESPONSE = 0x22
    TRYING_SERVICE_REJECTED = 0x23
    TRYING_QOS_UNAVAILABLE = 0x24
    TRYING_SME_ERROR = 0x25
    REMOTE_PROCEDURE_ERROR = 0x40  # permanent
    INCOMPATIBLE_DESTINATION = 0x41
    REJECTED_BY_SME = 0x42
    NOT_OBTAINABLE = 0x43
    QOS_UNAVAILABLE = 0x44
    NO_INTERWORKING = 0x45
    VALIDITY_EXPIRED = 0x46
    DELETED_BY_ORIGINATOR = 0x47
    DELETED_BY_SC_ADMINISTRATION = 0x48
    DOES_NOT_EXIST = 0x49
    GAVE_UP_CONGESTION = 0x60  # temporary, SC not making more attempts
    GAVE_UP_SME_BUSY = 0x61
    GAVE_UP_NO_RESPONSE = 0x62
    GAVE_UP_SERVICE_REJECTED = 0x63
    GAVE_UP_QOS_UNAVAILABLE = 0x64
    GAVE_UP_SME_ERROR = 0x65


def named_status(status: int) -> TpStatus | int:
    try:
        return TpStatus(status)
    except ValueError:
        return status


class StatusCategory(StrEnum):
    """TS 23.040 §9.2.3.15 TP-Status ranges."""

    DELIVERED = "delivered"  # 0x00-0x1F short message transaction completed
    PENDING = "pending-temporary"  # 0x20-0x3F temporary error, SC still trying
    PERMANENT = "permanent-failure"  # 0x40-0x5F permanent error, SC not making more attempts
    TEMPORARY_FINAL = "temporary-failure-final"  # 0x60-0x7F temporary error, no more attempts


def status_category(status: int) -> StatusCategory:
    """Category of a TP-ST value. 0x80-0xFF are reserved (§9.2.3.15); our policy reads them
    like 0x63 "service rejected": final without delivery, so a message never waits forever on
    a report that cannot tell. (Recalled as the spec's own instruction; wording not verified.)"""
    if not 0 <= status <= 0xFF:
        raise CodecError(f"TP-ST {status} is not an octet")
    if status <= 0x1F:
        return StatusCategory.DELIVERED
    if status <= 0x3F:
        return StatusCategory.PENDING
    if status <= 0x5F:
        return StatusCategory.PERMANENT
    return StatusCategory.TEMPORARY_FINAL


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A decoded SMS-STATUS-REPORT (a delivery report for TP-MR to TP-RA)."""

    smsc: str | None
    more_messages: bool
    status_report_qualifier: bool  # True: the report answers an SMS-COMMAND, not a SUBMIT
    message_reference: int
    recipient: str
    recipient_toa: int
    scts: datetime  # when the SC received the SUBMIT
    discharge_time: datetime  # when the SC delivered it, or the time of the final status
    status: TpStatus | int  # named when §9.2.3.15 defines it
    category: StatusCategory
    pid: int | None
    dcs: int | None
    udh: UserDataHeader | None
    text: str | None
    user_data: bytes
    ignored_tail: bytes = b""  # undecodable octets after TP-ST, kept aside (see the decoder)


@dataclass(frozen=True, slots=True)
class _ReportTail:
    pid: int | None
    dcs: int | None
    ud: UserData | None
    ignored: bytes = b""


def _report_tail(reader: Reader, udhi: bool) -> _ReportTail:
    """The optional fields after TP-ST: TP-PI, then what it announces (§9.2.3.27)."""
    if reader.at_end():  # many SCs end the TPDU at TP-ST
        return _ReportTail(None, None, None)
    pi = reader.octet("TP-PI")
    # Further PI octets follow while the extension bit is set; none of their bits is defined
    # yet, so they are skipped.
    ext = pi
    while ext & PI_EXTENSION:
        ext = reader.octet("TP-PI")
    pid: int | None = None
    dcs: int | None = None
    coding = decode_dcs(DCS_GSM7)  # without TP-DCS the user data is GSM 7-bit default
    ud: UserData | None = None
    if pi & PI_PID:
        pid = reader.octet("TP-PID")
    if pi & PI_DCS:
        dcs, coding = read_dcs(reader)
    if pi & PI_UDL:
        ud = decode_user_data(reader, coding.alphabet, udhi)
    reader.expect_end("TP-PI fields")
    return _ReportTail(pid, dcs, ud)


def decode_status_report(data: bytes, *, has_sca: bool = True) -> StatusReport:
    """Decode an SMS-STATUS-REPORT (TS 23.040 §9.2.2.3), SCA first unless ``has_sca`` is False."""
    reader, smsc = start_reader(data, has_sca)
    first_pos = reader.pos
    first = reader.octet("first octet")
    if first & MTI_MASK != MTI_STATUS_REPORT:
        raise PduError(
            "TP-MTI", first_pos, f"first octet 0x{first:02X} is not an SMS-STATUS-REPORT"
        )
    mr = reader.octet("TP-MR")
    ra = decode_address(reader, "TP-RA")
    scts = decode_timestamp(reader, "TP-SCTS")
    dt = decode_timestamp(reader, "TP-DT")
    status = reader.octet("TP-ST")
    tail_start = reader.pos
    try:
        tail = _report_tail(reader, bool(first & UDHI))
    except PduError:
        # The delivery outcome is complete at TP-ST. Junk after it (padding some modems add, a
        # broken TP-PI) must not cost us the report: keep the octets aside and go on.
        tail = _ReportTail(None, None, None, reader.data[tail_start:])
    return StatusReport(
        smsc=smsc,
        more_messages=not first & MMS,
        status_report_qualifier=bool(first & SRQ),
        message_reference=mr,
        recipient=ra.number,
        recipient_toa=ra.toa,
        scts=scts,
        discharge_time=dt,
        status=named_status(status),
        category=status_category(status),
        pid=tail.pid,
        dcs=tail.dcs,
        udh=tail.ud.udh if tail.ud else None,
        text=tail.ud.text if tail.ud else None,
        user_data=tail.ud.raw if tail.ud else b"",
        ignored_tail=tail.ignored,
    )


def encode_status_report(
    message_reference: int,
    recipient: str,
    *,
    scts: datetime,
    discharge_time: datetime,
    status: int,
    smsc: str | None = None,
    more_messages: bool = False,
    status_report_qualifier: bool = False,
) -> bytes:
    """An SMS-STATUS-REPORT with its SCA (as ``+CDS``/``+CMGR`` show it), ending at TP-ST."""
    if not 0 <= message_reference <= 0xFF:
        raise CodecError(f"TP-MR {message_reference} is not 0..255")
    if not 0 <= status <= 0xFF:
        raise CodecError(f"TP-ST {status} is not an octet")
    first = MTI_STATUS_REPORT
    if not more_messages:
        first |= MMS
    if status_report_qualifier:
        first |= SRQ
    tpdu = bytes((first, message_reference)) + encode_address(recipient)
    tpdu += encode_timestamp(scts, "TP-SCTS") + encode_timestamp(discharge_time, "TP-DT")
    return encode_sca(smsc) + tpdu + bytes((status,))
