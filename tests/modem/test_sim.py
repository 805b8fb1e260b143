"""The modem simulator on its own, spoken to over its real pty with the pure AT channel."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import serial
import serial_asyncio_fast

from drivers.modem.at import AtChannel, Command, Event, Prompt, Response, Urc
from drivers.sim.modem import SimModem
from drivers.sim.modem_profiles import PROFILES, profile
from drivers.sim.modem_sms import deliver_pdus

HELLO = "0011000B916407281553F80000AA0AE8329BFD4697D9EC37"  # protocols.md §3.3, AT+CMGS=23


class Port:
    """A bare serial port plus the AT channel: enough to talk to the simulator."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.channel = AtChannel()
        self.urcs: list[Urc] = []

    async def events_until(self, done: type, timeout: float = 2.0) -> list[Event]:
        got: list[Event] = []
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while not any(isinstance(e, done) for e in got):
                deadline = self.channel.next_deadline()
                try:
                    async with asyncio.timeout_at(deadline):
                        data = await self.reader.read(4096)
                except TimeoutError:
                    got += self.channel.tick(loop.time())
                    continue
                if not data:
                    raise ConnectionError("port closed")
                got += self.channel.feed(data, loop.time())
        self.urcs += [e for e in got if isinstance(e, Urc)]
        return got

    async def at(self, text: str, **kw: object) -> Response:
        cmd = Command(text, **kw)  # type: ignore[arg-type]
        self.writer.write(self.channel.send(cmd, asyncio.get_running_loop().time()))
        if cmd.prompt_timeout is not None:
            prompt = next(e for e in await self.events_until(Prompt) if isinstance(e, Prompt))
            self.writer.write(prompt.data)
        (resp,) = [e for e in await self.events_until(Response) if isinstance(e, Response)]
        return resp


@asynccontextmanager
async def port(path: str) -> AsyncIterator[Port]:
    reader, writer = await serial_asyncio_fast.open_serial_connection(url=path, baudrate=115200)
    try:
        yield Port(reader, writer)
    finally:
        writer.close()


@pytest.mark.parametrize("name", sorted(PROFILES))
async def test_every_profile_identifies_and_sends(name: str) -> None:
    async with SimModem(profile(name), send_latency=0.001) as sim, port(sim.path) as p:
        assert (await p.at("AT")).ok
        assert (await p.at("AT+CGSN")).lines == (sim.imei,)
        assert (await p.at("AT+CMGF=0")).ok
        resp = await p.at("AT+CMGS=23", prompt_timeout=2, pdu=HELLO.encode())
        assert resp.info("+CMGS") == ["0"]
        (rec,) = sim.records
        assert rec.pdu.hex().upper() == HELLO and rec.recipient == "+46708251358"
        assert rec.received <= rec.at


async def test_huawei_quirks_over_the_wire() -> None:
    sim = SimModem(profile("huawei-e1752"), huawei_urc_interval=0.01)
    async with sim, port(sim.path) as p:
        resp = await p.at("AT+CNMA")  # no +CNMA expected (+CMS 340 with CMEE=1)
        assert not resp.ok
        assert (await p.at("AT+FOO")).result == "COMMAND NOT SUPPORT"
        while not p.urcs:
            await p.events_until(Urc)
        assert p.urcs[0].name in ("^RSSI", "^BOOT", "^MODE")
        assert (await p.at("AT^CURC=0")).ok


async def test_wavecom_cpin_has_no_ok_and_cfun_makes_it_busy() -> None:
    async with SimModem(profile("wavecom")) as sim, port(sim.path) as p:
        resp = await p.at("AT+CPIN?", implicit_ok_after="+CPIN:", implicit_grace=0.05)
        assert resp.implicit and resp.info("+CPIN") == ["READY"]
        await p.at("AT+CMEE=1")
        await p.at("AT+CFUN=1")
        resp = await p.at("AT+CSQ")
        assert resp.code == 515


async def test_pin_then_sim_busy() -> None:
    sim = SimModem(profile("generic"), pin="1234", sim_busy_seconds=30)
    async with sim, port(sim.path) as p:
        await p.at("AT+CMEE=1")
        assert (await p.at("AT+CIMI")).code == 11
        assert (await p.at('AT+CPIN="1234"')).ok
        assert (await p.at("AT+CIMI")).code == 14


async def test_length_mismatch_failures_and_cancel() -> None:
    async with SimModem(profile("generic"), send_latency=0) as sim, port(sim.path) as p:
        await p.at("AT+CMEE=1")
        await p.at("AT+CMGF=0")
        bad = await p.at("AT+CMGS=22", prompt_timeout=2, pdu=HELLO.encode())
        assert bad.code == 304
        sim.fail_next_send(42)
        failed = await p.at("AT+CMGS=23", prompt_timeout=2, pdu=HELLO.encode())
        assert failed.code == 42 and sim.records[-1].error == 42


async def test_inbound_stored_and_urc_mid_response() -> None:
    async with SimModem(profile("sim800")) as sim, port(sim.path) as p:
        await p.at("AT+CNMI=2,1,0,1,0")
        sim.urc_in_next_response("RING")
        resp = await p.at("AT+CSQ")
        assert resp.info("+CSQ") == ["20,99"] and p.urcs[-1].name == "RING"
        (pdu,) = deliver_pdus("+447700900001", "hi")
        index = sim.deliver(pdu)
        while not any(u.name == "+CMTI" for u in p.urcs):
            await p.events_until(Urc)
        assert p.urcs[-1].value == f'"SM",{index}'
        resp = await p.at(f"AT+CMGR={index}")
        assert resp.lines[1] == pdu.hex().upper()


async def test_unplug_fails_the_port_and_replug_gives_a_new_path() -> None:
    async with SimModem(profile("generic")) as sim:
        old = sim.path
        async with port(sim.path) as p:
            await p.at("AT")
            sim.unplug()
            assert not os.path.exists(old)  # the device node is gone, as on a real unplug
            with pytest.raises((serial.SerialException, OSError, ConnectionError)):
                await p.events_until(Response)
        new = sim.replug()  # the kernel may hand out the old number again: only the path matters
        assert os.path.exists(new) and new == sim.path
        async with port(new) as p:
            assert (await p.at("AT+CGSN")).lines == (sim.imei,)
