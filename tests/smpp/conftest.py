"""Shared helpers for the SMPP loopback tests: fast-timeout configs and a collecting handler."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.sim.smsc import SmscConnection, SmscOptions, SmscSimulator
from drivers.smpp.client import Handler, InboundEvent, SmppClient
from drivers.smpp.config import BindMode, SmppConfig
from drivers.smpp.mo_store import MoPartStore
from drivers.smpp.pdu import CommandId, HeaderOnly


def fast_config(port: int, **overrides: Any) -> SmppConfig:
    base: dict[str, Any] = dict(
        name="test",
        host="127.0.0.1",
        port=port,
        system_id="shop",
        password="secret",
        bind=BindMode.TRANSCEIVER,
        window=8,
        reconnect_min=0.02,
        reconnect_max=0.1,
        credentials_retry=0.5,
        link_timeout=1.0,
        response_timeout=1.0,
        unbind_timeout=0.5,
        throttle_pause=0.05,
    )
    base.update(overrides)
    return SmppConfig(**base)


class Collector:
    """A handler that records events and lets a test wait for a number of them."""

    def __init__(self) -> None:
        self.events: list[InboundEvent] = []
        self._changed = asyncio.Event()

    async def __call__(self, event: InboundEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[InboundEvent]:
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.events


@pytest.fixture
def collector() -> Collector:
    return Collector()


@contextlib.asynccontextmanager
async def running(
    options: SmscOptions | None = None,
    handler: Handler | None = None,
    mo_store: MoPartStore | None = None,
    **config: Any,
) -> AsyncIterator[tuple[SmscSimulator, SmppClient]]:
    """A simulator and a client bound to it."""
    async with (
        SmscSimulator(options) as sim,
        SmppClient(fast_config(sim.port, **config), handler, mo_store=mo_store) as client,
    ):
        await client.wait_bound(5)
        yield sim, client


async def settle(sim: SmscSimulator, conn: SmscConnection, rounds: int = 2) -> None:
    """Barrier instead of a sleep, before checking that the client did NOT write something:
    ``rounds`` enquire_links from the SMSC, one after the other, each waited for until the
    client answered. TCP keeps the order, so anything the client wrote in the loop iterations
    before its last answer has reached the simulator; two rounds leave the client several
    iterations after whatever the test did last."""

    def answered(token: object) -> bool:
        return all(o.context is not token for o in conn.session.outstanding())

    for _ in range(rounds):
        token = object()
        conn.write(conn.session.send(HeaderOnly(CommandId.ENQUIRE_LINK), sim.loop.time(), token))
        await sim.wait_for(functools.partial(answered, token))
