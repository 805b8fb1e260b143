"""Erasure of one number's messages from the outbox tables (SQL over a caller's transaction).

Called by :mod:`gateway.erasure` on the connection that also erases the segment store, inside
one ``BEGIN IMMEDIATE`` transaction, so a reader sees the number's data all there or all gone.

Every message to the number is deleted with its parts and history, whatever its state:

- ``queued`` / ``scheduled``: cancelled by the erasure (nothing went out). The tally counts
  them as ``cancelled``; there is no separate cancel step because no other connection can see
  the transaction between a cancel and the delete.
- ``sending``: a running daemon claimed it and may be writing it to a carrier or a modem right
  now (it holds the text in memory; another process cannot stop that). Its submit result, or a
  failure, later names a message id that no longer exists: the outbox's updates match no row,
  settle nothing and write no history, so nothing about the number is re-created.
- ``submitted`` (a delivery report is still due) and final states: deleted. A report that
  arrives later finds no part with its carrier id; the outbox then keeps it as an unmatched
  report (``outbox_report_pending``: route, carrier id, outcome and time, nothing about the
  number), which nothing will ever match, and ``Outbox.mark_unknown_due`` deletes it at the
  delivery-report horizon (``dlr_unknown_after_s``).

What survives is the count (segmentation-compliance.md §6.5, listmonk's "wipe the subscriber
but keep anonymous aggregate counts"): :data:`TALLY_SCHEMA` adds the deleted messages to
``erased_message_tally``, per UTC day of their last state change, lane, state and campaign, so
per-day sent / delivered / failed figures keep adding up after an erasure. A tally row never
names a message, a number or a text.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass

from gateway import outbox_read

DAY_MS = 86_400_000

TALLY_SCHEMA = """
CREATE TABLE IF NOT EXISTS erased_message_tally (
    day         INTEGER NOT NULL,              -- UTC day (epoch ms // 86_400_000)
    source      TEXT    NOT NULL,              -- 'outbox' | 'inbox'
    lane        INTEGER NOT NULL,              -- outbox lane; -1 for inbox rows
    state       TEXT    NOT NULL,              -- outbox state, or the inbox row's action
    campaign_id INTEGER NOT NULL,              -- 0: no campaign
    messages    INTEGER NOT NULL,
    parts       INTEGER NOT NULL,              -- inbox rows: texts (as received, joined)
    PRIMARY KEY (day, source, lane, state, campaign_id)
) STRICT, WITHOUT ROWID
"""

_WAITING = ("queued", "scheduled")
_IN_FLIGHT = ("sending", "submitted")


@dataclass(frozen=True, slots=True)
class OutboxErasure:
    """What the outbox part of an erasure removed, per table."""

    messages: int  # outbox_message rows deleted (all of the below)
    cancelled: int  # of them, still waiting to be sent: cancelled by the erasure
    in_flight: int  # of them, sending or submitted: a submit result or a report may follow
    parts: int  # outbox_part rows deleted
    history: int  # outbox_history rows deleted
    pending_reports: int  # outbox_report_pending rows for the deleted parts' carrier ids


NOTHING = OutboxErasure(0, 0, 0, 0, 0, 0)


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone() is not None


def ensure_tally(conn: sqlite3.Connection) -> None:
    conn.execute(TALLY_SCHEMA)


def add_to_tally(
    conn: sqlite3.Connection, rows: Collection[tuple[int, str, int, str, int, int, int]]
) -> None:
    """Add ``(day, source, lane, state, campaign_id, messages, parts)`` counts to the tally."""
    ensure_tally(conn)
    conn.executemany(
        "INSERT INTO erased_message_tally (day, source, lane, state, campaign_id, messages, "
        "parts) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (day, source, lane, state, campaign_id) "
        "DO UPDATE SET messages = messages + excluded.messages, parts = parts + excluded.parts",
        rows,
    )


def message_ids(conn: sqlite3.Connection, destinations: Collection[str]) -> list[int]:
    """Ids of every message to any of ``destinations`` (through the ``dest`` index)."""
    if not has_table(conn, "outbox_message") or not destinations:
        return []
    return [int(r[0]) for r in conn.execute(
        "SELECT id FROM outbox_message WHERE dest IN (SELECT value FROM json_each(?)) "
        "ORDER BY id",
        (json.dumps(sorted(destinations)),),
    )]


def erase_messages(conn: sqlite3.Connection, destinations: Collection[str]) -> OutboxErasure:
    """Delete every message to ``destinations`` (forms of one number) with its parts, history
    and unmatched reports, adding them to the tally first. Runs in the caller's transaction."""
    ids = message_ids(conn, destinations)
    if not ids:
        return NOTHING
    doomed = json.dumps(ids)
    inside = "IN (SELECT value FROM json_each(?))"
    states = dict(conn.execute(
        f"SELECT state, count(*) FROM outbox_message WHERE id {inside} GROUP BY state", (doomed,)
    ).fetchall())
    # Waiting messages are cancelled by the erasure: counted as such, since that is their end.
    tally = conn.execute(
        "SELECT updated_ms / ?, 'outbox', lane, CASE WHEN state IN ('queued', 'scheduled') "
        "THEN 'cancelled' ELSE state END, coalesce(campaign_id, 0), count(*), sum(total_parts) "
        f"FROM outbox_message WHERE id {inside} GROUP BY 1, 3, 4, 5",
        (DAY_MS, doomed),
    ).fetchall()
    add_to_tally(conn, tally)
    pending = conn.execute(
        "DELETE FROM outbox_report_pending WHERE (route, carrier_id) IN (SELECT route, "
        f"carrier_id FROM outbox_part WHERE message_id {inside} AND carrier_id IS NOT NULL)",
        (doomed,),
    ).rowcount
    history = conn.execute(
        f"DELETE FROM outbox_history WHERE message_id {inside}", (doomed,)).rowcount
    parts = conn.execute(f"DELETE FROM outbox_part WHERE message_id {inside}", (doomed,)).rowcount
    messages = conn.execute(f"DELETE FROM outbox_message WHERE id {inside}", (doomed,)).rowcount
    return OutboxErasure(
        messages=messages,
        cancelled=sum(int(states.get(s, 0)) for s in _WAITING),
        in_flight=sum(int(states.get(s, 0)) for s in _IN_FLIGHT),
        parts=parts,
        history=history,
        pending_reports=pending,
    )


def export_messages(conn: sqlite3.Connection, destinations: Collection[str]
                    ) -> list[dict[str, object]]:
    """Every message to ``destinations`` with its parts and history, oldest first (JSON-ready)."""
    out: list[dict[str, object]] = []
    for mid in message_ids(conn, destinations):
        m = outbox_read.get_message(conn, mid)
        if m is None:
            continue
        out.append({
            "id": m.id, "lane": m.lane.name.lower(), "state": m.state.value, "to": m.to,
            "sender": m.sender, "text": m.text, "ref": m.ref, "parts": m.total_parts,
            "created_ms": m.created_ms, "updated_ms": m.updated_ms, "route": m.route,
            "error_code": m.error_code, "error_text": m.error_text,
            "part_states": [{"seq": p.seq, "state": p.state.value, "route": p.route,
                             "carrier_id": p.carrier_id, "error_code": p.error_code}
                            for p in m.parts],
            "history": [{"ts_ms": h.ts_ms, "state": h.state.value, "detail": h.detail}
                        for h in outbox_read.history(conn, mid)],
        })
    return out
