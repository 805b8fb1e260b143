"""Shared helpers for the rule tests (no tests here): a writer that puts plain
:class:`SubscriberData` into a real segment-store file with plain SQL, and Hypothesis
strategies for data sets and rule trees that cover every node kind."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterable, Mapping

from hypothesis import strategies as st

from segmentation.rules.ast import (
    DAY_MS,
    And,
    Attr,
    Circle,
    Consent,
    EventCount,
    EventSpec,
    EventSum,
    Geo,
    InSegment,
    LastEvent,
    Near,
    Not,
    Or,
    PropFilter,
    Random,
    Rule,
    Sequence,
    Trait,
)
from segmentation.rules.evaluate import AttrRow, ConsentRow, EventRow, SubscriberData

# 2026-01-15 09:17:23.456 UTC: not on a day boundary, so window edges cut days in two.
NOW = 1_768_468_643_456
HOUR = 3_600_000

# "signup" has no trait column: the compiler reads it without the trait shortcut
EVENT_TYPES = ("purchase", "cart_add", "link_click", "signup")
ATTR_KEYS = ("city", "age", "tags", "home", "birthday")
SEGMENTS = ("vip", "lapsed")
WINDOWS = (HOUR, DAY_MS, 2 * DAY_MS, 3 * DAY_MS, 7 * DAY_MS, 10 * DAY_MS)
TEXTS = ("Leeds", "London", "Lee", "leeds", "ü", '["a", "b"]', '["c"]', "[]", "1")
POINTS = ((53.8, -1.55), (53.9, -1.6), (51.5, -0.12), (40.71, -74.0))


# -- writing data ----------------------------------------------------------------------------------

CLEAR = (
    "segment_transition", "segment_member", "segment", "event_daily",
    "event", "subscriber_attr", "attribute_def", "trait", "consent", "subscriber",
)


def write_dataset(
    conn: sqlite3.Connection,
    subs: Iterable[SubscriberData],
    *,
    with_segments: bool = True,
    daily_mark: int | None = None,
) -> None:
    """Replace every row in the segment-store tables with ``subs`` (plain SQL, one transaction).
    ``daily_mark``: roll up only the UTC days before it (segmentation.daily); None: every day."""
    subs = list(subs)
    conn.execute("BEGIN")
    for t in CLEAR:
        conn.execute(f"DELETE FROM {t}")
    keys = sorted({k for d in subs for k in d.attrs})
    conn.executemany(
        "INSERT INTO attribute_def(key, type, created_ms) VALUES (?, 'text', 0)",
        [(k,) for k in keys],
    )
    for d in subs:
        conn.execute(
            "INSERT INTO subscriber(id, phone_e164, country, region, area_code, postal_code, lat,"
            " lon, created_ms) VALUES (?,?,?,?,?,?,?,?,?)",
            (d.id, f"+1555{d.id:07d}", d.country, d.region, d.area_code, d.postal_code, d.lat,
             d.lon, d.created_ms),
        )
        conn.executemany(
            "INSERT INTO subscriber_attr(subscriber_id, key, value_text, value_num, value_num2,"
            " updated_ms) VALUES (?,?,?,?,?,0)",
            [(d.id, k, r.text, r.num, r.num2) for k, r in d.attrs.items()],
        )
        conn.executemany(
            "INSERT INTO event(id, subscriber_id, type, ts_ms, value, props) VALUES (?,?,?,?,?,?)",
            [(e.id, d.id, e.type, e.ts_ms, e.value,
              None if e.props is None else json.dumps(e.props)) for e in d.events],
        )
        if d.traits is not None or d.last_seen_ms is not None:
            # last_seen_ms lives in trait (schema 9); a row with only it reads as no traits
            row = {**(d.traits or {}), "last_seen_ms": d.last_seen_ms}
            cols = sorted(row)
            conn.execute(
                f"INSERT INTO trait(subscriber_id, {', '.join(cols)}) VALUES "
                f"(?{', ?' * len(cols)})",
                (d.id, *(row[c] for c in cols)),
            )
        conn.executemany(
            "INSERT INTO consent(id, subscriber_id, phone_e164, program, action, ts_ms, method,"
            " actor) VALUES (?,?,?,?,?,?,'api','test')",
            [(c.id, d.id, f"+1555{d.id:07d}", c.program, c.action, c.ts_ms) for c in d.consent],
        )
    # The whole-day roll-up, exactly as the store maintains it (NULL values count as 0).
    conn.execute(
        "INSERT INTO event_daily(subscriber_id, type, day, n, total) SELECT subscriber_id, type,"
        " ts_ms / 86400000, COUNT(*), TOTAL(value) FROM event WHERE ts_ms < ? GROUP BY 1, 2, 3",
        (2**62 if daily_mark is None else daily_mark * DAY_MS,),
    )
    if with_segments:
        for i, name in enumerate(SEGMENTS, start=1):
            conn.execute(
                "INSERT INTO segment(id, name, definition, kind, status, created_ms) VALUES"
                " (?, ?, '{}', 'manual', 'ready', 0)", (i, name),
            )
            conn.executemany(
                "INSERT INTO segment_member(segment_id, subscriber_id, entered_ms, version)"
                " VALUES (?, ?, 0, 1)",
                [(i, d.id) for d in subs if name in d.segments],
            )
    conn.execute("COMMIT")


def ids(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> set[int]:
    return {int(r[0]) for r in conn.execute(sql, params)}


# -- traits ----------------------------------------------------------------------------------------

_LAST = {"link_click": "last_click_ms", "product_view": "last_view_ms",
         "cart_add": "last_cart_ms", "purchase": "last_purchase_ms", "reply": "last_reply_ms",
         "sent": "last_sent_ms", "delivered": "last_delivered_ms"}
_INTERACTIONS = ("link_click", "product_view", "cart_add", "purchase", "reply")


def derive_traits(events: Iterable[EventRow]) -> dict[str, int | float | None] | None:
    """The trait row ingest keeps for these events (``segmentation/ingest.py``: traits equal a
    recomputation from the raw events; None: no row). The compiler relies on that invariant
    (trait columns as exact prefilters), so test data honours it too."""
    events = [e for e in events if e.type in _LAST or e.type in _INTERACTIONS]
    if not events:
        return None
    buys = [e for e in events if e.type == "purchase"]
    out: dict[str, int | float | None] = {
        "orders": len(buys),
        "spend": sum(e.value or 0.0 for e in buys),
        "first_purchase_ms": min((e.ts_ms for e in buys), default=None),
        "last_interaction_ms": max((e.ts_ms for e in events if e.type in _INTERACTIONS),
                                   default=None),
    }
    for t, col in _LAST.items():
        out[col] = max((e.ts_ms for e in events if e.type == t), default=None)
    return out


def last_seen(events: Iterable[EventRow]) -> int | None:
    """``trait.last_seen_ms`` as ingest keeps it: the latest event from the subscriber
    (every type here is inbound). Time sweeps rely on it, as the compiler relies on traits."""
    return max((e.ts_ms for e in events), default=None)


# -- data strategies -------------------------------------------------------------------------------

def _offsets() -> st.SearchStrategy[int]:
    day_start = NOW - NOW % DAY_MS
    return st.one_of(
        st.integers(-12 * DAY_MS, DAY_MS // 2).map(lambda o: NOW + o),
        st.tuples(st.sampled_from(WINDOWS), st.integers(-2, 2)).map(lambda t: NOW - t[0] + t[1]),
        st.tuples(st.integers(-12, 0), st.integers(-1, 1)).map(
            lambda t: day_start + t[0] * DAY_MS + t[1]),
        st.sampled_from((NOW, NOW - HOUR, NOW - 4 * HOUR)),
    )


timestamps = _offsets()
prop_values = st.one_of(
    st.integers(-3, 3), st.sampled_from(("A", "B", "1", "")), st.booleans(),
    st.sampled_from((0.5, 2.0)),
)
props = st.one_of(st.none(), st.dictionaries(st.sampled_from(("sku", "qty")), prop_values,
                                             max_size=2))
values = st.one_of(st.none(), st.integers(-20, 200).map(lambda v: v / 2))


@st.composite
def attr_rows(draw: st.DrawFn) -> AttrRow:
    text = draw(st.one_of(st.none(), st.sampled_from(TEXTS)))
    num = draw(st.one_of(
        st.none(), st.integers(-5, 60), st.sampled_from((0.5, 1.0, 0.0)),
        timestamps, st.sampled_from([p[0] for p in POINTS]),
    ))
    num2 = draw(st.one_of(st.none(), st.sampled_from([p[1] for p in POINTS])))
    return AttrRow(text, None if num is None else float(num), num2)


@st.composite
def subscriber_data(draw: st.DrawFn, sid: int) -> SubscriberData:
    events = [
        EventRow(0, draw(st.sampled_from(EVENT_TYPES)), draw(timestamps), draw(values),
                 draw(props))
        for _ in range(draw(st.integers(0, 8)))
    ]
    traits = derive_traits(events)
    consent = tuple(
        ConsentRow(sid * 100 + i, draw(st.sampled_from(("marketing", "transactional"))),
                   draw(st.sampled_from(("grant", "revoke"))),
                   draw(st.sampled_from((NOW - DAY_MS, NOW - HOUR, NOW - 2 * HOUR))))
        for i in range(draw(st.integers(0, 3)))
    )
    point = draw(st.one_of(st.none(), st.sampled_from(POINTS)))
    return SubscriberData(
        id=sid,
        created_ms=draw(timestamps),
        last_seen_ms=last_seen(events),
        country=draw(st.one_of(st.none(), st.sampled_from(("GB", "US")))),
        region=draw(st.one_of(st.none(), st.sampled_from(("ENG", "NY")))),
        area_code=draw(st.one_of(st.none(), st.sampled_from(("113", "212")))),
        postal_code=draw(st.one_of(st.none(), st.sampled_from(("LS1", "10001")))),
        lat=None if point is None else point[0],
        lon=None if point is None else point[1],
        attrs=draw(st.dictionaries(st.sampled_from(ATTR_KEYS), attr_rows(), max_size=3)),
        events=tuple(events),
        traits=traits,
        consent=consent,
        segments=frozenset(draw(st.sets(st.sampled_from(SEGMENTS)))),
    )


@st.composite
def datasets(draw: st.DrawFn, max_subscribers: int = 8) -> list[SubscriberData]:
    n = draw(st.integers(1, max_subscribers))
    sids = sorted(draw(st.sets(st.integers(1, 3_000_000_000), min_size=n, max_size=n)))
    subs = [draw(subscriber_data(sid)) for sid in sids]
    out, next_id = [], 0
    for d in subs:  # event ids are unique across the data set
        events = []
        for e in d.events:
            next_id += 1
            events.append(dataclasses.replace(e, id=next_id))
        out.append(dataclasses.replace(d, events=tuple(events)))
    return out


# -- rule strategies -------------------------------------------------------------------------------

durations = st.sampled_from((*WINDOWS, 30 * 60000, 4 * HOUR, 5 * DAY_MS))
scalar_values = st.one_of(st.integers(-3, 3), st.sampled_from(("A", "B", "1")), st.booleans())


def prop_filters() -> st.SearchStrategy[PropFilter]:
    prop = st.sampled_from(("sku", "qty", "other"))
    single = st.builds(PropFilter, prop, st.sampled_from(("eq", "ne", "lt", "le", "gt", "ge")),
                       scalar_values)
    multi = st.builds(PropFilter, prop, st.just("in"),
                      st.lists(scalar_values, min_size=1, max_size=3).map(tuple))
    return st.one_of(single, multi)


specs = st.builds(EventSpec, st.sampled_from(EVENT_TYPES),
                  st.lists(prop_filters(), max_size=2).map(tuple))
windows = st.one_of(st.none(), st.sampled_from(WINDOWS))
cmp_ops = st.sampled_from(("eq", "ne", "lt", "le", "gt", "ge"))
texts = st.sampled_from(("Leeds", "Lee", "eds", "ü", "a"))
circles = st.builds(
    Circle, st.sampled_from([p[0] for p in POINTS]), st.sampled_from([p[1] for p in POINTS]),
    st.sampled_from((1.0, 15.0, 300.0, 6000.0)),
)


def attr_nodes() -> st.SearchStrategy[Attr]:
    key = st.sampled_from(ATTR_KEYS)
    return st.one_of(
        st.builds(Attr, key, st.sampled_from(("exists", "missing")), st.none()),
        st.builds(Attr, key, st.sampled_from(("eq", "ne")),
                  st.one_of(texts, st.integers(-5, 60), st.booleans(), st.just(0.5))),
        st.builds(Attr, key, st.just("in"), st.lists(texts, min_size=1, max_size=3).map(tuple)),
        st.builds(Attr, key, st.sampled_from(("contains", "starts", "ends")), texts),
        st.builds(Attr, key, st.sampled_from(("lt", "le", "gt", "ge")), st.integers(-5, 60)),
        st.builds(Attr, key, st.just("between"),
                  st.tuples(st.integers(-5, 30), st.integers(0, 30)).map(
                      lambda t: (min(t), max(t)))),
        st.builds(Attr, key, st.sampled_from(("before", "after")),
                  timestamps.filter(lambda t: t >= 0)),
        st.builds(Attr, key, st.sampled_from(("within_last", "more_than_ago", "in_next")),
                  durations),
        st.builds(Attr, key, st.just("includes"), st.sampled_from(("a", "b", "c", "1"))),
        st.builds(Attr, key, st.just("includes_any"),
                  st.lists(st.sampled_from(("a", "b", "c")), min_size=1, max_size=2).map(tuple)),
        st.builds(Attr, key, st.just("within_km"), circles),
    )


def trait_nodes() -> st.SearchStrategy[Trait]:
    number = st.builds(Trait, st.sampled_from(("orders", "spend")), cmp_ops,
                       st.one_of(st.integers(0, 6), st.just(10.5)))
    time = st.sampled_from(("last_purchase_ms", "last_interaction_ms", "created_ms",
                            "last_seen_ms", "last_click_ms"))
    return st.one_of(
        number,
        st.builds(Trait, st.sampled_from(("orders", "last_purchase_ms", "last_seen_ms")),
                  st.sampled_from(("exists", "missing")), st.none()),
        st.builds(Trait, time, st.sampled_from(("within_last", "more_than_ago")), durations),
        st.builds(Trait, time, cmp_ops, timestamps),
    )


@st.composite
def sequences(draw: st.DrawFn) -> Sequence:
    within = draw(st.sampled_from((4 * HOUR, DAY_MS, 3 * DAY_MS)))
    min_age = draw(st.sampled_from((0, HOUR, 30 * 60_000)))
    return Sequence(draw(specs), draw(specs), within, min_age)


def leaves() -> st.SearchStrategy[Rule]:
    # sampled_from(...).flatmap picks each node kind with equal odds (one_of favours the first)
    return st.sampled_from(_leaf_strategies()).flatmap(lambda s: s)


def _leaf_strategies() -> list[st.SearchStrategy[Rule]]:
    return [
        attr_nodes(),
        st.builds(EventCount, specs, cmp_ops, st.integers(0, 3), windows),
        st.builds(EventSum, specs, cmp_ops, st.sampled_from((-1, 0, 0.5, 3, 10.5, 50)), windows),
        st.builds(LastEvent, specs, st.sampled_from(("within_last", "more_than_ago")), durations),
        sequences(),
        trait_nodes(),
        st.builds(InSegment, st.sampled_from(SEGMENTS)),
        st.builds(Consent, st.sampled_from(("marketing", "transactional")),
                  st.sampled_from(("granted", "revoked", "none"))),
        st.builds(Geo, st.sampled_from(("country", "region", "area_code", "postal_code")),
                  st.lists(st.sampled_from(("GB", "US", "ENG", "113", "LS1")), min_size=1,
                           max_size=2).map(tuple)),
        st.builds(Near, st.sampled_from([p[0] for p in POINTS]),
                  st.sampled_from([p[1] for p in POINTS]),
                  st.sampled_from((1.0, 15.0, 300.0, 6000.0))),
        st.builds(Random, st.sampled_from(("ab", "holdout")), st.integers(0, 49),
                  st.integers(50, 100)),
    ]


def rules(max_leaves: int = 6) -> st.SearchStrategy[Rule]:
    return st.recursive(
        leaves(),
        lambda inner: st.one_of(
            st.lists(inner, min_size=2, max_size=3).map(lambda c: And(tuple(c))),
            st.lists(inner, min_size=2, max_size=3).map(lambda c: Or(tuple(c))),
            inner.map(Not),
        ),
        max_leaves=max_leaves,
    )


def by_id(subs: Iterable[SubscriberData]) -> Mapping[int, SubscriberData]:
    return {d.id: d for d in subs}


# -- deterministic enumeration (every operator of every node kind over a rich data set) -----------

def rich_dataset(seed: int = 7, n: int = 40) -> list[SubscriberData]:
    """A seeded data set dense enough that every leaf below is true for some and false for
    others: events around every window edge and day boundary, missing props, odd attr rows."""
    import random

    rng = random.Random(seed)
    day_start = NOW - NOW % DAY_MS
    instants = sorted({
        *(NOW - w + d for w in (*WINDOWS, 4 * HOUR, 5 * DAY_MS) for d in (-1, 0, 1)),
        *(day_start - k * DAY_MS + d for k in range(0, 12) for d in (-1, 0, 1)),
        NOW, NOW + 1, NOW + HOUR, NOW - 30 * 60_000, NOW - 90 * 60_000,
    })
    prop_pool: list[dict[str, object] | None] = [
        None, {}, {"sku": "A"}, {"sku": "B", "qty": 2}, {"qty": 1}, {"sku": 1}, {"sku": "1"},
        {"qty": True}, {"qty": 0.5}, {"sku": ""}, {"sku": None},
    ]
    subs = []
    eid = 0
    for sid in range(1, n + 1):
        events = []
        for _ in range(rng.randint(0, 12)):
            eid += 1
            events.append(EventRow(eid, rng.choice(EVENT_TYPES), rng.choice(instants),
                                   rng.choice((None, 0.0, 1.5, 10.0, -2.0, 100.0)),
                                   rng.choice(prop_pool)))
        attrs = {}
        for key in rng.sample(ATTR_KEYS, rng.randint(0, len(ATTR_KEYS))):
            point = rng.choice(POINTS)
            attrs[key] = rng.choice((
                AttrRow(text=rng.choice(TEXTS)),
                AttrRow(num=float(rng.randint(-5, 60))),
                AttrRow(num=float(rng.choice(instants))),
                AttrRow(num=float(rng.choice(instants) + 5 * DAY_MS)),
                AttrRow(num=rng.choice((0.0, 1.0, 0.5))),
                AttrRow(num=point[0], num2=point[1]),
                AttrRow(text=rng.choice(TEXTS), num=float(rng.randint(0, 3))),
            ))
        point = rng.choice((None, *POINTS))
        subs.append(SubscriberData(
            id=sid if sid % 5 else sid + 2_500_000_000,
            created_ms=rng.choice(instants),
            last_seen_ms=last_seen(events),
            country=rng.choice((None, "GB", "US")),
            region=rng.choice((None, "ENG", "NY")),
            area_code=rng.choice((None, "113", "212")),
            postal_code=rng.choice((None, "LS1", "10001")),
            lat=None if point is None else point[0],
            lon=None if point is None else point[1],
            attrs=attrs,
            events=tuple(events),
            traits=derive_traits(events),
            consent=tuple(
                ConsentRow(sid * 100 + i, rng.choice(("marketing", "transactional")),
                           rng.choice(("grant", "revoke")),
                           rng.choice((NOW - DAY_MS, NOW - HOUR, NOW - 2 * HOUR)))
                for i in range(rng.randint(0, 3))
            ),
            segments=frozenset(s for s in SEGMENTS if rng.random() < 0.4),
        ))
    return subs


def all_leaves() -> list[Rule]:
    """Every operator of every node kind, with values that split the rich data set."""
    out: list[Rule] = []
    filters = [
        (PropFilter(p, op, v),)
        for p, v in (("sku", "A"), ("sku", 1), ("qty", "1"), ("qty", True), ("other", 1))
        for op in ("eq", "ne", "lt", "le", "gt", "ge")
    ] + [(PropFilter("sku", "in", ("A", 1)),), (PropFilter("sku", "eq", "A"),
                                                   PropFilter("qty", "ge", 2))]
    specs_ = [(EventSpec(t), (*WINDOWS, None, 5 * DAY_MS))
              for t in ("purchase", "cart_add", "signup")]
    specs_ += [(EventSpec("purchase", f), (DAY_MS, 3 * DAY_MS)) for f in filters]
    for spec, windows_ in specs_:
        for w in windows_:
            for op in ("eq", "ne", "lt", "le", "gt", "ge"):
                out.append(EventCount(spec, op, 0 if op in ("eq", "gt") else 2, w))
                out.append(EventSum(spec, op, 10.5 if op in ("ge", "lt") else 0, w))
        for ms in (HOUR, 3 * DAY_MS):
            out.append(LastEvent(spec, "within_last", ms))
            out.append(LastEvent(spec, "more_than_ago", ms))
    for f1 in ((), (PropFilter("sku", "eq", "A"),)):
        for f2 in ((), (PropFilter("qty", "ne", 2),)):
            for within, min_age in ((4 * HOUR, HOUR), (DAY_MS, 0), (3 * DAY_MS, 30 * 60_000)):
                out.append(Sequence(EventSpec("cart_add", f1), EventSpec("purchase", f2),
                                    within, min_age))
                out.append(Sequence(EventSpec("purchase", f1), EventSpec("purchase", f2),
                                    within, min_age))
    for key in ATTR_KEYS:
        out += [Attr(key, "exists"), Attr(key, "missing")]
        for v in ("Leeds", "Lee", 1, 0.5, True, False, 12):
            out += [Attr(key, "eq", v), Attr(key, "ne", v)]
        out += [Attr(key, "in", ("Leeds", "London")), Attr(key, "contains", "ee"),
                Attr(key, "starts", "Le"), Attr(key, "ends", "eds"), Attr(key, "ends", "ü")]
        for op in ("lt", "le", "gt", "ge"):
            out.append(Attr(key, op, 12))
        out.append(Attr(key, "between", (0, 20)))
        for op in ("before", "after"):
            out.append(Attr(key, op, NOW - DAY_MS))
        for op in ("within_last", "more_than_ago", "in_next"):
            for ms in (HOUR, 7 * DAY_MS):
                out.append(Attr(key, op, ms))
        out += [Attr(key, "includes", "a"), Attr(key, "includes", "1"),
                Attr(key, "includes_any", ("b", "c"))]
        for lat, lon in POINTS[:1]:
            for km in (15.0, 300.0):
                out.append(Attr(key, "within_km", Circle(lat, lon, km)))
    for name in ("orders", "spend"):
        for op in ("eq", "ne", "lt", "le", "gt", "ge"):
            out.append(Trait(name, op, 2 if name == "orders" else 50.5))
    for name in ("last_purchase_ms", "last_interaction_ms", "created_ms", "last_seen_ms",
                 "last_click_ms", "orders"):
        out += [Trait(name, "exists"), Trait(name, "missing")]
    for name in ("last_purchase_ms", "last_interaction_ms", "created_ms", "last_seen_ms"):
        for ms in (HOUR, DAY_MS, 7 * DAY_MS):
            out += [Trait(name, "within_last", ms), Trait(name, "more_than_ago", ms)]
        for op in ("eq", "ne", "lt", "le", "gt", "ge"):
            out.append(Trait(name, op, NOW - DAY_MS))
    out += [InSegment(s) for s in SEGMENTS]
    out += [Consent(p, s) for p in ("marketing", "transactional")
            for s in ("granted", "revoked", "none")]
    out += [Geo(f, v) for f, v in (("country", ("GB",)), ("region", ("ENG", "NY")),
                                   ("area_code", ("113",)), ("postal_code", ("LS1", "x")))]
    out += [Near(lat, lon, km) for lat, lon in POINTS for km in (1.0, 15.0, 300.0, 6000.0)]
    out += [Random(s, lo, hi) for s in ("ab", "holdout") for lo, hi in ((0, 10), (10, 50),
                                                                         (50, 100))]
    return out
