"""Plain-Python evaluation of a rule tree over one subscriber's data.

This is the reference semantics: the property tests prove the compiled SQL selects exactly the
subscribers this evaluator accepts. It also powers ``explain`` (which nodes are true or false,
with the values read) and :func:`next_change` (the earliest future instant a time-sensitive
condition can flip without new data; ``compile.compile_crossings`` finds every subscriber with
such an instant in an interval, and the property tests hold it to this).

Comparisons follow SQLite's rules for values without affinity, because event properties come
out of ``json_extract``: numbers sort before text, text compares by code point (BINARY).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from segmentation.rules import geo
from segmentation.rules.ast import (
    PROFILE_TRAITS,
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
    Scalar,
    Sequence,
    Trait,
    attr_type,
)


@dataclass(frozen=True)
class EventRow:
    id: int
    type: str
    ts_ms: int
    value: float | None = None
    props: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class AttrRow:
    """One ``subscriber_attr`` row as stored (see schema.py for which column a type uses)."""

    text: str | None = None
    num: float | None = None
    num2: float | None = None


@dataclass(frozen=True)
class ConsentRow:
    id: int
    program: str
    action: str
    ts_ms: int


@dataclass(frozen=True)
class SubscriberData:
    """Everything a rule can read about one subscriber (the rows, not derived values)."""

    id: int
    created_ms: int = 0
    last_seen_ms: int | None = None
    country: str | None = None
    region: str | None = None
    area_code: str | None = None
    postal_code: str | None = None
    lat: float | None = None
    lon: float | None = None
    attrs: Mapping[str, AttrRow] = field(default_factory=dict)
    events: tuple[EventRow, ...] = ()
    traits: Mapping[str, int | float | None] | None = None  # the trait row; None: no row
    consent: tuple[ConsentRow, ...] = ()
    segments: frozenset[str] = frozenset()


# -- SQLite-compatible comparison ----------------------------------------------------------------

SqlValue = int | float | str


def _norm(v: Scalar) -> SqlValue:
    return int(v) if isinstance(v, bool) else v


def sql_cmp(a: SqlValue, b: SqlValue) -> int:
    """Order two non-NULL values the way SQLite does without affinity (numbers < text)."""
    ta, tb = isinstance(a, str), isinstance(b, str)
    if ta != tb:
        return 1 if ta else -1
    if a == b:
        return 0
    return -1 if a < b else 1  # type: ignore[operator]


def _cmp_op(op: str, c: int) -> bool:
    return {
        "eq": c == 0, "ne": c != 0, "lt": c < 0, "le": c <= 0, "gt": c > 0, "ge": c >= 0,
    }[op]


def compare(op: str, left: float | int, right: float | int) -> bool:
    """Numeric comparison by operator name (count, sum, trait)."""
    return _cmp_op(op, (left > right) - (left < right))


def extract_prop(props: Mapping[str, Any] | None, prop: str) -> SqlValue | None:
    """``json_extract(props, '$.prop')``: None when absent or JSON null."""
    if props is None:
        return None
    v = props.get(prop)
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    assert isinstance(v, int | float | str)
    return v


def prop_matches(f: PropFilter, props: Mapping[str, Any] | None) -> bool:
    v = extract_prop(props, f.prop)
    if f.op == "ne":
        return not prop_matches(PropFilter(f.prop, "eq", f.value), props)
    if v is None:
        return False
    if f.op == "in":
        assert isinstance(f.value, tuple)
        return any(sql_cmp(v, _norm(x)) == 0 for x in f.value)
    assert not isinstance(f.value, tuple)
    return _cmp_op(f.op, sql_cmp(v, _norm(f.value)))


def spec_matches(spec: EventSpec, e: EventRow) -> bool:
    return e.type == spec.type and all(prop_matches(f, e.props) for f in spec.where)


def _matching(spec: EventSpec, events: Iterable[EventRow], now: int) -> list[EventRow]:
    return [e for e in events if e.ts_ms <= now and spec_matches(spec, e)]


def _in_window(ts: int, window_ms: int | None, now: int) -> bool:
    return ts <= now and (window_ms is None or ts > now - window_ms)


# -- leaves ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A node's result and the value it looked at, for explain."""

    result: bool
    detail: str


def _fmt(v: object) -> str:
    return "missing" if v is None else json.dumps(v, ensure_ascii=False)


def _attr_row_value(node: Attr, row: AttrRow) -> object:
    t = attr_type(node)
    if t in ("text", "list"):
        return row.text
    if t == "geo":
        return None if row.num is None or row.num2 is None else [row.num, row.num2]
    return row.num


def _attr(node: Attr, d: SubscriberData, now: int) -> Verdict:
    row = d.attrs.get(node.key)
    if node.op == "exists":
        return Verdict(row is not None, "present" if row is not None else "missing")
    if node.op == "missing":
        return Verdict(row is None, "present" if row is not None else "missing")
    if node.op == "ne":
        v = _attr(Attr(node.key, "eq", node.value), d, now)
        return Verdict(not v.result, v.detail)
    if row is None:
        return Verdict(False, "missing")
    shown = f"value {_fmt(_attr_row_value(node, row))}"
    return Verdict(_attr_test(node, row, now), shown)


def _list_items(text: str) -> list[SqlValue]:
    try:
        items = json.loads(text)
    except ValueError:
        return []
    if not isinstance(items, list):
        items = [items]
    out: list[SqlValue] = []
    for x in items:
        v = extract_prop({"x": x}, "x")
        if v is not None:
            out.append(v)
    return out


def _attr_test(node: Attr, row: AttrRow, now: int) -> bool:
    op, v = node.op, node.value
    t = attr_type(node)
    if t == "text":
        s = row.text
        if s is None:
            return False
        if op == "eq":
            return s == v
        if op == "in":
            assert isinstance(v, tuple)
            return s in v
        assert isinstance(v, str)
        if op == "contains":
            return v in s
        return s.startswith(v) if op == "starts" else s.endswith(v)
    if t == "list":
        if row.text is None:
            return False
        items = _list_items(row.text)
        wanted = v if isinstance(v, tuple) else (v,)
        return any(sql_cmp(i, w) == 0 for i in items for w in wanted if isinstance(w, str))
    if t == "geo":
        if row.num is None or row.num2 is None:
            return False
        assert isinstance(v, Circle)
        return geo.within_km(row.num, row.num2, v.lat, v.lon, v.km)
    n = row.num
    if n is None:
        return False
    if t == "bool":
        return n == (1 if v else 0)
    if op == "between":
        assert isinstance(v, tuple)
        lo, hi = v
        assert isinstance(lo, int | float) and isinstance(hi, int | float)
        return lo <= n <= hi
    if op in ("eq", "lt", "le", "gt", "ge"):
        assert isinstance(v, int | float)
        return compare(op, n, v)
    assert isinstance(v, int)
    if op == "before":
        return n < v
    if op == "after":
        return n > v
    if op == "within_last":
        return now - v < n <= now
    if op == "more_than_ago":
        return n <= now - v
    return now < n <= now + v  # in_next


def trait_value(name: str, d: SubscriberData) -> int | float | None:
    if name in PROFILE_TRAITS:
        return d.created_ms if name == "created_ms" else d.last_seen_ms
    if d.traits is None:
        return 0 if name in ("orders", "spend") else None
    return d.traits.get(name)


def _trait(node: Trait, d: SubscriberData, now: int) -> Verdict:
    v = trait_value(node.name, d)
    detail = f"{node.name} {_fmt(v)}"
    if node.op == "exists":
        return Verdict(v is not None, detail)
    if node.op == "missing":
        return Verdict(v is None, detail)
    if node.op == "ne":
        return Verdict(not (v is not None and v == node.value), detail)
    if v is None:
        return Verdict(False, detail)
    assert node.value is not None
    if node.op == "within_last":
        return Verdict(now - node.value < v <= now, detail)
    if node.op == "more_than_ago":
        return Verdict(v <= now - node.value, detail)
    return Verdict(compare(node.op, v, node.value), detail)


def _consent(node: Consent, d: SubscriberData) -> Verdict:
    rows = [c for c in d.consent if c.program == node.program]
    if not rows:
        return Verdict(node.state == "none", f"{node.program}: no consent record")
    latest = max(rows, key=lambda c: (c.ts_ms, c.id))
    state = "granted" if latest.action == "grant" else "revoked"
    return Verdict(state == node.state, f"{node.program}: {state} at {latest.ts_ms}")


def leaf_verdict(rule: Rule, d: SubscriberData, now: int) -> Verdict:
    """Evaluate one leaf node."""
    match rule:
        case Attr():
            return _attr(rule, d, now)
        case EventCount(spec, op, n, window):
            c = sum(1 for e in _matching(spec, d.events, now) if _in_window(e.ts_ms, window, now))
            return Verdict(compare(op, c, n), f"count {c}")
        case EventSum(spec, op, value, window):
            total = math.fsum(
                e.value or 0.0 for e in _matching(spec, d.events, now)
                if _in_window(e.ts_ms, window, now)
            )
            return Verdict(compare(op, total, value), f"sum {total:g}")
        case LastEvent(spec, op, ms):
            m = _matching(spec, d.events, now)
            if not m:
                return Verdict(False, "no such event")
            last = max(e.ts_ms for e in m)
            ok = last > now - ms if op == "within_last" else last <= now - ms
            return Verdict(ok, f"last at {last}")
        case Sequence(first, then_not, within, min_age):
            for a in _matching(first, d.events, now):
                if not now - within < a.ts_ms <= now - min_age:
                    continue
                follow = any(
                    b.ts_ms >= a.ts_ms and b.id != a.id
                    for b in _matching(then_not, d.events, now)
                )
                if not follow:
                    return Verdict(True, f"{first.type} at {a.ts_ms} not followed")
            return Verdict(False, "no open sequence")
        case Trait():
            return _trait(rule, d, now)
        case InSegment(name):
            inside = name in d.segments
            return Verdict(inside, "member" if inside else "not a member")
        case Consent():
            return _consent(rule, d)
        case Geo(fieldname, values):
            v = getattr(d, fieldname)
            return Verdict(v is not None and v in values, f"{fieldname} {_fmt(v)}")
        case Near(lat, lon, km):
            if d.lat is None or d.lon is None:
                return Verdict(False, "no location")
            return Verdict(geo.within_km(d.lat, d.lon, lat, lon, km),
                           f"at {d.lat:g},{d.lon:g}")
        case Random(salt, lo, hi):
            b = geo.bucket(d.id, salt)
            return Verdict(lo <= b < hi, f"bucket {b}")
    raise TypeError(f"not a leaf: {rule!r}")


def evaluate(rule: Rule, d: SubscriberData, now: int) -> bool:
    """Is the subscriber in the segment defined by ``rule`` at ``now``?"""
    match rule:
        case And(children):
            return all(evaluate(c, d, now) for c in children)
        case Or(children):
            return any(evaluate(c, d, now) for c in children)
        case Not(child):
            return not evaluate(child, d, now)
    return leaf_verdict(rule, d, now).result


@dataclass(frozen=True)
class Explanation:
    """One node of an explain tree: the node, whether it held, and what was read."""

    node: Rule
    result: bool
    detail: str
    children: tuple[Explanation, ...] = ()


def explain(rule: Rule, d: SubscriberData, now: int) -> Explanation:
    """Evaluate every node (no short-circuit) and keep the values read."""
    match rule:
        case And(ch) | Or(ch):
            kids = tuple(explain(c, d, now) for c in ch)
            ok = all(k.result for k in kids) if isinstance(rule, And) else any(
                k.result for k in kids)
            return Explanation(rule, ok, f"{sum(k.result for k in kids)} of {len(kids)} true",
                               kids)
        case Not(child):
            k = explain(child, d, now)
            return Explanation(rule, not k.result, "", (k,))
    v = leaf_verdict(rule, d, now)
    return Explanation(rule, v.result, v.detail)


# -- next change -----------------------------------------------------------------------------------


def _leaf_instants(rule: Rule, d: SubscriberData, now: int) -> Iterable[float]:
    """Instants after which a leaf's value may differ, from the subscriber's current data."""
    match rule:
        case EventCount(spec, _, _, window) | EventSum(spec, _, _, window):
            for e in d.events:
                if spec_matches(spec, e):
                    yield e.ts_ms
                    if window is not None:
                        yield e.ts_ms + window
        case LastEvent(spec, _, ms):
            for e in d.events:
                if spec_matches(spec, e):
                    yield e.ts_ms
                    yield e.ts_ms + ms
        case Sequence(first, then_not, within, min_age):
            for e in d.events:
                if spec_matches(first, e):
                    yield from (e.ts_ms, e.ts_ms + min_age, e.ts_ms + within)
                if spec_matches(then_not, e):
                    yield e.ts_ms
        case Attr(key, op, value) if op in ("within_last", "more_than_ago", "in_next"):
            row = d.attrs.get(key)
            if row is not None and row.num is not None:
                assert isinstance(value, int)
                yield from (row.num - value, row.num, row.num + value)
        case Trait(name, op, value) if op in ("within_last", "more_than_ago"):
            v = trait_value(name, d)
            if v is not None:
                assert value is not None
                yield from (v, v + value)
        case And(ch) | Or(ch):
            for c in ch:
                yield from _leaf_instants(c, d, now)
        case Not(child):
            yield from _leaf_instants(child, d, now)


def next_change(rule: Rule, d: SubscriberData, now: int) -> int | None:
    """Earliest instant after ``now`` at which the result may flip without new data (or None).

    Conservative: re-evaluating at that instant may find no flip; it then schedules the next.
    Fractional instants (REAL date attributes) round up, the first whole ms the flip has happened.
    """
    future = [t for t in _leaf_instants(rule, d, now) if t > now]
    return math.ceil(min(future)) if future else None
