"""``smsgate encode``: show how a text is encoded and cut into SMS parts.

``--json`` prints one object (DESIGN.md contract): encoding, data_coding, segments, parts (hex of
each SMPP short_message, UDH included) and, with ``--to``, pdus (hex of each SMS-SUBMIT TPDU as
written after AT+CMGS, SCA octet first), followed by extra keys. Without ``--json`` it prints a
summary for people.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.codec import EncodedMessage, EncodeOptions

# TS 23.040 §9.1.2.5: TP-DA holds at most 20 digits (semi-octets).
_NUMBER = re.compile(r"\+?[0-9]{1,20}")
_LANGUAGE_NAMES = {1: "Turkish", 2: "Spanish", 3: "Portuguese"}


def _languages(value: str) -> tuple[str, ...]:
    from gateway.codec.nls import LANGUAGE_IDS

    names = tuple(v.strip().lower() for v in value.split(",") if v.strip())
    for name in names:
        if name not in LANGUAGE_IDS:
            raise argparse.ArgumentTypeError(
                f"unknown national language {name!r} (choose from {', '.join(LANGUAGE_IDS)})"
            )
    return names


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "encode",
        help="show how a text is encoded (GSM-7/UCS-2, parts, PDUs)",
        description="Encode TEXT as smsgate would send it: the encoding chosen, the parts with "
        "their SMPP short_message bytes and, with --to, the SMS-SUBMIT TPDUs for a modem.",
    )
    parser.add_argument(
        "text",
        metavar="TEXT",
        help="the message; '-' reads standard input as UTF-8 (one trailing newline is dropped)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--to",
        metavar="NUMBER",
        help="destination number (E.164 with +, or national digits): also print the TPDUs",
    )
    parser.add_argument(
        "--concat",
        choices=("udh8", "udh16", "sar", "payload"),
        default="udh8",
        help="how SMPP parts are joined (default udh8)",
    )
    parser.add_argument(
        "--national",
        metavar="LANGS",
        type=_languages,
        default=(),
        help="allow national language shift tables, e.g. tr,es,pt (used only when they save parts)",
    )
    parser.add_argument(
        "--substitute",
        action="store_true",
        help="replace curly quotes, dashes, ellipses, odd spaces... when that keeps GSM-7",
    )
    parser.set_defaults(func=run)


def _read_text(arg: str) -> str:
    if arg != "-":
        return arg
    raw = sys.stdin.buffer.read()
    text = raw.decode("utf-8")  # UnicodeDecodeError handled by the caller
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")


def _error(message: str) -> int:
    print(f"smsgate encode: error: {message}", file=sys.stderr)
    return 2


def _modem_message(
    text: str, options: EncodeOptions, message: EncodedMessage
) -> EncodedMessage:
    """The message as a modem sends it: a multipart message needs a concatenation UDH."""
    from dataclasses import replace

    from gateway.codec import Concat, encode

    if message.concat in (Concat.UDH8, Concat.UDH16) or message.segments == 1:
        return message
    concat = Concat.UDH16 if message.concat is Concat.SAR else Concat.UDH8
    return encode(text, replace(options, concat=concat, reference=message.reference))


def run(args: argparse.Namespace) -> int:
    import json

    from gateway.codec import CodecError, EncodeOptions, encode

    if args.to is not None and not _NUMBER.fullmatch(args.to):
        return _error(
            f"invalid number {args.to!r} for --to: expected 1 to 20 digits, optionally"
            " starting with + (E.164), e.g. +447700900123"
        )
    try:
        text = _read_text(args.text)
    except UnicodeDecodeError as exc:
        return _error(f"standard input is not UTF-8 ({exc.reason} at byte {exc.start})")
    try:
        options = EncodeOptions(
            concat=args.concat,
            national_languages=args.national,
            substitutions=args.substitute,
        )
        message = encode(text, options, destination=args.to)
    except CodecError as exc:
        return _error(str(exc))

    pdus: list[str] | None = None
    if args.to is not None:
        from drivers.modem.pdu import encode_submit

        try:
            submits = encode_submit(_modem_message(text, options, message), args.to)
        except CodecError as exc:
            return _error(f"cannot build a TPDU for --to {args.to!r}: {exc}")
        pdus = [s.hex for s in submits]

    if args.json:
        out: dict[str, object] = {
            "encoding": message.encoding.value,
            "data_coding": message.data_coding,
            "segments": message.segments,
            "parts": [p.short_message.hex().upper() for p in message.parts],
        }
        if pdus is not None:
            out["pdus"] = pdus
        out.update(
            concat=message.concat.value,
            esm_class=message.esm_class,
            reference=message.reference,
            units_left=message.units_left,
            ucs2_chars=list(message.ucs2_chars),
            substitutions=[list(pair) for pair in message.substitutions],
            national_language=(
                list(message.national_language) if message.national_language else None
            ),
            sar=[list(p.sar) for p in message.parts if p.sar is not None],
        )
        print(json.dumps(out, ensure_ascii=False))
        return 0
    print(_summary(message, pdus))
    return 0


def _char_list(chars: tuple[str, ...]) -> str:
    return ", ".join(f"{c!r} (U+{ord(c):04X})" if len(c) == 1 else repr(c) for c in chars)


def _summary(message: EncodedMessage, pdus: list[str] | None) -> str:
    from gateway.codec import Encoding

    gsm = message.encoding is Encoding.GSM7
    unit = "septets" if gsm else "UTF-16 units"
    total_units = sum(p.units for p in message.parts)
    name = "GSM-7" if gsm else "UCS-2"
    lines = [
        f"encoding:          {name} (data_coding 0x{message.data_coding:02X})",
        f"characters:        {len(message.text)} ({total_units} {unit})",
        f"parts:             {message.segments}"
        + (f" ({message.concat.value}, reference {message.reference})"
           if message.reference is not None else ""),
        f"left in last part: {message.units_left} {unit}",
    ]
    if message.ucs2_chars:
        lines.append(f"forcing UCS-2:     {_char_list(message.ucs2_chars)}")
    if message.substitutions:
        subs = ", ".join(f"{a!r} -> {b!r}" for a, b in message.substitutions)
        lines.append(f"substitutions:     {subs}")
    if message.national_language:
        locking, single = message.national_language
        names = []
        if locking:
            names.append(f"{_LANGUAGE_NAMES[locking]} locking shift")
        if single:
            names.append(f"{_LANGUAGE_NAMES[single]} single shift")
        lines.append(f"national language: {', '.join(names)}")
    for part in message.parts:
        lines.append(f"part {part.seq}/{part.total} ({part.units} {unit}): "
                     f"{part.short_message.hex().upper()}")
    for i, pdu in enumerate(pdus or (), start=1):
        lines.append(f"pdu {i}: {pdu}")
    return "\n".join(lines)
