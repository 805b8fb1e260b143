"""The asyncio client against the simulator over real loopback sockets."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from drivers.sim.smsc import SmscOptions, SmscSimulator
from drivers.smpp.client import (
    Accepted,
    InboundEvent,
    Rejected,
    SmppClient,
    SubmitRequest,
    Unknown,
)
from drivers.smpp.config import BindMode
from drivers.smpp.errors import CommandStatus, NotBound, StatusClass
from drivers.smpp.mo import MobileOriginated
from drivers.smpp.pdu import (
    CommandId,
    DeliverSm,
    FrameReader,
    HeaderOnly,
    SubmitSmResp,
    decode,
    encode,
)
from drivers.smpp.receipts import DeliveryReceipt, IdConvention, IdFormat, MessageState
from tests.smpp.conftest import Collector, fast_config, running, settle

CREDS = {"shop": "secret"}


def req(n: int = 0, registered: int = 0) -> SubmitRequest:
    return SubmitRequest(
        f"4477009{n:05d}",
        f"message {n}".encode(),
        source_addr="Shop",
        source_addr_ton=5,
        registered_delivery=registered,
    )


@pytest.mark.parametrize("mode", list(BindMode))
async def test_every_bind_type(mode: BindMode, collector: Collector) -> None:
    async with SmscSimulator(SmscOptions(credentials=CREDS)) as sim:
        cfg = fast_config(sim.port, bind=mode, system_type="VMA")
        async with SmppClient(cfg, collector) as client:
            await client.wait_bound(5)
            conns = len(mode.bind_types())
            await sim.wait_bound(conns)
            kinds = sorted(c.session.bind_type.value for c in sim.connections)  # type: ignore[union-attr]
            assert kinds == sorted(k.value for k in mode.bind_types())
            if mode is BindMode.RECEIVER:
                with pytest.raises(NotBound):
                    await client.submit(req())
            else:
                outcome = await client.submit(req(1, registered=1))
                assert isinstance(outcome, Accepted)
            if mode is not BindMode.TRANSMITTER:
                sim.inject_mo("STOP", "447700900555", "12345")
                [*_, mo] = await collector.wait_for(2 if mode is not BindMode.RECEIVER else 1)
                assert isinstance(mo, MobileOriginated) and mo.text == "STOP"
            if mode in (BindMode.TRANSCEIVER, BindMode.PAIR):
                receipts = [e for e in collector.events if isinstance(e, DeliveryReceipt)]
                assert [r.message_id for r in receipts] == [outcome.message_id]  # type: ignore[union-attr]
        # unbind before closing: the SMSC got an unbind on every connection, then they closed
        assert sim.unbinds == conns
        await sim.wait_for(lambda: not sim.connections, 2)
        assert client.statistics().state.count("closed") == conns
        assert {(b.system_id, b.system_type, b.password) for b in sim.binds} == {
            ("shop", "VMA", "secret")
        }


async def test_window_fills_and_drains() -> None:
    async with SmscSimulator(SmscOptions(stall_submits=True)) as sim:
        cfg = fast_config(sim.port, window=4, response_timeout=5.0)
        async with SmppClient(cfg) as client:
            await client.wait_bound(5)
            tasks = [asyncio.ensure_future(client.submit(req(i))) for i in range(10)]
            await sim.wait_for(lambda: len(sim.received) >= 4)
            # The SMSC holds back responses: exactly the window is outstanding, no more.
            assert client.statistics().window_in_use == 4
            assert len(sim.received) == 4
            sim.configure(stall_submits=False)
            # Answer the stalled four by hand; the rest then flow normally.
            conn = sim.connections[0]
            for r in list(sim.received):
                conn.write(conn.session.send(SubmitSmResp("late", 0, r.pdu.sequence), 0.0))
            results = await asyncio.gather(*tasks)
            assert all(isinstance(r, Accepted) for r in results)
            assert client.statistics().window_in_use == 0
            assert len(sim.received) == 10


async def test_a_cancelled_submit_keeps_its_window_slot_until_answered() -> None:
    async with running(SmscOptions(stall_submits=True), window=2, response_timeout=5) as (
        sim,
        client,
    ):
        first = [asyncio.ensure_future(client.submit(req(i))) for i in range(2)]
        await sim.wait_for(lambda: len(sim.received) >= 2)
        for task in first:
            task.cancel()
        third = asyncio.ensure_future(client.submit(req(3)))
        conn = sim.connections[0]
        await settle(sim, conn)
        # still two on the wire: the third waits instead of overfilling the window
        assert not third.done() and len(sim.received) == 2
        sim.configure(stall_submits=False)
        for r in list(sim.received):
            conn.write(conn.session.send(SubmitSmResp("late", 0, r.pdu.sequence), 0.0))
        assert isinstance(await asyncio.wait_for(third, 5), Accepted)
        assert client.statistics().window_in_use == 0


async def test_throttling_storm_loses_nothing() -> None:
    async with SmscSimulator(SmscOptions(throttle_rate=200)) as sim:
        cfg = fast_config(sim.port, window=32)
        async with SmppClient(cfg) as client:
            await client.wait_bound(5)
            results = await asyncio.gather(*(client.submit(req(i)) for i in range(300)))
            assert all(isinstance(r, Accepted) for r in results)
            stats = client.statistics()
            assert stats.throttles > 0 and sim.statistics().throttled > 0
            assert stats.state == "bound_trx" and stats.window == 32
            assert stats.window_in_use == 0 and stats.accepted == 300
            assert stats.submitted == 300 + stats.errors_by_status["ESME_RTHROTTLED"]
            # about the simulator's 200/s ceiling, measured over the last seconds
            assert 5 < stats.submits_per_second < 400
            assert stats.errors_by_status["ESME_RTHROTTLED"] == sim.statistics().throttled
            accepted = [r for r in sim.received if r.status == 0]
            assert sorted(r.pdu.destination_addr for r in accepted) == sorted(
                req(i).destination_addr for i in range(300)
            )
            assert len({r.message_id for r in results if isinstance(r, Accepted)}) == 300


async def test_queue_full_also_slows_down() -> None:
    async with (
        SmscSimulator(
            SmscOptions(throttle_rate=100, throttle_status=CommandStatus.ESME_RMSGQFUL)
        ) as sim,
        SmppClient(fast_config(sim.port, window=16)) as client,
    ):
        await client.wait_bound(5)
        results = await asyncio.gather(*(client.submit(req(i)) for i in range(60)))
        assert all(isinstance(r, Accepted) for r in results)
        assert client.statistics().errors_by_status["ESME_RMSGQFUL"] > 0


async def test_dropped_connection_mid_window_reports_unknown_and_reconnects() -> None:
    async with running(SmscOptions(stall_submits=True), window=8, response_timeout=10) as (
        sim,
        client,
    ):
        tasks = [asyncio.ensure_future(client.submit(req(i))) for i in range(5)]
        await sim.wait_for(lambda: len(sim.received) >= 5)
        sim.drop_all()
        results = await asyncio.gather(*tasks)
        assert all(isinstance(r, Unknown) and "link lost" in r.reason for r in results)
        sim.configure(stall_submits=False)
        # back after a reconnect, and the driver did not resend anything on its own
        outcome = await asyncio.wait_for(client.submit(req(99)), 5)
        assert isinstance(outcome, Accepted)
        assert len(sim.received) == 6
        assert client.statistics().reconnects >= 1


async def test_drop_after_n_pdus() -> None:
    async with running(SmscOptions(drop_after=4), window=1) as (_sim, client):
        outcomes = [await client.submit(req(i)) for i in range(6)]
        # bind + 2 submits answered; the 4th PDU (the 3rd submit) dies unanswered; the next
        # connection again drops its 4th PDU (the 6th submit overall)
        assert [type(o).__name__ for o in outcomes] == [
            "Accepted",
            "Accepted",
            "Unknown",
            "Accepted",
            "Accepted",
            "Unknown",
        ]


async def test_stalled_responses_time_out_as_unknown() -> None:
    async with running(SmscOptions(stall_submits=True), response_timeout=0.3) as (sim, client):
        outcome = await asyncio.wait_for(client.submit(req()), 5)
        assert isinstance(outcome, Unknown) and "no response" in outcome.reason
        assert client.statistics().unknown == 1 and client.statistics().window_in_use == 0
        assert len(sim.received) == 1  # never resent


async def test_dead_link_is_detected_by_enquire_link_and_reconnected() -> None:
    async with SmscSimulator() as sim:
        cfg = fast_config(sim.port, enquire_link_interval=0.1, link_timeout=0.2)
        async with SmppClient(cfg) as client:
            await client.wait_bound(5)
            [first] = sim.connections
            sim.configure(stall_all=True)
            # the client declares the silent link dead and drops it
            await sim.wait_for(lambda: first not in sim.connections)
            assert not client.bound
            assert "enquire_link" in (client.last_error or "")
            sim.configure(stall_all=False)
            await client.wait_bound(5)
            assert isinstance(await client.submit(req()), Accepted)


async def test_wrong_credentials_one_error_and_slow_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with SmscSimulator(SmscOptions(credentials={"shop": "other"})) as sim:
        cfg = fast_config(sim.port, credentials_retry=0.3)
        with caplog.at_level(logging.ERROR, logger="drivers.smpp.client"):
            async with SmppClient(cfg) as client:
                await sim.wait_for(lambda: len(sim.bind_times) >= 3)
                assert "ESME_RINVPASWD" in (client.last_error or "")
                assert not client.bound
        # one try per credentials_retry at most, and one error logged, not one per attempt
        gaps = [b - a for a, b in zip(sim.bind_times, sim.bind_times[1:], strict=False)]
        assert min(gaps) >= 0.3 * 0.99
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "password" in errors[0].getMessage()


async def test_bind_refusal_then_accept_with_backoff() -> None:
    async with running(SmscOptions(reject_binds=3)) as (sim, client):
        assert sim.statistics().binds_refused == 3
        assert client.statistics().errors_by_status["ESME_RBINDFAIL"] == 3


async def test_already_bound_does_not_storm() -> None:
    async with running(SmscOptions(max_binds_per_system_id=1)) as (sim, _first):
        cfg = fast_config(sim.port, reconnect_min=0.05, reconnect_max=0.4)
        async with SmppClient(cfg) as second:
            await sim.wait_for(lambda: sim.statistics().binds_refused >= 4)
            refused = sim.statistics().binds_refused
            assert not second.bound
            # (the last refusal may still be on its way to the client)
            assert second.statistics().errors_by_status["ESME_RALYBND"] in (refused - 1, refused)
        # exponential backoff with jitter: each wait at least half of 0.05 * 2**attempt
        times = sim.bind_times[1:]  # the first bind is the first client's
        gaps = [b - a for a, b in itertools.pairwise(times)]
        for attempt, gap in enumerate(gaps[:3]):
            assert gap >= 0.05 * 2**attempt / 2 * 0.99


async def test_receipts_before_and_after_the_submit_response(collector: Collector) -> None:
    for first in (True, False):
        collector.events.clear()
        async with running(SmscOptions(receipts_first=first), collector) as (_sim, client):
            outcome = await client.submit(req(1, registered=1))
            assert isinstance(outcome, Accepted)
            [receipt] = await collector.wait_for(1)
            assert isinstance(receipt, DeliveryReceipt)
            assert receipt.message_id == outcome.message_id
            assert receipt.state is MessageState.DELIVERED


@pytest.mark.parametrize(
    ("id_format", "receipt_format", "convention"),
    [
        ("hex", "decimal", IdConvention(IdFormat.HEX, IdFormat.DECIMAL)),
        ("decimal", "hex", IdConvention(IdFormat.DECIMAL, IdFormat.HEX)),
        ("decimal", "decimal", IdConvention()),
        ("hex", "hex", IdConvention()),
    ],
)
async def test_hex_and_decimal_ids_match_with_the_bind_convention(
    id_format: str, receipt_format: str, convention: IdConvention, collector: Collector
) -> None:
    opts = SmscOptions(id_format=id_format, receipt_id_format=receipt_format, receipt_tlvs=False)
    async with running(opts, collector, id_convention=convention) as (_sim, c):
        outcome = await c.submit(req(1, registered=1))
        [receipt] = await collector.wait_for(1)
        assert isinstance(outcome, Accepted) and isinstance(receipt, DeliveryReceipt)
        assert receipt.raw_id != outcome.raw_id or id_format == receipt_format
        assert receipt.message_id == outcome.message_id


async def test_outcome_mix_and_failure_only_receipts(collector: Collector) -> None:
    mix = {"DELIVRD": 1.0, "UNDELIV": 1.0, "EXPIRED": 1.0, "REJECTD": 1.0}
    async with running(SmscOptions(outcomes=mix, receipt_delay=0.05, seed=3), collector) as (
        _sim,
        client,
    ):
        outcomes = await asyncio.gather(*(client.submit(req(i, 1)) for i in range(40)))
        events = await collector.wait_for(40)
        states = {e.state for e in events if isinstance(e, DeliveryReceipt)}
        assert states == {
            MessageState.DELIVERED,
            MessageState.UNDELIVERABLE,
            MessageState.EXPIRED,
            MessageState.REJECTED,
        }
        ids = {o.message_id for o in outcomes if isinstance(o, Accepted)}
        assert {e.message_id for e in events if isinstance(e, DeliveryReceipt)} == ids


async def test_multipart_mo_in_random_order(collector: Collector) -> None:
    texts = {
        "udh8": "Hi, I'd like to know when my order ships. " * 6,
        "udh16": "Ünïcödé ☃ reply: " * 12,
        "sar": "SAR concatenated message body " * 9,
        "payload": "one PDU, message_payload TLV " * 10,
    }
    async with running(SmscOptions(seed=7), collector) as (sim, _client):
        for concat, text in texts.items():
            parts = sim.inject_mo(text, "447700900777", "12345", concat=concat, shuffle=True)
            assert len(parts) > 1 or concat == "payload"
        events = await collector.wait_for(len(texts))
        got = sorted(e.text or "" for e in events if isinstance(e, MobileOriginated))
        assert got == sorted(texts.values())
        assert all(e.complete for e in events if isinstance(e, MobileOriginated))


async def test_deliver_sm_resp_only_after_the_handler_returned() -> None:
    release = asyncio.Event()
    seen = asyncio.Event()

    async def slow_handler(event: object) -> None:
        seen.set()
        await release.wait()

    async with running(None, slow_handler) as (sim, _client):
        mo = DeliverSm(source_addr="447700900123", destination_addr="1", short_message=b"hi")
        conn = sim.inject([mo])
        await asyncio.wait_for(seen.wait(), 5)
        await settle(sim, conn)
        assert conn.deliver_results == []
        release.set()
        await sim.wait_for(lambda: bool(conn.deliver_results))
        assert conn.deliver_results[0][1] == 0


async def test_temporary_handler_failure_is_redelivered(collector: Collector) -> None:
    failures = 1

    async def flaky(event: InboundEvent) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("database is locked")
        await collector(event)

    async with running(SmscOptions(redeliver_delay=0.05), flaky) as (sim, _client):
        sim.inject_mo("hello again", "447700900123", "1")
        [mo] = await collector.wait_for(1)
        assert isinstance(mo, MobileOriginated) and mo.text == "hello again"
        assert sim.statistics().redeliveries == 1


async def test_receipt_unconfirmed_when_the_link_drops_is_delivered_again(
    collector: Collector,
) -> None:
    calls = 0
    never, first_call = asyncio.Event(), asyncio.Event()

    async def stuck_once(event: InboundEvent) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            first_call.set()
            await never.wait()  # the first delivery hangs until the link is gone
        await collector(event)

    async with running(None, stuck_once) as (sim, client):
        outcome = await client.submit(req(1, registered=1))
        await asyncio.wait_for(first_call.wait(), 5)
        sim.drop_all()
        [receipt] = await collector.wait_for(1)
        assert isinstance(receipt, DeliveryReceipt) and isinstance(outcome, Accepted)
        assert receipt.message_id == outcome.message_id and calls == 2
        assert sim.statistics().receipts_sent == 1


async def test_failing_handler_asks_for_redelivery() -> None:
    async def broken(event: object) -> None:
        raise RuntimeError("database is locked")

    async with SmscSimulator() as sim, SmppClient(fast_config(sim.port), broken) as client:
        await client.wait_bound(5)
        [conn] = sim.connections
        sim.inject_mo("hello", "447700900123", "1")
        await sim.wait_for(lambda: bool(conn.deliver_results))
        assert conn.deliver_results[0][1] == CommandStatus.ESME_RX_T_APPN


@pytest.mark.parametrize("kind", ["unknown_command", "truncated_tlv", "bad_cstring"])
async def test_malformed_pdus_are_nacked_and_the_link_survives(
    kind: str, collector: Collector
) -> None:
    async with SmscSimulator() as sim, SmppClient(fast_config(sim.port), collector) as client:
        await client.wait_bound(5)
        sim.send_malformed(kind)
        sim.inject_mo("still here", "447700900123", "1")
        [mo] = await collector.wait_for(1)
        assert isinstance(mo, MobileOriginated) and mo.text == "still here"
        assert client.statistics().violations == 1 and client.statistics().reconnects == 0
        assert isinstance(await client.submit(req()), Accepted)


async def test_broken_framing_reconnects() -> None:
    async with SmscSimulator() as sim, SmppClient(fast_config(sim.port)) as client:
        await client.wait_bound(5)
        sim.send_malformed("bad_length")
        await sim.wait_for(lambda: sim.statistics().binds_accepted >= 2)
        assert client.statistics().reconnects == 1
        await client.wait_bound(5)
        assert isinstance(await client.submit(req()), Accepted)


async def test_smsc_unbind_makes_the_client_rebind(caplog: pytest.LogCaptureFixture) -> None:
    async with SmscSimulator() as sim, SmppClient(fast_config(sim.port)) as client:
        await client.wait_bound(5)
        sim.unbind_all()
        await sim.wait_for(lambda: sim.statistics().binds_accepted >= 2)
        assert client.statistics().reconnects == 1
        await client.wait_bound(5)
        assert "the SMSC unbound" in caplog.text
        assert isinstance(await client.submit(req()), Accepted)


async def test_permanent_and_temporary_rejections_are_classified() -> None:
    async with running(SmscOptions(submit_status=CommandStatus.ESME_RINVDSTADR)) as (sim, client):
        outcome = await client.submit(req())
        assert isinstance(outcome, Rejected)
        assert outcome.classification is StatusClass.PERMANENT
        assert outcome.status_name == "ESME_RINVDSTADR"
        sim.configure(submit_status=CommandStatus.ESME_RSYSERR)
        outcome = await client.submit(req())
        assert isinstance(outcome, Rejected)
        assert outcome.classification is StatusClass.TEMPORARY
        stats = client.statistics()
        assert dict(stats.errors_by_status) == {"ESME_RINVDSTADR": 1, "ESME_RSYSERR": 1}


async def test_throughput_limit_paces_submits() -> None:
    async with SmscSimulator() as sim:
        cfg = fast_config(sim.port, throughput=50.0, window=16)
        async with SmppClient(cfg) as client:
            await client.wait_bound(5)
            loop = asyncio.get_running_loop()
            start = loop.time()
            await asyncio.gather(*(client.submit(req(i)) for i in range(30)))
            elapsed = loop.time() - start
            # burst of 5 (rate/10) then 50/s: 25 more need about 0.5 s
            assert 0.4 <= elapsed <= 5.0  # the upper bound only guards against a stall


async def test_simulator_survives_malformed_pdus_from_a_raw_peer() -> None:
    async with SmscSimulator() as sim:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        unknown = (16).to_bytes(4, "big") + (0x77).to_bytes(4, "big") + bytes(4)
        unknown += (5).to_bytes(4, "big")
        query = (16).to_bytes(4, "big") + CommandId.QUERY_SM.to_bytes(4, "big") + bytes(4)
        query += (6).to_bytes(4, "big")
        writer.write(unknown + query + encode(HeaderOnly(CommandId.ENQUIRE_LINK, 0, 7)))
        replies: list[object] = []
        reader_frames = FrameReader()
        async with asyncio.timeout(5):
            while len(replies) < 3:
                frames, error = reader_frames.feed(await reader.read(4096))
                assert error is None
                replies.extend(decode(f) for f in frames)
        assert replies == [
            HeaderOnly(CommandId.GENERIC_NACK, CommandStatus.ESME_RINVCMDID, 5),
            HeaderOnly(CommandId.GENERIC_NACK, CommandStatus.ESME_RINVCMDID, 6),
            HeaderOnly(CommandId.ENQUIRE_LINK_RESP, 0, 7),
        ]
        # a frame whose command_length cannot be right ends that connection, nothing else
        writer.write((4).to_bytes(4, "big") + bytes(12))
        rest = await asyncio.wait_for(reader.read(), 5)  # the nack, then end of stream
        assert decode(rest[:16]).command_id == CommandId.GENERIC_NACK
        await sim.wait_for(lambda: not sim.connections)
        assert sim.statistics().violations == 3
        writer.close()
        async with SmppClient(fast_config(sim.port)) as client:  # the simulator still serves
            await client.wait_bound(5)
            assert isinstance(await client.submit(req()), Accepted)


async def test_slow_handler_pauses_reading_and_everything_arrives_after() -> None:
    release = asyncio.Event()
    got: list[InboundEvent] = []

    async def slow(event: InboundEvent) -> None:
        await release.wait()
        got.append(event)

    async with running(None, slow, inbound_queue=2) as (sim, client):
        for i in range(10):
            sim.inject_mo(f"message {i}", "447700900123", "1")
        await asyncio.sleep(0.1)  # give the client time to read what it is willing to read
        assert got == [] and client.statistics().mo_messages <= 1  # one is in the handler
        release.set()
        [conn] = sim.connections
        await sim.wait_for(lambda: len(conn.deliver_results) == 10)
        assert sorted(e.text or "" for e in got) == sorted(f"message {i}" for i in range(10))
        assert all(status == 0 for _, status in conn.deliver_results)
