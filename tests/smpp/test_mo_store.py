"""The ``MoPartStore`` contract, checked on the in-memory store and on the test's SQLite one."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.smpp.mo import MoPart, split_part
from drivers.smpp.mo_store import InMemoryMoStore, MoPartStore
from tests.smpp.sqlite_mo_store import SqliteMoStore
from tests.smpp.test_mo import udh_parts


class Clock:
    def __init__(self) -> None:
        self.now = 5_000.0

    def __call__(self) -> float:
        return self.now


StoreFactory = Callable[[Clock], MoPartStore]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    opened: list[SqliteMoStore] = []

    def make(clock: Clock) -> MoPartStore:
        if request.param == "memory":
            return InMemoryMoStore(60.0, clock=clock)
        store = SqliteMoStore(str(tmp_path / "mo.sqlite"), 60.0, clock=clock)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def message_parts(text: str, ref: int = 1) -> list[MoPart]:
    return [split_part(p) for p in udh_parts(text, 153, ref, 8, 0)]


async def test_complete_group_is_returned_until_removed(make_store: StoreFactory) -> None:
    store = make_store(Clock())
    a, b = message_parts("z" * 200)
    assert await store.add(b) is None
    assert await store.add(b) is None  # a copy of a part is ignored
    group = await store.add(a)
    assert group is not None and group.message.text == "z" * 200 and group.message.complete
    # the handler failed: the SMSC delivers the last part again and gets the group again
    again = await store.add(a)
    assert again == group
    await store.remove(group)
    await store.remove(group)  # harmless
    assert await store.next_expiry() is None and await store.expire() == []


async def test_expiry_releases_incomplete_groups_and_rearms_them(
    make_store: StoreFactory,
) -> None:
    clock = Clock()
    store = make_store(clock)
    first = message_parts("q" * 400, ref=3)
    second = message_parts("r" * 400, ref=4)
    await store.add(first[0])
    clock.now += 10
    await store.add(second[2])
    await store.add(first[2])
    assert await store.next_expiry() == 60.0 - 10
    clock.now += 49.5
    assert await store.expire() == []
    clock.now += 0.5
    [group] = await store.expire()
    m = group.message
    assert not m.complete and m.missing == (2,) and m.parts == 2 and m.total == 3
    assert m.reference == 3
    # offered once per timeout, not again at once
    assert await store.expire() == []
    assert await store.next_expiry() == 10.0
    clock.now += 10
    [other] = await store.expire()
    assert other.message.reference == 4 and other.message.missing == (1, 2)
    clock.now += 50
    [again] = await store.expire()
    assert again == group  # never removed, so offered again
    await store.remove(again)
    await store.remove(other)
    assert await store.next_expiry() is None


async def test_a_late_part_completes_a_released_group(make_store: StoreFactory) -> None:
    clock = Clock()
    store = make_store(clock)
    a, b = message_parts("y" * 200, ref=8)
    await store.add(a)
    clock.now += 60
    [released] = await store.expire()
    assert not released.message.complete
    group = await store.add(b)
    assert group is not None and group.message.complete and group.key == released.key


def test_in_memory_store_releases_the_oldest_beyond_max_pending() -> None:
    async def run() -> None:
        clock = Clock()
        store = InMemoryMoStore(60.0, max_pending=2, clock=clock)
        for ref in range(3):
            await store.add(message_parts("w" * 200, ref=ref)[0])
            clock.now += 1
        assert await store.next_expiry() is not None
        [oldest] = await store.expire()  # due at once, not after the timeout
        assert oldest.message.reference == 0 and not oldest.message.complete
        assert store.statistics().pending == 3  # until the client removes it

    asyncio.run(run())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.text(alphabet="ab€{", min_size=160, max_size=400)),
        min_size=1,
        max_size=4,
        unique_by=lambda t: t[0],
    ),
    st.randoms(use_true_random=False),
)
def test_interleaved_parts_with_copies_give_each_message_once(
    messages: list[tuple[int, str]], rnd: random.Random
) -> None:
    async def run() -> None:
        store = InMemoryMoStore(60.0, clock=Clock())
        stream = [p for ref, text in messages for p in message_parts(text, ref)]
        stream += rnd.sample(stream, k=len(stream) // 2)  # copies, as after a lost link
        rnd.shuffle(stream)
        done = {}
        for part in stream:
            group = await store.add(part)
            if group is not None and group.key not in done:
                done[group.key] = group.message.text
                await store.remove(group)
        # a copy arriving after the removal starts a new group, released later as incomplete
        assert sorted(done.values()) == sorted(text for _, text in messages)

    asyncio.run(run())
