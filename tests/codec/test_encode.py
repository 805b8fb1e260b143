"""encode(): encoding choice, capacities and split rules, table-driven from the specs.

Sources for the expected values: TS 23.040 §9.2.3.24.1 (153/67 with an 8-bit reference UDH,
escape sequences never split), ../shared/reference/protocols.md §2.1 (capacity table), §2.2 (split
rules), §2.3 (Twilio calculator vectors), §2.5 (the cases other libraries get wrong).
"""

from __future__ import annotations

import re

import pytest

from gateway.codec import (
    CodecError,
    Concat,
    EncodedMessage,
    EncodeOptions,
    Encoding,
    ReferenceCounter,
    encode,
)
from gateway.codec.udh import decode_short_message, parse_udh


def septet_counts(m: EncodedMessage) -> list[int]:
    return [p.units for p in m.parts]


def joined(m: EncodedMessage) -> str:
    out = []
    for p in m.parts:
        _, text = decode_short_message(p.short_message, m.data_coding, udhi=bool(m.esm_class))
        out.append(text)
    return "".join(out)


@pytest.mark.parametrize(
    "text,encoding,units",
    [
        ("", Encoding.GSM7, [0]),
        ("a" * 160, Encoding.GSM7, [160]),
        ("a" * 161, Encoding.GSM7, [153, 8]),
        ("a" * 306, Encoding.GSM7, [153, 153]),
        ("a" * 307, Encoding.GSM7, [153, 153, 1]),
        # escape pair at septets 153/154: the ESC may not end part 1 (TS 23.040 §9.2.3.24.1)
        ("a" * 152 + "€" + "a" * 152, Encoding.GSM7, [152, 153, 1]),
        ("a" * 152 + "€" + "a" * 151, Encoding.GSM7, [152, 153]),
        ("€" * 80, Encoding.GSM7, [160]),
        ("€" * 81, Encoding.GSM7, [152, 10]),  # 76 pairs = 152, then 5 pairs
        ("ç" * 70, Encoding.UCS2, [70]),
        ("ç" * 71, Encoding.UCS2, [67, 4]),
        # surrogate pair at units 67/68: part 1 carries 66 units (protocols.md §2.5)
        ("a" * 66 + "😀" + "a" * 10, Encoding.UCS2, [66, 12]),
        ("a" * 68 + "😀", Encoding.UCS2, [70]),
        ("a" * 69 + "😀", Encoding.UCS2, [67, 4]),
    ],
)
def test_capacities_and_boundaries(text: str, encoding: Encoding, units: list[int]) -> None:
    m = encode(text, EncodeOptions(reference=7))
    assert m.encoding == encoding
    assert septet_counts(m) == units
    assert m.segments == len(units)
    assert m.data_coding == (0x00 if encoding == Encoding.GSM7 else 0x08)
    assert m.esm_class == (0x40 if len(units) > 1 else 0x00)
    assert joined(m) == text
    assert "".join(p.text for p in m.parts) == text


def test_escape_boundary_bytes() -> None:
    m = encode("a" * 152 + "€" + "a" * 152, EncodeOptions(reference=0x2A))
    first, second, third = (p.short_message for p in m.parts)
    assert first == bytes.fromhex("0500032A0301") + b"a" * 152
    assert second == bytes.fromhex("0500032A0302") + b"\x1b\x65" + b"a" * 151
    assert third == bytes.fromhex("0500032A0303") + b"a"


def test_surrogate_boundary_bytes() -> None:
    m = encode("a" * 66 + "😀" + "b" * 10, EncodeOptions(reference=1))
    assert m.parts[0].payload[-2:] == b"\x00a"
    assert m.parts[1].payload[:4] == bytes.fromhex("D83DDE00")


@pytest.mark.parametrize(
    "text,encoding",
    [
        ("§", Encoding.GSM7),  # 0x5F (smpplib and python-gsmmodem get this wrong)
        ("`", Encoding.UCS2),  # not in the default alphabet
        ("Ç", Encoding.GSM7),  # 0x09 is the capital
        ("ç", Encoding.UCS2),
        ("ΔΦΓΛΩΠΨΣΘΞ", Encoding.GSM7),  # Greek capitals in the table
        ("Α", Encoding.UCS2),  # GREEK CAPITAL ALPHA looks like A but is not in the table
        ("ΒΕΗΙΚΜΝΟΡΤΧΥΖ", Encoding.UCS2),
        ("line1\r\nline2\n", Encoding.GSM7),
        ("\f", Encoding.GSM7),  # ESC 0x0A
        ("\x1b", Encoding.UCS2),  # a raw ESC is not a character of the alphabet
        ("\t", Encoding.UCS2),
    ],
)
def test_alphabet_membership(text: str, encoding: Encoding) -> None:
    m = encode(text)
    assert m.encoding == encoding
    assert joined(m) == text


def test_spec_septets() -> None:
    assert encode("§").parts[0].payload == b"\x5f"
    assert encode("Ç").parts[0].payload == b"\x09"
    assert encode("\r\n").parts[0].payload == b"\x0d\x0a"
    assert encode("€\f").parts[0].payload == b"\x1b\x65\x1b\x0a"
    assert encode("@$").parts[0].payload == b"\x00\x02"


def test_empty_text_is_one_empty_part() -> None:
    m = encode("")
    assert m.segments == 1 and m.units_left == 160
    assert m.parts[0].short_message == b"" and m.parts[0].text == ""


@pytest.mark.parametrize(
    "text,segments",
    [
        # protocols.md §2.3: Twilio sms-segments-calculator's own vectors, which agree with us
        ("1" * 160, 1),
        ("1" * 161, 2),
        ("1" * 307, 3),
        ("😜" + "1" * 68, 1),
        ("😜" + "1" * 69, 2),
        ("🇮🇹" + "1" * 66, 1),
        ("🏳️‍🌈" + "1" * 64, 1),
        ("^" + "1" * 158, 1),
        ("^" + "1" * 159, 2),
    ],
)
def test_twilio_calculator_vectors(text: str, segments: int) -> None:
    assert encode(text).segments == segments


def test_ucs2_chars_and_units_left() -> None:
    m = encode("Hi 😀 ça va?")
    assert m.encoding == Encoding.UCS2
    assert m.ucs2_chars == ("😀", "ç")
    assert m.units_left == 70 - len("Hi 😀 ça va?".encode("utf-16-be")) // 2
    g = encode("a" * 161)
    assert g.ucs2_chars == () and g.units_left == 153 - 8


# --- grapheme clusters (docs/codec.md: kept whole when the cluster fits in one part) ---

FAMILY = "👨\u200d👩\u200d👧\u200d👦"  # 11 units
FLAG = "🇮🇹"  # 4 units
ACCENTED = "e\u0301"  # e + COMBINING ACUTE ACCENT
ENGLAND = "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"  # tag sequence


@pytest.mark.parametrize(
    "cluster", [FAMILY, FLAG, ACCENTED + "\u0323", "👍🏽", "❤️", ENGLAND, "1\ufe0f\u20e3"]
)
def test_cluster_straddling_a_boundary_moves_whole(cluster: str) -> None:
    prefix = "ç" * 66  # 66 units; every cluster above is >= 2 units so it straddles unit 67
    m = encode(prefix + cluster + "x" * 10, EncodeOptions(reference=3))
    assert m.parts[0].text == prefix
    assert m.parts[1].text == cluster + "x" * 10


def test_flags_pair_from_the_left() -> None:
    # 'a' + 16 flags = 65 units; unit 67 falls between the two indicators of the 17th flag
    # (a surrogate-pair boundary but not a cluster boundary): the whole flag moves.
    text = "a" + FLAG * 18
    m = encode(text, EncodeOptions(reference=3))
    assert m.parts[0].text == "a" + FLAG * 16
    assert m.parts[1].text == FLAG * 2


def test_cluster_longer_than_a_part_is_cut_between_code_points() -> None:
    zalgo = "a" + "\u0301" * 100  # one cluster of 101 units
    m = encode(zalgo, EncodeOptions(reference=3))
    assert [p.units for p in m.parts] == [67, 34]
    assert "".join(p.text for p in m.parts) == zalgo
    family_chain = "\u200d".join(["👨"] * 30)  # 89 units, one ZWJ cluster
    m = encode(family_chain, EncodeOptions(reference=3))
    assert all(not (0xD800 <= int.from_bytes(p.payload[-2:], "big") <= 0xDBFF) for p in m.parts)
    assert "".join(p.text for p in m.parts) == family_chain


def test_crlf_may_be_cut() -> None:
    m = encode("a" * 152 + "\r\n" + "b" * 10, EncodeOptions(reference=3))
    assert m.parts[0].text.endswith("\r") and m.parts[1].text.startswith("\n")


# --- concatenation methods ---


def test_udh8_udh16_headers() -> None:
    text = "x" * 400
    m8 = encode(text, EncodeOptions(concat=Concat.UDH8, reference=0xAB))
    assert [p.udh.hex() for p in m8.parts] == ["050003ab0301", "050003ab0302", "050003ab0303"]
    assert septet_counts(m8) == [153, 153, 94]
    m16 = encode(text, EncodeOptions(concat=Concat.UDH16, reference=0x1234))
    assert [p.udh.hex() for p in m16.parts] == [
        "06080412340301", "06080412340302", "06080412340303"
    ]
    assert septet_counts(m16) == [152, 152, 96]
    u16 = encode("ç" * 140, EncodeOptions(concat=Concat.UDH16, reference=1))
    assert [p.units for p in u16.parts] == [66, 66, 8]


def test_sar_parts_have_no_udh_and_carry_the_triple() -> None:
    m = encode("y" * 200, EncodeOptions(concat=Concat.SAR, reference=513))
    assert m.esm_class == 0 and all(p.udh == b"" for p in m.parts)
    assert [p.sar for p in m.parts] == [(513, 2, 1), (513, 2, 2)]
    assert septet_counts(m) == [152, 48]  # sized for the 16-bit IE the SMSC may build


def test_payload_is_one_part_with_segments_as_udh8() -> None:
    m = encode("z" * 400, EncodeOptions(concat=Concat.PAYLOAD))
    assert len(m.parts) == 1 and m.parts[0].payload == b"z" * 400
    assert m.parts[0].udh == b"" and m.esm_class == 0 and m.reference is None
    assert m.segments == 3 and m.units_left == 153 - 94


def test_single_part_never_draws_a_reference() -> None:
    refs = ReferenceCounter(start=5)
    m = encode("short", destination="+447700900123", references=refs)
    assert m.reference is None and len(refs) == 0


def test_references_count_per_destination() -> None:
    refs = ReferenceCounter(start=250)
    a = "+447700900001"
    b = "+447700900002"
    got = [encode("q" * 200, destination=d, references=refs).reference for d in (a, a, b, a, b)]
    assert got == [250, 251, 251, 252, 252]
    many = [encode("q" * 200, destination="+1", references=refs).reference for _ in range(8)]
    assert many == [252, 253, 254, 255, 0, 1, 2, 3]  # 8-bit wraps
    udh = encode("q" * 200, EncodeOptions(concat=Concat.UDH16), destination="+1", references=refs)
    assert udh.reference == 260  # the same counter, 16 bits wide
    assert parse_udh(udh.parts[0].udh)[0].concat() is not None


def test_reference_counter_forgets_least_recent() -> None:
    refs = ReferenceCounter(start=0, max_destinations=2)
    assert [refs.next(d) for d in ("a", "b", "a", "c")] == [0, 1, 1, 2]
    assert len(refs) == 2
    assert refs.next("b") == 3  # forgotten, restarts from the running counter, not from 1


# --- errors ---


def test_too_many_parts_is_an_error_not_truncation() -> None:
    with pytest.raises(CodecError, match=r"^256 parts needed, at most 255$"):
        encode("a" * (153 * 255 + 1))
    assert encode("a" * (153 * 255)).segments == 255
    with pytest.raises(CodecError, match=r"^4 parts needed, at most 3$"):
        encode("a" * 460, EncodeOptions(max_parts=3))
    with pytest.raises(CodecError, match="parts needed"):
        encode("a" * 2000, EncodeOptions(concat=Concat.PAYLOAD, max_parts=10))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"concat": "udh9"}, "unknown concatenation method"),
        ({"national_languages": ("de",)}, "unknown national language 'de'"),
        ({"max_parts": 0}, "max_parts"),
        ({"max_parts": 256}, "max_parts"),
        ({"reference": 256}, "out of range for udh8"),
        ({"reference": -1, "concat": "udh16"}, "out of range"),
        ({"reference": 65536, "concat": "sar"}, "out of range"),
    ],
)
def test_invalid_options(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(CodecError, match=match):
        EncodeOptions(**kwargs)  # type: ignore[arg-type]


def test_options_accept_strings() -> None:
    assert EncodeOptions(concat="udh16").concat is Concat.UDH16  # type: ignore[arg-type]


def test_lone_surrogate_is_a_clear_error() -> None:
    with pytest.raises(CodecError, match=re.escape("lone surrogate U+D83D")):
        encode("x\ud83d")


def test_hot_path_constructors_equal_the_dataclasses() -> None:
    from dataclasses import fields

    from gateway.codec.model import EncodedMessage as M
    from gateway.codec.model import Part, make_message, make_part

    part_args = (2, 3, b"\x05", b"ab", 2, "ab", (1, 3, 2))
    assert make_part(*part_args) == Part(*part_args)
    assert [f.name for f in fields(Part)] == [
        "seq", "total", "udh", "payload", "units", "text", "sar"
    ]
    msg_args = ("ab", Encoding.GSM7, 0, 0x40, Concat.SAR, 5, (Part(*part_args),), (1, 0),
                (("’", "'"),), True, 3, 10)
    assert make_message(*msg_args) == M(*msg_args)  # type: ignore[arg-type]
    assert [f.name for f in fields(M)] == [
        "text", "encoding", "data_coding", "esm_class", "concat", "reference", "parts",
        "national_language", "substitutions", "substitutions_enabled", "segments", "units_left",
    ]
    with pytest.raises(AttributeError):
        make_part(*part_args).seq = 9  # type: ignore[misc]
    from gateway.codec.model import _MessageSlots, _PartSlots

    assert set(_PartSlots.__slots__) == set(Part.__slots__)
    assert set(_MessageSlots.__slots__) == set(M.__slots__)


def test_splitter_quick_accept_ranges_hold_no_extending_characters() -> None:
    # split_utf16 accepts a cut before these code points without the cluster walk
    from gateway.codec.graphemes import is_extend

    ranges = (range(0x300), range(0x3400, 0xA000), range(0xAC00, 0xD7A4))
    assert not [cp for r in ranges for cp in r if is_extend(cp)]


def test_thousands_of_flags_stay_whole() -> None:
    # Regional indicators pair from the start of their run; the look-back stops at the part
    # start (a known boundary), so this is linear, and every part holds whole flags.
    m = encode(FLAG * 4000, EncodeOptions(reference=1))
    assert m.segments == 250
    assert {p.text for p in m.parts} == {FLAG * 16}
