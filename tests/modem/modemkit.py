"""Helpers for driver tests against the simulator over real ptys (no mocks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from drivers.modem.client import DeliveryReport, InboundMessage, ModemClient, ModemState
from drivers.modem.config import ModemConfig
from drivers.modem.pdu import SubmitPdu, encode_submit
from drivers.sim.modem import SimModem
from drivers.sim.modem_profiles import PROFILES, profile
from gateway.codec import encode


@dataclass
class Inbox:
    """Collects what the driver hands over; tests wait on the condition they need."""

    messages: list[InboundMessage] = field(default_factory=list)
    reports: list[DeliveryReport] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def on_message(self, m: InboundMessage) -> None:
        async with self.changed:
            self.messages.append(m)
            self.changed.notify_all()

    async def on_report(self, r: DeliveryReport) -> None:
        async with self.changed:
            self.reports.append(r)
            self.changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(predicate)


def config_for(sim: SimModem, **kw: Any) -> ModemConfig:
    base: dict[str, Any] = {
        "name": "m1",
        "port": sim.path,
        "command_timeout": 2.0,
        "prompt_timeout": 2.0,
        "send_timeout": 5.0,
        "sim_busy_timeout": 5.0,
        "health_interval": 3600.0,
        "poll_interval": 0.05,
        "rediscover_interval": 0.05,
        "wavecom_cpin_grace": 0.05,
    }
    base.update(kw)
    return ModemConfig(**base)


@asynccontextmanager
async def running(
    name: str = "generic",
    sim_kw: dict[str, Any] | None = None,
    profile_kw: dict[str, Any] | None = None,
    **config_kw: Any,
) -> AsyncIterator[tuple[SimModem, ModemClient, Inbox]]:
    sim_args: dict[str, Any] = {"send_latency": 0.002, "huawei_urc_interval": 0.02}
    sim_args.update(sim_kw or {})
    inbox = Inbox()
    async with SimModem(profile(name, **(profile_kw or {})), **sim_args) as sim:
        client = ModemClient(
            config_for(sim, **config_kw), on_message=inbox.on_message, on_report=inbox.on_report
        )
        async with client:
            async with asyncio.timeout(10):
                await client.wait_ready()
            yield sim, client, inbox


def without_stored_indications(name: str, **kw: Any) -> dict[str, Any]:
    """Profile overrides for a device whose +CNMI offers no <mt>=1 (no +CMTI): the only kind
    of modem that uses routed mode (+CMT)."""
    cnmi = PROFILES[name].cnmi
    assert cnmi is not None
    mt = tuple(v for v in cnmi[1] if v != 1)
    return {"cnmi": (cnmi[0], mt, *cnmi[2:]), **kw}


def pdus(text: str, to: str = "+447700900123", **kw: Any) -> list[SubmitPdu]:
    return encode_submit(encode(text), to, **kw)


async def wait_state(client: ModemClient, *states: ModemState, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        await client.wait_state(*states)


async def wait_sim(sim: SimModem, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        await sim.wait_for(predicate)
