"""UDH build/parse (TS 23.040 §9.2.3.24) and payload decoding by data_coding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codec.errors import CodecError
from gateway.codec.udh import (
    ConcatInfo,
    InformationElement,
    build_udh,
    concat_ie,
    decode_payload,
    parse_udh,
)


def test_concat_headers_match_published_vectors() -> None:
    # protocols.md §3.1 (python-gsmmodem's test vectors)
    assert build_udh(concat_ie(0x17, 3, 1)).hex() == "0500031703" + "01"
    assert build_udh(concat_ie(384, 4, 2, ref_bits=16)).hex() == "06080401800402"


def test_parse_reads_concat_and_language() -> None:
    udh, used = parse_udh(bytes.fromhex("0C0804ABCD0302240101250101") + b"text")
    assert used == 13
    assert udh.concat() == ConcatInfo(0xABCD, 3, 2, 16)
    assert udh.national_language() == (1, 1)


@pytest.mark.parametrize("hexdata", ["050003010002", "050003010203", "050003010300"])
def test_invalid_concat_ie_is_ignored(hexdata: str) -> None:
    # §9.2.3.24.1: total 0, seq > total or seq 0 -> ignore the whole IE
    udh, _ = parse_udh(bytes.fromhex(hexdata))
    assert udh.concat() is None


@pytest.mark.parametrize("hexdata", ["", "05", "0500", "050004010203", "0300030102"])
def test_malformed_headers_raise(hexdata: str) -> None:
    with pytest.raises(CodecError):
        parse_udh(bytes.fromhex(hexdata))


@pytest.mark.parametrize(
    "args", [(0, 0, 1), (0, 2, 3), (256, 2, 1), (0x10000, 2, 1, 16), (0, 2, 1, 12)]
)
def test_concat_ie_validates(args: tuple[int, ...]) -> None:
    with pytest.raises(CodecError):
        concat_ie(*args)


@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=8)), min_size=1, max_size=6))
def test_build_parse_round_trip(ies: list[tuple[int, bytes]]) -> None:
    elements = tuple(InformationElement(i, d) for i, d in ies)
    raw = build_udh(*elements)
    udh, used = parse_udh(raw + b"\x01\x02")
    assert used == len(raw)
    assert udh.elements == elements
    assert udh.to_bytes() == raw


@pytest.mark.parametrize(
    "payload,dc,text",
    [
        (b"\x1b\x65 5", 0x00, "€ 5"),
        (b"\x1b\x65", 0xF0, "€"),
        (b"plain", 0x01, "plain"),
        ("Çà".encode("latin-1"), 0x03, "Çà"),
        ("Hi 😀".encode("utf-16-be"), 0x08, "Hi 😀"),
        (b"\xd8\x3d\x00a", 0x08, "\ufffda"),
    ],
)
def test_decode_payload(payload: bytes, dc: int, text: str) -> None:
    assert decode_payload(payload, dc) == text


@pytest.mark.parametrize("payload,dc", [(b"\x00a\x00", 0x08), (b"\x01", 0x04), (b"\x01", 0xF4)])
def test_decode_payload_rejects(payload: bytes, dc: int) -> None:
    with pytest.raises(CodecError):
        decode_payload(payload, dc)
