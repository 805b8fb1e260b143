"""GSM-friendly substitutions: typographic characters -> look-alikes in the GSM 7-bit alphabet.

Word processors and phones turn quotes into curly quotes, hyphens into dashes and "..." into an
ellipsis; any one of them forces the whole message into UCS-2 (70 characters per SMS instead of
160). With ``EncodeOptions(substitutions=True)`` the codec replaces them, but only when that makes
the message GSM-7 (default or national-language tables); a message that needs UCS-2 anyway keeps
its original characters. Every replacement made is reported (``EncodedMessage.substitutions``).

Only punctuation, spaces, symbols and fullwidth forms of ASCII are replaced; a letter is never
turned into a different letter (dropping an accent changes a word, and the national language
tables carry many accented letters exactly). The list follows the
usual "smart encoding" sets (Twilio's SmartEncodingMap, protocols.md §2.3) restricted to that rule.
Every replacement is itself in the default alphabet (checked by tests/codec/test_substitutions.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

_PAIRS: dict[str, str] = {
    # quotation marks
    "\u2018": "'",  # LEFT SINGLE QUOTATION MARK
    "\u2019": "'",  # RIGHT SINGLE QUOTATION MARK (also the typographic apostrophe)
    "\u201a": "'",  # SINGLE LOW-9 QUOTATION MARK
    "\u201b": "'",  # SINGLE HIGH-REVERSED-9 QUOTATION MARK
    "\u2032": "'",  # PRIME
    "\u00b4": "'",  # ACUTE ACCENT
    "\u0060": "'",  # GRAVE ACCENT (backtick: not in the default alphabet, TS 23.038 §6.2.1)
    "\u02bc": "'",  # MODIFIER LETTER APOSTROPHE
    "\u2039": "<",  # SINGLE LEFT-POINTING ANGLE QUOTATION MARK
    "\u203a": ">",  # SINGLE RIGHT-POINTING ANGLE QUOTATION MARK
    "\u201c": '"',  # LEFT DOUBLE QUOTATION MARK
    "\u201d": '"',  # RIGHT DOUBLE QUOTATION MARK
    "\u201e": '"',  # DOUBLE LOW-9 QUOTATION MARK
    "\u201f": '"',  # DOUBLE HIGH-REVERSED-9 QUOTATION MARK
    "\u2033": '"',  # DOUBLE PRIME
    "\u00ab": '"',  # LEFT-POINTING DOUBLE ANGLE QUOTATION MARK
    "\u00bb": '"',  # RIGHT-POINTING DOUBLE ANGLE QUOTATION MARK
    # dashes and hyphens
    "\u2010": "-",  # HYPHEN
    "\u2011": "-",  # NON-BREAKING HYPHEN
    "\u2012": "-",  # FIGURE DASH
    "\u2013": "-",  # EN DASH
    "\u2014": "-",  # EM DASH
    "\u2015": "-",  # HORIZONTAL BAR
    "\u2212": "-",  # MINUS SIGN
    "\u00ad": "",  # SOFT HYPHEN (invisible unless a line breaks there)
    # spaces and invisible characters
    "\u00a0": " ",  # NO-BREAK SPACE
    "\u2000": " ",  # EN QUAD
    "\u2001": " ",  # EM QUAD
    "\u2002": " ",  # EN SPACE
    "\u2003": " ",  # EM SPACE
    "\u2004": " ",  # THREE-PER-EM SPACE
    "\u2005": " ",  # FOUR-PER-EM SPACE
    "\u2006": " ",  # SIX-PER-EM SPACE
    "\u2007": " ",  # FIGURE SPACE
    "\u2008": " ",  # PUNCTUATION SPACE
    "\u2009": " ",  # THIN SPACE
    "\u200a": " ",  # HAIR SPACE
    "\u202f": " ",  # NARROW NO-BREAK SPACE
    "\u205f": " ",  # MEDIUM MATHEMATICAL SPACE
    "\u3000": " ",  # IDEOGRAPHIC SPACE
    "\u200b": "",  # ZERO WIDTH SPACE
    "\u2060": "",  # WORD JOINER
    "\ufeff": "",  # ZERO WIDTH NO-BREAK SPACE (byte order mark pasted into text)
    "\t": " ",  # CHARACTER TABULATION (not in the default alphabet)
    # other punctuation
    "\u2026": "...",  # HORIZONTAL ELLIPSIS
    "\u2022": "*",  # BULLET
    "\u00b7": ".",  # MIDDLE DOT
    "\u2044": "/",  # FRACTION SLASH
    "\u2215": "/",  # DIVISION SLASH
    "\u02c6": "^",  # MODIFIER LETTER CIRCUMFLEX ACCENT
    "\u02dc": "~",  # SMALL TILDE
    "\u00d7": "x",  # MULTIPLICATION SIGN
    "\u2122": "TM",  # TRADE MARK SIGN
    "\u00a9": "(C)",  # COPYRIGHT SIGN
    "\u00ae": "(R)",  # REGISTERED SIGN
}

# Fullwidth ASCII (U+FF01..U+FF5E) -> ASCII, as pasted from CJK input methods. Those ASCII
# characters that are not GSM-7 themselves (the backtick) are left out.
for _cp in range(0xFF01, 0xFF5F):
    _ascii = chr(_cp - 0xFEE0)
    if _ascii != "`":
        _PAIRS.setdefault(chr(_cp), _ascii)

SUBSTITUTIONS: Mapping[str, str] = MappingProxyType(_PAIRS)
"""Character -> GSM-7 replacement (possibly several characters, possibly empty)."""

TRANSLATE: Mapping[int, str] = MappingProxyType({ord(k): v for k, v in _PAIRS.items()})
"""The same as a ``str.translate`` table."""

SUBSTITUTABLE: frozenset[str] = frozenset(_PAIRS)


def substitute(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Apply every substitution; return the new text and the (original, replacement) pairs used,
    distinct and in order of first appearance."""
    if SUBSTITUTABLE.isdisjoint(text):
        return text, ()
    used = dict.fromkeys(ch for ch in text if ch in SUBSTITUTABLE)
    return text.translate(TRANSLATE), tuple((ch, _PAIRS[ch]) for ch in used)
