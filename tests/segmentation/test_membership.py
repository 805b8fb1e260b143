"""Live membership on a real store: definitions, incremental changes, time, reconcile, explain."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmentation.consent import record_consent
from segmentation.ingest import Event, ingest_events
from segmentation.membership import (
    SWEEP_STEP_MS,
    BatchResult,
    Membership,
    SegmentCycleError,
    SegmentInfo,
    UnknownSegmentError,
)
from segmentation.privacy import erase_subscriber
from segmentation.store import Store
from segmentation.subscribers import set_attributes, upsert_subscriber
from tests.segmentation.conftest import HASH_KEY, START_MS, ManualClock

DAY = 86_400_000
HOUR = 3_600_000
NUMBERS = tuple(f"+1212555{n:04d}" for n in range(101, 109))


def _subs(store: Store, n: int = 4) -> list[int]:
    return [upsert_subscriber(store, num) for num in NUMBERS[:n]]


def _transitions(store: Store, name: str) -> list[tuple[int, str, str]]:
    return [(int(s), d, c) for s, d, c in store.conn.execute(
        "SELECT t.subscriber_id, t.direction, t.cause FROM segment_transition t "
        "JOIN segment g ON g.id = t.segment_id WHERE g.name = ? ORDER BY t.id", (name,))]


def test_define_computes_members_counts_and_history(store: Store, clock: ManualClock) -> None:
    a, b, c, _ = _subs(store)
    ingest_events(store, [Event("purchase", START_MS - DAY, subscriber_id=a, value=30),
                          Event("purchase", START_MS - 2 * DAY, subscriber_id=a, value=5),
                          Event("purchase", START_MS - 40 * DAY, subscriber_id=b, value=5),
                          Event("link_click", START_MS - HOUR, subscriber_id=c)])
    m = Membership(store)
    diff = m.define("buyers", "count(purchase, last 30d) >= 1")
    assert (diff.entered, diff.exited, diff.member_count) == (1, 0, 1)
    seg = m.get("buyers")
    assert (seg.status, seg.version, seg.member_count, seg.kind) == ("ready", 1, 1, "dynamic")
    assert m.members("buyers") == [a]
    assert _transitions(store, "buyers") == [(a, "enter", "definition")]
    # redefinition: full recompute, the diff recorded with the new version
    diff = m.define("buyers", "count(purchase) >= 1")
    assert (diff.entered, diff.exited) == (1, 0)
    assert m.members("buyers") == [a, b]
    assert m.get("buyers").version == 2
    ref = store.scalar("SELECT cause_ref FROM segment_transition WHERE subscriber_id = ?", (b,))
    assert ref == "v2"
    m.define("buyers", "trait.spend >= 30")
    assert m.members("buyers") == [a]
    assert _transitions(store, "buyers")[-1] == (b, "exit", "definition")
    assert m.count("buyers") == 1
    assert m.count_rule("trait.spend > 0") == 2


def test_events_attributes_and_consent_update_only_dependent_segments(
    store: Store, clock: ManualClock
) -> None:
    a, b = _subs(store, 2)
    m = Membership(store)
    m.attach()
    m.define("clickers", "last(link_click) within_last 7d")
    m.define("leeds", 'attr.city = "Leeds"')
    m.define("marketing", "consent.marketing = granted")
    m.define("anyone_new", "trait.orders = 0")
    assert m.members("anyone_new") == [a, b]
    ingest_events(store, [Event("link_click", START_MS - HOUR, subscriber_id=a)])
    assert m.pending == 1
    # only the segments reading link_click (directly or through a trait it moves) are
    # evaluated: trait.orders moves with purchases only
    r = m.drain()
    assert (r.segments, r.pairs, r.entered, r.exited) == (1, 1, 1, 0)
    assert m.members("clickers") == [a]
    assert _transitions(store, "clickers")[-1] == (a, "enter", "event")
    set_attributes(store, b, {"city": "Leeds"}, define_missing=True)
    assert m.drain().segments == 1  # leeds only
    assert m.members("leeds") == [b]
    assert _transitions(store, "leeds")[-1] == (b, "enter", "attribute")
    record_consent(store, NUMBERS[1], "marketing", "grant", "web_form", actor="test")
    m.drain()
    assert m.members("marketing") == [b]
    ingest_events(store, [Event("purchase", START_MS, subscriber_id=b, value=9)])
    m.drain()
    assert m.members("anyone_new") == [a]
    # a new subscriber is evaluated against every segment
    c = upsert_subscriber(store, NUMBERS[2])
    m.drain()
    assert m.members("anyone_new") == [a, c]
    assert all(d.clean for d in m.reconcile())


def test_relative_time_exit_and_entry_happen_on_time(store: Store, clock: ManualClock) -> None:
    a, b = _subs(store, 2)
    ingest_events(store, [Event("link_click", START_MS - 10 * DAY, subscriber_id=a),
                          Event("link_click", START_MS - 29 * DAY, subscriber_id=b)])
    m = Membership(store)
    m.attach()
    m.define("active", "last(link_click) within_last 30d")
    m.define("inactive", "last(link_click) more_than_ago 30d")
    assert m.members("active") == [a, b]
    assert m.members("inactive") == []
    # b's click leaves the window exactly 30 days after it happened
    due = START_MS + DAY
    clock.now = due - 1
    assert m.process_due().pairs == 0  # no time crossing yet: nobody re-evaluated
    assert m.members("inactive") == []
    clock.now = due
    r = m.process_due()
    assert (r.entered, r.exited) == (1, 1)
    assert m.members("active") == [a]
    assert m.members("inactive") == [b]
    assert _transitions(store, "inactive")[-1] == (b, "enter", "time")
    assert _transitions(store, "active")[-1] == (b, "exit", "time")
    # a new click brings b back at once (event), and re-schedules the exit
    ingest_events(store, [Event("link_click", clock.now, subscriber_id=b)])
    m.drain()
    assert m.members("active") == [a, b]
    clock.now = START_MS + 20 * DAY
    m.process_due()
    assert m.members("active") == [b]
    assert all(d.clean for d in m.reconcile())


def _swept(store: Store, segment: str) -> int:
    return int(store.scalar("SELECT swept_ms FROM segment WHERE name = ?", (segment,)))


def _time_refs(store: Store, segment: str) -> list[tuple[int, str, str]]:
    return [(int(s), d, r) for s, d, r in store.conn.execute(
        "SELECT t.subscriber_id, t.direction, t.cause_ref FROM segment_transition t JOIN "
        "segment g ON g.id = t.segment_id WHERE g.name = ? AND t.cause = 'time' ORDER BY t.id",
        (segment,))]


def test_time_sweeps_re_evaluate_only_the_crossings_and_move_the_mark(
    store: Store, clock: ManualClock
) -> None:
    a, b, c = _subs(store, 3)
    ingest_events(store, [Event("link_click", START_MS - 10 * DAY, subscriber_id=a),
                          Event("link_click", START_MS - 29 * DAY, subscriber_id=b)])
    m = Membership(store)
    m.attach()
    m.define("lapsing", "last(link_click) more_than_ago 30d or last(reply) within_last 2d")
    m.define("clicked", "last(link_click) within_last 1d")
    m.define("anyone", "trait.orders >= 0")  # not time-sensitive: never swept
    assert _swept(store, "lapsing") == _swept(store, "clicked") == START_MS
    assert m.members("lapsing") == [] and m.members("clicked") == []
    # an hour on: nothing crossed, nobody is re-evaluated, both marks move
    clock.now = START_MS + HOUR
    assert m.process_due().pairs == 0
    assert _swept(store, "lapsing") == _swept(store, "clicked") == clock.now
    assert store.scalar("SELECT swept_ms FROM segment WHERE name = 'anyone'") == START_MS
    ingest_events(store, [Event("reply", clock.now, subscriber_id=a),
                          Event("link_click", clock.now, subscriber_id=c)])
    m.drain()
    assert m.members("lapsing") == [a] and m.members("clicked") == [c]
    # two days on: a's reply ages out, b's click passed 30 days, c's click passed 1 day;
    # exactly those three pairs are re-evaluated (a and b in lapsing, c in clicked)
    clock.now = START_MS + HOUR + 2 * DAY
    r = m.process_due()
    assert (r.pairs, r.entered, r.exited) == (3, 1, 2)
    assert m.members("lapsing") == [b] and m.members("clicked") == []
    # swept in 6-hour slices; each transition names the end of the slice that found it
    one_day, two_days = str(START_MS + HOUR + DAY), str(START_MS + HOUR + 2 * DAY)
    assert _time_refs(store, "lapsing") == [(b, "enter", one_day), (a, "exit", two_days)]
    assert _time_refs(store, "clicked") == [(c, "exit", one_day)]
    assert m.process_due().pairs == 0  # swept up to now: a second call finds nothing
    assert all(d.clean for d in m.reconcile())


def test_catching_up_after_downtime_goes_in_slices_and_agrees_with_a_recompute(
    store: Store, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    subs = _subs(store, 8)
    ingest_events(store, [Event("link_click", START_MS - (i * 3 + 2) * DAY, subscriber_id=s)
                          for i, s in enumerate(subs)])
    m = Membership(store)
    m.attach()
    m.define("active", "last(link_click) within_last 30d")
    m.define("inactive", "last(link_click) more_than_ago 30d")
    m.define("active_not_new", 'in_segment("active") and trait.created_ms more_than_ago 20d')
    seen: list[int] = []
    real_drain = m.drain

    def drain(now: int | None = None, *, before_commit: Callable[[], None] | None = None,
              take_queue: bool = True) -> BatchResult:
        seen.append(_swept(store, "active"))
        return real_drain(now, before_commit=before_commit, take_queue=take_queue)

    monkeypatch.setattr(m, "drain", drain)
    clock.now = START_MS + 25 * DAY  # the daemon was down for 25 days
    r = m.process_due()
    slices = 25 * DAY // SWEEP_STEP_MS
    assert len(seen) == slices  # one transaction per slice, each moving the mark
    assert seen == [START_MS + i * SWEEP_STEP_MS for i in range(slices)]
    assert _swept(store, "active") == clock.now
    # 27 days since the first one's click, 30 or more since the others'
    assert m.members("active") == subs[:1] and m.members("active_not_new") == subs[:1]
    assert m.members("inactive") == subs[1:]
    # 7 left active for inactive; on day 20 the three still active entered active_not_new,
    # and two of them left it again as their clicks aged out, each in its own slice
    assert (r.entered, r.exited) == (7 + 3, 7 + 2)
    assert all(d.clean for d in m.reconcile())


def test_cart_abandoners_sequence_enters_after_min_age_and_exits_on_purchase(
    store: Store, clock: ManualClock
) -> None:
    a, b = _subs(store, 2)
    m = Membership(store)
    m.attach()
    m.define("abandoners", "sequence(cart_add, then_not purchase, within 4h, min_age 1h)")
    ingest_events(store, [Event("cart_add", clock.now, subscriber_id=a),
                          Event("cart_add", clock.now, subscriber_id=b)])
    m.drain()
    assert m.members("abandoners") == []
    clock.advance(HOUR)
    m.process_due()
    assert m.members("abandoners") == [a, b]
    ingest_events(store, [Event("purchase", clock.now, subscriber_id=b, value=1)])
    m.drain()
    assert m.members("abandoners") == [a]
    clock.advance(3 * HOUR)
    m.process_due()
    assert m.members("abandoners") == []
    assert [d for _, d, _ in _transitions(store, "abandoners")] == ["enter", "enter", "exit",
                                                                    "exit"]


def test_segment_references_follow_dependency_order_and_cycles_are_rejected(
    store: Store, clock: ManualClock
) -> None:
    a, b = _subs(store, 2)
    m = Membership(store)
    m.attach()
    m.define("buyers", "count(purchase) >= 1")
    m.define("loyal", 'in_segment("buyers") and trait.orders >= 2')
    m.define("not_loyal", 'not in_segment("loyal")')
    assert m.members("not_loyal") == [a, b]
    ingest_events(store, [Event("purchase", START_MS, subscriber_id=a, value=1),
                          Event("purchase", START_MS, subscriber_id=a, value=1)])
    m.drain()  # buyers -> loyal -> not_loyal, all in one batch
    assert m.members("loyal") == [a]
    assert m.members("not_loyal") == [b]
    with pytest.raises(SegmentCycleError) as info:
        m.define("buyers", 'in_segment("not_loyal")')
    assert info.value.path == ("buyers", "not_loyal", "loyal", "buyers")
    with pytest.raises(SegmentCycleError):
        m.define("selfish", 'in_segment("selfish")')
    with pytest.raises(UnknownSegmentError):
        m.define("dangling", 'in_segment("nope")')
    # redefining a segment recomputes its dependents too
    m.define("buyers", "count(purchase) >= 5")
    assert m.members("loyal") == []
    assert m.members("not_loyal") == [a, b]
    assert all(d.clean for d in m.reconcile())


def test_reconcile_reports_and_fixes_drift(store: Store, clock: ManualClock) -> None:
    a, b = _subs(store, 2)
    m = Membership(store)
    m.define("everyone", "trait.orders >= 0")
    store.conn.execute("DELETE FROM segment_member WHERE subscriber_id = ?", (a,))
    drift = {d.segment: d for d in m.reconcile()}["everyone"]
    assert drift.missing == (a,) and drift.extra == () and not drift.clean
    assert drift.stored_count == 2 and drift.counted == 2
    m.reconcile(fix=True)
    assert m.members("everyone") == [a, b]
    assert _transitions(store, "everyone")[-1] == (a, "enter", "reconcile")
    assert all(d.clean for d in m.reconcile())


def test_explain_says_which_nodes_held(store: Store, clock: ManualClock) -> None:
    (a,) = _subs(store, 1)
    ingest_events(store, [Event("purchase", START_MS - DAY, subscriber_id=a, value=120)])
    set_attributes(store, a, {"city": "Leeds"}, define_missing=True)
    m = Membership(store)
    m.define("vip", 'trait.spend >= 100 and (attr.city = "York" or count(purchase, last 7d) >= 1)')
    r = m.explain(a, "vip")
    assert r.result and r.stored_member
    spend, either = r.tree.children
    assert spend.result and spend.detail == "spend 120.0"
    city, count = either.children
    assert not city.result and city.detail == 'value "Leeds"'
    assert count.result and count.detail == "count 1"


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("event"), st.integers(0, 4),
                  st.sampled_from(("purchase", "link_click", "cart_add")),
                  st.integers(-40 * DAY, 0)),
        st.tuples(st.just("attr"), st.integers(0, 4), st.sampled_from(("Leeds", "York", None)),
                  st.just(0)),
        st.tuples(st.just("consent"), st.integers(0, 4), st.sampled_from(("grant", "revoke")),
                  st.just(0)),
        st.tuples(st.just("tick"), st.just(0), st.just(""),
                  st.sampled_from((HOUR, 6 * HOUR, DAY, 10 * DAY))),
        # erased, then back under the same number (the newest one erased gives its id again)
        st.tuples(st.just("erase"), st.integers(0, 4), st.just(""), st.just(0)),
    ),
    max_size=25,
)

RULES = {
    "buyers": "count(purchase, last 30d) >= 2",
    "spenders": "sum(purchase, last 14d) >= 20",
    "inactive": "not last(link_click) within_last 7d",
    "abandoners": "sequence(cart_add, then_not purchase, within 1d, min_age 1h)",
    "leeds_marketing": 'attr.city = "Leeds" and consent.marketing = granted',
    "loyal_leeds": 'in_segment("buyers") and in_segment("leeds_marketing")',
    "lapsed": 'not in_segment("buyers") and trait.last_purchase_ms more_than_ago 20d',
    "engaged": "trait.last_interaction_ms within_last 5d or trait.last_click_ms exists",
    "seen": "trait.last_seen_ms within_last 3d and trait.spend < 30",
}


def apply_op(store: Store, m: Membership, clock: ManualClock, subs: list[int],
             op: tuple[str, int, str | None, int]) -> None:
    """One step of an ``OPS`` stream: an event, an attribute, a consent change, time
    passing (with the time sweep), or an erasure after which the number comes back as a new
    subscriber (``subs`` is updated; the store needs a hash key)."""
    kind, who, what, amount = op
    sid = subs[who]
    if kind == "erase":
        erase_subscriber(store, NUMBERS[who])
        subs[who] = upsert_subscriber(store, NUMBERS[who])
    elif kind == "event":
        ingest_events(store, [Event(str(what), clock.now + amount, subscriber_id=sid, value=12)])
    elif kind == "attr":
        set_attributes(store, sid, {"city": what}, define_missing=True)
    elif kind == "consent":
        record_consent(store, NUMBERS[who], "marketing", str(what), "api", actor="t",
                       ts_ms=clock.now)
    else:
        clock.advance(amount)
        m.process_due()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_random_streams_keep_incremental_equal_to_full_recompute(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, str | None, int]]
) -> None:
    clock = ManualClock()
    store = Store(tmp_path_factory.mktemp("m") / "s.db", clock=clock, hash_key=HASH_KEY)
    try:
        subs = _subs(store, 5)
        m = Membership(store)
        m.attach()
        for name, text in RULES.items():
            m.define(name, text)
        for op in ops:
            apply_op(store, m, clock, subs, op)
            m.drain()
            m.process_due()
        drifts = [d for d in m.reconcile() if not d.clean]
        assert drifts == []
        assert store.conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        store.close()


def test_a_failed_batch_stays_dirty_and_is_retried(store: Store, clock: ManualClock) -> None:
    import sqlite3

    a, _ = _subs(store, 2)
    m = Membership(store)
    m.attach()
    m.define("buyers", "count(purchase) >= 1")
    ingest_events(store, [Event("purchase", START_MS, subscriber_id=a, value=1)])
    other = sqlite3.connect(store.path, isolation_level=None)
    store.conn.execute("PRAGMA busy_timeout=20")
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        with pytest.raises(sqlite3.OperationalError):
            m.drain()
        assert m.pending == 1 and m.members("buyers") == []
        other.execute("ROLLBACK")
        assert m.drain().entered == 1
        assert m.members("buyers") == [a] and m.pending == 0
    finally:
        other.close()


def test_only_future_stamped_events_come_back_through_the_sweep(
    store: Store, clock: ManualClock
) -> None:
    a, b = _subs(store, 2)
    m = Membership(store)
    m.attach()
    m.define("clicked", "count(link_click, last 1d) >= 1")
    # a's click arrives when it happened: evaluated at once, never again by the sweep
    ingest_events(store, [Event("link_click", clock.now, subscriber_id=a),
                          Event("link_click", clock.now + 2 * HOUR, subscriber_id=b)])
    m.drain()
    assert m.members("clicked") == [a]
    assert store.scalar("SELECT count(*) FROM event_future") == 1  # b's, stamped 2 h ahead
    clock.advance(HOUR)
    assert m.process_due().pairs == 0
    clock.advance(HOUR)
    r = m.process_due()  # b's click enters the window now
    assert (r.pairs, r.entered) == (1, 1) and m.members("clicked") == [a, b]
    assert _time_refs(store, "clicked") == [(b, "enter", str(clock.now))]
    assert store.scalar("SELECT count(*) FROM event_future") == 0  # swept past: dropped
    clock.advance(DAY - HOUR)
    assert m.process_due().exited == 1  # a's click leaves the day window (b's an hour later)
    assert m.members("clicked") == [b]
    assert all(d.clean for d in m.reconcile())



def test_future_stamped_events_are_dropped_when_no_segment_is_time_sensitive(
    store: Store, clock: ManualClock
) -> None:
    (a,) = _subs(store, 1)
    m = Membership(store)
    m.attach()
    m.define("buyers", "trait.orders >= 1")  # no time condition: never swept
    ingest_events(store, [Event("purchase", clock.now + HOUR, subscriber_id=a, value=5.0)])
    m.drain()
    assert m.members("buyers") == [a]
    assert store.scalar("SELECT count(*) FROM event_future") == 1
    m.process_due()
    assert store.scalar("SELECT count(*) FROM event_future") == 1  # not spent yet
    clock.advance(HOUR)
    m.process_due()
    assert store.scalar("SELECT count(*) FROM event_future") == 0
    # a time-sensitive segment defined afterwards counts the event by its full recompute
    m.define("recent", "count(purchase, last 1d) >= 1")
    assert m.members("recent") == [a]
    clock.advance(DAY)
    assert m.process_due().exited == 1 and m.members("recent") == []


def _queued(store: Store) -> list[tuple[int, str | None, str | None]]:
    return [(int(s), t, a) for s, t, a in store.conn.execute(
        "SELECT subscriber_id, types, attributes FROM membership_queue ORDER BY id")]


def test_changes_are_queued_in_their_transaction_only_while_a_rule_segment_exists(
    store: Store, clock: ManualClock
) -> None:
    a, b = _subs(store, 2)
    ingest_events(store, [Event("link_click", START_MS, subscriber_id=a)])
    assert _queued(store) == []  # nothing to keep current: a definition evaluates everyone
    m = Membership(store)
    m.define_manual("vip")
    set_attributes(store, a, {"city": "Leeds"}, define_missing=True)
    assert _queued(store) == []  # a list is changed by hand only
    m.define("clickers", "count(link_click) >= 1")
    ingest_events(store, [Event("link_click", START_MS, subscriber_id=b),
                          Event("purchase", START_MS, subscriber_id=b, value=3),
                          Event("reply", START_MS, subscriber_id=a)])
    set_attributes(store, b, {"city": "York"})
    queued = _queued(store)
    assert sorted((s, set((t or "").split(","))) for s, t, _ in queued[:2]) == [
        (a, {"reply"}), (b, {"link_click", "purchase"})]
    assert queued[2] == (b, None, "city")
    with pytest.raises(RuntimeError):  # a failed batch leaves the queue as it was
        m.drain(before_commit=lambda: (_ for _ in ()).throw(RuntimeError("disk full")))
    assert _queued(store) == queued
    r = m.drain()
    assert (r.segments, r.pairs, r.entered) == (1, 1, 1)  # a's reply, b's city: no trigger
    assert _queued(store) == [] and m.members("clickers") == [a, b]


def test_another_connection_s_writes_are_evaluated_by_the_next_drain(
    store: Store, clock: ManualClock, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Another process (here: a second connection with no listener) ingests and updates a
    profile; this Membership never hears of it, yet its drain evaluates both, with causes."""
    a, b = _subs(store, 2)
    m = Membership(store)
    m.attach()
    m.define("clickers", "count(link_click) >= 1")
    m.define("north", 'geo.region in ["NORTH"]')
    other = Store(store.path, clock=clock)
    try:
        ingest_events(other, [Event("link_click", START_MS, subscriber_id=a)])
        upsert_subscriber(other, NUMBERS[1], region="north")
    finally:
        other.close()
    assert m.queue_waiting()
    r = m.drain()
    assert (r.entered, r.exited) == (2, 0)
    assert m.members("clickers") == [a] and m.members("north") == [b]
    assert _transitions(store, "clickers")[-1] == (a, "enter", "event")
    assert _transitions(store, "north")[-1] == (b, "enter", "attribute")
    assert not m.queue_waiting()


def _clickers_queued_one_row_each(store: Store, n: int = 8) -> tuple[Membership, list[int]]:
    """A segment 'clickers' and one click per subscriber, each in its own batch: n queue rows."""
    ids = _subs(store, n)
    m = Membership(store)
    m.define("clickers", "count(link_click) >= 1")
    for sid in ids:
        ingest_events(store, [Event("link_click", START_MS, subscriber_id=sid)])
    return m, ids


def test_a_large_queue_is_drained_in_bounded_batches(
    store: Store, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import segmentation.membership as membership

    monkeypatch.setattr(membership, "QUEUE_CHUNK", 3)
    m, ids = _clickers_queued_one_row_each(store)
    batches = []
    while m.queue_waiting():
        batches.append(m.drain().pairs)
        assert len(batches) <= 3
    assert batches == [3, 3, 2]
    assert m.members("clickers") == sorted(ids)


def test_apply_queued_stopped_between_batches_loses_nothing(
    store: Store, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import segmentation.membership as membership

    monkeypatch.setattr(membership, "QUEUE_CHUNK", 3)
    m, ids = _clickers_queued_one_row_each(store)
    assert membership.queued_changes(store) == 8
    seen: list[int] = []

    def stop(result: membership.BatchResult) -> None:  # Ctrl-C after the first batch
        seen.append(result.pairs)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        membership.apply_queued(store, after_batch=stop)
    assert seen == [3]
    assert m.members("clickers") == sorted(ids)[:3]  # the first batch committed
    assert membership.queued_changes(store) == 5  # the rest stays queued
    r = membership.apply_queued(store, after_batch=lambda r: seen.append(r.pairs))
    assert seen == [3, 3, 2] and r.entered == 5
    assert membership.queued_changes(store) == 0
    assert m.members("clickers") == sorted(ids)
    assert all(d.clean for d in m.reconcile())


def test_a_drain_reads_definitions_under_its_write_lock(
    store: Store, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process redefines a segment while this drain waits for the write lock. Read
    # before the lock, the old rule was evaluated and stored after the new one committed.
    ids = _subs(store, 2)
    m = Membership(store)
    m.define("clickers", "count(link_click) >= 1")
    ingest_events(store, [Event("link_click", START_MS, subscriber_id=ids[0])])
    other = Store(store.path, clock=clock)
    read_in_transaction: list[bool] = []
    real_order = m._order

    def order() -> list[SegmentInfo]:
        read_in_transaction.append(store.in_transaction)
        if not store.in_transaction and len(read_in_transaction) == 1:
            Membership(other).define("clickers", "count(link_click) >= 5")  # the race
        return real_order()

    monkeypatch.setattr(m, "_order", order)
    try:
        m.drain()
        assert read_in_transaction and all(read_in_transaction)
        Membership(other).define("clickers", "count(link_click) >= 5")
    finally:
        other.close()
    m.drain()
    assert m.members("clickers") == []
    assert all(d.clean for d in m.reconcile())


def test_ctrl_c_inside_a_drain_writes_nothing(store: Store, clock: ManualClock) -> None:
    ids = _subs(store, 3)
    m = Membership(store)
    m.define("clickers", "count(link_click) >= 1")
    ingest_events(store, [Event("link_click", START_MS, subscriber_id=s) for s in ids])
    before = [store.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("membership_queue", "segment_member", "segment_transition")]

    def ctrl_c() -> None:  # after every row of the batch is written, before COMMIT
        assert store.conn.execute("SELECT count(*) FROM segment_member").fetchone()[0] == 3
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        m.drain(before_commit=ctrl_c)
    after = [store.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
             for t in ("membership_queue", "segment_member", "segment_transition")]
    assert after == before and before[0] == 3 and not store.in_transaction
    assert m.count("clickers") == 0
    r = m.drain()  # the same batch again, whole
    assert (r.entered, m.members("clickers")) == (3, sorted(ids))
    assert all(d.clean for d in m.reconcile())


def test_a_segment_replaced_by_another_connection_under_the_same_id_is_re_read(
    store: Store, clock: ManualClock
) -> None:
    """Ids are plain rowids: a segment defined after the newest one was dropped takes its id
    at version 1 again. A long-lived Membership (the daemon's) must re-read the definition
    when another process (the CLI) does that, or it keeps evaluating the dropped rule."""
    a, b = _subs(store, 2)
    m = Membership(store)
    m.define("x", "last(link_click) within_last 7d")
    cli = Membership(Store(store.path, clock=clock))
    try:
        cli.drop("x")
        cli.define("x", "trait.orders >= 1")
    finally:
        cli.store.close()
    ingest_events(store, [Event("link_click", START_MS - HOUR, subscriber_id=a),
                          Event("purchase", START_MS - HOUR, subscriber_id=b, value=5)])
    m.drain()
    assert m.members("x") == [b]
    assert [d for d in m.reconcile() if not d.clean] == []
