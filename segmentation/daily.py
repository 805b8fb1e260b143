"""The whole-UTC-day roll-up (``event_daily``) is written for past days only.

The roll-up serves windows of two days or more (``rules.compile``): whole days inside the
window come from ``event_daily``, the partial days at its edges from raw events. The current
day is always a partial edge day, so its roll-up row is never read while it is current, yet
writing it cost ~1 page and ~16 us per ingested event at 1M subscribers (a random leaf of a
10M-row table). So the store keeps a mark, ``store_mark('event_daily_to')``:

- ``event_daily`` holds exactly the events of UTC days before the mark (none after it);
- ingest adds to it only events older than the mark (late arrivals);
- :func:`roll_up` moves the mark to today, rolling up the days in between from raw events in
  one statement (a day's events, found by the ``(type, ts_ms)`` index) -- the membership drain
  calls it, in its own transaction, once per day;
- the compiler reads raw events from the mark on (:func:`daily_mark` is passed to it), so a
  result never depends on when the roll-up ran.

Without a mark (a store from before schema 7) every day is rolled up, today included, and
ingest writes every event's day as before, until the first :func:`roll_up` removes the rows
of today and later and sets the mark.
"""

from __future__ import annotations

from segmentation.rules.compile import EVENT_TYPES_CTE as _TYPES
from segmentation.store import Store

DAY_MS = 86_400_000
MARK = "event_daily_to"

# A day's events are found one (type, ts_ms) index range per type (_TYPES).
_ROLL_UP = (  # (an upsert's SELECT needs a WHERE clause: SQLite's parsing ambiguity)
    f"{_TYPES} INSERT INTO event_daily(subscriber_id, type, day, n, total) "
    f"SELECT e.subscriber_id, e.type, e.ts_ms / {DAY_MS}, COUNT(*), TOTAL(e.value) "
    "FROM ty JOIN event e ON e.type = ty.t WHERE e.ts_ms >= ? AND e.ts_ms < ? "
    "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
    "ON CONFLICT(subscriber_id, type, day) DO UPDATE SET n = n + excluded.n, "
    "total = total + excluded.total"
)
_DROP_FROM = (
    f"DELETE FROM event_daily WHERE day >= ? AND (subscriber_id, type) IN ({_TYPES} "
    "SELECT e.subscriber_id, e.type FROM ty JOIN event e ON e.type = ty.t AND e.ts_ms >= ?)"
)


def daily_mark(store: Store) -> int | None:
    """The first UTC day not in ``event_daily`` (None: every day is, the pre-schema-7 state)."""
    v = store.scalar("SELECT value FROM store_mark WHERE name = ?", (MARK,))
    return None if v is None else int(v)


def roll_up(store: Store, now_ms: int) -> bool:
    """Move the mark to today (rolling up the days before it); True when it moved. Runs in
    its own (nested) transaction, so the rows and the mark commit together."""
    today = now_ms // DAY_MS
    with store.atomic() as conn:
        mark = daily_mark(store)
        if mark is not None and mark >= today:
            return False
        if mark is None:
            # rows of today and later are counted raw from now on
            conn.execute(_DROP_FROM, (today, today * DAY_MS))
        else:
            conn.execute(_ROLL_UP, (mark * DAY_MS, today * DAY_MS))
        conn.execute("INSERT INTO store_mark(name, value) VALUES (?, ?) ON CONFLICT(name) "
                     "DO UPDATE SET value = excluded.value", (MARK, today))
    return True
