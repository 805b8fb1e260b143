"""The wire codec: byte-identical to smpplib where we encode by hand, strict and crash-free when
decoding (Hypothesis over valid PDUs, random bytes and mutated frames)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smpplib import smpp

from drivers.smpp.errors import CommandStatus, LocalProtocolError, MalformedPdu
from drivers.smpp.pdu import (
    Bind,
    BindResp,
    BindType,
    CommandId,
    DeliverSm,
    DeliverSmResp,
    FrameReader,
    HeaderOnly,
    SubmitSm,
    SubmitSmResp,
    Unsupported,
    decode,
    encode,
    encode_submit_sm_resp,
    generic_nack,
)

ascii_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
seqs = st.integers(1, 0x7FFFFFFF)


def cstr(max_octets: int) -> st.SearchStrategy[str]:
    return st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=max_octets - 1
    )


@st.composite
def short_messages(draw: st.DrawFn, deliver: bool = False) -> SubmitSm | DeliverSm:
    payload_mode = draw(st.booleans())
    fields = dict(
        service_type=draw(cstr(6)),
        source_addr_ton=draw(u8),
        source_addr_npi=draw(u8),
        source_addr=draw(cstr(21)),
        dest_addr_ton=draw(u8),
        dest_addr_npi=draw(u8),
        destination_addr=draw(cstr(21)),
        esm_class=draw(u8),
        protocol_id=draw(u8),
        priority_flag=draw(u8),
        schedule_delivery_time=draw(st.sampled_from(["", "260101120000000+"])),
        validity_period=draw(st.sampled_from(["", "000001000000000R"])),
        registered_delivery=draw(u8),
        replace_if_present_flag=draw(u8),
        data_coding=draw(u8),
        sm_default_msg_id=draw(u8),
        short_message=b"" if payload_mode else draw(st.binary(max_size=254)),
        message_payload=draw(st.binary(min_size=1, max_size=600)) if payload_mode else None,
        user_message_reference=draw(st.none() | u16),
        sar_msg_ref_num=draw(st.none() | u16),
        sar_total_segments=draw(st.none() | u8),
        sar_segment_seqnum=draw(st.none() | u8),
        sequence=draw(seqs),
    )
    if deliver:
        fields.update(
            receipted_message_id=draw(st.none() | cstr(65).filter(bool)),
            message_state=draw(st.none() | st.integers(1, 8)),
            network_error_code=draw(st.none() | st.binary(min_size=3, max_size=3)),
        )
        return DeliverSm(**fields)  # type: ignore[arg-type]
    return SubmitSm(**fields)  # type: ignore[arg-type]


def smpplib_bytes(p: SubmitSm | DeliverSm) -> bytes:
    name = "deliver_sm" if isinstance(p, DeliverSm) else "submit_sm"
    kwargs = {
        f.name: getattr(p, f.name)
        for f in dataclasses.fields(p)
        if f.name not in ("other_tlvs", "sequence", "status") and getattr(p, f.name) is not None
    }
    if name == "submit_sm":
        for key in ("receipted_message_id", "message_state", "network_error_code"):
            kwargs.pop(key, None)
    pdu = smpp.make_pdu(name, sequence=p.sequence, **kwargs)
    pdu.sequence = p.sequence
    raw: bytes = pdu.generate()
    return raw


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(short_messages())
def test_submit_sm_encoder_is_byte_identical_to_smpplib(p: SubmitSm) -> None:
    assert encode(p) == smpplib_bytes(p)


@pytest.mark.slow
@settings(max_examples=5000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(short_messages())
def test_submit_sm_encoder_is_byte_identical_to_smpplib_large_sample(p: SubmitSm) -> None:
    assert encode(p) == smpplib_bytes(p)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(short_messages(deliver=True))
def test_deliver_sm_encoder_is_byte_identical_to_smpplib(p: DeliverSm) -> None:
    assert encode(p) == smpplib_bytes(p)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(short_messages(), short_messages(deliver=True)))
def test_decode_inverts_encode_and_agrees_with_smpplib(p: SubmitSm | DeliverSm) -> None:
    raw = encode(p)
    assert decode(raw) == p
    theirs = smpp.parse_pdu(raw, sequence=0)
    assert theirs.sequence == p.sequence
    assert theirs.destination_addr == p.destination_addr.encode()
    assert theirs.source_addr == p.source_addr.encode()
    assert (theirs.short_message or b"") == p.short_message
    assert theirs.data_coding == p.data_coding
    assert theirs.esm_class == p.esm_class
    assert theirs.message_payload == p.message_payload
    assert theirs.sar_msg_ref_num == p.sar_msg_ref_num
    assert theirs.sar_segment_seqnum == p.sar_segment_seqnum


@given(cstr(65), seqs, st.sampled_from([0, 0x14, 0x58, 0x0B]))
def test_submit_sm_resp_identical_to_smpplib(message_id: str, seq: int, status: int) -> None:
    ours = encode(SubmitSmResp(message_id, status, seq))
    theirs = smpp.make_pdu("submit_sm_resp", message_id=message_id, status=status)
    theirs.sequence = seq
    assert ours == theirs.generate()
    assert ours == encode_submit_sm_resp(message_id.encode(), seq, status)
    assert decode(ours) == SubmitSmResp(message_id, status, seq)


@given(seqs, st.sampled_from(list(CommandId)))
def test_header_only_and_deliver_sm_resp_identical_to_smpplib(seq: int, cid: CommandId) -> None:
    d = encode(DeliverSmResp(0, seq))
    theirs = smpp.make_pdu("deliver_sm_resp")
    theirs.sequence = seq
    assert d == theirs.generate()
    for name, command in [
        ("enquire_link", CommandId.ENQUIRE_LINK),
        ("enquire_link_resp", CommandId.ENQUIRE_LINK_RESP),
        ("unbind", CommandId.UNBIND),
        ("unbind_resp", CommandId.UNBIND_RESP),
        ("generic_nack", CommandId.GENERIC_NACK),
    ]:
        t = smpp.make_pdu(name, sequence=seq)
        t.sequence = seq
        assert encode(HeaderOnly(command, 0, seq)) == t.generate()
    assert decode(generic_nack(seq, 3)) == HeaderOnly(CommandId.GENERIC_NACK, 3, seq)


@pytest.mark.parametrize("kind", list(BindType))
def test_bind_round_trip_through_smpplib(kind: BindType) -> None:
    b = Bind(kind, "shop", "secret", "VMA", 0x34, 1, 1, "", 7)
    raw = encode(b)
    assert decode(raw) == b
    r = BindResp(kind, "SMSC", 0, 7)
    assert decode(encode(r)) == r
    refused = BindResp(kind, "", CommandStatus.ESME_RINVPASWD, 8)
    assert decode(encode(refused)).status == CommandStatus.ESME_RINVPASWD


def test_too_long_fields_are_refused_not_truncated() -> None:
    with pytest.raises(Exception, match="system_id"):
        encode(Bind(BindType.TRANSMITTER, "x" * 16, "pw"))
    with pytest.raises(Exception, match="254"):
        encode(SubmitSm(destination_addr="1", short_message=b"x" * 255))


def test_unknown_command_id_is_malformed_with_invcmdid() -> None:
    raw = (16).to_bytes(4, "big") + (0x77).to_bytes(4, "big") + bytes(4) + (9).to_bytes(4, "big")
    with pytest.raises(MalformedPdu) as info:
        decode(raw)
    assert info.value.status == CommandStatus.ESME_RINVCMDID
    assert info.value.sequence == 9
    assert not info.value.fatal


def test_known_but_unsupported_command() -> None:
    raw = (16).to_bytes(4, "big") + CommandId.QUERY_SM.to_bytes(4, "big") + bytes(8)
    assert decode(raw) == Unsupported(CommandId.QUERY_SM, 0, 0)


def test_truncated_tlv_is_malformed() -> None:
    raw = bytearray(encode(SubmitSm(destination_addr="1", sar_msg_ref_num=5, sequence=3)))
    raw = raw[:-1]
    raw[0:4] = len(raw).to_bytes(4, "big")
    with pytest.raises(MalformedPdu) as info:
        decode(bytes(raw))
    assert info.value.status == CommandStatus.ESME_RINVOPTPARSTREAM
    assert info.value.sequence == 3
    assert info.value.frame_hex == bytes(raw).hex()


def test_unknown_tlvs_are_kept() -> None:
    p = DeliverSm(destination_addr="1", other_tlvs=((0x1400, b"vendor"),), sequence=2)
    assert decode(encode(p)) == p


@settings(max_examples=1000)
@given(st.binary(max_size=300))
def test_decoder_never_crashes_on_random_bytes(data: bytes) -> None:
    reader = FrameReader()
    frames, error = reader.feed(data)
    for frame in frames:
        try:
            decoded = decode(frame)
        except MalformedPdu as exc:
            assert not exc.fatal  # a complete frame never breaks the stream
        else:
            assert decoded.sequence == int.from_bytes(frame[12:16], "big")
    if error is not None:
        assert error.fatal


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(short_messages(deliver=True), st.data())
def test_decoder_never_crashes_on_mutated_frames(p: DeliverSm, data: st.DataObject) -> None:
    raw = bytearray(encode(p))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(4, len(raw) - 1))
        raw[i] = data.draw(u8)
    cut = data.draw(st.integers(16, len(raw)))
    frame = bytes(raw[:cut])
    frame = len(frame).to_bytes(4, "big") + frame[4:]
    try:
        decode(frame)
    except MalformedPdu as exc:
        assert exc.status
        assert not exc.fatal


@given(st.lists(short_messages(), min_size=1, max_size=5), st.data())
def test_frame_reader_splits_any_chunking(msgs: list[SubmitSm], data: st.DataObject) -> None:
    stream = b"".join(encode(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    reader = FrameReader()
    got: list[bytes] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        frames, error = reader.feed(stream[last:cut])
        assert error is None
        got.extend(frames)
        last = cut
    assert [decode(f) for f in got] == msgs
    assert reader.buffered == 0


def test_frame_reader_bad_length_is_fatal_after_good_frames() -> None:
    good = encode(HeaderOnly(CommandId.ENQUIRE_LINK, 0, 1))
    bad = (8).to_bytes(4, "big") + bytes(12)
    frames, error = FrameReader().feed(good + bad)
    assert frames == [good]
    assert error is not None and error.fatal


def test_out_of_range_integer_is_our_protocol_error() -> None:
    with pytest.raises(LocalProtocolError, match="one octet"):
        encode(SubmitSm(destination_addr="1", data_coding=256))
