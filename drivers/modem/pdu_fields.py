"""SMS TPDU fields (3GPP TS 23.040 §9.1.2, §9.2.3) shared by every TPDU type: pure, no I/O.

Addresses (semi-octets and alphanumeric), service-centre time stamps, the relative validity
period and the data coding scheme (TS 23.038 §4). Every decoder reads through :class:`Reader`,
so malformed input raises :class:`PduError` naming the field and the octet offset instead of
``IndexError``. Facts and worked values: ``../shared/reference/protocols.md`` §3.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum

from gateway.codec.errors import CodecError
from gateway.codec.gsm7 import decode_septets, encode_septets, pack_septets, unpack_septets


class PduError(CodecError):
    """A TPDU that cannot be decoded or encoded: names the field and the octet offset."""

    def __init__(self, field: str, offset: int, problem: str) -> None:
        self.field = field
        self.offset = offset
        self.problem = problem
        super().__init__(f"{field} at octet {offset}: {problem}")


class Reader:
    """A cursor over TPDU octets whose every read is bounds-checked (PduError, never IndexError)."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def octet(self, field: str) -> int:
        if self.pos >= len(self.data):
            raise PduError(field, self.pos, "TPDU ends before this field")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def take(self, count: int, field: str) -> bytes:
        left = len(self.data) - self.pos
        if count > left:
            raise PduError(field, self.pos, f"needs {count} octets, only {left} left")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def expect_end(self, after: str) -> None:
        if self.pos != len(self.data):
            raise PduError(
                after, self.pos, f"{len(self.data) - self.pos} unexpected octets after {after}"
            )


# --- Type of address (TS 23.040 §9.1.2.5) -------------------------------------------------------
# bit 7 is always 1; bits 6-4 type of number; bits 3-0 numbering plan identification.
TON_UNKNOWN = 0b000
TON_INTERNATIONAL = 0b001
TON_NATIONAL = 0b010
TON_ALPHANUMERIC = 0b101  # §9.1.2.5: "coded according to 3GPP TS 23.038 GSM 7-bit default alphabet"
TOA_INTERNATIONAL = 0x91  # TON international, NPI ISDN/E.164
TOA_UNKNOWN = 0x81  # TON unknown, NPI ISDN/E.164: operators accept it for national numbers
TOA_ALPHANUMERIC = 0xD0  # TON alphanumeric, NPI unknown


def type_of_number(toa: int) -> int:
    return (toa >> 4) & 0x07


# --- Semi-octets (TS 23.040 §9.1.2.3) -----------------------------------------------------------
# Digits 0-9 are themselves; 1010 '*', 1011 '#', 1100 'a', 1101 'b', 1110 'c'; 1111 is the filler
# after an odd number of digits. Each octet holds two digits, the first in the low nibble.
_NIBBLE_CHARS = "0123456789*#abc"
_CHAR_NIBBLE = {ch: i for i, ch in enumerate(_NIBBLE_CHARS)} | {"A": 12, "B": 13, "C": 14}
_FILLER = 0x0F

MAX_ADDRESS_DIGITS = 20  # §9.1.2.5: address value at most 10 octets
MAX_ALPHANUMERIC_CHARS = 11  # 10 octets = 80 bits hold 11 septets (§9.1.2.5 with TS 23.038)


def encode_semi_octets(digits: str) -> bytes:
    """"46708251358" -> 64 07 28 15 53 F8 (low nibble first, F filler for an odd count)."""
    nibbles: list[int] = []
    for i, ch in enumerate(digits):
        value = _CHAR_NIBBLE.get(ch)
        if value is None:
            raise CodecError(
                f"character {ch!r} at index {i} of {digits!r} is not a semi-octet digit"
            )
        nibbles.append(value)
    if len(nibbles) % 2:
        nibbles.append(_FILLER)
    return bytes(nibbles[i] | (nibbles[i + 1] << 4) for i in range(0, len(nibbles), 2))


def decode_semi_octets(raw: bytes, count: int, field: str, offset: int) -> str:
    """The first ``count`` digits of ``raw``. A filler inside them is an error, except as the very
    last semi-octet: some senders count the filler in the length, so it is dropped there."""
    out: list[str] = []
    for i in range(count):
        octet = raw[i // 2]
        nibble = (octet >> 4) if i % 2 else (octet & 0x0F)
        if nibble == _FILLER:
            if i == count - 1 and i % 2:
                break
            raise PduError(field, offset + i // 2, f"filler semi-octet F inside digit {i + 1}")
        out.append(_NIBBLE_CHARS[nibble])
    return "".join(out)


# --- Addresses (TS 23.040 §9.1.2.5) -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Address:
    """A decoded address: E.164 with "+" for international numbers, digits otherwise, or the
    alphanumeric text; ``toa`` is the raw type-of-address octet."""

    number: str
    toa: int


def split_number(number: str) -> tuple[str, int]:
    """"+4670..." -> ("4670...", 0x91); "0701..." -> ("0701...", 0x81). Validates the digits."""
    if number.startswith("+"):
        digits, toa = number[1:], TOA_INTERNATIONAL
    else:
        digits, toa = number, TOA_UNKNOWN
    if not digits:
        raise CodecError(f"address {number!r} has no digits")
    if len(digits) > MAX_ADDRESS_DIGITS:
        raise CodecError(
            f"address {number!r} has {len(digits)} digits; TS 23.040 allows {MAX_ADDRESS_DIGITS}"
        )
    if toa == TOA_INTERNATIONAL and not digits.isdigit():
        raise CodecError(f"international number {number!r} may hold only digits after '+'")
    encode_semi_octets(digits)  # validates every character
    return digits, toa


def encode_address(number: str) -> bytes:
    """TP-DA / TP-OA / TP-RA: length in digits, TOA, semi-octet digits (§9.1.2.5)."""
    digits, toa = split_number(number)
    return bytes((len(digits), toa)) + encode_semi_octets(digits)


def encode_alphanumeric_address(text: str) -> bytes:
    """An alphanumeric TP-OA (TOA 0xD0): packed GSM-7, length = useful semi-octets (§9.1.2.5)."""
    septets = encode_septets(text)
    if not septets or len(septets) > MAX_ALPHANUMERIC_CHARS:
        raise CodecError(
            f"alphanumeric address {text!r} needs 1..{MAX_ALPHANUMERIC_CHARS} septets,"
            f" has {len(septets)}"
        )
    packed = pack_septets(septets)
    semi_octets = (7 * len(septets) + 3) // 4
    return bytes((semi_octets, TOA_ALPHANUMERIC)) + packed


def decode_address(reader: Reader, field: str) -> Address:
    """Read a TP-OA / TP-DA / TP-RA: length (useful semi-octets), TOA, value."""
    start = reader.pos
    length = reader.octet(field)
    if length > 2 * 10:
        raise PduError(field, start, f"address length {length} exceeds 20 semi-octets")
    toa = reader.octet(field)
    value_pos = reader.pos
    raw = reader.take((length + 1) // 2, field)
    if type_of_number(toa) == TON_ALPHANUMERIC:
        septets = unpack_septets(raw, (4 * length) // 7)
        return Address(decode_septets(septets), toa)
    digits = decode_semi_octets(raw, length, field, value_pos)
    if type_of_number(toa) == TON_INTERNATIONAL:
        digits = "+" + digits
    return Address(digits, toa)


def encode_sca(smsc: str | None) -> bytes:
    """The SMSC address that precedes the TPDU (TS 27.005 §3.1 <pdu>, TS 24.011 §8.2.5.1
    RP-address): its length counts octets including the TOA; 00 = use the modem's +CSCA."""
    if smsc is None:
        return b"\x00"
    digits, toa = split_number(smsc)
    if len(digits) > MAX_ADDRESS_DIGITS:
        raise CodecError(f"SMSC address {smsc!r} is too long")
    value = encode_semi_octets(digits)
    return bytes((len(value) + 1, toa)) + value


def decode_sca(reader: Reader) -> str | None:
    field = "SCA"
    start = reader.pos
    length = reader.octet(field)
    if length == 0:
        return None
    if length > 11:  # TOA + 10 octets (TS 24.011 §8.2.5.1 RP-originator/destination address)
        raise PduError(field, start, f"SMSC address length {length} exceeds 11 octets")
    toa = reader.octet(field)
    value_pos = reader.pos
    raw = reader.take(length - 1, field)
    count = 2 * len(raw)
    if raw and raw[-1] >> 4 == _FILLER:
        count -= 1
    digits = decode_semi_octets(raw, count, field, value_pos)
    return "+" + digits if type_of_number(toa) == TON_INTERNATIONAL else digits


# --- Time stamps (TS 23.040 §9.2.3.11 TP-SCTS; same format for TP-DT §9.2.3.13 and
# absolute TP-VP §9.2.3.12.2) ---------------------------------------------------------------------
# Seven octets YY MM DD hh mm ss TZ, each two swapped BCD digits. TZ counts quarter hours; bit 3
# of the octet (the tens digit's high bit) is the sign, 1 = negative. The spec gives no century:
# we read YY as 20YY.
TIMESTAMP_OCTETS = 7
_MAX_QUARTERS = 79  # two BCD digits with the sign bit taken: 0..7 tens, 0..9 units


def _bcd(octet: int, field: str, offset: int) -> int:
    low, high = octet & 0x0F, octet >> 4
    if low > 9 or high > 9:
        raise PduError(field, offset, f"octet 0x{octet:02X} is not two decimal semi-octets")
    return 10 * low + high


def _to_bcd(value: int) -> int:
    return (value // 10) | ((value % 10) << 4)


def decode_timestamp(reader: Reader, field: str) -> datetime:
    start = reader.pos
    raw = reader.take(TIMESTAMP_OCTETS, field)
    parts = [_bcd(raw[i], field, start + i) for i in range(6)]
    tz = raw[6]
    if (tz >> 4) > 9:
        raise PduError(field, start + 6, f"time zone octet 0x{tz:02X} is not semi-octet BCD")
    quarters = 10 * (tz & 0x07) + (tz >> 4)
    if tz & 0x08:
        quarters = -quarters
    try:
        zone = timezone(timedelta(minutes=15 * quarters))
        return datetime(2000 + parts[0], parts[1], parts[2], parts[3], parts[4], parts[5],
                        tzinfo=zone)
    except ValueError as exc:
        raise PduError(field, start, f"not a valid time stamp ({exc})") from None


def encode_timestamp(moment: datetime, field: str = "TP-SCTS") -> bytes:
    """An aware datetime in 2000..2099 whose UTC offset is a whole number of quarter hours."""
    offset = moment.utcoffset()
    if offset is None:
        raise CodecError(f"{field}: the time stamp must be timezone-aware")
    minutes, rest = divmod(offset, timedelta(minutes=15))
    if rest or abs(minutes) > _MAX_QUARTERS:
        raise CodecError(f"{field}: UTC offset {offset} is not a whole number of quarter hours")
    if not 2000 <= moment.year <= 2099:
        raise CodecError(f"{field}: year {moment.year} is outside 2000..2099")
    quarters = abs(minutes)
    tz = (quarters // 10) | ((quarters % 10) << 4) | (0x08 if minutes < 0 else 0)
    fields = (moment.year - 2000, moment.month, moment.day, moment.hour, moment.minute,
              moment.second)
    return bytes(_to_bcd(v) for v in fields) + bytes((tz,))


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


# --- Relative validity period (TS 23.040 §9.2.3.12.1) ---------------------------------------------
#   0..143   (VP + 1) x 5 minutes          (5 min .. 12 h)
#   144..167 12 h + (VP - 143) x 30 minutes (12 h 30 .. 24 h)
#   168..196 (VP - 166) days                (2 .. 30 days)
#   197..255 (VP - 192) weeks               (5 .. 63 weeks)
def relative_vp_duration(vp: int) -> timedelta:
    if not 0 <= vp <= 255:
        raise CodecError(f"relative TP-VP {vp} is not an octet")
    if vp <= 143:
        return timedelta(minutes=(vp + 1) * 5)
    if vp <= 167:
        return timedelta(hours=12, minutes=(vp - 143) * 30)
    if vp <= 196:
        return timedelta(days=vp - 166)
    return timedelta(weeks=vp - 192)


_VP_DURATIONS: tuple[timedelta, ...] = tuple(relative_vp_duration(v) for v in range(256))


def relative_vp(duration: timedelta) -> int:
    """The smallest TP-VP whose period is >= ``duration`` (so a message never expires earlier
    than asked; it may live up to one step longer: 5 min, 30 min, 1 day or 1 week). Durations
    beyond 63 weeks are capped at 255 (63 weeks), the longest the field can say."""
    if duration <= timedelta(0):
        raise CodecError(f"validity period must be positive, got {duration}")
    return min(bisect.bisect_left(_VP_DURATIONS, duration), 255)


# --- Data coding scheme (TS 23.038 §4) ------------------------------------------------------------
class Alphabet(StrEnum):
    GSM7 = "gsm7"
    DATA8 = "8bit"
    UCS2 = "ucs2"


@dataclass(frozen=True, slots=True)
class DataCoding:
    """What a TP-DCS octet says. ``message_class`` 0 = flash, 1 ME, 2 SIM, 3 TE, None = none;
    ``waiting`` is the message-waiting group (0b1100/0b1101/0b1110) or None."""

    alphabet: Alphabet
    message_class: int | None
    compressed: bool
    waiting: int | None = None


# TS 23.038 §4, general data coding bits 3-2 (groups 00xx and 01xx): 00 GSM 7-bit default,
# 01 8-bit data, 10 UCS-2, 11 reserved. "Any reserved codings shall be assumed to be the GSM 7 bit
# default alphabet by a receiving entity."
_GENERAL_ALPHABET = (Alphabet.GSM7, Alphabet.DATA8, Alphabet.UCS2, Alphabet.GSM7)


def decode_dcs(dcs: int) -> DataCoding:
    group = dcs >> 4
    if group <= 0b0111:  # 00xx general data coding, 01xx the same with "marked for deletion"
        return DataCoding(
            alphabet=_GENERAL_ALPHABET[(dcs >> 2) & 0x03],
            message_class=(dcs & 0x03) if dcs & 0x10 else None,
            compressed=bool(dcs & 0x20),
        )
    if group in (0b1100, 0b1101):  # message waiting: discard / store, GSM 7-bit default
        return DataCoding(Alphabet.GSM7, None, False, waiting=group)
    if group == 0b1110:  # message waiting: store, UCS-2
        return DataCoding(Alphabet.UCS2, None, False, waiting=group)
    if group == 0b1111:  # data coding / message class: bit 2 = 8-bit data, bits 1-0 class
        return DataCoding(Alphabet.DATA8 if dcs & 0x04 else Alphabet.GSM7, dcs & 0x03, False)
    # 1000..1011: reserved coding groups -> GSM 7-bit default (TS 23.038 §4, see above)
    return DataCoding(Alphabet.GSM7, None, False)


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


def start_reader(data: bytes, has_sca: bool) -> tuple[Reader, str | None]:
    """A reader over ``data`` past the SCA (TS 27.005 §3.1 <pdu>: the SMSC address comes first
    unless the modem omits it), and the SMSC it names."""
    reader = Reader(bytes(data))
    smsc = decode_sca(reader) if has_sca else None
    return reader, smsc


def read_dcs(reader: Reader) -> tuple[int, DataCoding]:
    """TP-DCS and what it means; compressed user data (TS 23.038 §4 bit 5) is refused."""
    pos = reader.pos
    dcs = reader.octet("TP-DCS")
    coding = decode_dcs(dcs)
    if coding.compressed:
        raise PduError("TP-DCS", pos, f"0x{dcs:02X} marks compressed user data (TS 23.042),"
                       " which smsgate does not decode")
    return dcs, coding
