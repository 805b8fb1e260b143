"""Writing the outbox's history rows: every state change, timestamped, ordered by a global id.

``outbox_history`` is clustered by message (one b-tree, no second index to keep up on every
change); its ``id`` orders all changes and comes from ``outbox_sequence`` inside the writing
transaction, so ids are committed in increasing order and a reader's cursor over them never
skips a row (gateway/daemon_events.py relies on that).

The rows of one transaction go in with as few statements as possible, each one
``sqlite3_step``: every step releases and re-takes the GIL the daemon's event loop competes for,
so one statement over a JSON array beats ``executemany`` whatever the batch size. A run of
rows that share time, state and detail (a whole claim, a whole batch of submits) is one
``INSERT .. SELECT`` over a plain array of message ids, so SQLite parses no per-row JSON.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

HistoryRow = tuple[int, int, str, str | None]
"""(message_id, ts_ms, state, detail)"""

_MAX_RUNS = 4  # more runs than this (many distinct failures) go in as one row-per-element array


def write_history(conn: sqlite3.Connection, rows: Sequence[HistoryRow]) -> None:
    """Insert ``rows`` in order, with the next ids of the history sequence (in a transaction)."""
    if not rows:
        return
    runs = _runs(rows)
    # The sequence is read inside each INSERT (a subquery) and moved on once at the end: one
    # statement per run plus one, instead of a separate read.
    if len(runs) <= _MAX_RUNS:
        offset = 1
        for (ts, state, detail), ids in runs:
            conn.execute(
                "INSERT INTO outbox_history (message_id, id, ts_ms, state, detail) "
                "SELECT j.value, (SELECT value FROM outbox_sequence WHERE name = 'history') "
                "+ ? + j.key, ?, ?, ? FROM json_each(?) AS j",
                (offset, ts, state, detail, json.dumps(ids)),
            )
            offset += len(ids)
    else:
        conn.execute(
            "INSERT INTO outbox_history (message_id, id, ts_ms, state, detail) "
            "SELECT j.value ->> 0, (SELECT value FROM outbox_sequence WHERE name = 'history') "
            "+ 1 + j.key, j.value ->> 1, j.value ->> 2, j.value ->> 3 FROM json_each(?) AS j",
            (json.dumps(rows),),
        )
    conn.execute(
        "UPDATE outbox_sequence SET value = value + ? WHERE name = 'history'", (len(rows),)
    )


def _runs(rows: Sequence[HistoryRow]) -> list[tuple[tuple[int, str, str | None], list[int]]]:
    """Consecutive rows with the same (ts, state, detail), in order: grouping only neighbours
    keeps every row's place in the global order."""
    runs: list[tuple[tuple[int, str, str | None], list[int]]] = []
    key: tuple[int, str, str | None] | None = None
    ids: list[int] = []
    for mid, ts, state, detail in rows:
        if (ts, state, detail) != key:
            key = (ts, state, detail)
            ids = []
            runs.append((key, ids))
        ids.append(mid)
    return runs
