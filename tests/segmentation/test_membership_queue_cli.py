"""Writes from the CLI reach stored membership, daemon or not (the membership queue).

Each command runs in its own process, as an operator runs them: `segment define`, then
`event add` / `import events` / `import subscribers`, then `segment count` (the stored count)
and `segment export`.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from segmentation.ingest import Event, ingest_events
from segmentation.store import Store
from tests.segmentation.conftest import run_cli

AT = "1768478400000"  # epoch ms, in the past


def _smsgate(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = run_cli(db, *args, timeout=120)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def _stored(db: Path, name: str) -> int:
    out = _smsgate(db, "segment", "count", name, "--json").stdout
    return int(json.loads(out)["count"])


def test_event_add_and_imports_from_the_cli_reach_stored_membership(tmp_path: Path) -> None:
    db = tmp_path / "gate.db"
    _smsgate(db, "segment", "define", "buyers", "count(purchase) >= 1")
    _smsgate(db, "segment", "define", "north", 'geo.region in ["NORTH"]')
    assert _stored(db, "buyers") == 0
    _smsgate(db, "event", "add", "+12125550101", "purchase", "--value", "5", "--at", AT,
             "--default-region", "US")
    assert _stored(db, "buyers") == 1
    events = tmp_path / "events.csv"
    with events.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["phone", "type", "ts", "value"])
        w.writerow(["+12125550102", "purchase", AT, "7"])
        w.writerow(["+12125550103", "link_click", AT, ""])
    _smsgate(db, "import", "events", str(events))
    assert _stored(db, "buyers") == 2
    subs = tmp_path / "subs.csv"
    subs.write_text("phone,region\n+12125550103,north\n", encoding="utf-8")
    _smsgate(db, "import", "subscribers", str(subs))
    assert _stored(db, "north") == 1
    exported = _smsgate(db, "segment", "export", "buyers").stdout
    assert "+12125550101" in exported and "+12125550102" in exported
    # nothing drifted, and nothing is left queued
    _smsgate(db, "segment", "reconcile")
    done = subprocess.run(
        [sys.executable, "-c", "import sqlite3, sys; print(sqlite3.connect(sys.argv[1])"
         ".execute('SELECT count(*) FROM membership_queue').fetchone()[0])", str(db)],
        capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "0"


def test_a_command_that_only_reads_leaves_the_queue_to_the_daemon(tmp_path: Path) -> None:
    db = tmp_path / "gate.db"
    _smsgate(db, "segment", "define", "buyers", "count(purchase) >= 1")
    with Store(db) as store:  # a writer that does not drain (an importer, a bridge)
        ingest_events(store, [Event("purchase", int(AT), number="+12125550101")])
    _smsgate(db, "subscriber", "export", "+12125550101")
    assert _queued(db) > 0 and _stored(db, "buyers") == 0
    _smsgate(db, "event", "add", "+12125550102", "link_click", "--at", AT)
    assert _queued(db) == 0 and _stored(db, "buyers") == 1  # a write applies it all


def _queued(db: Path) -> int:
    with Store(db) as store:
        return int(store.scalar("SELECT count(*) FROM membership_queue"))


class _CtrlCOnFirstLine(io.StringIO):
    """stderr where the operator presses Ctrl-C while the first progress line is printed."""

    pressed = False

    def write(self, s: str) -> int:
        if not self.pressed:
            self.pressed = True
            raise KeyboardInterrupt
        return super().write(s)


def _queue_clicks(store: Store, n: int) -> None:
    from segmentation.membership import Membership
    from segmentation.subscribers import upsert_subscriber

    Membership(store).define("clickers", "count(link_click) >= 1")
    for i in range(n):  # one batch each: one queue row each
        sid = upsert_subscriber(store, f"+1212555{i:04d}")
        ingest_events(store, [Event("link_click", int(AT), subscriber_id=sid)])


def test_a_long_segment_update_after_a_write_reports_progress_and_stops_on_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import gateway.cli.subscribers as cli
    import segmentation.membership as membership

    monkeypatch.setattr(membership, "QUEUE_CHUNK", 3)
    monkeypatch.setattr(cli, "PROGRESS_EVERY_S", 0.0)  # report after every batch
    with Store(tmp_path / "a.db") as store:
        _queue_clicks(store, 8)
        assert cli._apply_queue(store) is None
        lines = capsys.readouterr().err.splitlines()
        # 16 rows: each new subscriber and each click queued one
        assert [int(line.split()[3].replace(",", "")) for line in lines] == [13, 10, 7, 4, 1, 0]
        assert all(line.startswith("smsgate: updating segments: ") for line in lines)
        assert membership.queued_changes(store) == 0
    with Store(tmp_path / "b.db") as store:
        _queue_clicks(store, 8)
        err = _CtrlCOnFirstLine()
        monkeypatch.setattr(sys, "stderr", err)
        assert cli._apply_queue(store) == 130
        # the first batch committed, the rest stays queued and is named
        assert membership.queued_changes(store) == 13
        assert "13 segment changes stay queued" in err.getvalue()
        assert membership.Membership(store).members("clickers") != []
