"""Manual segments: a list set by hand (replace / append / remove), never evaluated as a rule,
readable with ``in_segment`` by rule segments, which follow its changes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmentation.ingest import Event, ingest_events
from segmentation.membership import MANUAL_DEFINITION, Membership, SegmentError
from segmentation.store import Store
from segmentation.subscribers import upsert_subscriber
from tests.segmentation.conftest import START_MS, ManualClock

DAY = 86_400_000
NUMBERS = tuple(f"+1212555{n:04d}" for n in range(201, 213))


def _subs(store: Store, n: int) -> list[int]:
    return [upsert_subscriber(store, num) for num in NUMBERS[:n]]


def _transitions(store: Store, name: str) -> list[tuple[int, str, str, str | None]]:
    return [(int(s), d, c, r) for s, d, c, r in store.conn.execute(
        "SELECT t.subscriber_id, t.direction, t.cause, t.cause_ref FROM segment_transition t "
        "JOIN segment g ON g.id = t.segment_id WHERE g.name = ? ORDER BY t.id", (name,))]


def test_define_manual_creates_an_empty_ready_list_stored_as_a_marker(store: Store) -> None:
    m = Membership(store)
    info = m.define_manual("vip-list")
    assert (info.kind, info.status, info.member_count, info.manual) == ("manual", "ready", 0, True)
    assert info.text == "(manual list)"
    assert info.deps.events == frozenset() and not info.deps.segments
    row = store.conn.execute("SELECT definition, kind FROM segment WHERE name = 'vip-list'")
    assert row.fetchone() == (MANUAL_DEFINITION, "manual")
    # a second Membership (another process) reads it back without parsing it as a rule
    assert Membership(store).get("vip-list").manual
    # idempotent
    assert m.define_manual("vip-list").id == info.id
    assert [s.name for s in m.segments()] == ["vip-list"]


def test_replace_append_remove_write_members_count_and_manual_transitions(
    store: Store, clock: ManualClock
) -> None:
    a, b, c, d = _subs(store, 4)
    m = Membership(store)
    m.define_manual("list")
    diff = m.set_manual_members("list", [b, a, a], "replace")
    assert (diff.entered, diff.exited, diff.member_count) == (2, 0, 2)
    assert m.members("list") == [a, b]
    clock.advance(1000)
    diff = m.set_manual_members("list", [c, b], "append")
    assert (diff.entered, diff.exited, diff.member_count) == (1, 0, 3)
    diff = m.set_manual_members("list", [a, d], "remove")  # d was never a member
    assert (diff.entered, diff.exited, diff.member_count) == (0, 1, 2)
    assert m.members("list") == [b, c]
    diff = m.set_manual_members("list", [d, c], "replace")
    assert (diff.entered, diff.exited, diff.member_count) == (1, 1, 2)
    assert m.members("list") == [c, d]
    assert m.count("list") == 2
    assert _transitions(store, "list") == [
        (a, "enter", "manual", "replace"), (b, "enter", "manual", "replace"),
        (c, "enter", "manual", "append"),
        (a, "exit", "manual", "remove"),
        (d, "enter", "manual", "replace"), (b, "exit", "manual", "replace"),
    ]
    diff = m.set_manual_members("list", [], "replace")
    assert (diff.entered, diff.exited, diff.member_count) == (0, 2, 0)
    assert m.members("list") == []


def test_bad_input_writes_nothing(store: Store) -> None:
    a, b = _subs(store, 2)
    m = Membership(store)
    m.define_manual("list")
    m.set_manual_members("list", [a], "replace")
    with pytest.raises(SegmentError, match="no subscriber with id 999"):
        m.set_manual_members("list", [b, 999], "replace")
    with pytest.raises(SegmentError, match="not an integer"):
        m.set_manual_members("list", [b, "7"], "append")  # type: ignore[list-item]
    with pytest.raises(SegmentError, match="mode 'merge'"):
        m.set_manual_members("list", [b], "merge")
    assert m.members("list") == [a] and m.count("list") == 1
    assert len(_transitions(store, "list")) == 1
    m.define("rule", "trait.orders = 0")
    with pytest.raises(SegmentError, match="only manual lists"):
        m.set_manual_members("rule", [a])
    with pytest.raises(SegmentError, match="already exists as a dynamic"):
        m.define_manual("rule")
    with pytest.raises(SegmentError, match="is a manual segment"):
        m.define("list", "trait.orders = 0")
    with pytest.raises(SegmentError, match="use define_manual"):
        m.define("other", "trait.orders = 0", kind="manual")


def test_events_time_and_new_subscribers_never_touch_a_manual_list(
    store: Store, clock: ManualClock
) -> None:
    a, b = _subs(store, 2)
    m = Membership(store)
    m.attach()
    m.define_manual("list")
    m.define("clicked", "last(link_click) within_last 1d")
    m.set_manual_members("list", [a])
    upsert_subscriber(store, NUMBERS[5])  # 'profile.created' dirties every rule segment
    ingest_events(store, [Event("link_click", START_MS, subscriber_id=b)])
    assert m.drain().segments == 1  # the rule segment, never the list
    clock.advance(2 * DAY)
    m.process_due()
    assert m.members("list") == [a]
    # never swept: a list has no time conditions (the rule segment's mark moved)
    assert store.scalar("SELECT swept_ms FROM segment WHERE name = 'list'") is None
    assert store.scalar("SELECT swept_ms FROM segment WHERE name = 'clicked'") == clock.now
    assert [d.segment for d in m.reconcile() if not d.clean] == []


def test_in_segment_of_a_manual_list_follows_its_changes(store: Store, clock: ManualClock) -> None:
    a, b, c = _subs(store, 3)
    m = Membership(store)
    m.attach()
    m.define_manual("vip")
    ingest_events(store, [Event("purchase", START_MS - DAY, subscriber_id=s, value=10)
                          for s in (a, b)])
    m.drain()
    m.define("vip_buyers", 'in_segment("vip") and trait.orders >= 1')
    m.define("not_vip_buyers", 'trait.orders >= 1 and not in_segment("vip_buyers")')
    assert m.members("vip_buyers") == [] and m.members("not_vip_buyers") == [a, b]
    m.set_manual_members("vip", [a, c])
    # direct and transitive dependents re-evaluated in the same call, cause 'manual'
    assert m.members("vip_buyers") == [a]
    assert m.members("not_vip_buyers") == [b]
    assert _transitions(store, "vip_buyers")[-1] == (a, "enter", "manual", "replace")
    assert _transitions(store, "not_vip_buyers")[-1] == (a, "exit", "manual", "replace")
    m.set_manual_members("vip", [a], "remove")
    assert m.members("vip_buyers") == [] and m.members("not_vip_buyers") == [a, b]
    assert m.count_rule('in_segment("vip")') == 1  # c
    assert m.explain(c, "vip").result and m.explain(c, "vip").stored_member
    assert all(d.clean for d in m.reconcile())
    with pytest.raises(SegmentError, match="used by"):
        m.drop("vip")


def test_reconcile_fixes_a_drifted_manual_count(store: Store) -> None:
    a, b = _subs(store, 2)
    m = Membership(store)
    m.define_manual("list")
    m.set_manual_members("list", [a, b])
    store.conn.execute("UPDATE segment SET member_count = 5 WHERE name = 'list'")
    (drift,) = m.reconcile()
    assert (drift.stored_count, drift.counted, drift.clean) == (5, 2, False)
    assert drift.missing == () and drift.extra == ()
    m.reconcile(fix=True)
    assert m.count("list") == 2 and m.members("list") == [a, b]
    assert all(d.clean for d in m.reconcile())


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(("replace", "append", "remove")),
                          st.lists(st.integers(0, 7), max_size=8)), max_size=6))
def test_random_list_operations_match_a_python_set(
    store: Store, ops: list[tuple[str, list[int]]]
) -> None:
    # the store fixture is shared by every example: start each from an empty list
    subs = [upsert_subscriber(store, n) for n in NUMBERS[:8]]
    m = Membership(store)
    m.define_manual("prop")
    m.set_manual_members("prop", [], "replace")
    if "dep" not in {s.name for s in m.segments()}:
        m.define("dep", 'in_segment("prop")')
    model: set[int] = set()
    for mode, idx in ops:
        ids = {subs[i] for i in idx}
        before = set(model)
        if mode == "replace":
            model = set(ids)
        elif mode == "append":
            model |= ids
        else:
            model -= ids
        diff = m.set_manual_members("prop", [subs[i] for i in idx], mode)
        assert (diff.entered, diff.exited) == (len(model - before), len(before - model))
        assert set(m.members("prop")) == model == set(m.members("dep"))
        assert m.count("prop") == len(model) == m.count("dep")
    assert all(d.clean for d in m.reconcile())
