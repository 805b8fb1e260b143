"""``SmppClient.submit_many`` against the simulator over real TCP: one outcome per request,
exactly once, the window never overfilled, throttles resubmitted, refusals and lost links
classified as ``submit()`` does, and a cancelled batch reports nothing more."""

from __future__ import annotations

import asyncio

from drivers.sim.smsc import SmscOptions
from drivers.smpp.client import Accepted, Rejected, SubmitOutcome, SubmitRequest, Unknown
from drivers.smpp.errors import CommandStatus, StatusClass
from drivers.smpp.submit import Unavailable
from tests.smpp.conftest import running


def requests(n: int) -> list[SubmitRequest]:
    return [SubmitRequest(f"4477009{i:05d}", f"message {i}".encode()) for i in range(n)]


class Outcomes:
    def __init__(self) -> None:
        self.by_index: dict[int, list[SubmitOutcome]] = {}

    def __call__(self, index: int, outcome: SubmitOutcome) -> None:
        self.by_index.setdefault(index, []).append(outcome)

    def single(self) -> dict[int, SubmitOutcome]:
        assert all(len(v) == 1 for v in self.by_index.values()), self.by_index
        return {i: v[0] for i, v in self.by_index.items()}


async def test_every_request_gets_one_outcome_and_is_written_once_in_order() -> None:
    # The session refuses a request over its window (LocalProtocolError), so a pump that
    # overfilled it would fail here rather than pass.
    async with running(window=8) as (sim, client):
        seen = Outcomes()
        await client.submit_many(requests(300), seen)
        outcomes = seen.single()
        assert sorted(outcomes) == list(range(300))
        assert all(isinstance(o, Accepted) for o in outcomes.values())
        ids = {o.message_id for o in outcomes.values() if isinstance(o, Accepted)}
        assert len(ids) == 300
        assert [r.pdu.destination_addr for r in sim.received] == \
            [r.destination_addr for r in requests(300)]  # in order, none twice
        stats = client.statistics()
        assert stats.accepted == stats.submitted == 300 and stats.window_in_use == 0


async def test_batches_and_single_submits_share_the_window() -> None:
    async with running(window=4) as (sim, client):
        a, b = Outcomes(), Outcomes()
        single: list[SubmitOutcome] = []

        async def one() -> None:
            single.append(await client.submit(SubmitRequest("447700999999", b"alone")))

        async with asyncio.TaskGroup() as tg:
            tg.create_task(client.submit_many(requests(100), a))
            tg.create_task(client.submit_many(requests(100), b))
            tg.create_task(one())
        assert len(a.single()) == len(b.single()) == 100
        assert isinstance(single[0], Accepted)
        # The lone submit queued behind the batches' slots, not behind their 200 requests.
        order = [r.pdu.destination_addr for r in sim.received]
        assert order.index("447700999999") < 20
        assert len(order) == 201


async def test_throttled_requests_are_resubmitted_not_failed() -> None:
    async with running(SmscOptions(throttle_rate=200.0), window=8) as (sim, client):
        seen = Outcomes()
        await client.submit_many(requests(60), seen)
        outcomes = seen.single()
        assert all(isinstance(o, Accepted) for o in outcomes.values())
        assert client.statistics().throttles >= 1
        assert sum(1 for r in sim.received if r.status == 0) == 60


async def test_refusals_keep_their_status_and_class() -> None:
    options = SmscOptions(submit_status=CommandStatus.ESME_RINVDSTADR)
    async with running(options) as (_sim, client):
        seen = Outcomes()
        await client.submit_many(requests(5), seen)
        for outcome in seen.single().values():
            assert isinstance(outcome, Rejected) and not isinstance(outcome, Unavailable)
            assert outcome.status == CommandStatus.ESME_RINVDSTADR
            assert outcome.classification is StatusClass.PERMANENT


async def test_unanswered_requests_are_unknown_and_the_rest_unavailable() -> None:
    # Written, never answered, then the link is lost: Unknown. With binds refused from then
    # on, nothing can be written within wait_bound_timeout: Unavailable.
    async with running(SmscOptions(stall_submits=True), window=3,
                       response_timeout=0.3) as (sim, client):
        seen = Outcomes()
        task = asyncio.create_task(client.submit_many(requests(3), seen))
        await sim.wait_for(lambda: len(sim.received) == 3, 5)
        sim.configure(reject_binds=-1)
        for conn in list(sim.connections):
            conn.abort()
        await task
        assert all(isinstance(o, Unknown) for o in seen.single().values())
        later = Outcomes()
        await client.submit_many(requests(4), later, wait_bound_timeout=0.2)
        outcomes = later.single()
        assert all(isinstance(o, Unavailable) for o in outcomes.values())
        assert client.statistics().unavailable == 4


async def test_a_cancelled_batch_reports_nothing_more_and_frees_its_slots() -> None:
    async with running(SmscOptions(stall_submits=True), window=4,
                       response_timeout=0.3) as (sim, client):
        seen = Outcomes()
        task = asyncio.create_task(client.submit_many(requests(10), seen))
        await sim.wait_for(lambda: len(sim.received) == 4, 5)
        task.cancel()
        await asyncio.wait({task})
        assert seen.by_index == {}
        sim.configure(stall_submits=False)
        # The 4 written requests time out (Unknown, unreported); their slots come back.
        after = Outcomes()
        await client.submit_many(requests(4), after)
        assert all(isinstance(o, Accepted) for o in after.single().values())
        assert seen.by_index == {}


async def test_a_first_batch_goes_ahead_of_the_queued_ones() -> None:
    async with running(window=2) as (sim, client):
        bulk, urgent = Outcomes(), Outcomes()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(client.submit_many(requests(200), bulk))
            await sim.wait_for(lambda: len(sim.received) >= 10, 5)
            tg.create_task(client.submit_many(
                [SubmitRequest("447700999999", b"code 123456")], urgent, first=True))
        assert len(bulk.single()) == 200 and isinstance(urgent.single()[0], Accepted)
        order = [r.pdu.destination_addr for r in sim.received]
        # Behind what was written or in the window when it came, not behind the 190 queued.
        assert order.index("447700999999") < 20


async def test_a_batch_goes_on_over_a_new_link_after_the_old_one_dropped() -> None:
    # The simulator drops every connection on its 20th PDU: requests in flight then are
    # Unknown, the rest go out once bound again (the window of the new session is new).
    async with running(SmscOptions(drop_after=20), window=8) as (sim, client):
        seen = Outcomes()
        await client.submit_many(requests(100), seen, wait_bound_timeout=10)
        outcomes = seen.single()
        assert sorted(outcomes) == list(range(100))
        unknown = [i for i, o in outcomes.items() if isinstance(o, Unknown)]
        accepted = [i for i, o in outcomes.items() if isinstance(o, Accepted)]
        assert unknown and len(unknown) + len(accepted) == 100
        assert client.statistics().reconnects >= 1
        assert sim.statistics().accepted == len(accepted)


async def test_a_request_that_cannot_be_encoded_is_refused_alone() -> None:
    # short_message over 254 octets (SMPP 3.4 §4.4.1): refused here, nothing written; the
    # rest of the batch goes out and the link stays up.
    async with running(window=4) as (sim, client):
        batch = requests(5)
        batch[2] = SubmitRequest("447700900002", b"x" * 300)
        seen = Outcomes()
        await client.submit_many(batch, seen)
        outcomes = seen.single()
        bad = outcomes.pop(2)
        assert isinstance(bad, Rejected) and bad.classification is StatusClass.PERMANENT
        assert bad.status == CommandStatus.ESME_RINVMSGLEN
        assert all(isinstance(o, Accepted) for o in outcomes.values())
        assert len(sim.received) == 4 and client.statistics().reconnects == 0
