"""Segment-store commands: ``smsgate import``, ``smsgate event add``, ``smsgate subscriber``.

- ``smsgate import subscribers|events FILE [--map COL=FIELD]...`` — CSV import; one line per bad
  row on standard error (``row N, column X: why``), a summary on standard output; exit 2 when
  any row was bad (the good rows are kept).
- ``smsgate event add NUMBER TYPE [--at TIME] [--value V] [--prop K=V]... [--id ID]``. An
  ``opt_in`` / ``opt_out`` event records behaviour only and changes no consent (a warning says
  so): consent is recorded by ``smsgate consent grant|revoke``, ``smsgate import subscribers``
  with ``consent_*`` columns, or inbound keywords.
- ``smsgate subscriber export NUMBER`` (JSON) and ``smsgate subscriber erase NUMBER --yes``:
  over the whole database file (segment store, outbox, inbox, waiting MO parts; see
  ``gateway.erasure`` and ``docs/privacy.md``). Erasing a number nothing was stored for says so
  plainly (``nothing_stored`` in JSON) and exits 0: the suppression is still added, which is
  what an erasure request for a number we never held needs; a mistyped number must not read as
  a completed erasure of the real one.
- ``smsgate subscriber rehash [--all]``: fill ``subscriber_hash`` in batches
  (``segmentation.subscribers.fill_phone_hashes``).

The database, default region and hash key come from the config (``[database] path``,
``[segments] default_region``, ``[segments] hash_key`` / ``hash_key_env``); ``--db FILE`` uses a
database file directly instead (then the hash key comes from ``$SMSGATE_HASH_KEY``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli import add_config_argument, config_path

if TYPE_CHECKING:
    from segmentation.store import Store

HASH_KEY_ENV = "SMSGATE_HASH_KEY"

# event types that read like consent but are behaviour records (segmentation.ingest), with
# the consent_action that records the real thing
CONSENT_LOOKALIKES = {"opt_out": "revoke", "opt_in": "grant"}


class CliInputError(Exception):
    """Bad input from the person at the terminal; the message says what and where."""


def _store_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--db", metavar="FILE", type=Path,
                        help="use this database file instead of the config's "
                             f"(hash key from ${HASH_KEY_ENV})")
    parser.add_argument("--default-region", metavar="CC",
                        help="ISO country code for national-format numbers "
                             "(default: [segments] default_region)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    imp = subparsers.add_parser(
        "import", help="import subscribers or events from a CSV file",
        description="Import a CSV file (header row required) into the segment store. Bad rows "
        "are reported one per line on standard error as 'row N, column X: why' and skipped; "
        "every good row is kept; re-importing the same file adds nothing. Exit status 2 when "
        "any row was bad. Fields: subscribers: phone, region, postal_code, tz, locale, lat, "
        "lon, status, attr.KEY, consent_program, consent_action, consent_method, consent_time, "
        "consent_disclosure, consent_keyword; events: phone, type, ts, value, id, source, props "
        "(JSON), prop.KEY.")
    imp.add_argument("kind", choices=("subscribers", "events"), help="what the file holds")
    imp.add_argument("file", metavar="FILE", type=Path, help="CSV file (UTF-8)")
    imp.add_argument("--map", dest="mapping", metavar="COL=FIELD", action="append", default=[],
                     help="map a column to a field; attr.KEY:TYPE defines a new attribute "
                          "(text, number, bool, date, list, geo); repeatable")
    imp.add_argument("--batch-size", type=int, default=None, metavar="N",
                     help="rows per transaction (default 1000 subscribers, 5000 events)")
    imp.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    _store_arguments(imp)
    imp.set_defaults(func=import_command)

    event = subparsers.add_parser("event", help="record events")
    event_sub = event.add_subparsers(dest="event_command", metavar="COMMAND")
    event_sub.required = True
    add = event_sub.add_parser(
        "add", help="record one event for a number",
        description="Record one event (the subscriber is created if new). With --id the same "
        "event recorded twice counts once. opt_in and opt_out events record behaviour only: "
        "they do NOT change consent. Consent is recorded by 'smsgate consent grant|revoke "
        "NUMBER --note TEXT', by 'smsgate import subscribers FILE' with consent_program and "
        "consent_action (grant or revoke) columns, or by a STOP/START text received by the "
        "daemon.")
    add.add_argument("number", metavar="NUMBER")
    add.add_argument("type", metavar="TYPE",
                     help="link_click, product_view, cart_add, purchase, reply, opt_in, opt_out "
                          "(behaviour only: consent is not changed), sent, delivered, failed, or "
                          "your own (lower case)")
    add.add_argument("--at", metavar="TIME", help="ISO 8601 time or epoch ms (default: now)")
    add.add_argument("--value", metavar="V", help="money or quantity")
    add.add_argument("--prop", metavar="K=V", action="append", default=[],
                     help="a text property; repeatable")
    add.add_argument("--source", default="cli", help="where it came from (default: cli)")
    add.add_argument("--id", metavar="ID", help="dedupe key: the same id counts once")
    add.add_argument("--json", action="store_true", help="print the result as JSON")
    _store_arguments(add)
    add.set_defaults(func=event_add_command)

    sub = subparsers.add_parser(
        "subscriber", help="export or erase one subscriber's data; rehash numbers")
    sub_sub = sub.add_subparsers(dest="subscriber_command", metavar="COMMAND")
    sub_sub.required = True
    export = sub_sub.add_parser(
        "export", help="print everything stored about a number as JSON",
        description="Print the profile, attributes, traits, events, consent records, "
        "segment memberships, messages sent to NUMBER (with their parts and history), texts "
        "received from it and parts of texts still being reassembled, as one JSON object "
        "(exit 1 if nothing is stored).")
    export.add_argument("number", metavar="NUMBER")
    export.add_argument("--output", "-o", metavar="FILE", type=Path,
                        help="write to FILE instead of standard output")
    _store_arguments(export)
    export.set_defaults(func=subscriber_export_command)
    erase = sub_sub.add_parser(
        "erase", help="erase a number's personal data (keeps a suppression hash)",
        description="In one transaction: delete the profile, attributes, events, roll-ups, "
        "traits and segment memberships of NUMBER, every message to it (queued ones are "
        "cancelled; one a running daemon is sending may still go out) with its parts and "
        "history, every text from it and any parts of one still being reassembled; keep its "
        "consent records with the number replaced by a keyed hash, and message counts per "
        "day; add a marketing suppression for the hash. Prints the rows removed per table. "
        "Irreversible: needs --yes. A number nothing was stored for is said to be so "
        "(JSON: nothing_stored true); the suppression is still added and the exit status is 0. "
        "Exit status 1 when nothing was stored and the number was already suppressed. "
        "See docs/privacy.md.")
    erase.add_argument("number", metavar="NUMBER")
    erase.add_argument("--yes", action="store_true", help="confirm the erasure")
    erase.add_argument("--vacuum", action="store_true",
                       help="rewrite the database file afterwards, so no old copy of a deleted "
                            "row is left in its free space (slow on a large file; locks it)")
    erase.add_argument("--json", action="store_true", help="print the report as JSON")
    _store_arguments(erase)
    erase.set_defaults(func=subscriber_erase_command)
    rehash = sub_sub.add_parser(
        "rehash", help="store the keyed hash of numbers that have none (for the preview)",
        description="Fill subscriber_hash (HMAC-SHA256 of the number under the site "
        "hash key, as the suppression list stores it) where it is missing: rows written by a "
        "store opened without the key, or before schema 10. The segment preview "
        "checks the suppression list through it; without it every number is hashed at "
        "preview time. 10,000 rows per transaction, so a running daemon is not held up. "
        "Prints how many rows were hashed.")
    rehash.add_argument("--all", dest="every", action="store_true",
                        help="rewrite every row's hash, not only missing ones (the site key "
                             "itself cannot be changed: the suppression list keeps no numbers)")
    rehash.add_argument("--json", action="store_true", help="print the counts as JSON")
    _store_arguments(rehash)
    rehash.set_defaults(func=subscriber_rehash_command)


# -- plumbing ------------------------------------------------------------------------------------


def open_store(args: argparse.Namespace) -> Store:
    """The segment store named by ``--db`` or the config (raises ConfigError / CliInputError)."""
    from segmentation.store import Store

    region: str | None = args.default_region
    db: Path | None = args.db
    if db is not None:
        key = os.environ.get(HASH_KEY_ENV)
    else:
        from gateway.config import load_config

        path = config_path(args)
        if not path.exists():
            raise CliInputError(f"configuration file {path} not found (give --config FILE, "
                                "set $SMSGATE_CONFIG, or use --db FILE)")
        config = load_config(path)
        db = config.database.path
        key = config.segments.hash_key
        region = region or config.segments.default_region
    if region is not None and not (len(region) == 2 and region.isalpha()):
        raise CliInputError(f"--default-region {region!r}: expected a 2-letter country code")
    return Store(db, hash_key=key.encode("utf-8") if key else None, default_region=region)


def utc_text(ms: int) -> str:
    """Epoch ms as ISO 8601 UTC for people: ``2026-01-15T12:00:00Z`` (``.250Z`` with ms)."""
    d = dt.datetime.fromtimestamp(ms // 1000, tz=dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms % 1000:03d}Z" if ms % 1000 else "Z")


def _run(args: argparse.Namespace, body: Callable[[Store], int]) -> int:
    """Open the store, run ``body``, render every expected error for people."""
    import sqlite3

    from gateway.config import ConfigError
    from gateway.errors import SmsgateError
    from segmentation.privacy import PrivacyError

    try:
        store = open_store(args)
    except ConfigError as exc:
        print(f"smsgate: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except CliInputError as exc:
        print(f"smsgate: {exc}", file=sys.stderr)
        return 2
    except (sqlite3.Error, SmsgateError) as exc:
        print(f"smsgate: cannot open the database: {exc}", file=sys.stderr)
        return 1
    try:
        committed = store.statistics().transactions_committed
        code = body(store)
        if store.statistics().transactions_committed > committed:
            # what this command wrote, reflected in segments before it returns (daemon or
            # not); a command that only read leaves the queue to the daemon
            interrupted = _apply_queue(store)
            if interrupted is not None:
                return interrupted
        return code
    except CliInputError as exc:
        print(f"smsgate: {exc}", file=sys.stderr)
        return 2
    except PrivacyError as exc:
        print(f"smsgate: {exc.what}: {exc.why}", file=sys.stderr)
        return 1
    except SmsgateError as exc:
        print(f"smsgate: {_describe(exc)}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"smsgate: database error on {store.path}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


PROGRESS_EVERY_S = 2.0
"""How often a long segment update after a write says how much is left (stderr)."""


def _apply_queue(store: Store) -> int | None:
    """Apply the membership queue before the command returns. After a large import that can
    take minutes, so every ``PROGRESS_EVERY_S`` it says on stderr how many changes are left;
    Ctrl-C stops between batches (each is its own transaction) and says what stays queued.
    Returns the exit status when interrupted (130), else None."""
    import time

    from segmentation.membership import BatchResult, apply_queued, queued_changes

    started = last = time.monotonic()

    def after_batch(_result: BatchResult) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S:
            last = now
            print(f"smsgate: updating segments: {queued_changes(store):,} queued changes "
                  f"left after {now - started:.0f} s (Ctrl-C stops; nothing is lost)",
                  file=sys.stderr)

    try:
        apply_queued(store, after_batch=after_batch)
    except KeyboardInterrupt:
        print(f"smsgate: stopped updating segments; what the command wrote is saved, and "
              f"{queued_changes(store):,} segment changes stay queued (a running daemon "
              "applies them, or the next smsgate command that writes)", file=sys.stderr)
        return 130
    return None


def _describe(exc: Exception) -> str:
    """A sentence for people from our error types (which carry data, not prose)."""
    from segmentation.ingest import EventError
    from segmentation.phones import PhoneError
    from segmentation.store import StoreError

    if isinstance(exc, PhoneError):
        return f"bad phone number {exc.value!r}: {exc.why}"
    if isinstance(exc, EventError):
        return f"bad event {exc.field} {exc.value!r}: {exc.why}"
    if isinstance(exc, StoreError) and "hash key" in str(exc):
        return (f"{exc}: set [segments] hash_key_env in the config (or ${HASH_KEY_ENV} "
                "with --db)")
    return str(exc)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, sort_keys=True))


# -- commands ------------------------------------------------------------------------------------


def import_command(args: argparse.Namespace) -> int:
    from segmentation.csvio import CsvImportError, RowError, import_events, import_subscribers
    from segmentation.csvio import parse_mapping as parse

    path: Path = args.file
    if not path.is_file():
        print(f"smsgate: {path}: no such file", file=sys.stderr)
        return 2
    if args.batch_size is not None and args.batch_size < 1:
        print("smsgate: --batch-size must be at least 1", file=sys.stderr)
        return 2

    def show(err: RowError) -> None:
        print(f"{path.name}: {err}", file=sys.stderr)

    def body(store: Store) -> int:
        try:
            mapping = parse(args.mapping)
            kw: dict[str, Any] = {"mapping": mapping, "on_error": show}
            if args.batch_size is not None:
                kw["batch_size"] = args.batch_size
            if args.kind == "subscribers":
                report = import_subscribers(store, path, **kw)
            else:
                report = import_events(store, path, **kw)
        except CsvImportError as exc:
            raise CliInputError(str(exc)) from None
        if args.json:
            _print_json({"kind": args.kind, "file": str(path), "sha256": report.file_sha256,
                         "rows": report.rows, "imported": report.imported,
                         "unchanged": report.unchanged, "skipped": report.skipped,
                         "ignored_columns": list(report.ignored_columns)})
        else:
            line = (f"{args.kind}: {report.rows} rows: {report.imported} imported, "
                    f"{report.unchanged} unchanged, {report.skipped} skipped")
            if report.ignored_columns:
                line += f"; ignored columns: {', '.join(report.ignored_columns)}"
            print(line)
        return 2 if report.skipped else 0

    return _run(args, body)


def event_add_command(args: argparse.Namespace) -> int:
    from segmentation.csvio import parse_number, parse_time_ms
    from segmentation.ingest import Event, ingest_event

    def body(store: Store) -> int:
        try:
            ts = parse_time_ms(args.at) if args.at else store.now_ms()
        except ValueError as exc:
            raise CliInputError(f"--at: {exc}") from None
        try:
            value = parse_number(args.value) if args.value is not None else None
        except ValueError as exc:
            raise CliInputError(f"--value: {exc}") from None
        props: dict[str, str] = {}
        for item in args.prop:
            k, sep, v = item.partition("=")
            if not sep or not k:
                raise CliInputError(f"--prop {item!r}: expected KEY=VALUE")
            props[k] = v
        result = ingest_event(store, Event(
            args.type, ts, number=args.number, value=value, props=props or None,
            source=args.source, dedupe_key=f"cli:{args.id}" if args.id else None))
        if args.type in CONSENT_LOOKALIKES:
            print(f"smsgate: warning: an {args.type} event records behaviour only; it does NOT "
                  f"change consent. To record the {CONSENT_LOOKALIKES[args.type]} itself: "
                  f"smsgate consent {CONSENT_LOOKALIKES[args.type]} NUMBER --note TEXT",
                  file=sys.stderr)
        if args.json:
            _print_json({"inserted": result.inserted, "duplicates": result.duplicates,
                         "subscriber_ids": sorted(result.subscriber_ids)})
        else:
            print("recorded" if result.inserted else "already recorded (same --id)")
        return 0

    return _run(args, body)


def subscriber_export_command(args: argparse.Namespace) -> int:
    from gateway.erasure import export_number

    def body(store: Store) -> int:
        data = export_number(store, args.number)
        text = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True)
        if args.output is not None:
            try:
                args.output.write_text(text + "\n", encoding="utf-8")
            except OSError as exc:
                raise CliInputError(f"{args.output}: cannot write ({exc.strerror})") from None
        else:
            print(text)
        return 0

    return _run(args, body)


def subscriber_erase_command(args: argparse.Namespace) -> int:
    from gateway.erasure import erase_number, report_json

    if not args.yes:
        print("smsgate: erasure cannot be undone; add --yes to confirm", file=sys.stderr)
        return 2

    def body(store: Store) -> int:
        report = erase_number(store, args.number, vacuum=args.vacuum)
        seg = report.segment
        nothing = (not report.removed and seg.subscriber_id is None
                   and seg.consent_rows_pseudonymised == 0)
        if args.json:
            _print_json({**report_json(report), "nothing_stored": nothing})
            return 0
        if nothing:
            print(f"nothing was stored for {args.number}: no subscriber, events, consent "
                  "records or messages, so no rows were removed.")
            print("a marketing suppression was added for it, so it will not be sent marketing "
                  "messages. If you meant another number, check it and erase that one.")
            return 0
        print("erased; rows removed per table:")
        for table, n in report.removed:
            print(f"  {table}: {n}")
        if not report.removed:
            print("  (none)")
        if report.outbox.cancelled or report.outbox.in_flight:
            print(f"{report.outbox.cancelled} queued messages cancelled; "
                  f"{report.outbox.in_flight} were already with a carrier or being sent "
                  "(their late results are ignored)")
        print(f"kept: {seg.consent_rows_pseudonymised} consent records under the keyed hash; "
              f"suppression {'added' if seg.suppression_added else 'already present'}; "
              "message counts in erased_message_tally")
        if args.vacuum and not report.vacuumed:
            print("note: the database was in use (is the daemon running?), so it was not "
                  "vacuumed; the erasure itself is complete")
        if not report.wal_truncated:
            print("note: another process was using the database, so its write-ahead log was "
                  "not truncated; the old pages go at its next restart (every ~20,000 "
                  "pages while the daemon writes)")
        return 0

    return _run(args, body)


def subscriber_rehash_command(args: argparse.Namespace) -> int:
    from segmentation.subscribers import RehashReport, fill_phone_hashes

    def progress(report: RehashReport) -> None:
        if not args.json and report.rows % 100_000 == 0:  # every 10 batches
            print(f"  {report.rows} rows so far", file=sys.stderr, flush=True)

    def body(store: Store) -> int:
        if not store.has_hash_key:
            raise CliInputError(
                "rehash needs the site hash key: set [segments] hash_key_env in the config "
                f"(or ${HASH_KEY_ENV} with --db)")
        report = fill_phone_hashes(store, every=args.every, on_batch=progress)
        if args.json:
            _print_json({"rows": report.rows, "changed": report.changed, "all": args.every})
        elif args.every:
            print(f"hashed {report.rows} rows ({report.changed} changed)")
        else:
            print(f"hashed {report.rows} rows without a hash")
        return 0

    return _run(args, body)
