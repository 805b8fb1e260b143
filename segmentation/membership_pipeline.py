"""Membership batches evaluated in a process of their own while the writer goes on writing.

A drain is two kinds of work: the rule queries that say who is in a segment now, and the
writes of entries and exits. Done in turn on the writer's connection, both sit on the path of
every ingested event. Here the queries run on a read connection in an evaluator process
(:meth:`Membership.prepare`), while the writer ingests the next events; the writer then
commits what was prepared (:meth:`Membership.commit`), which re-checks under its write lock
what may have moved meanwhile.

- **Only the writer writes.** In WAL mode a connection's page cache is emptied whenever another
  connection commits. The writer's cache holds the hot B-tree pages of ingest; the reader's
  working set is one batch's subscribers, so it is the reader that re-reads.
- **A process, not a thread.** Measured at 1M subscribers (activity-weighted stream): with the
  reader on a thread, the writer's ingest took 25-60 % longer, as both threads handed
  Python's GIL back and forth around every SQLite step (``executemany`` releases and
  re-takes it per row); in a process, ingest kept its time and the commit cost ~60 % of a
  serial drain.
- **The time is the writer's.** ``now`` goes with each batch, so the evaluator needs no clock
  (tests inject theirs into the writer's store).

:class:`Evaluator` is the process; :class:`Pipeline` drives one batch at a time from plain
code (the benchmark); :mod:`segmentation.membership_live` drives one from asyncio.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from types import TracebackType

from segmentation.membership import BatchResult, Membership, Prepared
from segmentation.membership_types import Cause
from segmentation.store import Store

READER_CACHE_KIB = 65_536
"""The evaluator's page cache. Larger buys nothing: every commit of the writer empties it."""

PARENT_CHECK_S = 0.5
"""How often the evaluator process looks whether its parent still runs."""

_reader: Membership | None = None  # in the evaluator process


def _open_reader(path: str) -> None:
    global _reader
    _reader = Membership(Store(path, cache_kib=READER_CACHE_KIB))
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True,
                     name="evaluator-parent-watch").start()


def _exit_with_parent(parent: int) -> None:
    """A pool's process waits for work forever, even once its parent is gone (kill -9, a
    crash): systemd stops the whole cgroup, but a CLI or a test would leave it behind,
    holding the database open. Re-parented means orphaned."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _prepare(carried: dict[int, dict[int, Cause]], now: int) -> Prepared:
    if _reader is None:
        raise RuntimeError("the evaluator process has no store open")
    return _reader.prepare(carried, now)


def _peak_rss_kib() -> int:
    # VmHWM: the peak of this program's own memory. ru_maxrss would also count the copy of
    # the parent that the fork before exec saw resident (Linux keeps the larger of the two
    # across execve), i.e. report the writer's memory a second time.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


class Evaluator:
    """A process that evaluates membership batches on a read connection to ``path``.

    Spawned, not forked: the parent holds SQLite connections and threads, which a fork would
    copy mid-use. A process that dies (killed, out of memory) fails the batch it had with
    ``BrokenProcessPool``; the caller then drains that batch itself and opens a new one."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_open_reader, initargs=(path,))

    def ready(self) -> Future[int]:
        """The process's pid, once it runs with its store open: a pool starts its process at
        the first call, and the imports and the open (~0.5 s) should not land on a batch."""
        return self._pool.submit(os.getpid)

    def submit(self, carried: dict[int, dict[int, Cause]], now: int) -> Future[Prepared]:
        return self._pool.submit(_prepare, carried, now)

    def peak_rss_kib(self) -> int:
        """The evaluator process's peak resident set (KiB), for memory budgets that count
        the whole gateway, not only the writer's process."""
        return self._pool.submit(_peak_rss_kib).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class Pipeline:
    """One batch at a time evaluated by an :class:`Evaluator` for the writer ``m`` (a
    :class:`Membership` used from the calling thread only).

    ``start()`` hands the writer's dirty pairs and the queue to the evaluator; ``finish()``
    waits for that batch and commits it on the calling thread. Between the two the caller
    writes on (ingests); what it writes meanwhile is queued for the next batch."""

    def __init__(self, m: Membership) -> None:
        self.m = m
        self.evaluator = Evaluator(m.store.path)
        try:
            self.evaluator.ready().result()
        except BaseException:
            self.evaluator.close()
            raise
        self._inflight: Future[Prepared] | None = None
        self._carried: dict[int, dict[int, Cause]] = {}
        self.last_prepare_ms = 0.0
        """How long the evaluator took for the batch finished last."""

    @property
    def busy(self) -> bool:
        """A batch was started and not finished yet."""
        return self._inflight is not None

    def start(self) -> None:
        if self._inflight is not None:
            raise RuntimeError("Pipeline.start: the previous batch is not finished")
        self._carried = self.m.take_pending()
        self._inflight = self.evaluator.submit(self._carried, self.m.store.now_ms())

    def finish(self) -> BatchResult:
        """Commit the batch started last. A batch ``commit`` did not write (another drain
        took some of its queued rows, or an erasure deleted them) counts as empty: what is
        left of it stays queued for the next batch."""
        if self._inflight is None:
            raise RuntimeError("Pipeline.finish: no batch was started")
        inflight, self._inflight = self._inflight, None
        try:
            prep = inflight.result()
        except BaseException:
            self.m.give_back(self._carried)
            raise
        self.last_prepare_ms = prep.elapsed_ms
        return self.m.commit(prep) or BatchResult(0, 0, 0, 0)

    def close(self) -> None:
        if self._inflight is not None:  # never committed: its pairs stay dirty
            self._inflight.cancel()
            self.m.give_back(self._carried)
            self._inflight = None
        self.evaluator.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
