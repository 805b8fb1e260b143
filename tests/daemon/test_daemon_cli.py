"""``smsgate run`` and ``smsgate status`` as separate processes: a bad config names its line,
SIGTERM drains and exits 0, status reports a running daemon and says clearly when it is not."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gateway.daemon_procs import REPO, SimProcess, write_config
from gateway.outbox import Outbox
from gateway.outbox_states import State
from gateway.outbox_types import NewMessage
from tests.segmentation.conftest import process_gone


def smsgate(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def start_daemon(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "--config", str(config)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll a condition another process makes true (bounded; the daemon writes every second)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        select_wait(0.1)


def select_wait(seconds: float) -> None:
    import select

    select.select([], [], [], seconds)


def test_bad_config_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[database]\npath = "x.db"\n\n[[smpp]]\nname = "a"\nwindow = "many"\n')
    result = smsgate("run", "--config", str(bad))
    assert result.returncode == 2
    assert f"{bad}:" in result.stderr and "Traceback" not in result.stderr
    line = result.stderr.split(f"{bad}:")[1].split(":")[0]
    assert line.isdigit() and int(line) >= 4


def test_run_status_and_sigterm_drain(tmp_path: Path) -> None:
    with SimProcess("smsc", {"receipt_delay": 0.01}) as sim:
        config = write_config(tmp_path, smsc_port=sim.port)
        status = smsgate("status", "--json", "--config", str(config))
        assert status.returncode == 3 and json.loads(status.stdout)["running"] is False
        with Outbox(tmp_path / "smsgate.db") as box:
            box.enqueue_many([NewMessage(f"+4477009{i:05d}", "hi") for i in range(100)])
        daemon = start_daemon(config)
        try:
            def delivered() -> bool:
                with Outbox(tmp_path / "smsgate.db") as box:
                    return box.statistics().count(state=State.DELIVERED) == 100

            wait_for(delivered)
            def report_says_up() -> bool:
                out = json.loads(smsgate("status", "--json", "--config", str(config)).stdout)
                return bool(out["running"] and out["routes"] and out["routes"][0]["up"])

            wait_for(report_says_up)

            def evaluator_reported() -> bool:
                out = json.loads(smsgate("status", "--json", "--config", str(config)).stdout)
                return bool(out["membership"].get("evaluator_pid"))

            wait_for(evaluator_reported)
            report = json.loads(smsgate("status", "--json", "--config", str(config)).stdout)
            assert report["running"] is True and report["state"] == "running"
            assert report["queues"]["transactional"]["delivered"] == 100
            (route,) = report["routes"]
            assert route["name"] == "sim-smsc" and route["up"] is True
            assert report["membership"]["failures"] == 0 and "batches" in report["membership"]
            assert report["segment_store"]["membership_queued"] == 0
            assert report["segment_store"]["wal_bytes"] >= 0
            human = smsgate("status", "--config", str(config)).stdout
            assert "route sim-smsc (smpp) up" in human
            assert "inbound: received=0 " in human and "duplicates=0" in human
            assert "  membership: batches=" in human and " failures=0" in human
            # membership batches are evaluated in a process of the daemon's own
            evaluator = report["membership"]["evaluator_pid"]
            assert evaluator != daemon.pid and not process_gone(evaluator)
            assert f" evaluator_pid={evaluator}" in human
            assert "segment store: 0 changes queued for membership; WAL " in human
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(30) == 0
        finally:
            if daemon.poll() is None:
                os.kill(daemon.pid, signal.SIGKILL)
                daemon.wait()
            assert daemon.stdout is not None and daemon.stderr is not None
            daemon.stdout.close()
            daemon.stderr.close()
        assert process_gone(evaluator)  # stopped with the daemon
        after = smsgate("status", "--config", str(config))
        assert after.returncode == 3
        assert "daemon not running (stopped" in after.stdout
        assert sim.command("stats")["bound"] == 0  # unbound on the way out


def test_a_stale_status_row_reads_as_not_running(tmp_path: Path) -> None:
    import sqlite3

    from gateway.status import ensure_schema, read_snapshot, render, write_snapshot

    conn = sqlite3.connect(tmp_path / "s.db")
    ensure_schema(conn)
    write_snapshot(conn, pid=4242, started_ms=1_000, now_ms=10_000, state="running", data={})
    snapshot = read_snapshot(conn)
    conn.close()
    assert snapshot is not None and snapshot.running(now_ms=14_000)
    assert not snapshot.running(now_ms=16_000)  # a kill -9 stops the refresh
    text = render(snapshot, {}, now_ms=70_000)
    assert text.startswith("daemon not running (no status for 60 s; last pid 4242)")


def test_changes_queued_for_membership_show_with_the_daemon_down(tmp_path: Path) -> None:
    from gateway.status import render, store_counts
    from segmentation.ingest import Event, ingest_events
    from segmentation.membership import Membership
    from segmentation.store import Store

    db = tmp_path / "smsgate.db"
    with Store(db) as store:
        Membership(store).define("buyers", "count(purchase) >= 1")
        ingest_events(store, [Event("purchase", store.now_ms(), number=f"+1212555{i:04d}")
                              for i in range(101, 104)])
        counts = store_counts(store.conn, str(db))
    # each new number: its creation and its event
    assert counts["membership_queued"] == 6 and counts["wal_bytes"] > 0
    text = render(None, {}, 0, counts)
    assert text.splitlines()[1].startswith(
        "segment store: 6 changes queued for membership; WAL ")
    assert store_counts(sqlite3.connect(tmp_path / "empty.db"), str(tmp_path / "empty.db")) \
        == {"membership_queued": 0, "wal_bytes": 0}
