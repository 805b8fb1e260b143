"""Concatenation references from a counter per destination (not from ``random``).

The receiver reassembles parts by (originator, reference), so two long messages in flight to the
same handset must not share a reference: TS 23.040 §9.2.3.24.1 wants it "constant for every short
message which makes up a particular concatenated short message" and distinct between them. A
random 8-bit reference collides with probability ~n/256 among n concurrent messages (smpplib,
protocols.md §4.8); a per-destination counter only repeats after 256 (8-bit) or 65536 (16-bit)
long messages to that one destination.

Pure and single-threaded by design (the daemon calls the codec from its event loop). Memory is
bounded: the least recently used destinations are forgotten; a destination seen again starts from
a running counter shared by all new destinations, so it does not restart at the same value.
"""

from __future__ import annotations

_MASK = 0xFFFF  # counters run over 16 bits; 8-bit users take the low octet


class ReferenceCounter:
    def __init__(self, start: int = 0, max_destinations: int = 65536) -> None:
        if max_destinations < 1:
            raise ValueError("max_destinations must be at least 1")
        # A plain dict keeps insertion order: popping and re-inserting a key marks it most
        # recently used, and the first key is the least recently used one.
        self._next: dict[str, int] = {}
        self._fresh = start & _MASK
        self._max = max_destinations

    def next(self, destination: str | None, bits: int = 8) -> int:
        """The next reference for ``destination`` (None: one shared counter), 8 or 16 bits."""
        key = destination or ""
        value = self._next.pop(key, None)
        if value is None:
            value = self._fresh
            self._fresh = (self._fresh + 1) & _MASK
            if len(self._next) >= self._max:
                del self._next[next(iter(self._next))]
        self._next[key] = (value + 1) & _MASK
        return value & 0xFF if bits == 8 else value

    def __len__(self) -> int:
        return len(self._next)


REFERENCES = ReferenceCounter()
"""The module default instance used when ``encode`` is not given one."""
