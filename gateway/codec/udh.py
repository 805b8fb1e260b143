"""User Data Header (3GPP TS 23.040 §9.2.3.24) and payload decoding by data coding.

A UDH is ``UDHL`` (1 octet) followed by information elements ``IEI, IEDL, data``. The same
octets start an SMPP ``short_message`` when ``esm_class`` has UDHI (0x40), and the TP-UD of an
SMS TPDU when TP-UDHI is set.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.codec.errors import CodecError
from gateway.codec.gsm7 import decode_septets
from gateway.codec.nls import tables_for

# TS 23.040 §9.2.3.24 information element identifiers used by smsgate.
IEI_CONCAT_8 = 0x00  # §9.2.3.24.1 concatenated SMS, 8-bit reference: ref, total, seq
IEI_PORT_8 = 0x04  # §9.2.3.24.3 application port addressing, 8-bit
IEI_PORT_16 = 0x05  # §9.2.3.24.4 application port addressing, 16-bit
IEI_CONCAT_16 = 0x08  # §9.2.3.24.8 concatenated SMS, 16-bit reference: ref(2), total, seq
IEI_NLI_SINGLE = 0x24  # §9.2.3.24.15 national language single shift: language id
IEI_NLI_LOCKING = 0x25  # §9.2.3.24.16 national language locking shift: language id


@dataclass(frozen=True, slots=True)
class InformationElement:
    iei: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ConcatInfo:
    reference: int
    total: int
    seq: int
    ref_bits: int  # 8 or 16


@dataclass(frozen=True, slots=True)
class UserDataHeader:
    elements: tuple[InformationElement, ...]

    def concat(self) -> ConcatInfo | None:
        """The concatenation IE, or None.

        §9.2.3.24.1: if total or seq is 0, or seq > total, "the receiving entity shall ignore the
        whole information element"; a malformed IE is ignored the same way. When several concat
        IEs are present the last one wins (§9.2.3.24: a repeated IE supersedes earlier ones).
        """
        found: ConcatInfo | None = None
        for ie in self.elements:
            if ie.iei == IEI_CONCAT_8 and len(ie.data) == 3:
                ref, total, seq, bits = ie.data[0], ie.data[1], ie.data[2], 8
            elif ie.iei == IEI_CONCAT_16 and len(ie.data) == 4:
                ref, total, seq, bits = (ie.data[0] << 8) | ie.data[1], ie.data[2], ie.data[3], 16
            else:
                continue
            if total == 0 or seq == 0 or seq > total:
                continue
            found = ConcatInfo(ref, total, seq, bits)
        return found

    def national_language(self) -> tuple[int | None, int | None]:
        """(locking shift language id, single shift language id), None where absent."""
        locking: int | None = None
        single: int | None = None
        for ie in self.elements:
            if ie.iei == IEI_NLI_LOCKING and len(ie.data) == 1:
                locking = ie.data[0]
            elif ie.iei == IEI_NLI_SINGLE and len(ie.data) == 1:
                single = ie.data[0]
        return locking, single

    def to_bytes(self) -> bytes:
        return build_udh(*self.elements)


def concat_ie(reference: int, total: int, seq: int, ref_bits: int = 8) -> InformationElement:
    """A concatenation IE (§9.2.3.24.1 / §9.2.3.24.8), validated."""
    if not 1 <= total <= 255 or not 1 <= seq <= total:
        raise CodecError(f"concatenation part {seq} of {total} is out of range (1..255)")
    if ref_bits == 8:
        if not 0 <= reference <= 0xFF:
            raise CodecError(f"8-bit concatenation reference {reference} is out of range")
        return InformationElement(IEI_CONCAT_8, bytes((reference, total, seq)))
    if ref_bits == 16:
        if not 0 <= reference <= 0xFFFF:
            raise CodecError(f"16-bit concatenation reference {reference} is out of range")
        return InformationElement(IEI_CONCAT_16, reference.to_bytes(2, "big") + bytes((total, seq)))
    raise CodecError(f"concatenation reference must be 8 or 16 bits, not {ref_bits}")


def build_udh(*elements: InformationElement) -> bytes:
    """UDHL followed by the elements; b"" for no elements."""
    if not elements:
        return b""
    body = b"".join(bytes((ie.iei, len(ie.data))) + ie.data for ie in elements)
    if len(body) > 139:
        raise CodecError(f"user data header of {len(body)} octets does not fit in 140")
    return bytes((len(body),)) + body


def parse_udh(data: bytes) -> tuple[UserDataHeader, int]:
    """Parse the UDH at the start of ``data``; return it and the octets it spans (UDHL + 1)."""
    if not data:
        raise CodecError("user data header indicated but the user data is empty")
    udhl = data[0]
    end = 1 + udhl
    if end > len(data):
        raise CodecError(f"UDHL {udhl} runs past the {len(data)} octets of user data")
    elements: list[InformationElement] = []
    pos = 1
    while pos < end:
        if pos + 2 > end:
            raise CodecError(f"truncated information element at UDH offset {pos}")
        iei, length = data[pos], data[pos + 1]
        if pos + 2 + length > end:
            raise CodecError(
                f"information element 0x{iei:02X} at UDH offset {pos} claims {length} octets,"
                f" only {end - pos - 2} remain"
            )
        elements.append(InformationElement(iei, bytes(data[pos + 2 : pos + 2 + length])))
        pos += 2 + length
    return UserDataHeader(tuple(elements)), end


def decode_payload(
    payload: bytes,
    data_coding: int,
    *,
    national_language: tuple[int | None, int | None] = (None, None),
) -> str:
    """Decode an SMPP short_message / message_payload (UDH already removed) to text.

    SMPP 3.4 §5.2.19 data_coding: 0x00 SMSC default (GSM 03.38, one unpacked septet per octet —
    the convention of the SMSCs we talk to), 0x01 IA5/ASCII, 0x03 Latin-1, 0x08 UCS-2 (read as
    UTF-16BE: handsets send emoji as surrogate pairs; a lone surrogate becomes U+FFFD). Values
    0xF0-0xFF follow TS 23.038 §4 group 1111: bit 2 clear = GSM-7. 8-bit data (0x02, 0x04,
    0xF4..) is not text: CodecError.

    ``national_language`` is ``UserDataHeader.national_language()`` of the message's UDH: GSM-7
    is then read with those shift tables (TS 23.038 §6.2.1.2.4; unknown ids -> default tables).
    """
    if data_coding == 0x00 or (data_coding & 0xF0 == 0xF0 and not data_coding & 0x04):
        if national_language == (None, None):
            return decode_septets(payload)
        return decode_septets(payload, *tables_for(*national_language))
    if data_coding == 0x01:
        return payload.decode("ascii", errors="replace")
    if data_coding == 0x03:
        return payload.decode("latin-1")
    if data_coding == 0x08:
        if len(payload) % 2:
            raise CodecError(f"UCS-2 payload has an odd length ({len(payload)} octets)")
        return payload.decode("utf-16-be", errors="replace")
    raise CodecError(f"data_coding 0x{data_coding:02X} does not carry text this codec decodes")


def decode_short_message(
    data: bytes, data_coding: int, *, udhi: bool
) -> tuple[UserDataHeader | None, str]:
    """An SMPP short_message (UDH first when ``udhi``, i.e. esm_class & 0x40) -> (UDH, text)."""
    if not udhi:
        return None, decode_payload(data, data_coding)
    header, used = parse_udh(data)
    return header, decode_payload(
        data[used:], data_coding, national_language=header.national_language()
    )
