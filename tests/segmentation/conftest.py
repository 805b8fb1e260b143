"""Shared fixtures for the segment store (part A) and segments (part B).

``store`` is stable API for both: an open :class:`segmentation.store.Store` on a real file under
``tmp_path`` with every migration applied, a manual clock (``clock``) and a fixed hash key.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from segmentation.store import Store

# 2026-01-15 12:00:00 UTC: a fixed, DST-free instant so day arithmetic in tests is readable.
START_MS = 1_768_478_400_000
HASH_KEY = b"test-site-secret"
ROOT = Path(__file__).resolve().parents[2]


def run_cli(db: Path, *args: str, hash_key: str | None = None, stdin: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``smsgate ARGS --db DB`` as its own process, as an operator runs it (no config from the
    environment; ``hash_key`` as $SMSGATE_HASH_KEY)."""
    env = {k: v for k, v in os.environ.items() if k != "SMSGATE_CONFIG"}
    if hash_key is not None:
        env["SMSGATE_HASH_KEY"] = hash_key
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args, "--db", str(db)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env,
                          input=stdin)


def process_gone(pid: int) -> bool:
    """The process has exited: no such pid, or a zombie nobody reaped yet (a child of a
    killed parent waits for init, which in a container may never reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:  # reaped between the two looks: no file, or ESRCH while reading it
        return True


class ManualClock:
    """A clock tests move by hand: ``clock.advance(ms)`` or ``clock.now = ms``."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(tmp_path: Path, clock: ManualClock) -> Iterator[Store]:
    s = Store(tmp_path / "segments.db", clock=clock, hash_key=HASH_KEY, default_region="US")
    try:
        yield s
    finally:
        s.close()
