"""A durable ``MoPartStore`` over a real SQLite file, for the tests (the daemon has its own).

Every method commits before it returns, so a part is on disk before the client acknowledges
it. Run as a module it is a client process for the crash test:
``python -m tests.smpp.sqlite_mo_store PORT DB [--hang-after N]`` binds to the simulator on
PORT with the store on DB, prints ``bound`` and ``added SEQ`` lines, and with ``--hang-after``
stops answering after its N-th stored part (so that part is stored but never acknowledged).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import time
from collections.abc import Callable

from drivers.smpp.client import InboundEvent, SmppClient
from drivers.smpp.config import SmppConfig
from drivers.smpp.mo import MoPart, assemble, group_key
from drivers.smpp.mo_store import MoGroup

SCHEMA = """
CREATE TABLE IF NOT EXISTS mo_group (
    key TEXT PRIMARY KEY, total INTEGER NOT NULL, deadline REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS mo_part (
    key TEXT NOT NULL, seq INTEGER NOT NULL, source_addr TEXT NOT NULL,
    destination_addr TEXT NOT NULL, ton INTEGER NOT NULL, npi INTEGER NOT NULL,
    data_coding INTEGER NOT NULL, user_data BLOB NOT NULL, reference INTEGER NOT NULL,
    total INTEGER NOT NULL, ref_kind TEXT NOT NULL, PRIMARY KEY (key, seq)
);
"""


class SqliteMoStore:
    def __init__(
        self, path: str, timeout: float = 120.0, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.timeout = timeout
        self.clock = clock
        self.db = sqlite3.connect(path)
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def _group(self, key: str, total: int) -> MoGroup:
        rows = self.db.execute(
            "SELECT source_addr, destination_addr, data_coding, user_data, reference, total,"
            " seq, ref_kind, ton, npi FROM mo_part WHERE key = ?",
            (key,),
        ).fetchall()
        parts = [MoPart(r[0], r[1], r[2], r[3], None, *r[4:]) for r in rows]
        return MoGroup(key, assemble(parts, total))

    async def add(self, part: MoPart) -> MoGroup | None:
        key = group_key(part)
        with self.db:  # one transaction, committed before we return
            self.db.execute(
                "INSERT OR IGNORE INTO mo_group VALUES (?, ?, ?)",
                (key, part.total, self.clock() + self.timeout),
            )
            self.db.execute(
                "INSERT OR IGNORE INTO mo_part VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    part.seq,
                    part.source_addr,
                    part.destination_addr,
                    part.source_addr_ton,
                    part.source_addr_npi,
                    part.data_coding,
                    part.user_data,
                    part.reference,
                    part.total,
                    part.ref_kind,
                ),
            )
        (have,) = self.db.execute("SELECT count(*) FROM mo_part WHERE key = ?", (key,)).fetchone()
        return self._group(key, part.total) if have >= part.total else None

    async def remove(self, group: MoGroup) -> None:
        with self.db:
            self.db.execute("DELETE FROM mo_part WHERE key = ?", (group.key,))
            self.db.execute("DELETE FROM mo_group WHERE key = ?", (group.key,))

    async def expire(self) -> list[MoGroup]:
        now = self.clock()
        with self.db:
            due = self.db.execute(
                "SELECT key, total FROM mo_group WHERE deadline <= ? ORDER BY deadline", (now,)
            ).fetchall()
            self.db.executemany(
                "UPDATE mo_group SET deadline = ? WHERE key = ?",
                [(now + self.timeout, key) for key, _ in due],
            )
        return [self._group(key, total) for key, total in due]

    async def next_expiry(self) -> float | None:
        (deadline,) = self.db.execute("SELECT min(deadline) FROM mo_group").fetchone()
        return None if deadline is None else deadline - self.clock()

    def counts(self) -> tuple[int, int]:
        """(groups, parts) stored."""
        groups = self.db.execute("SELECT count(*) FROM mo_group").fetchone()[0]
        parts = self.db.execute("SELECT count(*) FROM mo_part").fetchone()[0]
        return groups, parts


class _Reporting(SqliteMoStore):
    """Prints each stored part; after the ``hang_after``-th it never returns (the process is
    killed while the part is stored but not yet acknowledged)."""

    def __init__(self, path: str, hang_after: int | None) -> None:
        super().__init__(path)
        self.hang_after = hang_after
        self.added = 0

    async def add(self, part: MoPart) -> MoGroup | None:
        group = await super().add(part)
        self.added += 1
        print(f"added {part.seq}", flush=True)
        if self.added == self.hang_after:
            await asyncio.Event().wait()
        return group


async def _child(port: int, path: str, hang_after: int | None) -> None:
    async def handler(event: InboundEvent) -> None:
        print(f"handed over {event!r}", flush=True)

    config = SmppConfig("crash", "127.0.0.1", port, "shop", "secret", response_timeout=5.0)
    store = _Reporting(path, hang_after)
    async with SmppClient(config, handler, mo_store=store) as client:
        await client.wait_bound(10)
        print("bound", flush=True)
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("db")
    parser.add_argument("--hang-after", type=int)
    args = parser.parse_args()
    asyncio.run(_child(args.port, args.db, args.hang_after))
