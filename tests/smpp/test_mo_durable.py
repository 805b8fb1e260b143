"""Multipart MO through a durable part store, over loopback: a part is acknowledged only once
the store has it, so a crash between parts loses nothing (issue 3: deliver_sm_resp after the
event is handed over)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from drivers.sim.smsc import SmscOptions, SmscSimulator
from drivers.sim.smsc_messages import mo_parts
from drivers.smpp.client import InboundEvent, SmppClient
from drivers.smpp.errors import CommandStatus
from drivers.smpp.mo import MobileOriginated, MoPart
from drivers.smpp.mo_store import MoGroup
from tests.smpp.conftest import Collector, fast_config, running
from tests.smpp.sqlite_mo_store import SqliteMoStore

ROOT = Path(__file__).resolve().parents[2]
TEXT = "Please call me back about the delivery on Friday, the code is 4471. " * 5  # 3 parts


async def read_line(stream: asyncio.StreamReader, expected: str) -> str:
    async with asyncio.timeout(20):  # a cold interpreter start on a loaded machine
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"child exited before printing {expected!r}")
            if line.startswith(expected):
                return line


async def test_parts_acknowledged_before_a_crash_are_assembled_after_it(
    tmp_path: Path, collector: Collector
) -> None:
    db = str(tmp_path / "mo.sqlite")
    p1, p2, p3 = mo_parts(TEXT, "447700900123", "12345", reference=42)
    async with SmscSimulator(SmscOptions(redeliver_delay=0.05)) as sim:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.smpp.sqlite_mo_store",
            str(sim.port),
            db,
            "--hang-after",
            "2",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert child.stdout is not None
            await read_line(child.stdout, "bound")
            await sim.wait_bound(1)
            [conn] = sim.connections
            # Part 3 is stored and acknowledged; part 1 is stored, then the process hangs
            # before its deliver_sm_resp, and is killed there.
            sim.inject([p3])
            await read_line(child.stdout, "added 3")
            await sim.wait_for(lambda: len(conn.deliver_results) == 1)
            sim.inject([p1])
            await read_line(child.stdout, "added 1")
        finally:
            child.kill()
            await child.wait()
        assert conn.deliver_results[0][1] == 0 and len(conn.deliver_results) == 1
        await sim.wait_for(lambda: not sim.connections)

        store = SqliteMoStore(db)
        try:
            assert store.counts() == (1, 2)  # both survived the crash
            async with SmppClient(fast_config(sim.port), collector, mo_store=store) as client:
                await client.wait_bound(5)
                # The SMSC delivers the unacknowledged part 1 again: a harmless duplicate.
                await sim.wait_for(lambda: sim.statistics().deliver_responses == 2)
                assert collector.events == []
                sim.inject([p2])
                [mo] = await collector.wait_for(1)
                assert isinstance(mo, MobileOriginated)
                assert mo.text == TEXT and mo.complete and mo.parts == mo.total == 3
                assert mo.source_addr == "447700900123" and mo.source_addr_ton == 1
                await sim.wait_for(lambda: sim.statistics().deliver_responses == 3)
            assert store.counts() == (0, 0)
        finally:
            store.close()
        # nothing was asked to be delivered again apart from the part the crash left unanswered
        assert sim.statistics().redeliveries == 0


async def test_a_part_is_acknowledged_only_after_the_store_returned(
    tmp_path: Path, collector: Collector
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    class Slow(SqliteMoStore):
        async def add(self, part: MoPart) -> MoGroup | None:
            entered.set()
            await release.wait()
            return await super().add(part)

    store = Slow(str(tmp_path / "mo.sqlite"))
    first, second = mo_parts("x" * 200, "447700900123", "12345", reference=7)
    async with running(None, collector, mo_store=store) as (sim, _client):
        conn = sim.inject([first])
        await asyncio.wait_for(entered.wait(), 5)
        # the store has not returned: the SMSC has no answer yet (nothing else could write it)
        assert conn.deliver_results == [] and store.counts() == (0, 0)
        release.set()
        await sim.wait_for(lambda: len(conn.deliver_results) == 1)
        assert conn.deliver_results[0][1] == 0 and store.counts() == (1, 1)
        sim.inject([second])
        [mo] = await collector.wait_for(1)
        assert isinstance(mo, MobileOriginated) and mo.text == "x" * 200
    store.close()


async def test_a_failing_store_asks_for_the_part_again(
    tmp_path: Path, collector: Collector
) -> None:
    failures = 1

    class Flaky(SqliteMoStore):
        async def add(self, part: MoPart) -> MoGroup | None:
            nonlocal failures
            if failures:
                failures -= 1
                raise OSError("disk full")
            return await super().add(part)

    store = Flaky(str(tmp_path / "mo.sqlite"))
    async with running(SmscOptions(redeliver_delay=0.01, seed=3), collector, mo_store=store) as (
        sim,
        _client,
    ):
        [conn] = sim.connections
        sim.inject_mo(TEXT, "447700900123", "12345", reference=9, shuffle=True)
        [mo] = await collector.wait_for(1)
        assert isinstance(mo, MobileOriginated) and mo.text == TEXT and mo.complete
        assert conn.deliver_results[0][1] == CommandStatus.ESME_RX_T_APPN
        assert sim.statistics().redeliveries == 1
    assert store.counts() == (0, 0)
    store.close()


async def test_handler_failing_on_the_last_part_loses_no_part(collector: Collector) -> None:
    """The default in-memory store keeps the group until the handler took it: the SMSC
    delivers the last part again and the whole message is handed over then."""
    calls = 0

    async def flaky(event: InboundEvent) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database is locked")
        await collector(event)

    async with running(SmscOptions(redeliver_delay=0.01), flaky) as (sim, _client):
        sim.inject_mo(TEXT, "447700900123", "12345", reference=5)
        [mo] = await collector.wait_for(1)
        assert isinstance(mo, MobileOriginated) and mo.text == TEXT and mo.complete
        assert calls == 2 and sim.statistics().redeliveries == 1


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_incomplete_message_is_released_after_the_timeout_even_across_a_restart(
    tmp_path: Path, collector: Collector
) -> None:
    db = str(tmp_path / "mo.sqlite")
    clock = Clock()
    first = SqliteMoStore(db, timeout=60.0, clock=clock)
    p1, _p2, p3 = mo_parts(TEXT, "447700900123", "12345", reference=3)
    async with running(None, collector, mo_store=first) as (sim, _client):
        conn = sim.inject([p1, p3])
        await sim.wait_for(lambda: len(conn.deliver_results) == 2)
    first.close()
    assert collector.events == []

    failed = asyncio.Event()

    async def fails_once(event: InboundEvent) -> None:
        if not failed.is_set():
            failed.set()
            raise RuntimeError("database is locked")
        await collector(event)

    clock.now += 60.0  # the wall clock moved on while the process was down
    second = SqliteMoStore(db, timeout=60.0, clock=clock)
    async with running(None, fails_once, mo_store=second) as (sim, _client):
        # released at once; the handler fails, so the group stays for another timeout
        await asyncio.wait_for(failed.wait(), 5)
        assert second.counts() == (1, 2) and collector.events == []
        clock.now += 60.0
        [mo] = await collector.wait_for(1)
        assert isinstance(mo, MobileOriginated)
        assert not mo.complete and mo.missing == (2,) and mo.parts == 2 and mo.total == 3
        assert mo.text is not None and mo.text.startswith(TEXT[:100])
    assert second.counts() == (0, 0)
    second.close()


async def test_default_store_hands_over_an_incomplete_message_and_keeps_the_link() -> None:
    """With the in-memory store too: after mo_timeout the parts that came are handed over,
    marked incomplete; a handler failing on it no longer takes the link down."""
    got: list[MobileOriginated] = []
    delivered = asyncio.Event()

    async def fails_first(event: InboundEvent) -> None:
        assert isinstance(event, MobileOriginated)
        got.append(event)
        if len(got) == 1:
            raise RuntimeError("database is locked")
        delivered.set()

    p1, _p2, p3 = mo_parts(TEXT, "447700900123", "12345", reference=11)
    async with running(None, fails_first, mo_timeout=0.1) as (sim, client):
        sim.inject([p3, p1])
        await asyncio.wait_for(delivered.wait(), 5)
        first, second = got
        assert first == second  # offered again one mo_timeout after the failure
        assert not second.complete and second.missing == (2,) and second.parts == 2
        stats = client.statistics()
        assert stats.reconnects == 0 and stats.state == "bound_trx"
