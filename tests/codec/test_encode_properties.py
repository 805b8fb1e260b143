"""Hypothesis properties of encode(), checked against a naive reference splitter and against
decoders we did not write (smpplib's PDU parser, gsm0338).

The reference splitter below is written from the rules (protocols.md §2.1/§2.2, docs/codec.md),
character by character, sharing no code with gateway.codec.split.
"""

from __future__ import annotations

import unicodedata

import gsm0338  # registers the "gsm03.38" codec
import gsm0338.charset
import smpplib.smpp
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.codec import Concat, EncodedMessage, EncodeOptions, Encoding, encode
from gateway.codec.gsm7 import GSM7_CHARSET
from gateway.codec.udh import decode_short_message, parse_udh

# --- the naive reference ---

TWO_SEPTETS = set("\f^{}\\[~]|€")  # TS 23.038 §6.2.1.1: the ten escape characters
GSM_HEADER = {Concat.UDH8: 7, Concat.UDH16: 8, Concat.SAR: 8, Concat.PAYLOAD: 7}  # septets
UCS2_MULTI = {Concat.UDH8: 67, Concat.UDH16: 66, Concat.SAR: 66, Concat.PAYLOAD: 67}


def _attaches(ch: str) -> bool:
    cp = ord(ch)
    return (
        cp == 0x200D
        or 0xFE00 <= cp <= 0xFE0F
        or 0xE0100 <= cp <= 0xE01EF
        or 0x1F3FB <= cp <= 0x1F3FF
        or 0xE0020 <= cp <= 0xE007F
        or unicodedata.combining(ch) > 0
        or unicodedata.category(ch) in ("Mn", "Mc", "Me")
    )


def _clusters(text: str) -> list[str]:
    out: list[str] = []
    ri_run = 0
    for ch in text:
        is_ri = 0x1F1E6 <= ord(ch) <= 0x1F1FF
        joins = bool(out) and (
            _attaches(ch) or out[-1].endswith("\u200d") or (is_ri and ri_run % 2 == 1)
        )
        ri_run = ri_run + 1 if is_ri else 0
        if joins:
            out[-1] += ch
        else:
            out.append(ch)
    return out


def _units(s: str) -> int:
    return sum(2 if ord(c) > 0xFFFF else 1 for c in s)


def reference_segments(text: str, concat: Concat) -> int:
    if GSM7_CHARSET.issuperset(text):
        costs = [2 if c in TWO_SEPTETS else 1 for c in text]
        if sum(costs) <= 160:
            return 1
        cap, atoms = 160 - GSM_HEADER[concat], [[c] for c in costs]
    else:
        if _units(text) <= 70:
            return 1
        cap = UCS2_MULTI[concat]
        atoms = [[2 if ord(c) > 0xFFFF else 1 for c in cl] for cl in _clusters(text)]
    parts, used = 1, 0
    for atom in atoms:
        size = sum(atom)
        if used + size <= cap:
            used += size
        elif size <= cap:
            parts, used = parts + 1, size
        else:  # a cluster longer than a part: code point by code point
            for unit in atom:
                if used + unit > cap:
                    parts, used = parts + 1, 0
                used += unit
    return parts


# --- strategies ---

# Long runs put part boundaries at every offset; short random pieces vary what sits on them.
gsm_runs = st.sampled_from(["a" * 150, "b" * 151, "c" * 152, "€" * 75, "{" * 76, "x" * 40])
gsm_text = st.lists(
    st.one_of(gsm_runs, st.text(alphabet=sorted(GSM7_CHARSET), max_size=6)), max_size=12
).map("".join)
awkward = st.sampled_from(
    ["ç", "中", "😀", "🇮", "🇹", "\u200d", "\u0301", "\ufe0f", "🏽", "👨", "\U000e0067", "€",
     "Ω", "α", "\r", "\n", "a", "b", " "]
)
ucs2_runs = st.sampled_from(
    ["ç" * 60, "ç" * 64, "d" * 65, "😀" * 30, "🇮🇹" * 8, "x" * 20, "👨\u200d👩\u200d👧\u200d👦" * 3,
     "e\u0301\u0323" * 5, "👍🏽" * 4]
)
ucs2_text = st.lists(
    st.one_of(ucs2_runs, st.lists(awkward, max_size=6).map("".join)), min_size=1, max_size=14
).map(lambda pieces: "".join(pieces) + "😀")
any_text = st.one_of(gsm_text, ucs2_text, st.text(max_size=300).filter(
    lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)))
concats = st.sampled_from(list(Concat))


def decoded(m: EncodedMessage) -> str:
    if m.concat is Concat.PAYLOAD:
        payload = m.parts[0].short_message
        return decode_short_message(payload, m.data_coding, udhi=bool(m.esm_class))[1]
    return "".join(
        decode_short_message(p.short_message, m.data_coding, udhi=bool(m.esm_class))[1]
        for p in m.parts
    )


def check_invariants(text: str, m: EncodedMessage) -> None:
    assert decoded(m) == text
    assert m.text == text
    if m.concat is not Concat.PAYLOAD:
        assert "".join(p.text for p in m.parts) == text
        assert len(m.parts) == m.segments
    for p in m.parts:
        if m.encoding is Encoding.GSM7:
            assert all(b < 0x80 for b in p.payload)
            assert p.units == len(p.payload)
            if m.concat is not Concat.PAYLOAD:
                assert not p.payload.endswith(b"\x1b"), "part ends in ESC"
        else:
            assert p.units * 2 == len(p.payload)
            if p.payload:
                last = int.from_bytes(p.payload[-2:], "big")
                assert not 0xD800 <= last <= 0xDBFF, "part ends in a high surrogate"
        if m.concat is not Concat.PAYLOAD:
            # within capacity: 140 octets of user data once the handset's UDH is counted
            # SAR: the SMSC adds a 16-bit-reference concatenation IE (6 octets) to our UDH
            udh_octets = len(p.udh) if p.sar is None else (len(p.udh) or 1) + 6
            if m.encoding is Encoding.GSM7:
                header = (8 * udh_octets + 6) // 7 if udh_octets else 0
                assert header + p.units <= 160
            else:
                assert udh_octets + 2 * p.units <= 140
            assert len(p.short_message) <= 254  # SMPP 3.4 §5.2.21
    assert 0 <= m.units_left


@settings(max_examples=300)
@given(text=gsm_text, concat=concats)
def test_gsm7_roundtrip_and_reference_count(text: str, concat: Concat) -> None:
    m = encode(text, EncodeOptions(concat=concat, reference=1))
    assert m.encoding is Encoding.GSM7
    check_invariants(text, m)
    assert m.segments == reference_segments(text, concat)


@settings(max_examples=150)
@given(text=ucs2_text, concat=concats)
def test_ucs2_roundtrip_and_reference_count(text: str, concat: Concat) -> None:
    m = encode(text, EncodeOptions(concat=concat, reference=1))
    check_invariants(text, m)
    assert m.segments == reference_segments(text, concat)
    if m.concat is not Concat.PAYLOAD and m.segments > 1:
        # every cut is a cluster boundary, or falls inside a cluster longer than a part
        cap = UCS2_MULTI[concat]
        allowed, pos = set(), 0
        for cluster in _clusters(text):
            size = _units(cluster)
            if size > cap:
                allowed.update(range(pos, pos + size))
            pos += size
            allowed.add(pos)
        cuts = [sum(p.units for p in m.parts[: i + 1]) for i in range(len(m.parts) - 1)]
        assert set(cuts) <= allowed


@settings(max_examples=100)
@given(text=any_text)
def test_any_text_roundtrips(text: str) -> None:
    m = encode(text, EncodeOptions(reference=9))
    check_invariants(text, m)
    assert m.segments == reference_segments(text, Concat.UDH8)


nls_alphabet = sorted(set("abcçğışĞİŞüöÁáÍíÓóÚúêÔôÃãõâÊÀ€^{}[] .,") | set("ΦΓΩ"))


@settings(max_examples=200)
@given(
    text=st.text(alphabet=nls_alphabet, max_size=500),
    langs=st.lists(st.sampled_from(["tr", "es", "pt"]), unique=True, min_size=1),
    concat=concats,
)
def test_national_language_roundtrip(text: str, langs: list[str], concat: Concat) -> None:
    m = encode(text, EncodeOptions(concat=concat, national_languages=tuple(langs), reference=2))
    check_invariants(text, m)
    plain = encode(text, EncodeOptions(concat=concat, reference=2))
    assert m.segments <= plain.segments
    if m.national_language is not None:
        assert m.segments < plain.segments  # only ever chosen when it saves parts
        udh, _ = parse_udh(m.parts[0].udh)
        locking, single = m.national_language
        assert udh.national_language() == (locking or None, single or None)
        assert m.esm_class == 0x40


# --- independent decoders ---


class _Client:
    """The two attributes smpplib's PDU classes read from a client; no socket involved."""

    sequence = 1

    def next_sequence(self) -> int:
        return 1


def _submit_sm_roundtrip(m: EncodedMessage) -> None:
    client = _Client()
    for p in m.parts:
        fields: dict[str, object] = {
            "source_addr": "shop",
            "destination_addr": "447700900123",
            "esm_class": m.esm_class,
            "data_coding": m.data_coding,
        }
        if m.concat is Concat.PAYLOAD:
            fields["message_payload"] = p.short_message
        else:
            fields["short_message"] = p.short_message
        if p.sar is not None:
            fields.update(
                sar_msg_ref_num=p.sar[0], sar_total_segments=p.sar[1], sar_segment_seqnum=p.sar[2]
            )
        raw = smpplib.smpp.make_pdu("submit_sm", client=client, **fields).generate()
        back = smpplib.smpp.parse_pdu(raw, client=client)
        got = back.message_payload if m.concat is Concat.PAYLOAD else back.short_message
        assert (got or b"") == p.short_message  # smpplib gives None for an empty field
        assert back.esm_class == m.esm_class and back.data_coding == m.data_coding
        if p.sar is not None:
            assert (back.sar_msg_ref_num, back.sar_total_segments, back.sar_segment_seqnum) == p.sar


@settings(max_examples=100)
@given(text=any_text, concat=st.sampled_from([Concat.UDH8, Concat.UDH16, Concat.SAR]))
def test_parts_parse_back_with_smpplib(text: str, concat: Concat) -> None:
    m = encode(text, EncodeOptions(concat=concat, reference=77))
    _submit_sm_roundtrip(m)


@given(text=st.text(max_size=120).filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)))
def test_payload_parses_back_with_smpplib(text: str) -> None:
    # smpplib declares message_payload with at most 260 octets; 120 characters stay below it
    _submit_sm_roundtrip(encode(text, EncodeOptions(concat=Concat.PAYLOAD)))


def _gsm0338_defines() -> set[str]:
    names = [*gsm0338.charset.BASIC_CHARACTER_SET.values(),
             *gsm0338.charset.BASIC_CHARACTER_SET_EXTENSION.values()]
    return {unicodedata.lookup(n) for n in names if n != "ESCAPE"}


def test_default_alphabet_agrees_with_gsm0338_on_every_character() -> None:
    # Every character either side defines, plus a scan of the ranges look-alikes come from
    # (Latin-1, Latin Extended, Greek, General Punctuation, currency symbols).
    candidates = _gsm0338_defines() | GSM7_CHARSET | {chr(c) for c in range(0x2200)}
    assert len(_gsm0338_defines()) == 137  # 127 + 10 extension characters
    for ch in sorted(candidates):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            continue
        try:
            theirs: bytes | None = ch.encode("gsm03.38")
        except UnicodeEncodeError:
            theirs = None
        m = encode(ch)
        if ch == "\x1b":  # gsm0338 passes a raw ESC through (protocols.md §6.5); we refuse it
            assert theirs == b"\x1b" and m.encoding is Encoding.UCS2
        elif theirs is None:
            assert m.encoding is Encoding.UCS2, ch
        else:
            assert m.encoding is Encoding.GSM7 and m.parts[0].payload == theirs, ch
