"""National language shift tables (TS 23.038 Annex A) against three independent sources, and the
rules for choosing them."""

from __future__ import annotations

import unicodedata

import gsm0338.charset
import gsmcodecs  # registers the 'gsm23.038-L-S' codecs (TS 23.038 v18.0.0 tables)
import pytest
from gsmcodecs.charmaps import GSMCHARMAPS

from gateway.codec import EncodeOptions, Encoding, encode
from gateway.codec.gsm7 import DEFAULT_ALPHABET, DEFAULT_EXTENSION
from gateway.codec.nls import (
    COMBINATIONS,
    LOCKING_TABLES,
    PORTUGUESE_LOCKING,
    PORTUGUESE_SINGLE,
    SINGLE_TABLES,
    SPANISH_SINGLE,
    TURKISH_LOCKING,
    TURKISH_SINGLE,
    candidates,
    tables_for,
)
from gateway.codec.udh import decode_short_message, parse_udh

assert gsmcodecs  # imported for its codec registration


def _diff(table: str) -> dict[int, str]:
    return {i: ch for i, ch in enumerate(table) if ch != DEFAULT_ALPHABET[i]}


def test_turkish_locking_matches_android_list() -> None:
    # protocols.md §1.4, extracted from Android GsmAlphabet
    assert _diff(TURKISH_LOCKING) == {
        0x04: "€", 0x07: "ı", 0x0B: "Ğ", 0x0C: "ğ", 0x1C: "Ş", 0x1D: "ş", 0x40: "İ", 0x60: "ç"
    }


def test_portuguese_locking_matches_android_list() -> None:
    diff = _diff(PORTUGUESE_LOCKING)
    assert len(diff) == 30
    assert {k: diff[k] for k in (0x09, 0x13, 0x16, 0x17, 0x18, 0x1A, 0x60, 0x7D)} == {
        0x09: "ç", 0x13: "Ç", 0x16: "^", 0x17: "\\", 0x18: "€", 0x1A: "|", 0x60: "~", 0x7D: "`"
    }


def _extra(table: dict[int, str]) -> dict[int, str]:
    return {k: v for k, v in table.items() if DEFAULT_EXTENSION.get(k) != v}


def test_single_shift_tables_match_android_lists() -> None:
    assert _extra(dict(TURKISH_SINGLE)) == {
        0x47: "Ğ", 0x49: "İ", 0x53: "Ş", 0x63: "ç", 0x67: "ğ", 0x69: "ı", 0x73: "ş"
    }
    assert _extra(dict(SPANISH_SINGLE)) == {
        0x09: "ç", 0x41: "Á", 0x49: "Í", 0x4F: "Ó", 0x55: "Ú", 0x61: "á", 0x69: "í", 0x6F: "ó",
        0x75: "ú",
    }
    assert "".join(_extra(dict(PORTUGUESE_SINGLE)).values()) == "êçÔôÁáΦΓΩΠΨΣΘÊÀÍÓÚÃÕÂíóúãõâ"


def test_spanish_single_shift_matches_gsm0338() -> None:
    theirs = {
        code: unicodedata.lookup(name)
        for code, name in gsm0338.charset.SINGLE_SHIFT_CHARACTER_SET_SPANISH.items()
    }
    assert theirs == dict(SPANISH_SINGLE)


@pytest.mark.parametrize("lang", [1, 3])
def test_locking_tables_match_gsmcodecs(lang: int) -> None:
    theirs = GSMCHARMAPS[lang]["locking"]["decode"]
    ours = LOCKING_TABLES[lang]
    for code in range(128):
        if code != 0x1B:
            assert ours[code] == chr(theirs[code]), hex(code)


@pytest.mark.parametrize("lang", [1, 2, 3])
def test_single_tables_match_gsmcodecs(lang: int) -> None:
    theirs = {k: chr(v) for k, v in GSMCHARMAPS[lang]["singleShift"]["decode"].items() if k != 0x1B}
    assert theirs == dict(SINGLE_TABLES[lang])


def test_encoding_agrees_with_gsmcodecs_for_every_combination() -> None:
    for (locking, single), tables in COMBINATIONS.items():
        text = "".join(sorted(tables.charset))
        ours = text.translate(tables.encode_table).encode("ascii")
        assert ours == text.encode(f"gsm23.038-{locking}-{single}"), (locking, single)


def test_candidates() -> None:
    ids = {(c.locking_id, c.single_id) for c in candidates(("es",))}
    assert ids == {(0, 2)}  # no Spanish locking table (Annex A.3.2 is void)
    ids = {(c.locking_id, c.single_id) for c in candidates(("tr", "pt"))}
    assert ids == {(0, 1), (0, 3), (1, 0), (1, 1), (1, 3), (3, 0), (3, 1), (3, 3)}


def test_tables_for_unknown_ids_fall_back_to_default() -> None:
    assert tables_for(None, None) == (DEFAULT_ALPHABET, DEFAULT_EXTENSION)
    assert tables_for(9, 12) == (DEFAULT_ALPHABET, DEFAULT_EXTENSION)
    assert tables_for(1, 2) == (TURKISH_LOCKING, SPANISH_SINGLE)


# --- choosing shift tables ---


def test_off_by_default() -> None:
    m = encode("Türkçe")
    assert m.encoding is Encoding.UCS2 and m.national_language is None


def test_not_chosen_when_it_saves_no_part() -> None:
    # 'Türkçe' fits one UCS-2 part: a shift table would save no part, so none is used.
    m = encode("Türkçe", EncodeOptions(national_languages=("tr",)))
    assert m.encoding is Encoding.UCS2 and m.national_language is None


def test_turkish_saves_parts() -> None:
    text = "Günaydın! Bugün çarşıda indirim var, ıslak mendil 5 TL. " * 3
    ucs2 = encode(text)
    assert len(text) == 168
    assert ucs2.encoding is Encoding.UCS2 and ucs2.segments == 3
    m = encode(text, EncodeOptions(national_languages=("tr",), reference=4))
    assert m.encoding is Encoding.GSM7 and m.segments == 2
    assert m.national_language == (1, 0)  # the locking table alone covers ç ğ ı ş
    assert m.parts[0].udh.hex() == "080003040201" + "250101"
    assert m.esm_class == 0x40
    header, used = parse_udh(m.parts[0].short_message)
    assert header.national_language() == (1, None) and used == 9
    back = "".join(
        decode_short_message(p.short_message, m.data_coding, udhi=True)[1] for p in m.parts
    )
    assert back == text
    assert [p.units for p in m.parts] == [149, 19]  # 8-bit concat + one NLI: 149 septets


def test_spanish_single_shift_for_a_single_part() -> None:
    text = "Canción: ¡Olé! Acción rápida, más días. " * 4  # ó á í need the Spanish table
    m = encode(text, EncodeOptions(national_languages=("es",), reference=1))
    assert m.encoding is Encoding.GSM7 and m.national_language == (0, 2)
    assert all(p.udh.endswith(bytes.fromhex("240102")) for p in m.parts)


def test_single_part_capacity_with_one_shift_table_is_155() -> None:
    # TS 23.038 Annex C.2: "reduces the maximum number of characters per single message to 155"
    base = "ç" * 71  # 2 parts in UCS-2
    m = encode(base + "a" * 84, EncodeOptions(national_languages=("tr",)))
    assert m.segments == 1 and m.parts[0].units == 155 and m.units_left == 0
    assert m.parts[0].udh.hex() == "03250101"
    m = encode(base + "a" * 85, EncodeOptions(national_languages=("tr",), reference=1))
    assert m.segments == 2


def test_portuguese_locking_beats_default_when_it_saves_parts() -> None:
    text = "€" * 100  # default GSM-7: 200 septets, 2 parts; Portuguese locking: 100 septets, 1
    assert encode(text).segments == 2
    m = encode(text, EncodeOptions(national_languages=("pt",)))
    assert m.segments == 1 and m.national_language == (3, 0)
    assert m.parts[0].payload == b"\x18" * 100


def test_default_gsm7_wins_ties() -> None:
    options = EncodeOptions(national_languages=("tr", "es", "pt"), reference=1)
    m = encode("plain ascii " * 20, options)
    assert m.national_language is None and m.segments == 2
