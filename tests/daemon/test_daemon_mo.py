"""Multipart MO through the SMSC simulator (separate process) with the daemon's durable part
store: the parts wait in the daemon's database, the whole text reaches the inbox once, and the
store is empty afterwards; a part stored before a restart joins the rest after it; a text
missing a part is stored marked incomplete after mo_timeout_s."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

from gateway.config import load_config
from gateway.daemon import Daemon
from gateway.daemon_procs import SimProcess, write_config
from gateway.mo_store import SqliteMoStore
from gateway.routes import SmppRoute
from tests.daemon.test_daemon import running, until

SENDER = "+447911123456"
LONG = "Thanks for the reminder, " * 12  # 300 GSM-7 characters: two concatenated parts


async def test_a_multipart_reply_is_reassembled_through_the_database(tmp_path: Path) -> None:
    with SimProcess("smsc", {"receipt_delay": 0.01}) as sim:
        config = load_config(write_config(tmp_path, smsc_port=sim.port))
        async with running(config) as daemon:
            route = daemon.routes["sim-smsc"]
            assert isinstance(route, SmppRoute) and route.mo_store is not None
            inbound = daemon.inbound
            assert inbound is not None
            sim.command("inject_mo", text=LONG, source=SENDER)
            await until(daemon, lambda: inbound.statistics().received == 1)
            assert await route.mo_store.counts() == (0, 0)
        with sqlite3.connect(config.database.path) as conn:
            bodies = conn.execute("SELECT route, sender, body FROM inbox_message").fetchall()
    assert bodies == [("sim-smsc", SENDER, LONG)]


async def eventually(daemon: Daemon, check: Callable[[], Awaitable[bool]]) -> None:
    """Re-check after each batch the daemon commits (or a quarter second), up to 20 s."""
    dispatcher = daemon.dispatcher
    assert dispatcher is not None
    async with asyncio.timeout(20):
        while not await check():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dispatcher.wait_progress(), 0.25)


def smpp_route(daemon: Daemon) -> SmppRoute:
    route = daemon.routes["sim-smsc"]
    assert isinstance(route, SmppRoute) and route.mo_store is not None
    return route


async def test_a_part_stored_before_a_restart_joins_the_rest_after_it(tmp_path: Path) -> None:
    with SimProcess("smsc", {"receipt_delay": 0.01}) as sim:
        config = load_config(write_config(tmp_path, smsc_port=sim.port))
        async with running(config) as daemon:
            store = smpp_route(daemon).mo_store
            assert store is not None
            sim.command("inject_mo", text=LONG, source=SENDER, parts=[1], reference=42)
            await eventually(daemon, lambda: _counts_are(store, (1, 1)))
        async with running(config) as daemon:
            store = smpp_route(daemon).mo_store
            assert store is not None and await store.counts() == (1, 1)
            inbound = daemon.inbound
            assert inbound is not None
            sim.command("inject_mo", text=LONG, source=SENDER, parts=[2], reference=42)
            await until(daemon, lambda: inbound.statistics().received == 1)
            assert await store.counts() == (0, 0)
        with sqlite3.connect(config.database.path) as conn:
            bodies = conn.execute("SELECT body, complete FROM inbox_message").fetchall()
    assert bodies == [(LONG, 1)]


async def test_a_text_missing_a_part_is_stored_incomplete(tmp_path: Path) -> None:
    with SimProcess("smsc", {"receipt_delay": 0.01}) as sim:
        path = write_config(tmp_path, smsc_port=sim.port, smpp_extra="mo_timeout_s = 0.3")
        config = load_config(path)
        async with running(config) as daemon:
            inbound = daemon.inbound
            assert inbound is not None
            sim.command("inject_mo", text=LONG, source=SENDER, parts=[1], reference=9)
            # `received` counts on arrival, `incomplete` once the row is stored: wait for both.
            await until(daemon, lambda: inbound.statistics().incomplete == 1)
            assert inbound.statistics().received == 1
            assert daemon.snapshot()["inbound"]["incomplete"] == 1  # for `smsgate status`
            store = smpp_route(daemon).mo_store
            assert store is not None
            await eventually(daemon, lambda: _counts_are(store, (0, 0)))  # handed over
        with sqlite3.connect(config.database.path) as conn:
            rows = conn.execute("SELECT body, complete, missing, identity FROM inbox_message"
                                ).fetchall()
    assert rows == [(LONG[:153], 0, "[2]", "ref:9/2")]


async def _counts_are(store: SqliteMoStore, expected: tuple[int, int]) -> bool:
    return await store.counts() == expected
