"""Durable parts of multipart MO messages for the SMPP binds (drivers/smpp/mo_store.py).

The client awaits ``add(part)`` before it acknowledges the part (deliver_sm_resp), so every part
the SMSC saw acknowledged must be on disk by then: each call commits before it returns, with
``synchronous=FULL`` (MO parts are few; a power cut must not lose an acknowledged one either).

One :class:`MoPartDb` per daemon: its own connection to the daemon's database, owned by one
private thread (the same pattern as gateway/dispatch_db.py), so calls from several binds' tasks
run one at a time in the order made and never block the loop. Each bind gets a
:class:`SqliteMoStore` view scoped to its name: two carriers may deliver parts with the same
sender, recipient and reference, and they are different messages.

Ages are wall-clock seconds (the Protocol's rule: a stored deadline outlives the process, the
monotonic clock does not).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from drivers.smpp.mo import MoPart, assemble, group_key
from drivers.smpp.mo_store import MoGroup

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS mo_pending_group (
    route TEXT NOT NULL, key TEXT NOT NULL, total INTEGER NOT NULL, deadline REAL NOT NULL,
    PRIMARY KEY (route, key)
);
CREATE INDEX IF NOT EXISTS mo_pending_group_deadline ON mo_pending_group (route, deadline);
CREATE TABLE IF NOT EXISTS mo_pending_part (
    route TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL,
    source_addr TEXT NOT NULL, destination_addr TEXT NOT NULL, ton INTEGER NOT NULL,
    npi INTEGER NOT NULL, data_coding INTEGER NOT NULL, user_data BLOB NOT NULL,
    reference INTEGER NOT NULL, total INTEGER NOT NULL, ref_kind TEXT NOT NULL,
    PRIMARY KEY (route, key, seq)
);
"""


class MoPartDb:
    """``db = await MoPartDb.open(path)``; ``db.store("bind-a", timeout=120)`` per bind."""

    def __init__(self, executor: ThreadPoolExecutor, conn: sqlite3.Connection,
                 clock: Callable[[], float]) -> None:
        self._executor = executor
        self._conn = conn  # touch only through run(): it lives on the executor's thread
        self.clock = clock
        self._closed = False

    @classmethod
    async def open(cls, path: str | Path, *,
                   clock: Callable[[], float] = time.time) -> MoPartDb:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mo-store")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, _connect, str(path))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, conn, clock)

    def store(self, route: str, timeout: float) -> SqliteMoStore:
        return SqliteMoStore(self, route, timeout)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        conn = self._conn
        return await loop.run_in_executor(self._executor, lambda: fn(conn))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=True)


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA journal_size_limit=0")  # as the outbox's connection (its comment)
    conn.executescript(SCHEMA)  # idempotent: IF NOT EXISTS
    return conn


class SqliteMoStore:
    """A ``MoPartStore`` for one bind, over :class:`MoPartDb`."""

    def __init__(self, db: MoPartDb, route: str, timeout: float) -> None:
        self._db = db
        self.route = route
        self.timeout = timeout

    async def add(self, part: MoPart) -> MoGroup | None:
        key = group_key(part)
        now = self._db.clock()
        return await self._db.run(lambda c: self._add(c, key, part, now))

    def _add(self, conn: sqlite3.Connection, key: str, part: MoPart,
             now: float) -> MoGroup | None:
        with _transaction(conn):
            conn.execute(
                "INSERT OR IGNORE INTO mo_pending_group VALUES (?, ?, ?, ?)",
                (self.route, key, part.total, now + self.timeout),
            )
            # A second copy of a seq is ignored (the first one is already acknowledged).
            conn.execute(
                "INSERT OR IGNORE INTO mo_pending_part VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (self.route, key, part.seq, part.source_addr, part.destination_addr,
                 part.source_addr_ton, part.source_addr_npi, part.data_coding, part.user_data,
                 part.reference, part.total, part.ref_kind),
            )
            (have,) = conn.execute(
                "SELECT count(*) FROM mo_pending_part WHERE route = ? AND key = ?",
                (self.route, key),
            ).fetchone()
            if have < part.total:
                return None
            return self._group(conn, key, part.total)

    def _group(self, conn: sqlite3.Connection, key: str, total: int) -> MoGroup:
        rows = conn.execute(
            "SELECT source_addr, destination_addr, data_coding, user_data, reference, total,"
            " seq, ref_kind, ton, npi FROM mo_pending_part WHERE route = ? AND key = ?",
            (self.route, key),
        ).fetchall()
        parts = [
            MoPart(r[0], r[1], r[2], bytes(r[3]), None, r[4], r[5], r[6], r[7], r[8], r[9])
            for r in rows
        ]
        return MoGroup(key, assemble(parts, total))

    async def remove(self, group: MoGroup) -> None:
        def remove(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                args = (self.route, group.key)
                conn.execute("DELETE FROM mo_pending_part WHERE route = ? AND key = ?", args)
                conn.execute("DELETE FROM mo_pending_group WHERE route = ? AND key = ?", args)

        await self._db.run(remove)

    async def expire(self) -> list[MoGroup]:
        now = self._db.clock()

        def expire(conn: sqlite3.Connection) -> list[MoGroup]:
            with _transaction(conn):
                due = conn.execute(
                    "SELECT key, total FROM mo_pending_group WHERE route = ? AND deadline <= ?"
                    " ORDER BY deadline",
                    (self.route, now),
                ).fetchall()
                # Re-armed one timeout on: a failed hand-over is offered again then.
                conn.executemany(
                    "UPDATE mo_pending_group SET deadline = ? WHERE route = ? AND key = ?",
                    [(now + self.timeout, self.route, key) for key, _ in due],
                )
                return [self._group(conn, key, total) for key, total in due]

        return await self._db.run(expire)

    async def next_expiry(self) -> float | None:
        def earliest(conn: sqlite3.Connection) -> float | None:
            (deadline,) = conn.execute(
                "SELECT min(deadline) FROM mo_pending_group WHERE route = ?", (self.route,)
            ).fetchone()
            return None if deadline is None else float(deadline)

        deadline = await self._db.run(earliest)
        return None if deadline is None else deadline - self._db.clock()

    async def counts(self) -> tuple[int, int]:
        """(groups, parts) waiting on this bind, for status and tests."""

        def counts(conn: sqlite3.Connection) -> tuple[int, int]:
            args = (self.route,)
            groups = conn.execute(
                "SELECT count(*) FROM mo_pending_group WHERE route = ?", args).fetchone()[0]
            parts = conn.execute(
                "SELECT count(*) FROM mo_pending_part WHERE route = ?", args).fetchone()[0]
            return int(groups), int(parts)

        return await self._db.run(counts)


# -- erasure and export (gateway.erasure), on a caller's connection and transaction ----------


def _has_parts(conn: sqlite3.Connection) -> bool:
    return conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'mo_pending_part'"
    ).fetchone() is not None


def export_parts(conn: sqlite3.Connection, senders: Collection[str]) -> list[dict[str, object]]:
    """Parts from ``senders`` still waiting for the rest of their message (raw user data in
    hex with its data_coding: a lone part may not decode on its own)."""
    if not _has_parts(conn):
        return []
    rows = conn.execute(
        "SELECT route, source_addr, destination_addr, data_coding, user_data, reference, total, "
        "seq FROM mo_pending_part WHERE source_addr IN (SELECT value FROM json_each(?)) "
        "ORDER BY route, key, seq", (json.dumps(sorted(senders)),),
    ).fetchall()
    names = ("route", "source_addr", "destination_addr", "data_coding", "user_data",
             "reference", "total", "seq")
    return [{**dict(zip(names, r, strict=True)), "user_data": bytes(r[4]).hex()} for r in rows]


def erase_parts(conn: sqlite3.Connection, senders: Collection[str]) -> tuple[int, int]:
    """Delete every waiting message (group and parts) with a part from ``senders``; returns
    (groups, parts) deleted. The group key names the sender too (drivers.smpp.mo.group_key),
    so the group row goes with its parts. An SMSC that later delivers a missing part of such
    a message starts a new group, which holds only that part."""
    if not _has_parts(conn):
        return 0, 0
    keys = json.dumps([json.loads(r[0]) for r in conn.execute(
        "SELECT DISTINCT json_array(route, key) FROM mo_pending_part "
        "WHERE source_addr IN (SELECT value FROM json_each(?))", (json.dumps(sorted(senders)),),
    )])
    doomed = "(route, key) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?))"
    parts = conn.execute(f"DELETE FROM mo_pending_part WHERE {doomed}", (keys,)).rowcount
    groups = conn.execute(f"DELETE FROM mo_pending_group WHERE {doomed}", (keys,)).rowcount
    return groups, parts


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (or ROLLBACK) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
