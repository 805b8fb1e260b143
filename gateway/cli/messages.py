"""``smsgate messages``: find messages in the outbox; retry a failed one, cancel a queued one."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gateway.cli import add_config_argument
from gateway.cli.send import CliInputError, normalise_number, run_with_outbox

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.outbox import Message, Outbox

STATES = (
    "queued", "scheduled", "sending", "submitted", "delivered", "undeliverable", "expired",
    "failed", "cancelled", "unknown",
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "messages",
        help="find messages by id, number or state; retry or cancel one",
        description=(
            "Without options: the newest messages. ID shows one message with its parts and "
            "history. --retry ID puts a failed message back in the queue; --cancel ID cancels "
            "one that has not been handed to a carrier or modem yet."
        ),
    )
    add_config_argument(parser)
    parser.add_argument("id", metavar="ID", type=int, nargs="?", help="show this message")
    parser.add_argument("--to", metavar="NUMBER", help="messages to this number")
    parser.add_argument("--state", choices=STATES, help="messages in this state")
    parser.add_argument("--ref", metavar="REF", help="messages with this client reference")
    parser.add_argument("--limit", type=int, default=50, metavar="N",
                        help="at most N messages, newest first (default 50)")
    parser.add_argument("--json", action="store_true", help="one JSON object per message")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--retry", type=int, metavar="ID", help="retry a failed message")
    action.add_argument("--cancel", type=int, metavar="ID", help="cancel a queued message")
    parser.set_defaults(func=messages_command)


def messages_command(args: argparse.Namespace) -> int:
    if args.limit < 1:
        print("smsgate messages: --limit must be at least 1", file=sys.stderr)
        return 2
    return run_with_outbox(args, lambda config, ob: _run(args, config, ob))


def _run(args: argparse.Namespace, config: Config, outbox: Outbox) -> int:
    from gateway.outbox import State

    if args.retry is not None:
        return _act(outbox, args.retry, outbox.retry(args.retry), "queued again", "failed")
    if args.cancel is not None:
        return _act(outbox, args.cancel, outbox.cancel(args.cancel), "cancelled",
                    "queued or scheduled")
    if args.id is not None:
        message = outbox.get(args.id)
        if message is None:
            raise CliInputError(f"no message {args.id}")
        if args.json:
            print(json.dumps(_as_json(message, outbox), ensure_ascii=False))
        else:
            _show(message, outbox)
        return 0
    to = normalise_number(args.to, config) if args.to else None
    found = outbox.find(
        to=to, state=State(args.state) if args.state else None, ref=args.ref, limit=args.limit
    )
    if args.json:
        for message in found:
            print(json.dumps(_as_json(message, None), ensure_ascii=False))
        return 0
    if not found:
        print("no messages")
        return 0
    print(f"{'ID':>8}  {'STATE':<13} {'LANE':<13} {'TO':<16} {'PARTS':>5}  {'UPDATED (UTC)':<19}"
          "  ROUTE / ERROR")
    for m in found:
        tail = m.route or ""
        if m.error_code is not None or m.error_text:
            tail += f" {_error(m)}"
        print(f"{m.id:>8}  {m.state.value:<13} {m.lane.name.lower():<13} {m.to:<16} "
              f"{m.total_parts:>5}  {_when(m.updated_ms):<19}  {tail.strip()}")
    return 0


def _act(outbox: Outbox, mid: int, done: bool, what: str, needed: str) -> int:
    if done:
        print(f"message {mid} {what}")
        return 0
    message = outbox.get(mid)
    if message is None:
        raise CliInputError(f"no message {mid}")
    raise CliInputError(f"message {mid} is {message.state.value}; only {needed} messages can be "
                        f"{what.split()[0]}")


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _error(m: Message) -> str:
    code = f"0x{m.error_code:X}" if m.error_code is not None else ""
    return " ".join(p for p in (code, m.error_text or "") if p)


def _show(m: Message, outbox: Outbox) -> None:
    print(f"message {m.id}: {m.state.value}")
    print(f"  to        {m.to}")
    print(f"  from      {m.sender or '(route default)'}")
    if m.ref:
        print(f"  ref       {m.ref}")
    print(f"  lane      {m.lane.name.lower()}")
    print(f"  created   {_when(m.created_ms)}")
    if m.expires_ms is not None:
        print(f"  expires   {_when(m.expires_ms)}")
    print(f"  retries   {m.retries} of {m.max_retries}")
    if m.route:
        print(f"  route     {m.route}")
    if m.error_code is not None or m.error_text:
        print(f"  error     {_error(m)}")
    print(f"  text      {m.text!r}")
    print(f"  parts     {m.total_parts}")
    for p in m.parts:
        extra = f" id {p.carrier_id}" if p.carrier_id else ""
        extra += f" via {p.route}" if p.route else ""
        extra += f" code 0x{p.error_code:X}" if p.error_code is not None else ""
        print(f"    {p.seq + 1}: {p.state.value}{extra}")
    print("  history")
    for h in outbox.history(m.id):
        print(f"    {_when(h.ts_ms)}  {h.state.value}{'  ' + h.detail if h.detail else ''}")


def _as_json(m: Message, outbox: Outbox | None) -> dict[str, object]:
    out: dict[str, object] = {
        "id": m.id, "state": m.state.value, "lane": m.lane.name.lower(), "to": m.to,
        "from": m.sender, "ref": m.ref, "text": m.text, "parts": m.total_parts,
        "created_ms": m.created_ms, "updated_ms": m.updated_ms, "expires_ms": m.expires_ms,
        "retries": m.retries, "route": m.route, "error_code": m.error_code,
        "error_text": m.error_text,
        "part_states": [
            {"seq": p.seq, "state": p.state.value, "route": p.route, "carrier_id": p.carrier_id,
             "error_code": p.error_code}
            for p in m.parts
        ],
    }
    if outbox is not None:
        out["history"] = [
            {"ts_ms": h.ts_ms, "state": h.state.value, "detail": h.detail}
            for h in outbox.history(m.id)
        ]
    return out
