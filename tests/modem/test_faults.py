"""Faults against the simulator: injected +CMS errors, SIM busy, URCs mid-command, hangs
(escalation: retry -> ATZ -> reopen -> down), unplug and re-discovery by IMEI on a new port."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from drivers.modem.client import ModemClient, ModemState
from drivers.modem.errors import CmsError, CommandTimeout, Disposition, ModemDown
from drivers.sim.modem import SimModem
from drivers.sim.modem_profiles import PROFILES, profile
from drivers.sim.modem_sms import deliver_pdus
from tests.modem.modemkit import Inbox, config_for, pdus, running, wait_sim, wait_state

FAST: dict[str, Any] = {"command_timeout": 0.5, "prompt_timeout": 0.5, "send_timeout": 1.0}


@pytest.mark.parametrize(
    ("code", "disposition"),
    [
        (38, Disposition.TEMPORARY),
        (42, Disposition.TEMPORARY),
        (500, Disposition.TEMPORARY),
        (512, Disposition.TEMPORARY),
        (304, Disposition.INVALID_PDU),
    ],
)
async def test_injected_cms_errors_fail_the_part_not_the_modem(
    code: int, disposition: Disposition
) -> None:
    async with running("generic") as (sim, modem, _):
        sim.fail_next_send(code)
        (p,) = pdus("fails once")
        with pytest.raises(CmsError) as info:
            await modem.send(p)
        assert info.value.code == code and info.value.disposition is disposition
        assert not info.value.link_level
        assert modem.state is ModemState.READY and modem.errors == 1
        assert await modem.send(p) == 0  # the modem assigned MR 0 to the first real send
        assert [r.error for r in sim.records] == [code, None]


async def test_sim_busy_after_pin_is_waited_out() -> None:
    sim_kw = {"pin": "1234", "sim_busy_seconds": 0.3}
    async with running("generic", sim_kw=sim_kw, pin="1234") as (sim, modem, _):
        assert modem.state is ModemState.READY
        assert sim.commands.count('AT+CPIN="1234"') == 1
        assert sim.commands.count("AT+CIMI") > 1  # answered +CME ERROR: 14 first


async def test_wrong_pin_is_tried_once_and_the_modem_stays_down() -> None:
    async with SimModem(profile("generic"), pin="1234") as sim:
        modem = ModemClient(config_for(sim, pin="0000"))
        async with modem:
            async with asyncio.timeout(5):
                await modem.wait_gave_up()  # no further attempt: it would lock the SIM
            assert modem.state is ModemState.DOWN
            assert sim.commands.count('AT+CPIN="0000"') == 1
            assert modem.last_error is not None and "PIN" in modem.last_error


async def test_urc_in_the_middle_of_a_command_and_during_a_send() -> None:
    async with running("generic", sim_kw={"send_latency": 0.1}) as (sim, modem, inbox):
        (first,) = deliver_pdus("+447700900010", "mid-command")
        index = sim.store.put("SM", 0, first)
        sim.urc_in_next_response(f'+CMTI: "SM",{index}')
        await modem.poll_health()
        assert modem.signal.dbm == -73
        await inbox.wait_for(lambda: len(inbox.messages) == 1)
        (p,) = pdus("outbound")
        async with asyncio.TaskGroup() as tg:
            send = tg.create_task(modem.send(p))
            await wait_sim(sim, lambda: sim.commands[-1].startswith("AT+CMGS"))
            (second,) = deliver_pdus("+447700900011", "during the send")
            sim.deliver(second)  # +CMTI arrives between "> " and +CMGS
        assert send.result() == 0
        await inbox.wait_for(lambda: len(inbox.messages) == 2)
        assert [m.text for m in inbox.messages] == ["mid-command", "during the send"]


@pytest.mark.parametrize("name", sorted(PROFILES))
async def test_hang_recovered_by_atz(name: str) -> None:
    async with running(name, **FAST) as (sim, modem, _):
        sim.hang(recover_on_atz=True)
        (p,) = pdus("into the void")
        with pytest.raises(CommandTimeout) as info:
            await modem.send(p)
        assert info.value.link_level
        await wait_state(modem, ModemState.READY)
        assert "ATZ" in sim.commands and sim.pdu_mode
        assert await modem.send(p) == 0


async def test_hang_for_good_reopens_then_marks_down_and_comes_back() -> None:
    async with running("generic", **FAST) as (sim, modem, _):
        sim.hang()
        (p,) = pdus("into the void")
        with pytest.raises(CommandTimeout):
            await modem.send(p)
        await wait_state(modem, ModemState.DOWN)
        with pytest.raises(ModemDown):
            await modem.send(p)
        sim.resume()  # the stick wakes up: the supervisor's next attempt brings it back
        await wait_state(modem, ModemState.READY)
        assert await modem.send(p) == 0


@pytest.mark.parametrize("name", sorted(PROFILES))
async def test_unplug_marks_down_and_replug_is_found_by_imei_on_a_new_port(name: str) -> None:
    inbox = Inbox()
    async with SimModem(profile(name), send_latency=0.001) as sim:
        paths = [sim.path]
        config = config_for(sim, imei=sim.imei, **FAST)
        modem = ModemClient(config, discover=lambda: list(paths), on_message=inbox.on_message)
        async with modem:
            await wait_state(modem, ModemState.READY)
            (p,) = pdus("before")
            await modem.send(p)
            sim.unplug()
            await wait_state(modem, ModemState.DOWN)
            with pytest.raises(ModemDown):
                await modem.send(p)
            (mo,) = deliver_pdus("+447700900012", "arrived while unplugged")
            sim.store.put("SM", 0, mo)
            paths[:] = [sim.replug()]
            await wait_state(modem, ModemState.READY)
            assert modem.port == paths[0]
            await inbox.wait_for(lambda: len(inbox.messages) == 1)
            assert await modem.send(p) == 1


async def test_a_hang_during_health_polling_is_escalated_without_reconnecting() -> None:
    async with running("generic", health_interval=0.02, **FAST) as (sim, modem, inbox):
        sim.hang(recover_on_atz=True)
        await wait_sim(sim, lambda: "ATZ" in sim.commands)
        await wait_state(modem, ModemState.READY)
        (mo,) = deliver_pdus("+447700900013", "after the hang")
        sim.deliver(mo)
        await inbox.wait_for(lambda: len(inbox.messages) == 1)
        assert sim.commands.count("AT+CGSN") == 1  # the same connection throughout
        assert modem.errors >= 1 and modem.last_error is not None
