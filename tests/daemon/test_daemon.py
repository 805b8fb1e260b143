"""The daemon against the SMSC simulator in a separate process, over real sockets, with a real
database file: sending and reports, multipart aggregation, DLR before submit response, lanes,
failover, permanent errors, throttling and dropped links with no loss, STOP and HELP."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from gateway.config import Config, load_config
from gateway.daemon import Daemon, DaemonOptions
from gateway.daemon_procs import SimProcess, write_config
from gateway.dispatch import Dispatcher, DispatchSettings
from gateway.outbox import Outbox
from gateway.outbox_states import Lane, RetryPolicy, State
from gateway.outbox_types import NewMessage
from gateway.routes import IN_FLIGHT_WINDOWS, RouteInbound
from gateway.sdnotify import Notifier
from segmentation.store import Store

FAST = DaemonOptions(status_interval_s=0.2, timers_interval_s=0.2,
                     retry=RetryPolicy(base_s=0.05, cap_s=0.2),
                     dispatch=DispatchSettings(send_timeout_s=10.0))


@pytest.fixture
def smsc() -> Iterator[SimProcess]:
    with SimProcess("smsc", {"receipt_delay": 0.02}) as sim:
        yield sim


@contextlib.asynccontextmanager
async def running(
    config: Config, options: DaemonOptions = FAST, *, up: tuple[str, ...] | None = None,
    notifier: Notifier | None = None,
) -> AsyncIterator[Daemon]:
    """The daemon in this process (the simulators are not), started and its routes ``up``."""
    daemon = Daemon(config, options=options, notifier=notifier)
    # The daemon lives in a TaskGroup owned by this context: if it fails before it is ready,
    # the group cancels the wait below and raises the daemon's error.
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(daemon.run(), name="daemon")
        try:
            async with asyncio.timeout(15):
                await daemon.ready.wait()
                await daemon.wait_routes_up(up)
            yield daemon
        finally:
            daemon.stop()
            async with asyncio.timeout(20):
                await asyncio.wait({task})
        assert task.result() == 0


async def until(daemon: Daemon, check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Re-check after every batch the daemon commits, up to ``timeout``."""
    dispatcher = daemon.dispatcher
    assert dispatcher is not None
    async with asyncio.timeout(timeout):
        while not check():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dispatcher.wait_progress(), 0.25)


def counts(config: Config) -> dict[State, int]:
    with Outbox(config.database.path) as box:
        stats = box.statistics()
    return {state: stats.count(state=state) for state in State}


def enqueue(config: Config, messages: list[NewMessage]) -> list[int]:
    with Outbox(config.database.path) as box:
        return [a.id for a in box.enqueue_many(messages)]


def numbers(n: int, start: int = 0) -> list[str]:
    return [f"+4477009{i:05d}" for i in range(start, start + n)]


def all_final(config: Config, n: int, state: State = State.DELIVERED) -> Callable[[], bool]:
    return lambda: counts(config)[state] == n


async def test_mixed_batch_is_delivered_and_multipart_reports_aggregate(
    smsc: SimProcess, tmp_path: Path
) -> None:
    config = load_config(write_config(tmp_path, smsc_port=smsc.port))
    texts = ["short", "Zoë ✨ unicode", "long GSM " * 40, "long UCS-2 ✨ " * 20]
    ids = enqueue(config, [NewMessage(to, texts[i % 4]) for i, to in enumerate(numbers(200))])
    async with running(config) as daemon:
        await until(daemon, all_final(config, 200))
    with Outbox(config.database.path) as box:
        long_gsm = box.get(ids[2])
        long_ucs2 = box.get(ids[3])
        assert long_gsm is not None and long_ucs2 is not None
        assert long_gsm.total_parts == 3 and long_ucs2.total_parts == 4
        assert all(p.state == "delivered" and p.carrier_id for p in long_ucs2.parts)
        assert len({p.carrier_id for p in long_ucs2.parts}) == 4
    stats = smsc.command("stats")
    assert stats["accepted"] == 50 * (1 + 1 + 3 + 4)  # parts count, each exactly once


async def test_reports_before_submit_responses_are_matched(tmp_path: Path) -> None:
    with SimProcess("smsc", {"receipts_first": True}) as sim:
        config = load_config(write_config(tmp_path, smsc_port=sim.port))
        enqueue(config, [NewMessage(to, "race") for to in numbers(300)])
        async with running(config) as daemon:
            await until(daemon, all_final(config, 300))
        with Outbox(config.database.path) as box:
            assert box.statistics().pending_reports == 0


async def test_undeliverable_reports_and_permanent_refusals_keep_codes(tmp_path: Path) -> None:
    with SimProcess("smsc", {"fail_numbers": {"+447700900001": "UNDELIV"}}) as sim:
        config = load_config(write_config(tmp_path, smsc_port=sim.port))
        ok, undeliv = enqueue(config, [NewMessage("+447700900000", "a"),
                                       NewMessage("+447700900001", "b")])
        async with running(config) as daemon:
            await until(daemon, lambda: counts(config)[State.UNDELIVERABLE] == 1
                        and counts(config)[State.DELIVERED] == 1)
            sim.command("configure", options={"submit_status": 0x0B})  # ESME_RINVDSTADR
            (bad,) = enqueue(config, [NewMessage("+447700900002", "c")])
            daemon.dispatcher.wake()  # type: ignore[union-attr]
            await until(daemon, lambda: counts(config)[State.FAILED] == 1)
        with Outbox(config.database.path) as box:
            assert box.get(ok).state == State.DELIVERED  # type: ignore[union-attr]
            assert box.get(undeliv).state == State.UNDELIVERABLE  # type: ignore[union-attr]
            failed = box.get(bad)
            assert failed is not None and failed.error_code == 0x0B
            assert failed.route == "sim-smsc"


async def test_failover_past_a_bind_that_is_down(smsc: SimProcess, tmp_path: Path) -> None:
    with socket_nobody_listens() as dead_port:
        path = write_config(tmp_path, smsc_port=smsc.port, routes=(("+44", ("dead", "sim-smsc")),),
                            extra=f"""
[[smpp]]
name = "dead"
host = "127.0.0.1"
port = {dead_port}
system_id = "x"
password = "x"
""")
        config = load_config(path)
        enqueue(config, [NewMessage(to, "via the second route") for to in numbers(50)])
        async with running(config, up=("sim-smsc",)) as daemon:
            await until(daemon, all_final(config, 50))
        with Outbox(config.database.path) as box:
            routes = {m.route for m in box.find(state=State.DELIVERED, limit=100)}
        assert routes == {"sim-smsc"}


@contextlib.contextmanager
def socket_nobody_listens() -> Iterator[int]:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


async def test_transactional_overtakes_ten_thousand_queued_bulk(tmp_path: Path) -> None:
    # 500 parts/s: the bulk takes 20 s, so the OTP arriving after 100 of them shows the order.
    with SimProcess("smsc", {"receipt_delay": 0.01}) as sim:
        config = load_config(write_config(tmp_path, smsc_port=sim.port, window=16,
                                          smpp_extra="throughput = 500"))
        enqueue(config, [NewMessage(to, "bulk", lane=Lane.CAMPAIGN)
                         for to in numbers(10_000)])
        async with running(config) as daemon:
            await until(daemon, lambda: counts(config)[State.DELIVERED] >= 100)
            before = len(sim.command("received")["destinations"])
            enqueue(config, [NewMessage("+15550001111", "your code is 123456")])
            daemon.dispatcher.wake()  # type: ignore[union-attr]
            await until(daemon, lambda: "15550001111" in sim.command("received")["destinations"])
            received = sim.command("received")["destinations"]
        position = received.index("15550001111")
        # At most what was in flight when it was enqueued went before it.
        assert position - before <= IN_FLIGHT_WINDOWS * 16 + 1
        assert counts(config)[State.QUEUED] > 9_000  # the bulk was still queued behind it


async def test_throttled_bind_slows_down_and_loses_nothing(tmp_path: Path) -> None:
    with SimProcess("smsc", {"throttle_rate": 500}) as sim:
        config = load_config(write_config(tmp_path, smsc_port=sim.port))
        enqueue(config, [NewMessage(to, "throttled") for to in numbers(300)])
        async with running(config) as daemon:
            await until(daemon, all_final(config, 300))
        stats = sim.command("stats")
        assert stats["throttled"] > 0
        assert stats["accepted"] == 300


async def test_dropped_links_lose_nothing_and_duplicates_stay_within_the_window(
    tmp_path: Path,
) -> None:
    window = 8
    with SimProcess("smsc", {"drop_after": 300, "receipt_delay": 0.0}) as sim:
        config = load_config(write_config(tmp_path, smsc_port=sim.port, window=window))
        enqueue(config, [NewMessage(to, "drops") for to in numbers(400)])
        async with running(config) as daemon:
            await until(daemon, all_final(config, 400), timeout=60)
        received = sim.command("received")["destinations"]
        stats = sim.command("stats")
    assert set(received) == {n.removeprefix("+") for n in numbers(400)}
    drops = stats["binds_accepted"] - 1
    assert drops >= 1
    assert len(received) - 400 <= drops * window


async def test_stop_cancels_queued_messages_confirms_once_and_records_consent(
    smsc: SimProcess, tmp_path: Path
) -> None:
    config = load_config(write_config(tmp_path, smsc_port=smsc.port))
    far = 4_102_444_800_000  # 2100: scheduled, so still queued when the STOP arrives
    stop_to, other = "+447700900500", "+447700900501"
    queued = enqueue(config, [
        NewMessage(stop_to, "sale!", lane=Lane.CAMPAIGN, not_before_ms=far),
        NewMessage(stop_to, "more sale!", lane=Lane.AUTOMATION, not_before_ms=far),
        NewMessage(other, "sale!", lane=Lane.CAMPAIGN, not_before_ms=far),
    ])
    async with running(config) as daemon:
        smsc.command("inject_mo", text=" Stop. ", source=stop_to)
        smsc.command("inject_mo", text="STOP", source=stop_to)  # a repeat: no second text
        smsc.command("inject_mo", text="help", source=other)
        smsc.command("inject_mo", text="thanks, see you", source=other)
        await until(daemon, lambda: inbox_rows(config) == 4 and counts(config)[State.DELIVERED]
                    == 2)
        assert stop_to in daemon.dispatcher.opted_out  # type: ignore[union-attr]
    with Outbox(config.database.path) as box:
        states = [box.get(i).state for i in queued]  # type: ignore[union-attr]
        assert states == [State.CANCELLED, State.CANCELLED, State.SCHEDULED]
        replies = {m.to: m.text for m in box.find(state=State.DELIVERED, limit=10)}
    assert "unsubscribed" in replies[stop_to]
    assert "Msg & data rates may apply" in replies[other]
    with Store(config.database.path) as store:
        rows = store.query("SELECT action, method FROM consent WHERE phone_e164 = ?", (stop_to,))
    assert [(r[0], r[1]) for r in rows] == [("revoke", "keyword")]
    conn = sqlite3.connect(config.database.path)
    actions = [r[0] for r in conn.execute("SELECT action FROM inbox_message ORDER BY id")]
    conn.close()
    assert actions == ["opt_out", "opt_out", "help", "other"]


def inbox_rows(config: Config) -> int:
    conn = sqlite3.connect(config.database.path)
    try:
        return int(conn.execute(
            "SELECT count(*) FROM inbox_message WHERE action IS NOT NULL").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


async def test_a_message_claimed_before_the_stop_is_not_sent_to_an_opted_out_number(
    smsc: SimProcess, tmp_path: Path
) -> None:
    config = load_config(write_config(tmp_path, smsc_port=smsc.port))
    async with running(config) as daemon:
        dispatcher: Dispatcher = daemon.dispatcher  # type: ignore[assignment]
        assert daemon.inbound is not None
        await daemon.inbound.handle(RouteInbound("sim-smsc", "447700900600", "1", "STOP"))
        (mid,) = enqueue(config, [NewMessage("+447700900600", "promo", lane=Lane.CAMPAIGN)])
        dispatcher.wake()
        await until(daemon, lambda: counts(config)[State.FAILED] == 1)
    with Outbox(config.database.path) as box:
        message = box.get(mid)
        assert message is not None and message.error_text == "opted out"


async def test_stopping_mid_run_drains_in_flight_and_leaves_nothing_sending(
    tmp_path: Path,
) -> None:
    with SimProcess("smsc", {"receipt_delay": 0.01}) as sim:
        config = load_config(write_config(tmp_path, smsc_port=sim.port,
                                          smpp_extra="throughput = 400"))
        enqueue(config, [NewMessage(to, "drain me") for to in numbers(3000)])
        async with running(config) as daemon:
            await until(daemon, lambda: counts(config)[State.DELIVERED] >= 200)
        # `running` stopped the daemon (exit code 0 checked there): every message it took
        # is stored as submitted or delivered, none left `sending` for a resend.
        after = counts(config)
        accepted = sim.command("stats")["accepted"]
    assert after[State.SENDING] == 0
    assert after[State.SUBMITTED] + after[State.DELIVERED] == accepted
    assert after[State.QUEUED] == 3000 - accepted


async def test_messages_for_a_route_that_is_down_do_not_crowd_out_the_others(
    smsc: SimProcess, tmp_path: Path
) -> None:
    with socket_nobody_listens() as dead_port:
        path = write_config(tmp_path, smsc_port=smsc.port,
                            routes=(("+44", ("sim-smsc",)), ("+1", ("dead",))), extra=f"""
[[smpp]]
name = "dead"
host = "127.0.0.1"
port = {dead_port}
system_id = "x"
password = "x"
""")
        config = load_config(path)
        # The waiting ones are older: without a delay they would head the lane forever.
        enqueue(config, [NewMessage(f"+1202555{i:04d}", "waits") for i in range(1000)])
        enqueue(config, [NewMessage(to, "goes") for to in numbers(100)])
        async with running(config, up=("sim-smsc",)) as daemon:
            await until(daemon, all_final(config, 100), timeout=15)
        after = counts(config)
    assert after[State.QUEUED] == 1000 and after[State.FAILED] == 0
