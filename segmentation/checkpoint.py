"""WAL checkpoints off the writer's thread.

In WAL mode every page a transaction changes is appended to the ``-wal`` file; a checkpoint
copies the pages back into the database file (random writes and an fsync). By default the
connection that commits past ``wal_autocheckpoint`` frames runs the checkpoint itself, inside
its COMMIT: at 1M subscribers that was the slowest part of live ingest (a 5,000-event batch
that checkpointed took 2-5x as long as one that did not, ~10,000 pages at ~24 us each on the
appliance's disk).

:class:`WalCheckpointer` checkpoints from a connection of its own, on another thread, so the
writer keeps committing while the pages are copied back:

- every ``step`` runs ``PRAGMA wal_checkpoint(PASSIVE)``: it copies what it can without waiting
  for anyone (https://sqlite.org/pragma.html#pragma_wal_checkpoint);
- once the WAL holds ``restart_pages`` frames and all but ``slack_pages`` of them are copied,
  the WAL must start again from its beginning: without that a writer that never pauses grows
  it until its own safety-net autocheckpoint.

  - **With a writer that takes part** (a :class:`WalReset` shared with the writer's
    :class:`~segmentation.store.Store`, as the daemon and the benchmark run it), the
    checkpointer only marks the reset due; the writer, after its next COMMIT, runs
    ``RESTART`` on its own connection without waiting for anyone (:meth:`WalReset.run`). A
    WAL reset by another connection empties the writer's whole page cache (SQLite resets a
    connection's cache whenever the WAL header changed under it); one the writer makes
    itself keeps it. It also needs no lock the writer holds, where a TRUNCATE must win the
    write lock between two batches: measured at 1M subscribers (bench/segments.py), the WAL
    peaked at 29-42k pages against 52-123k with the checkpointer truncating; ingest rates
    were the same within the machine's noise. The first commit after a restart trims the
    file (:data:`WAL_SIZE_LIMIT`). Once the WAL holds ``FALLBACK_FACTOR`` times
    ``restart_pages`` (a reader kept the writer's attempts from completing), the
    checkpointer also tries a TRUNCATE itself at each step.
  - **Alone**, it runs ``TRUNCATE``, which waits up to ``busy_ms`` for the writer, copies the
    rest and empties the WAL file.

The writer's own ``wal_autocheckpoint`` stays as a safety net (:data:`SAFETY_NET_PAGES` while a
checkpointer runs): a reader holding an old snapshot can stop any checkpoint, and then the WAL
grows until that reader finishes, whoever checkpoints.

:func:`run_checkpointer` drives one from asyncio (the daemon's TaskGroup); :func:`checkpointing`
from a plain thread (imports, the benchmark).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

SAFETY_NET_PAGES = 100_000
"""The writer's ``wal_autocheckpoint`` while a checkpointer runs (400 MB of 4 KiB pages)."""

FALLBACK_FACTOR = 3
"""With a :class:`WalReset`, the checkpointer also truncates the WAL itself past this many
times ``restart_pages`` (it keeps asking the writer too)."""

WAL_SIZE_LIMIT = 0
"""``journal_size_limit`` of every connection that writes the store's file (the segment
store, the outbox, the MO part store): the first commit after the WAL restarts trims the file
to what that commit wrote. A restart alone reuses the file from its beginning, so the tail
of a longer earlier cycle -- page images of rows erased since among them -- would stay on
disk; the checkpointer's TRUNCATE used to empty it. Found in review with a reproduction."""


class WalReset:
    """A WAL restart the checkpointer asks for and the writer makes (module docstring).

    The checkpointer's thread sets :attr:`due`; the writer's thread reads it after each COMMIT
    (a plain attribute: a late read only delays the restart by one transaction)."""

    def __init__(self) -> None:
        self.due = False
        self.restarted_at = -1
        """The WAL's frame count when the writer last restarted it: until its next commit
        starts the log again the header still says so, and must not ask again."""
        self.restarts = 0
        """Restarts the writer made."""
        self.refused = 0
        """Attempts a reader (or the checkpointer, at that moment) kept from completing."""

    def run(self, conn: sqlite3.Connection) -> bool:
        """Restart the WAL from the writer's connection ``conn``, outside any transaction:
        copy what the checkpointer has not copied yet and make the next commit start the log
        from its beginning. Never waits: a reader still in the WAL, or a checkpoint running,
        refuses it until the checkpointer asks again. Returns whether it restarted."""
        timeout = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
        conn.execute("PRAGMA busy_timeout=0")
        try:
            busy, log, _ = (int(v) for v in
                            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone())
        except sqlite3.OperationalError as exc:  # "database is locked": the checkpointer's
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            busy, log = 1, -1
        finally:
            conn.execute(f"PRAGMA busy_timeout={timeout}")
        # restarted_at before due is cleared: a step in between must see that it was done
        if busy:
            self.refused += 1
            self.due = False  # the checkpointer asks again at its next step
            return False
        self.restarted_at = log
        self.due = False
        self.restarts += 1
        return True


@dataclass(frozen=True)
class CheckpointStep:
    """What one step found and did: ``log`` frames in the WAL, ``copied`` of them in the
    database file, whether the writer or a reader kept it from finishing (``busy``) and
    whether it restarted the WAL."""

    log: int
    copied: int
    busy: bool
    restarted: bool


@dataclass(frozen=True)
class CheckpointStatistics:
    steps: int
    restarts: int
    busy: int
    largest_log: int
    """Most frames the WAL held at a step: how far the writer got ahead."""


class WalCheckpointer:
    """Checkpoints the WAL of the database at ``path`` from its own connection.

    Use it from one thread only (the one that created it)."""

    def __init__(self, path: str, *, restart_pages: int = 20_000, slack_pages: int = 2_000,
                 busy_ms: int = 50, reset: WalReset | None = None) -> None:
        if restart_pages < 1 or slack_pages < 0 or busy_ms < 0:
            raise ValueError("restart_pages >= 1, slack_pages >= 0 and busy_ms >= 0")
        self.restart_pages = restart_pages
        self.slack_pages = slack_pages
        self.reset = reset
        self.conn = sqlite3.connect(path, isolation_level=None)
        # TRUNCATE waits this long for the writer (and blocks new writers meanwhile)
        self.conn.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        self._steps = self._restarts = self._busy = self._largest = 0

    def step(self) -> CheckpointStep:
        busy, log, copied = self._checkpoint("PASSIVE")
        restarted = False
        if log >= self.restart_pages and log - copied <= self.slack_pages:
            # the writer restarts it, keeping its page cache (unless it did and has not
            # written since: the header still shows the old count)
            done = self.reset is not None and log == self.reset.restarted_at
            if self.reset is not None and not done:
                self.reset.due = True
            if self.reset is None or (log >= FALLBACK_FACTOR * self.restart_pages
                                      and not done):
                busy, log2, copied = self._checkpoint("TRUNCATE")
                restarted = not busy
                log = max(log, log2)
                if restarted and self.reset is not None:
                    self.reset.due = False  # emptied: nothing left for the writer to do
        self._steps += 1
        self._restarts += restarted
        self._busy += bool(busy)
        self._largest = max(self._largest, log)
        return CheckpointStep(log, copied, bool(busy), restarted)

    def _checkpoint(self, mode: str) -> tuple[int, int, int]:
        try:
            row = self.conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.OperationalError as exc:  # "database is locked": try next step
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            return 1, 0, 0
        busy, log, copied = (int(v) for v in row)
        return busy, max(log, 0), max(copied, 0)  # -1, -1: not in WAL mode

    def statistics(self) -> CheckpointStatistics:
        return CheckpointStatistics(self._steps, self._restarts, self._busy, self._largest)

    def close(self) -> None:
        self.conn.close()


async def run_checkpointer(path: str, *, every_ms: float = 100, reset: WalReset | None = None,
                           **options: int) -> None:
    """Checkpoint ``path`` every ``every_ms`` on a thread of its own until cancelled (run it
    in the caller's TaskGroup); ``reset``: the writer restarts the WAL (module docstring)."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1, thread_name_prefix="wal-checkpoint") as executor:
        cp = await loop.run_in_executor(
            executor, lambda: WalCheckpointer(path, reset=reset, **options))
        try:
            while True:
                await asyncio.sleep(every_ms / 1000)
                await loop.run_in_executor(executor, cp.step)
        finally:
            await asyncio.shield(loop.run_in_executor(executor, cp.close))


@contextlib.contextmanager
def checkpointing(path: str, *, every_ms: float = 100, reset: WalReset | None = None,
                  **options: int) -> Iterator[list[CheckpointStatistics]]:
    """Checkpoint ``path`` from a background thread while the block runs; the list it yields
    gets the checkpointer's statistics when the block ends. ``reset``: the writer restarts
    the WAL (module docstring)."""
    stop = threading.Event()
    out: list[CheckpointStatistics] = []
    failed: list[BaseException] = []
    ready = threading.Event()

    def run() -> None:
        try:
            cp = WalCheckpointer(path, reset=reset, **options)
        except BaseException as exc:  # surfaced in the caller's thread below
            failed.append(exc)
            ready.set()
            return
        ready.set()
        try:
            while not stop.wait(every_ms / 1000):
                cp.step()
        except BaseException as exc:
            failed.append(exc)
        finally:
            out.append(cp.statistics())
            cp.close()

    thread = threading.Thread(target=run, name="wal-checkpoint", daemon=True)
    thread.start()
    ready.wait()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
    if failed:
        raise failed[0]
