"""National language shift tables for Turkish, Spanish and Portuguese (3GPP TS 23.038 Annex A).

A message signals them in its User Data Header (TS 23.040 §9.2.3.24.15 IEI 0x24 single shift,
§9.2.3.24.16 IEI 0x25 locking shift, each carrying the language id of TS 23.038 §6.2.1.2.4).
A *locking* shift table replaces the 128-entry default alphabet; a *single* shift table replaces
the extension table reached through ESC (0x1B). Spanish has a single shift table only
("A.3.2 Void").

The tables are data, transcribed from TS 23.038 (Rel-8+) Annex A.2.1-A.2.3 and A.3.1/A.3.3 and
cross-checked three ways (tests/codec/test_nls.py): the character lists extracted from Android
``GsmAlphabet`` (../shared/reference/protocols.md §1.4), the ``gsm0338`` package's Spanish
single-shift set, and the ``gsmcodecs`` package (TS 23.038 v18.0.0) for every table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.codec.gsm7 import (
    DEFAULT_ALPHABET,
    DEFAULT_EXTENSION,
    DEFAULT_SEPTETS,
    SeptetEncoder,
    build_charset,
    build_encode_table,
)

# TS 23.038 §6.2.1.2.4 national language identifiers (the ones smsgate implements).
TURKISH = 1
SPANISH = 2
PORTUGUESE = 3

LANGUAGE_IDS: Mapping[str, int] = MappingProxyType({"tr": TURKISH, "es": SPANISH, "pt": PORTUGUESE})
"""Option names (ISO 639-1) -> TS 23.038 §6.2.1.2.4 language id."""

# TS 23.038 Annex A.3.1 Turkish National Language Locking Shift Table, by septet 0x00..0x7F.
# Differs from the default alphabet at 0x04 €, 0x07 ı, 0x0B Ğ, 0x0C ğ, 0x1C Ş, 0x1D ş, 0x40 İ,
# 0x60 ç. 0x1B is ESC (placeholder, never encoded).
TURKISH_LOCKING: str = (
    "@£$¥€éùıòÇ\nĞğ\rÅå"  # 0x00-0x0F
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bŞşßÉ"  # 0x10-0x1F
    " !\"#¤%&'()*+,-./"  # 0x20-0x2F
    "0123456789:;<=>?"  # 0x30-0x3F
    "İABCDEFGHIJKLMNO"  # 0x40-0x4F
    "PQRSTUVWXYZÄÖÑÜ§"  # 0x50-0x5F
    "çabcdefghijklmno"  # 0x60-0x6F
    "pqrstuvwxyzäöñüà"  # 0x70-0x7F
)

# TS 23.038 Annex A.3.3 Portuguese National Language Locking Shift Table. Differs from the default
# alphabet at 30 positions; note ^ \ € | ~ and the backtick are single septets here.
PORTUGUESE_LOCKING: str = (
    "@£$¥êéúíóç\nÔô\rÁá"  # 0x00-0x0F
    "Δ_ªÇÀ∞^\\€Ó|\x1bÂâÊÉ"  # 0x10-0x1F
    " !\"#º%&'()*+,-./"  # 0x20-0x2F
    "0123456789:;<=>?"  # 0x30-0x3F
    "ÍABCDEFGHIJKLMNO"  # 0x40-0x4F
    "PQRSTUVWXYZÃÕÚÜ§"  # 0x50-0x5F
    "~abcdefghijklmno"  # 0x60-0x6F
    "pqrstuvwxyzãõ`üà"  # 0x70-0x7F
)

# TS 23.038 Annex A.2.1 Turkish National Language Single Shift Table: the default extension
# characters plus Ğ İ Ş ç ğ ı ş.
TURKISH_SINGLE: Mapping[int, str] = MappingProxyType(
    {
        **DEFAULT_EXTENSION,
        0x47: "Ğ",
        0x49: "İ",
        0x53: "Ş",
        0x63: "ç",
        0x67: "ğ",
        0x69: "ı",
        0x73: "ş",
    }
)

# TS 23.038 Annex A.2.2 Spanish National Language Single Shift Table.
SPANISH_SINGLE: Mapping[int, str] = MappingProxyType(
    {
        **DEFAULT_EXTENSION,
        0x09: "ç",
        0x41: "Á",
        0x49: "Í",
        0x4F: "Ó",
        0x55: "Ú",
        0x61: "á",
        0x69: "í",
        0x6F: "ó",
        0x75: "ú",
    }
)

# TS 23.038 Annex A.2.3 Portuguese National Language Single Shift Table.
PORTUGUESE_SINGLE: Mapping[int, str] = MappingProxyType(
    {
        **DEFAULT_EXTENSION,
        0x05: "ê",
        0x09: "ç",
        0x0B: "Ô",
        0x0C: "ô",
        0x0E: "Á",
        0x0F: "á",
        0x12: "Φ",
        0x13: "Γ",
        0x15: "Ω",
        0x16: "Π",
        0x17: "Ψ",
        0x18: "Σ",
        0x19: "Θ",
        0x1F: "Ê",
        0x41: "À",
        0x49: "Í",
        0x4F: "Ó",
        0x55: "Ú",
        0x5B: "Ã",
        0x5C: "Õ",
        0x61: "Â",
        0x69: "í",
        0x6F: "ó",
        0x75: "ú",
        0x7B: "ã",
        0x7C: "õ",
        0x7F: "â",
    }
)

LOCKING_TABLES: Mapping[int, str] = MappingProxyType(
    {0: DEFAULT_ALPHABET, TURKISH: TURKISH_LOCKING, PORTUGUESE: PORTUGUESE_LOCKING}
)
SINGLE_TABLES: Mapping[int, Mapping[int, str]] = MappingProxyType(
    {0: DEFAULT_EXTENSION, TURKISH: TURKISH_SINGLE, SPANISH: SPANISH_SINGLE,
     PORTUGUESE: PORTUGUESE_SINGLE}
)


@dataclass(frozen=True, slots=True)
class ShiftTables:
    """One (locking, single) combination, with its encode table and charset built once."""

    locking_id: int  # 0 = default alphabet
    single_id: int  # 0 = default extension table
    encode_table: Mapping[int, str]
    charset: frozenset[str]
    septets: SeptetEncoder  # the fast encoder for this pair (None from encode(): not mappable)

    @property
    def ie_count(self) -> int:
        """National language IEs this combination needs in the UDH (3 octets each)."""
        return (self.locking_id != 0) + (self.single_id != 0)


def _build(locking_id: int, single_id: int) -> ShiftTables:
    locking, single = LOCKING_TABLES[locking_id], SINGLE_TABLES[single_id]
    return ShiftTables(
        locking_id,
        single_id,
        MappingProxyType(build_encode_table(locking, single)),
        build_charset(locking, single),
        DEFAULT_SEPTETS if (locking_id, single_id) == (0, 0) else SeptetEncoder(locking, single),
    )


# Every combination of the implemented tables, built at import (a few hundred entries each).
COMBINATIONS: Mapping[tuple[int, int], ShiftTables] = MappingProxyType(
    {(lk, ss): _build(lk, ss) for lk in LOCKING_TABLES for ss in SINGLE_TABLES}
)

NLS_CHARSET: frozenset[str] = frozenset().union(*(c.charset for c in COMBINATIONS.values()))
"""Every character some implemented combination can carry (a quick pre-filter)."""


def candidates(languages: tuple[str, ...]) -> tuple[ShiftTables, ...]:
    """Combinations worth trying for the enabled languages, excluding (default, default).

    Lockings: default plus each enabled language that has one; singles: default plus each enabled
    language. Mixed pairs (Turkish locking + Spanish single, ...) are legal and included.
    """
    ids = [LANGUAGE_IDS[name] for name in languages]
    lockings = [0, *(i for i in ids if i in LOCKING_TABLES)]
    singles = [0, *ids]
    return tuple(
        COMBINATIONS[(lk, ss)]
        for lk in dict.fromkeys(lockings)
        for ss in dict.fromkeys(singles)
        if (lk, ss) != (0, 0)
    )


def tables_for(locking_id: int | None, single_id: int | None) -> tuple[str, Mapping[int, str]]:
    """Decoding tables for the ids a UDH announced (None or unknown ids -> default tables).

    TS 23.038 Annex C.2 / §6.2.1.2.4: a receiver that does not know a table uses the default.
    """
    locking = LOCKING_TABLES.get(locking_id or 0, DEFAULT_ALPHABET)
    single = SINGLE_TABLES.get(single_id or 0, DEFAULT_EXTENSION)
    return locking, single
