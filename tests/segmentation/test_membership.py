"""Live membership on a real store: definitions, incremental changes, time, reconcile, explain."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmentation.consent import record_consent
from segmentation.ingest import Event, ingest_events
from segmentation.membership import (
    Membership,
    SegmentCycleError,
    UnknownSegmentError,
)
from segmentation.store import Store
from segmentation.subscribers import set_attributes, upsert_subscriber
from tests.segmentation.conftest import START_MS, ManualClock

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
    # only the segments reading link_click (directly or through a trait it moves) are dirty:
    # trait.orders moves with purchases only
    assert set(m._dirty) == {m.get("clickers").id}
    r = m.drain()
    assert (r.entered, r.exited) == (1, 0)
    assert m.members("clickers") == [a]
    assert _transitions(store, "clickers")[-1] == (a, "enter", "event")
    set_attributes(store, b, {"city": "Leeds"}, define_missing=True)
    assert set(m._dirty) == {m.get("leeds").id}
    m.drain()
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
    assert m.next_due() == due
    clock.now = due - 1
    assert m.process_due().pairs == 0
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


def _due(store: Store, segment: str, sub: int) -> int | None:
    v = store.scalar("SELECT r.due_ms FROM segment_recheck r JOIN segment g ON g.id = "
                     "r.segment_id WHERE g.name = ? AND r.subscriber_id = ?", (segment, sub))
    return None if v is None else int(v)


def test_incremental_rechecks_move_earlier_keep_an_earlier_stored_time_and_drop_spent_ones(
    store: Store, clock: ManualClock
) -> None:
    a, b = _subs(store, 2)
    ingest_events(store, [Event("link_click", START_MS - 10 * DAY, subscriber_id=a)])
    m = Membership(store)
    m.attach()
    m.define("lapsing", "last(link_click) more_than_ago 30d or last(reply) within_last 2d")
    m.define("clicked", "last(link_click) within_last 1d")
    assert _due(store, "lapsing", a) == START_MS + 20 * DAY  # exact after a full recompute
    assert _due(store, "lapsing", b) is None
    # a reply makes a's next flip earlier: the stored time moves to it
    clock.now = START_MS + HOUR
    ingest_events(store, [Event("reply", clock.now, subscriber_id=a),
                          Event("link_click", clock.now, subscriber_id=b)])
    m.drain()
    assert m.members("lapsing") == [a] and m.members("clicked") == [b]
    assert _due(store, "lapsing", a) == START_MS + HOUR + 2 * DAY
    assert _due(store, "lapsing", b) == START_MS + HOUR + 30 * DAY
    assert _due(store, "clicked", b) == START_MS + HOUR + DAY
    # b's second click makes the exact times later: the earlier stored ones stay
    clock.now = START_MS + 2 * HOUR
    ingest_events(store, [Event("link_click", clock.now, subscriber_id=b)])
    m.drain()
    assert _due(store, "lapsing", b) == START_MS + HOUR + 30 * DAY
    assert _due(store, "clicked", b) == START_MS + HOUR + DAY
    # the early re-check changes nothing and writes the exact time
    clock.now = START_MS + HOUR + DAY
    r = m.process_due()
    assert (r.pairs, r.entered, r.exited) == (1, 0, 0)
    assert _due(store, "clicked", b) == START_MS + 2 * HOUR + DAY
    # on time: b leaves, and the spent row, with nothing left to wait for, is removed
    clock.now = START_MS + 2 * HOUR + DAY
    r = m.process_due()
    assert (r.pairs, r.entered, r.exited) == (1, 0, 1)
    assert _due(store, "clicked", b) is None
    # a's reply ages out: a leaves, its next flip is the old click's again
    clock.now = START_MS + HOUR + 2 * DAY
    assert m.process_due().exited == 1
    assert m.members("lapsing") == []
    assert _due(store, "lapsing", a) == START_MS + 20 * DAY
    clock.now = START_MS + HOUR + 30 * DAY
    m.process_due()
    assert _due(store, "lapsing", b) == START_MS + 2 * HOUR + 30 * DAY
    assert m.members("lapsing") == [a]
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


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_random_streams_keep_incremental_equal_to_full_recompute(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, str | None, int]]
) -> None:
    clock = ManualClock()
    store = Store(tmp_path_factory.mktemp("m") / "s.db", clock=clock)
    try:
        subs = _subs(store, 5)
        m = Membership(store)
        m.attach()
        for name, text in RULES.items():
            m.define(name, text)
        for kind, who, what, amount in ops:
            sid = subs[who]
            if kind == "event":
                ingest_events(store, [Event(str(what), clock.now + amount, subscriber_id=sid,
                                            value=12)])
            elif kind == "attr":
                set_attributes(store, sid, {"city": what}, define_missing=True)
            elif kind == "consent":
                record_consent(store, NUMBERS[who], "marketing", str(what), "api", actor="t",
                               ts_ms=clock.now)
            else:
                clock.advance(amount)
                m.process_due()
            m.drain()
            m.process_due()
        drifts = [d for d in m.reconcile() if not d.clean]
        assert drifts == []
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
