"""The modem pool over four simulated modems on real ptys."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, time, timedelta
from time import monotonic
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modem.client import ModemState
from drivers.modem.config import ModemConfig
from drivers.modem.errors import CmsError, ModemDown, SendOutcomeUnknown
from drivers.modem.limits import DailyCap, ModemLimits
from drivers.modem.pdu import decode_submit
from drivers.modem.pool import MessageResult, ModemPool, OutboundMessage, PartSent
from drivers.sim.modem import SimModem
from drivers.sim.modem_profiles import profile
from gateway.codec import encode
from tests.modem.modemkit import wait_state

PROFILES = ("generic", "huawei-e1752", "sim800", "generic")


@asynccontextmanager
async def pool_of(
    n: int = 4, *, sim_kw: dict[str, Any] | None = None, pool_kw: dict[str, Any] | None = None,
    **config_kw: Any,
) -> AsyncIterator[tuple[list[SimModem], ModemPool]]:
    sim_args: dict[str, Any] = {"send_latency": 0.002}
    sim_args.update(sim_kw or {})
    async with AsyncExitStack() as stack:
        sims = [
            await stack.enter_async_context(
                SimModem(profile(PROFILES[i % 4]), imei=f"35693803564380{i}", **sim_args)
            )
            for i in range(n)
        ]
        base: dict[str, Any] = {
            "rate_per_minute": 3000, "command_timeout": 1.0, "prompt_timeout": 1.0,
            "send_timeout": 2.0, "health_interval": 3600, "rediscover_interval": 0.05,
        }
        base.update(config_kw)
        # Known by IMEI only, found among these simulators' ports: never a fixed path that
        # may belong to another program's pty after an unplug.
        configs = [ModemConfig(name=f"m{i}", imei=s.imei, **base) for i, s in enumerate(sims)]
        pool = ModemPool(configs, discover=lambda: [s.path for s in sims if s.path],
                         **(pool_kw or {}))
        async with pool:
            async with asyncio.timeout(10):
                for c in pool.clients:
                    await wait_state(c, ModemState.READY)
            yield sims, pool


def message(i: int, parts: int = 1) -> OutboundMessage:
    text = f"msg {i:03d} " + ("x" * 150 * (parts - 1))
    return OutboundMessage(f"id{i}", f"+4477009{i:05d}", encode(text))


def sent_texts(sims: list[SimModem]) -> dict[str, list[tuple[str, int]]]:
    """destination -> [(modem imei, part seq)] from what the simulators recorded as sent."""
    out: dict[str, list[tuple[str, int]]] = {}
    for sim in sims:
        for rec in sim.records:
            if rec.error is None:
                sub = decode_submit(rec.pdu)
                seq = sub.concat.seq if sub.concat else 1
                out.setdefault(sub.destination, []).append((sim.imei, seq))
    return out


@pytest.mark.parametrize("resend_unknown", [False, True])
async def test_unplugged_modem_loses_nothing_and_others_send_its_parts(
    resend_unknown: bool,
) -> None:
    pool_kw = {"resend_unknown": resend_unknown}
    async with pool_of(
        sim_kw={"send_latency": 0.01}, rate_per_minute=1200, pool_kw=pool_kw
    ) as (sims, pool):
        victim = sims[1]
        # Its first part leaves the modem but the answer never comes; then it is unplugged.
        victim.hang_after_next_pdu(sent=True)
        msgs = [message(i, parts=1 + i % 3) for i in range(40)]
        futures = [pool.submit_nowait(m) for m in msgs]
        async with asyncio.timeout(10):
            await victim.wait_for(lambda: len(victim.records) == 1)
        victim.unplug()
        async with asyncio.timeout(30):
            results = await asyncio.gather(*futures)
        lost_answer = decode_submit(victim.records[0].pdu)
        lost_seq = lost_answer.concat.seq if lost_answer.concat else 1
        unsure = [r for r in results if not r.ok]
        if resend_unknown:  # the operator chose a possible duplicate over a delay
            assert not unsure
        else:  # never resent blindly: the caller learns exactly which part is in doubt
            (r,) = unsure
            m = next(m for m in msgs if m.id == r.id)
            assert m.destination == lost_answer.destination
            assert isinstance(r.error, SendOutcomeUnknown) and r.outcome_unknown
            assert r.unknown == (lost_seq,)
            assert [p.seq for p in r.parts] == list(range(1, lost_seq))
        for r, m in zip(results, msgs, strict=True):
            if r.ok:
                assert len(r.parts) == len(m.message.parts)
                assert len({p.modem for p in r.parts}) == 1  # never split by default
        sent = sent_texts(sims)
        for r, m in zip(results, msgs, strict=True):
            seqs = {seq for _, seq in sent[m.destination]}
            expected = len(m.message.parts) if r.ok else lost_seq
            assert seqs == set(range(1, expected + 1)), m.id
        stats = pool.statistics()
        assert stats.messages_done == 40 - len(unsure) and stats.messages_failed == 0
        assert stats.messages_unknown == len(unsure)
        by_name = {s.modem.name: s for s in stats.modems}
        assert by_name["m1"].modem.state is ModemState.DOWN
        assert by_name["m1"].unknown == 1
        assert by_name["m1"].failovers == (1 if resend_unknown else 0)
        assert sum(s.parts_sent for s in stats.modems) >= sum(len(m.message.parts) for m in msgs
                                                              if m.id not in {r.id for r in unsure})
        assert all(s.parts_sent > 0 for s in stats.modems if s.modem.name != "m1")


async def test_a_part_not_yet_written_when_the_modem_goes_is_moved_without_doubt() -> None:
    """Unplugged before the PDU reached it (no prompt yet): nothing can have been sent, so the
    part moves to another modem even without ``resend_unknown``."""
    async with pool_of(n=2) as (sims, pool):
        sims[0].hang()  # answers nothing: AT+CMGS never gets its prompt
        sims[1].hang()
        future = pool.submit_nowait(message(1))
        async with asyncio.timeout(10), asyncio.TaskGroup() as tg:
            waits = [tg.create_task(s.wait_for(lambda s=s: s.ignored >= 1)) for s in sims]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
        first = 0 if sims[0].ignored else 1
        sims[1 - first].resume()
        sims[first].unplug()
        result = await asyncio.wait_for(future, 10)
        assert result.ok and result.parts[0].modem == f"m{1 - first}"
        assert pool.statistics().modems[first].unknown == 0


async def test_split_allowed_spreads_parts_over_modems() -> None:
    async with pool_of(pool_kw={"allow_split": True}, rate_per_minute=600) as (_, pool):
        result = await pool.send(message(1, parts=6))
        assert result.ok and len({p.modem for p in result.parts}) > 1


async def test_recipient_error_fails_without_failover_and_congestion_moves() -> None:
    async with pool_of(n=2) as (sims, pool):
        for s in sims:
            s.fail_next_send(1)  # unassigned number: no modem can help
        bad = await pool.send(message(1))
        assert not bad.ok and isinstance(bad.error, CmsError) and bad.attempts == 1
        for s in sims:
            s.clear_failures()
        sims[0].fail_next_send(42, count=100)  # this SIM's cell is congested
        moved = await asyncio.gather(*(pool.send(message(i)) for i in range(2, 8)))
        assert all(r.ok and r.parts[0].modem == "m1" for r in moved)
        assert {r.error for r in sims[0].records} == {1, 42}  # m0 never got one out
        assert pool.statistics().modems[0].failovers >= 1


def released_by_modem(results: list[MessageResult]) -> dict[str, list[PartSent]]:
    out: dict[str, list[PartSent]] = {}
    for r in results:
        for p in r.parts:
            out.setdefault(p.modem, []).append(p)
    return {m: sorted(ps, key=lambda p: p.released) for m, ps in out.items()}


def assert_sent_no_earlier_than_released(sims: list[SimModem], parts: list[PartSent]) -> None:
    """The simulator read each PDU no earlier than the limiter released it (one clock for
    both: time.monotonic). Scheduling noise only makes parts later, never earlier."""
    sim = next(s for i, s in enumerate(sims) if f"m{i}" == parts[0].modem)
    received = {r.mr: r.received for r in sim.records if r.error is None}
    for p in parts:
        assert received[p.message_reference] >= p.released - 1e-3, (p, received)


async def test_per_modem_rate_is_respected_and_throughput_adds_up() -> None:
    """Rates are asserted on the pool's injected clock (the limiter's release instants), not
    on when a loaded machine happened to run the simulator; the simulators' timestamps, on
    the same clock, show that no part went out before its release."""
    rate = 600  # 10 parts/s each
    async with pool_of(
        n=4, rate_per_minute=rate, sim_kw={"clock": monotonic},
        pool_kw={"clock": monotonic},
    ) as (sims, pool):
        results = await asyncio.gather(*(pool.send(message(i)) for i in range(40)))
        assert all(r.ok for r in results)
        per_second = rate // 60
        by_modem = released_by_modem(results)
        assert len(by_modem) == 4
        for parts in by_modem.values():
            times = [p.released for p in parts]
            # No 1-second window holds more than the cap: any 11 releases span >= 1 s.
            spans = [b - a for a, b in zip(times, times[per_second:], strict=False)]
            assert all(span >= 1.0 - 1e-6 for span in spans), spans
            assert len(times) >= 5  # every modem took a share
            assert_sent_no_earlier_than_released(sims, parts)
        # Throughput adds up: one modem's releases never exceed 10/s, so a higher pool rate
        # proves the modems sent side by side (ideal 40/s; 15/s leaves ~1.6 s for noise).
        every = sorted(p.released for ps in by_modem.values() for p in ps)
        achieved = (len(every) - 1) / (every[-1] - every[0])
        assert achieved >= 1.5 * per_second, achieved


async def test_daily_cap_and_random_gap() -> None:
    async with pool_of(n=2, parts_per_day=3, random_gap=(0.01, 0.02),
                       sim_kw={"clock": monotonic},
                       pool_kw={"rng": random.Random(7), "clock": monotonic}) as (sims, pool):
        results = await asyncio.gather(*(pool.send(message(i)) for i in range(6)))
        assert all(r.ok for r in results)
        assert [len(s.records) for s in sims] == [3, 3]
        for parts in released_by_modem(results).values():
            # 3000/min: releases >= 20 ms apart; the random gap: >= 10 ms after the previous
            # part's answer (the gap is a pause between sends, not part of the rate).
            for a, b in itertools.pairwise(parts):
                assert b.released - a.released >= 60 / 3000 - 1e-6
                assert b.released - a.at >= 0.01 - 1e-6
            assert_sent_no_earlier_than_released(sims, parts)
        stats = pool.statistics()
        assert [s.sent_today for s in stats.modems] == [3, 3]


def test_daily_cap_resets_at_the_configured_time() -> None:
    cap = DailyCap(2, time(6, 0))
    t = datetime(2026, 1, 1, 5, 0, tzinfo=UTC)
    cap.add(t, 2)
    assert cap.seconds_blocked(t) == 3600
    later = datetime(2026, 1, 1, 6, 0, tzinfo=UTC)
    assert cap.seconds_blocked(later) == 0 and cap.sent_today(later) == 0


@given(
    rate=st.integers(1, 120),
    per_day=st.one_of(st.none(), st.integers(1, 50)),
    idle=st.lists(st.floats(0, 400), min_size=1, max_size=60),
    gap=st.one_of(st.just((0.0, 0.0)), st.tuples(st.floats(0, 5), st.floats(0, 120)).map(
        lambda t: (min(t), max(t)))),
    seed=st.integers(0, 2**32),
)
def test_limits_never_exceed_the_caps(
    rate: int, per_day: int | None, idle: list[float], gap: tuple[float, float], seed: int
) -> None:
    """Whatever the idle times between jobs and the random gaps, following wait_before/take
    never puts more than ``rate`` parts in any 60 s nor more than ``per_day`` in a day, and
    every part waits at least the gap's low end after the previous one."""
    config = ModemConfig("x", port="/dev/null", rate_per_minute=rate, parts_per_day=per_day,
                         random_gap=gap)
    limits = ModemLimits.from_config(config, 0.0, random.Random(seed))
    start = datetime(2026, 1, 1, 23, 0, tzinfo=UTC)
    now, sent = 0.0, []
    for pause in idle:
        now += pause
        now += limits.wait_before(now, start + timedelta(seconds=now))
        before = now
        now += limits.take(now, start + timedelta(seconds=now))
        assert now - before >= gap[0] - 1e-9
        sent.append(now)
    assert all(b - a >= 60.0 - 1e-6 for a, b in zip(sent, sent[rate:], strict=False))
    if per_day is not None:
        days: dict[object, int] = {}
        for t in sent:
            day = (start + timedelta(seconds=t)).date()
            days[day] = days.get(day, 0) + 1
        assert max(days.values()) <= per_day


async def test_all_modems_down_queued_messages_can_be_failed_over_to_another_route() -> None:
    async with pool_of(n=2, rate_per_minute=60) as (sims, pool):
        for s in sims:
            s.unplug()
        for c in pool.clients:
            await wait_state(c, ModemState.DOWN)
        assert pool.ready == 0 and pool.statistics().ready_modems == 0
        futures = [pool.submit_nowait(message(i)) for i in range(3)]
        assert pool.statistics().queued_jobs == 3
        assert pool.fail_queued(ModemDown("no modem left")) == 3
        results = [await f for f in futures]
        assert all(isinstance(r.error, ModemDown) and r.id == f"id{i}"
                   for i, r in enumerate(results))
        sims[0].replug()
        async with asyncio.timeout(10):
            await pool.wait_available()
        assert (await pool.send(message(9))).ok


async def test_closing_the_pool_ends_every_waiting_message() -> None:
    async with pool_of(n=1, sim_kw={"send_latency": 5.0}, send_timeout=10) as (sims, pool):
        futures = [pool.submit_nowait(message(i)) for i in range(3)]
        await sims[0].wait_for(lambda: sims[0].commands[-1].startswith("AT+CMGS"))
    results = [f.result() for f in futures]
    assert all(isinstance(r.error, ModemDown) for r in results)
    assert [r.id for r in results] == ["id0", "id1", "id2"]


async def test_modems_known_only_by_imei_each_find_their_own_port() -> None:
    async with AsyncExitStack() as stack:
        sims = [
            await stack.enter_async_context(
                SimModem(profile("generic"), imei=f"35000000000000{i}", send_latency=0.001)
            )
            for i in range(3)
        ]
        configs = [
            ModemConfig(name=f"m{i}", imei=s.imei, command_timeout=1.0, rediscover_interval=0.05)
            for i, s in enumerate(sims)
        ]
        ports = [s.path for s in reversed(sims)]  # discovery order unrelated to config order
        async with ModemPool(configs, discover=lambda: ports) as pool:
            async with asyncio.timeout(15):
                for c in pool.clients:
                    await wait_state(c, ModemState.READY)
            assert [c.port for c in pool.clients] == [s.path for s in sims]
            assert [c.identity.imei for c in pool.clients if c.identity] == [s.imei for s in sims]
