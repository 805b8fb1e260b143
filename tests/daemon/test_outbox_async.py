"""The asyncio face of the outbox (gateway/dispatch_db.py): calls run on the outbox's own
thread, in order; rows are shared with other connections."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from gateway.dispatch_db import AsyncOutbox
from gateway.outbox import Lane, NewMessage, Outbox, OutboxError, State, Submitted


async def test_claim_and_mark_from_asyncio_see_rows_written_by_another_process_connection(
    tmp_path: Path,
) -> None:
    db = tmp_path / "gw.db"
    async with await AsyncOutbox.open(db) as ob:
        # the CLI writes through its own connection while the daemon's outbox is open
        with Outbox(db) as cli:
            campaign = cli.enqueue(NewMessage("+447911123456", "bulk", lane=Lane.CAMPAIGN))
            otp = cli.enqueue(NewMessage("+447911123457", "code 1234"))
        claimed = await ob.run(Outbox.claim, 10)
        assert [c.id for c in claimed] == [otp.id, campaign.id]
        await ob.run(Outbox.mark_many, [Submitted(c.id, 0, "carrier-a", str(c.id))
                                        for c in claimed])
        stats = await ob.run(Outbox.statistics)
        assert stats.count(state=State.SUBMITTED) == 2
        assert await ob.run(Outbox.cancel_queued_for_number, "+447911123456") == 0
        assert await ob.run(Outbox.find, to="+447911123457") != []  # keyword arguments too
        thread = await ob.run(lambda _ob: threading.current_thread().name)
        assert thread.startswith("outbox") and thread != threading.current_thread().name


async def test_calls_do_not_block_the_event_loop(tmp_path: Path) -> None:
    async with await AsyncOutbox.open(tmp_path / "gw.db") as ob:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        batch = [NewMessage(f"+4479111{i:05d}", "m") for i in range(5_000)]
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(ticker())
            accepted = await ob.run(Outbox.enqueue_many, batch)
            task.cancel()
        assert len(accepted) == 5_000
        assert ticks > 1  # the loop kept running while the batch was written


async def test_closed_outbox_refuses_calls(tmp_path: Path) -> None:
    ob = await AsyncOutbox.open(tmp_path / "gw.db")
    await ob.aclose()
    await ob.aclose()  # idempotent
    with pytest.raises(OutboxError):
        await ob.run(Outbox.claim, 1)


async def test_calls_apply_in_the_order_they_were_made(tmp_path: Path) -> None:
    async with await AsyncOutbox.open(tmp_path / "gw.db") as ob:
        # started together, applied one by one on the one thread: each enqueue sees the last
        results = await asyncio.gather(*(
            ob.run(Outbox.enqueue, NewMessage(f"+4479111{i:05d}", "m")) for i in range(20)
        ))
        assert [a.id for a in results] == list(range(1, 21))
