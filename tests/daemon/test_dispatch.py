"""The dispatcher's pure decisions: what a message's part results mean for the outbox, the
concatenation reference, and how drivers' reports and outcomes are classified."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from drivers.modem.client import DeliveryReport
from drivers.smpp.client import Accepted, Rejected, Unknown
from drivers.smpp.errors import StatusClass
from drivers.smpp.receipts import DeliveryReceipt, MessageState, ReceiptSource
from gateway.codec import CodecError, EncodeOptions, encode
from gateway.codec.model import Concat
from gateway.dispatch import concat_reference, encode_for, verdict
from gateway.outbox_states import Lane, ReportOutcome
from gateway.outbox_types import Claimed, PermanentFailure, Requeue, TemporaryFailure
from gateway.routes import (
    PartResult,
    PartStatus,
    modem_carrier_id,
    report_from_modem,
    report_from_receipt,
    smpp_part_result,
)


def claimed(mid: int = 7, text: str = "hi", parts: int = 1) -> Claimed:
    return Claimed(mid, Lane.TRANSACTIONAL, "+447700900123", "", text, parts,
                   tuple(range(parts)), 0, None)


results = st.lists(
    st.builds(PartResult, st.integers(0, 9), st.sampled_from(PartStatus),
              st.one_of(st.none(), st.text(min_size=1, max_size=4)),
              st.one_of(st.none(), st.integers(0, 0xFFFF)), st.text(max_size=4)),
    min_size=1, max_size=6,
)


@given(results, st.integers(0, 5), st.integers(1, 5))
def test_verdict_follows_the_classification(rs: list[PartResult], unknowns: int,
                                            limit: int) -> None:
    out = verdict(claimed(), "r", rs, unknowns, limit)
    kinds = {r.status for r in rs}
    failed = [r for r in rs if r.status is not PartStatus.ACCEPTED]
    if PartStatus.PERMANENT in kinds:
        first = next(r for r in rs if r.status is PartStatus.PERMANENT)
        assert out == PermanentFailure(7, first.code, first.text, "r")
    elif not failed:
        assert out is None  # every part accepted: reports decide
    elif all(r.status is PartStatus.REFUSED for r in failed) and len(failed) == len(rs):
        assert out is None  # refused before anything went out: the next route gets it
    elif kinds & {PartStatus.TEMPORARY, PartStatus.REFUSED}:
        assert isinstance(out, TemporaryFailure)  # counts an attempt, with backoff
    elif unknowns < limit:
        assert out == Requeue(7)  # sent again at once: the bounded duplicate
    else:
        assert isinstance(out, TemporaryFailure) and out.text.startswith("no answer")


@given(st.integers(1, 2**40), st.sampled_from(Concat))
def test_concat_reference_is_stable_and_fits_its_field(mid: int, concat: Concat) -> None:
    ref = concat_reference(mid, concat)
    assert ref == concat_reference(mid, concat)
    assert 0 <= ref <= (0xFF if concat is Concat.UDH8 else 0xFFFF)


def test_a_resent_part_carries_the_same_reference_as_its_siblings() -> None:
    first = encode_for(claimed(300, "long " * 60, 2), Concat.UDH8)
    again = encode_for(claimed(300, "long " * 60, 2), Concat.UDH8)
    assert first.parts == again.parts and first.reference == 300 & 0xFF


def receipt(state: MessageState | None, err: str | None) -> DeliveryReceipt:
    return DeliveryReceipt("123", "7b", state, None, err, None, None, None, ReceiptSource.TLV,
                           "447700900123", "Shop")


def test_smpp_receipts_map_to_part_outcomes_with_codes() -> None:
    assert report_from_receipt("c", receipt(MessageState.DELIVERED, "000")).outcome \
        is ReportOutcome.DELIVERED
    undeliv = report_from_receipt("c", receipt(MessageState.UNDELIVERABLE, "034"))
    assert (undeliv.route, undeliv.carrier_id, undeliv.outcome, undeliv.code) == \
        ("c", "123", ReportOutcome.UNDELIVERABLE, 34)
    assert report_from_receipt("c", receipt(MessageState.REJECTED, None)).outcome \
        is ReportOutcome.UNDELIVERABLE
    assert report_from_receipt("c", receipt(MessageState.ENROUTE, None)).outcome \
        is ReportOutcome.ENROUTE
    assert report_from_receipt("c", receipt(None, None)).outcome is ReportOutcome.UNKNOWN


@given(st.integers(0, 0xFF))
def test_modem_status_reports_follow_tp_status(status: int) -> None:
    report = DeliveryReport("m1", 42, "+447700900123", status, "", datetime.now(UTC))
    out = report_from_modem("modems", report)
    assert out.carrier_id == modem_carrier_id("m1", 42) == "m1/42"
    if status <= 0x1F:
        assert out.outcome is ReportOutcome.DELIVERED and out.code is None
    elif status <= 0x3F:
        assert out.outcome is ReportOutcome.ENROUTE
    elif status == 0x46:
        assert out.outcome is ReportOutcome.EXPIRED and out.code == status
    else:
        assert out.outcome is ReportOutcome.UNDELIVERABLE and out.code == status


def test_smpp_outcomes_are_classified() -> None:
    assert smpp_part_result(0, Accepted("255", "FF")) == \
        PartResult(0, PartStatus.ACCEPTED, carrier_id="255")
    assert smpp_part_result(1, Unknown("timeout")).status is PartStatus.UNKNOWN
    assert smpp_part_result(2, Rejected(0x0B, StatusClass.PERMANENT)) == \
        PartResult(2, PartStatus.PERMANENT, code=0x0B, text="ESME_RINVDSTADR")
    assert smpp_part_result(3, Rejected(0x08, StatusClass.TEMPORARY)).status \
        is PartStatus.TEMPORARY
    assert smpp_part_result(4, Rejected(0x04, StatusClass.LINK)).status is PartStatus.REFUSED


@given(st.text(max_size=400), st.sampled_from(Concat), st.integers(1, 2**20))
def test_encoding_is_the_codecs_whether_or_not_a_text_was_seen(text: str, concat: Concat,
                                                               mid: int) -> None:
    options = EncodeOptions(concat=concat, reference=concat_reference(mid, concat))
    try:
        expected = encode(text, options)
    except CodecError:
        return
    for message in (claimed(mid, text), claimed(mid + 1, text), claimed(mid, text)):
        got = encode_for(message, concat)
        if len(expected.parts) == 1:
            assert got == expected  # cached or not: the same single part
        else:
            assert got.reference == concat_reference(message.id, concat)  # never shared
            assert len(got.parts) == len(expected.parts)
