"""Carrier message ids in one canonical form, so a delivery report finds its part.

The same message id reaches us twice: in the submit response (SMPP 3.4 §4.4.2 ``submit_sm_resp``
``message_id``, or a modem's ``+CMGS: <mr>`` reference, 3GPP TS 27.005 §3.5.1) and in the
delivery report (SMPP 3.4 Appendix B ``id:`` text / the ``receipted_message_id`` TLV §5.3.2.12,
or ``+CDS`` TS 27.005 §3.4.1). Carriers write the two differently: hexadecimal in one and decimal
in the other (Vonage documents exactly that), with or without leading zeros, in either case.
Those mismatches are the classic "DLR for an unknown message id" (field-failures.md §3.3).

Each carrier's convention is configured per bind as ``id_format = "SUBMIT/REPORT"`` (or one
word for both). Numeric conventions normalise to the decimal digits of the number, so
``"00A1"`` (hex) and ``"161"`` (dec) are equal; ``text`` ids are opaque and only lose
surrounding space, case and leading zeros. An id that does not parse in its declared convention
falls back to the text form instead of failing: a report is kept, never dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

IdConvention = Literal["hex", "dec", "text"]

_HEX = re.compile(r"(?:0[xX])?([0-9A-Fa-f]+)")
_DEC = re.compile(r"[0-9]+")


def normalise_message_id(raw: str, convention: IdConvention) -> str:
    """The canonical form of a carrier id written in ``convention``."""
    text = raw.strip().strip("\x00")
    if convention == "hex":
        m = _HEX.fullmatch(text)
        if m is not None:
            return str(int(m.group(1), 16))
    elif convention == "dec" and _DEC.fullmatch(text):
        return str(int(text, 10))
    return _text_form(text)


def _text_form(text: str) -> str:
    folded = text.casefold()
    stripped = folded.lstrip("0")
    # "0" and "000" are the same id; an empty id stays empty (and is rejected by callers).
    return stripped if stripped or not folded else "0"


@dataclass(frozen=True, slots=True)
class IdFormat:
    """How one carrier writes ids: in its submit responses and in its delivery reports."""

    submit: IdConvention = "hex"
    report: IdConvention = "hex"

    def submit_id(self, raw: str) -> str:
        return normalise_message_id(raw, self.submit)

    def report_id(self, raw: str) -> str:
        return normalise_message_id(raw, self.report)

    def __str__(self) -> str:
        return self.submit if self.submit == self.report else f"{self.submit}/{self.report}"
