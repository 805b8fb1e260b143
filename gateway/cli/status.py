"""``smsgate status [--json]``: routes, binds, modems, queues and rates of the running daemon.

Reads the status row the daemon rewrites every second (gateway/status.py) and counts the
outbox's queues itself; a row older than a few seconds means the daemon is not running, and
the command says so (exit 3, like ``systemctl status`` for a stopped unit).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.cli import add_config_argument, config_path

NOT_RUNNING = 3


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "status",
        help="show the daemon's routes, binds, modems, queues and rates",
        description="Show what the running daemon reports (refreshed every second): routes and "
        "their state, binds and modems, messages per lane and state, rates. Exit 3 when the "
        "daemon is not running.",
    )
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=status_command)


def status_command(args: argparse.Namespace) -> int:
    import json
    import sqlite3
    import time

    from gateway.config import ConfigError, load_config
    from gateway.status import queue_counts, read_snapshot, render, store_counts

    try:
        config = load_config(config_path(args))
    except ConfigError as exc:
        print(f"smsgate status: invalid configuration: {exc}", file=sys.stderr)
        return 2
    db = config.database.path
    now = time.time_ns() // 1_000_000
    store: dict[str, int] = {}
    if not db.exists():
        snapshot, queues = None, {}
    else:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            snapshot, queues = read_snapshot(conn), queue_counts(conn)
            store = store_counts(conn, str(db))
        finally:
            conn.close()
    running = snapshot is not None and snapshot.running(now)
    if args.json:
        out: dict[str, Any] = {"running": running, "queues": queues, "segment_store": store}
        if snapshot is not None:
            out.update(pid=snapshot.pid, state=snapshot.state, updated_ms=snapshot.updated_ms,
                       started_ms=snapshot.started_ms, **snapshot.data)
        print(json.dumps(out, sort_keys=True))
    else:
        print(render(snapshot, queues, now, store))
    return 0 if running else NOT_RUNNING
