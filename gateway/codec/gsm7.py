"""GSM 7-bit default alphabet: tables, septet encoding/decoding and 7-bit packing.

Everything here is table-driven data built once at import; the hot path is ``str.translate``
plus a C-level set test, never a per-character ``.index()`` scan.

Sources: 3GPP TS 23.038 §6.2.1 (default alphabet) and §6.2.1.1 (extension table), cross-checked
against Android ``GsmAlphabet``, the ``gsm0338`` package and Perl ``Encode::GSM0338`` 2.10 (see
``../shared/reference/protocols.md`` §1.1–§1.3). Packing: 3GPP TS 23.040 §9.2.3.24 (fill bits
after a User Data Header so the text starts on a septet boundary) and §9.2.3.16 (TP-UDL).
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from types import MappingProxyType

from gateway.codec.errors import CodecError

ESC = 0x1B
"""TS 23.038 §6.2.1: septet 0x1B escapes to the extension (single shift) table."""

_UNMAPPED = "\x80"  # never a septet: marks a character the tables cannot carry

# TS 23.038 §6.2.1 default alphabet, indexed by septet value 0x00..0x7F. Position 0x1B (ESC) holds
# a placeholder that is never produced by decoding and never accepted by encoding.
DEFAULT_ALPHABET: str = (
    "@£$¥èéùìòÇ\nØø\rÅå"  # 0x00-0x0F
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"  # 0x10-0x1F (0x1B = ESC)
    " !\"#¤%&'()*+,-./"  # 0x20-0x2F ($ is 0x02; 0x24 is the currency sign ¤)
    "0123456789:;<=>?"  # 0x30-0x3F
    "¡ABCDEFGHIJKLMNO"  # 0x40-0x4F
    "PQRSTUVWXYZÄÖÑÜ§"  # 0x50-0x5F (0x5F is §; the backtick is not in the alphabet)
    "¿abcdefghijklmno"  # 0x60-0x6F
    "pqrstuvwxyzäöñüà"  # 0x70-0x7F
)
assert len(DEFAULT_ALPHABET) == 128

# TS 23.038 §6.2.1.1 default alphabet extension table: ESC + septet -> character. These ten
# characters cost two septets each. 0x0A is FF (page break; shown as LF by phones without
# extension support); 0x65 is the euro sign (shown as 'e' by such phones).
DEFAULT_EXTENSION: Mapping[int, str] = MappingProxyType(
    {
        0x0A: "\f",
        0x14: "^",
        0x28: "{",
        0x29: "}",
        0x2F: "\\",
        0x3C: "[",
        0x3D: "~",
        0x3E: "]",
        0x40: "|",
        0x65: "€",
    }
)


def build_encode_table(
    locking: str = DEFAULT_ALPHABET, single: Mapping[int, str] = DEFAULT_EXTENSION
) -> dict[int, str]:
    """A ``str.translate`` table: character -> its septet(s) as latin-1 code points.

    A character present in both tables is encoded with the (one-septet) locking table. ASCII
    characters with no septet (backtick, ESC itself, most control characters) map to the
    out-of-range marker ``\x80`` so that :func:`encode_septets` can detect them; every other
    unmapped character is >= U+0080 and is detected the same way.
    """
    table: dict[int, str] = {ord(ch): chr(0x1B) + chr(code) for code, ch in single.items()}
    for code, ch in enumerate(locking):
        if code != ESC:
            table[ord(ch)] = chr(code)
    for cp in range(0x80):
        table.setdefault(cp, _UNMAPPED)
    return table


def build_charset(
    locking: str = DEFAULT_ALPHABET, single: Mapping[int, str] = DEFAULT_EXTENSION
) -> frozenset[str]:
    """Characters encodable with these tables (ESC itself is never encodable)."""
    return frozenset(ch for code, ch in enumerate(locking) if code != ESC) | frozenset(
        single.values()
    )


def build_cost_table(
    locking: str = DEFAULT_ALPHABET, single: Mapping[int, str] = DEFAULT_EXTENSION
) -> dict[str, int]:
    """Septets each encodable character costs: 1 in the locking table, else 2 (ESC + code)."""
    table = build_encode_table(locking, single)
    return {chr(cp): len(seq) for cp, seq in table.items() if seq != _UNMAPPED}


_ASCII_BYTES = bytes(range(0x80))


class SeptetEncoder:
    """Text -> unpacked septets for one (locking, single shift) table pair, or None if unmappable.

    The hot path of the codec, built from C-level primitives only:
    - ASCII text: ``bytes.translate`` through a 256-octet table;
    - other text: ``codecs.charmap_encode`` with an ``EncodingMap`` (the machinery behind the
      cp125x codecs) into intermediate octets, then ``bytes.translate`` to septets.
    Single-shift characters first become one marker octet ``0x80 | code``; the (rare) markers are
    then expanded to ``ESC, code`` with one ``bytes.replace`` per distinct marker.
    An ``EncodingMap`` requires octet 0 to decode to U+0000, so intermediate octets are assigned
    from 1 upwards and NUL (never an SMS character) is rejected before encoding.
    """

    __slots__ = ("_ascii", "_invalid", "_map", "_pairs", "_post")

    def __init__(
        self, locking: str = DEFAULT_ALPHABET, single: Mapping[int, str] = DEFAULT_EXTENSION
    ) -> None:
        final: dict[str, int] = {}
        for code, ch in enumerate(locking):
            if code != ESC:
                final[ch] = code
        for code, ch in single.items():
            final.setdefault(ch, 0x80 | code)  # the locking table wins: one septet, not two
        self._pairs = {0x80 | code: bytes((ESC, code)) for code in single}
        self._invalid = next(b for b in range(0x80, 0x100) if b not in self._pairs)
        decoding = ["\ufffe"] * 256  # U+FFFE: "undefined" for charmap_build
        decoding[0] = "\x00"
        post = bytearray(256)
        for slot, (ch, value) in enumerate(final.items(), start=1):
            decoding[slot] = ch
            post[slot] = value
        self._map = codecs.charmap_build("".join(decoding))
        self._post = bytes(post)
        ascii_table = bytearray([self._invalid]) * 256
        for ch, value in final.items():
            if ch < "\x80":
                ascii_table[ord(ch)] = value
        self._ascii = bytes(ascii_table)

    def encode(self, text: str) -> bytes | None:
        if text.isascii():
            out = text.encode("ascii").translate(self._ascii)
        else:
            if "\x00" in text:
                return None
            # "ignore" drops unmappable characters without raising (CPython handles it inline):
            # every character maps to one intermediate octet, so a shorter result means some
            # character is not in the tables. Cheaper than catching UnicodeEncodeError.
            raw: bytes = codecs.charmap_encode(text, "ignore", self._map)[0]
            if len(raw) != len(text):
                return None
            out = raw.translate(self._post)
        if out.isascii():
            return out
        for marker in set(out.translate(None, _ASCII_BYTES)):
            pair = self._pairs.get(marker)
            if pair is None:
                return None
            out = out.replace(bytes((marker,)), pair)
        return out


DEFAULT_SEPTETS = SeptetEncoder()
"""The default alphabet + extension table encoder (TS 23.038 §6.2.1 / §6.2.1.1)."""

GSM7_CHARSET: frozenset[str] = build_charset()
"""Every character the default alphabet plus its extension table can carry."""

GSM7_EXTENDED: frozenset[str] = frozenset(DEFAULT_EXTENSION.values())
"""The ten characters that cost two septets in the default tables."""

_ENCODE = build_encode_table()
DEFAULT_ENCODE_TABLE: Mapping[int, str] = _ENCODE
"""``str.translate`` table for the default alphabet + extension (a plain dict: the fast path)."""


def is_gsm7(text: str) -> bool:
    """True when every character of ``text`` maps into the default alphabet or its extension."""
    return GSM7_CHARSET.issuperset(text)


def non_gsm7_chars(text: str) -> list[str]:
    """The distinct characters that force UCS-2, in order of first appearance."""
    seen: dict[str, None] = {}
    for ch in text:
        if ch not in GSM7_CHARSET:
            seen.setdefault(ch, None)
    return list(seen)


def encode_septets(text: str, table: Mapping[int, str] | None = None) -> bytes:
    """Text -> unpacked septets (one per octet, ESC pairs included), as SMPP data_coding 0 expects.

    Raises :class:`CodecError` naming the first character that does not map.
    """
    enc = _ENCODE if table is None else table
    out = text.translate(enc)
    # Every mapped character becomes septets < 0x80; an unmapped one stays itself (>= U+0080)
    # or becomes the \x80 marker, so ASCII output means every character mapped.
    if out.isascii():
        return out.encode("ascii")
    for index, ch in enumerate(text):  # error path only: find the culprit for the message
        seq = enc.get(ord(ch))
        if seq is None or not seq.isascii():
            raise CodecError(
                f"character {ch!r} (U+{ord(ch):04X}) at index {index}"
                " is not in the GSM 7-bit alphabet"
            )
    raise AssertionError("unreachable: non-septet output without an unmapped character")


def decode_septets(
    septets: bytes | bytearray,
    locking: str = DEFAULT_ALPHABET,
    single: Mapping[int, str] = DEFAULT_EXTENSION,
) -> str:
    """Unpacked septets -> text, applying the TS 23.038 §6.2.1.1 receiver rules.

    - ESC + a code with no extension entry shows the main-table character for that code;
    - ESC ESC (SS2, reserved for another extension table) shows a space;
    - a lone ESC at the very end shows a space (a truncated escape, nothing to display).
    Values above 0x7F are not septets and raise :class:`CodecError`.
    """
    out: list[str] = []
    i = 0
    n = len(septets)
    while i < n:
        s = septets[i]
        if s > 0x7F:
            raise CodecError(f"byte 0x{s:02X} at offset {i} is not a 7-bit septet")
        if s != ESC:
            out.append(locking[s])
            i += 1
            continue
        if i + 1 >= n:
            out.append(" ")
            break
        nxt = septets[i + 1]
        if nxt > 0x7F:
            raise CodecError(f"byte 0x{nxt:02X} at offset {i + 1} is not a 7-bit septet")
        if nxt == ESC:
            out.append(" ")
        else:
            out.append(single.get(nxt, locking[nxt]))
        i += 2
    return "".join(out)


def fill_bits(header_octets: int) -> int:
    """Fill bits after a UDH of ``header_octets`` (UDHL octet included), TS 23.040 §9.2.3.24.

    ``fill = (7 - (8 * header_octets) % 7) % 7``: 6 octets (8-bit concat) -> 1, 7 -> 0, 4 -> 3.
    """
    return (7 - (8 * header_octets) % 7) % 7


def header_septets(header_octets: int) -> int:
    """Septets a UDH of ``header_octets`` occupies in TP-UDL (rounded up with the fill bits)."""
    return (8 * header_octets + 6) // 7


def pack_septets(septets: bytes | bytearray, fill: int = 0) -> bytes:
    """Pack septets LSB-first into octets after ``fill`` zero bits (TS 23.038 §6.1.2.1.1).

    "Hello" -> C8 32 9B FD 06. The last octet's unused high bits are zero.
    """
    if not 0 <= fill <= 6:
        raise CodecError(f"fill bits must be 0..6, got {fill}")
    acc = 0
    for i, s in enumerate(septets):
        acc |= (s & 0x7F) << (7 * i)
    nbits = fill + 7 * len(septets)
    return (acc << fill).to_bytes((nbits + 7) // 8, "little")


def unpack_septets(data: bytes | bytearray, count: int, fill: int = 0) -> bytes:
    """Inverse of :func:`pack_septets`: take ``count`` septets after ``fill`` bits."""
    if not 0 <= fill <= 6:
        raise CodecError(f"fill bits must be 0..6, got {fill}")
    needed = (fill + 7 * count + 7) // 8
    if count < 0 or needed > len(data):
        raise CodecError(
            f"{len(data)} octets cannot hold {count} septets after {fill} fill bits"
        )
    acc = int.from_bytes(data[:needed], "little") >> fill
    return bytes((acc >> (7 * i)) & 0x7F for i in range(count))
