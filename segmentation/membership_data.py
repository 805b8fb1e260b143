"""Loading one subscriber's rows as :class:`SubscriberData` (for ``explain`` and tests).

The Python evaluator reads exactly these rows, so what ``explain`` shows is what the compiled
SQL saw (the property tests prove the two agree).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from segmentation.rules.evaluate import AttrRow, ConsentRow, EventRow, SubscriberData

_TRAIT_COLUMNS = (
    "orders", "spend", "first_purchase_ms", "last_purchase_ms", "last_click_ms", "last_view_ms",
    "last_cart_ms", "last_reply_ms", "last_sent_ms", "last_delivered_ms", "last_interaction_ms",
)


def _props(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        v = json.loads(text)
    except ValueError:
        return None
    return v if isinstance(v, dict) else None


def load_subscriber(conn: sqlite3.Connection, subscriber_id: int) -> SubscriberData | None:
    """Every row a rule can read about one subscriber, or None when the id does not exist."""
    row = conn.execute(
        "SELECT s.id, s.created_ms, (SELECT t.last_seen_ms FROM trait t WHERE t.subscriber_id "
        "= s.id), s.country, s.region, s.area_code, s.postal_code, s.lat, s.lon "
        "FROM subscriber s WHERE s.id = ?", (subscriber_id,),
    ).fetchone()
    if row is None:
        return None
    attrs = {
        k: AttrRow(t, n, n2)
        for k, t, n, n2 in conn.execute(
            "SELECT key, value_text, value_num, value_num2 FROM subscriber_attr "
            "WHERE subscriber_id = ?", (subscriber_id,))
    }
    events = tuple(
        EventRow(i, t, ts, v, _props(p))
        for i, t, ts, v, p in conn.execute(
            "SELECT id, type, ts_ms, value, props FROM event WHERE subscriber_id = ? "
            "ORDER BY ts_ms, id", (subscriber_id,))
    )
    trow = conn.execute(
        f"SELECT {', '.join(_TRAIT_COLUMNS)} FROM trait WHERE subscriber_id = ?",
        (subscriber_id,),
    ).fetchone()
    traits = None if trow is None else dict(zip(_TRAIT_COLUMNS, trow, strict=True))
    consent = tuple(
        ConsentRow(i, p, a, ts)
        for i, p, a, ts in conn.execute(
            "SELECT id, program, action, ts_ms FROM consent WHERE subscriber_id = ?",
            (subscriber_id,))
    )
    segments = frozenset(
        name for (name,) in conn.execute(
            # one range of the key (segment_member is keyed subscriber first, schema 13)
            "SELECT g.name FROM segment_member m JOIN segment g ON g.id = m.segment_id "
            "WHERE m.subscriber_id = ?", (subscriber_id,))
    )
    sid, created, seen, country, region, area, postal, lat, lon = row
    return SubscriberData(
        id=sid, created_ms=created, last_seen_ms=seen, country=country, region=region,
        area_code=area, postal_code=postal, lat=lat, lon=lon, attrs=attrs, events=events,
        traits=traits, consent=consent, segments=segments,
    )
