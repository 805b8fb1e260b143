"""Where to cut a message into SMS parts: pure functions over already-encoded units.

GSM-7 input is the unpacked septet string (one septet per octet, ESC pairs included); UCS-2 input
is UTF-16-BE. Both walk part by part (a few comparisons per part), never character by character,
except around a cut that lands inside a grapheme cluster.

Rules (../shared/reference/protocols.md §2.2, docs/codec.md):
- TS 23.040 §9.2.3.24.1: "A character represented by an escape-sequence shall not be split in the
  middle" -> a part never ends with ESC (0x1B). Every 0x1B in our septet strings is an ESC prefix:
  no table in TS 23.038 (default or national) puts a character at 0x1B, so the octet after an ESC
  is never 0x1B itself.
- §9.2.3.24.1 "A UCS2 character shall not be split in the middle", extended by us to UTF-16
  surrogate pairs (de-facto DCS 0x08 is UTF-16BE) -> a part never ends with a high surrogate.
- Our grapheme-cluster policy (no 3GPP rule): a cut inside a cluster moves back to the cluster's
  start when the cluster fits in one part; a longer cluster is cut at a code-point boundary.
  See :mod:`gateway.codec.graphemes` for the subset of UAX #29 implemented.
"""

from __future__ import annotations

from gateway.codec.graphemes import ZWJ, cluster_bounds

ESC = 0x1B  # TS 23.038 §6.2.1


def split_septets(septets: bytes, single: int, multi: int) -> list[int]:
    """End offsets of each part: ``[len]`` when it fits ``single``, else parts of <= ``multi``.

    An empty message is one empty part.
    """
    n = len(septets)
    if n <= single:
        return [n]
    ends: list[int] = []
    pos = 0
    while n - pos > multi:
        end = pos + multi
        if septets[end - 1] == ESC:  # ESC + code would be cut: the pair starts the next part
            end -= 1
        ends.append(end)
        pos = end
    ends.append(n)
    return ends


def split_utf16(data: bytes, single: int, multi: int) -> list[int]:
    """End offsets, in UTF-16 code units, of each part of UTF-16-BE ``data``.

    A cut never falls between a high and a low surrogate; a cut inside a grapheme cluster moves
    to the start of that cluster when the cluster fits in one part (``multi`` units).
    """
    n = len(data) >> 1
    if n <= single:
        return [n]
    ends: list[int] = []
    pos = 0
    while n - pos > multi:
        end = pos + multi
        if 0xD8 <= data[2 * end - 2] <= 0xDB:  # high surrogate last: keep the pair together
            end -= 1
        cur = (data[2 * end] << 8) | data[2 * end + 1]
        prev = (data[2 * end - 2] << 8) | data[2 * end - 1]
        # Quick accept: nothing below U+0300 or in the CJK / Hangul syllable blocks attaches to
        # the character before it, and only ZWJ glues what follows it.
        plain = cur < 0x300 or 0x3400 <= cur <= 0x9FFF or 0xAC00 <= cur <= 0xD7A3
        if not plain or prev == ZWJ:
            start, stop = cluster_bounds(data, end, pos, multi)
            if start != end and stop - start <= multi and start > pos:
                end = start
        ends.append(end)
        pos = end
    ends.append(n)
    return ends
