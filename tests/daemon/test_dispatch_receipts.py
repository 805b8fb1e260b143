"""A delivery receipt is acknowledged (deliver_sm_resp) only once its report is committed.

The daemon runs as ``smsgate run`` in its own process, the SMSC simulator in another. While
the receipts come in, this test holds the database's write lock from its own connection, so
the daemon cannot commit them; it checks that the SMSC got no deliver_sm_resp, then
``kill -9``s the daemon. The simulator (like a real SMSC) delivers unacknowledged deliver_sm
again to the next bind: after a restart every message ends ``delivered``. A daemon that
acknowledged before committing would have lost those reports for good (the messages would
stay ``submitted``, then become ``unknown``)."""

from __future__ import annotations

import select
import signal
import sqlite3
import time
from pathlib import Path

from gateway.daemon_procs import SimProcess, write_config
from gateway.outbox import Outbox
from gateway.outbox_types import NewMessage
from tests.daemon.daemon_process import daemon_process, start, states, wait_until

COUNT = 20


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
        with daemon_process(config) as daemon:
            wait_until(lambda: states(db)["delivered"] == COUNT, 30)
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(30) == 0
        stats = sim.command("stats")
        assert stats["deliver_responses"] >= COUNT
        assert stats["accepted"] == COUNT  # nothing was sent twice: only the receipts were
