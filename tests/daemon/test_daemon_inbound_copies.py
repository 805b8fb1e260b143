"""Redelivered and partial inbound texts through the daemon's InboundHandler, on a real database
file (outbox thread, segment-store thread): a copy has no second effect (no second opt-out
confirmation, consent row or reply event), STOP/START/STOP is three decisions, a different
network identity or a copy after the window is a new text, a copy of an undecided text decides
it under the first id, and an incomplete text is stored marked."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from gateway.config import KeywordsConfig
from gateway.daemon_inbound import InboundHandler
from gateway.dispatch_db import AsyncOutbox
from gateway.inbound.keywords import Action, Replies
from gateway.inbox import DUPLICATE_WINDOW_MS, store_inbound
from gateway.routes import RouteInbound
from segmentation.store import AsyncStore, Store
from segmentation.subscribers import upsert_subscriber

NUMBER = "+447911123456"
ROUTE = "carrier-a"


class Clock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms


@asynccontextmanager
async def handler(path: Path, clock: Clock) -> AsyncIterator[InboundHandler]:
    with Store(path) as store:
        upsert_subscriber(store, NUMBER)
    box = await AsyncOutbox.open(path, clock=clock)
    store_ = await AsyncStore.open(path, clock=clock)
    try:
        inbound = InboundHandler(box, store_, Replies.from_config(KeywordsConfig()),
                                 clock_ms=clock)
        await inbound.start()
        yield inbound
    finally:
        await store_.aclose()
        await box.aclose()


def text(body: str, identity: str | None = None) -> RouteInbound:
    return RouteInbound(ROUTE, NUMBER.removeprefix("+"), "12345", body, identity=identity)


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def test_a_redelivered_stop_confirms_once(tmp_path: Path) -> None:
    path, clock = tmp_path / "smsgate.db", Clock()
    async with handler(path, clock) as inbound:
        first = await inbound.process(text("STOP"))
        clock.ms += 30_000
        copy = await inbound.process(text("STOP"))
        stats = inbound.statistics()
    assert first.action is Action.OPT_OUT and first.reply_id is not None
    assert copy.duplicate_of == first.inbox_id and copy.reply_id is None
    assert copy.action is Action.OPT_OUT
    assert stats.duplicates == 1 and stats.replies_sent == 1
    assert rows(path, "SELECT count(*) FROM outbox_message") == [(1,)]
    assert rows(path, "SELECT action FROM consent") == [("revoke",)]
    assert rows(path, "SELECT id, action, reply_id IS NOT NULL, duplicate_of FROM inbox_message"
                " ORDER BY id") == [(first.inbox_id, "opt_out", 1, None),
                                    (copy.inbox_id, "opt_out", 0, first.inbox_id)]


async def test_a_redelivered_reply_is_one_event(tmp_path: Path) -> None:
    path, clock = tmp_path / "smsgate.db", Clock()
    async with handler(path, clock) as inbound:
        await inbound.process(text("See you at 5"))
        copy = await inbound.process(text("See you at 5"))
        assert copy.duplicate_of is not None
        # Another identity (another SMSC timestamp): another message with the same words.
        other = await inbound.process(text("See you at 5", identity="scts:2026-11-27T14:00"))
        assert other.duplicate_of is None
    assert rows(path, "SELECT count(*) FROM event WHERE type = 'reply'") == [(2,)]


async def test_stop_start_stop_is_three_decisions_and_the_window_ends(tmp_path: Path) -> None:
    path, clock = tmp_path / "smsgate.db", Clock()
    async with handler(path, clock) as inbound:
        results = [await inbound.process(text(t)) for t in ("STOP", "START", "STOP")]
        assert [r.duplicate_of for r in results] == [None, None, None]
        clock.ms += DUPLICATE_WINDOW_MS + 1
        late = await inbound.process(text("STOP"))
        assert late.duplicate_of is None
    assert rows(path, "SELECT action FROM consent ORDER BY id") == [
        ("revoke",), ("grant",), ("revoke",)]


async def test_a_copy_of_an_undecided_text_decides_it_as_the_first(tmp_path: Path) -> None:
    path, clock = tmp_path / "smsgate.db", Clock()
    async with handler(path, clock) as inbound:
        # The last run committed the row and died before deciding (no ack: the SMSC resends).
        with sqlite3.connect(path, isolation_level=None) as conn:
            stored = store_inbound(conn, clock.ms, ROUTE, NUMBER, "12345", "STOP")
        copy = await inbound.process(text("STOP"))
        again = await inbound.process(text("STOP"))
        assert NUMBER in inbound.opted_out
    assert copy.duplicate_of == stored.inbox_id and copy.action is Action.OPT_OUT
    assert again.duplicate_of == stored.inbox_id
    assert rows(path, "SELECT dedupe_key FROM consent") == [(f"inbox:{stored.inbox_id}",)]
    assert rows(path, "SELECT ref FROM outbox_message") == [(f"mo:{stored.inbox_id}",)]
    assert rows(path, f"SELECT action, reply_id IS NOT NULL FROM inbox_message "
                f"WHERE id = {stored.inbox_id}") == [("opt_out", 1)]


async def test_an_incomplete_text_is_stored_marked(tmp_path: Path) -> None:
    path, clock = tmp_path / "smsgate.db", Clock()
    partial = RouteInbound(ROUTE, NUMBER, "12345", "Thanks for the remin", complete=False,
                           missing=(2,), identity="ref:7/2")
    async with handler(path, clock) as inbound:
        result = await inbound.process(partial)
        copy = await inbound.process(partial)
        full = await inbound.process(text("Hello"))
        assert inbound.statistics().incomplete == 2
    assert result.action is Action.OTHER and copy.duplicate_of == result.inbox_id
    assert rows(path, f"SELECT complete, missing, identity FROM inbox_message WHERE id IN "
                f"({result.inbox_id}, {full.inbox_id}) ORDER BY id") == [
        (0, "[2]", "ref:7/2"), (1, None, None)]
    assert rows(path, "SELECT count(*) FROM event WHERE type = 'reply'") == [(2,)]


def test_an_old_inbox_table_gains_the_new_columns(tmp_path: Path) -> None:
    from gateway.inbox import ensure_schema

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE inbox_message (id INTEGER PRIMARY KEY, received_ms INTEGER "
                     "NOT NULL, route TEXT NOT NULL, sender TEXT NOT NULL, recipient TEXT NOT "
                     "NULL, body TEXT NOT NULL, action TEXT, keyword TEXT, flagged TEXT, "
                     "reply_id INTEGER) STRICT")
        conn.execute("INSERT INTO inbox_message (received_ms, route, sender, recipient, body) "
                     "VALUES (1, 'r', 's', 'x', 'old')")
        ensure_schema(conn)
        ensure_schema(conn)  # idempotent
        assert conn.execute("SELECT complete, missing, identity, duplicate_of "
                            "FROM inbox_message").fetchall() == [(1, None, None, None)]
