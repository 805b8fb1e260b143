"""``smsgate send``: enqueue messages in the outbox; the daemon sends them.

This process never sends: it writes committed outbox rows (DESIGN.md "State shared between
processes") and prints what was accepted. Numbers are normalised to E.164 by the segment
store's rules, with ``[segments] default_region`` for national formats.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from gateway.cli import add_config_argument, config_path

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.outbox import NewMessage, Outbox

LANES = ("transactional", "automation", "campaign")
BATCH_KEYS = frozenset({"to", "text", "from", "ref"})
# TS 23.040 §9.1.2.5: an alphanumeric originator is at most 11 GSM-7 characters.
MAX_ALPHA_SENDER = 11
BATCH_CHUNK = 5000

Body = Callable[["Config", "Outbox"], int]


class CliInputError(Exception):
    """Bad input from the person at the terminal; the message says what and where."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "send",
        help="enqueue a message (prints its id) or a batch of JSON lines",
        description=(
            "Enqueue one message and print its id, or --batch FILE of JSON lines "
            '{"to": ..., "text": ..., "from": ..., "ref": ...} ("from" and "ref" optional; '
            "FILE - reads standard input) and print how many were accepted plus one error "
            "line per bad line (the good lines are kept; exit status 2 if any line was bad). "
            "A --ref already accepted from the same sender returns the first id instead of "
            "enqueueing twice. The daemon sends what is enqueued."
        ),
    )
    add_config_argument(parser)
    parser.add_argument("--to", metavar="NUMBER", help="destination (E.164, or national format "
                        "with [segments] default_region)")
    parser.add_argument("--from", dest="sender", metavar="SENDER", default="",
                        help="sender id: up to 11 letters/digits, or a number (default: route's)")
    parser.add_argument("--ref", metavar="REF", help="client reference: makes a retry idempotent")
    parser.add_argument("--lane", choices=LANES, default="transactional",
                        help="priority lane (default: transactional)")
    parser.add_argument("--batch", metavar="FILE", type=Path,
                        help="JSON lines file of messages to enqueue")
    parser.add_argument("text", metavar="TEXT", nargs="?",
                        help="message text (- reads standard input)")
    parser.set_defaults(func=send_command)


def load_for_cli(args: argparse.Namespace) -> Config:
    """The config named by ``--config`` / ``$SMSGATE_CONFIG`` (callers render ConfigError)."""
    from gateway.config import load_config

    return load_config(config_path(args))


def open_outbox(config: Config) -> Outbox:
    from gateway.outbox import Outbox

    return Outbox(config.database.path, max_retries=config.daemon.max_retries,
                  dlr_unknown_after_s=config.daemon.dlr_unknown_after_s)


def run_with_outbox(args: argparse.Namespace, body: Body) -> int:
    """Load config, open the outbox, run ``body``; render every expected error for people."""
    import sqlite3

    from gateway.config import ConfigError
    from gateway.errors import SmsgateError

    try:
        config = load_for_cli(args)
    except ConfigError as exc:
        print(f"smsgate: invalid configuration: {exc}", file=sys.stderr)
        return 2
    try:
        outbox = open_outbox(config)
    except (sqlite3.Error, SmsgateError) as exc:
        print(f"smsgate: cannot open the database {config.database.path}: {exc}",
              file=sys.stderr)
        return 1
    try:
        return body(config, outbox)
    except CliInputError as exc:
        print(f"smsgate: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"smsgate: database error on {config.database.path}: {exc}", file=sys.stderr)
        return 1
    finally:
        outbox.close()


def normalise_number(raw: str, config: Config) -> str:
    """E.164 by the segment store's rules (``segmentation.phones.normalise``: ``00`` prefix,
    default region, possible *and* valid in the numbering plan). Re-stated here with bare
    ``phonenumbers`` because importing that module loads the geocoder data (over a second),
    too slow for a command that enqueues one message; a test keeps the two in agreement."""
    import phonenumbers

    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    region = config.segments.default_region
    if not text.startswith("+") and region is None:
        raise CliInputError(
            f"bad number {raw!r}: national format needs [segments] default_region "
            "(or give it as +CC...)"
        )
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise CliInputError(f"bad number {raw!r}: not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise CliInputError(f"bad number {raw!r}: wrong length for its country")
    if not phonenumbers.is_valid_number(number):
        raise CliInputError(
            f"bad number {raw!r}: not a valid number in its country's numbering plan"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_sender(sender: str) -> str:
    text = sender.strip()
    if not text:
        return ""
    digits = text[1:] if text.startswith("+") else text
    if digits.isdigit():
        if len(digits) > 15:  # ITU-T E.164 §6.1: at most 15 digits
            raise CliInputError(f"bad sender {sender!r}: a number has at most 15 digits")
        return text
    if len(text) > MAX_ALPHA_SENDER or not text.isascii() or not text.replace(" ", "").isalnum():
        raise CliInputError(
            f"bad sender {sender!r}: expected up to {MAX_ALPHA_SENDER} letters, digits or "
            "spaces, or a phone number"
        )
    return text


def _lane(name: str) -> int:
    return LANES.index(name)


def send_command(args: argparse.Namespace) -> int:
    if args.batch is not None:
        if args.to or args.text or args.ref:
            print("smsgate send: --batch FILE takes no --to, --ref or TEXT", file=sys.stderr)
            return 2
        return run_with_outbox(args, lambda config, ob: _send_batch(args, config, ob))
    if not args.to or args.text is None:
        print("smsgate send: give --to NUMBER and TEXT (or --batch FILE)", file=sys.stderr)
        return 2
    return run_with_outbox(args, lambda config, ob: _send_one(args, config, ob))


def _send_one(args: argparse.Namespace, config: Config, outbox: Outbox) -> int:
    from gateway.outbox import Lane, NewMessage

    text = sys.stdin.read() if args.text == "-" else args.text
    if not text:
        raise CliInputError("empty message text")
    message = NewMessage(
        to=normalise_number(args.to, config), text=text, sender=check_sender(args.sender),
        ref=args.ref or None, lane=Lane(_lane(args.lane)),
    )
    accepted = outbox.enqueue(message)
    print(accepted.id)
    if not accepted.created:
        print(f"smsgate send: reference {args.ref!r} was already accepted as message "
              f"{accepted.id}; not enqueued again", file=sys.stderr)
    return 0


@dataclass(frozen=True, slots=True)
class BatchLine:
    number: int
    message: NewMessage | None
    error: str | None


def parse_batch(stream: TextIO, config: Config, lane: int) -> Iterator[BatchLine]:
    """One result per non-blank line: a message, or the reason the line is bad."""
    from gateway.outbox import Lane, NewMessage

    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise CliInputError("expected a JSON object")
            unknown = sorted(set(item) - BATCH_KEYS)
            if unknown:
                raise CliInputError(f"unknown key {unknown[0]!r} (expected to, text, from, ref)")
            for key in ("to", "text"):
                if not isinstance(item.get(key), str) or not item[key]:
                    raise CliInputError(f"{key!r} must be a non-empty string")
            for key in ("from", "ref"):
                if key in item and item[key] is not None and not isinstance(item[key], str):
                    raise CliInputError(f"{key!r} must be a string")
            message = NewMessage(
                to=normalise_number(item["to"], config), text=item["text"],
                sender=check_sender(item.get("from") or ""), ref=item.get("ref") or None,
                lane=Lane(lane),
            )
        except json.JSONDecodeError as exc:
            yield BatchLine(number, None, f"not JSON: {exc.msg} (column {exc.colno})")
        except CliInputError as exc:
            yield BatchLine(number, None, str(exc))
        else:
            yield BatchLine(number, message, None)


def _send_batch(args: argparse.Namespace, config: Config, outbox: Outbox) -> int:
    name = "<stdin>" if str(args.batch) == "-" else str(args.batch)
    try:
        stream: TextIO = (
            sys.stdin if str(args.batch) == "-" else open(args.batch, encoding="utf-8")  # noqa: SIM115
        )
    except OSError as exc:
        raise CliInputError(f"cannot read {name}: {exc.strerror or exc}") from None
    accepted = duplicates = bad = 0
    chunk: list[NewMessage] = []

    def flush() -> None:
        nonlocal accepted, duplicates
        # One transaction per chunk: a crash keeps every chunk committed before it.
        for result in outbox.enqueue_many(chunk):
            if result.created:
                accepted += 1
            else:
                duplicates += 1
        chunk.clear()

    try:
        for line in parse_batch(stream, config, _lane(args.lane)):
            if line.message is None:
                bad += 1
                print(f"{name}:{line.number}: {line.error}", file=sys.stderr)
                continue
            chunk.append(line.message)
            if len(chunk) >= BATCH_CHUNK:
                flush()
        flush()
    except UnicodeDecodeError:
        raise CliInputError(f"{name} is not UTF-8 text") from None
    finally:
        if stream is not sys.stdin:
            stream.close()
    summary = f"{accepted} accepted"
    if duplicates:
        summary += f", {duplicates} already accepted (same sender and ref)"
    if bad:
        summary += f", {bad} bad line{'s' if bad != 1 else ''}"
    print(summary)
    return 2 if bad else 0
