"""Receipt text variants seen in the field, TLV receipts, and message-id normalisation."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.smpp.pdu import DeliverSm
from drivers.smpp.receipts import (
    IdConvention,
    IdFormat,
    MessageState,
    ReceiptSource,
    format_receipt_text,
    is_receipt,
    normalise_id,
    parse_receipt_text,
    receipt_from_deliver,
)

APPENDIX_B = (
    "id:0123456789 sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 "
    "stat:DELIVRD err:000 text:Hello world"
)


def test_appendix_b_form() -> None:
    r = parse_receipt_text(APPENDIX_B)
    assert r is not None
    assert r.id == "0123456789" and r.sub == "001" and r.dlvrd == "001"
    assert r.submit_date == datetime(2026, 1, 1, 12, 0)
    assert r.done_date == datetime(2026, 1, 1, 12, 1)
    assert r.stat == "DELIVRD" and r.err == "000" and r.text == "Hello world"


@pytest.mark.parametrize(
    ("text", "rid", "stat", "err", "done"),
    [
        # seconds in the dates
        (
            "id:33E95179 sub:001 dlvrd:001 submit date:190608165232 done date:190608165240 "
            "stat:DELIVRD err:000 text:",
            "33E95179",
            "DELIVRD",
            "000",
            datetime(2019, 6, 8, 16, 52, 40),
        ),
        # OpenMarket: no space in the date keys, zero dates, alphanumeric id
        (
            "id:0118Z-0122I-2309U-57DGB sub:001 dlvrd:000 submitdate:000000000000 "
            "donedate:000000000000 stat:UNDELIV err:375 Text:",
            "0118Z-0122I-2309U-57DGB",
            "UNDELIV",
            "375",
            None,
        ),
        # upper-case Text:, lower-case stat value, extra spaces around the colon
        (
            "id: 870928761 sub:001 dlvrd:000 submit date:2601011200 done date:2601011300 "
            "stat: expired err:1 Text:Your code is 1234",
            "870928761",
            "EXPIRED",
            "1",
            datetime(2026, 1, 1, 13, 0),
        ),
        # fields in another order, no text at all
        ("stat:REJECTD err:012 id:abc", "abc", "REJECTD", "012", None),
    ],
)
def test_field_variants(text: str, rid: str, stat: str, err: str, done: datetime | None) -> None:
    r = parse_receipt_text(text)
    assert r is not None
    assert (r.id, r.stat, r.err, r.done_date) == (rid, stat, err, done)


def test_text_field_keeps_lookalike_keys() -> None:
    r = parse_receipt_text("id:1 stat:DELIVRD err:000 text:stat:UNDELIV id:2")
    assert r is not None and r.id == "1" and r.stat == "DELIVRD"
    assert r.text == "stat:UNDELIV id:2"


def test_not_a_receipt() -> None:
    assert parse_receipt_text("Hello, is this the shop?") is None


@given(
    st.text(alphabet="0123456789ABCDEFabcdef-Z", min_size=1, max_size=20),
    st.sampled_from(["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD"]),
    st.integers(0, 999),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
)
def test_format_then_parse(mid: str, stat: str, err: int, text: str) -> None:
    when = datetime(2026, 3, 4, 5, 6)
    r = parse_receipt_text(format_receipt_text(mid, stat, err, when, when, text))
    assert r is not None
    assert (r.id, r.stat, int(r.err or "x"), r.submit_date) == (mid, stat, err, when)
    assert r.text == text[:20]


def test_normalise_hex_and_decimal_meet() -> None:
    # jsmpp #56: submit_sm_resp 33E95179 (hex) -> receipt 870928761 / 0870928761 (decimal)
    conv = IdConvention(submit_resp=IdFormat.HEX, receipt=IdFormat.DECIMAL)
    assert conv.from_submit_resp("33E95179") == conv.from_receipt_text("0870928761")
    assert conv.from_submit_resp("33e95179") == conv.from_receipt_text("870928761")
    assert IdConvention.kannel(0x01) == conv


def test_opaque_ids_fold_case_and_leading_zeros() -> None:
    # Jasmin #1129: 00B8BE19 vs B8BE19; jsmpp #178: 0221067780 vs 221067780
    assert normalise_id("00B8BE19") == normalise_id("b8be19")
    assert normalise_id("0221067780") == normalise_id("221067780")
    assert normalise_id("0118Z-0122I") == "118z-0122i"
    assert normalise_id("000") == "0"


def test_id_not_valid_in_its_base_falls_back_to_opaque() -> None:
    assert normalise_id("0118Z-01", IdFormat.HEX) == normalise_id("0118z-01")
    assert normalise_id("FF", IdFormat.DECIMAL) == "ff"


@given(st.integers(0, 2**64))
def test_hex_decimal_property(n: int) -> None:
    conv = IdConvention(IdFormat.HEX, IdFormat.DECIMAL)
    assert conv.from_submit_resp(f"{n:08x}") == conv.from_receipt_text(f"{n:010d}")


def test_receipt_prefers_tlvs() -> None:
    pdu = DeliverSm(
        source_addr="447700900123",
        destination_addr="Shop",
        esm_class=0x04,
        short_message=APPENDIX_B.encode(),
        receipted_message_id="75BCD15",
        message_state=5,
        network_error_code=b"\x03\x00\x0b",
    )
    conv = IdConvention(submit_resp=IdFormat.HEX, receipt=IdFormat.DECIMAL)
    r = receipt_from_deliver(pdu, conv)
    assert r is not None and is_receipt(pdu)
    assert r.source is ReceiptSource.TLV
    assert r.message_id == "123456789" and r.raw_id == "75BCD15"
    assert r.state is MessageState.UNDELIVERABLE and r.final
    assert r.network_error_code == b"\x03\x00\x0b"


def test_receipt_from_text_only() -> None:
    pdu = DeliverSm(esm_class=0x04, short_message=APPENDIX_B.encode())
    r = receipt_from_deliver(pdu, IdConvention(receipt=IdFormat.DECIMAL))
    assert r is not None and r.source is ReceiptSource.TEXT
    assert r.message_id == "123456789" and r.state is MessageState.DELIVERED
    assert r.text == "Hello world"


def test_receipt_in_message_payload_and_non_final_state() -> None:
    pdu = DeliverSm(esm_class=0x04, message_payload=b"id:7 stat:ACCEPTD err:0")
    r = receipt_from_deliver(pdu, IdConvention())
    assert r is not None and r.state is MessageState.ACCEPTED and not r.final


def test_mo_is_not_a_receipt() -> None:
    pdu = DeliverSm(esm_class=0x00, short_message=b"STOP")
    assert not is_receipt(pdu)
    assert receipt_from_deliver(pdu, IdConvention()) is None


@given(
    st.one_of(
        st.text(max_size=12),
        st.text(alphabet="0123456789abcdefABCDEFxX -\x00", max_size=14),
    ),
    st.sampled_from(list(IdFormat)),
)
def test_same_canonical_form_as_the_outbox(raw: str, fmt: IdFormat) -> None:
    # The daemon matches receipts in the outbox with gateway.outbox_ids; both must agree.
    from gateway.outbox_ids import normalise_message_id

    assert normalise_id(raw, fmt) == normalise_message_id(raw, fmt.value)
