"""The C-level SeptetEncoder against the plain str.translate tables, for every table pair."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.codec.errors import CodecError
from gateway.codec.gsm7 import DEFAULT_SEPTETS, encode_septets
from gateway.codec.nls import COMBINATIONS, NLS_CHARSET

pool = sorted(NLS_CHARSET | set("`\x00\x1b\tçΑ😀中\ufffe"))
combos = st.sampled_from(sorted(COMBINATIONS))


def _reference(text: str, pair: tuple[int, int]) -> bytes | None:
    try:
        return encode_septets(text, COMBINATIONS[pair].encode_table)
    except CodecError:
        return None


@given(text=st.text(alphabet=pool, max_size=60), pair=combos)
def test_matches_translate(text: str, pair: tuple[int, int]) -> None:
    assert COMBINATIONS[pair].septets.encode(text) == _reference(text, pair)


@given(text=st.text(max_size=60))
def test_default_matches_on_any_text(text: str) -> None:
    assert DEFAULT_SEPTETS.encode(text) == _reference(text, (0, 0))


def test_edge_characters() -> None:
    assert DEFAULT_SEPTETS.encode("@") == b"\x00"
    assert DEFAULT_SEPTETS.encode("\x00") is None  # NUL: not an SMS character
    assert DEFAULT_SEPTETS.encode("\ufffe") is None  # charmap's "undefined" marker
    assert DEFAULT_SEPTETS.encode("a\x1b") is None
    assert DEFAULT_SEPTETS.encode("`") is None
    assert DEFAULT_SEPTETS.encode("€{é") == b"\x1b\x65\x1b\x28\x05"
    assert COMBINATIONS[(3, 3)].septets.encode("^€") == b"\x16\x18"  # Portuguese locking
    assert COMBINATIONS[(1, 1)].septets.encode("ç€Ş") == b"\x60\x04\x1c"
