"""GSM-friendly substitutions: applied only when they keep the message in GSM-7, and reported."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.codec import EncodeOptions, Encoding, encode
from gateway.codec.gsm7 import GSM7_CHARSET
from gateway.codec.substitutions import SUBSTITUTIONS, substitute

ON = EncodeOptions(substitutions=True)


def test_every_replacement_is_gsm7_and_every_original_is_not() -> None:
    for original, replacement in SUBSTITUTIONS.items():
        assert original not in GSM7_CHARSET, original
        assert GSM7_CHARSET.issuperset(replacement), original


def test_typical_typography() -> None:
    m = encode("“Sale” – 20% off… don’t miss it\u00a0now", ON)
    assert m.encoding is Encoding.GSM7
    assert m.text == '"Sale" - 20% off... don\'t miss it now'
    assert m.substitutions == (
        ("“", '"'), ("”", '"'), ("–", "-"), ("…", "..."), ("’", "'"), ("\u00a0", " ")
    )


def test_off_by_default() -> None:
    m = encode("don’t")
    assert m.encoding is Encoding.UCS2 and m.substitutions == () and m.text == "don’t"
    assert m.ucs2_chars == ("’",)


def test_not_applied_when_the_message_needs_ucs2_anyway() -> None:
    m = encode("don’t 😀", ON)
    assert m.encoding is Encoding.UCS2 and m.text == "don’t 😀" and m.substitutions == ()
    assert m.ucs2_chars == ("😀",)  # the quote could have been replaced; the emoji forced UCS-2


def test_backtick_and_fullwidth() -> None:
    m = encode("`ｈｉ`", ON)
    assert m.text == "'hi'" and m.encoding is Encoding.GSM7


def test_substitution_can_change_the_part_count() -> None:
    text = "a" * 158 + "…"  # UCS-2: 159 units -> 3 parts; substituted: 161 septets -> 2 parts
    assert encode(text).segments == 3
    m = encode(text, EncodeOptions(substitutions=True, reference=1))
    assert m.segments == 2 and m.encoding is Encoding.GSM7


def test_combined_with_national_language() -> None:
    m = encode("“Türkçe” " * 20, EncodeOptions(substitutions=True, national_languages=("tr",),
                                               reference=1))
    assert m.encoding is Encoding.GSM7 and m.national_language is not None
    assert ("“", '"') in m.substitutions


@given(st.text(alphabet=sorted(set(SUBSTITUTIONS) | set("abc .")), max_size=200))
def test_substituted_text_is_always_gsm7(text: str) -> None:
    replaced, pairs = substitute(text)
    assert GSM7_CHARSET.issuperset(replaced)
    assert {a for a, _ in pairs} == {ch for ch in text if ch in SUBSTITUTIONS}
    assert encode(text, ON).encoding is Encoding.GSM7
