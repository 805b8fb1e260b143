"""Event ingest: append-only events, dedupe, daily roll-ups and traits in one transaction.

``ingest_events(store, events)`` writes a batch in ONE transaction: each event row (skipped when
its ``dedupe_key`` was seen before — the same event delivered twice counts once), the
``event_daily`` roll-up of its UTC day when that day is already rolled up (``segmentation.daily``:
past days; today's is rolled up once, after midnight) and the subscriber's ``trait`` row.
Roll-ups, traits and last-seen are aggregated in SQL over the batch's new rows (one statement
each, applied in key order), which is what makes batches fast. The same transaction queues the
batch's subscribers for membership (``membership_queue``: one row each, with the types it got),
so live membership follows events written by any process and survives a crash.

Traits (``trait`` table) after any sequence of events equal a recomputation from the raw events:

- ``orders`` = number of ``purchase`` events; ``spend`` = sum of their values (NULL counts 0);
- ``first_purchase_ms`` / ``last_purchase_ms`` = min / max purchase time;
- ``last_click_ms`` (link_click), ``last_view_ms`` (product_view), ``last_cart_ms`` (cart_add),
  ``last_reply_ms`` (reply), ``last_sent_ms`` (sent), ``last_delivered_ms`` (delivered) = max time;
- ``last_interaction_ms`` = max time over link_click, product_view, cart_add, purchase, reply.

Events arriving late (older than ones already stored) are handled: maxima stay maxima.
``trait.last_seen_ms`` = latest event that came *from* the subscriber (every type except
the outbound ``sent``, ``delivered``, ``failed``); it lives in ``trait`` (schema 9), not in
``subscriber``, so an event dirties one per-subscriber row, not two. ``opt_in``/``opt_out``
events are behaviour records only; the consent ledger is written by :mod:`segmentation.consent`.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import SmsgateError
from segmentation.daily import daily_mark
from segmentation.phones import normalise
from segmentation.rules.ast import MAX_TIMESTAMP_MS
from segmentation.store import Store
from segmentation.subscribers import upsert_subscriber
from segmentation.traits import INTERACTION_TYPES, LAST_TS_TRAIT, OUTBOUND_TYPES

DAY_MS = 86_400_000

STANDARD_TYPES: tuple[str, ...] = (
    "link_click", "product_view", "cart_add", "purchase", "reply",
    "opt_in", "opt_out", "sent", "delivered", "failed",
)
TRAIT_TYPES = frozenset(LAST_TS_TRAIT) | INTERACTION_TYPES
_MAX_COLUMNS = (*sorted(set(LAST_TS_TRAIT.values())), "last_interaction_ms", "last_seen_ms")

_TYPE_RE = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")


class EventError(SmsgateError, ValueError):
    """An event that cannot be ingested (``field``, ``value``, ``why``); nothing is written."""

    def __init__(self, field: str, value: object, why: str) -> None:
        super().__init__(f"event {field} = {value!r}: {why}")
        self.field = field
        self.value = value
        self.why = why


@dataclass(frozen=True)
class Event:
    """One event to ingest: give ``number`` (any format) or ``subscriber_id``."""

    type: str
    ts_ms: int
    number: str | None = None
    subscriber_id: int | None = None
    value: float | None = None
    props: Mapping[str, Any] | None = None
    source: str | None = None
    dedupe_key: str | None = None


@dataclass(frozen=True)
class IngestResult:
    inserted: int
    duplicates: int
    subscriber_ids: frozenset[int]
    event_types: frozenset[str]


_KNOWN_GOOD_TYPES: set[str] = set(STANDARD_TYPES)


def check_event(ev: Event) -> None:
    if ev.type not in _KNOWN_GOOD_TYPES:
        if not isinstance(ev.type, str) or not _TYPE_RE.match(ev.type):
            raise EventError("type", ev.type, "lower-case letters, digits and _ . : - (max 64)")
        if len(_KNOWN_GOOD_TYPES) < 10_000:  # a cache, bounded against junk type names
            _KNOWN_GOOD_TYPES.add(ev.type)
    if isinstance(ev.ts_ms, bool) or not isinstance(ev.ts_ms, int):
        raise EventError("ts_ms", ev.ts_ms, "expected integer epoch milliseconds")
    if not 0 <= ev.ts_ms <= MAX_TIMESTAMP_MS:  # SQLite INTEGER, and dates people can read
        raise EventError("ts_ms", ev.ts_ms,
                         "out of range: epoch milliseconds from 1970 to the end of year 9999")
    if ev.value is not None and (
        isinstance(ev.value, bool) or not isinstance(ev.value, int | float)
        or not math.isfinite(ev.value)
    ):
        raise EventError("value", ev.value, "expected a finite number")
    if ev.number is None and ev.subscriber_id is None:
        raise EventError("number", None, "give a number or a subscriber id")
    if ev.subscriber_id is not None and (isinstance(ev.subscriber_id, bool)
                                         or not isinstance(ev.subscriber_id, int)):
        raise EventError("subscriber_id", ev.subscriber_id, "expected an integer id")


_INSERT_EVENT = (
    "INSERT INTO event(subscriber_id, type, ts_ms, value, props, source, dedupe_key) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(dedupe_key) DO NOTHING"
)
# The batch's rows are exactly ``event.id > before`` (one writer holds the write lock and
# INTEGER PRIMARY KEY ids grow), so roll-ups, traits and last-seen are aggregated in SQL over
# them and applied in key order (neighbouring B-tree pages): C does the per-event work.
# NOT INDEXED pins the rowid range scan; otherwise the planner may walk a whole index of
# ``event`` to skip the GROUP BY sort (seen on a fresh database: a full scan per batch).
_NO_MARK = 2**62  # no roll-up mark yet: every day is rolled up
_DAILY_FROM_BATCH = (
    "INSERT INTO event_daily(subscriber_id, type, day, n, total) "
    f"SELECT subscriber_id, type, ts_ms / {DAY_MS}, count(*), total(value) FROM event NOT INDEXED "
    "WHERE id > ? AND ts_ms < ? GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
    "ON CONFLICT(subscriber_id, type, day) DO UPDATE SET n = n + excluded.n, "
    "total = total + excluded.total"
)


def _quoted(types: Iterable[str]) -> str:
    return ", ".join(f"'{t}'" for t in sorted(types))  # our constants, never input


def _max_expr(col: str) -> str:
    # max() of two values where either may be NULL (SQLite's scalar max returns NULL then).
    return f"{col} = max(coalesce({col}, excluded.{col}), coalesce(excluded.{col}, {col}))"


_TYPE_OF_COLUMN = {col: type_ for type_, col in LAST_TS_TRAIT.items()}


def _latest(col: str) -> str:
    if col == "last_interaction_ms":
        return f"max(CASE WHEN type IN ({_quoted(INTERACTION_TYPES)}) THEN ts_ms END)"
    if col == "last_seen_ms":
        return f"max(CASE WHEN type NOT IN ({_quoted(OUTBOUND_TYPES)}) THEN ts_ms END)"
    return f"max(CASE WHEN type = '{_TYPE_OF_COLUMN[col]}' THEN ts_ms END)"


# Types that move no trait: the outbound ones without a last_<type> column ("failed").
_NO_TRAIT_TYPES = OUTBOUND_TYPES - TRAIT_TYPES


_TRAITS_FROM_BATCH = (
    "INSERT INTO trait(subscriber_id, orders, spend, first_purchase_ms, "
    + ", ".join(_MAX_COLUMNS) + ") "
    "SELECT subscriber_id, count(CASE WHEN type = 'purchase' THEN 1 END), "
    "total(CASE WHEN type = 'purchase' THEN value END), "
    "min(CASE WHEN type = 'purchase' THEN ts_ms END), "
    + ", ".join(_latest(c) for c in _MAX_COLUMNS)
    + f" FROM event NOT INDEXED WHERE id > ? AND type NOT IN ({_quoted(_NO_TRAIT_TYPES)}) "
    "GROUP BY subscriber_id ORDER BY subscriber_id "
    "ON CONFLICT(subscriber_id) DO UPDATE SET orders = orders + excluded.orders, "
    "spend = spend + excluded.spend, "
    "first_purchase_ms = min(coalesce(first_purchase_ms, excluded.first_purchase_ms), "
    "coalesce(excluded.first_purchase_ms, first_purchase_ms)), "
    + ", ".join(_max_expr(c) for c in _MAX_COLUMNS)
)
# one membership_queue row per subscriber of the batch with the types it got (schema 12)
_QUEUE_FROM_BATCH = (
    "INSERT INTO membership_queue(subscriber_id, types) "
    "SELECT subscriber_id, group_concat(DISTINCT type) FROM event NOT INDEXED WHERE id > ? "
    "GROUP BY subscriber_id ORDER BY subscriber_id"
)
_FUTURE_FROM_BATCH = (  # segmentation.rules.compile: compile_crossings
    "INSERT OR IGNORE INTO event_future(ts_ms, subscriber_id) "
    "SELECT ts_ms, subscriber_id FROM event NOT INDEXED WHERE id > ? AND ts_ms > ?"
)

# One encoder for every event: json.dumps() with options builds a new encoder per call.
_PROPS_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                  allow_nan=False)


def props_json(props: Mapping[str, Any] | None) -> str | None:
    """The stored form of an event's properties (canonical JSON; None for none); raises
    :class:`EventError` for a value JSON cannot hold (NaN, infinity, a set, ...). Importers
    call it per row, so a bad row is reported alone instead of failing its batch."""
    if not props:
        return None
    try:
        return _PROPS_ENCODER.encode(props)
    except (TypeError, ValueError) as exc:
        raise EventError("props", props, f"not JSON-serialisable ({exc})") from None


class _Resolver:
    """Number -> subscriber id for one batch, creating subscribers when allowed."""

    def __init__(self, store: Store, create: bool) -> None:
        self.store = store
        self.create = create
        self.cache: dict[str, int] = {}
        self.given: set[int] = set()
        """Ids the events named directly (the ones found by number exist)."""

    def unknown_given(self) -> int | None:
        """The lowest given id with no subscriber, if any: looked up only after the batch's
        foreign key failed, to name it (SQLite's message names no row)."""
        ids = sorted(self.given)
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i:i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            found = {int(r[0]) for r in self.store.conn.execute(
                f"SELECT id FROM subscriber WHERE id IN ({marks})", chunk)}
            if len(found) < len(chunk):
                return min(set(chunk) - found)
        return None

    def __call__(self, ev: Event) -> int:
        if ev.subscriber_id is not None:
            self.given.add(ev.subscriber_id)
            return ev.subscriber_id
        raw = ev.number or ""
        cached = self.cache.get(raw)
        if cached is not None:
            return cached
        e164 = normalise(raw, self.store.default_region)
        found = self.store.scalar("SELECT id FROM subscriber WHERE phone_e164 = ?", (e164,))
        if found is None:
            if not self.create:
                raise EventError("number", raw, "no such subscriber")
            found = upsert_subscriber(self.store, e164)
        self.cache[raw] = int(found)
        return int(found)


def _existing_keys(store: Store, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(keys), _IN_CHUNK):
        chunk = keys[i:i + _IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        found.update(
            r[0] for r in store.conn.execute(
                f"SELECT dedupe_key FROM event WHERE dedupe_key IN ({marks})", chunk
            )
        )
    return found


_IN_CHUNK = 500  # well under SQLITE_MAX_VARIABLE_NUMBER on every build


def ingest_events(
    store: Store, events: Iterable[Event], *, create_subscribers: bool = True
) -> IngestResult:
    """Ingest a batch in one transaction (module docstring); all or nothing on error.

    Speed comes from set-wise work: duplicates are found with one indexed ``IN`` query per 500
    keys, rows go in with ``executemany``, and roll-ups, traits and last-seen are aggregated by
    one SQL statement each over the batch's new rows, applied in key order.
    """
    batch = list(events)
    for ev in batch:
        check_event(ev)
    resolve = _Resolver(store, create_subscribers)
    rows: list[tuple[Any, ...]] = []
    subs: set[int] = set()
    types: set[str] = set()
    conn = store.conn
    with store.atomic():
        keys = [ev.dedupe_key for ev in batch if ev.dedupe_key is not None]
        # A single writer holds the write lock (BEGIN IMMEDIATE), so keys absent now stay
        # absent until our INSERTs below.
        taken = _existing_keys(store, keys) if keys else set()
        for ev in batch:
            if ev.dedupe_key is not None:
                if ev.dedupe_key in taken:
                    continue
                taken.add(ev.dedupe_key)
            sid = resolve(ev)
            rows.append((sid, ev.type, ev.ts_ms, ev.value, props_json(ev.props), ev.source,
                         ev.dedupe_key))
            subs.add(sid)
            types.add(ev.type)
        if rows:
            before = int(store.scalar("SELECT coalesce(max(id), 0) FROM event"))
            try:
                conn.executemany(_INSERT_EVENT, rows)
            except sqlite3.IntegrityError as exc:
                unknown = resolve.unknown_given()
                if unknown is None:
                    raise
                raise EventError("subscriber_id", unknown, "no such subscriber") from exc
            # only days before the roll-up mark (segmentation.daily): today's are read raw
            mark = daily_mark(store)
            if mark is None or any(ev.ts_ms < mark * DAY_MS for ev in batch):
                conn.execute(_DAILY_FROM_BATCH,
                             (before, _NO_MARK if mark is None else mark * DAY_MS))
            traits_changed = bool(types & TRAIT_TYPES)
            if types - _NO_TRAIT_TYPES:  # traits, or last_seen_ms (every inbound type)
                conn.execute(_TRAITS_FROM_BATCH, (before,))
            if store.membership_wanted():
                conn.execute(_QUEUE_FROM_BATCH, (before,))
            now = store.now_ms()
            if any(ev.ts_ms > now for ev in batch):  # stamped in the future: the time sweep
                conn.execute(_FUTURE_FROM_BATCH, (before, now))
            store.note_change(subscriber_ids=subs, event_types=types,
                              traits_changed=traits_changed)
    inserted = len(rows)
    return IngestResult(inserted, len(batch) - inserted, frozenset(subs), frozenset(types))


def ingest_event(store: Store, event: Event, *, create_subscribers: bool = True) -> IngestResult:
    return ingest_events(store, (event,), create_subscribers=create_subscribers)
