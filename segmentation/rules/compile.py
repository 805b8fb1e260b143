"""Rule tree -> parameterised SQL over the segment-store schema.

Pure functions returning ``(sql, params)``. No value from a rule is ever put into the SQL text:
attribute keys, event types, property paths, segment names and constants are all bound
parameters; the only identifiers in the text are our own columns chosen from fixed tables.

Two modes (``../shared/reference/segmentation-compliance.md`` §5.4):

- **full** — every subscriber. Event and attribute conditions become non-correlated
  ``s.id IN (SELECT ... GROUP BY ... HAVING ...)`` sets that SQLite materialises once, reading
  the ``(type, ts_ms)`` and ``(key, value)`` indexes instead of probing per subscriber;
  except where a cheaper exact form exists: event types with a trait column are prefiltered
  by the trait row (:meth:`_Compiler._aggregate_by_trait`), a ``last()`` window pair is one
  pass (:meth:`_Compiler.last_window`), circles test a bounding box first (:func:`_box`).
- **incremental** — only the ids in a temp table (``s.id IN (SELECT id FROM dirty)``, which
  SQLite answers by rowid look-ups driven by the dirty list; see :func:`_from`). Conditions
  are correlated sub-queries on ``(subscriber_id, type, ts_ms)``, cheap for a few subscribers.

In incremental mode, windows of two days or more without property filters read
``event_daily`` for the whole UTC days inside the window and raw ``event`` rows for the two
partial edge days, so results are exact at the window edge (§5.4.2); full mode reads the
``(type, ts_ms)`` index instead (measured faster, see ``_Compiler.aggregate``). A count
compared with a small number (``count(...) >= 3``; at most :data:`CAPPED_MAX`) is read by a
per-subscriber look-up that stops after ``n + 1`` events, in both modes
(``_Compiler._capped_count``). Every leaf yields 0 or 1, never NULL, so ``NOT`` is plain.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final

from segmentation.rules import geo
from segmentation.rules.ast import (
    DAY_MS,
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
    Sequence,
    Trait,
    attr_type,
    walk,
)
from segmentation.rules.evaluate import compare
from segmentation.traits import INTERACTION_TYPES, LAST_TS_TRAIT

DAILY_MIN_MS: Final = 2 * DAY_MS
"""Windows at least this long read the whole-day roll-up (shorter ones read raw events)."""

SQL_OPS: Final = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}

_TRAIT_SQL: Final = {
    "orders": "COALESCE(t.orders, 0)",
    "spend": "COALESCE(t.spend, 0)",
    "created_ms": "s.created_ms",
}
_TRAIT_COLUMNS: Final = frozenset({
    "first_purchase_ms", "last_purchase_ms", "last_click_ms", "last_view_ms", "last_cart_ms",
    "last_reply_ms", "last_sent_ms", "last_delivered_ms", "last_interaction_ms",
    "last_seen_ms",  # a profile trait in rules (deps key profile.last_seen_ms), stored in trait
})
_GEO_COLUMNS: Final = {
    "country": "s.country", "region": "s.region", "area_code": "s.area_code",
    "postal_code": "s.postal_code",
}
_TABLE_RE: Final = re.compile(r"(temp\.)?[a-z_][a-z0-9_]*\Z")

# event type -> trait column holding the latest time of that type. The ingest invariant
# (segmentation/ingest.py: traits equal a recomputation from the raw events; the table is
# segmentation/traits.py, shared with ingest) makes these exact necessary conditions in full mode: a
# subscriber with an event of the type in (now - D, now] has ``last_<type>_ms > now - D``, and
# a count of purchases never exceeds ``orders``.
EVENT_TRAIT: Final = LAST_TS_TRAIT


@dataclass(frozen=True)
class Query:
    sql: str
    params: tuple[Any, ...]


Frag = tuple[str, list[Any]]


def _trait_expr(name: str, incremental: bool) -> str:
    """The trait as an SQL expression: the joined row ``t`` (full mode) or a correlated
    primary-key look-up (incremental mode, which has no join)."""
    if name == "created_ms":
        return _TRAIT_SQL[name]
    if name not in _TRAIT_COLUMNS and name not in ("orders", "spend"):
        raise ValueError(f"unknown trait {name!r}")  # validated in ast; defensive
    if not incremental:
        return _TRAIT_SQL.get(name, f"t.{name}")
    col = f"(SELECT t.{name} FROM trait t WHERE t.subscriber_id = s.id)"
    return f"COALESCE({col}, 0)" if name in ("orders", "spend") else col


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def _prop(f: PropFilter, alias: str) -> Frag:
    path = f"$.{f.prop}"
    ext = f"json_extract({alias}.props, ?)"
    if f.op == "in":
        assert isinstance(f.value, tuple)
        vals = [int(v) if isinstance(v, bool) else v for v in f.value]
        return f"{ext} IN ({_placeholders(len(vals))})", [path, *vals]
    assert not isinstance(f.value, tuple)
    v = int(f.value) if isinstance(f.value, bool) else f.value
    if f.op == "ne":
        return f"NOT COALESCE({ext} = ?, 0)", [path, v]
    return f"{ext} {SQL_OPS[f.op]} ?", [path, v]


def _spec(spec: EventSpec, alias: str) -> Frag:
    parts = [f"{alias}.type = ?"]
    params: list[Any] = [spec.type]
    for f in spec.where:
        s, p = _prop(f, alias)
        parts.append(s)
        params.extend(p)
    return " AND ".join(parts), params


def _window(alias: str, window_ms: int | None, now: int) -> Frag:
    if window_ms is None:
        return f"{alias}.ts_ms <= ?", [now]
    return f"{alias}.ts_ms > ? AND {alias}.ts_ms <= ?", [now - window_ms, now]


def _uses_daily(spec: EventSpec, window_ms: int | None) -> bool:
    return window_ms is not None and window_ms >= DAILY_MIN_MS and not spec.where


@dataclass(frozen=True)
class _DailySplit:
    """A window ``(now - D, now]`` cut into whole UTC days read from the roll-up and raw
    events for the rest: the partial start day, and from the roll-up mark (or today, the
    partial end day) up to now."""

    first_day: int  # first whole day read from event_daily (inclusive)
    last_day: int  # last one (inclusive); below first_day when none is
    head: tuple[int, int]  # raw ts range (exclusive, exclusive): start edge day
    tail: tuple[int, int]  # raw ts range (inclusive, inclusive): days not rolled up, to now

    @classmethod
    def of(cls, window_ms: int, now: int, mark: int | None = None) -> _DailySplit:
        """``mark``: the first day not in event_daily (segmentation.daily); None: all are."""
        start = now - window_ms
        sd, nd = start // DAY_MS, now // DAY_MS
        raw_from = nd if mark is None else max(sd + 1, min(mark, nd))
        return cls(sd + 1, raw_from - 1, (start, (sd + 1) * DAY_MS), (raw_from * DAY_MS, now))


class _Compiler:
    def __init__(self, now: int, incremental: bool, daily_mark: int | None = None) -> None:
        self.now = now
        self.incremental = incremental
        self.daily_mark = daily_mark

    # -- combinators -----------------------------------------------------------------------

    def cond(self, rule: Rule) -> Frag:
        match rule:
            case And(ch):
                return self.conjunction(ch)
            case Or(ch):
                parts = [self.cond(c) for c in ch]
                return ("(" + " OR ".join(s for s, _ in parts) + ")",
                        [x for _, p in parts for x in p])
            case Not(child):
                s, p = self.cond(child)
                return f"NOT {s}", p
            case Attr():
                return self.attr(rule)
            case EventCount(spec, op, n, window):
                return self.aggregate(spec, window, op, n, "count")
            case EventSum(spec, op, value, window):
                return self.aggregate(spec, window, op, value, "sum")
            case LastEvent():
                return self.last_event(rule)
            case Sequence():
                return self.sequence(rule)
            case Trait():
                return self.trait(rule)
            case InSegment(name):
                seg = "(SELECT g.id FROM segment g WHERE g.name = ?)"
                if self.incremental:
                    return (f"EXISTS (SELECT 1 FROM segment_member m WHERE m.subscriber_id = s.id"
                            f" AND m.segment_id = {seg})", [name])
                return f"s.id IN (SELECT m.subscriber_id FROM segment_member m WHERE " \
                       f"m.segment_id = {seg})", [name]
            case Consent(program, state):
                if state == "none":
                    return ("NOT EXISTS (SELECT 1 FROM consent c WHERE c.subscriber_id = s.id AND "
                            "c.program = ?)", [program])
                return ("COALESCE((SELECT c.action FROM consent c WHERE c.subscriber_id = s.id "
                        "AND c.program = ? ORDER BY c.ts_ms DESC, c.id DESC LIMIT 1) = ?, 0)",
                        [program, "grant" if state == "granted" else "revoke"])
            case Geo(field, values):
                col = _GEO_COLUMNS[field]
                return f"COALESCE({col} IN ({_placeholders(len(values))}), 0)", list(values)
            case Near(lat, lon, km):
                box, bp = _box("s.lat", "s.lon", lat, lon, km)
                s, p = _chord2("s.lat", "s.lon", lat, lon)
                if not box:
                    return f"COALESCE({s} <= ?, 0)", [*p, geo.chord2_limit(km)]
                return (f"(CASE WHEN {box} THEN COALESCE({s} <= ?, 0) ELSE 0 END)",
                        [*bp, *p, geo.chord2_limit(km)])
            case Random(salt, lo, hi):
                a, b, c, e = geo.bucket_coefficients(salt)
                pr = geo.HASH_PRIME
                return ("((((s.id % ?) * ? + ?) % ?) * ? + ?) % ? % 100 BETWEEN ? AND ?",
                        [pr, a, b, pr, c, e, pr, lo, hi - 1])
        raise TypeError(f"not a rule node: {rule!r}")  # pragma: no cover

    # -- attributes ------------------------------------------------------------------------

    def _attr_rows(self, key: str, cond: Frag) -> Frag:
        c, p = cond
        if self.incremental:
            return (f"EXISTS (SELECT 1 FROM subscriber_attr a WHERE a.subscriber_id = s.id "
                    f"AND a.key = ? AND {c})", [key, *p])
        return (f"s.id IN (SELECT a.subscriber_id FROM subscriber_attr a WHERE a.key = ? "
                f"AND {c})", [key, *p])

    def attr(self, node: Attr) -> Frag:
        if node.op == "exists":
            return self._attr_rows(node.key, ("1", []))
        if node.op == "missing":
            s, p = self._attr_rows(node.key, ("1", []))
            return f"NOT {s}", p
        if node.op == "ne":
            s, p = self.attr(Attr(node.key, "eq", node.value))
            return f"NOT {s}", p
        return self._attr_rows(node.key, self._attr_cond(node))

    def _attr_cond(self, node: Attr) -> Frag:
        op, v, now = node.op, node.value, self.now
        t = attr_type(node)
        if t == "text":
            if op == "eq":
                return "a.value_text = ?", [v]
            if op == "in":
                assert isinstance(v, tuple)
                return f"a.value_text IN ({_placeholders(len(v))})", list(v)
            assert isinstance(v, str)
            if op == "contains":
                return "instr(a.value_text, ?) > 0", [v]
            if op == "starts":
                return "substr(a.value_text, 1, ?) = ?", [len(v), v]
            return ("length(a.value_text) >= ? AND "
                    "substr(a.value_text, length(a.value_text) - ? + 1) = ?", [len(v), len(v), v])
        if t == "list":
            wanted = list(v) if isinstance(v, tuple) else [v]
            # json_each raises on malformed JSON; such a value simply has no items
            return (f"EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(a.value_text) THEN "
                    f"a.value_text ELSE '[]' END) j WHERE j.value IN "
                    f"({_placeholders(len(wanted))}))", wanted)
        if t == "geo":
            assert isinstance(v, Circle)
            b, bp = _box("a.value_num", "a.value_num2", v.lat, v.lon, v.km)
            s, p = _chord2("a.value_num", "a.value_num2", v.lat, v.lon)
            if not b:
                return f"{s} <= ?", [*p, geo.chord2_limit(v.km)]
            return f"{b} AND {s} <= ?", [*bp, *p, geo.chord2_limit(v.km)]
        if t == "bool":
            return "a.value_num = ?", [1 if v else 0]
        if op == "between":
            assert isinstance(v, tuple)
            return "a.value_num BETWEEN ? AND ?", list(v)
        if op in SQL_OPS:
            return f"a.value_num {SQL_OPS[op]} ?", [v]
        assert isinstance(v, int)
        if op == "before":
            return "a.value_num < ?", [v]
        if op == "after":
            return "a.value_num > ?", [v]
        if op == "within_last":
            return "a.value_num > ? AND a.value_num <= ?", [now - v, now]
        if op == "more_than_ago":
            return "a.value_num <= ?", [now - v]
        return "a.value_num > ? AND a.value_num <= ?", [now, now + v]  # in_next

    # -- events ----------------------------------------------------------------------------

    def aggregate(
        self, spec: EventSpec, window: int | None, op: str, rhs: float, kind: str
    ) -> Frag:
        """``count`` / ``sum`` over a window compared with ``rhs``."""
        raw_val = "1" if kind == "count" else "COALESCE(e.value, 0)"
        agg = "COUNT(*)" if kind == "count" else "TOTAL(e.value)"
        sop = SQL_OPS[op]
        spec_sql, spec_p = _spec(spec, "e")
        if self.incremental and _capped(kind, rhs):
            return self._capped_count(spec, window, op, int(rhs), "s.id")
        if self.incremental:
            if not _uses_daily(spec, window):
                w, wp = _window("e", window, self.now)
                return (f"(SELECT {agg} FROM event e WHERE e.subscriber_id = s.id AND {spec_sql} "
                        f"AND {w}) {sop} ?", [*spec_p, *wp, rhs])
            assert window is not None
            d = _DailySplit.of(window, self.now, self.daily_mark)
            dagg = "TOTAL(ed.n)" if kind == "count" else "TOTAL(ed.total)"
            return (
                f"((SELECT {dagg} FROM event_daily ed WHERE ed.subscriber_id = s.id "
                f"AND ed.type = ? AND ed.day BETWEEN ? AND ?)"
                f" + (SELECT {agg} FROM event e WHERE e.subscriber_id = s.id AND {spec_sql} "
                f"AND e.ts_ms > ? AND e.ts_ms < ?)"
                f" + (SELECT {agg} FROM event e WHERE e.subscriber_id = s.id AND {spec_sql} "
                f"AND e.ts_ms >= ? AND e.ts_ms <= ?)) {sop} ?",
                [spec.type, d.first_day, d.last_day, *spec_p, *d.head, *spec_p, *d.tail, rhs],
            )
        if spec.type in EVENT_TRAIT:
            return self._aggregate_by_trait(spec, window, op, rhs, kind)
        # Full mode reads raw events through the (type, ts_ms) index even for long windows:
        # event_daily has no (type, day) index, and scanning it whole was measured 3-4x slower
        # at 1M subscribers / 10M events (draft preview 2.2 s -> 0.66 s). The roll-up serves
        # the per-subscriber (incremental) look-ups above, keyed by its primary key.
        w, wp = _window("e", window, self.now)
        inner = f"SELECT e.subscriber_id AS sid, {raw_val} AS c FROM event e " \
                f"WHERE {spec_sql} AND {w}"
        inner_p = [*spec_p, *wp]
        total = "TOTAL(c)"
        # Subscribers with no rows have 0; whether 0 passes decides IN vs NOT IN.
        if compare(op, 0, rhs):
            return (f"s.id NOT IN (SELECT sid FROM ({inner}) GROUP BY sid "
                    f"HAVING NOT ({total} {sop} ?))", [*inner_p, rhs])
        return (f"s.id IN (SELECT sid FROM ({inner}) GROUP BY sid HAVING {total} {sop} ?)",
                [*inner_p, rhs])

    def _capped_count(self, spec: EventSpec, window: int | None, op: str, n: int,
                      subject: str) -> Frag:
        """``count op n`` for one subscriber, reading at most ``n + 1`` matching events: a
        count capped at ``n + 1`` compares with ``n`` exactly as the full count does (every
        count above ``n`` is still above it). The full count read every event in the window
        (or a roll-up row per day of it): an active subscriber's 30-day clicks, or up to 365
        ``event_daily`` rows for ``count(purchase, last 365d) >= 5``."""
        spec_sql, spec_p = _spec(spec, "e")
        w, wp = _window("e", window, self.now)
        return (f"(SELECT COUNT(*) FROM (SELECT 1 FROM event e WHERE e.subscriber_id = "
                f"{subject} AND {spec_sql} AND {w} LIMIT ?)) {SQL_OPS[op]} ?",
                [*spec_p, *wp, n + 1, n])

    def _aggregate_by_trait(
        self, spec: EventSpec, window: int | None, op: str, rhs: float, kind: str
    ) -> Frag:
        """Full mode, an event type with a trait: the trait row rules out (exactly, by the
        ingest invariant) every subscriber who cannot have a qualifying event, and only the
        rest are counted by a correlated look-up on the covering (subscriber_id, type, ts_ms)
        index. The set form instead fetched every event row in the window by rowid to learn
        its subscriber: 1.5 s for ``count(purchase, last 365d) >= 5`` at 1M / 10M, 0.3 s
        this way. The look-up names ``t.subscriber_id`` so SQLite cannot hoist it ahead of
        the trait join (it would then run for every subscriber)."""
        col = EVENT_TRAIT[spec.type]
        agg = "COUNT(*)" if kind == "count" else "TOTAL(e.value)"
        spec_sql, spec_p = _spec(spec, "e")
        w, wp = _window("e", window, self.now)
        if _capped(kind, rhs):
            look, look_p = self._capped_count(spec, window, op, int(rhs), "t.subscriber_id")
        else:
            look = (f"(SELECT {agg} FROM event e WHERE e.subscriber_id = t.subscriber_id "
                    f"AND {spec_sql} AND {w}) {SQL_OPS[op]} ?")
            look_p = [*spec_p, *wp, rhs]
        if window is None:
            some, some_p = f"t.{col} IS NOT NULL", []
        else:
            some, some_p = f"t.{col} > ?", [self.now - window]
        # CASE, not AND/OR: SQLite 3.40 evaluates both sides of an AND inside an expression
        # (under NOT, COALESCE, ...), CASE never evaluates a branch it does not take
        if compare(op, 0, rhs):  # no qualifying event passes: only the others are looked up
            return f"(CASE WHEN {some} THEN {look} ELSE 1 END)", [*some_p, *look_p]
        if kind == "count" and spec.type == "purchase":
            some, some_p = f"{some} AND t.orders >= ?", [*some_p, _min_count(op, rhs)]
        return f"(CASE WHEN {some} THEN {look} ELSE 0 END)", [*some_p, *look_p]

    def last_event(self, node: LastEvent) -> Frag:
        spec_sql, spec_p = _spec(node.event, "e")
        now = self.now
        if not self.incremental and not node.event.where and node.event.type in EVENT_TRAIT:
            return self._last_by_trait(node)
        if node.op == "within_last":
            w, wp = _window("e", node.ms, now)
            if self.incremental:
                return (f"EXISTS (SELECT 1 FROM event e WHERE e.subscriber_id = s.id AND "
                        f"{spec_sql} AND {w})", [*spec_p, *wp])
            return (f"s.id IN (SELECT e.subscriber_id FROM event e WHERE {spec_sql} AND {w})",
                    [*spec_p, *wp])
        if self.incremental:
            return (f"COALESCE((SELECT MAX(e.ts_ms) FROM event e WHERE e.subscriber_id = s.id "
                    f"AND {spec_sql} AND e.ts_ms <= ?) <= ?, 0)", [*spec_p, now, now - node.ms])
        # "+": without it SQLite walks the whole (subscriber_id, type, ts_ms) index to get the
        # GROUP BY order for free, instead of the (type, ts_ms) range (14 s -> 1.6 s at 10M)
        return (f"s.id IN (SELECT e.subscriber_id FROM event e WHERE {spec_sql} AND e.ts_ms <= ? "
                f"GROUP BY +e.subscriber_id HAVING MAX(e.ts_ms) <= ?)",
                [*spec_p, now, now - node.ms])

    def _last_by_trait(self, node: LastEvent) -> Frag:
        """Full mode, no property filter: the trait column is the newest event of the type,
        so it is the answer whenever it is not in the future; only a subscriber with an event
        stamped after now needs a look-up (the newest one up to now)."""
        col, now = f"t.{EVENT_TRAIT[node.event.type]}", self.now
        spec_sql, spec_p = _spec(node.event, "e")
        if node.op == "within_last":
            test, test_p = f"{col} > ?", [now - node.ms]
            look = (f"EXISTS (SELECT 1 FROM event e WHERE e.subscriber_id = t.subscriber_id "
                    f"AND {spec_sql} AND e.ts_ms > ? AND e.ts_ms <= ?)")
            look_p = [*spec_p, now - node.ms, now]
        else:
            test, test_p = f"{col} <= ?", [now - node.ms]
            look = (f"COALESCE((SELECT MAX(e.ts_ms) FROM event e WHERE e.subscriber_id = "
                    f"t.subscriber_id AND {spec_sql} AND e.ts_ms <= ?) <= ?, 0)")
            look_p = [*spec_p, now, now - node.ms]
        return (f"(CASE WHEN {col} IS NULL THEN 0 WHEN {col} <= ? THEN {test} ELSE {look} END)",
                [now, *test_p, *look_p])

    def last_window(self, spec: EventSpec, within_ms: int, older_ms: int) -> Frag:
        """Full mode, ``last(E) within_last W and last(E) more_than_ago D`` as one grouped
        pass over the window: the newest E up to now lies in (now - W, now - D] exactly when
        the events in (now - W, now] exist and the newest of them is at most now - D. Reads
        the window's rows once instead of every E ever (replenishment: 1.4 s -> 0.15 s at
        1M / 10M)."""
        spec_sql, spec_p = _spec(spec, "e")
        now = self.now
        return (f"s.id IN (SELECT e.subscriber_id FROM event e WHERE {spec_sql} AND e.ts_ms > ? "
                f"AND e.ts_ms <= ? GROUP BY +e.subscriber_id HAVING MAX(e.ts_ms) <= ?)",
                [*spec_p, now - within_ms, now, now - older_ms])

    def conjunction(self, children: tuple[Rule, ...]) -> Frag:
        """``AND`` of the children; in full mode a ``within_last`` / ``more_than_ago`` pair on
        the same event (that has no trait shortcut) becomes one :meth:`last_window`."""
        parts = self._conjuncts(children)
        return "(" + " AND ".join(s for s, _ in parts) + ")", [x for _, p in parts for x in p]

    def root(self, rule: Rule) -> Frag:
        """The whole WHERE condition. Full mode, a rule that is an ``AND``: the conjuncts that
        are id lists (``s.id IN (...)``: SQLite may drive the scan from one) stay plain terms;
        the others go, cheapest first (:func:`_rank`), into one ``CASE`` chain. Why: SQLite
        tests a term at the first loop where its tables are available, so a filter on ``s``
        alone (``NOT s.id IN (...)``: not in a segment) ran for every subscriber before the
        trait join could reject most of them (engagement_medium's count at 1M subscribers:
        0.71-0.88 s as terms, 0.41-0.52 s chained). At the root NULL and 0 both reject, so
        the chain is exact there, and only there."""
        if self.incremental or not isinstance(rule, And):
            return self.cond(rule)
        parts = self._conjuncts(rule.children)
        ranks = [_rank(c) for c in rule.children]
        if len(parts) != len(ranks):  # a last_window pair became one list: keep the order
            ranks = [0] * len(parts)
        lists = [f for f in parts if f[0].startswith("s.id IN (")]
        others = [f for _, f in sorted(
            ((r, f) for r, f in zip(ranks, parts, strict=True) if f not in lists),
            key=lambda rf: rf[0])]
        if len(others) > 1:
            sql, params = others[-1]
            for cond, cp in reversed(others[:-1]):
                sql, params = f"CASE WHEN {cond} THEN {sql} ELSE 0 END", [*cp, *params]
            others = [(sql, params)]
        chosen = lists + others
        return ("(" + " AND ".join(s for s, _ in chosen) + ")",
                [x for _, p in chosen for x in p])

    def _conjuncts(self, children: tuple[Rule, ...]) -> list[Frag]:
        parts: list[Frag] = []
        used: set[int] = set()
        for i, c in enumerate(children):
            if i in used:
                continue
            j = self._window_partner(children, i) if not self.incremental else None
            if j is None:
                parts.append(self.cond(c))
                continue
            used.add(j)
            a, b = children[i], children[j]
            assert isinstance(a, LastEvent) and isinstance(b, LastEvent)
            within, older = (a, b) if a.op == "within_last" else (b, a)
            parts.append(self.last_window(a.event, within.ms, older.ms))
        return parts

    @staticmethod
    def _window_partner(children: tuple[Rule, ...], i: int) -> int | None:
        a = children[i]
        if not isinstance(a, LastEvent) or (not a.event.where and a.event.type in EVENT_TRAIT):
            return None
        for j in range(i + 1, len(children)):
            b = children[j]
            if isinstance(b, LastEvent) and b.event == a.event and b.op != a.op:
                return j
        return None

    def sequence(self, node: Sequence) -> Frag:
        a_sql, a_p = _spec(node.first, "x")
        b_sql, b_p = _spec(node.then_not, "y")
        body = (f"x.ts_ms > ? AND x.ts_ms <= ? AND {a_sql} AND NOT EXISTS (SELECT 1 FROM event y "
                f"WHERE y.subscriber_id = x.subscriber_id AND {b_sql} AND y.ts_ms >= x.ts_ms "
                f"AND y.ts_ms <= ? AND y.id <> x.id)")
        params = [self.now - node.within_ms, self.now - node.min_age_ms, *a_p, *b_p, self.now]
        if self.incremental:
            return f"EXISTS (SELECT 1 FROM event x WHERE x.subscriber_id = s.id AND {body})", params
        return f"s.id IN (SELECT x.subscriber_id FROM event x WHERE {body})", params

    def trait(self, node: Trait) -> Frag:
        e = _trait_expr(node.name, self.incremental)
        if node.op == "exists":
            return f"{e} IS NOT NULL", []
        if node.op == "missing":
            return f"{e} IS NULL", []
        if node.op == "ne":
            return f"NOT COALESCE({e} = ?, 0)", [node.value]
        if node.op == "within_last":
            assert node.value is not None
            return f"COALESCE({e} > ? AND {e} <= ?, 0)", [self.now - node.value, self.now]
        if node.op == "more_than_ago":
            assert node.value is not None
            return f"COALESCE({e} <= ?, 0)", [self.now - node.value]
        return f"COALESCE({e} {SQL_OPS[node.op]} ?, 0)", [node.value]


def _chord2(lat_col: str, lon_col: str, lat: float, lon: float) -> Frag:
    """Squared unit-sphere chord from a column pair to a point, as geo.chord2 computes it."""
    cx, cy, cz = geo.unit_vector(lat, lon)
    k = geo.DEG
    x = f"(cos({lat_col} * ?) * cos({lon_col} * ?) - ?)"
    y = f"(cos({lat_col} * ?) * sin({lon_col} * ?) - ?)"
    z = f"(sin({lat_col} * ?) - ?)"
    return (f"({x} * {x} + {y} * {y} + {z} * {z})",
            [k, k, cx, k, k, cx, k, k, cy, k, k, cy, k, cz, k, cz])


def _box(lat_col: str, lon_col: str, lat: float, lon: float, km: float) -> Frag:
    """``lat BETWEEN .. AND lon BETWEEN ..`` (or nothing): a bounding box that holds
    every point within ``km`` of (lat, lon), tested before the trigonometry (near_store:
    1.4 s -> 0.25 s at 1M subscribers). Exact as a prefilter for coordinates in range (lat
    within +-90, lon within +-180, as the store validates them): the latitude span is the
    angular radius, the longitude span asin(sin r / cos lat) (the widest point of a spherical
    cap); both widened by 1e-6 degrees (0.1 m) against rounding. No box when the circle holds a
    pole or crosses the antimeridian, or r >= 90 degrees."""
    r = min(km / geo.EARTH_RADIUS_KM, math.pi)
    r_deg = r / geo.DEG
    if r >= math.pi / 2 or abs(lat) + r_deg >= 90.0:
        return "", []
    margin = 1e-6
    dlon = math.asin(min(1.0, math.sin(r) / math.cos(lat * geo.DEG))) / geo.DEG
    lo_lon, hi_lon = lon - dlon - margin, lon + dlon + margin
    lo_lat, hi_lat = lat - r_deg - margin, lat + r_deg + margin
    if lo_lon < -180.0 or hi_lon > 180.0:
        return f"{lat_col} BETWEEN ? AND ?", [lo_lat, hi_lat]
    return (f"{lat_col} BETWEEN ? AND ? AND {lon_col} BETWEEN ? AND ?",
            [lo_lat, hi_lat, lo_lon, hi_lon])


CAPPED_MAX: Final = 32
"""Counts compared with at most this many events are capped look-ups (``_capped_count``);
above it a busy subscriber's roll-up rows are fewer than the events a capped count reads."""


def _capped(kind: str, rhs: float) -> bool:
    return kind == "count" and float(rhs).is_integer() and 0 <= rhs <= CAPPED_MAX


def _min_count(op: str, rhs: float) -> int:
    """The least number of events a passing count has (``count op rhs`` false at 0)."""
    if op == "gt":
        return max(1, math.floor(rhs) + 1)
    if op in ("ge", "eq"):
        return max(1, math.ceil(rhs))
    return 1


def _needs_trait_join(rule: Rule) -> bool:
    """Full mode joins the trait row for trait conditions and for events with a trait."""
    for n in walk(rule):
        if isinstance(n, Trait) and n.name != "created_ms":
            return True
        if isinstance(n, EventCount | EventSum | LastEvent) and n.event.type in EVENT_TRAIT:
            return True
    return False


def _check_table(table: str) -> str:
    if not _TABLE_RE.match(table):
        raise ValueError(f"not a plain table name: {table!r}")
    return table


def _rank(rule: Rule) -> int:
    """How dear a full-mode condition is per subscriber: 0 reads columns of the rows already
    joined, 1 probes an index, 2 may run a correlated query over events or consent."""
    match rule:
        case Trait() | Geo() | Near() | Random():
            return 0
        case Attr() | InSegment():
            return 1
        case Not(child):
            return _rank(child)
        case And(ch) | Or(ch):
            return max(_rank(c) for c in ch)
    return 2


def _from(rule: Rule, dirty: str | None) -> str:
    """``FROM ... WHERE`` [restricted to the dirty ids].

    Full mode joins the trait row once, walking subscribers in rowid order (NOT INDEXED: the
    planner otherwise scans the smaller ``subscriber_created`` index, and the trait look-ups
    in created order then hit random pages: 0.4 -> 2.2 s per count at 1M subscribers).
    Incremental mode reads traits with correlated look-ups instead (no join, so no Bloom
    filter over the whole trait table), and restricts with ``IN (SELECT id FROM dirty)``
    rather than a join: with a join SQLite 3.38+ may build a Bloom filter on the inner
    table, a full scan of ``subscriber`` (a measured 70x slowdown at 10,000 subscribers)."""
    if dirty is None:
        join = " LEFT JOIN trait t ON t.subscriber_id = s.id" if _needs_trait_join(rule) else ""
        return f"FROM subscriber s NOT INDEXED{join} WHERE"
    return f"FROM subscriber s WHERE s.id IN (SELECT id FROM {_check_table(dirty)}) AND"


def compile_select(rule: Rule, now: int, *, dirty: str | None = None,
                   daily_mark: int | None = None) -> Query:
    """``SELECT s.id`` of the subscribers matching at ``now``.

    ``dirty`` names a table with an ``id`` column (e.g. ``temp.dirty``): incremental mode, only
    those subscribers are evaluated. Without it: full mode, every subscriber. ``daily_mark``
    (incremental mode) is the first UTC day not in ``event_daily`` (``segmentation.daily``);
    None: every day is rolled up.
    """
    c, p = _Compiler(now, dirty is not None, daily_mark).root(rule)
    return Query(f"SELECT s.id {_from(rule, dirty)} {c}", tuple(p))


def compile_count(rule: Rule, now: int) -> Query:
    """``SELECT COUNT(*)`` of the subscribers matching at ``now`` (draft segment preview)."""
    c, p = _Compiler(now, False).root(rule)
    return Query(f"SELECT COUNT(*) {_from(rule, None)} {c}", tuple(p))


def compile_filter(rule: Rule, now: int) -> Query:
    """``FROM subscriber s ... WHERE cond`` of the subscribers matching at ``now`` (full mode),
    for callers that select their own columns of ``s`` (the draft preview)."""
    c, p = _Compiler(now, False).root(rule)
    return Query(f"{_from(rule, None)} {c}", tuple(p))


# -- time crossings (process_due) ------------------------------------------------------------------
#
# A time-sensitive leaf can change its value without new data only at instants ``x + o``: x a
# stored time (an event's ts, a trait, a date attribute, created_ms) and o one of the leaf's
# offsets (evaluate._leaf_instants lists them; this mirrors it). So the subscribers whose
# result may have flipped in (since, until] are among those with some x in
# (since - o, until - o]: range scans of the (type, ts_ms), (key, value_num) and created_ms
# indexes, proportional to the crossings, with nothing written per event or per pair.
#
# Offset 0 of an event (its own ts: the event enters a window) matters only for an event
# stamped later than it arrived: one that arrived at or after its ts dirtied its subscriber,
# who was evaluated with it counted. Ingest lists the future-stamped ones in a small table
# (``future``) and that is read instead; through the event index every event that just
# arrived would be re-evaluated a second time. The same holds for a time trait's own value
# (the latest event of its types) and for created_ms (a new subscriber is evaluated at once).


EVENT_TYPES_CTE: Final = (
    "WITH RECURSIVE ty(t) AS (SELECT MIN(type) FROM event UNION ALL "
    "SELECT (SELECT MIN(type) FROM event WHERE type > ty.t) FROM ty WHERE ty.t IS NOT NULL)")
"""``ty(t)``: the distinct event types, walked through the (type, ts_ms) index (a loose index
scan). Joined to ``event`` on the type with a ts range, it reads one index range per type; a
range on ts alone would read every event."""


def _ranges(offsets: tuple[int | float, ...], since: int, until: int) -> list[tuple[float, float]]:
    """For ``x + o`` in (since, until]: the ranges (lo, hi] of x, one per offset. Exact for a
    REAL x too: with whole-ms bounds, since < x + o <= until exactly when the rounded-up
    instant evaluate.next_change gives for it lies in (since, until]."""
    return [(since - o, until - o) for o in sorted(set(offsets))]


def _events_crossing(spec: EventSpec | None, types: tuple[str, ...] | None,
                     offsets: tuple[int | float, ...], since: int, until: int) -> list[Frag]:
    """Subscribers with an event (matching ``spec``, of one of ``types``, or of any type when
    both are None) whose ts crosses. One SELECT per type and offset, each a single range of
    the (type, ts_ms) index; ORed ranges would let the planner scan every event of the type."""
    out: list[Frag] = []
    for lo, hi in _ranges(offsets, since, until):
        if spec is not None:
            s, p = _spec(spec, "e")
            out.append((f"SELECT e.subscriber_id AS sid FROM event e WHERE {s} "
                        "AND e.ts_ms > ? AND e.ts_ms <= ?", [*p, lo, hi]))
        elif types is not None:
            out += [("SELECT e.subscriber_id AS sid FROM event e WHERE e.type = ? "
                     "AND e.ts_ms > ? AND e.ts_ms <= ?", [t, lo, hi]) for t in types]
        else:
            out.append((  # every type: one range per type (EVENT_TYPES_CTE)
                f"SELECT sid FROM ({EVENT_TYPES_CTE} SELECT e.subscriber_id AS sid FROM ty "
                "JOIN event e ON e.type = ty.t AND e.ts_ms > ? AND e.ts_ms <= ?)", [lo, hi]))
    return out


TRAIT_SOURCES: Final[dict[str, tuple[str, ...]]] = {
    **{col: (t,) for t, col in EVENT_TRAIT.items()},
    "first_purchase_ms": ("purchase",),
    "last_interaction_ms": tuple(sorted(INTERACTION_TYPES)),
}
"""Time trait -> the event types it is the latest (first) ts of: by the ingest invariant an
event of those types carries exactly the trait's value, so its ts crossing finds the trait's."""


def _leaf_crossings(rule: Rule, since: int, until: int) -> list[Frag]:
    match rule:
        case EventCount(spec, _, _, window) | EventSum(spec, _, _, window):
            return _events_crossing(spec, None, () if window is None else (window,),
                                    since, until)
        case LastEvent(spec, _, ms):
            return _events_crossing(spec, None, (ms,), since, until)
        case Sequence(first, _, within, min_age):
            return _events_crossing(first, None, (min_age, within), since, until)
        case Attr(key, op, value) if op in ("within_last", "more_than_ago", "in_next"):
            assert isinstance(value, int)
            return [("SELECT a.subscriber_id AS sid FROM subscriber_attr a WHERE a.key = ? "
                     "AND a.value_num > ? AND a.value_num <= ?", [key, lo, hi])
                    for lo, hi in _ranges((-value, 0, value), since, until)]
        case Trait(name, op, value) if op in ("within_last", "more_than_ago"):
            assert isinstance(value, int)
            if name == "created_ms":
                return [("SELECT s.id AS sid FROM subscriber s WHERE s.created_ms > ? "
                         "AND s.created_ms <= ?", [lo, hi])
                        for lo, hi in _ranges((value,), since, until)]
            if name == "last_seen_ms":  # the latest inbound event: any type is a superset
                return _events_crossing(None, None, (value,), since, until)
            return _events_crossing(None, TRAIT_SOURCES[name], (value,), since, until)
        case And(ch) | Or(ch):
            return [f for c in ch for f in _leaf_crossings(c, since, until)]
        case Not(child):
            return _leaf_crossings(child, since, until)
    return []


def _reads_event_times(rule: Rule) -> bool:
    return any(isinstance(n, EventCount | EventSum | LastEvent | Sequence)
               or (isinstance(n, Trait) and n.name != "created_ms") for n in walk(rule))


def compile_crossings(rule: Rule, since: int, until: int, *, future: str) -> Query | None:
    """``SELECT sid``: every subscriber (a superset, distinct ids) whose result under ``rule``
    may have flipped in (since, until] without new data, i.e. with an instant of
    evaluate.next_change in that interval, given that every subscriber evaluated at or before
    ``since`` was evaluated after its events arrived and that ``future`` (a table of
    ``subscriber_id, ts_ms``) lists the events stamped later than they arrived. None when the
    rule has no time-sensitive condition."""
    if not dependencies(rule).time_sensitive:
        return None
    parts = _leaf_crossings(rule, since, until)
    if _reads_event_times(rule):
        parts.append((f"SELECT f.subscriber_id AS sid FROM {_check_table(future)} f "
                      "WHERE f.ts_ms > ? AND f.ts_ms <= ?", [since, until]))
    union = " UNION ".join(s for s, _ in parts)  # UNION: distinct ids
    return Query(union, tuple(x for _, p in parts for x in p))


# -- dependencies --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deps:
    """What a segment reads, so a change re-evaluates only the segments it can affect.

    ``keys`` uses the store's change vocabulary: attribute keys, ``profile.<column>`` and
    ``consent.<program>``.
    """

    events: frozenset[str] = frozenset()
    keys: frozenset[str] = frozenset()
    traits: frozenset[str] = frozenset()
    segments: frozenset[str] = frozenset()
    time_sensitive: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "events": sorted(self.events), "keys": sorted(self.keys),
            "traits": sorted(self.traits), "segments": sorted(self.segments),
            "time_sensitive": self.time_sensitive,
        }

    @classmethod
    def from_json(cls, o: dict[str, Any]) -> Deps:
        return cls(
            frozenset(o.get("events", ())), frozenset(o.get("keys", ())),
            frozenset(o.get("traits", ())), frozenset(o.get("segments", ())),
            bool(o.get("time_sensitive", False)),
        )


def _leaf_deps(n: Rule) -> Deps:
    match n:
        case Attr(key, op):
            return Deps(keys=frozenset({key}),
                        time_sensitive=op in ("within_last", "more_than_ago", "in_next"))
        case EventCount(spec) | EventSum(spec):
            # an all-time count still depends on time: an event stamped in the future enters
            return Deps(events=frozenset({spec.type}), time_sensitive=True)
        case LastEvent(spec):
            return Deps(events=frozenset({spec.type}), time_sensitive=True)
        case Sequence(first, then_not):
            return Deps(events=frozenset({first.type, then_not.type}), time_sensitive=True)
        case Trait(name, op):
            ts = op in ("within_last", "more_than_ago")
            if name in PROFILE_TRAITS:
                return Deps(keys=frozenset({f"profile.{name}"}), time_sensitive=ts)
            return Deps(traits=frozenset({name}), time_sensitive=ts)
        case InSegment(name):
            return Deps(segments=frozenset({name}))
        case Consent(program):
            return Deps(keys=frozenset({f"consent.{program}"}))
        case Geo(field):
            return Deps(keys=frozenset({f"profile.{field}"}))
        case Near():
            return Deps(keys=frozenset({"profile.lat", "profile.lon"}))
    return Deps()


def dependencies(rule: Rule) -> Deps:
    """Union of what every leaf reads."""
    out = Deps()
    for n in walk(rule):
        d = _leaf_deps(n)
        out = Deps(out.events | d.events, out.keys | d.keys, out.traits | d.traits,
                   out.segments | d.segments, out.time_sensitive or d.time_sensitive)
    return out

