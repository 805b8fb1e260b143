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
from gateway.outbox_schema import is_final_event_state
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
    """Up to ``limit`` final-state history rows after ``cursor`` in id order, and the cursor
    after them.

    Read through the partial index ``outbox_history_final`` (only final-state rows, covering):
    the cost is the rows returned, however many other changes the outbox made meanwhile. The
    WHERE repeats the index's own condition, which is what lets the planner use it. Ids are
    committed in increasing order (gateway/outbox_history.py), so no row appears behind the
    cursor later."""
    rows = conn.execute(
        "SELECT h.id, h.message_id, h.state, h.ts_ms, m.dest, m.error_code "
        "FROM outbox_history AS h INDEXED BY outbox_history_final "
        "JOIN outbox_message AS m ON m.id = h.message_id "
        f"WHERE h.id > ? AND {is_final_event_state('h.state')} ORDER BY h.id LIMIT ?",
        (cursor, limit),
    ).fetchall()
    return [FinalState(*r) for r in rows], (rows[-1][0] if rows else cursor)


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
    def __init__(self, box: AsyncOutbox, store: AsyncStore, *, batch: int = _BATCH) -> None:
        self._box = box
        self._store = store
        self._batch = batch
        self._schema_ready = False
        self.ingested = 0

    async def pump(self) -> int:
        """Move everything new; returns how many events were ingested.

        With nothing new this is one indexed probe on the outbox thread. The cursor is saved
        only after the segment store committed the batch (at-least-once; the dedupe keys make
        a repeat a no-op)."""
        if not self._schema_ready:
            await self._box.run(lambda ob: ensure_schema(ob.conn))
            self._schema_ready = True
        total = 0
        limit = self._batch
        while True:
            def read(ob: Outbox) -> tuple[list[FinalState], int]:
                return final_states_after(ob.conn, read_cursor(ob.conn), limit)

            finals, after = await self._box.run(read)
            if not finals:
                break
            total += await self._store.run(ingest_for_subscribers, to_events(finals))
            await self._box.run(_save, after)
            if len(finals) < limit:
                break
        self.ingested += total
        return total
