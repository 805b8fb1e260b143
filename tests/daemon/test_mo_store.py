"""gateway/mo_store.py against the MoPartStore contract (drivers/smpp/mo_store.py) on a real
SQLite file: parts collect into a group, survive a reopen, expire as incomplete messages and are
re-armed, copies are ignored, binds do not share groups, concurrent adds all land."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from drivers.smpp.mo import MoPart
from gateway.mo_store import MoPartDb

DC_GSM = 0x00


def part(seq: int, text: str, *, total: int = 3, ref: int = 7, sender: str = "4915123") -> MoPart:
    return MoPart(sender, "12345", DC_GSM, text.encode(), None, ref, total, seq, "udh8", 1, 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_parts_collect_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "smsgate.db"
    clock = Clock()
    db = await MoPartDb.open(path, clock=clock)
    store = db.store("bind-a", timeout=60)
    assert await store.add(part(2, "lo ")) is None
    assert await store.add(part(2, "lo ")) is None  # a copy of a seq: ignored
    await db.aclose()

    db = await MoPartDb.open(path, clock=clock)  # the process died between parts
    store = db.store("bind-a", timeout=60)
    assert await store.counts() == (1, 1)
    assert await store.add(part(1, "hel")) is None
    group = await store.add(part(3, "you"))
    assert group is not None
    assert group.message.text == "hello you"
    assert group.message.complete
    assert (group.message.source_addr_ton, group.message.source_addr_npi) == (1, 1)
    # Removed after hand-over; a crash before remove offers it again on the next copy.
    again = await store.add(part(3, "you"))
    assert again is not None and again.message.text == "hello you"
    await store.remove(group)
    await store.remove(group)  # twice is harmless
    assert await store.counts() == (0, 0)
    assert await store.next_expiry() is None
    await db.aclose()


async def test_committed_before_add_returns(tmp_path: Path) -> None:
    path = tmp_path / "smsgate.db"
    db = await MoPartDb.open(path)
    await db.store("bind-a", timeout=60).add(part(1, "hel"))
    # Another connection sees it at once: nothing waits in an open transaction.
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT count(*) FROM mo_pending_part").fetchone() == (1,)
    await db.aclose()


async def test_expire_releases_incomplete_and_rearms(tmp_path: Path) -> None:
    clock = Clock()
    db = await MoPartDb.open(tmp_path / "smsgate.db", clock=clock)
    store = db.store("bind-a", timeout=60)
    await store.add(part(1, "hel"))
    clock.now += 10
    await store.add(part(3, "you", ref=8))
    assert await store.next_expiry() == 50
    assert await store.expire() == []
    clock.now += 50
    due = await store.expire()
    assert [g.message.missing for g in due] == [(2, 3)]
    assert not due[0].message.complete
    assert due[0].message.text == "hel"
    # Re-armed one timeout on; the other group is next.
    assert await store.next_expiry() == 10
    clock.now += 10
    assert [g.message.missing for g in await store.expire()] == [(1, 2)]
    assert await store.next_expiry() == 50
    await db.aclose()


async def test_binds_are_separate_and_concurrent_adds_all_land(tmp_path: Path) -> None:
    db = await MoPartDb.open(tmp_path / "smsgate.db")
    a, b = db.store("bind-a", timeout=60), db.store("bind-b", timeout=60)
    # Same sender, recipient and reference on two carriers: two messages.
    assert await a.add(part(1, "x", total=2)) is None
    assert await b.add(part(2, "y", total=2)) is None
    senders = [f"49{n:05d}" for n in range(40)]
    results = await asyncio.gather(*(
        a.add(part(seq, "ab", total=2, sender=s)) for s in senders for seq in (1, 2)
    ))
    assert sum(r is not None for r in results) == len(senders)
    assert await a.counts() == (41, 81)
    assert await b.counts() == (1, 1)
    await db.aclose()
