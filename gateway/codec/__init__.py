"""Text -> GSM-7 / UCS-2 SMS parts (pure, a leaf: imports nothing else of ours).

``encode(text, options, destination=...)`` chooses the encoding, applies optional substitutions
and national language shift tables, and cuts the message into parts ready for SMPP submit_sm or
an SMS-SUBMIT TPDU. See docs/codec.md for the policies (grapheme clusters, substitutions, NLS).
"""

from __future__ import annotations

from gateway.codec.encoder import encode
from gateway.codec.errors import CodecError, SmsgateError
from gateway.codec.model import Concat, EncodedMessage, EncodeOptions, Encoding, Part
from gateway.codec.references import REFERENCES, ReferenceCounter

__all__ = [
    "REFERENCES",
    "CodecError",
    "Concat",
    "EncodeOptions",
    "EncodedMessage",
    "Encoding",
    "Part",
    "ReferenceCounter",
    "SmsgateError",
    "encode",
]
