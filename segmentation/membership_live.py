"""The daemon's membership driver: micro-batched draining and due-time processing on asyncio.

:class:`LiveMembership` owns a :class:`segmentation.membership.Membership` created on the
:class:`AsyncStore`'s thread (every SQL statement runs there, never on the event loop). The
store's listener marks subscribers dirty on that thread and pokes the loop; the drain loop then
waits up to ``batch_ms`` (250 ms) for more changes, or less when ``batch_size`` (1,000)
subscribers are pending, and drains them in one transaction (§5.4.4 of the segmentation
reference). The due loop sweeps time crossings (``Membership.process_due``) every
``due_every_ms``.

Changes written by other processes (a CLI import, ``smsgate event add``) reach no listener
here: they are in ``membership_queue`` (schema 12), which the drain loop looks at whenever it
has been idle for ``poll_ms`` (250 ms). So does a change committed just before a crash: the queue is
read at start. A drain takes at most ``QUEUE_CHUNK`` rows; while more wait, the next batch
starts at once.

A batch's rule queries run in an evaluator process (:mod:`segmentation.membership_pipeline`)
while the store thread stays free for writers; the store thread then commits the batch, which
re-checks under the write lock what moved meanwhile. If that process dies, the batch is drained
on the store thread and a new process takes the next one; if none can start, the store thread
evaluates and a start is tried again every ``EVALUATOR_RETRY_S``. ``evaluator=False`` drains
on the store thread only (one process; what a small machine with one core would choose).

Both loops live in one ``TaskGroup`` inside :meth:`run`; cancel the task running it to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from segmentation.membership import BatchResult, Membership, Prepared
from segmentation.membership_pipeline import Evaluator
from segmentation.membership_types import Cause
from segmentation.store import AsyncStore, Store

log = logging.getLogger(__name__)

EVALUATOR_RETRY_S = 60.0
"""After an evaluator process failed to start, how long the store thread evaluates alone
before the next attempt."""


@dataclass(frozen=True)
class LiveStatistics:
    batches: int
    due_rounds: int
    pairs_evaluated: int
    entered: int
    exited: int
    last_batch_latency_ms: float
    """Time from the first change of the last batch being noticed to its commit."""
    failures: int
    """Batches or re-check rounds that failed (and were retried)."""
    evaluator_pid: int | None = None
    """The process evaluating batches (None: the store thread does)."""


class LiveMembership:
    def __init__(
        self,
        store: AsyncStore,
        *,
        batch_ms: float = 250,
        batch_size: int = 1000,
        due_every_ms: float = 1000,
        poll_ms: float = 250,
        on_batch: Callable[[BatchResult, bool], None] | None = None,
        evaluator: bool = True,
    ) -> None:
        """``on_batch(result, due)`` runs on the loop after each committed drain / due round.
        ``poll_ms``: how often an idle driver looks for changes queued by other processes.
        ``evaluator``: evaluate batches in a process of their own (module docstring)."""
        self.store = store
        self.use_evaluator = evaluator
        self._evaluator: Evaluator | None = None
        self._evaluator_retry_at = 0.0  # time.monotonic() of the next start attempt
        self.evaluator_pid: int | None = None
        """The evaluator process (None: none runs), for ``ps`` and the logs."""
        self.batch_snapshot = 0.0
        """perf_counter() when the last committed batch started reading: it holds every
        change committed before then (the benchmark's latency counts from a change to the
        first batch that holds it)."""
        self.on_batch = on_batch
        self.poll_s = poll_ms / 1000
        self.batch_s = batch_ms / 1000
        self.batch_size = batch_size
        self.due_every_s = due_every_ms / 1000
        self._membership: Membership | None = None
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._started = asyncio.Event()
        self._progress = asyncio.Condition()
        self._first_dirty: float | None = None
        self._batches = self._due_rounds = self._pairs = self._entered = self._exited = 0
        self._latency_ms = 0.0
        self._failures = 0

    @property
    def membership(self) -> Membership:
        if self._membership is None:
            raise RuntimeError("LiveMembership.run() has not started")
        return self._membership

    async def run(self) -> None:
        """Attach to the store and run the drain and due loops until cancelled."""
        loop = asyncio.get_running_loop()

        def on_dirty(pending: int) -> None:  # store thread
            loop.call_soon_threadsafe(self._pending, pending)

        def start(store: Store) -> Membership:
            m = Membership(store, on_dirty=on_dirty)
            m.attach()
            return m

        self._membership = await self.store.run(start)
        try:
            if self.use_evaluator:
                await self._start_evaluator()
            self._started.set()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._drain_loop(), name="membership-drain")
                tg.create_task(self._due_loop(), name="membership-due")
        finally:
            evaluator, self._evaluator, self.evaluator_pid = self._evaluator, None, None
            try:
                with contextlib.suppress(Exception):
                    m = self._membership
                    await self.store.run(lambda _s: m.detach())
            finally:
                if evaluator is not None:  # shutdown waits for the process: off the loop
                    await asyncio.shield(loop.run_in_executor(None, evaluator.close))

    def evaluator_peak_rss_kib(self) -> int:
        """The evaluator process's peak RSS in KiB (0 without one); blocks until it answers."""
        evaluator = self._evaluator
        return 0 if evaluator is None else evaluator.peak_rss_kib()

    async def _start_evaluator(self) -> None:
        path = await self.store.run(lambda s: s.path)
        evaluator = Evaluator(path)
        try:
            pid = await asyncio.wrap_future(evaluator.ready())
        except BaseException as exc:
            await asyncio.get_running_loop().run_in_executor(None, evaluator.close)
            if not isinstance(exc, Exception):
                raise
            # membership must not stop over it: the store thread evaluates, as without one,
            # and a new start is tried a minute later
            self._evaluator_retry_at = time.monotonic() + EVALUATOR_RETRY_S
            log.error("membership evaluator process could not start (%s); evaluating in the "
                      "daemon, trying again in %.0f s", exc, EVALUATOR_RETRY_S)
            return
        self._evaluator, self.evaluator_pid = evaluator, pid
        log.info("membership evaluator process %d started", pid)

    async def wait_started(self) -> None:
        await self._started.wait()

    async def wait_batches(self, n: int) -> None:
        """Wait until at least ``n`` batches (drains or due rounds that changed something, or
        not) have committed since start."""
        async with self._progress:
            await self._progress.wait_for(lambda: self._batches + self._due_rounds >= n)

    def _pending(self, pending: int) -> None:
        if self._first_dirty is None:
            self._first_dirty = time.perf_counter()
        self._wake.set()
        if pending >= self.batch_size:
            self._full.set()

    async def _drain_loop(self) -> None:
        if await self._queued():  # left before we started (another process, a crash)
            self._pending(0)
        while True:
            if not self._wake.is_set():
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                except TimeoutError:
                    # idle: another process may have queued changes
                    if not await self._queued():
                        continue
                    self._pending(0)
            # micro-batch: the oldest pending change waits at most batch_ms in total (less
            # when the batch fills); changes that piled up during a long drain go at once
            waited = 0.0 if self._first_dirty is None else time.perf_counter() - self._first_dirty
            remaining = self.batch_s - waited
            if remaining > 0 and not self._full.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), remaining)
            self._wake.clear()
            self._full.clear()
            first, self._first_dirty = self._first_dirty, None
            try:
                result, more = await self._batch()
            except sqlite3.OperationalError as exc:
                # e.g. "database is locked" by another writer: the batch stays dirty (the
                # core keeps it on failure); try again after one batch window
                log.warning("membership batch failed, retrying: %s", exc)
                await self._failed()
                await asyncio.sleep(self.batch_s)
                self._wake.set()
                continue
            if first is not None:
                self._latency_ms = (time.perf_counter() - first) * 1000
            await self._record(result, due=False)
            if more:  # a large import: the next chunk at once
                self._pending(self.batch_size)

    async def _batch(self) -> tuple[BatchResult, bool]:
        """One batch: evaluated by the evaluator process while the store thread stays free,
        then committed on the store thread; without an evaluator, drained there. Returns
        the result and whether more is waiting."""
        m = self.membership
        if (self.use_evaluator and self._evaluator is None
                and time.monotonic() >= self._evaluator_retry_at):
            await self._start_evaluator()
        evaluator = self._evaluator
        if evaluator is None:
            self.batch_snapshot = time.perf_counter()
            return await self.store.run(_drain, m)
        carried, now = await self.store.run(_take, m)
        snapshot = time.perf_counter()
        try:
            prep = await asyncio.wrap_future(evaluator.submit(carried, now))
        except BrokenProcessPool:
            await self.store.run(_give_back, m, carried)
            log.error("membership evaluator process %s died; draining this batch in the "
                      "daemon, a new evaluator takes the next one", self.evaluator_pid)
            self._evaluator = self.evaluator_pid = None
            self._evaluator_retry_at = 0.0
            await asyncio.get_running_loop().run_in_executor(None, evaluator.close)
            self.batch_snapshot = time.perf_counter()
            return await self.store.run(_drain, m)
        except BaseException:
            await asyncio.shield(self.store.run(_give_back, m, carried))
            raise
        result, more = await self.store.run(_commit, m, prep)
        self.batch_snapshot = snapshot
        return result, more

    async def _queued(self) -> bool:
        try:
            return await self.store.run(_queue_waiting, self.membership)
        except sqlite3.OperationalError as exc:  # locked by a long writer: look again later
            log.warning("membership queue check failed: %s", exc)
            return False

    async def _due_loop(self) -> None:
        while True:
            await asyncio.sleep(self.due_every_s)
            try:
                result = await self.store.run(_process_due, self.membership)
            except sqlite3.OperationalError as exc:
                log.warning("membership re-check round failed, retrying: %s", exc)
                await self._failed()
                continue
            await self._record(result, due=True)

    async def wait_failures(self, n: int) -> None:
        """Wait until at least ``n`` batches or re-check rounds have failed (and been kept)."""
        async with self._progress:
            await self._progress.wait_for(lambda: self._failures >= n)

    async def _failed(self) -> None:
        async with self._progress:
            self._failures += 1
            self._progress.notify_all()

    async def _record(self, result: BatchResult, *, due: bool) -> None:
        async with self._progress:
            if due:
                self._due_rounds += 1
            else:
                self._batches += 1
            self._pairs += result.pairs
            self._entered += result.entered
            self._exited += result.exited
            self._progress.notify_all()
        if self.on_batch is not None:
            self.on_batch(result, due)

    def statistics(self) -> LiveStatistics:
        return LiveStatistics(self._batches, self._due_rounds, self._pairs, self._entered,
                              self._exited, self._latency_ms, self._failures,
                              self.evaluator_pid)


def _drain(_store: Store, m: Membership) -> tuple[BatchResult, bool]:
    return m.drain(), m.queue_waiting()


def _take(_store: Store, m: Membership) -> tuple[dict[int, dict[int, Cause]], int]:
    return m.take_pending(), m.store.now_ms()


def _give_back(_store: Store, m: Membership, carried: dict[int, dict[int, Cause]]) -> None:
    m.give_back(carried)


def _commit(_store: Store, m: Membership, prep: Prepared) -> tuple[BatchResult, bool]:
    result = m.commit(prep)
    if result is None:  # another drain took the batch's queued rows: look again at once
        return BatchResult(0, 0, 0, 0), True
    return result, m.queue_waiting()


def _queue_waiting(_store: Store, m: Membership) -> bool:
    return m.queue_waiting()


def _process_due(_store: Store, m: Membership) -> BatchResult:
    return m.process_due()
