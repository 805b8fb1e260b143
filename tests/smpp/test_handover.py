"""deliver_sm hand-over (drivers/smpp/handover.py) against the simulator over TCP: each
deliver_sm is answered only when its handler returned, receipts several at once and answered
in any order, MO messages one at a time in order, and a ``receipts_handler`` gets the receipts
read together as one list."""

from __future__ import annotations

import asyncio

from drivers.sim.smsc import SmscOptions, SmscSimulator
from drivers.smpp.client import Accepted, InboundEvent, SmppClient, SubmitRequest
from drivers.smpp.errors import CommandStatus
from drivers.smpp.mo import MobileOriginated
from drivers.smpp.receipts import DeliveryReceipt
from tests.smpp.conftest import fast_config, running


def request(n: int) -> SubmitRequest:
    return SubmitRequest(f"4477009{n:05d}", f"message {n}".encode(), registered_delivery=1)


class Gate:
    """A handler that holds each receipt until the test lets it go."""

    def __init__(self) -> None:
        self.held: dict[str, asyncio.Event] = {}
        self.arrived = asyncio.Event()
        self.mo: list[str] = []

    async def __call__(self, event: InboundEvent) -> None:
        if isinstance(event, MobileOriginated):
            # A STOP takes longer to handle: handled side by side, the START after it would
            # finish first.
            for _ in range(5 if event.text == "STOP" else 0):
                await asyncio.sleep(0)
            self.mo.append(event.text or "")
            return
        assert isinstance(event, DeliveryReceipt)
        gate = self.held.setdefault(event.message_id, asyncio.Event())
        self.arrived.set()
        await gate.wait()


async def test_receipts_are_answered_when_their_own_handler_returns_in_any_order() -> None:
    gate = Gate()
    async with running(SmscOptions(receipt_delay=0.01), gate) as (sim, client):
        first = await client.submit(request(1))
        second = await client.submit(request(2))
        assert isinstance(first, Accepted) and isinstance(second, Accepted)
        [conn] = sim.connections
        async with asyncio.timeout(5):
            while len(gate.held) < 2:  # both handlers running at once
                gate.arrived.clear()
                await gate.arrived.wait()
        assert conn.deliver_results == []  # nothing answered while the handlers run
        gate.held[second.message_id].set()
        await sim.wait_for(lambda: len(conn.deliver_results) == 1, 5)
        gate.held[first.message_id].set()
        await sim.wait_for(lambda: len(conn.deliver_results) == 2, 5)
        second_seq, first_seq = (seq for seq, _status in conn.deliver_results)
        assert second_seq > first_seq  # the later deliver_sm was answered first
        assert all(status == 0 for _seq, status in conn.deliver_results)


async def test_mo_messages_are_handed_over_in_arrival_order() -> None:
    gate = Gate()
    async with running(None, gate) as (sim, _client):
        for text in ("STOP", "START", "STOP", "HELP"):
            sim.inject_mo(text, "447700900555", "12345")
        await sim.wait_for(lambda: sim.statistics().deliver_responses == 4, 5)
        assert gate.mo == ["STOP", "START", "STOP", "HELP"]


async def test_a_receipts_handler_gets_lists_and_is_answered_after_it_returns() -> None:
    calls: list[list[str]] = []
    all_in = asyncio.Event()
    release = asyncio.Event()
    failures_left = 1

    async def on_receipts(receipts: list[DeliveryReceipt]) -> None:
        nonlocal failures_left
        calls.append([r.message_id for r in receipts])
        if sum(len(c) for c in calls) >= 20:
            all_in.set()
        await release.wait()
        if failures_left:
            failures_left -= 1
            raise RuntimeError("database is locked")

    options = SmscOptions(receipt_delay=0.05, redeliver_delay=0.05)
    async with (
        SmscSimulator(options) as sim,
        SmppClient(fast_config(sim.port), receipts_handler=on_receipts) as client,
    ):
        await client.wait_bound(5)
        outcomes = await asyncio.gather(*(client.submit(request(n)) for n in range(20)))
        ids = {o.message_id for o in outcomes if isinstance(o, Accepted)}
        assert len(ids) == 20
        [conn] = sim.connections
        async with asyncio.timeout(5):
            await all_in.wait()
        assert conn.deliver_results == []  # held: not one answered
        assert len(calls) < 20  # read together, handed over together
        release.set()
        # The first call failed: its receipts were refused and delivered again.
        await sim.wait_for(lambda: sum(1 for _s, st in conn.deliver_results if st == 0) == 20,
                           5)
        refused = [st for _s, st in conn.deliver_results if st]
        assert refused and set(refused) == {CommandStatus.ESME_RX_T_APPN}
        assert {i for c in calls for i in c} == ids
        assert client.statistics().receipts == 20 + len(refused)
