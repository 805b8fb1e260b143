"""Erasure across the whole database file: a number's data built through the real paths
(CSV import, events, consent, the Outbox API, the daemon's inbound handler, the SMPP MO part
store, the outbox -> segment event pump), erased, then every table and column of the file --
and, after a vacuum, every byte of it -- searched for any form of the number and for the
texts. Only the suppression hash and the pseudonymised consent ledger (docs/privacy.md) may
remain; a second number's data is untouched; a late submit result or delivery report for an
erased message finds nothing and changes nothing."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from drivers.smpp.mo import MoPart
from gateway.cli import main
from gateway.config import KeywordsConfig
from gateway.daemon_events import final_states_after, ingest_for_subscribers, to_events
from gateway.daemon_inbound import InboundHandler
from gateway.dispatch_db import AsyncOutbox
from gateway.erasure import address_forms, erase_number, export_number
from gateway.inbound.keywords import Action, Replies
from gateway.inbox import e164 as inbox_e164
from gateway.inbox import ensure_schema as ensure_inbox
from gateway.inbox import record_consent as record_keyword
from gateway.inbox import store_inbound
from gateway.mo_store import MoPartDb
from gateway.outbox import Outbox
from gateway.outbox_states import Lane, ReportOutcome
from gateway.outbox_types import NewMessage, Report, Submitted
from gateway.routes import RouteInbound
from segmentation.consent import HASH_PREFIX, is_sendable, number_hash
from segmentation.csvio import import_subscribers
from segmentation.ingest import Event, ingest_events
from segmentation.privacy import PrivacyError, number_forms
from segmentation.store import AsyncStore, Store
from segmentation.subscribers import upsert_subscriber

ROOT = Path(__file__).resolve().parents[2]
KEY = b"erasure-test-key"
NUMBER = "+447911123456"
OTHER = "+447912345678"
ROUTE = "carrier-a"
T0 = 1_800_000_000_000
HORIZON_S = 3600.0

# Texts distinctive enough that finding one anywhere means a body survived.
BODY = {
    NUMBER: ("Your code is 839201 Ann", "Parcel for Ann Smythe at 12 Elm Row",
             "Sale tomorrow only for Ann", "Ann Smythe says hi, call me back",
             "Welcome back Ann, see you soon"),
    OTHER: ("Your code is 552901 Bob", "Parcel for Bob Jones at 3 Oak Lane",
            "Sale tomorrow only for Bob", "Bob Jones says hi, call me back",
            "Welcome back Bob, see you soon"),
}
MO_TEXT = {NUMBER: "Ann first half of a long text", OTHER: "Bob first half of a long text"}


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


@dataclass
class World:
    path: Path
    clock: Clock
    ids: dict[str, dict[str, int]]


def store_at(path: Path, clock: Clock) -> Store:
    return Store(path, clock=clock, hash_key=KEY, default_region="GB")


def write_csv(path: Path) -> Path:
    csv = path / "subscribers.csv"
    csv.write_text(
        "phone,postal_code,first_name,consent_program,consent_disclosure\n"
        "07911 123456,EH1 1AA,Ann,marketing,Msgs from Shop. Reply STOP to end.\n"
        "07912 345678,G1 1AA,Bob,marketing,Msgs from Shop. Reply STOP to end.\n",
        encoding="utf-8",
    )
    return csv


def outbox_messages(box: Outbox, number: str) -> dict[str, int]:
    """One delivered, one waiting for its report, one claimed (sending), one scheduled."""
    code, parcel, sale, _, _ = BODY[number]
    later = T0 + 86_400_000
    ids = [box.enqueue(NewMessage(number, text, lane=lane, ref=f"{number}-{i}",
                                  not_before_ms=not_before)).id
           for i, (text, lane, not_before) in enumerate(
               ((code, Lane.TRANSACTIONAL, None), (parcel, Lane.TRANSACTIONAL, None),
                (sale, Lane.CAMPAIGN, None), (sale + " (2)", Lane.CAMPAIGN, later)))]
    delivered, awaiting, sending, scheduled = ids
    assert {c.id for c in box.claim(3, lanes=(Lane.TRANSACTIONAL,))} == {delivered, awaiting}
    assert [c.id for c in box.claim(3, lanes=(Lane.CAMPAIGN,))] == [sending]
    box.mark_many([Submitted(delivered, 0, ROUTE, f"id-{delivered}"),
                   Submitted(awaiting, 0, ROUTE, f"id-{awaiting}")])
    assert box.record_reports([Report(ROUTE, f"id-{delivered}", ReportOutcome.DELIVERED)]
                              ).matched == 1
    return {"delivered": delivered, "awaiting": awaiting, "sending": sending,
            "scheduled": scheduled}


async def inbound(path: Path, clock: Clock) -> None:
    """STOP (from the number in SMPP's digits-only form), START, a reply; MO parts waiting."""
    box = await AsyncOutbox.open(path, clock=clock)
    store = await AsyncStore.open(path, clock=clock, hash_key=KEY, default_region="GB")
    parts = await MoPartDb.open(path, clock=lambda: clock.ms / 1000)
    try:
        handler = InboundHandler(box, store, Replies.from_config(KeywordsConfig()),
                                 clock_ms=clock)
        await handler.start()
        for number in (NUMBER, OTHER):
            sender = number.removeprefix("+")
            stop = await handler.process(RouteInbound(ROUTE, sender, "12345", "STOP"))
            clock.ms += 1000
            start = await handler.process(RouteInbound(ROUTE, sender, "12345", "START"))
            clock.ms += 1000
            reply = await handler.process(RouteInbound(ROUTE, sender, "12345", BODY[number][3]))
            assert (stop.action, start.action, reply.action) == (
                Action.OPT_OUT, Action.OPT_IN, Action.OTHER)
            assert stop.cancelled == 1  # the scheduled campaign message
            await parts.store(ROUTE, 600).add(MoPart(
                sender, "12345", 0, MO_TEXT[number].encode("ascii"), None, 7, 2, 1, "udh8", 1, 1))
    finally:
        await parts.aclose()
        await store.aclose()
        await box.aclose()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    path, clock = tmp_path / "smsgate.db", Clock()
    with store_at(path, clock) as store:
        report = import_subscribers(store, write_csv(tmp_path),
                                    mapping={"first_name": "attr.first_name:text"})
        assert report.imported == 2
        ingest_events(store, [
            Event("purchase", T0, number=n, value=12.5, props={"sku": "TEA", "note": BODY[n][1]})
            for n in (NUMBER, OTHER)])
    ids: dict[str, dict[str, int]] = {}
    with Outbox(path, clock=clock, dlr_unknown_after_s=HORIZON_S) as box:
        for number in (NUMBER, OTHER):
            ids[number] = outbox_messages(box, number)
    asyncio.run(inbound(path, clock))
    with Outbox(path, clock=clock) as box:  # queued after the START: cancelled by the erasure
        for number in (NUMBER, OTHER):
            ids[number]["queued"] = box.enqueue(NewMessage(number, BODY[number][4])).id
    # the daemon's event pump: final outbox states -> delivered/failed events for subscribers
    with Outbox(path, clock=clock) as box, store_at(path, clock) as store:
        finals, _ = final_states_after(box.conn, 0, 1000)
        assert ingest_for_subscribers(store, to_events(finals)) >= 2
    yield World(path, clock, ids)


def needles(number: str) -> list[str]:
    """Every spelling of the number, and every text to or from it."""
    forms = set(number_forms(number)) | set(address_forms(number).senders) | {"07911 123456"}
    return sorted(forms | set(BODY[number]) | {MO_TEXT[number]}, key=len, reverse=True)


def cells(path: Path) -> Iterator[tuple[str, str, Any]]:
    """(table, column, value) for every cell of every table in the file."""
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for table in tables:
            cur = conn.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in cur.description]
            for row in cur:
                yield from ((table, c, v) for c, v in zip(columns, row, strict=True))


def hits(path: Path, words: list[str]) -> list[tuple[str, str, str]]:
    found: list[tuple[str, str, str]] = []
    for table, column, value in cells(path):
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        found.extend((table, column, w) for w in words if w in text)
    return found


def snapshot(path: Path, number: str) -> dict[str, Any]:
    with store_at(path, Clock()) as store:
        data = export_number(store, number)
    data.pop("exported_at")
    return data


def test_erasure_leaves_no_form_of_the_number_and_no_text(world: World) -> None:
    path = world.path
    mine, others = needles(NUMBER), needles(OTHER)
    assert {w for _, _, w in hits(path, mine)} >= {NUMBER, "447911123456", *BODY[NUMBER],
                                                   MO_TEXT[NUMBER]}  # the search finds them
    before_other = snapshot(path, OTHER)
    with store_at(path, world.clock) as store:
        report = erase_number(store, "07911 123456")
    removed = dict(report.removed)
    # 5 of ours + the STOP and START confirmations; 3 texts received; 1 waiting MO part
    assert removed["outbox_message"] == 7 and removed["inbox_message"] == 3
    assert removed["mo_pending_part"] == 1 and removed["mo_pending_group"] == 1
    assert removed["subscriber"] == 1 and removed["subscriber_attr"] == 1
    assert removed["event"] == 3  # purchase, reply, delivered
    # still queued: the last message and both confirmations (no dispatcher ran); in flight:
    # the one claimed (sending) and the one waiting for its delivery report
    assert report.outbox.cancelled == 3 and report.outbox.in_flight == 2
    assert report.segment.consent_rows_pseudonymised == 3  # import grant, STOP, START
    assert report.wal_truncated

    assert hits(path, mine) == []
    digest = number_hash(KEY, NUMBER)
    kept = [(t, c) for t, c, v in cells(path) if isinstance(v, str) and digest in v]
    assert sorted(set(kept)) == [("consent", "phone_e164"), ("suppression", "phone_hash")]
    with store_at(path, world.clock) as store:
        ledger = store.query("SELECT phone_e164, action, keyword_text, subscriber_id "
                             "FROM consent WHERE phone_e164 LIKE ? ORDER BY id",
                             (HASH_PREFIX + "%",))
        assert [(r["action"], r["keyword_text"], r["subscriber_id"]) for r in ledger] == [
            ("grant", None, None), ("revoke", "STOP", None), ("grant", "START", None)]
        assert not is_sendable(store, NUMBER, "marketing")  # the suppression holds
        with pytest.raises(PrivacyError):
            export_number(store, NUMBER)
    # the other number: every table as before, still found by every search
    assert snapshot(path, OTHER) == before_other
    assert {w for _, _, w in hits(path, others)} >= {OTHER, *BODY[OTHER], MO_TEXT[OTHER]}


def test_after_a_vacuum_no_byte_of_the_file_names_the_number(world: World) -> None:
    with store_at(world.path, world.clock) as store:
        report = erase_number(store, NUMBER, vacuum=True)
    assert report.vacuumed and report.wal_truncated
    raw = world.path.read_bytes()
    wal = world.path.with_name(world.path.name + "-wal")
    raw += wal.read_bytes() if wal.exists() else b""
    assert [w for w in needles(NUMBER) if w.encode() in raw] == []
    assert OTHER.encode() in raw and BODY[OTHER][0].encode() in raw


def outbox_counts(store: Store) -> dict[str, int]:
    """Messages per state, queued ones counted as the erasure counts them (cancelled)."""
    counts: dict[str, int] = {}
    for state, n in store.conn.execute("SELECT state, count(*) FROM outbox_message GROUP BY 1"):
        key = "cancelled" if state in ("queued", "scheduled") else state
        counts[key] = counts.get(key, 0) + n
    return counts


def test_aggregate_counts_survive_in_the_tally(world: World) -> None:
    with store_at(world.path, world.clock) as store:
        before = outbox_counts(store)
        erase_number(store, NUMBER)
        after = outbox_counts(store)
        tally = {(r["source"], r["state"]): (r["messages"], r["parts"]) for r in store.query(
            "SELECT source, state, sum(messages) AS messages, sum(parts) AS parts "
            "FROM erased_message_tally GROUP BY 1, 2")}
        days = {r[0] for r in store.conn.execute("SELECT day FROM erased_message_tally")}
    # cancelled: the scheduled one (by the STOP), the queued one and the two confirmations
    assert tally == {("outbox", "delivered"): (1, 1), ("outbox", "submitted"): (1, 1),
                     ("outbox", "sending"): (1, 1), ("outbox", "cancelled"): (4, 4),
                     ("inbox", "opt_out"): (1, 1), ("inbox", "opt_in"): (1, 1),
                     ("inbox", "other"): (1, 1)}
    assert days == {T0 // 86_400_000}
    # per state, what is left plus the tally is what there was
    assert {k: after.get(k, 0) + tally.get(("outbox", k), (0, 0))[0] for k in before} == before


def test_a_late_submit_result_or_report_for_an_erased_message_finds_nothing(
        world: World) -> None:
    mine = world.ids[NUMBER]
    with store_at(world.path, world.clock) as store:
        erase_number(store, NUMBER)
    with Outbox(world.path, clock=world.clock, dlr_unknown_after_s=HORIZON_S) as box:
        before = box.statistics().counts
        history = box.conn.execute("SELECT count(*) FROM outbox_history").fetchone()
        # the daemon had claimed "sending" before the erasure: its submit result comes back
        box.mark_many([Submitted(mine["sending"], 0, ROUTE, "late-1")])
        result = box.record_reports([
            Report(ROUTE, f"id-{mine['awaiting']}", ReportOutcome.DELIVERED),
            Report(ROUTE, "late-1", ReportOutcome.UNDELIVERABLE)])
        assert result.matched == 0
        assert box.get(mine["sending"]) is None and box.get(mine["awaiting"]) is None
        assert box.statistics().counts == before
        assert box.conn.execute("SELECT count(*) FROM outbox_history").fetchone() == history
        # the unmatched reports hold no number and go at the report horizon
        world.clock.ms += int(HORIZON_S * 1000) + 1
        box.mark_unknown_due()
        assert box.statistics().pending_reports == 0
    assert hits(world.path, needles(NUMBER)) == []
    with Outbox(world.path, clock=world.clock) as box, store_at(world.path, world.clock) as s:
        finals, _ = final_states_after(box.conn, 0, 10_000)
        assert ingest_for_subscribers(s, to_events(finals)) == 0
        assert all(f.dest != NUMBER for f in finals)


def test_export_covers_outbox_inbox_and_waiting_parts(world: World) -> None:
    data = snapshot(world.path, NUMBER)
    assert {"number", "profile", "attributes", "traits", "events", "consent", "memberships",
            "membership_history", "suppression"} <= data.keys()  # the segment store's keys
    assert data["attributes"] == {"first_name": "Ann"}
    texts = {m["text"] for m in data["outbox_messages"]}
    assert set(BODY[NUMBER][:3]) <= texts
    delivered = next(m for m in data["outbox_messages"] if m["text"] == BODY[NUMBER][0])
    assert delivered["state"] == "delivered" and delivered["part_states"][0]["carrier_id"]
    assert [h["state"] for h in delivered["history"]][-1] == "delivered"
    assert [m["body"] for m in data["inbox_messages"]] == ["STOP", "START", BODY[NUMBER][3]]
    assert [m["action"] for m in data["inbox_messages"]] == ["opt_out", "opt_in", "other"]
    (part,) = data["pending_mo_parts"]
    assert bytes.fromhex(part["user_data"]).decode() == MO_TEXT[NUMBER]
    assert all(NUMBER not in str(m) for m in snapshot(world.path, OTHER)["outbox_messages"])


def test_erasing_twice_changes_nothing_the_second_time(world: World) -> None:
    with store_at(world.path, world.clock) as store:
        erase_number(store, NUMBER)
        tally = store.query("SELECT * FROM erased_message_tally")
        with pytest.raises(PrivacyError):
            erase_number(store, NUMBER)
        assert store.query("SELECT * FROM erased_message_tally") == tally


def test_a_number_known_only_to_the_outbox_is_erased(tmp_path: Path) -> None:
    path, clock = tmp_path / "smsgate.db", Clock()
    with Outbox(path, clock=clock) as box:
        box.enqueue(NewMessage(NUMBER, BODY[NUMBER][0]))
    with store_at(path, clock) as store:
        report = erase_number(store, NUMBER)
    assert report.segment.subscriber_id is None and report.outbox.cancelled == 1
    assert hits(path, needles(NUMBER)) == []


def test_cli_export_and_erase(world: World, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SMSGATE_HASH_KEY", KEY.decode())
    db = ["--db", str(world.path), "--default-region", "GB"]
    assert main(["subscriber", "export", "07911 123456", *db]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {m["text"] for m in data["outbox_messages"]} >= set(BODY[NUMBER][:3])
    assert [m["body"] for m in data["inbox_messages"]][-1] == BODY[NUMBER][3]
    assert main(["subscriber", "erase", "07911 123456", *db]) == 2  # no --yes
    assert "--yes" in capsys.readouterr().err
    # one real process, as an operator runs it
    env = {**os.environ, "SMSGATE_HASH_KEY": KEY.decode()}
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "subscriber", "erase", NUMBER,
                        "--yes", *db], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "erased; rows removed per table:"
    for line in ("  outbox_message: 7", "  inbox_message: 3", "  mo_pending_part: 1",
                 "  subscriber: 1", "  event: 3"):
        assert line in lines
    assert "3 queued messages cancelled; 2 were already with a carrier" in r.stdout
    assert NUMBER not in r.stdout and "7911123456" not in r.stdout
    assert main(["subscriber", "export", NUMBER, *db]) == 1
    assert "no subscriber and no consent records" in capsys.readouterr().err
    assert main(["subscriber", "erase", NUMBER, "--yes", "--json", *db]) == 1
    assert "nothing stored" in capsys.readouterr().err
    assert main(["subscriber", "erase", "+4479", "--yes", *db]) == 2
    assert "bad phone number" in capsys.readouterr().err
    assert hits(world.path, needles(NUMBER)) == []


def _example(region: str) -> str:
    number = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    assert number is not None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


@pytest.mark.parametrize("region", ["GB", "US", "DE", "FR", "IN", "AU", "BR", "JP"])
def test_texts_are_found_in_every_form_an_address_arrives_in(tmp_path: Path,
                                                             region: str) -> None:
    """The same person's texts, from addresses written every way SMPP and modems write them
    (international with and without '+', '00', national with the trunk prefix, the national
    significant number), all go; a text from another number stays."""
    e164 = _example(region)
    parsed = phonenumbers.parse(e164)
    national = "".join(c for c in phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL)
                       if c.isdigit())
    nsn = phonenumbers.national_significant_number(parsed)
    addresses = sorted({e164, e164[1:], "00" + e164[1:], national, nsn})
    path = tmp_path / "smsgate.db"
    with store_at(path, Clock()) as store:
        conn = store.conn
        ensure_inbox(conn)
        for i, address in enumerate(addresses):
            store_inbound(conn, T0 + i, ROUTE, inbox_e164(address), "1", f"text {i}")
        store_inbound(conn, T0, ROUTE, OTHER, "1", "from the other number")

    async def add_parts() -> None:
        parts = await MoPartDb.open(path)
        try:
            for i, address in enumerate(addresses):
                await parts.store(ROUTE, 600).add(MoPart(
                    address, "1", 0, b"half", None, i, 2, 1, "udh8", 1, 1))
        finally:
            await parts.aclose()
    asyncio.run(add_parts())
    with store_at(path, Clock()) as store:  # default region GB: a GB number given nationally
        report = erase_number(store, national if region == "GB" else e164)
        assert report.inbox_messages == len(addresses)
        assert (report.mo_groups, report.mo_parts) == (len(addresses), len(addresses))
        left = store.conn.execute("SELECT sender FROM inbox_message").fetchall()
    assert left == [(OTHER,)]


def test_a_file_with_only_the_segment_store(tmp_path: Path) -> None:
    path = tmp_path / "segments.db"
    with store_at(path, Clock()) as store:
        upsert_subscriber(store, NUMBER)
        report = erase_number(store, NUMBER)
        tables = {r[0] for r in store.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert dict(report.removed) == {"subscriber": 1, "trait": 1, "subscriber_hash": 1}
    assert not tables & {"outbox_message", "inbox_message", "erased_message_tally"}


def test_a_number_the_numbering_plan_rejects_is_exported_and_erased(tmp_path: Path) -> None:
    """A STOP from a test-range number is recorded as written (gateway.inbox), and messages to
    it can be queued: such a number must be exportable and erasable too."""
    path, clock, test_range = tmp_path / "smsgate.db", Clock(), "+15555550100"
    with Outbox(path, clock=clock) as box:
        box.enqueue(NewMessage(test_range, BODY[NUMBER][0]))
        ensure_inbox(box.conn)
        store_inbound(box.conn, T0, ROUTE, test_range, "1", "STOP")
    with store_at(path, clock) as store:
        record_keyword(store, test_range, "revoke", "STOP", 1, T0)
        data = export_number(store, "+1 555-555-0100")
        assert [c["action"] for c in data["consent"]] == ["revoke"]
        assert [m["body"] for m in data["inbox_messages"]] == ["STOP"]
        report = erase_number(store, "+1 555-555-0100")
    assert dict(report.removed) == {"inbox_message": 1, "outbox_history": 1,
                                    "outbox_message": 1, "outbox_part": 1}
    assert report.segment.consent_rows_pseudonymised == 1
    assert hits(path, [test_range, test_range[1:], BODY[NUMBER][0]]) == []


def test_a_reader_in_another_connection_does_not_hold_the_erasure_up(world: World) -> None:
    """The daemon reading at that moment: the erasure commits, the WAL truncation gives up
    after a short wait (it would hold off the daemon's writers) and says so."""
    reader = sqlite3.connect(world.path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM outbox_message").fetchone()[0] > 0
        with store_at(world.path, world.clock) as store:
            store.conn.execute("PRAGMA secure_delete = 0")
            report = erase_number(store, NUMBER)
            # the connection's own settings are given back
            assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
            assert store.conn.execute("PRAGMA secure_delete").fetchone()[0] == 0
        assert not report.wal_truncated and dict(report.removed)["outbox_message"] == 7
        # the reader's snapshot still shows the rows; a new transaction does not
        assert reader.execute("SELECT count(*) FROM outbox_message WHERE dest = ?",
                              (NUMBER,)).fetchone() == (7,)
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM outbox_message WHERE dest = ?",
                              (NUMBER,)).fetchone() == (0,)
    finally:
        reader.close()
    assert hits(world.path, needles(NUMBER)) == []
