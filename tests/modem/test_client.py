"""The modem driver against the simulator over real ptys: start-up, send, receive, reports."""

from __future__ import annotations

import asyncio
from io import StringIO
from typing import Any

import pytest
from smspdudecoder.fields import SMSSubmit  # independent decoder (protocols.md §6.3)

from drivers.modem.client import ModemState
from drivers.modem.responses import Registration
from drivers.sim.modem_profiles import PROFILES
from drivers.sim.modem_sms import deliver_pdus
from tests.modem.modemkit import (
    pdus,
    running,
    wait_sim,
    wait_state,
    without_stored_indications,
)


def independent(pdu: bytes) -> Any:
    """Decode an SMS-SUBMIT (SCA first) with smspdudecoder, which shares no code with ours."""
    return SMSSubmit.decode(StringIO(pdu.hex().upper()))


@pytest.mark.parametrize("name", sorted(PROFILES))
async def test_start_up_and_send_single_part_on_every_profile(name: str) -> None:
    async with running(name) as (sim, modem, _):
        assert modem.state is ModemState.READY
        assert modem.identity is not None and modem.identity.imei == sim.imei
        assert modem.identity.imsi == sim.imsi
        assert modem.smsc == sim.smsc
        assert modem.registration is Registration.HOME and modem.signal.dbm == -73
        assert modem.polling is (name == "polling")
        if name == "huawei-e1752":
            assert not sim.curc  # ^CURC=0 silenced the chatter
        (pdu,) = pdus("hello from smsgate")
        mr = await modem.send(pdu)
        (rec,) = sim.records
        assert rec.mr == mr and rec.pdu == pdu.data
        decoded = independent(rec.pdu)
        assert decoded["user_data"]["data"] == "hello from smsgate"
        assert decoded["recipient"]["number"] == "447700900123"


@pytest.mark.parametrize("name", sorted(PROFILES))
async def test_multipart_send_with_cmms_and_independent_decode(name: str) -> None:
    text = "Long message € " * 30
    async with running(name) as (sim, modem, _):
        parts = pdus(text)
        assert len(parts) > 2
        mrs = [await modem.send(p, more=i < len(parts) - 1) for i, p in enumerate(parts)]
        assert mrs == list(range(len(parts)))
        # AT+CMMS=2 once where the modem has it (Huawei E1752 and the Nokia do not).
        assert sim.commands.count("AT+CMMS=2") == 1
        assert modem.cmms_supported is sim.profile.cmms
        decoded = [independent(r.pdu) for r in sim.records]
        assert "".join(d["user_data"]["data"] for d in decoded) == text
        concat = [d["user_data"]["header"]["elements"][0]["data"] for d in decoded]
        assert len({c["reference"] for c in concat}) == 1
        assert [c["part_number"] for c in concat] == list(range(1, len(parts) + 1))


async def test_ucs2_send_is_decoded_independently() -> None:
    async with running("sim800") as (sim, modem, _):
        for p in pdus("Привет, мир 😀"):
            await modem.send(p)
        assert independent(sim.records[0].pdu)["user_data"]["data"] == "Привет, мир 😀"


async def test_huawei_without_cmms_still_sends_multipart() -> None:
    async with running("huawei-e1752") as (sim, modem, _):
        parts = pdus("x" * 400)
        for i, p in enumerate(parts):
            await modem.send(p, more=i < len(parts) - 1)
        assert len(sim.records) == len(parts) and not modem.cmms_supported


@pytest.mark.parametrize("name", ["generic", "huawei-e1752", "wavecom", "sim800"])
async def test_inbound_cmti_single_and_multipart_any_order(name: str) -> None:
    async with running(name) as (sim, _, inbox):
        (one,) = deliver_pdus("+447700900001", "STOP")
        sim.deliver(one)
        long_text = "Ünïcödé reply ✓ " * 12
        parts = deliver_pdus("+447700900002", long_text, reference=77)
        assert len(parts) >= 3
        for p in reversed(parts):
            sim.deliver(p)
        await inbox.wait_for(lambda: len(inbox.messages) == 2)
        first, second = inbox.messages
        assert (first.originator, first.text) == ("+447700900001", "STOP")
        assert second.text == long_text and second.complete and second.parts == len(parts)
        await wait_sim(sim, lambda: sim.store.used("SM") == 0)


@pytest.mark.parametrize("name", ["generic", "huawei-e1752", "wavecom", "sim800"])
@pytest.mark.parametrize("indications", ["store", "route"])
async def test_stored_mode_is_chosen_whenever_the_modem_offers_it(
    name: str, indications: str
) -> None:
    """Stored mode (+CMTI) is the durable one: even an operator who allows routing gets it
    from every profile that offers <mt>=1."""
    async with running(name, indications=indications) as (sim, modem, inbox):
        assert modem.cnmi is not None and modem.cnmi[1] == 1 and sim.cnmi[1] == 1
        assert not modem.polling and not modem.statistics().routed
        (p,) = deliver_pdus("+447700900014", "stored")
        assert sim.deliver(p) is not None  # stored, announced by +CMTI
        await inbox.wait_for(lambda: len(inbox.messages) == 1)


async def test_without_stored_indications_the_default_polls_rather_than_routes() -> None:
    async with running("generic", profile_kw=without_stored_indications("generic")) as (
        sim, modem, inbox
    ):
        assert modem.polling and modem.cnmi is None and not modem.statistics().routed
        (p,) = deliver_pdus("+447700900015", "found by polling")
        assert sim.deliver(p) is not None
        await inbox.wait_for(lambda: len(inbox.messages) == 1)
        await wait_sim(sim, lambda: sim.store.used("SM") == 0)


@pytest.mark.parametrize("name", ["generic", "huawei-e1752", "wavecom", "sim800"])
async def test_inbound_cmt_routed_and_acknowledged(name: str) -> None:
    profile_kw = without_stored_indications(name, csms_service=1)
    async with running(
        name, profile_kw=profile_kw, indications="route"
    ) as (sim, modem, inbox):
        assert modem.cnmi is not None and modem.cnmi[1] == 2 and modem.needs_cnma
        assert modem.statistics().routed and not modem.polling
        for p in deliver_pdus("+447700900003", "routed " * 40, reference=9):
            sim.deliver(p)
        await inbox.wait_for(lambda: len(inbox.messages) == 1)
        assert inbox.messages[0].text == "routed " * 40
        await wait_sim(sim, lambda: "AT+CNMA" in sim.commands)
        assert sim.store.used("SM") == 0


async def test_status_reports_stored_and_routed() -> None:
    for name, ds in (("generic", 2), ("sim800", 1), ("wavecom", 2)):
        async with running(name, sim_kw={"status_report_delay": 0.01}) as (sim, modem, inbox):
            assert modem.cnmi is not None and modem.cnmi[3] == ds
            (p,) = pdus("report me", status_report=True)
            mr = await modem.send(p)
            await inbox.wait_for(lambda: len(inbox.reports) == 1)
            (r,) = inbox.reports
            assert (r.message_reference, r.recipient, r.category) == (
                mr, "+447700900123", "delivered"
            )
            if name == "wavecom":  # its reports sit in "SR": read there, then back to "SM"
                await wait_sim(sim, lambda: sim.store.used("SR") == 0)
                assert 'AT+CPMS="SR"' in sim.commands
                await wait_sim(sim, lambda: sim.mems[0] == "SM")


async def test_a_report_in_sr_storage_is_deleted_only_after_its_hand_over() -> None:
    """Wavecom keeps status reports in "SR": read -> hand over -> delete there too. A handler
    failure leaves the report stored; the next read (here: a restart) delivers it again."""
    from drivers.modem.client import DeliveryReport, ModemClient
    from drivers.sim.modem import SimModem
    from drivers.sim.modem_profiles import profile
    from drivers.sim.modem_sms import delivered_report
    from tests.modem.modemkit import Inbox, config_for

    stored_at_hand_over: list[int] = []
    inbox = Inbox()
    refused = asyncio.Event()

    async def refuse(report: DeliveryReport) -> None:
        stored_at_hand_over.append(sim.store.used("SR"))
        refused.set()
        raise OSError("database is locked")

    async def accept(report: DeliveryReport) -> None:
        stored_at_hand_over.append(sim.store.used("SR"))
        await inbox.on_report(report)

    async with SimModem(profile("wavecom"), send_latency=0.001) as sim:
        async with ModemClient(config_for(sim), on_report=refuse) as modem:
            await wait_state(modem, ModemState.READY)
            assert modem.report_storage == "SR"
            index = sim.status_report(delivered_report(7, "+447700900123"))
            assert index is not None
            async with asyncio.timeout(5):
                await refused.wait()
            # A delete would follow the failed hand-over at once and hold the lock before this
            # AT: once AT answered, whatever the driver did about the report has happened.
            assert (await modem.command("AT")).ok
            assert sim.store.used("SR") == 1 and f"AT+CMGD={index}" not in sim.commands
            assert sim.mems[0] == "SM"  # switched back after the read
            assert modem.state is ModemState.READY
        # Restart: start-up lists "SR" as well and hands the report over, then deletes it.
        async with ModemClient(config_for(sim), on_report=accept):
            await inbox.wait_for(lambda: len(inbox.reports) == 1)
            (r,) = inbox.reports
            assert (r.message_reference, r.recipient, r.category) == (
                7, "+447700900123", "delivered"
            )
            await wait_sim(sim, lambda: sim.store.used("SR") == 0 and sim.mems[0] == "SM")
            at = sim.commands.index(f"AT+CMGD={index}")
            assert sim.commands[at - 1 : at + 2] == [
                'AT+CPMS="SR"', f"AT+CMGD={index}", 'AT+CPMS="SM","SM","SM"'
            ]
        assert stored_at_hand_over == [1, 1]  # stored while each hand-over ran


async def test_a_refused_sr_report_is_delivered_by_the_next_sweep() -> None:
    """A refused hand-over makes the inbound worker list the storages again after
    ``handover_retry`` (as start-up and polling do): "SR" too, so the report is handed over
    then, without a restart."""
    from drivers.modem.client import DeliveryReport, ModemClient
    from drivers.sim.modem import SimModem
    from drivers.sim.modem_profiles import profile
    from drivers.sim.modem_sms import delivered_report
    from tests.modem.modemkit import Inbox, config_for

    inbox = Inbox()
    refuse = [True]
    refused = asyncio.Event()

    async def on_report(report: DeliveryReport) -> None:
        if refuse[0]:
            refused.set()
            raise OSError("database is locked")
        await inbox.on_report(report)

    sim = SimModem(profile("wavecom"), send_latency=0.001)
    async with sim, ModemClient(config_for(sim, handover_retry=0.2), on_report=on_report) as modem:
        await wait_state(modem, ModemState.READY)
        sim.status_report(delivered_report(8, "+447700900123"))
        async with asyncio.timeout(5):
            await refused.wait()
        assert (await modem.command("AT")).ok
        assert sim.store.used("SR") == 1
        listings = sim.commands.count("AT+CMGL=4")
        refuse[0] = False
        await inbox.wait_for(lambda: len(inbox.reports) == 1)
        assert [r.message_reference for r in inbox.reports] == [8]
        assert sim.commands.count("AT+CMGL=4") > listings  # found by listing the storages
        await wait_sim(sim, lambda: sim.store.used("SR") == 0)


async def test_a_refused_stored_message_is_read_again_without_a_restart() -> None:
    """Stored mode with +CMTI: a hand-over the receiver refused (database busy) leaves the
    message stored, and the storage is listed again ``handover_retry`` later."""
    from drivers.modem.client import InboundMessage, ModemClient
    from drivers.sim.modem import SimModem
    from drivers.sim.modem_profiles import profile
    from tests.modem.modemkit import Inbox, config_for

    inbox = Inbox()
    refusals = [0]

    async def on_message(m: InboundMessage) -> None:
        if refusals[0] < 2:
            refusals[0] += 1
            raise OSError("database is locked")
        await inbox.on_message(m)

    sim = SimModem(profile("generic"), send_latency=0.001)
    async with sim, ModemClient(
        config_for(sim, handover_retry=0.05), on_message=on_message
    ) as modem:
        await wait_state(modem, ModemState.READY)
        assert not modem.polling
        (p,) = deliver_pdus("+447700900016", "try again later")
        index = sim.deliver(p)
        await inbox.wait_for(lambda: len(inbox.messages) == 1)
        assert inbox.messages[0].text == "try again later" and refusals[0] == 2
        await wait_sim(sim, lambda: sim.store.used("SM") == 0)
        assert sim.commands.count(f"AT+CMGD={index}") == 1


async def test_messages_stored_before_start_are_read_and_deleted() -> None:
    from drivers.modem.client import ModemClient
    from drivers.sim.modem import SimModem
    from drivers.sim.modem_profiles import profile
    from tests.modem.modemkit import Inbox, config_for

    inbox = Inbox()
    async with SimModem(profile("generic")) as sim:
        for p in deliver_pdus("+447700900004", "while we were away"):
            sim.deliver(p)
        parts = deliver_pdus("+447700900005", "half " * 50, reference=3)
        sim.deliver(parts[0])  # its sibling arrives later: stays stored until complete
        async with ModemClient(config_for(sim), on_message=inbox.on_message) as modem:
            await inbox.wait_for(lambda: len(inbox.messages) == 1)
            assert inbox.messages[0].text == "while we were away"
            await wait_sim(sim, lambda: sim.store.used("SM") == 1)
            for p in parts[1:]:
                sim.deliver(p)
            await inbox.wait_for(lambda: len(inbox.messages) == 2)
            assert inbox.messages[1].text == "half " * 50
            await wait_sim(sim, lambda: sim.store.used("SM") == 0)
            assert modem.state is ModemState.READY


async def test_polling_modem_finds_inbound_without_indications() -> None:
    async with running("polling") as (sim, modem, inbox):
        assert modem.polling
        (p,) = deliver_pdus("+447700900006", "polled")
        sim.deliver(p)
        await inbox.wait_for(lambda: len(inbox.messages) == 1)
        assert inbox.messages[0].text == "polled"


async def test_partial_inbound_is_handed_over_after_the_reassembly_timeout() -> None:
    from drivers.modem.client import ModemClient
    from drivers.sim.modem import SimModem
    from drivers.sim.modem_profiles import profile
    from tests.modem.modemkit import Inbox, config_for

    inbox = Inbox()
    parts = deliver_pdus("+447700900007", "lost part " * 40, reference=5)
    assert len(parts) == 3
    # Stored before start-up: one AT+CMGL lists both, so they reach the reassembler together
    # and the short timeout cannot split them however slowly the machine runs.
    sim = SimModem(profile("generic"), send_latency=0.001)
    async with sim:
        sim.deliver(parts[0])
        sim.deliver(parts[2])
        config = config_for(sim, reassembly_timeout=0.1)
        async with ModemClient(config, on_message=inbox.on_message):
            await inbox.wait_for(lambda: len(inbox.messages) == 1)
            (m,) = inbox.messages
            assert not m.complete and (m.parts, m.total) == (2, len(parts))
            await wait_sim(sim, lambda: sim.store.used("SM") == 0)


async def test_health_is_polled_on_its_schedule() -> None:
    async with running("generic", health_interval=0.02) as (sim, modem, _):
        sim.signal, sim.registration, sim.operator = 9, 5, "Roamer"
        await wait_sim(sim, lambda: sim.commands.count("AT+COPS?") >= 3)
        assert modem.signal.dbm == -95 and modem.registration is Registration.ROAMING
        assert modem.operator == "Roamer"
        stats = modem.statistics()
        assert (stats.signal_dbm, stats.registration, stats.state) == (
            -95, Registration.ROAMING, ModemState.READY
        )


async def test_a_failed_hand_over_leaves_the_message_on_the_modem() -> None:
    from drivers.modem.client import InboundMessage, ModemClient
    from drivers.sim.modem import SimModem
    from drivers.sim.modem_profiles import profile
    from tests.modem.modemkit import Inbox, config_for

    inbox = Inbox()
    refuse = [True]

    async def on_message(m: InboundMessage) -> None:
        if refuse[0]:
            raise OSError("database is locked")
        await inbox.on_message(m)

    async with SimModem(profile("polling")) as sim:
        (p,) = deliver_pdus("+447700900008", "keep me")
        sim.deliver(p)
        async with ModemClient(config_for(sim), on_message=on_message) as modem:
            await wait_sim(sim, lambda: sim.commands.count("AT+CMGL=4") >= 2)
            assert sim.store.used("SM") == 1 and modem.state is ModemState.READY
            refuse[0] = False  # the receiver recovers: the next poll hands it over
            await inbox.wait_for(lambda: len(inbox.messages) == 1)
            await wait_sim(sim, lambda: sim.store.used("SM") == 0)


async def test_a_refused_routed_message_is_negatively_acknowledged() -> None:
    from drivers.modem.client import InboundMessage, ModemClient
    from drivers.sim.modem import SimModem
    from drivers.sim.modem_profiles import profile
    from tests.modem.modemkit import config_for

    async def refuse(m: InboundMessage) -> None:
        raise OSError("database is locked")

    kw = without_stored_indications("generic", csms_service=1)
    async with SimModem(profile("generic", **kw)) as sim:
        config = config_for(sim, indications="route")
        async with ModemClient(config, on_message=refuse) as modem:
            await wait_state(modem, ModemState.READY)
            (p,) = deliver_pdus("+447700900009", "routed and refused")
            sim.deliver(p)
            await wait_sim(sim, lambda: sim.negative_acks == 1)
            assert sim.unacknowledged == 0 and "AT+CNMA" not in sim.commands
