"""Batches evaluated on a second connection (``Membership.prepare``) and written by the writer
(``Membership.commit``): whatever happens between the two, membership ends equal to a full
recompute. The connections are real, on one SQLite file; the evaluator process is real too."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from segmentation.ingest import Event, ingest_events
from segmentation.membership import Membership, Prepared
from segmentation.membership_pipeline import Pipeline
from segmentation.privacy import erase_subscriber
from segmentation.store import Store
from segmentation.subscribers import upsert_subscriber
from tests.segmentation.conftest import HASH_KEY, ROOT, START_MS, ManualClock, process_gone
from tests.segmentation.test_membership import (
    DAY,
    HOUR,
    NUMBERS,
    OPS,
    RULES,
    _subs,
    _transitions,
    apply_op,
)


@contextlib.contextmanager
def _another_connection(store: Store, clock: ManualClock) -> Iterator[Membership]:
    s = Store(store.path, clock=clock)
    try:
        yield Membership(s)
    finally:
        s.close()


@pytest.fixture
def reader(store: Store, clock: ManualClock) -> Iterator[Membership]:
    """A Membership on a second connection to the store's file, as the evaluator has."""
    with _another_connection(store, clock) as m:
        yield m


@pytest.fixture
def cli(store: Store, clock: ManualClock) -> Iterator[Membership]:
    """Another process's Membership (the CLI defining, dropping, draining)."""
    with _another_connection(store, clock) as m:
        yield m


def _prepare(reader: Membership, m: Membership) -> Prepared:
    return reader.prepare(m.take_pending(), m.store.now_ms())


def _clean(m: Membership) -> None:
    assert [d for d in m.reconcile() if not d.clean] == []
    assert m.store.conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_a_prepared_batch_is_written_as_a_drain_would(
    store: Store, reader: Membership, clock: ManualClock
) -> None:
    a, b, c, _ = _subs(store)
    m = Membership(store)
    m.attach()
    m.define("buyers", "count(purchase, last 30d) >= 1")
    m.define("big", 'in_segment("buyers") and trait.spend >= 50')  # evaluated by the writer
    ingest_events(store, [Event("purchase", START_MS - HOUR, subscriber_id=a, value=60),
                          Event("purchase", START_MS - HOUR, subscriber_id=b, value=5)])
    prep = _prepare(reader, m)
    assert set(prep.fresh) == {m.get("buyers").id}  # "big" reads another segment
    assert prep.fresh[m.get("buyers").id][1] == frozenset({a, b})
    assert store.scalar("SELECT count(*) FROM membership_queue") == 2  # prepare writes nothing
    ingest_events(store, [Event("purchase", START_MS, subscriber_id=c, value=1)])  # meanwhile
    r = m.commit(prep)
    assert r is not None and (r.entered, r.exited) == (3, 0)
    assert m.members("buyers") == [a, b] and m.members("big") == [a]
    assert _transitions(store, "buyers") == [(a, "enter", "event"), (b, "enter", "event")]
    # what came in meanwhile is still queued, for the next batch
    assert store.conn.execute("SELECT subscriber_id FROM membership_queue").fetchall() == [(c,)]
    r = m.commit(_prepare(reader, m))
    assert r is not None and m.members("buyers") == [a, b, c]
    _clean(m)


def test_a_segment_redefined_after_its_batch_was_prepared_is_evaluated_by_the_writer(
    store: Store, reader: Membership, clock: ManualClock
) -> None:
    a, *_ = _subs(store, 1)
    m = Membership(store)
    m.attach()
    m.define("buyers", "trait.orders >= 1")
    ingest_events(store, [Event("purchase", START_MS - HOUR, subscriber_id=a, value=5)])
    prep = _prepare(reader, m)
    m.define("buyers", "trait.orders >= 5")  # another process would do the same
    assert m.commit(prep) is not None
    # the prepared result (version 1: a is in) would have put a back into version 2
    assert m.members("buyers") == []
    assert _transitions(store, "buyers") == []
    _clean(m)


def test_a_segment_swept_past_the_batch_time_is_evaluated_by_the_writer(
    store: Store, reader: Membership, clock: ManualClock
) -> None:
    a, *_ = _subs(store, 1)
    m = Membership(store)
    m.attach()
    m.define("recent", "last(link_click) within_last 1d")
    # a click that arrives late: 23 hours old, so it counts for one more hour
    ingest_events(store, [Event("link_click", START_MS - 23 * HOUR, subscriber_id=a)])
    prep = _prepare(reader, m)
    assert prep.fresh[m.get("recent").id][1] == {a}
    clock.advance(2 * HOUR)
    m.process_due()  # its crossing was an hour ago: swept, and a is not a member
    assert store.scalar("SELECT count(*) FROM membership_queue") == 1  # the sweep left it
    assert m.commit(prep) is not None
    assert m.members("recent") == []  # not entered on the batch's out-of-date answer
    _clean(m)


def test_a_pair_marked_after_the_batch_was_prepared_is_evaluated_by_the_writer(
    store: Store, reader: Membership, clock: ManualClock
) -> None:
    a, b, *_ = _subs(store, 2)
    ingest_events(store, [Event("link_click", START_MS - HOUR, subscriber_id=a)])  # unqueued
    m = Membership(store)
    m.attach()
    m.define("clickers", "last(link_click) within_last 7d")
    ingest_events(store, [Event("link_click", START_MS - HOUR, subscriber_id=b)])
    prep = _prepare(reader, m)
    assert prep.fresh[m.get("clickers").id][1] == {b}  # the reader saw only b
    m.mark_dirty(m.get("clickers").id, [a], ("manual", "test"))  # marked meanwhile
    assert m.commit(prep) is not None
    assert m.members("clickers") == [a, b]  # a not taken out for missing from the answer
    _clean(m)


def test_a_batch_whose_rows_another_drain_took_writes_nothing(
    store: Store, reader: Membership, cli: Membership, clock: ManualClock
) -> None:
    a, b, *_ = _subs(store, 2)
    m = Membership(store)
    m.attach()
    m.define("clickers", "last(link_click) within_last 7d")
    m.define("anyone", "trait.orders = 0")
    ingest_events(store, [Event("link_click", START_MS - HOUR, subscriber_id=a)])
    m.mark_dirty(m.get("anyone").id, [b], ("manual", "test"))  # this process's own pair
    prep = _prepare(reader, m)
    assert m.pending == 0  # handed over
    assert cli.drain().entered == 1  # another process takes the queued row first
    moves = store.scalar("SELECT count(*) FROM segment_transition")
    assert m.commit(prep) is None
    assert store.scalar("SELECT count(*) FROM segment_transition") == moves
    assert m.members("clickers") == [a]
    assert m.pending == 1  # the handed-over pair is dirty again
    assert m.drain().pairs == 1
    _clean(m)


def test_a_subscriber_erased_after_the_batch_was_prepared_is_not_written_back(
    store: Store, reader: Membership, clock: ManualClock
) -> None:
    a, b, c, _ = _subs(store)
    ingest_events(store, [Event("link_click", START_MS - HOUR, subscriber_id=a)])  # unqueued
    m = Membership(store)
    m.attach()
    m.define("clickers", "last(link_click) within_last 7d")
    assert m.members("clickers") == [a]
    m.mark_dirty(m.get("clickers").id, [a], ("manual", "test"))  # a pair held in memory
    ingest_events(store, [Event("link_click", START_MS - HOUR, subscriber_id=b)])
    prep = _prepare(reader, m)
    assert m.get("clickers").id not in prep.fresh  # a carried pair: the writer evaluates
    erase_subscriber(store, NUMBERS[0])  # a's membership goes with it
    r = m.commit(prep)  # re-entering a would fail on its foreign key
    assert r is not None and (r.entered, r.exited) == (1, 0)
    assert m.members("clickers") == [b]
    # a subscriber erased with a queued row: the erasure took the row, so the batch is
    # not written (as if another drain had taken it) and the next one evaluates the rest
    ingest_events(store, [Event("link_click", START_MS, subscriber_id=c),
                          Event("link_click", START_MS, subscriber_id=b)])
    prep = _prepare(reader, m)
    erase_subscriber(store, NUMBERS[2])
    assert m.commit(prep) is None
    r = m.commit(_prepare(reader, m))
    assert r is not None and r.pairs == 1
    assert m.members("clickers") == [b]
    _clean(m)


def test_a_segment_dropped_and_replaced_under_the_same_id_is_not_evaluated_by_its_old_rule(
    store: Store, reader: Membership, clock: ManualClock
) -> None:
    """Found in review: ids are plain rowids, so a segment defined after the newest one was
    dropped takes its id, at version 1 again. The reader must not keep the old rule (nor
    its triggers), and commit must not take an answer to the old rule for the new one."""
    a, b, *_ = _subs(store, 2)
    m = Membership(store)
    m.attach()
    m.define("x", "last(link_click) within_last 7d")
    assert m.commit(_prepare(reader, m)) is not None  # the reader has read the catalogue
    old_id = m.get("x").id
    m.drop("x")
    m.define("x", "trait.orders >= 1")
    assert (m.get("x").id, m.get("x").version) == (old_id, 1)
    ingest_events(store, [Event("link_click", START_MS - HOUR, subscriber_id=a),
                          Event("purchase", START_MS - HOUR, subscriber_id=b, value=5)])
    assert m.commit(_prepare(reader, m)) is not None
    assert m.members("x") == [b]  # not a (the old rule), and b's purchase not lost
    # replaced between prepare and commit: the answer to the old rule is not written
    ingest_events(store, [Event("purchase", START_MS, subscriber_id=a, value=5)])
    prep = _prepare(reader, m)
    assert prep.fresh[old_id][1] == frozenset({a})  # one order is enough for this rule
    m.drop("x")
    m.define("x", "trait.orders >= 5")
    assert (m.get("x").id, m.get("x").version) == (old_id, 1)
    assert m.commit(prep) is not None
    assert m.members("x") == []
    _clean(m)


def test_pairs_from_the_writer_s_memory_are_evaluated_by_the_writer(
    store: Store, reader: Membership, cli: Membership, clock: ManualClock
) -> None:
    """Found in review: a pair handed over from the writer's memory (left by a failed round)
    has no queued row, so nothing tells commit that another drain evaluated a newer change
    of it meanwhile; the reader's answer would overwrite that drain's."""
    a, *_ = _subs(store, 1)
    m = Membership(store)
    m.attach()
    m.define("clickers", "last(link_click) within_last 7d")
    m.mark_dirty(m.get("clickers").id, [a], ("time", "left over"))
    prep = _prepare(reader, m)
    assert prep.queue_ids == () and m.get("clickers").id not in prep.fresh
    ingest_events(store, [Event("link_click", START_MS - HOUR, subscriber_id=a)])  # meanwhile
    assert cli.drain().entered == 1  # `smsgate event add` applying it
    assert m.commit(prep) is not None
    assert m.members("clickers") == [a]  # not taken out on the reader's older answer
    # the same with this process's reconcile (its drain takes the row) in between
    m.mark_dirty(m.get("clickers").id, [a], ("time", "left over"))
    prep = _prepare(reader, m)
    ingest_events(store, [Event("link_click", START_MS, subscriber_id=a)])
    _clean(m)
    assert m.commit(prep) is not None
    assert m.members("clickers") == [a]
    _clean(m)


def test_an_erased_subscriber_s_id_given_to_a_new_one_gets_no_prepared_answer(
    store: Store, reader: Membership, clock: ManualClock
) -> None:
    """Found in review: subscriber ids are plain rowids too; the newest one erased, the next
    one created takes its id before the batch is committed."""
    _, b = _subs(store, 2)
    ingest_events(store, [Event("link_click", START_MS - HOUR, subscriber_id=b)])
    m = Membership(store)
    m.attach()
    m.define("clickers", "last(link_click) within_last 7d")
    store.conn.execute("DELETE FROM segment_member")  # b's membership drifted away
    store.conn.execute("UPDATE segment SET member_count = 0")
    m.mark_dirty(m.get("clickers").id, [b], ("time", "left over"))
    prep = _prepare(reader, m)
    erase_subscriber(store, NUMBERS[1])
    assert upsert_subscriber(store, NUMBERS[5]) == b  # the id is given again
    assert m.commit(prep) is not None
    assert m.members("clickers") == []  # the new subscriber has not clicked
    _clean(m)


def _swap_names(m: Membership, cli: Membership) -> None:
    """Two segments rebuilt by the CLI under each other's names, each id keeping its rule:
    every (id, version, kind, definition) is what it was, only the names moved."""
    m.define("a", "trait.orders >= 1")
    m.define("b", "last(link_click) within_last 7d")
    m.define("c", 'in_segment("a")')
    ids = {n: m.get(n).id for n in "abc"}
    m.segments()  # the long-lived process has read the catalogue
    for name in ("c", "a", "b"):
        cli.drop(name)
    cli.define("b", "trait.orders >= 1")
    cli.define("a", "last(link_click) within_last 7d")
    cli.define("c", 'in_segment("a")')
    assert (cli.get("b").id, cli.get("a").id, cli.get("c").id) == (ids["a"], ids["b"], ids["c"])


def test_segments_rebuilt_under_each_other_s_names_are_seen_by_a_long_lived_drain(
    store: Store, cli: Membership, clock: ManualClock
) -> None:
    x, *_ = _subs(store, 1)
    m = Membership(store)  # the daemon's writer
    m.attach()
    _swap_names(m, cli)
    ingest_events(store, [Event("link_click", START_MS - HOUR, subscriber_id=x)])
    m.drain()
    # x entered "a" (now the click rule); "c" = in_segment("a") must follow in the batch
    assert cli.members("a") == [x]
    assert cli.members("c") == [x]


def test_segments_rebuilt_under_each_other_s_names_are_seen_by_commit(
    store: Store, reader: Membership, cli: Membership, clock: ManualClock
) -> None:
    x, *_ = _subs(store, 1)
    m = Membership(store)
    m.attach()
    _swap_names(m, cli)
    ingest_events(store, [Event("link_click", START_MS - HOUR, subscriber_id=x)])
    assert m.commit(reader.prepare(m.take_pending(), m.store.now_ms())) is not None
    assert cli.members("a") == [x]
    assert cli.members("c") == [x]


class _Hooked:
    """A connection that runs ``hook`` once, right after the first statement that reads the
    catalogue: another process committing in between, where a refresh that read in two
    statements (autocommit: two snapshots) took the second for the first."""

    def __init__(self, conn: sqlite3.Connection, hook: Callable[[], object]) -> None:
        self._conn = conn
        self._hook: Callable[[], object] | None = hook

    def execute(self, sql: str, *args: Any) -> Any:
        cur = self._conn.execute(sql, *args)
        if self._hook is not None and "FROM segment" in sql and "ORDER BY id" in sql:
            rows = cur.fetchall()
            hook, self._hook = self._hook, None
            hook()
            return _Rows(rows)
        return cur

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _Rows(list[Any]):
    def fetchone(self) -> Any:
        return self[0] if self else None

    def fetchall(self) -> list[Any]:
        return list(self)


def test_a_drop_committed_while_the_catalogue_is_read_is_not_missed(
    store: Store, cli: Membership, clock: ManualClock
) -> None:
    x, *_ = _subs(store, 1)
    m = Membership(store)  # the daemon's writer
    m.attach()
    m.define("keep", "trait.orders >= 1")
    m.define("clickers", "last(link_click) within_last 7d")
    cli.define("keep", "trait.orders >= 2")  # any change: the daemon's next refresh re-reads
    # an operator resets "clickers" (drop, define the same rule); the drop commits between
    # the signature and the catalogue statements of the daemon's process_due refresh
    m.conn = _Hooked(store.conn, lambda: cli.drop("clickers"))  # type: ignore[assignment]
    m.process_due()
    m.conn = store.conn
    cli.define("clickers", "last(link_click) within_last 7d")  # same id, version 1 again
    ingest_events(store, [Event("link_click", START_MS - HOUR, subscriber_id=x)])
    m.drain()
    assert cli.members("clickers") == [x]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_random_streams_evaluated_apart_equal_a_full_recompute(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, str | None, int]]
) -> None:
    """Every change lands while a batch is prepared or between batches; time passes and
    sweeps run in between too."""
    clock = ManualClock()
    path = tmp_path_factory.mktemp("p") / "s.db"
    store = Store(path, clock=clock, hash_key=HASH_KEY)
    second = Store(path, clock=clock)
    try:
        subs = _subs(store, 5)
        m, reader = Membership(store), Membership(second)
        m.attach()
        for name, text in RULES.items():
            m.define(name, text)
        held: Prepared | None = None
        for op in ops:
            apply_op(store, m, clock, subs, op)
            if held is None:
                held = _prepare(reader, m)
            else:
                # an erasure deletes its subscriber's queued rows: that batch is not written
                assert m.commit(held) is not None or op[0] == "erase"
                held = None
        if held is not None:
            assert m.commit(held) is not None
        while m.queue_waiting():
            m.drain()
        m.process_due()
        _clean(m)
    finally:
        second.close()
        store.close()


def test_the_pipeline_evaluates_in_a_process_of_its_own(
    store: Store, clock: ManualClock, tmp_path: Path
) -> None:
    subs = _subs(store, 6)
    m = Membership(store)
    m.attach()
    for name, text in RULES.items():
        m.define(name, text)
    with Pipeline(m) as pipe:
        for day in range(6):
            ingest_events(store, [Event("purchase", clock.now - day * DAY, subscriber_id=s,
                                        value=7 * day) for s in subs[day % 3:]])
            if pipe.busy:
                pipe.finish()
            pipe.start()
            clock.advance(DAY)
        pipe.finish()
        assert pipe.evaluator.peak_rss_kib() > 10_000  # a process with its own Python
    assert store.scalar("SELECT count(*) FROM membership_queue") == 0
    assert m.count("buyers") > 0
    _clean(m)


_PARENT = """
import sys, time
from segmentation.membership_pipeline import Evaluator
from segmentation.store import Store
if __name__ == "__main__":
    Store(sys.argv[1]).close()
    print(Evaluator(sys.argv[1]).ready().result(), flush=True)
    time.sleep(600)
"""


def test_the_evaluator_process_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path / "s.db")],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(child, 0)  # running
    finally:
        parent.kill()  # SIGKILL: no shutdown, no atexit
        parent.wait(30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process_gone(child):
            return
        time.sleep(0.05)
    pytest.fail(f"evaluator process {child} still runs after its parent was killed")
