"""Multipart MO through the SMSC simulator (separate process) with the daemon's durable part
store: the parts wait in the daemon's database, the whole text reaches the inbox once, and the
store is empty afterwards."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.config import load_config
from gateway.daemon_procs import SimProcess, write_config
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
