"""Outbox store throughput: batched transactions vs one transaction per message.

Run by hand: ``.venv/bin/python bench/outbox_store.py [N] [FOLDER]``. Both sides use the same
durable settings (a file database, WAL, synchronous=NORMAL) on a fresh file in a temporary
folder (under FOLDER if given, e.g. /dev/shm to take the disk out of the figures).

- ours:  ``Outbox.enqueue_many`` in batches of 1000 (message + part + history rows); then
         ``claim(B)`` + ``mark_many(Submitted...)`` until the queue is empty, for B = 500 and
         for B = 80 (about what the daemon's dispatcher hands over per batch at full speed);
         then ``record_reports`` of a delivery report for every message, 80 per batch.
- peer:  the plain design: one ``BEGIN ... COMMIT`` per message for the same rows; per message
         one transaction to take the oldest ready row and one to store its carrier id; per
         report one transaction that finds the part by carrier id and stores both states.

Prints messages per second for each phase (wall clock and this process's CPU time; on a shared
machine the wall figure includes waiting for other processes), our CPU microseconds per message,
the peer's figures from the same run, and the ratio. The daemon's budget for the whole outbox
(claim + mark + history + event pump) is well under 30 us of CPU per message.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.outbox import NewMessage, Outbox, Report, ReportOutcome, State, Submitted

BATCH = 1000
CLAIMS = (500, 80)
REPORTS = 80


class Timer:
    """Wall and CPU seconds of a block."""

    def __enter__(self) -> Timer:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    def rates(self, n: int) -> Rates:
        return n / self.wall, n / self.cpu


Rates = tuple[float, float]  # (wall msgs/s, cpu msgs/s)


def messages(n: int) -> list[NewMessage]:
    return [NewMessage(to=f"+4479{i % 10**8:08d}", text=f"Your code is {i:06d}") for i in range(n)]


def ours(folder: Path, n: int, claim: int, reports: bool) -> dict[str, Rates]:
    batch = messages(n)
    out: dict[str, Rates] = {}
    with Outbox(folder / f"ours-{claim}.db") as ob:
        with Timer() as t:
            for i in range(0, n, BATCH):
                ob.enqueue_many(batch[i:i + BATCH])
        out["enqueue"] = t.rates(n)
        done = 0
        with Timer() as t:
            while True:
                claimed = ob.claim(claim)
                if not claimed:
                    break
                ob.mark_many([Submitted(c.id, 0, "bench", str(c.id)) for c in claimed])
                done += len(claimed)
        assert done == n, done
        out[f"claim+mark {claim}"] = t.rates(n)
        if reports:
            dlrs = [Report("bench", str(i), ReportOutcome.DELIVERED) for i in range(1, n + 1)]
            with Timer() as t:
                for i in range(0, n, REPORTS):
                    ob.record_reports(dlrs[i:i + REPORTS])
            out[f"reports {REPORTS}"] = t.rates(n)
            assert ob.statistics().count(state=State.DELIVERED) == n
    return out


PEER_SCHEMA = """
CREATE TABLE message (id INTEGER PRIMARY KEY, lane INTEGER, state TEXT, dest TEXT, sender TEXT,
    body TEXT, created_ms INTEGER, not_before_ms INTEGER, updated_ms INTEGER);
CREATE INDEX message_ready ON message(lane, not_before_ms, id) WHERE state = 'queued';
CREATE TABLE part (message_id INTEGER, seq INTEGER, state TEXT, carrier_id TEXT,
    PRIMARY KEY (message_id, seq));
CREATE INDEX part_carrier ON part(carrier_id) WHERE carrier_id IS NOT NULL;
CREATE TABLE history (id INTEGER PRIMARY KEY, message_id INTEGER, ts_ms INTEGER, state TEXT);
"""


def peer(folder: Path, n: int) -> dict[str, Rates]:
    conn = sqlite3.connect(folder / "peer.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(PEER_SCHEMA)
    out: dict[str, Rates] = {}
    with Timer() as t:
        for m in messages(n):
            peer_enqueue(conn, m)
    out["enqueue"] = t.rates(n)
    with Timer() as t:
        done = 0
        while peer_claim_and_mark(conn):
            done += 1
    assert done == n, done
    out["claim+mark"] = t.rates(n)
    with Timer() as t:
        for i in range(1, n + 1):
            peer_report(conn, str(i))
    out["reports"] = t.rates(n)
    conn.close()
    return out


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def peer_enqueue(conn: sqlite3.Connection, m: NewMessage) -> None:
    now = now_ms()
    conn.execute("BEGIN IMMEDIATE")
    cur = conn.execute(
        "INSERT INTO message (lane, state, dest, sender, body, created_ms, not_before_ms, "
        "updated_ms) VALUES (0, 'queued', ?, ?, ?, ?, ?, ?)",
        (m.to, m.sender, m.text, now, now, now),
    )
    mid = cur.lastrowid
    conn.execute("INSERT INTO part VALUES (?, 0, 'queued', NULL)", (mid,))
    conn.execute("INSERT INTO history (message_id, ts_ms, state) VALUES (?, ?, 'queued')",
                 (mid, now))
    conn.execute("COMMIT")


def peer_claim_and_mark(conn: sqlite3.Connection) -> bool:
    """Take the oldest ready message in one transaction, store its carrier id in another."""
    now = now_ms()
    conn.execute("BEGIN IMMEDIATE")
    row = conn.execute(
        "SELECT id FROM message WHERE state = 'queued' AND lane = 0 AND not_before_ms <= ? "
        "ORDER BY not_before_ms, id LIMIT 1", (now,)
    ).fetchone()
    if row is None:
        conn.execute("COMMIT")
        return False
    conn.execute("UPDATE message SET state = 'sending', updated_ms = ? WHERE id = ?",
                 (now, row[0]))
    conn.execute("UPDATE part SET state = 'sending' WHERE message_id = ?", (row[0],))
    conn.execute("INSERT INTO history (message_id, ts_ms, state) VALUES (?, ?, 'sending')",
                 (row[0], now))
    conn.execute("COMMIT")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE part SET state = 'submitted', carrier_id = ? WHERE message_id = ?",
                 (str(row[0]), row[0]))
    conn.execute("UPDATE message SET state = 'submitted', updated_ms = ? WHERE id = ?",
                 (now, row[0]))
    conn.execute("INSERT INTO history (message_id, ts_ms, state) VALUES (?, ?, 'submitted')",
                 (row[0], now))
    conn.execute("COMMIT")
    return True


def peer_report(conn: sqlite3.Connection, carrier_id: str) -> None:
    now = now_ms()
    conn.execute("BEGIN IMMEDIATE")
    row = conn.execute(
        "SELECT message_id, seq FROM part WHERE carrier_id = ?", (carrier_id,)
    ).fetchone()
    conn.execute("UPDATE part SET state = 'delivered' WHERE message_id = ? AND seq = ?", row)
    conn.execute("UPDATE message SET state = 'delivered', updated_ms = ? WHERE id = ?",
                 (now, row[0]))
    conn.execute("INSERT INTO history (message_id, ts_ms, state) VALUES (?, ?, 'delivered')",
                 (row[0], now))
    conn.execute("COMMIT")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    where = sys.argv[2] if len(sys.argv) > 2 else None  # e.g. /dev/shm to take the disk out
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        folder = Path(tmp)
        mine: dict[str, Rates] = {}
        for claim in CLAIMS:
            mine.update(ours(folder, n, claim, reports=claim == CLAIMS[-1]))
        theirs = peer(folder, n)
    place = f"a file under {where}" if where else "a file on disk"
    print(f"outbox store, {n} single-part messages, WAL + synchronous=NORMAL, {place}")
    print(f"{'phase':<16} {'clock':<5} {'ours msgs/s':>12} {'us/msg':>7} {'peer msgs/s':>12} "
          f"{'ratio':>7}")
    for phase, rates in mine.items():
        other = theirs[phase.split(" ")[0]]  # "claim+mark 80" -> the peer's "claim+mark"
        for i, clock in enumerate(("wall", "cpu")):
            print(f"{phase:<16} {clock:<5} {rates[i]:>12,.0f} {1e6 / rates[i]:>7.1f} "
                  f"{other[i]:>12,.0f} {rates[i] / other[i]:>6.1f}x")
    print("peer: one BEGIN/COMMIT per message (enqueue), two per message (claim, then mark), "
          "one per report")


if __name__ == "__main__":
    main()
