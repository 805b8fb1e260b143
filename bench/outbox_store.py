"""Outbox store throughput: batched transactions vs one transaction per message.

Run by hand: ``.venv/bin/python bench/outbox_store.py [N]``. Both sides use the same durable
settings (a file database, WAL, synchronous=NORMAL) on a fresh file in a temporary folder.

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


def messages(n: int) -> list[NewMessage]:
    return [NewMessage(to=f"+4479{i % 10**8:08d}", text=f"Your code is {i:06d}") for i in range(n)]


def ours(folder: Path, n: int) -> tuple[float, float]:
    batch = messages(n)
    with Outbox(folder / "ours.db") as ob:
        started = time.perf_counter()
        for i in range(0, n, BATCH):
            ob.enqueue_many(batch[i:i + BATCH])
        enqueue_s = time.perf_counter() - started
        started = time.perf_counter()
        done = 0
        while True:
            claimed = ob.claim(CLAIM)
            if not claimed:
                break
            ob.mark_many([Submitted(c.id, 0, "bench", str(c.id)) for c in claimed])
            done += len(claimed)
        claim_s = time.perf_counter() - started
        assert done == n, done
    return n / enqueue_s, n / claim_s


PEER_SCHEMA = """
CREATE TABLE message (id INTEGER PRIMARY KEY, lane INTEGER, state TEXT, dest TEXT, sender TEXT,
    body TEXT, created_ms INTEGER, not_before_ms INTEGER, updated_ms INTEGER);
CREATE INDEX message_ready ON message(lane, not_before_ms, id) WHERE state = 'queued';
CREATE TABLE part (message_id INTEGER, seq INTEGER, state TEXT, carrier_id TEXT,
    PRIMARY KEY (message_id, seq));
CREATE TABLE history (id INTEGER PRIMARY KEY, message_id INTEGER, ts_ms INTEGER, state TEXT);
"""


def peer(folder: Path, n: int) -> tuple[float, float]:
    conn = sqlite3.connect(folder / "peer.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(PEER_SCHEMA)
    batch = messages(n)
    started = time.perf_counter()
    for m in batch:
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
    enqueue_s = time.perf_counter() - started
    started = time.perf_counter()
    done = 0
    while True:
        now = time.time_ns() // 1_000_000
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute(
            "SELECT id FROM message WHERE state = 'queued' AND lane = 0 AND not_before_ms <= ? "
            "ORDER BY not_before_ms, id LIMIT 1", (now,)
        ).fetchone()
        if row is None:
            conn.execute("COMMIT")
            break
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
        done += 1
    claim_s = time.perf_counter() - started
    conn.close()
    assert done == n, done
    return n / enqueue_s, n / claim_s


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        our_enqueue, our_claim = ours(folder, n)
        peer_enqueue, peer_claim = peer(folder, n)
    print(f"outbox store, {n} single-part messages, WAL + synchronous=NORMAL, file on disk")
    print(f"{'phase':<12} {'ours msgs/s':>12} {'peer msgs/s':>12} {'ratio':>7}")
    print(f"{'enqueue':<12} {our_enqueue:>12,.0f} {peer_enqueue:>12,.0f} "
          f"{our_enqueue / peer_enqueue:>6.1f}x")
    print(f"{'claim+mark':<12} {our_claim:>12,.0f} {peer_claim:>12,.0f} "
          f"{our_claim / peer_claim:>6.1f}x")
    print("peer: one BEGIN/COMMIT per message (enqueue), two per message (claim, then mark)")


if __name__ == "__main__":
    main()
