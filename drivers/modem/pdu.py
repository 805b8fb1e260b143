"""SMS TPDUs for AT modems in PDU mode (3GPP TS 23.040 §9.2.2, TS 27.005 §3.1): pure, no I/O.

- :func:`encode_submit` turns an :class:`gateway.codec.EncodedMessage` into the SMS-SUBMIT PDUs
  written after ``AT+CMGS=<tpdu_length>`` (SCA first), one per part;
- :func:`decode_deliver` / :func:`decode_status_report` read what ``+CMT`` / ``+CMGR`` /
  ``+CMGL`` / ``+CDS`` carry;
- :func:`decode_submit`, :func:`encode_deliver`, :func:`encode_status_report` are the inverses
  the modem simulator needs; :func:`decode_pdu` dispatches on TP-MTI.

The field codecs live in :mod:`drivers.modem.pdu_fields` and :mod:`drivers.modem.pdu_userdata`,
the SMS-STATUS-REPORT in :mod:`drivers.modem.pdu_report` (its names are re-exported here).
Malformed input raises :class:`~drivers.modem.pdu_fields.PduError` (a CodecError) naming the
field and the octet offset. Facts and worked examples: ``../shared/reference/protocols.md`` §3.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from drivers.modem.pdu_fields import (
    DCS_GSM7,
    DCS_UCS2,
    MMS,
    MTI_DELIVER,
    MTI_MASK,
    MTI_STATUS_REPORT,
    MTI_SUBMIT,
    PID_DEFAULT,
    RD,
    RP,
    SRI,
    SRR,
    TOA_ALPHANUMERIC,
    UDHI,
    VPF_ABSOLUTE,
    VPF_MASK,
    VPF_NONE,
    VPF_RELATIVE,
    Address,
    Alphabet,
    DataCoding,
    PduError,
    Reader,
    decode_address,
    decode_dcs,
    decode_timestamp,
    encode_address,
    encode_alphanumeric_address,
    encode_sca,
    encode_timestamp,
    read_dcs,
    relative_vp,
    relative_vp_duration,
    start_reader,
)
from drivers.modem.pdu_report import (
    StatusCategory,
    StatusReport,
    TpStatus,
    decode_status_report,
    encode_status_report,
    named_status,
    status_category,
)
from drivers.modem.pdu_userdata import decode_user_data, encode_user_data
from gateway.codec import Concat, EncodedMessage, Encoding, Part
from gateway.codec.errors import CodecError
from gateway.codec.gsm7 import is_gsm7
from gateway.codec.udh import ConcatInfo, UserDataHeader


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



def decode_submit(data: bytes, *, has_sca: bool = True) -> Submit:
    """Decode an SMS-SUBMIT (TS 23.040 §9.2.2.2), SCA first unless ``has_sca`` is False."""
    reader, smsc = start_reader(data, has_sca)
    first_pos = reader.pos
    first = reader.octet("first octet")
    if first & MTI_MASK != MTI_SUBMIT:
        raise PduError("TP-MTI", first_pos, f"first octet 0x{first:02X} is not an SMS-SUBMIT")
    mr = reader.octet("TP-MR")
    da = decode_address(reader, "TP-DA")
    pid = reader.octet("TP-PID")
    dcs, coding = read_dcs(reader)
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
    reader, smsc = start_reader(data, has_sca)
    first_pos = reader.pos
    first = reader.octet("first octet")
    if first & MTI_MASK != MTI_DELIVER:
        raise PduError("TP-MTI", first_pos, f"first octet 0x{first:02X} is not an SMS-DELIVER")
    oa: Address = decode_address(reader, "TP-OA")
    pid = reader.octet("TP-PID")
    dcs, coding = read_dcs(reader)
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



# --- By TP-MTI ------------------------------------------------------------------------------------
def decode_pdu(data: bytes, *, has_sca: bool = True) -> Deliver | StatusReport | Submit:
    """Decode by TP-MTI (§9.2.3.1). Direction is ambiguous for MTI 00/01 (a SUBMIT-REPORT
    looks like a SUBMIT); we read them as the TPDUs a modem stores: DELIVER and SUBMIT."""
    reader, _ = start_reader(data, has_sca)
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
