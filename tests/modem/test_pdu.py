"""SMS TPDUs (3GPP TS 23.040): published vectors, field tables from the spec, malformed input."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modem.pdu import (
    Deliver,
    StatusCategory,
    StatusReport,
    Submit,
    TpStatus,
    decode_deliver,
    decode_pdu,
    decode_status_report,
    decode_submit,
    encode_deliver,
    encode_status_report,
    encode_submit,
    encode_submit_part,
    status_category,
)
from drivers.modem.pdu_fields import (
    Alphabet,
    PduError,
    Reader,
    decode_address,
    decode_dcs,
    decode_timestamp,
    encode_address,
    encode_alphanumeric_address,
    encode_timestamp,
    relative_vp,
    relative_vp_duration,
)
from gateway.codec import Concat, EncodedMessage, EncodeOptions, Encoding, Part, encode
from gateway.codec.errors import CodecError
from gateway.codec.gsm7 import encode_septets
from gateway.codec.udh import ConcatInfo


def gsm_message(text: str, **options: Any) -> EncodedMessage:
    message = encode(text, EncodeOptions(**options))
    assert message.encoding is Encoding.GSM7
    return message


def ucs2_message(text: str) -> EncodedMessage:
    message = encode(text)
    assert message.encoding is Encoding.UCS2
    return message


PAD = "z" * 8  # makes any second part long enough that the message needs two parts


def second_part(text: str, concat: Concat, reference: int = 0x2A) -> EncodedMessage:
    """A two-part GSM-7 message whose second part is ``text + PAD``."""
    first = 153 if concat is Concat.UDH8 else 152  # protocols.md §2.1
    message = encode("a" * first + text + PAD, EncodeOptions(concat=concat, reference=reference))
    assert [p.text for p in message.parts] == ["a" * first, text + PAD]
    return message


def h(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text)


# --- Published examples ---------------------------------------------------------------------------
HELLOHELLO = "0011000B916407281553F80000AA0AE8329BFD4697D9EC37"  # protocols.md §3.3 (dreamfabric)
NORDIC_S13 = (  # protocols.md §5.1, Nordic nRF91 transcript, sent with AT+CMGS=42
    "069144888888F811000C9153481032547600000B20D4F29C9E769F4161D0BC3D07B5CBF379F89C769F416F7B"
    "590E62D3CB"
)
HENDERSON = (  # protocols.md §3.5, a real network's SMS-DELIVER, part 2 of 2
    "07910221020020F040048167383D1170113232848040140500033A0202EC6176BD0C4ACF4134170E06"
)


def test_hellohello_is_encoded_byte_exact_from_its_fields() -> None:
    [pdu] = encode_submit(gsm_message("hellohello"), "+46708251358", validity=timedelta(days=4))
    assert pdu.hex == HELLOHELLO
    assert pdu.tpdu_length == 23  # AT+CMGS=23


def test_nordic_s13_decodes_and_reencodes_byte_exact() -> None:
    sub = decode_submit(h(NORDIC_S13))
    assert sub.smsc == "+448888888"
    assert sub.destination == "+358401234567" and sub.destination_toa == 0x91
    assert sub.message_reference == 0 and sub.pid == 0 and sub.dcs == 0
    assert sub.validity == timedelta(minutes=60)  # VP 0x0B = (11 + 1) x 5 min
    assert sub.udh is None and sub.udl == 32
    assert sub.text == "Testing a sms messaging over lte"
    assert isinstance(sub.validity, timedelta)
    [pdu] = encode_submit(
        gsm_message(sub.text),
        sub.destination,
        smsc=sub.smsc,
        validity=sub.validity,
    )
    assert pdu.hex == NORDIC_S13
    assert pdu.tpdu_length == 42


def test_henderson_multipart_deliver() -> None:
    d = decode_deliver(h(HENDERSON))
    assert d.text == "value is 4.80"
    assert d.concat == ConcatInfo(reference=0x3A, total=2, seq=2, ref_bits=8)
    assert d.smsc == "+20122000020"
    assert d.originator == "7683" and d.originator_toa == 0x81
    assert d.pid == 0x3D
    assert d.dcs == 0x11 and d.coding.alphabet is Alphabet.GSM7 and d.coding.message_class == 1
    assert d.scts == datetime(2007, 11, 23, 23, 48, 8, tzinfo=timezone(timedelta(hours=1)))
    assert d.udl == 20  # 7 header septets (UDHL 5 + 1 fill bit) + 13 text septets
    # 0x40: TP-MMS bit clear = more messages waiting (Henderson: "MMS yes"), no SRI, no RP
    assert d.more_messages and not d.reply_path and not d.status_report_indication


# Real-network captures published in python-gsmmodem's test suite (test/test_pdu.py,
# faucamp/python-gsmmodem@0423e91), decoded by hand below.
@pytest.mark.parametrize(
    "pdu,smsc,originator,scts,text",
    [
        (
            "07915892000000F0040B915892214365F700007040213252242331493A283D0795C3F33C88FE06C9CB"
            "6132885EC6D341EDF27C1E3E97E7207B3A0C0A5241E377BB1D7693E72E",
            "+85290000000",
            "+85291234567",
            datetime(2007, 4, 12, 23, 25, 42, tzinfo=timezone(timedelta(hours=8))),
            "It is easy to read text messages via AT commands.",
        ),
        (
            "06917228195339040B917228214365F70000313062315352800A800D8A5E98D337A910",
            "+2782913593",
            "+27821234567",
            datetime(2013, 3, 26, 13, 35, 25, tzinfo=timezone(timedelta(hours=2))),
            "@{tést}!",  # '@' is septet 0x00, '{' is ESC 0x28, 'é' is 0x05
        ),
    ],
)
def test_real_network_delivers(
    pdu: str, smsc: str, originator: str, scts: datetime, text: str
) -> None:
    d = decode_deliver(h(pdu))
    assert (d.smsc, d.originator, d.scts, d.text) == (smsc, originator, scts, text)


def test_real_network_status_report() -> None:
    # 00 no SCA | 06 STATUS-REPORT, MMS=1 | D6 MR 214 | 0B 91 1326880736F4 +31628870634
    # | 11101171955140 SCTS 2011-01-11 17:59:15 +01:00 | 11101171957140 DT ...17:59:17 | 00 ST
    r = decode_status_report(h("0006D60B911326880736F4111011719551401110117195714000"))
    assert r.smsc is None and r.message_reference == 214 and r.recipient == "+31628870634"
    tz = timezone(timedelta(hours=1))
    assert r.scts == datetime(2011, 1, 11, 17, 59, 15, tzinfo=tz)
    assert r.discharge_time == datetime(2011, 1, 11, 17, 59, 17, tzinfo=tz)
    assert r.status == 0 and r.category is StatusCategory.DELIVERED
    assert r.pid is None and r.dcs is None and r.text is None


def test_zte_status_report_with_a_short_sca() -> None:
    # python-gsmmodem's "semi-invalid" capture from a ZTE modem: SCA 02 97 F1 (one digit, TOA
    # 0x97: TON international), MR 0x1C, recipient with a '#' (0xB) semi-octet that we keep
    # rather than reject.
    r = decode_status_report(h("0297F1061C0F910B487228297020F5317062419272803170624192138000"))
    assert r.smsc == "+1" and r.message_reference == 28
    assert r.recipient == "+#08427829207025"
    tz = timezone(timedelta(hours=2))
    assert r.scts == datetime(2013, 7, 26, 14, 29, 27, tzinfo=tz)
    assert r.discharge_time == datetime(2013, 7, 26, 14, 29, 31, tzinfo=tz)
    assert r.category is StatusCategory.DELIVERED


@pytest.mark.parametrize(
    "pdu,fields",
    [
        (  # SRR + relative VP 0xA9 = 3 days, MR 0x0D (captured from Diafaan SMS Server)
            "07911326040000F0310D0B911326880736F40000A90FF7FBDD454E87CDE1B0DB357EB701",
            {"smsc": "+31624000000", "destination": "+31628870634", "message_reference": 13,
             "status_report_request": True, "validity": timedelta(days=3),
             "text": "www.diafaan.com"},
        ),
        (  # UCS-2, no VP
            "07914346466554F601000B914316565811F9000806304253F68449",
            {"smsc": "+34646456456", "destination": "+34616585119", "validity": None,
             "text": "あ叶葉"},
        ),
        (  # 8-bit data: no text, the octets stay in payload
            "0591721891F101000B917228214365F700040C48656C6C6F20776F726C6421",
            {"smsc": "+2781191", "text": None, "payload": b"Hello world!"},
        ),
    ],
)
def test_published_submits(pdu: str, fields: dict[str, object]) -> None:
    sub = decode_submit(h(pdu))
    for name, value in fields.items():
        assert getattr(sub, name) == value, name


def test_absolute_validity_is_decoded() -> None:
    sub = decode_submit(h("0019000B917228001011F100003170013193008017D474BB3CA787DB70903DCC4E93D3F4"
                          "3C885E9ED301"))
    assert sub.validity == datetime(2013, 7, 10, 13, 39, tzinfo=timezone(timedelta(hours=2)))
    assert sub.text == "Timestamp validity test"


# --- Vectors built from the spec and checked by hand ---------------------------------------------
def test_status_report_built_from_the_spec() -> None:
    scts = datetime(2012, 3, 11, 12, 34, 56, tzinfo=timezone(timedelta(hours=2)))
    dt = datetime(2012, 3, 11, 12, 44, 50, tzinfo=timezone(timedelta(hours=2)))
    raw = encode_status_report(42, "+46708251358", scts=scts, discharge_time=dt, status=0x41,
                               smsc="+448888888")
    # 06 91 4488888888F8: SCA length 6 (TOA + 5 octets), +448888888 with F filler
    # 06: MTI 10 (STATUS-REPORT) | MMS 0x04 (no more messages) ; 2A: MR 42
    # 0B 91 6407281553F8: 11 digits, international, 46708251358 swapped
    # 21 30 11 21 43 65 80: 12-03-11 12:34:56, TZ 0x80 -> low nibble 0, high 8 = 8 quarters = +2 h
    # 21 30 11 21 44 05 80: 12:44:50 ; 41: TP-ST 0x41 (permanent: incompatible destination)
    assert raw.hex().upper() == (
        "069144888888F8" "06" "2A" "0B916407281553F8" "21301121436580" "21301121440580" "41"
    )
    r = decode_status_report(raw)
    assert (r.smsc, r.message_reference, r.recipient) == ("+448888888", 42, "+46708251358")
    assert (r.scts, r.discharge_time, r.status) == (scts, dt, 0x41)
    assert r.category is StatusCategory.PERMANENT and not r.more_messages
    assert isinstance(decode_pdu(raw), StatusReport)


def test_status_report_with_parameter_indicator() -> None:
    # After TP-ST: PI 0x07 (PID, DCS, UDL present), PID 00, DCS 00, UDL 02, "OK" packed:
    # O = 0x4F in bits 0-6, K = 0x4B in bits 7-13 -> CF 25.
    base = "00062A0B916407281553F8213011214365802130112144058000"
    r = decode_status_report(h(base + "07" + "00" + "00" + "02" + "CF25"))
    assert (r.pid, r.dcs, r.text) == (0, 0, "OK")
    only_pid = decode_status_report(h(base + "01" + "7F"))
    assert (only_pid.pid, only_pid.dcs, only_pid.text) == (0x7F, None, None)
    assert only_pid.ignored_tail == b""


@pytest.mark.parametrize("tail", ["01", "FF", "FFFFFF", "07000005CF25", "0000"])
def test_status_report_junk_after_the_status_is_kept_aside(tail: str) -> None:
    # The outcome is complete at TP-ST; a broken TP-PI or padding must not lose the report.
    base = "00062A0B916407281553F8213011214365802130112144058000"
    r = decode_status_report(h(base + tail))
    assert r.status == 0 and r.category is StatusCategory.DELIVERED
    assert r.ignored_tail == h(tail) and r.pid is None and r.text is None


@pytest.mark.parametrize(
    "status,category",
    [(0x00, "delivered"), (0x01, "delivered"), (0x1F, "delivered"),
     (0x20, "pending-temporary"), (0x3F, "pending-temporary"),
     (0x40, "permanent-failure"), (0x5F, "permanent-failure"),
     (0x60, "temporary-failure-final"), (0x7F, "temporary-failure-final"),
     (0x80, "temporary-failure-final"), (0xFF, "temporary-failure-final")],
)
def test_status_categories(status: int, category: str) -> None:
    # TS 23.040 §9.2.3.15 ranges; reserved 0x80-0xFF read as "service rejected" (0x63).
    assert status_category(status) == category


def test_alphanumeric_originators() -> None:
    # smspdudecoder's documented vectors (independent): 0B D0 'MMoney', 14 D0 'Design@Home'.
    assert encode_alphanumeric_address("MMoney").hex().upper() == "0BD0CDE6DB5DCE03"
    assert encode_alphanumeric_address("Design@Home").hex().upper() == "14D0C4F23C7D760390EF7619"
    # protocols.md §3.4: "Megafon" is 7 septets = 49 bits -> 13 useful semi-octets (0x0D).
    assert encode_alphanumeric_address("Megafon")[0] == 0x0D
    for raw, text in [("0BD0CDE6DB5DCE03", "MMoney"), ("14D0C4F23C7D760390EF7619", "Design@Home")]:
        assert decode_address(Reader(h(raw)), "TP-OA").number == text
    scts = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    msg = gsm_message("Your code is 1234")
    d = decode_deliver(encode_deliver(msg, msg.parts[0], "MyShop", scts=scts))
    assert d.originator == "MyShop" and d.originator_toa == 0xD0
    assert d.text == "Your code is 1234"
    with pytest.raises(CodecError):
        encode_alphanumeric_address("TwelveLetter")  # 12 septets do not fit 10 octets


# --- Field tables -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "duration,vp",
    [
        (timedelta(seconds=1), 0),
        (timedelta(minutes=5), 0),
        (timedelta(minutes=6), 1),  # rounded up to 10 minutes
        (timedelta(minutes=60), 11),  # 0x0B
        (timedelta(hours=12), 143),  # 0x8F
        (timedelta(hours=12, seconds=1), 144),  # 12 h 30
        (timedelta(hours=24), 167),  # 0xA7
        (timedelta(hours=24, seconds=1), 168),  # 2 days
        (timedelta(days=3), 169),  # 0xA9
        (timedelta(days=4), 170),  # 0xAA
        (timedelta(days=7), 173),  # 0xAD
        (timedelta(days=30), 196),
        (timedelta(days=31), 197),  # 5 weeks
        (timedelta(weeks=52), 244),  # 0xF4
        (timedelta(weeks=63), 255),
        (timedelta(weeks=500), 255),  # capped
    ],
)
def test_relative_vp_rounds_up(duration: timedelta, vp: int) -> None:
    assert relative_vp(duration) == vp


def test_relative_vp_rejects_non_positive() -> None:
    for bad in (timedelta(0), timedelta(seconds=-1)):
        with pytest.raises(CodecError):
            relative_vp(bad)


@given(st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(weeks=70)))
def test_relative_vp_never_shortens_and_is_the_smallest(duration: timedelta) -> None:
    vp = relative_vp(duration)
    if duration <= timedelta(weeks=63):
        assert relative_vp_duration(vp) >= duration
    if vp > 0:
        assert relative_vp_duration(vp - 1) < duration


def test_every_vp_value_round_trips() -> None:
    for vp in range(256):
        assert relative_vp(relative_vp_duration(vp)) == vp


@pytest.mark.parametrize(
    "octet,hours",
    [(0x80, 2), (0x23, 8), (0x2B, -8), (0x00, 0), (0x08, 0)],  # python-gsmmodem TestTimestamp
)
def test_time_zone_octet(octet: int, hours: float) -> None:
    raw = h("31706241927280")[:6] + bytes((octet,))
    ts = decode_timestamp(Reader(raw), "TP-SCTS")
    assert ts.utcoffset() == timedelta(hours=hours)


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
    st.integers(min_value=-79, max_value=79),
)
def test_timestamps_round_trip(moment: datetime, quarters: int) -> None:
    aware = moment.replace(microsecond=0, tzinfo=timezone(timedelta(minutes=15 * quarters)))
    raw = encode_timestamp(aware)
    assert decode_timestamp(Reader(raw), "TP-SCTS") == aware


def test_timestamp_errors() -> None:
    with pytest.raises(PduError, match="TP-SCTS at octet 1"):
        decode_timestamp(Reader(h("31A06241927280")), "TP-SCTS")  # 0xA0: not BCD
    with pytest.raises(PduError, match="not a valid time stamp"):
        decode_timestamp(Reader(h("31310241927280")), "TP-SCTS")  # month 13
    with pytest.raises(CodecError, match="timezone-aware"):
        encode_timestamp(datetime(2020, 1, 1))
    with pytest.raises(CodecError, match="quarter hours"):
        encode_timestamp(datetime(2020, 1, 1, tzinfo=timezone(timedelta(minutes=10))))


@pytest.mark.parametrize(
    "dcs,alphabet,klass,compressed,waiting",
    [
        (0x00, "gsm7", None, False, None),
        (0x04, "8bit", None, False, None),
        (0x08, "ucs2", None, False, None),
        (0x0C, "gsm7", None, False, None),  # reserved alphabet -> GSM 7-bit default
        (0x10, "gsm7", 0, False, None),  # flash
        (0x11, "gsm7", 1, False, None),
        (0x18, "ucs2", 0, False, None),
        (0x16, "8bit", 2, False, None),
        (0x20, "gsm7", None, True, None),
        (0x48, "ucs2", None, False, None),  # 01xx: marked for automatic deletion
        (0x80, "gsm7", None, False, None),  # reserved group
        (0xC0, "gsm7", None, False, 0b1100),  # message waiting, discard
        (0xD8, "gsm7", None, False, 0b1101),  # message waiting, store
        (0xE0, "ucs2", None, False, 0b1110),  # message waiting, store, UCS-2
        (0xF0, "gsm7", 0, False, None),
        (0xF5, "8bit", 1, False, None),
    ],
)
def test_dcs_groups(
    dcs: int, alphabet: str, klass: int | None, compressed: bool, waiting: int | None
) -> None:
    c = decode_dcs(dcs)
    assert (c.alphabet, c.message_class, c.compressed, c.waiting) == (
        alphabet, klass, compressed, waiting,
    )


def test_compressed_user_data_is_refused() -> None:
    raw = bytearray(h(HENDERSON))
    raw[14] = 0x20  # TP-DCS: general group, compressed
    with pytest.raises(PduError, match="TP-DCS at octet 14: 0x20 marks compressed"):
        decode_deliver(bytes(raw))


def test_message_waiting_ucs2_decodes() -> None:
    scts = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    msg = ucs2_message("Voicemail ☎")
    raw = encode_deliver(msg, msg.parts[0],
                         "+441234", scts=scts, dcs=0xE8)
    assert decode_deliver(raw).text == "Voicemail ☎"


# --- Addresses ------------------------------------------------------------------------------------
def test_destination_type_of_address() -> None:
    assert encode_address("+46708251358").hex().upper() == "0B916407281553F8"
    assert encode_address("0701234567").hex().upper() == "0A817010325476"  # national: TOA 0x81
    for bad in ("", "+", "+12ab", "12-34", "1" * 21):
        with pytest.raises(CodecError):
            encode_address(bad)


# --- Submit encoding details --------------------------------------------------------------------
def test_first_octet_flags() -> None:
    msg = gsm_message("x" * 200)
    pdus = encode_submit(msg, "+15125551234", status_report=True, reject_duplicates=True,
                         validity=timedelta(hours=1), message_reference=7)
    for pdu in pdus:
        # 00 SCA | 0x75 = MTI 01 | RD 04 | VPF relative 10 | SRR 20 | UDHI 40 ; MR 07
        assert pdu.data[:3] == h("007507")
    plain = encode_submit(gsm_message("x"), "+1")[0]
    assert plain.data[:2] == h("0001")


def test_sca_and_length() -> None:
    [pdu] = encode_submit(gsm_message("hi"), "+27820001111", smsc="+85290000000")
    assert pdu.hex.startswith("07915892000000F0")  # 7 octets incl. TOA (protocols.md §3.4)
    assert pdu.tpdu_length == len(pdu.data) - 8


def test_multipart_with_sar_or_payload_is_refused() -> None:
    for concat in (Concat.SAR, Concat.PAYLOAD):
        msg = gsm_message("a" * 200, concat=concat)
        with pytest.raises(CodecError, match=f"concat='{concat.value}' cannot go to a modem"):
            encode_submit(msg, "+1")
        single = gsm_message("short", concat=concat)
        assert decode_submit(encode_submit(single, "+1")[0].data).text == "short"


def _with_payload(message: EncodedMessage, udh: bytes, payload: bytes) -> EncodedMessage:
    part = Part(seq=1, total=1, udh=udh, payload=payload, units=len(payload), text="", sar=None)
    return replace(message, parts=(part,))


def test_oversized_parts_are_refused() -> None:
    # encode() never builds these; the TPDU layer still refuses them rather than truncate.
    gsm = gsm_message("a")
    with pytest.raises(CodecError, match="exceeds 160"):
        encode_submit(_with_payload(gsm, b"", encode_septets("a" * 161)), "+1")
    with pytest.raises(CodecError, match="exceeds 160"):  # 7 header septets + 154
        encode_submit(_with_payload(gsm, bytes.fromhex("050003010101"), b"a" * 154), "+1")
    with pytest.raises(CodecError, match="exceeds 140"):
        encode_submit(_with_payload(ucs2_message("ж"), b"", "ж".encode("utf-16-be") * 71), "+1")
    with pytest.raises(CodecError, match="odd length"):
        encode_submit(_with_payload(ucs2_message("ж"), b"", b"\x04"), "+1")
    with pytest.raises(CodecError, match="above 0x7F"):
        encode_submit(_with_payload(gsm, b"", b"\x80"), "+1")


def test_full_parts_fit() -> None:
    assert decode_submit(encode_submit(gsm_message("a" * 160), "+1")[0].data).text == "a" * 160
    two = encode_submit(gsm_message("a" * 306), "+1")
    assert [decode_submit(p.data).udl for p in two] == [160, 160]
    assert decode_submit(encode_submit(ucs2_message("ж" * 70), "+1")[0].data).udl == 140


# --- Fill bits (TS 23.040 §9.2.3.24; protocols.md §3.2) -----------------------------------------
@pytest.mark.parametrize("text", ["xy{", "b€b", "€bb", "@", "a" * 144])
def test_fill_bit_cases(text: str) -> None:
    scts = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    # UDHL 5 (8-bit reference): 6 header octets, 1 fill bit, 7 header septets.
    msg8 = second_part(text, Concat.UDH8)
    sub8 = decode_submit(encode_submit(msg8, "+1")[1].data)
    assert sub8.user_data[0] == 5 and sub8.udl == 7 + len(encode_septets(text + PAD))
    assert sub8.text == text + PAD
    # UDHL 6 (16-bit reference): 7 header octets = 56 bits = 8 septets, no fill. python-gsmmodem
    # drops the first text septet here; we must not.
    msg16 = second_part(text, Concat.UDH16)
    sub16 = decode_submit(encode_submit(msg16, "+1")[1].data)
    assert sub16.user_data[0] == 6 and sub16.udl == 8 + len(encode_septets(text + PAD))
    assert sub16.text == text + PAD and sub16.concat == ConcatInfo(0x2A, 2, 2, 16)
    d16 = decode_deliver(encode_deliver(msg16, msg16.parts[1], "+1", scts=scts))
    assert d16.text == text + PAD


def test_fill_bit_bytes_for_udhl_5_and_6() -> None:
    p5 = encode_submit(second_part("A", Concat.UDH8, reference=1), "+1")[1]
    # DCS 00 ; UDL 10 = 7 + 9 ("A" + 8 "z") ; UDH 05 00 03 01 02 02 ; 'A' = 0x41 shifted left
    # by the 1 fill bit = 0x82 ; then 'z' = 0x7A in bits 0-6 and bit 0 of the next 'z' (0) in
    # bit 7 = 0x7A
    assert "0010" "050003010202" "827A" in p5.hex
    p6 = encode_submit(second_part("A", Concat.UDH16, reference=1), "+1")[1]
    # UDL 11 = 8 + 9 ; UDH 06 08 04 0001 02 02 ; 'A' = 0x41 right on the septet boundary, with
    # bit 0 of 'z' (0) in bit 7
    assert "0011" "06080400010202" "41" in p6.hex


# --- Malformed input ----------------------------------------------------------------------------
VALID = [HELLOHELLO, NORDIC_S13, HENDERSON, "0006D60B911326880736F4111011719551401110117195714000"]


@pytest.mark.parametrize("pdu", VALID)
def test_every_truncation_is_a_codec_error(pdu: str) -> None:
    raw = h(pdu)
    for end in range(len(raw)):
        with pytest.raises(CodecError):
            decode_pdu(raw[:end])


@pytest.mark.parametrize("pdu", VALID[:3])  # after a STATUS-REPORT's TP-ST comes TP-PI
def test_trailing_octets_are_a_codec_error(pdu: str) -> None:
    raw = h(pdu)
    with pytest.raises(PduError, match="unexpected octets"):
        decode_pdu(raw + b"\x00")


def test_named_errors() -> None:
    with pytest.raises(PduError, match=r"TP-UDL at octet 14: 161 septets exceed 160"):
        decode_submit(h("0011000B916407281553F80000AAA1E8329BFD4697D9EC37"))
    with pytest.raises(PduError, match=r"TP-UD at octet 15: needs 12 octets, only 9 left"):
        decode_submit(h("0011000B916407281553F80000AA0DE8329BFD4697D9EC37"))  # UDL 13
    with pytest.raises(PduError, match=r"TP-UDL at octet 13: 160 octets exceed 140"):
        # python-gsmmodem's "user data length is invalid (too long)" UCS-2 vector
        decode_submit(h("0041010C910661345542F60008A0050003000301306F3044"))
    with pytest.raises(PduError, match=r"TP-DA at octet 6: filler semi-octet F inside digit 4"):
        decode_submit(h("0011000B9164F7281553F80000AA0AE8329BFD4697D9EC37"))
    with pytest.raises(PduError, match="TP-MTI"):
        decode_deliver(h(HELLOHELLO))
    with pytest.raises(PduError, match="reserved"):
        decode_pdu(h("0003"))
    with pytest.raises(PduError, match="TP-UDH"):
        # UDHI set, UDHL 0x30 runs past the user data
        decode_submit(h("0051000B916407281553F80000AA0A30329BFD4697D9EC37"))


@given(st.binary(max_size=80), st.booleans())
def test_arbitrary_bytes_never_raise_anything_but_codec_error(data: bytes, has_sca: bool) -> None:
    with contextlib.suppress(CodecError):
        assert isinstance(decode_pdu(data, has_sca=has_sca), Deliver | StatusReport | Submit)


@given(st.binary(min_size=1, max_size=60))
def test_mutated_valid_pdus_never_raise_anything_but_codec_error(noise: bytes) -> None:
    raw = bytearray(h(HENDERSON))
    for i, b in enumerate(noise):
        raw[(b * 7 + i) % len(raw)] ^= b
    with contextlib.suppress(CodecError):
        assert isinstance(decode_pdu(bytes(raw)), Deliver | StatusReport | Submit)


# --- decode_pdu dispatch and the simulator's inverses ---------------------------------------------
def test_decode_pdu_dispatches_by_mti() -> None:
    assert isinstance(decode_pdu(h(HELLOHELLO)), Submit)
    assert isinstance(decode_pdu(h(HENDERSON)), Deliver)
    assert isinstance(decode_pdu(h("0006D60B911326880736F4111011719551401110117195714000")),
                      StatusReport)
    # Without the SCA (as some +CMGL outputs and our own callers may pass it)
    assert isinstance(decode_pdu(h(HELLOHELLO)[1:], has_sca=False), Submit)


def test_encode_submit_part_matches_encode_submit() -> None:
    msg = gsm_message("one two three " * 30)
    assert len(msg.parts) == 3
    whole = encode_submit(msg, "+44123")
    assert [encode_submit_part(msg, p, "+44123") for p in msg.parts] == whole


# --- National language shift tables (TS 23.038 §6.2.1.2.4, TS 23.040 §9.2.3.24.15/16) ----------
@pytest.mark.parametrize(
    "text,language,ids",
    [("Türkçe ğüş " * 15, "tr", (1, 0)), ("ação é ótima " * 13, "pt", (3, 0))],
)
def test_nls_messages_round_trip(text: str, language: str, ids: tuple[int, int]) -> None:
    msg = gsm_message(text, national_languages=(language,), reference=7)
    assert msg.national_language == ids
    scts = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    decoded = []
    for part, pdu in zip(msg.parts, encode_submit(msg, "+905551234567"), strict=True):
        sub = decode_submit(pdu.data)
        assert sub.dcs == 0x00  # the shift tables are announced in the UDH, not the DCS
        assert sub.udh is not None and sub.udh.national_language() == (ids[0], None)
        # UDHL 8 (concat + locking shift IE): 9 octets -> 11 septets with 5 fill bits
        assert sub.user_data[0] == 8 and sub.udl == 11 + part.units
        d = decode_deliver(encode_deliver(msg, part, "+905551234567", scts=scts))
        assert d.text == sub.text
        decoded.append(sub.text)
    assert "".join(t or "" for t in decoded) == text


def test_single_shift_and_unknown_language() -> None:
    base = gsm_message("x")
    # UDH 03 24 01 02: Spanish single shift; ESC 0x09 is 'ç' there (TS 23.038 A.2.2), and the
    # main table is untouched.
    spanish = _with_payload(base, bytes.fromhex("03240102"), b"\x1b\x09a")
    assert decode_submit(encode_submit(spanish, "+34600000000")[0].data).text == "ça"
    # Language 13 (Urdu) is not implemented: decode with the default tables (Annex C.2), where
    # ESC + 0x09 has no entry and shows the main-table character 'Ç' (TS 23.038 §6.2.1.1).
    urdu = _with_payload(base, bytes.fromhex("0324010D"), b"\x1b\x09a")
    assert decode_submit(encode_submit(urdu, "+34600000000")[0].data).text == "Ça"


# --- Odd corners ----------------------------------------------------------------------------------
def test_8bit_deliver_keeps_the_octets() -> None:
    # 00 | 04 DELIVER | 02 81 21 "12" | PID 00 | DCS 04 (8-bit) | SCTS | UDL 03 | 01 02 03
    d = decode_deliver(h("00" "04" "028121" "00" "04" "62110291000000" "03" "010203"))
    assert d.text is None and d.payload == b"\x01\x02\x03" and d.coding.alphabet is Alphabet.DATA8


def test_ucs2_lone_surrogate_and_odd_octet() -> None:
    # UCS-2 UDL 05: D83D (a high surrogate without its pair), 0041 'A', then one odd octet 00.
    d = decode_deliver(h("00" "04" "028121" "00" "08" "62110291000000" "05" "D83D004100"))
    assert d.text == "\ufffdA"


def test_empty_text() -> None:
    [pdu] = encode_submit(gsm_message(""), "+1")
    # 00 SCA | 01 SUBMIT | 00 MR | 01 91 F1 "+1" | 00 PID | 00 DCS | 00 UDL (no TP-UD)
    assert pdu.hex == "00" "01" "00" "0191F1" "00" "00" "00" and pdu.tpdu_length == 8
    assert decode_submit(pdu.data).text == ""


def test_enhanced_validity_is_kept_raw() -> None:
    # first octet 0x09: SUBMIT with VPF 01 (enhanced): 7 raw octets follow TP-DCS
    sub = decode_submit(h("00" "09" "00" "0191F1" "00" "00" "01020304050607" "00"))
    assert sub.validity == h("01020304050607") and sub.text == ""


def test_deliver_options() -> None:
    scts = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    msg = gsm_message("flash")
    raw = encode_deliver(msg, msg.parts[0], "+4479", scts=scts, smsc="+447785016005", dcs=0x10,
                         more_messages=True, status_report_indication=True, reply_path=True)
    d = decode_deliver(raw)
    assert d.smsc == "+447785016005" and d.coding.message_class == 0 and d.text == "flash"
    assert d.more_messages and d.status_report_indication and d.reply_path
    with pytest.raises(CodecError, match="does not say gsm7"):
        encode_deliver(msg, msg.parts[0], "+4479", scts=scts, dcs=0x08)


def test_status_values_are_named_when_defined() -> None:
    base = "00062A0B916407281553F8213011214365802130112144058000"
    assert decode_status_report(h(base)).status is TpStatus.RECEIVED
    expired = decode_status_report(h(base[:-2] + "46"))
    assert expired.status is TpStatus.VALIDITY_EXPIRED
    assert expired.category is StatusCategory.PERMANENT
    sc_specific = decode_status_report(h(base[:-2] + "30"))
    assert sc_specific.status == 0x30 and not isinstance(sc_specific.status, TpStatus)
    assert sc_specific.category is StatusCategory.PENDING
