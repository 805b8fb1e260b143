"""The daemon with two simulated modems (separate processes, real ptys) and the SMSC simulator:
routing by prefix to both kinds of route, failover from a dead bind to the modem pool, status
reports matched per part, and a STOP received by a modem."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.daemon_procs import SimProcess, write_config
from gateway.outbox import Outbox
from gateway.outbox_states import Lane, State
from gateway.outbox_types import NewMessage
from tests.daemon.test_daemon import counts, enqueue, running, until


@pytest.fixture
def modems() -> Iterator[tuple[SimProcess, SimProcess]]:
    opts = {"send_latency": 0.01, "status_report_delay": 0.02}
    with SimProcess("modem", {**opts, "imei": "356938035643801"}) as a, \
            SimProcess("modem", {**opts, "imei": "356938035643802"}) as b:
        yield a, b


async def test_prefix_routing_sends_through_the_bind_and_the_modem_pool(
    modems: tuple[SimProcess, SimProcess], tmp_path: Path
) -> None:
    a, b = modems
    with SimProcess("smsc", {"receipt_delay": 0.01}) as smsc:
        config = load_config(write_config(
            tmp_path, smsc_port=smsc.port, modem_paths=(a.path, b.path),
            routes=(("+44", ("sim-smsc",)), ("+1", ("modems",))),
        ))
        uk = [f"+4477009{i:05d}" for i in range(30)]
        us = [f"+1555000{i:04d}" for i in range(12)]
        enqueue(config, [NewMessage(n, "hello") for n in uk]
                + [NewMessage(n, "a long one " * 20) for n in us])
        async with running(config) as daemon:
            await until(daemon, lambda: counts(config)[State.DELIVERED] == 42)
            routes = {r["name"]: r for r in daemon.snapshot()["routes"]}
        assert routes["modems"]["up"] and routes["modems"]["kind"] == "modems"
        assert {k for k, _ in routes["modems"]["detail"]} >= {"sim-modem-1", "sim-modem-2"}
        assert routes["sim-smsc"]["up"] and routes["sim-smsc"]["kind"] == "smpp"
        smsc_got = set(smsc.command("received")["destinations"])
    assert smsc_got == {n.removeprefix("+") for n in uk}
    modem_got = a.command("stats")["recipients"] + b.command("stats")["recipients"]
    assert sorted(set(modem_got)) == sorted(us)
    assert len(modem_got) == 12 * 2  # two parts each, each part once
    assert a.command("stats")["sent"] > 0 and b.command("stats")["sent"] > 0  # both kept busy
    with Outbox(config.database.path) as box:
        message = box.find(to=us[0])[0]
    assert message.route == "modems" and {p.state for p in message.parts} == {"delivered"}
    # parts of one message come from one SIM (handsets cannot join parts from two senders)
    assert len({p.carrier_id.split("/")[0] for p in message.parts if p.carrier_id}) == 1


async def test_failover_from_a_dead_bind_to_the_modems_and_stop_by_modem(
    modems: tuple[SimProcess, SimProcess], tmp_path: Path
) -> None:
    a, b = modems
    with contextlib.closing(socket.socket()) as dead:
        dead.bind(("127.0.0.1", 0))  # nothing listens: the bind never comes up
        config = load_config(write_config(
            tmp_path, smsc_port=dead.getsockname()[1], modem_paths=(a.path, b.path),
            routes=(("+", ("sim-smsc", "modems")),),
        ))
        far = 4_102_444_800_000
        enqueue(config, [NewMessage(f"+4477009{i:05d}", "via modems") for i in range(6)])
        (promo,) = enqueue(config, [NewMessage("+447700900777", "promo", lane=Lane.CAMPAIGN,
                                               not_before_ms=far)])
        async with running(config, up=("modems",)) as daemon:
            await until(daemon, lambda: counts(config)[State.DELIVERED] == 6)
            a.command("deliver", source="+447700900777", text="Stop")
            await until(daemon, lambda: counts(config)[State.DELIVERED] == 7)
        with Outbox(config.database.path) as box:
            assert box.get(promo).state == State.CANCELLED  # type: ignore[union-attr]
            (reply,) = box.find(to="+447700900777", state=State.DELIVERED)
            assert "unsubscribed" in reply.text and reply.route == "modems"
