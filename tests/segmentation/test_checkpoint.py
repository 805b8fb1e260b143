"""WAL checkpoints from a connection of their own (segmentation.checkpoint), on real files."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from segmentation.checkpoint import (
    SAFETY_NET_PAGES,
    WalCheckpointer,
    checkpointing,
    run_checkpointer,
)

PAGE = 4096


def _writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_PAGES}")  # as the daemon's store
    conn.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, b BLOB)")
    return conn


def _write(conn: sqlite3.Connection, rows: int = 20) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO t(b) VALUES (?)", [(os.urandom(3000),) for _ in range(rows)])
    conn.execute("COMMIT")


def _wal_frames(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return max(0, (wal.stat().st_size - 32) // (PAGE + 24)) if wal.exists() else 0


def _log(path: Path) -> int:
    """Frames in the WAL now (a PASSIVE checkpoint's report, from a connection of its own)."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
    finally:
        conn.close()


def test_the_wal_stays_bounded_and_nothing_is_lost(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    writer = _writer(db)
    for _ in range(200):  # no checkpointer: the writer alone grows the WAL past 4,000 frames
        _write(writer)
    grown = _wal_frames(db)
    assert grown > 4000
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cp = WalCheckpointer(str(db), restart_pages=50, slack_pages=10, busy_ms=0)
    try:
        largest = 0
        for i in range(200):
            _write(writer)
            if i % 5 == 4:  # the thread's steps, interleaved with the writer's commits
                step = cp.step()
                largest = max(largest, step.log)
                assert step.copied <= step.log
        stats = cp.statistics()
    finally:
        cp.close()
    assert stats.steps == 40 and stats.restarts >= 5
    # five transactions' frames at most, against the 4,000+ the writer alone let pile up
    assert largest < 200 and _log(db) < 200 < grown / 20
    assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 400 * 20
    assert writer.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    writer.close()


def test_a_reader_s_snapshot_stops_it_until_the_reader_finishes(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    writer = _writer(db)
    _write(writer)
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 20  # snapshot taken
    for _ in range(10):
        _write(writer)
    cp = WalCheckpointer(str(db), restart_pages=10, slack_pages=0, busy_ms=0)
    try:
        held = cp.step()
        assert held.copied < held.log and not held.restarted  # frames after the snapshot wait
        reader.execute("COMMIT")
        freed = cp.step()
        assert freed.restarted and not freed.busy
        assert cp.statistics().restarts == 1
    finally:
        cp.close()
        reader.close()
    _write(writer)  # the next writer starts the WAL from its beginning
    assert _log(db) < held.log
    writer.close()


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="restart_pages"):
        WalCheckpointer(str(tmp_path / "x.db"), restart_pages=0)


def test_the_thread_and_the_task_run_until_stopped(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    writer = _writer(db)
    with checkpointing(str(db), every_ms=1, restart_pages=50, slack_pages=50) as stats:
        for _ in range(100):
            _write(writer)
    assert stats and stats[0].steps > 0
    assert writer.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    async def run() -> int:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(run_checkpointer(str(db), every_ms=1))
            for _ in range(200):  # ~5,000 frames: the WAL would hold them all without it
                _write(writer)
                await asyncio.sleep(0.002)  # the loop runs the task's steps meanwhile
            task.cancel()
        return _log(db)

    assert asyncio.run(asyncio.wait_for(run(), 30)) < 2500  # of ~5,000 written
    assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 300 * 20
    writer.close()


def test_a_failure_in_the_thread_reaches_the_caller(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError), checkpointing(
            str(tmp_path / "missing" / "x.db")):
        pass
