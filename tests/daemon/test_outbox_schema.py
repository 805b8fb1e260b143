"""Outbox migrations on real files: a database written by an older schema is brought up to
date, keeps its rows, and gets the cheaper structures."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.outbox import NewMessage, Outbox, State, Submitted
from gateway.outbox_schema import MIGRATIONS, VERSION_TABLE, is_final_event_state

START = 1_700_000_000_000


def clock() -> int:
    return START


def old_database(path: Path, version: int) -> None:
    """A file as schema ``version`` left it, with one failed message and its history."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(VERSION_TABLE)
    for steps in MIGRATIONS[:version]:
        for step in steps:
            if isinstance(step, str):
                conn.execute(step)
            else:
                step(conn)
    conn.execute("INSERT INTO schema_version VALUES ('outbox', ?)", (version,))
    conn.execute(
        "INSERT INTO outbox_message (id, lane, state, dest, body, total_parts, created_ms, "
        "not_before_ms, max_retries, updated_ms) VALUES (1, 0, 'failed', '+447700900001', 'x', "
        "1, 0, 0, 5, 0)"
    )
    conn.execute("INSERT INTO outbox_part (message_id, seq, state) VALUES (1, 0, 'failed')")
    conn.execute("INSERT INTO outbox_history VALUES (1, 1, 0, 'queued', NULL), "
                 "(1, 2, 0, 'failed', 'code 0xB')")
    conn.close()


def vm_steps_per_update(conn: sqlite3.Connection, rows: int) -> float:
    """SQLite VM instructions per row of a state change (deterministic, unlike time)."""
    for i in range(100, 100 + rows):
        conn.execute(
            "INSERT INTO outbox_message (id, lane, state, dest, body, total_parts, created_ms, "
            "not_before_ms, max_retries, updated_ms) "
            "VALUES (?, 0, 'queued', '+447700900001', 'x', 1, 0, 0, 5, 0)", (i,))
        conn.execute("INSERT INTO outbox_part (message_id, seq, state) VALUES (?, 0, 'queued')",
                     (i,))
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    conn.set_progress_handler(count, 1)
    conn.execute("UPDATE outbox_message SET state = 'sending' WHERE state = 'queued'")
    conn.execute("UPDATE outbox_part SET state = 'sending' WHERE state = 'queued'")
    conn.execute("INSERT INTO outbox_history (message_id, id, ts_ms, state) "
                 "SELECT id, id, 0, 'sending' FROM outbox_message WHERE id >= 100")
    conn.set_progress_handler(None, 1)
    return steps[0] / rows


@pytest.mark.parametrize("version", [1, 2, 3])
def test_old_database_migrates_keeping_its_rows(tmp_path: Path, version: int) -> None:
    db = tmp_path / "old.db"
    old_database(db, version)
    with Outbox(db, clock=clock) as ob:
        assert ob.schema_version == len(MIGRATIONS) == 4
        names = {r[0] for r in ob.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name LIKE 'outbox_%'")}
        assert "outbox_message_state" not in names and "outbox_history_final" in names
        # the final-state index holds the final rows already there
        assert ob.conn.execute(
            "SELECT message_id, id, state FROM outbox_history INDEXED BY outbox_history_final "
            f"WHERE id > 0 AND {is_final_event_state('state')}"
        ).fetchall() == [(1, 2, "failed")]
        assert ob.statistics().count(state=State.FAILED) == 1
        assert ob.conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        # and it keeps working
        mid = ob.enqueue(NewMessage("+447700900002", "hi")).id
        (claimed,) = ob.claim(5)
        ob.mark_many([Submitted(claimed.id, 0, "r", "c1")])
        assert ob.get(mid).state == State.SUBMITTED  # type: ignore[union-attr]


def test_state_checks_still_refuse_unknown_states_for_every_connection(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    old_database(db, 2)
    before = sqlite3.connect(db)  # opened before the migration: must see the new schema too
    before.execute("SELECT count(*) FROM outbox_message").fetchone()
    with Outbox(db, clock=clock) as ob:
        sql = ob.conn.execute(
            "SELECT group_concat(sql) FROM sqlite_master WHERE name IN ('outbox_message', "
            "'outbox_part')").fetchone()[0]
        assert "state IN (" not in sql and "state = 'queued' OR state = 'scheduled'" in sql
        assert "lane IN (" not in sql and "CHECK (lane = 0 OR lane = 1 OR lane = 2)" in sql
        for conn in (ob.conn, before):
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute("UPDATE outbox_message SET state = 'lost' WHERE id = 1")
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute("UPDATE outbox_part SET state = 'scheduled' WHERE message_id = 1")
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute("UPDATE outbox_message SET lane = 3 WHERE id = 1")
        conn.execute("UPDATE outbox_message SET state = 'queued' WHERE id = 1")  # a valid one
    before.close()


def test_a_state_change_costs_a_few_vm_steps_per_row_not_a_temporary_table(
    tmp_path: Path,
) -> None:
    """Schema 2's IN-list CHECKs and index condition built a temporary b-tree of the list for
    every row written; the migrated file (and the connection that migrated it) does not."""
    old_db, new_db = tmp_path / "v2.db", tmp_path / "v3.db"
    old_database(old_db, 2)
    old_database(new_db, 2)
    slow = sqlite3.connect(old_db, isolation_level=None)
    slow_steps = vm_steps_per_update(slow, 200)
    slow.close()
    with Outbox(new_db, clock=clock) as ob:
        fast_steps = vm_steps_per_update(ob.conn, 200)
    assert fast_steps < 0.75 * slow_steps, (fast_steps, slow_steps)
