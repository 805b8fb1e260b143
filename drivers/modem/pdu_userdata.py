"""TP-UDL / TP-UD (3GPP TS 23.040 §9.2.3.16, §9.2.3.24): pure, no I/O.

GSM 7-bit user data: the UDH octets, then ``fill`` zero bits so the text starts on a septet
boundary, then the packed text septets; TP-UDL counts header septets (fill included) plus text
septets. 8-bit and UCS-2 user data: UDH octets then payload octets; TP-UDL counts octets.
(``../shared/reference/protocols.md`` §3.2, §3.4.)
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.modem.pdu_fields import Alphabet, PduError, Reader
from gateway.codec.errors import CodecError
from gateway.codec.gsm7 import (
    decode_septets,
    fill_bits,
    header_septets,
    pack_septets,
    unpack_septets,
)
from gateway.codec.nls import tables_for
from gateway.codec.udh import UserDataHeader, parse_udh

MAX_UD_OCTETS = 140  # TS 23.040 §9.2.3.24: TP-UD is at most 140 octets
MAX_UD_SEPTETS = 160  # 140 octets x 8 / 7


@dataclass(frozen=True, slots=True)
class UserData:
    """Decoded TP-UD. ``payload`` is what follows the UDH: unpacked septets for GSM-7, octets
    otherwise. ``text`` is None for 8-bit data. ``raw`` is the TP-UD exactly as received."""

    udl: int
    udh: UserDataHeader | None
    payload: bytes
    text: str | None
    raw: bytes


def encode_user_data(alphabet: Alphabet, udh: bytes, payload: bytes) -> tuple[int, bytes]:
    """(TP-UDL, TP-UD) for a UDH (b"" when none) and a payload (unpacked septets for GSM-7).

    Raises CodecError when the result does not fit one TPDU.
    """
    if alphabet is Alphabet.GSM7:
        if any(s > 0x7F for s in payload):
            raise CodecError("GSM 7-bit payload holds a value above 0x7F: not unpacked septets")
        if udh:
            udl = header_septets(len(udh)) + len(payload)
            ud = udh + pack_septets(payload, fill_bits(len(udh)))
        else:
            udl = len(payload)
            ud = pack_septets(payload)
        if udl > MAX_UD_SEPTETS:
            raise CodecError(
                f"TP-UD of {udl} septets exceeds {MAX_UD_SEPTETS}: the part is too long"
            )
        return udl, ud
    if alphabet is Alphabet.UCS2 and len(payload) % 2:
        raise CodecError(f"UCS-2 payload has an odd length ({len(payload)} octets)")
    ud = udh + payload
    if len(ud) > MAX_UD_OCTETS:
        raise CodecError(f"TP-UD of {len(ud)} octets exceeds {MAX_UD_OCTETS}: the part is too long")
    return len(ud), ud


def decode_user_data(reader: Reader, alphabet: Alphabet, udhi: bool) -> UserData:
    """Read TP-UDL and TP-UD from ``reader`` (which must end with them).

    GSM 7-bit text is decoded with the national language shift tables its UDH announces
    (TS 23.040 §9.2.3.24.15/16); unknown language ids fall back to the default tables, as
    TS 23.038 Annex C.2 tells a receiver without them to do.
    """
    udl_pos = reader.pos
    udl = reader.octet("TP-UDL")
    if alphabet is Alphabet.GSM7:
        if udl > MAX_UD_SEPTETS:
            raise PduError("TP-UDL", udl_pos, f"{udl} septets exceed {MAX_UD_SEPTETS}")
        octets = (7 * udl + 7) // 8
    else:
        if udl > MAX_UD_OCTETS:
            raise PduError("TP-UDL", udl_pos, f"{udl} octets exceed {MAX_UD_OCTETS}")
        octets = udl
    ud_pos = reader.pos
    raw = reader.take(octets, "TP-UD")
    reader.expect_end("TP-UD")

    udh: UserDataHeader | None = None
    header_octets = 0
    if udhi:
        try:
            udh, header_octets = parse_udh(raw)
        except CodecError as exc:
            raise PduError("TP-UDH", ud_pos, str(exc)) from None

    if alphabet is Alphabet.GSM7:
        skip = header_septets(header_octets)
        if skip > udl:
            raise PduError("TP-UDH", ud_pos, f"header of {skip} septets exceeds TP-UDL {udl}")
        # Unpack after the header and its fill bits: the text starts on a septet boundary.
        payload = unpack_septets(raw[header_octets:], udl - skip, fill_bits(header_octets))
        locking, single = tables_for(*udh.national_language()) if udh else tables_for(None, None)
        text = decode_septets(payload, locking, single)
        return UserData(udl, udh, payload, text, raw)
    if header_octets > udl:
        raise PduError("TP-UDH", ud_pos, f"header of {header_octets} octets exceeds TP-UDL {udl}")
    payload = raw[header_octets:]
    if alphabet is Alphabet.UCS2:
        # An odd trailing octet cannot be a UTF-16 code unit: it is dropped, lone surrogates
        # (a pair cut by a sender) become U+FFFD.
        even = payload[: len(payload) - len(payload) % 2]
        return UserData(udl, udh, payload, even.decode("utf-16-be", errors="replace"), raw)
    return UserData(udl, udh, payload, None, raw)
