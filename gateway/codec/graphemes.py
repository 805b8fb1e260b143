"""The subset of Unicode grapheme-cluster boundaries (UAX #29) that SMS splitting needs.

The standard library has no grapheme segmentation, and the splitter only asks one question at a
few offsets per message: "does a cut here fall inside a user-perceived character, and where does
that character start and end?". We answer it for the clusters that appear in real messages:

- combining marks: ``unicodedata.combining(ch) != 0`` or general category Mn / Me / Mc
  (GB9 Extend, GB9a SpacingMark), e.g. e + U+0301, the keycap U+20E3, Indic vowel signs;
- ZERO WIDTH JOINER sequences: no break after U+200D (GB11, simplified: we do not require the
  next character to be Extended_Pictographic), so ZWJ families and rainbow flags stay whole;
- variation selectors U+FE00-FE0F and U+E0100-E01EF (Extend), e.g. U+FE0F emoji presentation;
- emoji skin-tone modifiers U+1F3FB-1F3FF (Extend since Unicode 11);
- tag characters U+E0020-E007F (Extend): subdivision flags such as England;
- regional-indicator pairs (GB12/GB13): flags are two RIs, counted in pairs from the left.

Not implemented (documented in docs/codec.md): Hangul conjoining jamo (GB6-8; modern Korean text
uses precomposed syllables, which are single code points), Prepend (GB9b), and CR LF (GB3), which
we deliberately allow to be cut: the receiver joins the parts, and an SMS that loses a part is
broken either way.

Everything works on UTF-16-BE bytes in code-unit offsets, the form the UCS-2 splitter holds.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

ZWJ = 0x200D
_RI_FIRST, _RI_LAST = 0x1F1E6, 0x1F1FF  # REGIONAL INDICATOR SYMBOL LETTER A..Z
_MARKS = frozenset({"Mn", "Me", "Mc"})


@lru_cache(maxsize=4096)
def is_extend(cp: int) -> bool:
    """True when code point ``cp`` attaches to the character before it (no break before it)."""
    if cp == ZWJ or 0xFE00 <= cp <= 0xFE0F or 0x1F3FB <= cp <= 0x1F3FF:
        return True
    if 0xE0020 <= cp <= 0xE007F or 0xE0100 <= cp <= 0xE01EF:
        return True
    if 0xD800 <= cp <= 0xDFFF:  # lone surrogates never reach here; be total anyway
        return False
    ch = chr(cp)
    return unicodedata.combining(ch) != 0 or unicodedata.category(ch) in _MARKS


def is_regional_indicator(cp: int) -> bool:
    return _RI_FIRST <= cp <= _RI_LAST


def _unit(data: bytes, u: int) -> int:
    return (data[2 * u] << 8) | data[2 * u + 1]


def cp_before(data: bytes, u: int) -> tuple[int, int]:
    """The code point that ends at unit offset ``u`` (> 0) and the offset where it starts."""
    low = _unit(data, u - 1)
    if 0xDC00 <= low <= 0xDFFF and u >= 2:
        high = _unit(data, u - 2)
        if 0xD800 <= high <= 0xDBFF:
            return 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00), u - 2
    return low, u - 1


def cp_at(data: bytes, u: int) -> tuple[int, int]:
    """The code point that starts at unit offset ``u`` (< len) and the offset after it."""
    high = _unit(data, u)
    if 0xD800 <= high <= 0xDBFF and 2 * u + 3 < len(data):
        low = _unit(data, u + 1)
        if 0xDC00 <= low <= 0xDFFF:
            return 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00), u + 2
    return high, u + 1


def is_boundary(data: bytes, u: int, floor: int = 0) -> bool:
    """Is there a grapheme-cluster boundary at code-unit offset ``u`` (a code-point boundary)?

    Regional indicators pair up from the start of their run; the count looks back no further
    than ``floor``, a known boundary (the splitter passes the start of the current part, so a
    message of thousands of flags costs one part's worth of look-back per cut, not the run's).
    """
    n = len(data) >> 1
    if u <= 0 or u >= n:
        return True
    prev, prev_start = cp_before(data, u)
    cur, _ = cp_at(data, u)
    if is_extend(cur) or prev == ZWJ:
        return False
    if is_regional_indicator(prev) and is_regional_indicator(cur):
        # GB12/13: break between RIs only after an even number of them (pairs from the left).
        count = 1
        pos = prev_start
        while pos > floor:
            cp, pos = cp_before(data, pos)
            if not is_regional_indicator(cp):
                break
            count += 1
        return count % 2 == 0
    return True


def cluster_bounds(data: bytes, u: int, floor: int, limit: int) -> tuple[int, int]:
    """The cluster around a cut at code-unit offset ``u``: ``(start, stop)``.

    ``(u, u)`` when ``u`` is a boundary. The backward walk stops at ``floor`` and the forward walk
    stops once the cluster is longer than ``limit`` units (the caller then cuts at ``u``), so the
    work is bounded by the part size whatever the input.
    """
    if is_boundary(data, u, floor):
        return u, u
    start = u
    while start > floor:
        _, start = cp_before(data, start)
        if is_boundary(data, start, floor):
            break
    n = len(data) >> 1
    stop = u
    while stop < n and stop - start <= limit:
        _, stop = cp_at(data, stop)
        if is_boundary(data, stop, floor):
            break
    return start, stop
