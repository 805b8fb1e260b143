"""MO decoding (data_coding 0/1/3/8, UDH and SAR, message_payload) and reassembly in any order."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.smpp.mo import Reassembler, split_part
from drivers.smpp.pdu import DeliverSm
from gateway.codec.gsm7 import encode_septets
from gateway.codec.udh import build_udh, concat_ie


def deliver(body: bytes, dc: int = 0, esm: int = 0, **kw: object) -> DeliverSm:
    return DeliverSm(
        source_addr="447700900123",
        destination_addr="12345",
        source_addr_ton=1,
        source_addr_npi=1,
        short_message=body,
        data_coding=dc,
        esm_class=esm,
        **kw,  # type: ignore[arg-type]
    )


def test_single_part_in_each_coding() -> None:
    r = Reassembler()
    cases = [
        (encode_septets("Hello €uro"), 0x00, "Hello €uro"),
        (b"plain ascii", 0x01, "plain ascii"),
        ("café".encode("latin-1"), 0x03, "café"),
        ("Привет 😀".encode("utf-16-be"), 0x08, "Привет 😀"),
    ]
    for body, dc, text in cases:
        mo, evicted = r.add(deliver(body, dc), 0.0)
        assert mo is not None and not evicted
        assert mo.text == text and mo.complete and mo.parts == mo.total == 1
        assert mo.source_addr_ton == 1


def test_binary_data_keeps_bytes() -> None:
    mo, _ = Reassembler().add(deliver(b"\x00\xff\x10", 0x04), 0.0)
    assert mo is not None and mo.text is None and mo.user_data == b"\x00\xff\x10"


def test_message_payload_body() -> None:
    text = "x" * 400
    mo, _ = Reassembler().add(deliver(b"", 0x01, message_payload=text.encode()), 0.0)
    assert mo is not None and mo.text == text


def udh_parts(text: str, size: int, ref: int, bits: int, dc: int) -> list[DeliverSm]:
    data = text.encode("utf-16-be") if dc == 8 else encode_septets(text)
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    return [
        deliver(build_udh(concat_ie(ref, len(chunks), i + 1, bits)) + c, dc, 0x40)
        for i, c in enumerate(chunks)
    ]


def sar_parts(text: str, size: int, ref: int) -> list[DeliverSm]:
    data = encode_septets(text)
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    return [
        deliver(
            c,
            0,
            0,
            sar_msg_ref_num=ref,
            sar_total_segments=len(chunks),
            sar_segment_seqnum=i + 1,
        )
        for i, c in enumerate(chunks)
    ]


@settings(max_examples=150)
@given(
    st.text(alphabet="abc€{}xyz 123", min_size=1, max_size=500),
    st.integers(2, 153),
    st.integers(0, 255),
    st.sampled_from(["udh8", "udh16", "sar"]),
    st.randoms(use_true_random=False),
)
def test_multipart_in_any_order(
    text: str, size: int, ref: int, how: str, rnd: random.Random
) -> None:
    # Chunks are cut at arbitrary octets, so an ESC pair may straddle two parts: joining the
    # bytes before decoding still yields the text.
    if how == "sar":
        parts = sar_parts(text, size, ref)
    else:
        parts = udh_parts(text, size, ref, 16 if how == "udh16" else 8, 0)
    rnd.shuffle(parts)
    r = Reassembler()
    results = [r.add(p, float(i)) for i, p in enumerate(parts)]
    done = [m for m, _ in results if m is not None]
    assert len(done) == 1 and done[0].text == text and done[0].complete
    assert done[0].parts == len(parts)
    assert r.statistics().pending == 0


def test_ucs2_surrogate_pair_cut_across_parts() -> None:
    text = "a😀b" * 20
    # 66-octet chunks of "a😀b"*20 put a high surrogate at the end of some parts
    parts = udh_parts(text, 66, 9, 8, 0x08)
    assert any(0xD8 <= p.short_message[-2] <= 0xDB for p in parts)
    r = Reassembler()
    out = [r.add(p, 0.0)[0] for p in reversed(parts)]
    assert out[-1] is not None and out[-1].text == text


def test_interleaved_messages_from_two_senders_with_same_reference() -> None:
    a = udh_parts("A" * 300, 153, 7, 8, 0)
    b = [
        DeliverSm(**{**_fields(p), "source_addr": "447700900999"})  # type: ignore[arg-type]
        for p in udh_parts("B" * 300, 153, 7, 8, 0)
    ]
    r = Reassembler()
    got = [r.add(p, 0.0)[0] for p in (a[0], b[1], b[0], a[1])]
    texts = sorted(m.text or "" for m in got if m is not None)
    assert texts == ["A" * 300, "B" * 300]


def _fields(p: DeliverSm) -> dict[str, object]:
    return {name: getattr(p, name) for name in p.__dataclass_fields__}


def test_duplicate_part_is_ignored() -> None:
    parts = udh_parts("z" * 200, 153, 1, 8, 0)
    r = Reassembler()
    assert r.add(parts[0], 0.0)[0] is None
    assert r.add(parts[0], 0.0)[0] is None
    mo, _ = r.add(parts[1], 0.0)
    assert mo is not None and mo.text == "z" * 200
    assert r.statistics().duplicates == 1


def test_timeout_releases_incomplete_message() -> None:
    parts = udh_parts("q" * 400, 153, 3, 8, 0)
    r = Reassembler(timeout=60.0)
    r.add(parts[0], 10.0)
    r.add(parts[2], 20.0)
    assert r.next_deadline() == 70.0
    assert r.expire(69.0) == []
    [mo] = r.expire(70.0)
    assert not mo.complete and mo.missing == (2,) and mo.parts == 2 and mo.total == 3
    assert r.statistics().timed_out == 1


def test_max_pending_evicts_oldest() -> None:
    r = Reassembler(max_pending=2)
    for ref in range(3):
        _, evicted = r.add(udh_parts("w" * 200, 153, ref, 8, 0)[0], float(ref))
        if ref < 2:
            assert evicted == []
    assert len(evicted) == 1 and evicted[0].reference == 0


def test_invalid_concat_ie_is_a_single_message() -> None:
    bad = bytes([5, 0, 3, 1, 2, 3]) + encode_septets("hi")  # seq 3 > total 2: ignored IE
    part = split_part(deliver(bad, 0, 0x40))
    assert part.reference is None and part.user_data == encode_septets("hi")
