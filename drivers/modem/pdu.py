"""SMS TPDUs for AT modems in PDU mode (3GPP TS 23.040 §9.2.2, TS 27.005 §3.1): pure, no I/O.

- :func:`encode_submit` turns an :class:`gateway.codec.EncodedMessage` into the SMS-SUBMIT PDUs
  written after ``AT+CMGS=<tpdu_length>`` (SCA first), one per part;
- :func:`decode_deliver` / :func:`decode_status_report` read what ``+CMT`` / ``+CMGR`` /
  ``+CMGL`` / ``+CDS`` carry;
- :func:`decode_submit`, :func:`encode_deliver`, :func:`encode_status_report` are the inverses
  the modem simulator needs; :func:`decode_pdu` dispatches on TP-MTI.

The field codecs live in :mod:`drivers.modem.pdu_fields` and :mod:`drivers.modem.pdu_userdata`.
Malformed input raises :class:`~drivers.modem.pdu_fields.PduError` (a CodecError) naming the
field and the octet offset. Facts and worked examples: ``../shared/reference/protocols.md`` §3.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum

from drivers.modem.pdu_fields import (
    TOA_ALPHANUMERIC,
    Address,
    Alphabet,
    DataCoding,
    PduError,
    Reader,
    decode_address,
    decode_dcs,
    decode_sca,
    decode_timestamp,
    encode_address,
    encode_alphanumeric_address,
    encode_sca,
    encode_timestamp,
    relative_vp,
    relative_vp_duration,
)
from drivers.modem.pdu_userdata import UserData, decode_user_data, encode_user_data
from gateway.codec import Concat, EncodedMessage, Encoding, Part
from gateway.codec.errors import CodecError
from gateway.codec.gsm7 import is_gsm7
from gateway.codec.udh import ConcatInfo, UserDataHeader

# --- First octet (TS 23.040 §9.2.2.1 / §9.2.2.2 / §9.2.2.3, bit values per §9.2.3.1-§9.2.3.26) ---
MTI_MASK = 0x03
MTI_DELIVER = 0b00  # §9.2.3.1 TP-MTI, SC -> MS
MTI_SUBMIT = 0b01  # MS -> SC
MTI_STATUS_REPORT = 0b10  # SC -> MS
RD = 0x04  # §9.2.3.25 TP-Reject-Duplicates (SUBMIT)
MMS = 0x04  # §9.2.3.2 TP-More-Messages-to-Send (DELIVER, STATUS-REPORT): 0 = more are waiting
VPF_MASK = 0x18  # §9.2.3.3 TP-Validity-Period-Format (SUBMIT), bits 4-3
VPF_NONE = 0x00
VPF_ENHANCED = 0x08
VPF_RELATIVE = 0x10
VPF_ABSOLUTE = 0x18
LP = 0x08  # §9.2.3.28 TP-Loop-Prevention (DELIVER, STATUS-REPORT)
SRR = 0x20  # §9.2.3.5 TP-Status-Report-Request (SUBMIT)
SRI = 0x20  # §9.2.3.4 TP-Status-Report-Indication (DELIVER)
SRQ = 0x20  # §9.2.3.26 TP-Status-Report-Qualifier (STATUS-REPORT): 1 = result of a COMMAND
UDHI = 0x40  # §9.2.3.23 TP-User-Data-Header-Indicator
RP = 0x80  # §9.2.3.17 TP-Reply-Path

PID_DEFAULT = 0x00  # §9.2.3.9: plain SME-to-SME short message

# §9.2.3.27 TP-Parameter-Indicator (STATUS-REPORT): which optional fields follow TP-ST.
PI_PID = 0x01
PI_DCS = 0x02
PI_UDL = 0x04
PI_EXTENSION = 0x80

# TS 23.038 §4: the two TP-DCS values smsgate sends (general group, no class).
DCS_GSM7 = 0x00
DCS_UCS2 = 0x08
DCS_8BIT = 0x04


@dataclass(frozen=True, slots=True)
class SubmitPdu:
    """One SMS-SUBMIT as written after ``AT+CMGS``: SCA octet(s) first."""

    data: bytes
    tpdu_length: int  # the <length> of AT+CMGS: TPDU octets, SCA excluded (TS 27.005 §3.5.1)

    @property
    def hex(self) -> str:
        return self.data.hex().upper()


@dataclass(frozen=True, slots=True)
class Submit:
    """A decoded SMS-SUBMIT (what the modem simulator receives after AT+CMGS)."""

    smsc: str | None
    reject_duplicates: bool
    status_report_request: bool
    reply_path: bool
    message_reference: int
    destination: str
    destination_toa: int
    pid: int
    dcs: int
    coding: DataCoding
    validity: timedelta | datetime | bytes | None  # relative, absolute, enhanced (raw 7 octets)
    udh: UserDataHeader | None
    concat: ConcatInfo | None
    text: str | None  # None for 8-bit data
    payload: bytes  # after the UDH: unpacked septets (GSM-7) or octets
    user_data: bytes  # TP-UD as received (packed, UDH included)
    udl: int


@dataclass(frozen=True, slots=True)
class Deliver:
    """A decoded SMS-DELIVER (an inbound SMS)."""

    smsc: str | None
    more_messages: bool  # TP-MMS bit clear: the SC has more messages waiting
    status_report_indication: bool
    reply_path: bool
    originator: str  # "+E.164", national digits, or the alphanumeric sender
    originator_toa: int
    pid: int
    dcs: int
    coding: DataCoding
    scts: datetime
    udh: UserDataHeader | None
    concat: ConcatInfo | None
    text: str | None  # None for 8-bit data: read ``payload``
    payload: bytes
    user_data: bytes
    udl: int


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


# --- SMS-SUBMIT -----------------------------------------------------------------------------------
def _alphabet_of(encoding: Encoding) -> tuple[Alphabet, int]:
    """TP-DCS for the message's encoding (TS 23.038 §4). NLS messages stay 0x00: their shift
    tables are announced in the UDH, not in the DCS."""
    if encoding is Encoding.GSM7:
        return Alphabet.GSM7, DCS_GSM7
    if encoding is Encoding.UCS2:
        return Alphabet.UCS2, DCS_UCS2
    raise CodecError(f"encoding {encoding!r} cannot be sent in an SMS TPDU")


def _submit_bytes(
    *,
    smsc: str | None,
    first: int,
    message_reference: int,
    destination: bytes,
    pid: int,
    dcs: int,
    vp: bytes,
    udl: int,
    ud: bytes,
) -> SubmitPdu:
    sca = encode_sca(smsc)
    tpdu = bytes((first, message_reference)) + destination + bytes((pid, dcs)) + vp
    tpdu += bytes((udl,)) + ud
    return SubmitPdu(sca + tpdu, len(tpdu))


def encode_submit_part(
    message: EncodedMessage,
    part: Part,
    destination: str,
    *,
    smsc: str | None = None,
    message_reference: int = 0,
    status_report: bool = False,
    validity: timedelta | None = None,
    reject_duplicates: bool = False,
) -> SubmitPdu:
    """One part of ``message`` as an SMS-SUBMIT (TS 23.040 §9.2.2.2).

    ``smsc`` None writes SCA length 0 (the modem uses its +CSCA). ``destination`` "+E.164" gets
    TOA 0x91, anything else TOA 0x81. ``validity`` becomes a relative TP-VP rounded *up* to the
    next value the field can express (see :func:`~drivers.modem.pdu_fields.relative_vp`).
    TP-MR 0 lets most modems assign the reference they report in ``+CMGS: <mr>``.
    """
    if not 0 <= message_reference <= 0xFF:
        raise CodecError(f"TP-MR {message_reference} is not 0..255")
    alphabet, dcs = _alphabet_of(message.encoding)
    first = MTI_SUBMIT
    if reject_duplicates:
        first |= RD
    if status_report:
        first |= SRR
    if part.udh:
        first |= UDHI
    vp = b""
    if validity is not None:
        first |= VPF_RELATIVE
        vp = bytes((relative_vp(validity),))
    udl, ud = encode_user_data(alphabet, part.udh, part.payload)
    return _submit_bytes(
        smsc=smsc,
        first=first,
        message_reference=message_reference,
        destination=encode_address(destination),
        pid=PID_DEFAULT,
        dcs=dcs,
        vp=vp,
        udl=udl,
        ud=ud,
    )


def encode_submit(
    message: EncodedMessage,
    destination: str,
    *,
    smsc: str | None = None,
    message_reference: int = 0,
    status_report: bool = False,
    validity: timedelta | None = None,
    reject_duplicates: bool = False,
) -> list[SubmitPdu]:
    """Every part of ``message`` as an SMS-SUBMIT, in order.

    All parts carry the same TP-MR (0 by default, so the modem numbers each one itself).
    A multipart message must carry its concatenation in a UDH (UDH8/UDH16): a handset cannot
    reassemble SAR TLVs or a message_payload, which exist only in SMPP.
    """
    if message.segments > 1 and message.concat not in (Concat.UDH8, Concat.UDH16):
        raise CodecError(
            f"a {message.segments}-part message encoded with concat={message.concat.value!r}"
            " cannot go to a modem: encode it with Concat.UDH8 or Concat.UDH16"
        )
    return [
        encode_submit_part(
            message,
            part,
            destination,
            smsc=smsc,
            message_reference=message_reference,
            status_report=status_report,
            validity=validity,
            reject_duplicates=reject_duplicates,
        )
        for part in message.parts
    ]


def _read_validity(reader: Reader, vpf: int) -> timedelta | datetime | bytes | None:
    if vpf == VPF_NONE:
        return None
    if vpf == VPF_RELATIVE:
        return relative_vp_duration(reader.octet("TP-VP"))
    if vpf == VPF_ABSOLUTE:
        return decode_timestamp(reader, "TP-VP")
    return reader.take(7, "TP-VP")  # §9.2.3.12.3 enhanced format: kept raw


def _start(data: bytes, has_sca: bool) -> tuple[Reader, str | None]:
    reader = Reader(bytes(data))
    smsc = decode_sca(reader) if has_sca else None
    return reader, smsc


def _read_dcs(reader: Reader) -> tuple[int, DataCoding]:
    pos = reader.pos
    dcs = reader.octet("TP-DCS")
    coding = decode_dcs(dcs)
    if coding.compressed:
        raise PduError("TP-DCS", pos, f"0x{dcs:02X} marks compressed user data (TS 23.042),"
                       " which smsgate does not decode")
    return dcs, coding


def decode_submit(data: bytes, *, has_sca: bool = True) -> Submit:
    """Decode an SMS-SUBMIT (TS 23.040 §9.2.2.2), SCA first unless ``has_sca`` is False."""
    reader, smsc = _start(data, has_sca)
    first_pos = reader.pos
    first = reader.octet("first octet")
    if first & MTI_MASK != MTI_SUBMIT:
        raise PduError("TP-MTI", first_pos, f"first octet 0x{first:02X} is not an SMS-SUBMIT")
    mr = reader.octet("TP-MR")
    da = decode_address(reader, "TP-DA")
    pid = reader.octet("TP-PID")
    dcs, coding = _read_dcs(reader)
    validity = _read_validity(reader, first & VPF_MASK)
    ud = decode_user_data(reader, coding.alphabet, bool(first & UDHI))
    return Submit(
        smsc=smsc,
        reject_duplicates=bool(first & RD),
        status_report_request=bool(first & SRR),
        reply_path=bool(first & RP),
        message_reference=mr,
        destination=da.number,
        destination_toa=da.toa,
        pid=pid,
        dcs=dcs,
        coding=coding,
        validity=validity,
        udh=ud.udh,
        concat=ud.udh.concat() if ud.udh else None,
        text=ud.text,
        payload=ud.payload,
        user_data=ud.raw,
        udl=ud.udl,
    )


# --- SMS-DELIVER ----------------------------------------------------------------------------------
def decode_deliver(data: bytes, *, has_sca: bool = True) -> Deliver:
    """Decode an SMS-DELIVER (TS 23.040 §9.2.2.1), SCA first unless ``has_sca`` is False."""
    reader, smsc = _start(data, has_sca)
    first_pos = reader.pos
    first = reader.octet("first octet")
    if first & MTI_MASK != MTI_DELIVER:
        raise PduError("TP-MTI", first_pos, f"first octet 0x{first:02X} is not an SMS-DELIVER")
    oa: Address = decode_address(reader, "TP-OA")
    pid = reader.octet("TP-PID")
    dcs, coding = _read_dcs(reader)
    scts = decode_timestamp(reader, "TP-SCTS")
    ud = decode_user_data(reader, coding.alphabet, bool(first & UDHI))
    return Deliver(
        smsc=smsc,
        more_messages=not first & MMS,
        status_report_indication=bool(first & SRI),
        reply_path=bool(first & RP),
        originator=oa.number,
        originator_toa=oa.toa,
        pid=pid,
        dcs=dcs,
        coding=coding,
        scts=scts,
        udh=ud.udh,
        concat=ud.udh.concat() if ud.udh else None,
        text=ud.text,
        payload=ud.payload,
        user_data=ud.raw,
        udl=ud.udl,
    )


def _originator_field(originator: str) -> bytes:
    """"+E.164" or digits as a number; anything else (e.g. "MyShop") as an alphanumeric TP-OA."""
    body = originator[1:] if originator.startswith("+") else originator
    if body.isdigit() and body.isascii():
        return encode_address(originator)
    if not is_gsm7(originator):
        raise CodecError(f"alphanumeric originator {originator!r} is not GSM 7-bit text")
    return encode_alphanumeric_address(originator)


def encode_deliver(
    message: EncodedMessage,
    part: Part,
    originator: str,
    *,
    scts: datetime,
    smsc: str | None = None,
    pid: int = PID_DEFAULT,
    dcs: int | None = None,
    more_messages: bool = False,
    status_report_indication: bool = False,
    reply_path: bool = False,
) -> bytes:
    """One part of ``message`` as an SMS-DELIVER with its SCA (as ``+CMT``/``+CMGR`` show it).

    ``dcs`` overrides the TP-DCS (e.g. 0x10 for a flash GSM-7 message); it must name the same
    alphabet as the message's encoding.
    """
    alphabet, default_dcs = _alphabet_of(message.encoding)
    if dcs is None:
        dcs = default_dcs
    elif decode_dcs(dcs).alphabet is not alphabet:
        raise CodecError(f"TP-DCS 0x{dcs:02X} does not say {alphabet.value}")
    first = MTI_DELIVER
    if not more_messages:
        first |= MMS
    if status_report_indication:
        first |= SRI
    if part.udh:
        first |= UDHI
    if reply_path:
        first |= RP
    udl, ud = encode_user_data(alphabet, part.udh, part.payload)
    tpdu = bytes((first,)) + _originator_field(originator) + bytes((pid, dcs))
    tpdu += encode_timestamp(scts, "TP-SCTS") + bytes((udl,)) + ud
    return encode_sca(smsc) + tpdu


# --- SMS-STATUS-REPORT ----------------------------------------------------------------------------
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
        dcs, coding = _read_dcs(reader)
    if pi & PI_UDL:
        ud = decode_user_data(reader, coding.alphabet, udhi)
    reader.expect_end("TP-PI fields")
    return _ReportTail(pid, dcs, ud)


def decode_status_report(data: bytes, *, has_sca: bool = True) -> StatusReport:
    """Decode an SMS-STATUS-REPORT (TS 23.040 §9.2.2.3), SCA first unless ``has_sca`` is False."""
    reader, smsc = _start(data, has_sca)
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


# --- By TP-MTI ------------------------------------------------------------------------------------
def decode_pdu(data: bytes, *, has_sca: bool = True) -> Deliver | StatusReport | Submit:
    """Decode by TP-MTI (§9.2.3.1). Direction is ambiguous for MTI 00/01 (a SUBMIT-REPORT
    looks like a SUBMIT); we read them as the TPDUs a modem stores: DELIVER and SUBMIT."""
    reader, _ = _start(data, has_sca)
    mti = reader.octet("first octet") & MTI_MASK
    if mti == MTI_DELIVER:
        return decode_deliver(data, has_sca=has_sca)
    if mti == MTI_SUBMIT:
        return decode_submit(data, has_sca=has_sca)
    if mti == MTI_STATUS_REPORT:
        return decode_status_report(data, has_sca=has_sca)
    raise PduError("TP-MTI", reader.pos - 1, "TP-MTI 11 is reserved")


__all__ = [
    "TOA_ALPHANUMERIC",
    "Deliver",
    "PduError",
    "StatusCategory",
    "StatusReport",
    "Submit",
    "SubmitPdu",
    "TpStatus",
    "decode_deliver",
    "decode_pdu",
    "decode_status_report",
    "decode_submit",
    "encode_deliver",
    "encode_status_report",
    "encode_submit",
    "encode_submit_part",
    "named_status",
    "status_category",
]
