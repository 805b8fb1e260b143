"""Faults against the simulator: injected +CMS errors, SIM busy, URCs mid-command, hangs
(escalation: retry -> ATZ -> reopen -> down), sends whose outcome is unknown, unplug and
re-discovery by IMEI on a new port."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from drivers.modem.client import Escalation, EscalationCounts, ModemClient, ModemState
from drivers.modem.errors import (
    CmsError,
    CommandTimeout,
    Disposition,
    ModemDown,
    SendOutcomeUnknown,
)
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
    # The simulator's clock advances 0.1 s each time it is read (about once per command), so
    # "busy for 0.5 s" means the next few commands whatever the machine's load.
    steps = itertools.count()
    sim_kw = {"pin": "1234", "sim_busy_seconds": 0.5, "clock": lambda: next(steps) / 10}
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
        stats = modem.statistics()
        assert stats.last_escalation is Escalation.DOWN
        # AT+CMGS is never retried: straight to ATZ, then the reopen, then down.
        assert stats.escalations == EscalationCounts(retry=0, atz=1, reopen=1, down=1)
        with pytest.raises(ModemDown):
            await modem.send(p)
        sim.resume()  # the stick wakes up: the supervisor's next attempt brings it back
        await wait_state(modem, ModemState.READY)
        assert await modem.send(p) == 0
        assert [r.mr for r in sim.records] == [0]  # the part that hung was never resent


@pytest.mark.parametrize(
    ("swallowed", "reached"),
    [(1, Escalation.RETRY), (2, Escalation.RESET), (3, Escalation.REOPEN),
     (None, Escalation.DOWN)],
)
async def test_the_escalation_ladder_stops_at_the_first_step_that_answers(
    swallowed: int | None, reached: Escalation
) -> None:
    """An idempotent command (AT+CSQ) that times out: the same command once more -> ATZ ->
    reopen (start-up again) -> down. The modem ignores ``swallowed`` command lines, so each
    case is answered again at exactly one step; statistics name it."""
    async with running("generic", **FAST) as (sim, modem, _):
        sim.hang(commands=swallowed)
        if reached is Escalation.RETRY:
            resp = await modem.command("AT+CSQ")  # the retry's answer is the command's answer
            assert resp.ok and resp.info("+CSQ") == ["20,99"]
        else:
            with pytest.raises(CommandTimeout):
                await modem.command("AT+CSQ")
        target = ModemState.DOWN if reached is Escalation.DOWN else ModemState.READY
        await wait_state(modem, target)
        stats = modem.statistics()
        assert stats.last_escalation is reached
        steps = list(Escalation)[: list(Escalation).index(reached) + 1]
        assert stats.escalations == EscalationCounts(*(int(s in steps) for s in Escalation))
        start_ups = 2 if reached is Escalation.REOPEN else 1  # DOWN: start-up never got far
        assert sim.commands.count("AT+CGSN") == start_ups
        if reached is Escalation.DOWN:
            sim.resume()
            await wait_state(modem, ModemState.READY)
        assert (await modem.command("AT+CSQ")).ok
        assert modem.statistics().last_escalation is reached  # a record, until the next hang


async def test_a_send_that_timed_out_after_its_pdu_is_unknown_and_never_resent() -> None:
    async with running("generic", **FAST) as (sim, modem, _):
        sim.hang_after_next_pdu(sent=True, recover_on_atz=True)
        (p,) = pdus("did it go?")
        with pytest.raises(SendOutcomeUnknown) as info:
            await modem.send(p)
        assert isinstance(info.value.cause, CommandTimeout) and info.value.possibly_sent
        assert info.value.link_level and info.value.disposition is Disposition.TEMPORARY
        await wait_state(modem, ModemState.READY)
        assert modem.statistics().escalations == EscalationCounts(atz=1)
        assert sum(c.startswith("AT+CMGS") for c in sim.commands) == 1  # not resent
        assert [r.mr for r in sim.records] == [0]  # it did leave the modem
        assert await modem.send(p) == 1  # the modem is usable again


async def test_a_send_hanging_before_its_prompt_is_a_plain_timeout() -> None:
    """No prompt, so no PDU written: nothing can have gone out (the caller may move it)."""
    async with running("generic", **FAST) as (sim, modem, _):
        sim.hang(commands=1)
        (p,) = pdus("never written")
        with pytest.raises(CommandTimeout) as info:
            await modem.send(p)
        assert not isinstance(info.value, SendOutcomeUnknown) and info.value.stage == "prompt"
        await wait_state(modem, ModemState.READY)
        assert modem.statistics().escalations == EscalationCounts(atz=1)
        assert not sim.records and not any(c.startswith("AT+CMGS") for c in sim.commands)


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
