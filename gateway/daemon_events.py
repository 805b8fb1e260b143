"""Outbox final states -> ``delivered`` / ``failed`` events in the segment store.

The outbox's history table already holds every state change, committed with it; this pump
reads the rows after a cursor (``daemon_cursor``, same database) and ingests one event per
message that reached a final state, for numbers that are subscribers (the segment store
keeps events about its subscribers, not about every number an API client texted). Each
event has the dedupe key ``outbox:<id>:<state>``: a crash between ingest and cursor update
ingests nothing twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.dispatch_db import AsyncOutbox
from gateway.outbox import Outbox
from segmentation.ingest import Event, ingest_events
from segmentation.store import AsyncStore, Store

# outbox state -> segment-store event type (segmentation/ingest.py OUTBOUND_TYPES)
EVENT_TYPES: dict[str, str] = {
    "delivered": "delivered",
    "undeliverable": "failed",
    "failed": "failed",
    "expired": "failed",
}

_BATCH = 5000
_CURSOR = "events"


@dataclass(frozen=True, slots=True)
class FinalState:
    history_id: int
    message_id: int
    state: str
    ts_ms: int
    dest: str
    error_code: int | None


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS daemon_cursor (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
        " STRICT"
    )


def read_cursor(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM daemon_cursor WHERE name = ?", (_CURSOR,)).fetchone()
    return int(row[0]) if row else 0


def save_cursor(conn: sqlite3.Connection, value: int) -> None:
    conn.execute(
        "INSERT INTO daemon_cursor (name, value) VALUES (?, ?) "
        "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        (_CURSOR, value),
    )


def final_states_after(conn: sqlite3.Connection, cursor: int, limit: int
                       ) -> tuple[list[FinalState], int]:
    """Final-state history rows after ``cursor``, and the cursor after the rows scanned."""
    rows = conn.execute(
        "SELECT h.id, h.message_id, h.state, h.ts_ms, m.dest, m.error_code "
        "FROM outbox_history h JOIN outbox_message m ON m.id = h.message_id "
        "WHERE h.id > ? ORDER BY h.id LIMIT ?",
        (cursor, limit),
    ).fetchall()
    out = [FinalState(*r) for r in rows if r[2] in EVENT_TYPES]
    return out, (rows[-1][0] if rows else cursor)


def to_events(finals: Iterable[FinalState]) -> list[Event]:
    return [
        Event(
            EVENT_TYPES[f.state], f.ts_ms, number=f.dest, source="outbox",
            props={"message_id": f.message_id, "state": f.state,
                   **({"code": f.error_code} if f.error_code is not None else {})},
            dedupe_key=f"outbox:{f.message_id}:{f.state}",
        )
        for f in finals
    ]


def ingest_for_subscribers(store: Store, events: list[Event]) -> int:
    """Ingest the events whose number is a subscriber; returns how many were inserted."""
    numbers = list({e.number for e in events if e.number})
    known: set[str] = set()
    for i in range(0, len(numbers), 500):
        chunk = numbers[i:i + 500]
        marks = ",".join("?" * len(chunk))
        known.update(r[0] for r in store.conn.execute(
            f"SELECT phone_e164 FROM subscriber WHERE phone_e164 IN ({marks})", chunk))
    mine = [e for e in events if e.number in known]
    if not mine:
        return 0
    return ingest_events(store, mine, create_subscribers=False).inserted


def _save(ob: Outbox, value: int) -> None:
    save_cursor(ob.conn, value)


class EventPump:
    def __init__(self, box: AsyncOutbox, store: AsyncStore) -> None:
        self._box = box
        self._store = store
        self.ingested = 0

    async def pump(self) -> int:
        """Move everything new; returns how many events were ingested."""
        await self._box.run(lambda ob: ensure_schema(ob.conn))
        total = 0
        while True:
            def read(ob: Outbox) -> tuple[list[FinalState], int, int]:
                before = read_cursor(ob.conn)
                finals, after = final_states_after(ob.conn, before, _BATCH)
                return finals, before, after

            finals, before, after = await self._box.run(read)
            if after == before:
                break
            if finals:
                total += await self._store.run(ingest_for_subscribers, to_events(finals))
            await self._box.run(_save, after)
        self.ingested += total
        return total
