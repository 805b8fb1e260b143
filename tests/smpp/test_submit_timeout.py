"""``submit(wait_bound_timeout=...)``: without a bound link in time the outcome is
``Unavailable`` (a link-level ``Rejected``; nothing was written), never ``Unknown``."""

from __future__ import annotations

import asyncio

import pytest

from drivers.sim.smsc import SmscOptions, SmscSimulator
from drivers.smpp.client import Accepted, Rejected, SmppClient, SubmitRequest, Unavailable
from drivers.smpp.errors import CommandStatus, StatusClass
from tests.smpp.conftest import fast_config, running


def req(n: int = 0) -> SubmitRequest:
    return SubmitRequest(f"4477009{n:05d}", f"message {n}".encode(), source_addr="Shop")


async def test_binds_refused_give_unavailable_after_the_timeout() -> None:
    async with SmscSimulator(SmscOptions(reject_binds=-1)) as sim:
        async with SmppClient(fast_config(sim.port)) as client:
            await sim.wait_for(lambda: sim.statistics().binds_refused >= 1)
            loop = asyncio.get_running_loop()
            start = loop.time()
            outcome = await client.submit(req(), wait_bound_timeout=0.2)
            assert loop.time() - start >= 0.2 * 0.99  # it did wait for a bind
            assert isinstance(outcome, Unavailable) and isinstance(outcome, Rejected)
            assert outcome.classification is StatusClass.LINK
            assert outcome.status == CommandStatus.ESME_RINVBNDSTS
            assert "no bound link within 0.2s" in outcome.reason
            assert "ESME_RBINDFAIL" in outcome.reason  # why, from the last bind attempt
            stats = client.statistics()
            assert stats.unavailable == 1 and stats.unknown == 0 and stats.submitted == 0
            assert stats.rejected == 0  # the carrier rejected nothing
        assert sim.received == [] and sim.statistics().submits == 0


async def test_the_config_sets_the_default_and_a_call_can_lift_it() -> None:
    async with (
        SmscSimulator(SmscOptions(reject_binds=-1)) as sim,
        SmppClient(fast_config(sim.port, wait_bound_timeout=0.05)) as client,
    ):
        assert isinstance(await client.submit(req(1)), Unavailable)
        # None for this call: wait as long as it takes, as without a timeout
        waiting = asyncio.ensure_future(client.submit(req(2), wait_bound_timeout=None))
        refused = sim.statistics().binds_refused
        await sim.wait_for(lambda: sim.statistics().binds_refused >= refused + 3)
        assert not waiting.done()
        sim.configure(reject_binds=0)
        outcome = await asyncio.wait_for(waiting, 5)
        assert isinstance(outcome, Accepted)
        assert [r.pdu.destination_addr for r in sim.received] == [req(2).destination_addr]


async def test_without_a_timeout_submit_still_waits_for_the_bind() -> None:
    async with (
        SmscSimulator(SmscOptions(reject_binds=-1)) as sim,
        SmppClient(fast_config(sim.port)) as client,
    ):
        waiting = asyncio.ensure_future(client.submit(req()))
        await sim.wait_for(lambda: sim.statistics().binds_refused >= 3)
        assert not waiting.done()
        sim.configure(reject_binds=0)
        assert isinstance(await asyncio.wait_for(waiting, 5), Accepted)


async def test_a_lost_link_that_cannot_rebind_gives_unavailable() -> None:
    async with running() as (sim, client):
        assert isinstance(await client.submit(req(1), wait_bound_timeout=0), Accepted)
        sim.configure(reject_binds=-1)
        sim.drop_all()
        await sim.wait_for(lambda: sim.statistics().binds_refused >= 1)
        outcome = await client.submit(req(2), wait_bound_timeout=0.1)
        assert isinstance(outcome, Unavailable)
        assert "ESME_RBINDFAIL" in outcome.reason
        assert len(sim.received) == 1  # only the first submit reached the SMSC


def test_negative_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="wait_bound_timeout"):
        fast_config(1, wait_bound_timeout=-1.0)
