"""The codec's value types: options in, an encoded message with its parts out (see codec-api)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from gateway.codec.errors import CodecError
from gateway.codec.gsm7 import GSM7_CHARSET
from gateway.codec.nls import LANGUAGE_IDS
from gateway.codec.substitutions import SUBSTITUTABLE

# Runs of characters the default alphabet carries; what is left once they are removed forced UCS-2.
_GSM7_RUN = re.compile("[" + "".join(sorted(map(re.escape, GSM7_CHARSET))) + "]+")


class Encoding(StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"


class Concat(StrEnum):
    """How a long message is stitched together for SMPP (SMPP 3.4 §2.2.1.1 / §5.3.2)."""

    UDH8 = "udh8"  # TS 23.040 §9.2.3.24.1 IEI 0x00, 8-bit reference, in short_message
    UDH16 = "udh16"  # TS 23.040 §9.2.3.24.8 IEI 0x08, 16-bit reference
    SAR = "sar"  # SMPP 3.4 §5.3.2.22-24 sar_msg_ref_num / sar_total_segments / sar_segment_seqnum
    PAYLOAD = "payload"  # SMPP 3.4 §5.3.2.32 message_payload: the SMSC splits


MAX_PARTS = 255  # TS 23.040 §9.2.3.24.1: total and sequence are one octet each


@dataclass(frozen=True, slots=True)
class EncodeOptions:
    concat: Concat = Concat.UDH8
    national_languages: tuple[str, ...] = ()  # subset of ("tr", "es", "pt"); off by default
    substitutions: bool = False  # GSM-friendly replacements; off by default
    reference: int | None = None  # concat reference; None -> per-destination counter
    max_parts: int = MAX_PARTS

    def __post_init__(self) -> None:
        # Validated once here so that encode() (the hot path) never re-checks options.
        try:
            object.__setattr__(self, "concat", Concat(self.concat))
        except ValueError:
            raise CodecError(
                f"unknown concatenation method {self.concat!r}"
                f" (expected one of {', '.join(c.value for c in Concat)})"
            ) from None
        languages = tuple(self.national_languages)
        unknown = [name for name in languages if name not in LANGUAGE_IDS]
        if unknown:
            raise CodecError(
                f"unknown national language {unknown[0]!r}"
                f" (expected any of {', '.join(LANGUAGE_IDS)})"
            )
        object.__setattr__(self, "national_languages", tuple(dict.fromkeys(languages)))
        if isinstance(self.max_parts, bool) or not isinstance(self.max_parts, int) or not (
            1 <= self.max_parts <= MAX_PARTS
        ):
            raise CodecError(f"max_parts must be 1..{MAX_PARTS}, got {self.max_parts!r}")
        if self.reference is not None:
            top = 0xFF if self.concat is Concat.UDH8 else 0xFFFF
            if isinstance(self.reference, bool) or not isinstance(self.reference, int) or not (
                0 <= self.reference <= top
            ):
                raise CodecError(
                    f"reference {self.reference!r} is out of range for {self.concat.value}"
                    f" (0..{top})"
                )


@dataclass(frozen=True, slots=True)
class Part:
    seq: int  # 1-based
    total: int
    udh: bytes  # complete UDH incl. the UDHL octet; b"" when none
    payload: bytes  # GSM-7: unpacked septets (ESC pairs included); UCS-2: UTF-16-BE
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2) in payload
    text: str  # the text this part carries
    sar: tuple[int, int, int] | None  # (sar_msg_ref_num, sar_total_segments, sar_segment_seqnum)

    @property
    def short_message(self) -> bytes:
        """What goes into SMPP short_message (or message_payload for Concat.PAYLOAD)."""
        return self.udh + self.payload


@dataclass(frozen=True, slots=True)
class EncodedMessage:
    text: str  # the text actually encoded (after substitutions)
    encoding: Encoding
    data_coding: int  # SMPP data_coding == TP-DCS: 0x00 GSM-7, 0x08 UCS-2
    esm_class: int  # 0x40 (UDHI) when parts carry a UDH, else 0x00
    concat: Concat
    reference: int | None
    parts: tuple[Part, ...]  # PAYLOAD: exactly one Part holding the whole message
    national_language: tuple[int, int] | None  # (locking id, single id) when shift tables used
    substitutions: tuple[tuple[str, str], ...]  # (original, replacement) pairs applied
    substitutions_enabled: bool  # options.substitutions (see ucs2_chars)
    segments: int  # SMS segments the handset receives (PAYLOAD: as if UDH8)
    units_left: int  # units still free in the last segment

    @property
    def ucs2_chars(self) -> tuple[str, ...]:
        """The distinct characters that forced UCS-2, in order of first appearance; () for GSM-7.

        With substitutions enabled, characters a substitution would have fixed do not count.
        Computed on demand, not in ``encode()``: previews and the CLI ask for it, the send path
        never does, and on long UCS-2 texts it cost as much as the rest of the encoding.
        Removing the GSM-7 runs with a regex and de-duplicating with ``dict.fromkeys`` keeps it
        C-level (CJK text is nothing but such characters).
        """
        if self.encoding is not Encoding.UCS2:
            return ()
        bad = dict.fromkeys(_GSM7_RUN.sub("", self.text))
        if self.substitutions_enabled:
            return tuple(ch for ch in bad if ch not in SUBSTITUTABLE)
        return tuple(bad)


# --- hot-path constructors ---------------------------------------------------------------------
# A frozen dataclass's __init__ stores each field with object.__setattr__, which costs more than
# the rest of encoding a short message. These build the same objects (equal, same type, still
# frozen) twice as fast: a private twin class with the very same __slots__ stores the fields with
# plain attribute writes, then the instance's __class__ is switched to the frozen class (allowed
# because the layouts are identical). Tests check the twins stay in step with the field lists.


class _PartSlots:
    __slots__ = ("payload", "sar", "seq", "text", "total", "udh", "units")

    def __init__(
        self,
        seq: int,
        total: int,
        udh: bytes,
        payload: bytes,
        units: int,
        text: str,
        sar: tuple[int, int, int] | None,
    ) -> None:
        self.seq = seq
        self.total = total
        self.udh = udh
        self.payload = payload
        self.units = units
        self.text = text
        self.sar = sar


class _MessageSlots:
    __slots__ = (
        "concat",
        "data_coding",
        "encoding",
        "esm_class",
        "national_language",
        "parts",
        "reference",
        "segments",
        "substitutions",
        "substitutions_enabled",
        "text",
        "units_left",
    )

    def __init__(
        self,
        text: str,
        encoding: Encoding,
        data_coding: int,
        esm_class: int,
        concat: Concat,
        reference: int | None,
        parts: tuple[Part, ...],
        national_language: tuple[int, int] | None,
        substitutions: tuple[tuple[str, str], ...],
        substitutions_enabled: bool,
        segments: int,
        units_left: int,
    ) -> None:
        self.text = text
        self.encoding = encoding
        self.data_coding = data_coding
        self.esm_class = esm_class
        self.concat = concat
        self.reference = reference
        self.parts = parts
        self.national_language = national_language
        self.substitutions = substitutions
        self.substitutions_enabled = substitutions_enabled
        self.segments = segments
        self.units_left = units_left


def make_part(
    seq: int,
    total: int,
    udh: bytes,
    payload: bytes,
    units: int,
    text: str,
    sar: tuple[int, int, int] | None,
) -> Part:
    """``Part(...)`` for the hot path (same arguments, same result)."""
    part = _PartSlots(seq, total, udh, payload, units, text, sar)
    part.__class__ = Part  # type: ignore[assignment]
    return part  # type: ignore[return-value]


def make_message(
    text: str,
    encoding: Encoding,
    data_coding: int,
    esm_class: int,
    concat: Concat,
    reference: int | None,
    parts: tuple[Part, ...],
    national_language: tuple[int, int] | None,
    substitutions: tuple[tuple[str, str], ...],
    substitutions_enabled: bool,
    segments: int,
    units_left: int,
) -> EncodedMessage:
    """``EncodedMessage(...)`` for the hot path (same arguments, same result)."""
    m = _MessageSlots(
        text, encoding, data_coding, esm_class, concat, reference, parts, national_language,
        substitutions, substitutions_enabled, segments, units_left,
    )
    m.__class__ = EncodedMessage  # type: ignore[assignment]
    return m  # type: ignore[return-value]
