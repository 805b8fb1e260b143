"""`smsgate consent show|grant|revoke NUMBER`: the consent ledger by hand.

For the operator who takes a call at 3 a.m. ("stop texting me"): a revoke is recorded at once,
method ``operator``, with who recorded it (``cli:<login>``) and the note that says why, and the
send gate honours it from the next message (it reads the latest ledger row). A marketing
revoke also stops the subscriber as a STOP text does, and a marketing grant reactivates a
stopped one as START does (``segmentation.consent.KEYWORD_STATUS``). ``show`` prints the
current state per program, the suppression list and the whole history, so the operator can see
what a grant would override before recording it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import TYPE_CHECKING, Any

from gateway.cli.subscribers import CliInputError, _run, _store_arguments, utc_text

if TYPE_CHECKING:
    from segmentation.consent import ConsentEntry
    from segmentation.store import Store


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    consent = subparsers.add_parser(
        "consent", help="show or record consent for a number",
        description="The consent ledger of a number: 'show' prints the current state per "
        "program, suppression and every ledger row; 'grant' and 'revoke' append a row with "
        "method operator (a marketing revoke stops the subscriber as a STOP text does, a "
        "marketing grant reactivates it as START does). Rows are never edited or deleted.")
    sub = consent.add_subparsers(dest="consent_command", metavar="COMMAND")
    sub.required = True
    show = sub.add_parser("show", help="current consent, suppression and history of a number")
    show.add_argument("number", metavar="NUMBER")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    _store_arguments(show)
    show.set_defaults(func=show_command)
    for action, verb in (("grant", "record that the number opted in"),
                         ("revoke", "record that the number opted out (takes effect at once)")):
        p = sub.add_parser(action, help=verb)
        p.add_argument("number", metavar="NUMBER")
        p.add_argument("--program", choices=("marketing", "transactional"), default="marketing",
                       help="which messages (default: marketing)")
        p.add_argument("--note", required=True, metavar="TEXT",
                       help="why and on what evidence (ticket, call, signed form): kept in the "
                            "ledger")
        if action == "grant":
            p.add_argument("--disclosure", metavar="TEXT",
                           help="the disclosure text the person agreed to")
        p.add_argument("--json", action="store_true", help="print the recorded row as JSON")
        _store_arguments(p)
        p.set_defaults(func=record_command, action=action)


def _entry_json(e: ConsentEntry) -> dict[str, Any]:
    return {"id": e.id, "program": e.program, "action": e.action, "ts_ms": e.ts_ms,
            "time": utc_text(e.ts_ms), "method": e.method, "keyword_text": e.keyword_text,
            "disclosure": e.disclosure, "evidence": e.evidence, "actor": e.actor}


def _state(e: ConsentEntry | None) -> str:
    if e is None:
        return "none"
    return f"{'granted' if e.action == 'grant' else 'revoked'} {utc_text(e.ts_ms)} ({e.method})"


def _e164(store: Store, number: str) -> str:
    from segmentation.phones import PhoneError, normalise

    try:
        return normalise(number, store.default_region)
    except PhoneError as exc:
        raise CliInputError(f"bad phone number {number!r}: {exc.why}") from None


def show_command(args: argparse.Namespace) -> int:
    from segmentation.consent import PROGRAMS, consent_history, current_consent, is_suppressed

    def body(store: Store) -> int:
        e164 = _e164(store, args.number)
        current = {p: current_consent(store, e164, p) for p in PROGRAMS}
        suppressed = ({p: is_suppressed(store, e164, p) for p in PROGRAMS}
                      if store.has_hash_key else None)
        history = consent_history(store, e164)
        status = store.scalar("SELECT status FROM subscriber WHERE phone_e164 = ?", (e164,))
        if args.json:
            print(json.dumps({
                "number": e164, "subscriber_status": status,
                "current": {p: None if e is None else _entry_json(e)
                            for p, e in current.items()},
                "suppressed": suppressed, "history": [_entry_json(e) for e in history],
            }, ensure_ascii=False, indent=2))
            return 0
        print(f"{e164}: subscriber {status or 'not stored'}")
        for p, e in current.items():
            print(f"  {p}: {_state(e)}")
        if suppressed is None:
            print("  suppression: unknown (no site hash key configured)")
        else:
            listed = [p for p, s in suppressed.items() if s]
            print(f"  suppressed: {', '.join(listed) if listed else 'no'}")
        for e in history:
            detail = e.keyword_text or (e.evidence or {}).get("note") or ""
            print(f"  {utc_text(e.ts_ms)}  {e.program:<13} {e.action:<6} {e.method:<13} "
                  f"{e.actor}{'  ' + str(detail) if detail else ''}")
        if not history:
            print("  no ledger rows")
        return 0

    return _run(args, body)


def record_command(args: argparse.Namespace) -> int:
    from segmentation.consent import current_consent, record_consent, set_status_for_keyword

    def body(store: Store) -> int:
        e164 = _e164(store, args.number)
        note = args.note.strip()
        if not note:
            raise CliInputError("--note: say why and on what evidence")
        before = current_consent(store, e164, args.program)
        with store.atomic():
            row_id = record_consent(
                store, e164, args.program, args.action, "operator",
                actor=f"cli:{_login()}", disclosure=getattr(args, "disclosure", None),
                evidence={"note": note})
            if args.program == "marketing":  # as a STOP / START text does
                set_status_for_keyword(store, e164, args.action)
        after = current_consent(store, e164, args.program)
        if args.json:
            print(json.dumps({"number": e164, "id": row_id,
                              "before": None if before is None else _entry_json(before),
                              "current": None if after is None else _entry_json(after)},
                             ensure_ascii=False))
            return 0
        print(f"{e164}: {args.program} {args.action} recorded (was {_state(before)})")
        if after is not None and after.id != row_id:
            # a row stamped later than now already exists (an import with a future time)
            print(f"smsgate: warning: a later row still decides: {_state(after)}",
                  file=sys.stderr)
        return 0

    return _run(args, body)


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in a container
        return "unknown"
