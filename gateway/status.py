"""The status snapshot: written by the daemon every second, read by ``smsgate status``.

One row in ``daemon_status`` (same database file as the outbox): the daemon's pid, when it was
written, and a JSON document with routes, binds, modems, dispatcher counters and queue depths per
lane and state. A reader that finds the row older than :data:`STALE_AFTER_S` (or no row) says
the daemon is not running: the daemon rewrites it every second while it lives, so a stale row
means it died or was stopped.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

STALE_AFTER_S = 5.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS daemon_status (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    pid         INTEGER NOT NULL,
    started_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    state       TEXT    NOT NULL,      -- starting / running / draining / stopped
    snapshot    TEXT    NOT NULL       -- JSON, see Snapshot
) STRICT
"""


@dataclass(frozen=True, slots=True)
class Snapshot:
    pid: int
    started_ms: int
    updated_ms: int
    state: str
    data: dict[str, Any]

    def age_s(self, now_ms: int) -> float:
        return (now_ms - self.updated_ms) / 1000

    def running(self, now_ms: int) -> bool:
        return self.state != "stopped" and self.age_s(now_ms) <= STALE_AFTER_S


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.execute(SCHEMA)


def write_snapshot(
    conn: sqlite3.Connection, *, pid: int, started_ms: int, now_ms: int, state: str,
    data: dict[str, Any],
) -> None:
    conn.execute(
        "INSERT INTO daemon_status (id, pid, started_ms, updated_ms, state, snapshot) "
        "VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET pid = excluded.pid, "
        "started_ms = excluded.started_ms, updated_ms = excluded.updated_ms, "
        "state = excluded.state, snapshot = excluded.snapshot",
        (pid, started_ms, now_ms, state, json.dumps(data, sort_keys=True)),
    )


def read_snapshot(conn: sqlite3.Connection) -> Snapshot | None:
    try:
        row = conn.execute(
            "SELECT pid, started_ms, updated_ms, state, snapshot FROM daemon_status WHERE id = 1"
        ).fetchone()
    except sqlite3.OperationalError:  # no such table: no daemon ever ran on this database
        return None
    if row is None:
        return None
    return Snapshot(int(row[0]), int(row[1]), int(row[2]), str(row[3]), json.loads(row[4]))


def queue_counts(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Messages per lane and state, straight from the outbox (the CLI's own view)."""
    lanes = {0: "transactional", 1: "automation", 2: "campaign"}
    out: dict[str, dict[str, int]] = {}
    try:
        rows = conn.execute(
            "SELECT lane, state, count(*) FROM outbox_message GROUP BY lane, state"
        ).fetchall()
    except sqlite3.OperationalError:
        return out
    for lane, state, n in rows:
        out.setdefault(lanes.get(int(lane), str(lane)), {})[str(state)] = int(n)
    return out


def render(snapshot: Snapshot | None, queues: dict[str, dict[str, int]], now_ms: int,
           store: dict[str, int] | None = None) -> str:
    """The human form of ``smsgate status``; ``store``: :func:`store_counts`."""
    lines: list[str] = []
    if snapshot is None:
        lines.append("daemon not running (it never wrote a status to this database)")
    elif not snapshot.running(now_ms):
        why = "stopped" if snapshot.state == "stopped" else (
            f"no status for {snapshot.age_s(now_ms):.0f} s")
        lines.append(f"daemon not running ({why}; last pid {snapshot.pid})")
    else:
        up = (now_ms - snapshot.started_ms) / 1000
        lines.append(f"daemon {snapshot.state}: pid {snapshot.pid}, up {up:.0f} s")
        for route in snapshot.data.get("routes", []):
            mark = "up" if route.get("up") else "DOWN"
            lines.append(
                f"  route {route['name']} ({route['kind']}) {mark} state={route['state']} "
                f"in_flight={route['in_flight']}/{route['capacity']} rate={route['rate']:.1f}/s"
            )
            for key, value in route.get("detail", []):
                if value:
                    lines.append(f"      {key}: {value}")
        d = snapshot.data.get("dispatch", {})
        if d:
            lines.append(
                f"  dispatch: in_flight={d.get('in_flight', 0)} "
                f"parts_accepted={d.get('parts_accepted', 0)} "
                f"failed={d.get('messages_failed', 0)} retried={d.get('messages_retried', 0)} "
                f"reports={d.get('reports', 0)} rate={snapshot.data.get('parts_per_s', 0.0):.1f} "
                "parts/s"
            )
        i = snapshot.data.get("inbound", {})
        if i:
            lines.append(
                f"  inbound: received={i.get('received', 0)} opt_outs={i.get('opt_outs', 0)} "
                f"opt_ins={i.get('opt_ins', 0)} help={i.get('help', 0)} "
                f"flagged={i.get('flagged', 0)} duplicates={i.get('duplicates', 0)} "
                f"incomplete={i.get('incomplete', 0)}"
            )
        m = snapshot.data.get("membership", {})
        if m:
            lines.append(
                f"  membership: batches={m.get('batches', 0)} "
                f"due_rounds={m.get('due_rounds', 0)} entered={m.get('entered', 0)} "
                f"exited={m.get('exited', 0)} "
                f"last_latency={m.get('last_batch_latency_ms', 0.0):.0f}ms "
                f"failures={m.get('failures', 0)} "
                f"evaluator_pid={m.get('evaluator_pid') or '-'}"
            )
    if store:
        # queued rows with no daemon running, or growing: membership is behind
        lines.append(
            f"segment store: {store.get('membership_queued', 0)} changes queued for "
            f"membership; WAL {store.get('wal_bytes', 0) / 1e6:.0f} MB"
        )
    lines.append("queues (lane: state=count):")
    if not queues:
        lines.append("  (empty)")
    for lane, states in queues.items():
        body = " ".join(f"{s}={n}" for s, n in sorted(states.items()))
        lines.append(f"  {lane}: {body}")
    return "\n".join(lines)


def store_counts(conn: sqlite3.Connection, db_path: str) -> dict[str, int]:
    """What the segment store has not caught up with, read from the file itself (so it shows
    with the daemon down too): changes queued for membership (``membership_queue``, schema
    12) and the size of the WAL file the checkpointer has not emptied yet."""
    import os

    try:
        queued = int(conn.execute("SELECT count(*) FROM membership_queue").fetchone()[0])
    except sqlite3.OperationalError:  # a store older than schema 12, or none yet
        queued = 0
    try:
        wal = os.stat(f"{db_path}-wal").st_size
    except OSError:
        wal = 0
    return {"membership_queued": queued, "wal_bytes": wal}
