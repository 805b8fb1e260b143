"""WAL checkpoints from a connection of their own (segmentation.checkpoint), on real files."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.outbox import Outbox
from segmentation.checkpoint import (
    FALLBACK_FACTOR,
    SAFETY_NET_PAGES,
    WAL_SIZE_LIMIT,
    WalCheckpointer,
    WalReset,
    checkpointing,
    run_checkpointer,
)
from segmentation.store import Store

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


def _read_bytes() -> int:
    """Bytes this thread has read through the kernel (/proc/thread-self/io): what SQLite had
    to fetch because its page cache did not hold it."""
    with open("/proc/thread-self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


def _scan_reads(store: Store) -> int:
    before = _read_bytes()
    store.conn.execute("SELECT sum(length(b)) FROM t").fetchone()
    return _read_bytes() - before


def _store_writer(path: Path) -> Store:
    store = Store(path, autocheckpoint_pages=SAFETY_NET_PAGES)
    store.conn.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, b BLOB)")
    return store


def _taking_part(path: Path) -> tuple[Store, WalReset]:
    """A store writer that restarts the WAL when its checkpointer asks, and their WalReset."""
    store = _store_writer(path)
    reset = WalReset()
    store.restart_wal_when_asked(reset)
    return store, reset


def _store_write(store: Store, cp: WalCheckpointer | None = None, rows: int = 20,
                 blob: bytes | None = None) -> None:
    """One transaction of the store's writer; ``cp`` steps while it is open, as the daemon's
    checkpointer does while a batch is built. (Stepped only between transactions, every
    fully copied WAL would be restarted by SQLite itself at the writer's next BEGIN, and the
    writer's RESTART would never be needed: found in review.)"""
    with store.atomic() as conn:
        if cp is not None:
            cp.step()
        conn.executemany("INSERT INTO t(b) VALUES (?)",
                         [(blob or os.urandom(3000),) for _ in range(rows)])


def test_the_writer_restarts_the_wal_when_asked_and_keeps_its_page_cache(
        tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    store, reset = _taking_part(db)
    assert store.wal_reset is reset
    cp = WalCheckpointer(str(db), restart_pages=100, slack_pages=30, busy_ms=0, reset=reset)
    try:
        largest = 0
        for _ in range(100):
            _store_write(store, cp)
            largest = max(largest, cp.statistics().largest_log)
        assert reset.restarts >= 10 and reset.refused == 0
        assert cp.statistics().restarts == 0  # every restart was the writer's
        assert largest < 200  # ~5 writes of ~22 frames: never the 2,000+ written
        # the writer's cache survives its own restart ...
        assert _scan_reads(store) < PAGE  # warm
        before = reset.restarts
        while reset.restarts == before:
            _store_write(store, cp)
        assert _scan_reads(store) < PAGE
    finally:
        cp.close()
    # ... and not one made by another connection: the whole table is read again
    other = WalCheckpointer(str(db), restart_pages=1, slack_pages=10**6, busy_ms=0)
    try:
        _store_write(store)
        assert other.step().restarted
    finally:
        other.close()
    assert _scan_reads(store) > 100 * 20 * 3000
    assert store.scalar("PRAGMA integrity_check") == "ok"
    store.close()


def test_no_second_restart_is_asked_before_the_writer_wrote_again(tmp_path: Path) -> None:
    """Found in review: after the writer's RESTART the WAL header keeps the old frame count
    until the next commit; a step in between asked again, and the writer then copied a
    whole batch itself for a WAL holding one batch."""
    db = tmp_path / "a.db"
    store, reset = _taking_part(db)
    cp = WalCheckpointer(str(db), restart_pages=100, slack_pages=30, busy_ms=0, reset=reset)
    try:
        while reset.restarts == 0:
            _store_write(store, cp)
        assert reset.restarted_at >= 100
        _store_write(store, cp)  # the step inside sees the old count: it must not ask
        assert (reset.restarts, reset.due) == (1, False)
        assert _log(db) < 50  # one write's frames: the log started again
    finally:
        cp.close()
        store.close()


@pytest.mark.parametrize("first_after_restart", ["segment writer", "outbox"])
def test_a_restart_leaves_no_old_frames_in_the_file(tmp_path: Path,
                                                     first_after_restart: str) -> None:
    """Found in review: a restart reuses the WAL file from its beginning, so the tail of a
    longer earlier cycle (held by a reader) kept page images of rows erased since. Every
    writer of the file trims it at the first commit after a restart (journal_size_limit),
    whichever commits first."""
    db = tmp_path / "s.db"
    store, reset = _taking_part(db)
    store.conn.execute("PRAGMA secure_delete=ON")  # as the erasure does
    outbox = Outbox(tmp_path / "s.db")
    outbox.conn.execute("CREATE TABLE IF NOT EXISTS o(b BLOB)")
    secret = b"SECRET-PHONE-+447700900123".ljust(3000, b".")
    _store_write(store)
    evaluator = sqlite3.connect(db, isolation_level=None)
    evaluator.execute("BEGIN")
    evaluator.execute("SELECT count(*) FROM t").fetchone()  # a long snapshot: a long cycle
    cp = WalCheckpointer(str(db), restart_pages=200, slack_pages=30, busy_ms=0, reset=reset)
    try:
        for _ in range(20):  # ~440 frames, the person's rows among them
            _store_write(store, cp, blob=secret)
        with store.atomic() as conn:  # the person is erased
            conn.execute("DELETE FROM t WHERE b = ?", (secret,))
        evaluator.execute("COMMIT")
        while reset.restarts == 0:
            _store_write(store, cp)
        if first_after_restart == "outbox":
            with outbox.conn:
                outbox.conn.execute("INSERT INTO o(b) VALUES (?)", (os.urandom(3000),))
        for _ in range(3):
            _store_write(store, cp)
    finally:
        cp.close()
        evaluator.close()
    wal = Path(f"{db}-wal").read_bytes()
    assert reset.restarts >= 1 and len(wal) < 150 * (PAGE + 24)
    assert b"SECRET-PHONE" not in wal
    outbox.close()
    store.close()


def test_every_writer_of_the_file_trims_the_wal_after_a_restart(tmp_path: Path) -> None:
    from gateway.mo_store import _connect

    store = _store_writer(tmp_path / "x.db")
    outbox = Outbox(tmp_path / "x.db")
    mo = _connect(str(tmp_path / "x.db"))
    try:
        for conn in (store.conn, outbox.conn, mo):
            assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] == WAL_SIZE_LIMIT
    finally:
        mo.close()
        outbox.close()
        store.close()


def test_a_reader_refuses_the_writer_s_restart_without_making_it_wait(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    store, reset = _taking_part(db)
    _store_write(store)
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()  # a snapshot in the WAL
    _store_write(store)
    reset.due = True
    started = time.monotonic()
    _store_write(store)  # busy_timeout is 5 s: the attempt must not wait for the reader
    assert time.monotonic() - started < 2
    assert (reset.restarts, reset.refused, reset.due) == (0, 1, False)
    assert store.scalar("PRAGMA busy_timeout") == 5000
    reader.execute("COMMIT")
    reset.due = True
    _store_write(store)
    assert (reset.restarts, reset.refused) == (1, 1)
    grown = _log(db)  # four writes' frames
    _store_write(store)  # the log starts again from its beginning: one write's frames
    assert _log(db) <= grown / 3
    reader.close()
    store.close()


def test_past_the_fallback_the_checkpointer_truncates_itself(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    writer = _writer(db)  # a writer that does not take part: nobody acts on the reset
    _write(writer)
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()  # holds the WAL from growing back
    reset = WalReset()
    cp = WalCheckpointer(str(db), restart_pages=50, slack_pages=10**6, busy_ms=0, reset=reset)
    try:
        steps = []
        for _ in range(10):
            _write(writer)
            steps.append(cp.step())
        assert reset.due and steps[-1].log >= FALLBACK_FACTOR * 50
        assert not any(s.restarted for s in steps)  # asked the writer; past 150, the reader
        reader.execute("COMMIT")
        _write(writer)
        last = cp.step()
        assert last.restarted and cp.statistics().restarts == 1
    finally:
        cp.close()
        reader.close()
    assert _wal_frames(db) == 0  # truncated
    writer.close()


def test_with_a_reset_the_checkpointer_asks_instead_of_truncating(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    writer = _writer(db)
    for reset in (WalReset(), None):
        cp = WalCheckpointer(str(db), restart_pages=50, slack_pages=10, busy_ms=0, reset=reset)
        try:
            _write(writer, rows=80)  # one transaction of 80+ frames, all copied at the step
            step = cp.step()
        finally:
            cp.close()
        assert step.log >= 80
        if reset is not None:
            assert step.copied == step.log and reset.due
            assert not step.restarted and _wal_frames(db) >= 80
        else:
            assert step.restarted and _wal_frames(db) == 0
    writer.close()


@contextlib.contextmanager
def _past_the_fallback(tmp_path: Path, *,
                       slack_pages: int) -> Iterator[tuple[Store, WalReset, WalCheckpointer]]:
    """A writer taking part in WAL restarts, its checkpointer (restart_pages=100), and a WAL
    grown past FALLBACK_FACTOR x restart_pages while a reader (an export, the evaluator)
    held a snapshot, the reader gone since."""
    store, reset = _taking_part(tmp_path / "k.db")
    cp = WalCheckpointer(str(store.path), restart_pages=100, slack_pages=slack_pages,
                         busy_ms=0, reset=reset)
    try:
        _store_write(store)
        reader = sqlite3.connect(store.path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()
        while cp.statistics().largest_log < FALLBACK_FACTOR * cp.restart_pages:
            _store_write(store, cp)
        reader.execute("COMMIT")
        reader.close()
        yield store, reset, cp
    finally:
        cp.close()
        store.close()


def test_past_the_fallback_the_writer_is_still_asked(tmp_path: Path) -> None:
    with _past_the_fallback(tmp_path, slack_pages=10**6) as (store, reset, cp):
        _store_write(store, cp)  # the step inside cannot truncate (the writer's lock) ...
        assert reset.restarts == 1 and cp.statistics().restarts == 0  # ... the writer did
        _store_write(store)  # and its next commit starts the log again
        assert _log(Path(store.path)) < 50


def test_after_its_own_fallback_truncate_the_writer_is_not_asked_any_more(
        tmp_path: Path) -> None:
    """Found in review: the request stayed set after the checkpointer's own TRUNCATE, and
    the writer then restarted a WAL of one batch, copying it itself."""
    with _past_the_fallback(tmp_path, slack_pages=10**6) as (store, reset, cp):
        assert cp.step().restarted  # between two batches: the checkpointer truncates
        _store_write(store)
        assert (reset.restarts, reset.due) == (0, False)


def test_right_after_the_writer_s_restart_the_fallback_does_not_truncate(
        tmp_path: Path) -> None:
    """Found in review: a step between the writer's RESTART (of a WAL past the fallback) and
    its next commit truncated again from the checkpointer's connection, emptying the
    writer's page cache."""
    with _past_the_fallback(tmp_path, slack_pages=30) as (store, reset, cp):
        _store_write(store, cp)  # RESTART after this COMMIT
        assert reset.restarts == 1 and reset.restarted_at >= FALLBACK_FACTOR * 100
        assert _scan_reads(store) < PAGE
        assert not cp.step().restarted
        assert _scan_reads(store) < PAGE  # the cache is still the writer's


def test_a_step_racing_the_writer_s_restart_does_not_ask_again(tmp_path: Path) -> None:
    """Found in review: a step finishing between the writer's RESTART and the bookkeeping
    after it asked for the restart just made. The interleaving is forced by stepping right
    after the RESTART statement returns."""
    db = tmp_path / "r.db"
    store = _store_writer(db)
    reset = WalReset()
    cp = WalCheckpointer(str(db), restart_pages=100, slack_pages=30, busy_ms=0, reset=reset)

    class Racing:  # the writer's connection; the checkpointer's thread runs in between
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            cur = self.conn.execute(sql, *args)
            if sql.startswith("PRAGMA wal_checkpoint(RESTART)"):
                row = cur.fetchone()
                cp.step()
                return self.conn.execute("SELECT ?, ?, ?", row)
            return cur

    try:
        while not reset.due:
            _store_write(store, cp)
        assert reset.run(Racing(store.conn))  # type: ignore[arg-type]
        assert not reset.due
    finally:
        cp.close()
        store.close()


def test_the_mo_part_store_trims_the_wal_when_it_writes_first_after_a_restart(
        tmp_path: Path) -> None:
    from gateway.mo_store import _connect

    db = tmp_path / "j.db"
    store, reset = _taking_part(db)
    mo = _connect(str(db))
    for _ in range(30):  # ~2.5 MB of WAL
        _store_write(store)
    cp = WalCheckpointer(str(db), restart_pages=300, slack_pages=30, busy_ms=0, reset=reset)
    try:
        _store_write(store, cp)
    finally:
        cp.close()
    assert reset.restarts == 1
    mo.execute("CREATE TABLE IF NOT EXISTS o(b BLOB)")
    mo.execute("INSERT INTO o(b) VALUES (randomblob(3000))")
    assert Path(f"{db}-wal").stat().st_size < 100 * (PAGE + 24)
    mo.close()
    store.close()
