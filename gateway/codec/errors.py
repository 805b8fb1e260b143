"""Root of smsgate's error tree.

It lives in the codec because the codec is the leaf package (it imports nothing else of ours) and
every other package may import it. ``gateway.errors`` re-exports these names; import from there
outside the codec and the drivers.

Errors carry data (codes, offending values); turning them into sentences for people is the job of
the CLI and the TUI, so ``str()`` of an error is a terse developer message only.
"""

from __future__ import annotations


class SmsgateError(Exception):
    """Root of every error smsgate raises on purpose."""


class CodecError(SmsgateError, ValueError):
    """Text or bytes that cannot be encoded or decoded as asked."""
