"""Outbox store throughput: batched transactions vs one transaction per message.

Run by hand: ``.venv/bin/python bench/outbox_store.py [N] [FOLDER]``. Both sides use the same
durable settings (a file database, WAL, synchronous=NORMAL) on a fresh file in a temporary
folder (under FOLDER if given, e.g. /dev/shm to take the disk out of the figures).

- ours:  ``Outbox.enqueue_many`` in batches of 1000 (message + part + history rows), then
         ``claim(500)`` + ``mark_many(Submitted...)`` until the queue is empty.
- peer:  the plain design: one ``BEGIN ... COMMIT`` per message for the same rows, and per
         message one transaction to take the oldest ready row and one to store its carrier id.

Prints messages per second for each phase, the peer's figure from the same run, and the ratio.
The goal in the task: well over 5,000 messages/s for enqueue and for claim+mark.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.outbox import NewMessage, Outbox, Submitted

BATCH = 1000
CLAIM = 500


class Timer:
    """Wall and CPU seconds of a block: on a shared machine the wall figure includes waiting
    for other processes, the CPU figure is what this process itself spent."""

    def __enter__(self) -> Timer:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


Rates = tuple[float, float]  # (wall msgs/s, cpu msgs/s)


def messages(n: int) -> list[NewMessage]:
    return [NewMessage(to=f"+4479{i % 10**8:08d}", text=f"Your code is {i:06d}") for i in range(n)]


def ours(folder: Path, n: int) -> tuple[Rates, Rates]:
    batch = messages(n)
    with Outbox(folder / "ours.db") as ob:
        with Timer() as enqueue:
            for i in range(0, n, BATCH):
                ob.enqueue_many(batch[i:i + BATCH])
        done = 0
        with Timer() as claim:
            while True:
                claimed = ob.claim(CLAIM)
                if not claimed:
                    break
                ob.mark_many([Submitted(c.id, 0, "bench", str(c.id)) for c in claimed])
                done += len(claimed)
        assert done == n, done
    return (n / enqueue.wall, n / enqueue.cpu), (n / claim.wall, n / claim.cpu)


PEER_SCHEMA = """
CREATE TABLE message (id INTEGER PRIMARY KEY, lane INTEGER, state TEXT, dest TEXT, sender TEXT,
    body TEXT, created_ms INTEGER, not_before_ms INTEGER, updated_ms INTEGER);
CREATE INDEX message_ready ON message(lane, not_before_ms, id) WHERE state = 'queued';
CREATE TABLE part (message_id INTEGER, seq INTEGER, state TEXT, carrier_id TEXT,
    PRIMARY KEY (message_id, seq));
CREATE TABLE history (id INTEGER PRIMARY KEY, message_id INTEGER, ts_ms INTEGER, state TEXT);
"""


def peer(folder: Path, n: int) -> tuple[Rates, Rates]:
    conn = sqlite3.connect(folder / "peer.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(PEER_SCHEMA)
    batch = messages(n)
    with Timer() as enqueue:
        for m in batch:
            peer_enqueue(conn, m)
    done = 0
    with Timer() as claim:
        while peer_claim_and_mark(conn):
            done += 1
    conn.close()
    assert done == n, done
    return (n / enqueue.wall, n / enqueue.cpu), (n / claim.wall, n / claim.cpu)


def peer_enqueue(conn: sqlite3.Connection, m: NewMessage) -> None:
    now = time.time_ns() // 1_000_000
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
    now = time.time_ns() // 1_000_000
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
    conn.execute("COMMIT")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE part SET state = 'submitted', carrier_id = ? WHERE message_id = ?",
                 (str(row[0]), row[0]))
    conn.execute("UPDATE message SET state = 'submitted', updated_ms = ? WHERE id = ?",
                 (now, row[0]))
    conn.execute("COMMIT")
    return True


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    where = sys.argv[2] if len(sys.argv) > 2 else None  # e.g. /dev/shm to take the disk out
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        folder = Path(tmp)
        our_enqueue, our_claim = ours(folder, n)
        peer_enqueue, peer_claim = peer(folder, n)
    place = f"a file under {where}" if where else "a file on disk"
    print(f"outbox store, {n} single-part messages, WAL + synchronous=NORMAL, {place}")
    print(f"{'phase':<12} {'clock':<5} {'ours msgs/s':>12} {'peer msgs/s':>12} {'ratio':>7}")
    for phase, mine, theirs in (("enqueue", our_enqueue, peer_enqueue),
                                ("claim+mark", our_claim, peer_claim)):
        for i, clock in enumerate(("wall", "cpu")):
            print(f"{phase:<12} {clock:<5} {mine[i]:>12,.0f} {theirs[i]:>12,.0f} "
                  f"{mine[i] / theirs[i]:>6.1f}x")
    print("peer: one BEGIN/COMMIT per message (enqueue), two per message (claim, then mark)")


if __name__ == "__main__":
    main()
