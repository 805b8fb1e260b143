"""Our TPDUs read back by decoders we did not write: smspdudecoder 2.2 (SMS-SUBMIT, SMS-DELIVER)
and python-messaging 0.5.13 (SMS-DELIVER, SMS-STATUS-REPORT), plus round trips through ours.

Known oracle deviations (protocols.md §6.3/§6.4), handled explicitly below:
- smspdudecoder decodes ESC + an undefined code as a space (the spec shows the main-table
  character); its relative-VP arithmetic is wrong, so its VP fields are ignored; it cuts the
  decoded GSM-7 text by TP-UDL in *characters*, not septets, so when the last octet has 7 spare
  bits (read as an '@' septet) and the part holds escape pairs, that '@' shows at the end.
- both read an alphanumeric address by whole octets, so a 7-septet name whose packing leaves 7
  spare bits gains a trailing '@' there (we honour the semi-octet length).
- python-messaging turns each UTF-16 code unit into a character, so a surrogate pair comes out as
  two lone surrogates; we compare its text through UTF-16 with ``surrogatepass``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from io import StringIO
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from messaging.sms import SmsDeliver
from smspdudecoder.fields import SMSDeliver, SMSSubmit

from drivers.modem.pdu import (
    decode_deliver,
    decode_status_report,
    decode_submit,
    encode_deliver,
    encode_status_report,
    encode_submit,
    status_category,
)
from gateway.codec import Concat, EncodedMessage, EncodeOptions, Encoding, Part, encode
from gateway.codec.gsm7 import GSM7_CHARSET, encode_septets

GSM_ALPHABET = sorted(GSM7_CHARSET)
# Short texts (one part, no UDH) and long ones (2-3 parts with a UDH) in similar proportions.
gsm_texts = st.one_of(
    st.text(alphabet=GSM_ALPHABET, min_size=1, max_size=160),
    st.text(alphabet=GSM_ALPHABET, min_size=150, max_size=400),
)
# UCS-2: at least one character outside GSM-7, astral characters (surrogate pairs) included;
# short (one part) and long (2-5 parts) texts.
_unicode = st.characters(codec="utf-8")  # utf-8: no lone surrogates
ucs2_texts = st.builds(
    lambda a, b: a + b,
    st.one_of(st.text(alphabet=_unicode, max_size=60),
              st.text(alphabet=_unicode, min_size=70, max_size=150)),
    st.sampled_from("çжあ😀🇬🇧中"),
)
texts = st.one_of(gsm_texts, ucs2_texts)
concats = st.sampled_from([Concat.UDH8, Concat.UDH16])
numbers = st.builds(
    lambda plus, digits: ("+" if plus else "") + digits,
    st.booleans(),
    st.text(alphabet="0123456789", min_size=1, max_size=20),
)
alphanumeric = st.text(
    alphabet=sorted(set(GSM_ALPHABET) - {"\f", "^", "{", "}", "\\", "[", "~", "]", "|", "€"}),
    min_size=1,
    max_size=11,
)
moments = st.builds(
    lambda moment, quarters: moment.replace(
        microsecond=0, tzinfo=timezone(timedelta(minutes=15 * quarters))
    ),
    # python-messaging parses years with strptime("%y"): 69-99 become 1969-1999.
    st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2068, 12, 30)),
    st.integers(min_value=-48, max_value=56),
)
validities = st.one_of(
    st.none(), st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(weeks=63))
)


def _message(text: str, concat: Concat, reference: int) -> EncodedMessage:
    top = 0xFF if concat is Concat.UDH8 else 0xFFFF
    return encode(text, EncodeOptions(concat=concat, reference=reference % (top + 1)))


def _oracle_concat(header: dict[str, Any] | None) -> tuple[int, int, int] | None:
    if header is None:
        return None
    for element in header["elements"]:
        if element["iei"] in (0x00, 0x08):
            data = element["data"]
            return data["reference"], data["parts_count"], data["part_number"]
    return None


def _oracle_number(number: str) -> str:
    return number.removeprefix("+")


def _smspdudecoder_text(part: Part, udl: int) -> set[str]:
    """What smspdudecoder may show for a part (see the module docstring): the text, or, with 7
    spare bits and an escape pair in the part, the text plus the padding septet's '@'."""
    spare = 8 * ((7 * udl + 7) // 8) - 7 * udl
    if spare == 7 and 0x1B in part.payload:
        return {part.text, part.text + "@"}
    return {part.text}


def _octet_padded(name: str) -> str:
    """What a whole-octet reader shows for an alphanumeric address (see the module docstring)."""
    septets = len(encode_septets(name))
    spare = 8 * ((7 * septets + 7) // 8) - 7 * septets
    return name + "@" if spare == 7 else name


@given(texts, concats, numbers, st.booleans(), validities, st.integers(0, 0xFFFF))
def test_submits_decode_with_smspdudecoder(
    text: str,
    concat: Concat,
    destination: str,
    status_report: bool,
    validity: timedelta | None,
    reference: int,
) -> None:
    message = _message(text, concat, reference)
    pdus = encode_submit(message, destination, status_report=status_report, validity=validity)
    assert len(pdus) == len(message.parts)
    for part, pdu in zip(message.parts, pdus, strict=True):
        assert pdu.tpdu_length == len(pdu.data) - 1  # SCA 00
        oracle = SMSSubmit.decode(StringIO(pdu.hex))
        ours = decode_submit(pdu.data)
        if message.encoding is Encoding.GSM7:
            assert oracle["user_data"]["data"] in _smspdudecoder_text(part, ours.udl)
        else:
            assert oracle["user_data"]["data"] == part.text
        assert oracle["recipient"]["number"] == _oracle_number(destination)
        assert oracle["recipient"]["toa"]["ton"] == (
            "international" if destination.startswith("+") else "unknown"
        )
        assert oracle["dcs"]["encoding"] == ("gsm" if message.encoding is Encoding.GSM7
                                             else "ucs2")
        assert oracle["header"]["srr"] == status_report
        assert oracle["header"]["vpf"] == (0 if validity is None else 2)
        expected_concat = None
        if len(message.parts) > 1:
            expected_concat = (message.reference, part.total, part.seq)
        assert _oracle_concat(oracle["user_data"]["header"]) == expected_concat

        assert ours.text == part.text and ours.destination == destination
        assert ours.status_report_request == status_report
        assert ours.udh == (None if not part.udh else ours.udh)
        if expected_concat is not None:
            assert ours.concat is not None
            assert (ours.concat.reference, ours.concat.total, ours.concat.seq) == expected_concat
        if validity is not None:
            assert isinstance(ours.validity, timedelta) and ours.validity >= validity


@given(texts, concats, st.one_of(numbers, alphanumeric), moments, st.integers(0, 0xFFFF))
def test_delivers_decode_with_both_oracles(
    text: str, concat: Concat, originator: str, scts: datetime, reference: int
) -> None:
    message = _message(text, concat, reference)
    for part in message.parts:
        raw = encode_deliver(message, part, originator, scts=scts)
        numeric = originator.removeprefix("+").isdigit()
        expected_concat = None
        if len(message.parts) > 1:
            expected_concat = (message.reference, part.total, part.seq)

        ours = decode_deliver(raw)
        a = SMSDeliver.decode(StringIO(raw.hex()))
        if message.encoding is Encoding.GSM7:
            assert a["user_data"]["data"] in _smspdudecoder_text(part, ours.udl)
        else:
            assert a["user_data"]["data"] == part.text
        assert a["sender"]["number"] == (
            _oracle_number(originator) if numeric else _octet_padded(originator)
        )
        assert a["scts"] == scts
        assert _oracle_concat(a["user_data"]["header"]) == expected_concat

        b = SmsDeliver(raw.hex())
        assert b.text.encode("utf-16-be", "surrogatepass") == part.text.encode("utf-16-be")
        assert b.number == (originator if numeric else _octet_padded(originator))
        assert b.date == scts.astimezone(UTC).replace(tzinfo=None)
        got = None if b.udh is None or b.udh.concat is None else (
            b.udh.concat.ref, b.udh.concat.cnt, b.udh.concat.seq
        )
        assert got == expected_concat

        assert ours.text == part.text and ours.originator == originator and ours.scts == scts
        assert ours.udh == (ours.udh if part.udh else None)
        if expected_concat is not None:
            assert ours.concat is not None
            assert (ours.concat.reference, ours.concat.total, ours.concat.seq) == expected_concat


@given(
    st.integers(0, 255), numbers, moments, moments, st.integers(0, 255), st.booleans(),
    st.booleans(), st.one_of(st.none(), numbers),
)
def test_status_reports_decode_with_python_messaging(
    mr: int, recipient: str, scts: datetime, dt: datetime, status: int, more: bool, srq: bool,
    smsc: str | None,
) -> None:
    raw = encode_status_report(mr, recipient, scts=scts, discharge_time=dt, status=status,
                               more_messages=more, status_report_qualifier=srq, smsc=smsc)
    oracle = SmsDeliver(raw.hex())
    assert oracle.sr["recipient"] == recipient
    assert oracle.sr["status"] == status
    assert oracle.udh.concat.ref == mr  # python-messaging keeps TP-MR there
    # python-messaging reads both stamps as naive local times (it ignores the zone octet here)
    assert oracle.sr["scts"] == scts.replace(tzinfo=None)
    assert oracle.sr["dt"] == dt.replace(tzinfo=None)

    ours = decode_status_report(raw)
    assert (ours.message_reference, ours.recipient, ours.status) == (mr, recipient, status)
    assert (ours.scts, ours.discharge_time) == (scts, dt)
    assert ours.more_messages == more and ours.category is status_category(status)
    assert ours.status_report_qualifier == srq and ours.smsc == smsc


def test_smspdudecoder_deviation_on_esc_with_undefined_code() -> None:
    # SMS-DELIVER, GSM-7, UDL 3: septets 1B 41 61 -> ESC + 'A' (no extension entry) + 'a'.
    # TS 23.038 §6.2.1.1: show the main-table character -> "Aa"; smspdudecoder shows " a".
    # 00 no SCA | 04 DELIVER | 02 81 21: originator "12" | PID 00 | DCS 00 | SCTS 2026-11-20
    # 19:00:00 +00 | UDL 03 | 0x1B + 0x41<<7 + 0x61<<14 = 0x18609B -> 9B 60 18
    raw = bytes.fromhex("00" "04" "028121" "00" "00" "62110291000000" "03" "9B6018")
    assert decode_deliver(raw).text == "Aa"
    assert SMSDeliver.decode(StringIO(raw.hex()))["user_data"]["data"] == " a"
