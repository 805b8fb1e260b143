"""``encode()``: text -> encoding choice -> parts ready for SMPP submit_sm or an SMS-SUBMIT TPDU.

Capacities (../shared/reference/protocols.md §2.1, TS 23.040 §9.2.3.24 and §9.2.3.16): the user
data is 140 octets; a UDH of ``h`` octets (UDHL included) leaves ``160 - ceil(8h / 7)`` septets
for GSM-7 (the header is padded to a septet boundary with fill bits) or ``(140 - h) // 2`` UTF-16
units for UCS-2. Concatenation IE: 5 octets with an 8-bit reference, 6 with a 16-bit one;
national language IEs: 3 octets each. Hence 160/153/152 septets and 70/67/66 units.

SAR parts carry no UDH of ours, but the SMSC turns the SAR TLVs into a concatenation UDH before
the handset sees them; sar_msg_ref_num is 16 bits, so we size SAR parts for the 16-bit IE
(152 / 66), the size that fits whichever IE the SMSC picks. PAYLOAD hands the SMSC the whole
message; segments and units_left are computed as the 8-bit-reference split it will most likely
make.
"""

from __future__ import annotations

from codecs import utf_16_be_decode, utf_16_be_encode
from typing import NamedTuple

from gateway.codec.errors import CodecError
from gateway.codec.gsm7 import DEFAULT_SEPTETS, header_septets
from gateway.codec.model import (
    Concat,
    EncodedMessage,
    EncodeOptions,
    Encoding,
    Part,
    make_message,
    make_part,
)
from gateway.codec.nls import COMBINATIONS, ShiftTables, candidates
from gateway.codec.references import REFERENCES, ReferenceCounter
from gateway.codec.split import ESC, split_septets, split_utf16
from gateway.codec.substitutions import substitute
from gateway.codec.udh import (
    IEI_CONCAT_8,
    IEI_NLI_LOCKING,
    IEI_NLI_SINGLE,
    InformationElement,
    build_udh,
    concat_ie,
)

DCS_GSM7 = 0x00  # TS 23.038 §4 general data coding, GSM 7-bit default alphabet; SMPP 3.4 §5.2.19
DCS_UCS2 = 0x08  # TS 23.038 §4 UCS-2 (sent as UTF-16BE); SMPP 3.4 §5.2.19 ISO/IEC 10646
ESM_UDHI = 0x40  # SMPP 3.4 §5.2.12 esm_class bit 6: UDH indicator (TS 23.040 TP-UDHI)

SINGLE_SEPTETS = 160  # TS 23.040 §9.2.3.16: 140 octets * 8 / 7
SINGLE_UNITS = 70  # 140 octets / 2
_USER_DATA_OCTETS = 140

# TS 23.040 §9.2.3.24.1 / .8: concatenation IE size (IEI + IEDL + data) per method, see above.
_CONCAT_IE_OCTETS = {Concat.UDH8: 5, Concat.UDH16: 6, Concat.SAR: 6, Concat.PAYLOAD: 5}
_NLS_IE_OCTETS = 3  # TS 23.040 §9.2.3.24.15/16: IEI + IEDL + language id

_SEQ = tuple(bytes((i,)) for i in range(256))
_DEFAULT_OPTIONS = EncodeOptions()
_DEFAULT_TABLES = COMBINATIONS[(0, 0)]


def _gsm_caps(header_octets: int) -> int:
    return SINGLE_SEPTETS - header_septets(header_octets) if header_octets else SINGLE_SEPTETS


def _ucs2_caps(header_octets: int) -> int:
    return (_USER_DATA_OCTETS - header_octets) // 2


# (single, multi) septets without shift tables, per method: (160, 153) / (160, 152).
_GSM_CAPS = {c: (SINGLE_SEPTETS, _gsm_caps(1 + n)) for c, n in _CONCAT_IE_OCTETS.items()}


class _Plan(NamedTuple):
    """One way to send the text: its units, where the parts end, and what it costs."""

    text: str
    encoding: Encoding
    tables: ShiftTables | None  # GSM-7 only; None for UCS-2
    units: bytes  # unpacked septets or UTF-16-BE
    ends: list[int]  # end offset (in units) of each part
    single: int  # capacity of a lone part
    multi: int  # capacity of each part of a multipart message
    substitutions: tuple[tuple[str, str], ...]


def _gsm_plan(
    text: str,
    tables: ShiftTables,
    concat_octets: int,
    subs: tuple[tuple[str, str], ...],
    septets: bytes | None = None,
) -> _Plan | None:
    if septets is None:
        septets = tables.septets.encode(text)
        if septets is None:
            return None
    nls = _NLS_IE_OCTETS * tables.ie_count
    single = _gsm_caps(nls + 1 if nls else 0)
    multi = _gsm_caps(1 + concat_octets + nls)
    ends = split_septets(septets, single, multi)
    return _Plan(text, Encoding.GSM7, tables, septets, ends, single, multi, subs)


def _ucs2_plan(text: str, concat_octets: int) -> _Plan:
    try:
        data = utf_16_be_encode(text)[0]  # the C codec directly: str.encode adds a lookup
    except UnicodeEncodeError as exc:
        raise CodecError(
            f"text has a lone surrogate U+{ord(text[exc.start]):04X} at index {exc.start}"
            " (not a character; cannot be sent)"
        ) from None
    single = SINGLE_UNITS
    multi = _ucs2_caps(1 + concat_octets)
    return _Plan(text, Encoding.UCS2, None, data, split_utf16(data, single, multi), single, multi,
                 ())


def _nls_cost(plan: _Plan) -> tuple[int, int, int]:
    assert plan.tables is not None
    return len(plan.ends), plan.tables.ie_count, len(plan.units)


def _choose(text: str, options: EncodeOptions, septets: bytes | None) -> _Plan:
    """Pick the plan; ``septets`` is ``text`` in the default tables, or None if it does not map."""
    concat_octets = _CONCAT_IE_OCTETS[options.concat]
    texts: list[tuple[str, tuple[tuple[str, str], ...]]] = [(text, ())]
    base: _Plan | None = None
    if septets is not None:
        base = _gsm_plan(text, _DEFAULT_TABLES, concat_octets, (), septets)
    elif options.substitutions:
        replaced, subs = substitute(text)
        if subs:
            texts.append((replaced, subs))
            base = _gsm_plan(replaced, _DEFAULT_TABLES, concat_octets, subs)
    if options.national_languages and (base is None or len(base.ends) > 1):
        best: _Plan | None = None
        for candidate, subs in texts:
            for tables in candidates(options.national_languages):
                plan = _gsm_plan(candidate, tables, concat_octets, subs)
                if plan is not None and (best is None or _nls_cost(plan) < _nls_cost(best)):
                    best = plan
        if best is not None:
            # Shift tables only when they save parts: against default GSM-7 when that fits,
            # else against UCS-2 (TS 23.038 Annex C: receivers without NLS support degrade).
            rival = base if base is not None else _ucs2_plan(text, concat_octets)
            if len(best.ends) < len(rival.ends):
                return best
            if base is None:
                return rival
    if base is not None:
        return base
    return _ucs2_plan(text, concat_octets)


def encode(
    text: str,
    options: EncodeOptions = _DEFAULT_OPTIONS,
    *,
    destination: str | None = None,
    references: ReferenceCounter | None = None,
) -> EncodedMessage:
    """Encode ``text`` for sending: choose GSM-7 or UCS-2 and cut it into parts.

    ``destination`` keys the concatenation-reference counter (``references``, default the
    module's :data:`~gateway.codec.references.REFERENCES`); a reference is drawn only for a
    message that needs several parts and only when ``options.reference`` is None.
    Raises :class:`CodecError` when more than ``options.max_parts`` parts would be needed.
    """
    septets = DEFAULT_SEPTETS.encode(text)
    if septets is not None:
        n = len(septets)
        if n <= SINGLE_SEPTETS:
            # The common case: one GSM-7 part (no shift table can save a part here).
            part = make_part(1, 1, b"", septets, n, text, None)
            return make_message(
                text, Encoding.GSM7, DCS_GSM7, 0, options.concat, None, (part,), None, (),
                options.substitutions, 1, SINGLE_SEPTETS - n,
            )
    elif len(text) <= SINGLE_UNITS and not options.substitutions:
        try:
            data = utf_16_be_encode(text)[0]
        except UnicodeEncodeError:  # a lone surrogate: _choose() reports it
            data = b"\xff" * (2 * SINGLE_UNITS + 2)
        n = len(data) >> 1
        if n <= SINGLE_UNITS:
            # One UCS-2 part: no shift table can beat one part.
            part = make_part(1, 1, b"", data, n, text, None)
            return make_message(
                text, Encoding.UCS2, DCS_UCS2, 0, options.concat, None, (part,), None, (),
                options.substitutions, 1, SINGLE_UNITS - n,
            )
    if options.substitutions or options.national_languages:
        plan = _choose(text, options, septets)
    elif septets is not None:
        single, multi = _GSM_CAPS[options.concat]
        plan = _Plan(text, Encoding.GSM7, _DEFAULT_TABLES, septets,
                     split_septets(septets, single, multi), single, multi, ())
    else:
        plan = _ucs2_plan(text, _CONCAT_IE_OCTETS[options.concat])
    return _build(plan, options, destination, references)


def _build(
    plan: _Plan,
    options: EncodeOptions,
    destination: str | None,
    references: ReferenceCounter | None,
) -> EncodedMessage:
    total = len(plan.ends)
    if total > options.max_parts:
        raise CodecError(f"{total} parts needed, at most {options.max_parts}")
    concat = options.concat
    gsm = plan.encoding is Encoding.GSM7
    nls_ies: tuple[InformationElement, ...] = ()
    national: tuple[int, int] | None = None
    if plan.tables is not None and plan.tables.ie_count:
        national = (plan.tables.locking_id, plan.tables.single_id)
        ies = []
        if plan.tables.locking_id:
            ies.append(InformationElement(IEI_NLI_LOCKING, bytes((plan.tables.locking_id,))))
        if plan.tables.single_id:
            ies.append(InformationElement(IEI_NLI_SINGLE, bytes((plan.tables.single_id,))))
        nls_ies = tuple(ies)
    reference: int | None = None
    if total > 1 and concat is not Concat.PAYLOAD:
        if options.reference is not None:
            reference = options.reference
        else:
            counter = REFERENCES if references is None else references
            reference = counter.next(destination, 8 if concat is Concat.UDH8 else 16)

    units, text = plan.units, plan.text
    parts: list[Part] = []
    if total == 1 or concat is Concat.PAYLOAD:
        count = len(units) if gsm else len(units) >> 1
        parts.append(make_part(1, 1, build_udh(*nls_ies), units, count, text, None))
    else:
        assert reference is not None
        pos = 0  # unit offset
        char = 0  # index into text (GSM-7 only)
        plain_udh = build_udh(*nls_ies) if nls_ies else b""
        if concat is Concat.UDH8 and not nls_ies:  # the common case: 05 00 03 ref total seq
            head, tail = bytes((5, IEI_CONCAT_8, 3, reference, total)), b""
        elif concat is not Concat.SAR:
            # UDHL, the concat IE up to its sequence octet; then seq; then the NLS IEs. Built
            # once (concat_ie validates the values), only the sequence octet changes per part.
            ie = concat_ie(reference, total, 1, 8 if concat is Concat.UDH8 else 16)
            whole = build_udh(ie, *nls_ies)
            seq_at = 2 + len(ie.data)  # UDHL, IEI, IEDL, data whose last octet is seq
            head, tail = whole[:seq_at], whole[seq_at + 1 :]
        seqs = range(1, total + 1)
        if concat is Concat.SAR:
            udhs = [plain_udh] * total
            sars: list[tuple[int, int, int] | None] = [(reference, total, q) for q in seqs]
        else:
            udhs = [head + _SEQ[q] + tail for q in seqs]
            sars = [None] * total
        if gsm:
            for seq, end, udh, sar in zip(seqs, plan.ends, udhs, sars, strict=True):
                payload = units[pos:end]
                nchars = (end - pos) - payload.count(ESC)
                parts.append(
                    make_part(seq, total, udh, payload, end - pos, text[char : char + nchars], sar)
                )
                char += nchars
                pos = end
        elif len(units) == 2 * len(text):  # no surrogate pairs: units index the text directly
            for seq, end, udh, sar in zip(seqs, plan.ends, udhs, sars, strict=True):
                payload = units[2 * pos : 2 * end]
                parts.append(make_part(seq, total, udh, payload, end - pos, text[pos:end], sar))
                pos = end
        else:
            for seq, end, udh, sar in zip(seqs, plan.ends, udhs, sars, strict=True):
                payload = units[2 * pos : 2 * end]
                part_text = utf_16_be_decode(payload, None, True)[0]
                parts.append(make_part(seq, total, udh, payload, end - pos, part_text, sar))
                pos = end
    last_units = plan.ends[-1] - (plan.ends[-2] if total > 1 else 0)
    capacity = plan.single if total == 1 else plan.multi
    return make_message(
        text,
        plan.encoding,
        DCS_GSM7 if gsm else DCS_UCS2,
        ESM_UDHI if parts[0].udh else 0,
        concat,
        reference,
        tuple(parts),
        national,
        plan.substitutions,
        options.substitutions,
        total,
        capacity - last_units,
    )
