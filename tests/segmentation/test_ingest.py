"""Event ingest: traits and roll-ups equal a recomputation from raw events; dedupe idempotence."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmentation.ingest import (
    DAY_MS,
    INTERACTION_TYPES,
    OUTBOUND_TYPES,
    Event,
    EventError,
    ingest_event,
    ingest_events,
)
from segmentation.rules.ast import MAX_TIMESTAMP_MS
from segmentation.store import Change, Store
from segmentation.subscribers import find_subscriber
from segmentation.traits import LAST_TS_TRAIT
from tests.segmentation.conftest import START_MS, ManualClock

NUMBERS = ("+12125550101", "+12125550102", "+13125550103")
TYPES = ("link_click", "product_view", "cart_add", "purchase", "reply", "sent", "delivered",
         "failed", "opt_in", "custom.thing")


def _expected(events: list[Event]) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str, int],
                                                                         tuple[int, float]]]:
    """Traits and daily roll-ups recomputed in plain Python from the events that count."""
    seen: set[str] = set()
    kept = []
    for ev in events:
        if ev.dedupe_key is not None:
            if ev.dedupe_key in seen:
                continue
            seen.add(ev.dedupe_key)
        kept.append(ev)
    traits: dict[str, dict[str, Any]] = {}
    daily: dict[tuple[str, str, int], tuple[int, float]] = {}
    by_num: dict[str, list[Event]] = defaultdict(list)
    for ev in kept:
        assert ev.number is not None
        by_num[ev.number].append(ev)
        key = (ev.number, ev.type, ev.ts_ms // DAY_MS)
        n, total = daily.get(key, (0, 0.0))
        daily[key] = (n + 1, total + (ev.value or 0.0))
    for num, evs in by_num.items():
        purchases = [e for e in evs if e.type == "purchase"]
        t: dict[str, Any] = {
            "orders": len(purchases),
            "spend": sum(e.value or 0.0 for e in purchases),
            "first_purchase_ms": min((e.ts_ms for e in purchases), default=None),
            "last_interaction_ms": max(
                (e.ts_ms for e in evs if e.type in INTERACTION_TYPES), default=None),
            "last_seen_ms": max(
                (e.ts_ms for e in evs if e.type not in OUTBOUND_TYPES), default=None),
        }
        for type_, col in LAST_TS_TRAIT.items():
            t[col] = max((e.ts_ms for e in evs if e.type == type_), default=None)
        traits[num] = t
    return traits, daily


def _actual(store: Store) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str, int],
                                                                     tuple[int, float]]]:
    traits = {}
    for r in store.query(
        "SELECT s.phone_e164, t.* FROM trait t JOIN subscriber s "
        "ON s.id = t.subscriber_id"
    ):
        d = dict(r)
        num = d.pop("phone_e164")
        d.pop("subscriber_id")
        traits[num] = d
    daily = {
        (r["phone_e164"], r["type"], r["day"]): (r["n"], r["total"])
        for r in store.query(
            "SELECT s.phone_e164, d.type, d.day, d.n, d.total FROM event_daily d "
            "JOIN subscriber s ON s.id = d.subscriber_id"
        )
    }
    return traits, daily


def _assert_same(store: Store, events: list[Event]) -> None:
    exp_traits, exp_daily = _expected(events)
    act_traits, act_daily = _actual(store)
    assert set(act_daily) == set(exp_daily)
    for key, (n, total) in exp_daily.items():
        assert act_daily[key][0] == n
        assert act_daily[key][1] == pytest.approx(total)
    for num, exp in exp_traits.items():
        act = act_traits[num]
        for col, value in exp.items():
            assert act[col] == pytest.approx(value) if col == "spend" else act[col] == value, col


event_st = st.builds(
    Event,
    type=st.sampled_from(TYPES),
    ts_ms=st.integers(START_MS - 40 * DAY_MS, START_MS + 40 * DAY_MS),
    number=st.sampled_from(NUMBERS),
    value=st.one_of(st.none(), st.integers(0, 10_000).map(lambda c: c / 100)),
    dedupe_key=st.one_of(st.none(), st.sampled_from([f"k{i}" for i in range(12)])),
)


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(st.lists(event_st, max_size=25), min_size=1, max_size=5))
def test_traits_and_rollups_equal_recomputation(batches: list[list[Event]]) -> None:
    with tempfile.TemporaryDirectory() as d, Store(Path(d) / "p.db", clock=ManualClock()) as s:
        for batch in batches:
            ingest_events(s, batch)
        flat = [ev for b in batches for ev in b]
        _assert_same(s, flat)
        n_events = s.scalar("SELECT count(*) FROM event")
        assert n_events == len(
            [e for e in flat if e.dedupe_key is None]
        ) + len({e.dedupe_key for e in flat if e.dedupe_key is not None})


@settings(max_examples=40, deadline=None)
@given(events=st.lists(event_st.map(lambda e: Event(
    e.type, e.ts_ms, number=e.number, value=e.value,
    dedupe_key=e.dedupe_key or f"auto-{e.type}-{e.ts_ms}")), max_size=30))
def test_ingesting_the_same_events_again_changes_nothing(events: list[Event]) -> None:
    with tempfile.TemporaryDirectory() as d, Store(Path(d) / "p.db", clock=ManualClock()) as s:
        ingest_events(s, events)
        before = _actual(s), s.scalar("SELECT count(*) FROM event")
        again = ingest_events(s, events)
        assert again.inserted == 0
        assert again.duplicates == len(events)
        assert (_actual(s), s.scalar("SELECT count(*) FROM event")) == before


def test_single_event_creates_subscriber_and_announces_change(store: Store) -> None:
    changes: list[Change] = []
    store.add_listener(changes.append)
    r = ingest_event(store, Event("purchase", START_MS, number="(212) 555-0101", value=12.5,
                                  props={"sku": "A"}, source="test", dedupe_key="o-1"))
    sid = find_subscriber(store, "+12125550101")
    assert sid is not None
    assert r.inserted == 1 and r.subscriber_ids == frozenset({sid})
    assert changes[-1].subscriber_ids == frozenset({sid})
    assert changes[-1].event_types == frozenset({"purchase"})
    assert changes[-1].traits_changed
    row = store.query("SELECT props, source FROM event")[0]
    assert (row["props"], row["source"]) == ('{"sku":"A"}', "test")
    # the duplicate announces nothing
    n = len(changes)
    assert ingest_event(store, Event("purchase", START_MS, number="+12125550101", value=12.5,
                                     dedupe_key="o-1")).duplicates == 1
    assert len(changes) == n


def test_custom_event_types_do_not_touch_traits(store: Store) -> None:
    ingest_event(store, Event("webinar.joined", START_MS, number="+12125550101"))
    t = store.query("SELECT * FROM trait")[0]
    assert t["orders"] == 0 and t["last_interaction_ms"] is None
    assert t["last_seen_ms"] == START_MS  # a custom type comes from the subscriber


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (Event("Bad Type", START_MS, number="+12125550101"), "type"),
        (Event("purchase", 1.5, number="+12125550101"), "ts_ms"),  # type: ignore[arg-type]
        # beyond SQLite's INTEGER (OverflowError at insert before), past year 9999, before 1970
        (Event("purchase", 10**20, number="+12125550101"), "ts_ms"),
        (Event("purchase", MAX_TIMESTAMP_MS + 1, number="+12125550101"), "ts_ms"),
        (Event("purchase", -1, number="+12125550101"), "ts_ms"),
        (Event("purchase", START_MS, number="+12125550101", value=float("nan")), "value"),
        (Event("purchase", START_MS), "number"),
    ],
)
def test_bad_events_are_refused_and_the_batch_is_not_written(
    store: Store, event: Event, field: str
) -> None:
    good = Event("link_click", START_MS, number="+12125550102")
    with pytest.raises(EventError) as info:
        ingest_events(store, [good, event])
    assert info.value.field == field
    assert store.scalar("SELECT count(*) FROM event") == 0
    assert store.scalar("SELECT count(*) FROM subscriber") == 0


def test_unknown_subscriber_without_create_is_an_error(store: Store) -> None:
    with pytest.raises(EventError):
        ingest_event(store, Event("reply", START_MS, number="+12125550101"),
                     create_subscribers=False)


def test_traits_for_subscribers_inserted_without_a_trait_row(store: Store) -> None:
    # Rows written by other tools (bulk loaders, benchmarks) may lack the trait row.
    with store.atomic():
        store.conn.execute("INSERT INTO subscriber(id, phone_e164, created_ms) "
                           "VALUES (7, '+12125550107', 0)")
    ingest_events(store, [Event("purchase", START_MS, subscriber_id=7, value=3.0),
                          Event("link_click", START_MS + 5, subscriber_id=7)])
    t = store.query("SELECT * FROM trait WHERE subscriber_id = 7")[0]
    assert (t["orders"], t["spend"], t["first_purchase_ms"], t["last_click_ms"],
            t["last_interaction_ms"]) == (1, 3.0, START_MS, START_MS + 5, START_MS + 5)


def test_the_latest_readable_time_is_accepted(store: Store) -> None:
    ingest_event(store, Event("reply", MAX_TIMESTAMP_MS, number="+12125550101"))
    assert store.scalar("SELECT max(ts_ms) FROM event") == MAX_TIMESTAMP_MS


def test_props_must_be_json(store: Store) -> None:
    with pytest.raises(EventError) as info:
        ingest_event(store, Event("reply", START_MS, number="+12125550101",
                                  props={"x": float("nan")}))
    assert info.value.field == "props"


def test_an_unknown_subscriber_id_fails_its_batch_by_name(store: Store) -> None:
    # SQLite's foreign-key error names no row: ingest looks the given ids up to name it.
    ingest_event(store, Event("reply", START_MS, number="+12125550101"))
    known = int(store.scalar("SELECT id FROM subscriber"))
    batch = [Event("link_click", START_MS, subscriber_id=known),
             Event("link_click", START_MS, subscriber_id=known + 500),
             Event("reply", START_MS, subscriber_id=known + 90)]
    with pytest.raises(EventError) as info:
        ingest_events(store, batch)
    assert (info.value.field, info.value.value) == ("subscriber_id", known + 90)
    assert store.scalar("SELECT count(*) FROM event") == 1
    assert store.scalar("SELECT count(*) FROM membership_queue") in (0, 1)
    assert store.conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_the_unknown_id_is_named_past_500_given_ids(store: Store) -> None:
    with store.atomic():
        store.conn.executemany("INSERT INTO subscriber(id, phone_e164, created_ms) "
                               "VALUES (?, ?, 0)",
                               [(i, f"+1212555{i:04d}") for i in range(1, 1201)])
    ok = [Event("link_click", START_MS, subscriber_id=i) for i in range(1, 1201)]
    assert ingest_events(store, ok).inserted == 1200
    with pytest.raises(EventError) as info:  # the unknown id sits in the third chunk
        ingest_events(store, [*ok, Event("reply", START_MS, subscriber_id=1201)])
    assert info.value.value == 1201
    assert store.scalar("SELECT count(*) FROM event") == 1200
    assert store.conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_a_subscriber_id_must_be_an_integer(store: Store) -> None:
    # found in review: ids of mixed types made the unknown-id lookup raise a TypeError
    for bad in ("7", 7.0, True):
        with pytest.raises(EventError) as info:
            ingest_events(store, [Event("reply", START_MS, subscriber_id=1),
                                  Event("reply", START_MS, subscriber_id=bad)])  # type: ignore[arg-type]
        assert (info.value.field, info.value.value) == ("subscriber_id", bad)
    assert store.scalar("SELECT count(*) FROM event") == 0
