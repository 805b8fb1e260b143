"""The daemon as ``smsgate run`` in a process of its own, for the kill -9 tests: start it, read
message states from another connection, and poll for another process's progress."""

from __future__ import annotations

import collections
import contextlib
import select
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from gateway.daemon_procs import REPO


def start(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "--config", str(config)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def daemon_process(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``smsgate run`` for the block; killed on the way out if the block left it running."""
    daemon = start(config)
    try:
        yield daemon
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)


def states(db: Path) -> collections.Counter[str]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return collections.Counter(dict(conn.execute(
            "SELECT state, count(*) FROM outbox_message GROUP BY state").fetchall()))
    finally:
        conn.close()


def wait_until(check: Callable[[], bool], timeout: float, poll_s: float = 0.05) -> None:
    """Poll ``check`` until true: the progress is another process's, there is no event to await."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        select.select([], [], [], poll_s)  # a bounded sleep between polls
