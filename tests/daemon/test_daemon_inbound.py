"""Inbound and lifecycle details against the SMSC simulator (separate process): re-opt-in only
after an opt-out, delivered/failed/reply events for subscribers in the segment store, and the
sd_notify READY/STATUS/WATCHDOG datagrams on a real AF_UNIX socket."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from gateway.config import load_config
from gateway.daemon_procs import SimProcess, write_config
from gateway.inbound.keywords import Action
from gateway.outbox_states import State
from gateway.outbox_types import NewMessage
from gateway.routes import RouteInbound
from gateway.sdnotify import Notifier
from segmentation.consent import record_consent
from segmentation.membership import Membership
from segmentation.store import Store
from segmentation.subscribers import upsert_subscriber
from tests.daemon.test_daemon import FAST, counts, enqueue, running, until

SUBSCRIBER = "+447911123456"  # a valid UK mobile number: the segment store accepts it
FAILING = "+447911123457"


async def test_start_only_after_stop_and_events_reach_the_segment_store(tmp_path: Path) -> None:
    with SimProcess("smsc", {"receipt_delay": 0.01,
                             "fail_numbers": {FAILING: "UNDELIV"}}) as sim:
        config = load_config(write_config(tmp_path, smsc_port=sim.port))
        with Store(config.database.path) as store:
            for number in (SUBSCRIBER, FAILING):
                upsert_subscriber(store, number)
                record_consent(store, number, "marketing", "grant", "operator", actor="test")
        enqueue(config, [NewMessage(SUBSCRIBER, "hello"), NewMessage(FAILING, "hello")])
        async with running(config) as daemon:
            inbound = daemon.inbound
            assert inbound is not None
            start = await inbound.process(RouteInbound("sim-smsc", SUBSCRIBER, "1", "START"))
            assert start.action is Action.OTHER and start.reply_id is None  # not opted out
            stop = await inbound.process(RouteInbound("sim-smsc", SUBSCRIBER, "1", "stop"))
            again = await inbound.process(RouteInbound("sim-smsc", SUBSCRIBER, "1", "UNSTOP"))
            assert stop.action is Action.OPT_OUT and again.action is Action.OPT_IN
            assert again.reply_id is not None and SUBSCRIBER not in inbound.opted_out
            reply = await inbound.process(RouteInbound("sim-smsc", SUBSCRIBER, "1", "See you"))
            assert reply.action is Action.OTHER
            await until(daemon, lambda: counts(config)[State.DELIVERED] == 3  # hello + 2 replies
                        and counts(config)[State.UNDELIVERABLE] == 1)
        with Store(config.database.path) as store:
            consent = [r[0] for r in store.query(
                "SELECT action FROM consent WHERE phone_e164 = ? AND method = 'keyword' "
                "ORDER BY id", (SUBSCRIBER,))]
            events = {(r[0], r[1]) for r in store.query(
                "SELECT s.phone_e164, e.type FROM event e JOIN subscriber s "
                "ON s.id = e.subscriber_id")}
    assert consent == ["revoke", "grant"]
    assert {(SUBSCRIBER, "delivered"), (SUBSCRIBER, "reply"), (FAILING, "failed")} <= events


def repliers(path: Path) -> list[int]:
    """Members of the segment, read through a connection of our own (as `smsgate` would)."""
    with Store(path) as store:
        return Membership(store).members("repliers")


def define_repliers(path: Path, numbers: tuple[str, ...]) -> list[int]:
    with Store(path) as store:
        ids = [upsert_subscriber(store, n) for n in numbers]
        Membership(store).define("repliers", "count(reply, last 1d) >= 1")
    return ids


async def test_a_reply_through_the_smsc_enters_a_segment_within_a_second(tmp_path: Path) -> None:
    with SimProcess("smsc", {"receipt_delay": 0.01}) as sim:
        config = load_config(write_config(tmp_path, smsc_port=sim.port))
        path = config.database.path
        (subscriber,) = define_repliers(path, (SUBSCRIBER,))
        async with running(config) as daemon:
            live = daemon.membership
            assert live is not None
            await live.wait_started()
            # the store runs as the benchmark measures it: [segments] cache_mb, and a writer
            # that restarts the WAL itself when the checkpointer asks
            cache, wired = await live.store.run(lambda s: (s.scalar("PRAGMA cache_size"),
                                                           s.wal_reset is not None))
            assert (cache, wired) == (-config.segments.cache_mb * 1024, True)
            assert repliers(path) == []
            started = time.monotonic()
            sim.command("inject_mo", text="Sounds good, see you", source=SUBSCRIBER)
            # Re-read the members after every batch the live membership commits.
            async with asyncio.timeout(10):
                while repliers(path) != [subscriber]:
                    s = live.statistics()
                    await live.wait_batches(s.batches + s.due_rounds + 1)
            took = time.monotonic() - started
            stats = live.statistics()
            inbound = daemon.inbound
            assert inbound is not None and inbound.statistics().received == 1
        assert stats.entered == 1 and stats.last_batch_latency_ms < 1000
        assert took < 3.0  # SMPP round trip + one 250 ms batch; generous for a busy machine


async def test_the_drain_at_stop_puts_pending_changes_into_segments(tmp_path: Path) -> None:
    """A batch window far longer than the test: only the drain at stop (Daemon.stop sets the
    event SIGTERM sets) can move the number."""
    with SimProcess("smsc", {"receipt_delay": 0.01}) as sim:
        config = load_config(write_config(tmp_path, smsc_port=sim.port))
        path = config.database.path
        (subscriber,) = define_repliers(path, (SUBSCRIBER,))
        options = dataclasses.replace(FAST, membership_batch_ms=60_000)
        async with running(config, options) as daemon:
            inbound, live = daemon.inbound, daemon.membership
            assert inbound is not None and live is not None
            await live.wait_started()
            await inbound.process(RouteInbound("sim-smsc", SUBSCRIBER, "1", "Thanks!"))
            assert repliers(path) == []  # pending, waiting for its batch window
        assert repliers(path) == [subscriber]
        assert live.statistics().batches == 0  # the loop never drained: the stop did


@contextlib.contextmanager
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def received(sock: socket.socket) -> list[str]:
    out = []
    with contextlib.suppress(BlockingIOError):
        while True:
            out.append(sock.recv(4096).decode())
    return out


async def test_sd_notify_ready_status_watchdog_and_stopping(tmp_path: Path) -> None:
    with SimProcess("smsc", {}) as sim, notify_socket(tmp_path) as sock:
        config = load_config(write_config(tmp_path, smsc_port=sim.port))
        notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify"),
                             "WATCHDOG_USEC": "200000"}, pid=1)
        enqueue(config, [NewMessage("+447700900001", "x")])
        async with running(config, FAST, notifier=notifier) as daemon:
            await until(daemon, lambda: counts(config)[State.DELIVERED] == 1)
        datagrams = received(sock)
    joined = "\n".join(datagrams)
    assert any(d.startswith("READY=1") for d in datagrams)
    assert "STATUS=" in joined and "WATCHDOG=1" in joined
    assert any(d.startswith("STOPPING=1") for d in datagrams)
