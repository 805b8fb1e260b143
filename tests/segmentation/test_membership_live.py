"""The asyncio driver: micro-batches on time or on size, due re-checks, all on the store thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from segmentation import membership_live
from segmentation.ingest import Event, ingest_events
from segmentation.membership import BatchResult, Membership
from segmentation.membership_live import LiveMembership
from segmentation.membership_pipeline import Evaluator
from segmentation.store import AsyncStore, Store
from segmentation.subscribers import upsert_subscriber
from tests.segmentation.conftest import START_MS, ManualClock, process_gone

DAY = 86_400_000
NUMBERS = tuple(f"+1212555{n:04d}" for n in range(201, 206))
REPO = Path(__file__).resolve().parents[2]


async def _setup(tmp_path: Path, clock: ManualClock) -> tuple[AsyncStore, list[int]]:
    store = await AsyncStore.open(tmp_path / "live.db", clock=clock)
    ids = await store.run(lambda s: [upsert_subscriber(s, n) for n in NUMBERS])
    return store, ids


@pytest.mark.parametrize("evaluator", [True, False], ids=["evaluator-process", "store-thread"])
async def test_a_change_is_drained_after_the_batch_window(tmp_path: Path, evaluator: bool) -> None:
    clock = ManualClock()
    store, ids = await _setup(tmp_path, clock)
    live = LiveMembership(store, batch_ms=50, due_every_ms=3_600_000, evaluator=evaluator)
    try:
        async with asyncio.TaskGroup() as tg:
            runner = tg.create_task(live.run())
            await live.wait_started()
            assert (live.evaluator_pid is not None) == evaluator
            m = live.membership
            await store.run(lambda s: m.define("buyers", "count(purchase) >= 1"))
            await store.run(ingest_events, [Event("purchase", START_MS, subscriber_id=ids[0])])
            await asyncio.wait_for(live.wait_batches(1), 5)
            assert await store.run(lambda s: m.members("buyers")) == [ids[0]]
            stats = live.statistics()
            assert stats.batches == 1 and stats.entered == 1
            assert 40 <= stats.last_batch_latency_ms < 5000
            runner.cancel()
    finally:
        await store.aclose()


async def test_a_full_batch_is_drained_without_waiting(tmp_path: Path) -> None:
    clock = ManualClock()
    store, ids = await _setup(tmp_path, clock)
    # a one-minute window: only the size trigger can drain within the test's 5 s
    live = LiveMembership(store, batch_ms=60_000, batch_size=3, due_every_ms=3_600_000)
    try:
        async with asyncio.TaskGroup() as tg:
            runner = tg.create_task(live.run())
            await live.wait_started()
            m = live.membership
            await store.run(lambda s: m.define("clickers", "count(link_click) >= 1"))
            await store.run(ingest_events, [Event("link_click", START_MS, subscriber_id=i)
                                            for i in ids[:3]])
            await asyncio.wait_for(live.wait_batches(1), 5)
            assert await store.run(lambda s: m.members("clickers")) == sorted(ids[:3])
            runner.cancel()
    finally:
        await store.aclose()


async def test_due_rechecks_run_on_their_own(tmp_path: Path) -> None:
    clock = ManualClock()
    store, ids = await _setup(tmp_path, clock)
    await store.run(ingest_events, [Event("link_click", START_MS - 29 * DAY,
                                          subscriber_id=ids[0])])
    live = LiveMembership(store, batch_ms=10, due_every_ms=10)
    try:
        async with asyncio.TaskGroup() as tg:
            runner = tg.create_task(live.run())
            await live.wait_started()
            m = live.membership
            await store.run(lambda s: m.define("lapsed", "last(link_click) more_than_ago 30d"))
            assert await store.run(lambda s: m.members("lapsed")) == []
            clock.now = START_MS + DAY
            members: list[int] = []
            for _ in range(200):  # bounded: each round is one due-loop tick
                rounds = live.statistics().due_rounds
                await asyncio.wait_for(live.wait_batches(rounds + 1), 5)
                members = await store.run(lambda s: m.members("lapsed"))
                if members:
                    break
            assert members == [ids[0]]
            runner.cancel()
    finally:
        await store.aclose()


async def test_the_listener_is_removed_when_run_stops(tmp_path: Path) -> None:
    store, _ = await _setup(tmp_path, ManualClock())
    live = LiveMembership(store)
    try:
        async with asyncio.TaskGroup() as tg:
            runner = tg.create_task(live.run())
            await live.wait_started()
            assert await store.run(lambda s: s.statistics().listeners) == 1
            runner.cancel()
        assert await store.run(lambda s: s.statistics().listeners) == 0
    finally:
        await store.aclose()


async def test_a_locked_database_delays_the_batch_but_loses_nothing(tmp_path: Path) -> None:
    import sqlite3

    clock = ManualClock()
    store, ids = await _setup(tmp_path, clock)
    await store.run(lambda s: s.conn.execute("PRAGMA busy_timeout=20"))
    live = LiveMembership(store, batch_ms=20, due_every_ms=3_600_000)
    other = sqlite3.connect(tmp_path / "live.db", isolation_level=None)
    try:
        async with asyncio.TaskGroup() as tg:
            runner = tg.create_task(live.run())
            await live.wait_started()
            m = live.membership
            await store.run(lambda s: m.define("buyers", "count(purchase) >= 1"))
            await store.run(ingest_events, [Event("purchase", START_MS, subscriber_id=ids[0])])
            other.execute("BEGIN IMMEDIATE")
            await asyncio.wait_for(live.wait_failures(1), 5)
            other.execute("ROLLBACK")
            await asyncio.wait_for(live.wait_batches(1), 5)
            assert await store.run(lambda s: m.members("buyers")) == [ids[0]]
            assert live.statistics().failures >= 1
            runner.cancel()
    finally:
        other.close()
        await store.aclose()


_WRITER = """
import sys
from segmentation.ingest import Event, ingest_events
from segmentation.store import Store
store = Store(sys.argv[1])
ingest_events(store, [Event("purchase", int(sys.argv[3]), number=sys.argv[2], value=5.0)])
store.close()
"""


def _write_elsewhere(db: Path, number: str, ts_ms: int) -> None:
    """Ingest one event from another process that does nothing about membership (an
    importer, a bridge): only the queue can tell the daemon."""
    done = subprocess.run([sys.executable, "-c", _WRITER, str(db), number, str(ts_ms)],
                          cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr


async def test_an_event_written_by_another_process_reaches_live_membership(
    tmp_path: Path,
) -> None:
    """The audit's case: another process writes an event, with no listener of ours; the
    event is in the membership queue, which the idle driver polls."""
    clock = ManualClock()
    store, ids = await _setup(tmp_path, clock)
    live = LiveMembership(store, batch_ms=20, poll_ms=50, due_every_ms=3_600_000)
    try:
        async with asyncio.TaskGroup() as tg:
            runner = tg.create_task(live.run())
            await live.wait_started()
            m = live.membership
            await store.run(lambda s: m.define("buyers", "count(purchase) >= 1"))
            _write_elsewhere(tmp_path / "live.db", NUMBERS[1], START_MS - 1000)
            await asyncio.wait_for(live.wait_batches(1), 10)
            assert await store.run(lambda s: m.members("buyers")) == [ids[1]]
            history = await store.run(lambda s: m.history(ids[1], "buyers"))
            assert [h[1:3] for h in history] == [("enter", "event")]
            assert not await store.run(lambda s: m.queue_waiting())
            runner.cancel()
    finally:
        await store.aclose()


async def test_changes_queued_before_a_crash_are_evaluated_at_start(tmp_path: Path) -> None:
    """Events committed, then the process died before its drain: the next driver finds them
    in the queue and evaluates them (cause event), without a reconcile."""
    clock = ManualClock()
    store, ids = await _setup(tmp_path, clock)
    await store.run(lambda s: Membership(s).define("clickers", "count(link_click) >= 1"))
    await store.run(ingest_events, [Event("link_click", START_MS, subscriber_id=i)
                                    for i in ids[:2]])
    await store.aclose()  # no drain ran: the "crash"
    store = await AsyncStore.open(tmp_path / "live.db", clock=clock)
    assert await store.run(lambda s: Membership(s).members("clickers")) == []
    live = LiveMembership(store, batch_ms=20, poll_ms=60_000, due_every_ms=3_600_000)
    try:
        async with asyncio.TaskGroup() as tg:
            runner = tg.create_task(live.run())
            await asyncio.wait_for(live.wait_batches(1), 5)
            m = live.membership
            assert await store.run(lambda s: m.members("clickers")) == sorted(ids[:2])
            causes = await store.run(lambda s: s.query(
                "SELECT DISTINCT cause FROM segment_transition WHERE direction = 'enter'"))
            assert [r[0] for r in causes] == ["event"]
            runner.cancel()
    finally:
        await store.aclose()


def _count_drains(monkeypatch: pytest.MonkeyPatch, *, fail_first: bool = False) -> list[int]:
    """Batches drained on the store thread (not by the evaluator), one entry each; with
    ``fail_first`` the first fails as a database locked by another writer would."""
    real = membership_live._drain
    calls: list[int] = []

    def counted(s: Store, m: Membership) -> tuple[BatchResult, bool]:
        calls.append(1)
        if fail_first and len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        return real(s, m)

    monkeypatch.setattr(membership_live, "_drain", counted)
    return calls


async def _kill_evaluator(live: LiveMembership) -> int:
    """SIGKILL the evaluator process (the OOM killer, an operator's kill -9); its pid once
    it is gone."""
    pid = live.evaluator_pid
    assert pid is not None and pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    for _ in range(500):
        if process_gone(pid):
            break
        await asyncio.sleep(0.01)
    return pid


@contextlib.asynccontextmanager
async def _running(store: AsyncStore) -> AsyncIterator[LiveMembership]:
    """A LiveMembership running (20 ms batches, no due rounds) until the block ends."""
    live = LiveMembership(store, batch_ms=20, due_every_ms=3_600_000)
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(live.run())
        await asyncio.wait_for(live.wait_started(), 30)
        yield live
        runner.cancel()


async def _buyers_after(store: AsyncStore, live: LiveMembership, sid: int,
                        batches: int) -> list[int]:
    """Ingest a purchase for ``sid``, wait for ``batches`` committed batches in all, and
    return the members of ``buyers``."""
    await store.run(ingest_events, [Event("purchase", START_MS, subscriber_id=sid)])
    await asyncio.wait_for(live.wait_batches(batches), 10)
    m = live.membership
    return await store.run(lambda s: m.members("buyers"))


async def test_a_killed_evaluator_is_replaced_and_its_batch_drained_in_the_daemon(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    store, ids = await _setup(tmp_path, clock)
    drained_here = _count_drains(monkeypatch)
    caplog.set_level(logging.INFO, logger="segmentation.membership_live")
    try:
        async with _running(store) as live:
            m = live.membership
            await store.run(lambda s: m.define("buyers", "count(purchase) >= 1"))
            first = await _kill_evaluator(live)
            assert await _buyers_after(store, live, ids[0], 1) == [ids[0]]
            assert f"membership evaluator process {first} died" in caplog.text
            # a new process takes the next batch
            assert await _buyers_after(store, live, ids[1], 2) == sorted(ids[:2])
            second = live.evaluator_pid
            assert second is not None and second != first
            assert drained_here == [1]  # the dead one's batch only
            assert not await store.run(lambda s: m.queue_waiting())
        assert live.evaluator_pid is None and process_gone(second)
    finally:
        await store.aclose()


async def test_an_evaluator_that_cannot_start_leaves_membership_to_the_store_thread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    store, ids = await _setup(tmp_path, clock)
    # a real process whose store cannot open (no such directory), as a broken install would
    monkeypatch.setattr(membership_live, "Evaluator",
                        lambda _path: Evaluator(str(tmp_path / "missing" / "live.db")))
    try:
        async with _running(store) as live:
            assert live.evaluator_pid is None
            assert "membership evaluator process could not start" in caplog.text
            m = live.membership
            await store.run(lambda s: m.define("buyers", "count(purchase) >= 1"))
            assert await _buyers_after(store, live, ids[0], 1) == [ids[0]]
    finally:
        await store.aclose()


async def test_a_new_evaluator_starts_even_when_the_dead_one_s_batch_fails_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: the evaluator died and the store thread's drain of its batch failed
    (the database locked by an import): every later batch stayed on the store thread."""
    clock = ManualClock()
    store, ids = await _setup(tmp_path, clock)
    calls = _count_drains(monkeypatch, fail_first=True)  # a CLI import holds the lock
    try:
        async with _running(store) as live:
            m = live.membership
            await store.run(lambda s: m.define("buyers", "count(purchase) >= 1"))
            first = await _kill_evaluator(live)
            await store.run(ingest_events, [Event("purchase", START_MS, subscriber_id=ids[0])])
            await asyncio.wait_for(live.wait_failures(1), 10)
            await asyncio.wait_for(live.wait_batches(1), 10)
            assert await store.run(lambda s: m.members("buyers")) == [ids[0]]  # nothing lost
            await _buyers_after(store, live, ids[1], 2)
            assert live.evaluator_pid not in (None, first)
            assert len(calls) == 1  # the store thread drained once only, and failed
    finally:
        await store.aclose()


async def test_the_evaluator_is_closed_when_run_is_cancelled_twice(tmp_path: Path) -> None:
    store = await AsyncStore.open(tmp_path / "live.db", clock=ManualClock())
    live = LiveMembership(store, batch_ms=20, due_every_ms=3_600_000)
    release = threading.Event()
    try:
        runner = asyncio.create_task(live.run())
        await asyncio.wait_for(live.wait_started(), 30)
        pid = live.evaluator_pid
        assert pid is not None
        busy = asyncio.create_task(store.run(lambda _s: release.wait(10)))  # a long write
        await asyncio.sleep(0.05)
        runner.cancel()  # the daemon's stop
        await asyncio.sleep(0.05)  # run()'s finally waits for the store thread (detach)
        runner.cancel()  # a second cancellation (the enclosing TaskGroup failing, Ctrl-C)
        release.set()
        await asyncio.gather(runner, busy, return_exceptions=True)
        for _ in range(300):
            if process_gone(pid):
                break
            await asyncio.sleep(0.01)
        assert process_gone(pid), "evaluator process left running"
    finally:
        release.set()
        await store.aclose()
