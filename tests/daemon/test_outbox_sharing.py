"""The outbox shares its database file: with the segment store, and with other processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from gateway.outbox import NewMessage, Outbox, Submitted
from gateway.outbox_schema import MIGRATIONS
from segmentation.store import Store

ROOT = Path(__file__).resolve().parents[2]


def test_outbox_and_segment_store_migrate_independently_in_one_file(tmp_path: Path) -> None:
    db = tmp_path / "smsgate.db"
    with Outbox(db) as ob:
        ob.enqueue(NewMessage("+447911123456", "first"))
    with Store(db) as store:
        store_version = store.schema_version
        assert store_version > 0  # the store migrated although outbox tables were there
    with Outbox(db) as ob:
        assert ob.schema_version == len(MIGRATIONS)
        assert len(ob.find()) == 1
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone() == (store_version,)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"outbox_message", "subscriber", "schema_version"} <= tables
    conn.close()


WRITER = r"""
import sys
from gateway.outbox import NewMessage, Outbox
with Outbox(sys.argv[1]) as ob:
    for batch in range(100):
        ob.enqueue_many([NewMessage(f"+4479111{batch * 10 + i:05d}", "m") for i in range(10)])
print("done", flush=True)
"""


def test_a_writer_process_and_the_claiming_process_never_lose_or_double_a_message(
    tmp_path: Path,
) -> None:
    """The CLI enqueues through its own connection while the daemon claims: BEGIN IMMEDIATE and
    the busy timeout serialise them; every message is claimed exactly once."""
    db = tmp_path / "smsgate.db"
    Outbox(db).close()  # schema first, so both sides start from the same file
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    claimed: list[int] = []
    with Outbox(db) as ob:
        for _ in range(100_000):
            batch = ob.claim(50)
            claimed.extend(c.id for c in batch)
            ob.mark_many([Submitted(c.id, 0, "r", str(c.id)) for c in batch])
            if not batch and writer.poll() is not None:
                break
        out, err = writer.communicate(timeout=60)
        assert writer.returncode == 0 and out.strip() == "done", err
        claimed.extend(c.id for c in ob.claim(1000))
    assert len(claimed) == 1000
    assert len(set(claimed)) == 1000
