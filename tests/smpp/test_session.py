"""The pure session: transition table properties, an ESME and an SMSC session wired together
in memory, window, sequence wrap, deadlines, nacks and refusals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.smpp.errors import CommandStatus, LocalProtocolError, ProtocolError
from drivers.smpp.pdu import (
    MAX_SEQUENCE,
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
    decode,
    encode,
)
from drivers.smpp.session import (
    TABLES,
    Direction,
    PeerUnbound,
    Request,
    Response,
    Role,
    Session,
    State,
    Violation,
    transition,
)


@settings(max_examples=400)
@given(
    st.sampled_from(list(Role)),
    st.sampled_from(list(State)),
    st.sampled_from(list(Direction)),
    st.sampled_from(list(CommandId)),
    st.booleans(),
)
def test_every_state_input_pair_is_legal_or_our_protocol_error(
    role: Role, state: State, direction: Direction, command: CommandId, ok: bool
) -> None:
    try:
        after = transition(role, state, direction, command, ok)
    except ProtocolError as exc:
        assert (state, direction, command) not in TABLES[role]
        assert exc.fault.value == ("local" if direction is Direction.SEND else "remote")
    else:
        assert after in State
        assert (state, direction, command) in TABLES[role]


def test_tables_mirror_each_other() -> None:
    flip = {Direction.SEND: Direction.RECV, Direction.RECV: Direction.SEND}
    esme = {(s, flip[d], c): v for (s, d, c), v in TABLES[Role.ESME].items()}
    smsc = TABLES[Role.SMSC]
    assert smsc == esme


def test_closed_accepts_nothing() -> None:
    for role in Role:
        assert not [k for k in TABLES[role] if k[0] is State.CLOSED]


def pump(a: Session, b: Session, data: bytes, now: float = 0.0) -> list[object]:
    """Deliver ``data`` from a to b; return b's events (b's automatic replies go back to a)."""
    events: list[object] = list(b.receive_data(data, now))
    back = b.data_to_send()
    if back:
        events.append(("auto", a.receive_data(back, now)))
    return events


def bound_pair(kind: BindType = BindType.TRANSCEIVER, window: int = 4) -> tuple[Session, Session]:
    esme, smsc = Session(Role.ESME, window=window), Session(Role.SMSC)
    ev = pump(esme, smsc, esme.send(Bind(kind, "shop", "pw"), 0.0))
    assert isinstance(ev[0], Request)
    bind = ev[0].pdu
    assert isinstance(bind, Bind) and bind.system_id == "shop"
    assert smsc.state.value.startswith("binding")
    [resp] = esme.receive_data(smsc.send(BindResp(kind, "SIM", 0, bind.sequence), 0.0), 0.0)
    assert isinstance(resp, Response) and resp.pdu.status == 0
    assert esme.bound and smsc.bound and esme.bind_type is kind
    return esme, smsc


@pytest.mark.parametrize("kind", list(BindType))
def test_bind_each_type(kind: BindType) -> None:
    esme, smsc = bound_pair(kind)
    assert esme.state is smsc.state


def test_submit_round_trip_and_window() -> None:
    esme, smsc = bound_pair(window=2)
    a = esme.send(SubmitSm(destination_addr="447700900001", short_message=b"hi"), 1.0, "m1")
    b = esme.send(SubmitSm(destination_addr="447700900002", short_message=b"yo"), 1.0, "m2")
    assert esme.window_in_use == 2 and esme.window_free == 0
    with pytest.raises(LocalProtocolError, match="window"):
        esme.send(SubmitSm(destination_addr="1"), 1.0)
    # enquire_link does not count against the message window
    esme.send(HeaderOnly(CommandId.ENQUIRE_LINK), 1.0)
    reqs = smsc.receive_data(a + b, 1.0)
    assert [type(r) for r in reqs] == [Request, Request]
    out = b"".join(
        smsc.send(SubmitSmResp(f"id{i}", 0, r.pdu.sequence), 1.0)  # type: ignore[union-attr]
        for i, r in enumerate(reqs)
    )
    got = esme.receive_data(out, 2.0)
    assert [(g.request.context, g.pdu.message_id) for g in got] == [  # type: ignore[union-attr]
        ("m1", "id0"),
        ("m2", "id1"),
    ]
    assert esme.window_in_use == 0


def test_responses_must_answer_a_received_request() -> None:
    _, smsc = bound_pair()
    with pytest.raises(LocalProtocolError):
        smsc.send(SubmitSmResp("x", 0, 99), 0.0)


def test_enquire_link_is_answered_automatically_in_any_live_state() -> None:
    esme, smsc = Session(Role.ESME), Session(Role.SMSC)
    assert smsc.receive_data(esme.send(HeaderOnly(CommandId.ENQUIRE_LINK), 0.0), 0.0) == []
    back = esme.receive_data(smsc.data_to_send(), 0.0)
    assert isinstance(back[0], Response)
    assert back[0].pdu.command_id == CommandId.ENQUIRE_LINK_RESP


def test_submit_on_a_receiver_bind_is_our_error_and_refused_when_the_peer_does_it() -> None:
    esme, smsc = bound_pair(BindType.RECEIVER)
    with pytest.raises(LocalProtocolError, match="not allowed"):
        esme.send(SubmitSm(destination_addr="1"), 0.0)
    # A peer that submits on a receiver bind gets submit_sm_resp ESME_RINVBNDSTS.
    raw = encode(SubmitSm(destination_addr="1", sequence=7))
    [v] = smsc.receive_data(raw, 0.0)
    assert isinstance(v, Violation) and v.error.fault.value == "remote"
    reply = decode(smsc.data_to_send())
    assert reply == SubmitSmResp("", CommandStatus.ESME_RINVBNDSTS, 7)


def test_second_bind_is_answered_already_bound() -> None:
    _, smsc = bound_pair()
    [v] = smsc.receive_data(encode(Bind(BindType.TRANSMITTER, "x", sequence=5)), 0.0)
    assert isinstance(v, Violation)
    reply = decode(smsc.data_to_send())
    assert reply.status == CommandStatus.ESME_RALYBND and reply.sequence == 5


def test_bind_refused_returns_to_open() -> None:
    esme, smsc = Session(Role.ESME), Session(Role.SMSC)
    [req] = smsc.receive_data(esme.send(Bind(BindType.TRANSMITTER, "shop", "bad"), 0.0), 0.0)
    seq = req.pdu.sequence  # type: ignore[union-attr]
    raw = smsc.send(BindResp(BindType.TRANSMITTER, "", CommandStatus.ESME_RINVPASWD, seq), 0.0)
    [resp] = esme.receive_data(raw, 0.0)
    assert isinstance(resp, Response) and resp.pdu.status == CommandStatus.ESME_RINVPASWD
    assert esme.state is State.OPEN and smsc.state is State.OPEN
    assert esme.bind_type is None


def test_unbind_handshake_both_directions() -> None:
    esme, smsc = bound_pair()
    events = pump(esme, smsc, esme.send(HeaderOnly(CommandId.UNBIND), 0.0))
    assert isinstance(events[0], PeerUnbound)
    assert smsc.state is State.CLOSED and esme.state is State.CLOSED
    esme, smsc = bound_pair()
    events = pump(smsc, esme, smsc.send(HeaderOnly(CommandId.UNBIND), 0.0))
    assert isinstance(events[0], PeerUnbound)
    assert smsc.state is State.CLOSED and esme.state is State.CLOSED


def test_deliver_sm_to_esme_and_response() -> None:
    esme, smsc = bound_pair()
    raw = smsc.send(DeliverSm(source_addr="4477", short_message=b"hello"), 0.0)
    [req] = esme.receive_data(raw, 0.0)
    assert isinstance(req, Request) and isinstance(req.pdu, DeliverSm)
    [resp] = smsc.receive_data(esme.send(DeliverSmResp(0, req.pdu.sequence), 0.0), 0.0)
    assert isinstance(resp, Response)


def test_generic_nack_fails_the_matching_request() -> None:
    esme, _ = bound_pair()
    esme.send(SubmitSm(destination_addr="1"), 0.0, "ctx")
    nack = encode(HeaderOnly(CommandId.GENERIC_NACK, CommandStatus.ESME_RINVCMDLEN, 2))
    [resp] = esme.receive_data(nack, 0.0)
    assert isinstance(resp, Response) and resp.request.context == "ctx"
    assert esme.window_in_use == 0 and esme.bound


def test_unmatched_response_is_a_violation_and_not_answered() -> None:
    esme, _ = bound_pair()
    [v] = esme.receive_data(encode(SubmitSmResp("x", 0, 1234)), 0.0)
    assert isinstance(v, Violation) and not v.fatal
    assert esme.data_to_send() == b""


def test_malformed_request_gets_generic_nack_and_stream_continues() -> None:
    _, smsc = bound_pair()
    bad = bytearray(encode(SubmitSm(destination_addr="1", sequence=9)))
    bad = bad[:20]  # cut inside the body, command_length fixed up: decodable header only
    bad[0:4] = len(bad).to_bytes(4, "big")
    good = encode(HeaderOnly(CommandId.ENQUIRE_LINK, 0, 10))
    events = smsc.receive_data(bytes(bad) + good, 0.0)
    assert isinstance(events[0], Violation) and not events[0].fatal
    out = smsc.data_to_send()
    assert decode(out[:16]) == HeaderOnly(CommandId.GENERIC_NACK, CommandStatus.ESME_RINVCMDLEN, 9)
    assert decode(out[16:]).command_id == CommandId.ENQUIRE_LINK_RESP


def test_broken_framing_is_fatal() -> None:
    _, smsc = bound_pair()
    [v] = smsc.receive_data(bytes.fromhex("00000004") + bytes(12), 0.0)
    assert isinstance(v, Violation) and v.fatal
    assert decode(smsc.data_to_send()).command_id == CommandId.GENERIC_NACK


def test_deadlines_expire_in_order_and_free_the_window() -> None:
    esme, _ = bound_pair(window=3)
    esme.response_timeout = 10.0
    esme.send(SubmitSm(destination_addr="1"), 100.0, "a")
    esme.send(SubmitSm(destination_addr="1"), 105.0, "b")
    assert esme.next_deadline() == 110.0
    assert esme.expire(109.9) == []
    [gone] = esme.expire(110.0)
    assert gone.context == "a" and esme.window_in_use == 1
    assert esme.next_deadline() == 115.0


def test_connection_lost_hands_back_unknown_outcomes() -> None:
    esme, _ = bound_pair()
    esme.send(SubmitSm(destination_addr="1"), 0.0, "x")
    lost = esme.connection_lost()
    assert [o.context for o in lost] == ["x"]
    assert esme.state is State.CLOSED and esme.window_in_use == 0


def test_sequence_numbers_wrap_and_skip_outstanding() -> None:
    esme, _ = bound_pair(window=4)
    esme._next_seq = MAX_SEQUENCE - 1
    seqs = [decode(esme.send(SubmitSm(destination_addr="1"), 0.0)).sequence for _ in range(3)]
    assert seqs == [MAX_SEQUENCE - 1, MAX_SEQUENCE, 1]
    esme._next_seq = MAX_SEQUENCE  # still outstanding: skipped
    assert decode(esme.send(SubmitSm(destination_addr="1"), 0.0)).sequence == 2


@settings(max_examples=200)
@given(st.lists(st.sampled_from(["submit", "resp", "expire", "enquire"]), max_size=40))
def test_window_accounting_never_drifts(ops: list[str]) -> None:
    esme, smsc = bound_pair(window=3)
    now = 0.0
    pending: list[int] = []
    for op in ops:
        now += 1.0
        if op == "submit" and esme.window_free:
            [req] = smsc.receive_data(esme.send(SubmitSm(destination_addr="1"), now), now)
            pending.append(req.pdu.sequence)  # type: ignore[union-attr]
        elif op == "resp" and pending:
            esme.receive_data(smsc.send(SubmitSmResp("m", 0, pending.pop(0)), now), now)
        elif op == "expire":
            for gone in esme.expire(now - 25.0):
                pending.remove(gone.sequence)
        elif op == "enquire":
            pump(esme, smsc, esme.send(HeaderOnly(CommandId.ENQUIRE_LINK), now), now)
        in_window = [o for o in esme.outstanding() if o.command_id == CommandId.SUBMIT_SM]
        assert esme.window_in_use == len(in_window) == len(pending) <= 3


@settings(max_examples=300)
@given(st.sampled_from(list(Role)), st.lists(st.binary(max_size=80), max_size=6))
def test_session_never_raises_on_arbitrary_peer_bytes(role: Role, chunks: list[bytes]) -> None:
    esme, smsc = bound_pair()
    session = esme if role is Role.ESME else smsc
    for chunk in chunks:
        for event in session.receive_data(chunk, 0.0):
            assert isinstance(event, Request | Response | Violation | PeerUnbound)
        session.data_to_send()
    assert session.state in State


@settings(max_examples=300)
@given(st.data())
def test_session_survives_mutated_valid_traffic(data: st.DataObject) -> None:
    _esme, smsc = bound_pair()
    frames = [
        encode(SubmitSm(destination_addr="447700900123", short_message=b"x" * 20, sequence=5)),
        encode(HeaderOnly(CommandId.ENQUIRE_LINK, 0, 6)),
        encode(Bind(BindType.RECEIVER, "again", sequence=7)),
        encode(HeaderOnly(CommandId.UNBIND, 0, 8)),
    ]
    stream = bytearray(b"".join(data.draw(st.permutations(frames))))
    for _ in range(data.draw(st.integers(0, 6))):
        stream[data.draw(st.integers(0, len(stream) - 1))] = data.draw(st.integers(0, 255))
    events = smsc.receive_data(bytes(stream), 0.0)
    out = smsc.data_to_send()
    for event in events:
        assert isinstance(event, Request | Response | Violation | PeerUnbound)
    # whatever the SMSC wrote back decodes as valid PDUs
    frames_out, error = FrameReader().feed(out)
    assert error is None
    for frame in frames_out:
        decode(frame)


def test_alert_notification_is_not_answered() -> None:
    esme, _ = bound_pair()
    raw = (16).to_bytes(4, "big") + CommandId.ALERT_NOTIFICATION.to_bytes(4, "big") + bytes(8)
    assert esme.receive_data(raw, 0.0) == []
    assert esme.data_to_send() == b""
