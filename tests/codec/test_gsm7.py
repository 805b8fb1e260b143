"""GSM 7-bit tables and packing against the spec and an independent codec (gsm0338)."""

from __future__ import annotations

import gsm0338  # noqa: F401  (registers the 'gsm03.38' codec)
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codec.errors import CodecError
from gateway.codec.gsm7 import (
    DEFAULT_ALPHABET,
    ESC,
    GSM7_CHARSET,
    GSM7_EXTENDED,
    decode_septets,
    encode_septets,
    fill_bits,
    header_septets,
    is_gsm7,
    non_gsm7_chars,
    pack_septets,
    unpack_septets,
)

gsm_text = st.text(alphabet=sorted(GSM7_CHARSET), max_size=400)


def test_the_ten_escape_characters() -> None:
    assert GSM7_EXTENDED == set("\f^{}\\[~]|€")
    for ch in GSM7_EXTENDED:
        assert encode_septets(ch)[0] == ESC and len(encode_septets(ch)) == 2


@pytest.mark.parametrize(
    "ch,septet",
    [("@", 0x00), ("$", 0x02), ("¤", 0x24), ("_", 0x11), ("¡", 0x40), ("¿", 0x60), ("§", 0x5F),
     ("Ç", 0x09), ("Δ", 0x10), ("Ξ", 0x1A), ("\n", 0x0A), ("\r", 0x0D), ("à", 0x7F)],
)
def test_spec_positions(ch: str, septet: int) -> None:
    # TS 23.038 §6.2.1 cells that libraries get wrong (protocols.md §1.3)
    assert encode_septets(ch) == bytes([septet])


@pytest.mark.parametrize("ch", ["`", "ç", "Α", "Β", "\x1b", "\t", "\u00a0", "😀", "’"])
def test_not_in_the_alphabet(ch: str) -> None:
    assert not is_gsm7(ch)
    with pytest.raises(CodecError, match="not in the GSM 7-bit alphabet"):
        encode_septets("ok" + ch)


def test_non_gsm7_chars_lists_each_once_in_order() -> None:
    assert non_gsm7_chars("a😀b`😀ç€") == ["😀", "`", "ç"]


def test_agrees_with_gsm0338_on_every_character_both_define() -> None:
    for ch in GSM7_CHARSET:
        assert encode_septets(ch) == ch.encode("gsm03.38"), repr(ch)
    for code in range(128):
        if code == ESC:
            continue
        assert decode_septets(bytes([code])) == bytes([code]).decode("gsm03.38")


def test_decoder_fallbacks_of_ts_23_038() -> None:
    assert decode_septets(b"\x1b\x41") == "A"  # ESC + undefined -> main table character
    assert decode_septets(b"\x1b\x1b") == " "  # SS2 -> space
    assert decode_septets(b"a\x1b") == "a "  # truncated escape
    with pytest.raises(CodecError):
        decode_septets(b"\x80")


def test_alphabet_has_128_distinct_cells() -> None:
    assert len(set(DEFAULT_ALPHABET)) == 128


@given(gsm_text)
def test_septet_round_trip(text: str) -> None:
    assert decode_septets(encode_septets(text)) == text


def test_packing_worked_examples() -> None:
    # protocols.md §3.2/§3.3: "Hello" and the dreamfabric "hellohello" SMS-SUBMIT user data
    assert pack_septets(b"Hello").hex().upper() == "C8329BFD06"
    assert pack_septets(encode_septets("hellohello")).hex().upper() == "E8329BFD4697D9EC37"
    # Henderson's multipart SMS-DELIVER: UDH 05 00 03 3A 02 02 then 1 fill bit, 13 septets
    ud = bytes.fromhex("0500033A0202EC6176BD0C4ACF4134170E06")
    text = unpack_septets(ud, header_septets(6) + 13)[header_septets(6):]
    assert decode_septets(text) == "value is 4.80"


@pytest.mark.parametrize("octets,fill,septets", [(4, 3, 5), (6, 1, 7), (7, 0, 8), (9, 5, 11),
                                                  (10, 4, 12), (12, 2, 14), (13, 1, 15)])
def test_fill_bits_table(octets: int, fill: int, septets: int) -> None:
    # protocols.md §3.2 table (TS 23.040 §9.2.3.24)
    assert fill_bits(octets) == fill
    assert header_septets(octets) == septets


@given(st.binary(max_size=200).map(lambda b: bytes(x & 0x7F for x in b)), st.integers(0, 6))
def test_pack_unpack_round_trip(septets: bytes, fill: int) -> None:
    packed = pack_septets(septets, fill)
    assert len(packed) == (fill + 7 * len(septets) + 7) // 8
    assert unpack_septets(packed, len(septets), fill) == septets
    assert packed[0] & ((1 << fill) - 1) == 0 if packed else True


def test_unpack_rejects_short_input() -> None:
    with pytest.raises(CodecError):
        unpack_septets(b"\x00", 2)
