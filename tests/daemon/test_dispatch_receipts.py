"""A delivery receipt is acknowledged (deliver_sm_resp) only once its report is committed.

The daemon runs as ``smsgate run`` in its own process, the SMSC simulator in another. While
the receipts come in, this test holds the database's write lock from its own connection, so
the daemon cannot commit them; it checks that the SMSC got no deliver_sm_resp, then
``kill -9``s the daemon. The simulator (like a real SMSC) delivers unacknowledged deliver_sm
again to the next bind: after a restart every message ends ``delivered``. A daemon that
acknowledged before committing would have lost those reports for good (the messages would
stay ``submitted``, then become ``unknown``)."""

from __future__ import annotations

import collections
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from gateway.daemon_procs import REPO, SimProcess, write_config
from gateway.outbox import Outbox
from gateway.outbox_types import NewMessage

COUNT = 20


def start(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "--config", str(config)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def states(db: Path) -> collections.Counter[str]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return collections.Counter(dict(conn.execute(
            "SELECT state, count(*) FROM outbox_message GROUP BY state").fetchall()))
    finally:
        conn.close()


def wait_until(check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not reached in time"
        select.select([], [], [], 0.02)  # another process makes progress: poll, bounded


def test_receipts_held_back_from_commit_are_not_acknowledged(tmp_path: Path) -> None:
    with SimProcess("smsc", {"receipt_delay": 1.0}) as sim:
        config = write_config(tmp_path, smsc_port=sim.port,
                              extra="[daemon]\ndlr_unknown_after_s = 120\n")
        db = tmp_path / "smsgate.db"
        with Outbox(db) as box:
            box.enqueue_many([NewMessage(f"+4477009{i:05d}", f"m{i}") for i in range(COUNT)])
        daemon = start(config)
        lock = sqlite3.connect(db, timeout=10, isolation_level=None)
        try:
            wait_until(lambda: states(db)["submitted"] == COUNT, 30)
            lock.execute("BEGIN IMMEDIATE")  # the daemon's writer now waits for us
            acked = sim.command("stats")["deliver_responses"]
            assert acked == 0  # receipts come 1 s after each submit: none in yet
            wait_until(lambda: sim.command("stats")["delivers_sent"] >= COUNT, 10)
            # They reached the daemon; give it a bounded while to (wrongly) answer them.
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                assert sim.command("stats")["deliver_responses"] == 0
                select.select([], [], [], 0.05)
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(10)
        finally:
            if lock.in_transaction:
                lock.rollback()
            lock.close()
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(10)
        assert states(db)["submitted"] == COUNT  # the reports died with the process
        daemon = start(config)
        try:
            wait_until(lambda: states(db)["delivered"] == COUNT, 30)
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(30) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(10)
        stats = sim.command("stats")
        assert stats["deliver_responses"] >= COUNT
        assert stats["accepted"] == COUNT  # nothing was sent twice: only the receipts were
