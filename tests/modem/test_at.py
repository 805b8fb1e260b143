"""The pure AT channel: framing, finals, prompt, URCs mid-response, quirks, deadlines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modem.at import (
    AtChannel,
    Command,
    Event,
    Prompt,
    Response,
    ResultKind,
    Timeout,
    Unexpected,
    Urc,
)
from drivers.modem.errors import (
    ChannelBusy,
    CmeError,
    CmsCode,
    CmsError,
    CommandFailed,
    Disposition,
    cme_disposition,
    cms_disposition,
)


def run(ch: AtChannel, cmd: Command, *chunks: bytes, now: float = 0.0) -> list[Event]:
    ch.send(cmd, now)
    out: list[Event] = []
    for c in chunks:
        out += ch.feed(c, now)
    return out


def test_ok_with_information_lines() -> None:
    ch = AtChannel()
    ev = run(ch, Command("AT+CSQ"), b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    assert ev == [Response("AT+CSQ", ("+CSQ: 20,99",), ResultKind.OK, "OK")]
    assert ev[0].info("+CSQ") == ["20,99"]  # type: ignore[union-attr]
    assert not ch.busy


@pytest.mark.parametrize(
    ("wire", "kind", "code", "error"),
    [
        (b"ERROR", ResultKind.ERROR, None, CommandFailed),
        (b"COMMAND NOT SUPPORT", ResultKind.VENDOR, None, CommandFailed),
        (b"+CME ERROR: 14", ResultKind.CME, 14, CmeError),
        (b"+CMS ERROR: 42", ResultKind.CMS, 42, CmsError),
        (b"+CME ERROR: SIM busy", ResultKind.CME, None, CmeError),
    ],
)
def test_error_finals(wire: bytes, kind: ResultKind, code: int | None, error: type) -> None:
    ch = AtChannel()
    (resp,) = run(ch, Command("AT+X"), b"\r\n" + wire + b"\r\n")
    assert isinstance(resp, Response)
    assert (resp.kind, resp.code) == (kind, code)
    assert isinstance(resp.error(), error)
    with pytest.raises(error):
        resp.check()


def test_second_command_refused_while_one_in_flight() -> None:
    ch = AtChannel()
    ch.send(Command("AT"), 0)
    with pytest.raises(ChannelBusy):
        ch.send(Command("AT+CSQ"), 0)


def test_prompt_then_pdu_then_mr() -> None:
    ch = AtChannel()
    cmd = Command("AT+CMGS=23", timeout=120, prompt_timeout=5, pdu=b"0011AB")
    ev = run(ch, cmd, b"\r\n> ")
    assert ev == [Prompt("AT+CMGS=23", b"0011AB\x1a")]
    assert ch.next_deadline() == 120
    ev = ch.feed(b"\r\n+CMGS: 7\r\n\r\nOK\r\n", 1)
    assert ev == [Response("AT+CMGS=23", ("+CMGS: 7",), ResultKind.OK, "OK")]


def test_echo_of_command_and_pdu_is_dropped() -> None:
    ch = AtChannel()
    cmd = Command("AT+CMGS=23", prompt_timeout=5, pdu=b"0011AB")
    ev = run(ch, cmd, b"AT+CMGS=23\r\r\n> ")
    assert isinstance(ev[0], Prompt)
    ev = ch.feed(b"0011AB\x1a\r\n+CMGS: 1\r\n\r\nOK\r\n", 0)
    assert ev == [Response("AT+CMGS=23", ("+CMGS: 1",), ResultKind.OK, "OK")]


def test_urc_mid_response_and_cmt_with_pdu_line() -> None:
    ch = AtChannel()
    ev = run(
        ch,
        Command("AT+CMGL=4"),
        b'\r\n+CMGL: 1,0,,3\r\n0011AA\r\n+CMTI: "SM",2\r\n+CMT: ,5\r\n07919999\r\n',
        b"RING\r\n\r\nOK\r\n",
    )
    assert ev == [
        Urc("+CMTI", '"SM",2'),
        Urc("+CMT", ",5", "07919999"),
        Urc("RING", ""),
        Response("AT+CMGL=4", ("+CMGL: 1,0,,3", "0011AA"), ResultKind.OK, "OK"),
    ]


def test_creg_is_information_for_creg_query_and_urc_otherwise() -> None:
    ch = AtChannel()
    ev = run(ch, Command("AT+CREG?"), b"\r\n+CREG: 0,1\r\nOK\r\n")
    assert ev == [Response("AT+CREG?", ("+CREG: 0,1",), ResultKind.OK, "OK")]
    ev = run(ch, Command("AT+CSQ"), b"\r\n+CREG: 5\r\n+CSQ: 9,99\r\nOK\r\n")
    assert ev[0] == Urc("+CREG", "5")
    assert ev[1] == Response("AT+CSQ", ("+CSQ: 9,99",), ResultKind.OK, "OK")


def test_wavecom_cpin_without_ok_completes_after_grace() -> None:
    ch = AtChannel()
    cmd = Command("AT+CPIN?", implicit_ok_after="+CPIN:", implicit_grace=0.2)
    assert run(ch, cmd, b"\r\n+CPIN: READY\r\n", now=1.0) == []
    assert ch.next_deadline() == pytest.approx(1.2)
    assert ch.tick(1.1) == []
    (resp,) = ch.tick(1.2)
    assert isinstance(resp, Response) and resp.ok and resp.implicit
    assert resp.info("+CPIN") == ["READY"]


def test_timeouts_are_deadlines() -> None:
    ch = AtChannel()
    ch.send(Command("AT+CMGS=9", timeout=120, prompt_timeout=5, pdu=b"00"), 10)
    assert ch.tick(14.9) == []
    assert ch.tick(15) == [Timeout("AT+CMGS=9", "prompt")]
    assert not ch.busy
    ch.send(Command("AT", timeout=2), 20)
    (t,) = ch.tick(22)
    assert isinstance(t, Timeout) and t.error().link_level


def test_garbage_and_unexpected_lines() -> None:
    ch = AtChannel()
    assert ch.feed(b"\x00\xff\r\nOK\r\n", 0) == [Unexpected("OK")]
    ev = run(ch, Command("AT"), b"\xff\xfe\x00\r\r\nO\x00K\r\r\n")
    assert ev == [Response("AT", (), ResultKind.OK, "OK")]


def test_classification_table() -> None:
    for code in (38, 41, 42, 47, 331, 332, 500):
        assert cms_disposition(code) is Disposition.TEMPORARY, code
    assert cms_disposition(304) is Disposition.INVALID_PDU
    assert cms_disposition(1) is Disposition.PERMANENT
    assert cms_disposition(330) is Disposition.CONFIG
    assert cms_disposition(197) is Disposition.DUPLICATE
    assert cme_disposition(14) is Disposition.TEMPORARY
    assert cme_disposition(515) is Disposition.TEMPORARY
    assert cme_disposition(11) is Disposition.CONFIG
    assert CmsError(42).code is CmsCode.CONGESTION
    assert CmsError(9999).code == 9999


# --- property tests ---------------------------------------------------------------------------

# (command, information lines, final line). The lines are what a modem really answers.
EXCHANGES: list[tuple[str, tuple[str, ...], str]] = [
    ("AT", (), "OK"),
    ("AT+CSQ", ("+CSQ: 17,99",), "OK"),
    ("AT+CREG?", ("+CREG: 0,5",), "OK"),
    ("AT+CGSN", ("356938035643809",), "OK"),
    ("AT+CMGR=3", ("+CMGR: 0,,24", "07911326040000F0040B9113466100"), "OK"),
    ("AT+CMGL=4", ("+CMGL: 1,0,,3", "0011AA", "+CMGL: 2,1,,3", "0011BB"), "OK"),
    ("AT^CURC=0", (), "COMMAND NOT SUPPORT"),
    ("AT+CMGD=1", (), "+CMS ERROR: 321"),
    ("AT+CPIN=1234", (), "+CME ERROR: 16"),
    ("AT+CNMI=2,1,0,2,0", (), "ERROR"),
]
URCS: list[tuple[bytes, Urc]] = [
    (b'+CMTI: "SM",4', Urc("+CMTI", '"SM",4')),
    (b'+CDSI: "SR",1', Urc("+CDSI", '"SR",1')),
    (b"+CMT: ,24\r\n0791AABB", Urc("+CMT", ",24", "0791AABB")),
    (b"+CDS: 25\r\n0006A1B2", Urc("+CDS", "25", "0006A1B2")),
    (b"+CREG: 1", Urc("+CREG", "1")),
    (b"RING", Urc("RING", "")),
    (b"^RSSI:17", Urc("^RSSI", "17")),
    (b"^BOOT:20952066,0,0,0,72", Urc("^BOOT", "20952066,0,0,0,72")),
    (b"^MODE:5,4", Urc("^MODE", "5,4")),
]

terminators = st.sampled_from([b"\r\n", b"\r\r\n", b"\r\n\r\n", b"\n", b"\r"])


@st.composite
def sessions(draw: st.DrawFn) -> tuple[list[tuple[str, list[bytes]]], list[Response], list[Urc]]:
    """A conversation: per command, the byte chunks the modem sends, with URCs interleaved."""
    echo = draw(st.booleans())
    script: list[tuple[str, list[bytes]]] = []
    responses: list[Response] = []
    urcs: list[Urc] = []
    for cmd, lines, final in draw(st.lists(st.sampled_from(EXCHANGES), min_size=1, max_size=6)):
        units: list[bytes] = [ln.encode() for ln in lines] + [final.encode()]
        wire = bytearray(cmd.encode() + b"\r" if echo else b"")
        for i, unit in enumerate(units):
            # URCs may come before any line of the response, never between +CMGL and its PDU.
            can_interrupt = not (i > 0 and units[i - 1].startswith((b"+CMGL", b"+CMGR")))
            if can_interrupt:
                for raw, urc in draw(st.lists(st.sampled_from(URCS), max_size=2)):
                    wire += draw(terminators) + raw + draw(terminators)
                    urcs.append(urc)
            garbage = draw(st.sampled_from([b"", b"\x00", b"\xff\xfe"]))
            wire += draw(terminators) + garbage + unit + draw(terminators)
        cuts = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=8)))
        chunks = [bytes(wire[a:b]) for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
        script.append((cmd, chunks))
        final_parsed = AtChannel()
        final_parsed.send(Command(cmd), 0)
        (expected,) = final_parsed.feed(b"\r\n".join(units) + b"\r\n", 0)
        assert isinstance(expected, Response)
        responses.append(expected)
    return script, responses, urcs


@settings(max_examples=150, deadline=None)
@given(sessions())
def test_interleaved_urcs_and_chunking_give_the_same_events(
    session: tuple[list[tuple[str, list[bytes]]], list[Response], list[Urc]],
) -> None:
    script, responses, urcs = session
    ch = AtChannel()
    got: list[Event] = []
    for cmd, chunks in script:
        ch.send(Command(cmd), 0)
        for c in chunks:
            got += ch.feed(c, 0)
    assert [e for e in got if isinstance(e, Response)] == responses
    assert [e for e in got if isinstance(e, Urc)] == urcs
    assert not [e for e in got if isinstance(e, Unexpected | Timeout | Prompt)]


@settings(max_examples=200, deadline=None)
@given(
    pdu=st.binary(min_size=1, max_size=40).map(lambda b: b.hex().upper().encode()),
    mr=st.integers(0, 255),
    urc=st.sampled_from(URCS),
    split=st.integers(0, 30),
    echo=st.booleans(),
)
def test_cmgs_prompt_under_any_chunking(
    pdu: bytes, mr: int, urc: tuple[bytes, Urc], split: int, echo: bool
) -> None:
    ch = AtChannel()
    cmd = Command(f"AT+CMGS={len(pdu) // 2}", prompt_timeout=5, pdu=pdu)
    head = (cmd.text.encode() + b"\r" if echo else b"") + b"\r\n> "
    split = min(split, len(head))
    events = ch.send(cmd, 0) and ch.feed(head[:split], 0) + ch.feed(head[split:], 0)
    assert events == [Prompt(cmd.text, pdu + b"\x1a")]
    tail = (pdu + b"\x1a" if echo else b"") + b"\r\n" + urc[0] + b"\r\n+CMGS: %d\r\n\r\nOK\r\n" % mr
    events = [e for i in range(len(tail)) for e in ch.feed(tail[i : i + 1], 1)]
    assert events == [urc[1], Response(cmd.text, (f"+CMGS: {mr}",), ResultKind.OK, "OK")]


@settings(max_examples=300, deadline=None)
@given(
    stage=st.sampled_from(["idle", "command", "prompt", "result"]),
    noise=st.lists(st.binary(max_size=20), max_size=10),
)
def test_any_bytes_in_any_state_give_events_never_exceptions(
    stage: str, noise: list[bytes]
) -> None:
    """h2-style: every (state, input) pair leads to a legal state, never a crash."""
    ch = AtChannel()
    if stage != "idle":
        ch.send(Command("AT+CMGS=1", prompt_timeout=1, pdu=b"00") if stage != "command"
                else Command("AT+CSQ"), 0)
    if stage == "result":
        assert ch.feed(b"\r\n> ", 0)
    for chunk in noise:
        for event in ch.feed(chunk, 0):
            assert isinstance(event, Response | Prompt | Urc | Unexpected)
    ch.tick(1e9)
    assert not ch.busy  # every deadline has passed: the channel is free again
    ch.send(Command("AT"), 1e9)


def test_pins_never_appear_in_errors() -> None:
    ch = AtChannel()
    (resp,) = run(ch, Command('AT+CPIN="4321"'), b"\r\n+CME ERROR: 16\r\n")
    assert isinstance(resp, Response)
    err = resp.error()
    assert err is not None and "4321" not in str(err) and "AT+CPIN=***" in str(err)
    ch.send(Command("AT+CPIN=4321", timeout=1), 0)
    (t,) = ch.tick(1)
    assert isinstance(t, Timeout) and "4321" not in str(t.error())
