"""Per-subscriber export, erasure (nothing personal left but the suppression hash), segment CSV."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from segmentation.consent import (
    HASH_PREFIX,
    current_consent,
    is_sendable,
    number_hash,
    record_consent,
)
from segmentation.ingest import Event, ingest_events
from segmentation.privacy import (
    PrivacyError,
    erase_subscriber,
    export_segment_csv,
    export_subscriber,
)
from segmentation.rules.ast import MAX_TIMESTAMP_MS
from segmentation.store import Change, Store, StoreError
from segmentation.subscribers import (
    MIN_DATE_MS,
    AttributeValueError,
    GeoPoint,
    define_attribute,
    get_attributes,
    set_attributes,
    upsert_subscriber,
)
from tests.segmentation.conftest import HASH_KEY, START_MS

NUMBER = "+13125550103"
OTHER = "+12125550101"


def _seed(store: Store) -> tuple[int, int, int]:
    sid = upsert_subscriber(store, "(312) 555-0103", postal_code="60601", locale="en-US")
    other = upsert_subscriber(store, OTHER)
    set_attributes(store, sid, {"name": "Ann", "home": GeoPoint(41.88, -87.63),
                                "phone_copy": "call 312-555-0103"}, define_missing=True)
    ingest_events(store, [
        Event("purchase", START_MS, number=NUMBER, value=20.0, props={"sku": "A"},
              dedupe_key="o-1"),
        Event("reply", START_MS + 1, number=NUMBER, props={"text": "hi from 3125550103"}),
        Event("purchase", START_MS, number=OTHER, value=5.0),
    ])
    record_consent(store, NUMBER, "marketing", "grant", "web_form", actor="api",
                   disclosure="Msg & data rates may apply",
                   evidence={"form": "https://shop.example/join", "phone_field": "+13125550103"})
    record_consent(store, NUMBER, "marketing", "revoke", "keyword", actor="inbound",
                   keyword_text="STOP texting +1 312-555-0103", ts_ms=START_MS + 2,
                   dedupe_key="import:" + hashlib.sha256(NUMBER.encode()).hexdigest())
    with store.atomic():
        store.conn.execute("INSERT INTO segment(id, name, definition, created_ms, member_count) "
                           "VALUES (1, 'buyers', '{}', 0, 2)")
        for s in (sid, other):
            store.conn.execute("INSERT INTO segment_member VALUES (1, ?, ?, 1)", (s, START_MS))
            store.conn.execute("INSERT INTO segment_transition(segment_id, subscriber_id, ts_ms, "
                               "direction, cause) VALUES (1, ?, ?, 'enter', 'event')",
                               (s, START_MS))
    return sid, other, 1


def test_export_has_profile_attributes_events_consent_memberships(store: Store) -> None:
    sid, _, _ = _seed(store)
    out = export_subscriber(store, NUMBER)
    json.dumps(out)  # JSON-ready
    assert out["profile"]["id"] == sid and out["profile"]["phone_raw"] == "(312) 555-0103"
    assert out["attributes"]["name"] == "Ann"
    assert [e["type"] for e in out["events"]] == ["purchase", "reply"]
    assert out["events"][0]["props"] == {"sku": "A"}
    assert [c["action"] for c in out["consent"]] == ["grant", "revoke"]
    assert out["memberships"][0]["segment"] == "buyers"
    assert out["membership_history"][0]["direction"] == "enter"
    assert out["traits"]["orders"] == 1
    with pytest.raises(PrivacyError):
        export_subscriber(store, "+14155550199")


def _tables(store: Store) -> list[str]:
    return [r[0] for r in store.conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]


def _cells_containing(store: Store, needles: list[str]) -> list[tuple[str, str]]:
    found = []
    for table in _tables(store):
        for row in store.query(f"SELECT * FROM {table}"):
            for value in tuple(row):
                text = str(value)
                if any(n in text for n in needles):
                    found.append((table, text))
    return found


def test_erasure_leaves_nothing_personal_but_the_suppression_hash(store: Store) -> None:
    sid, other, _ = _seed(store)
    needles = [NUMBER, NUMBER[1:], "3125550103", "312-555-0103", "(312) 555-0103", "Ann",
               "60601"]
    assert _cells_containing(store, needles)  # the search itself finds seeded data
    changes: list[Change] = []
    store.add_listener(changes.append)
    before_other = export_subscriber(store, OTHER)
    report = erase_subscriber(store, "312 555 0103")
    assert (report.subscriber_id, report.events, report.attributes, report.memberships,
            report.consent_rows_pseudonymised, report.suppression_added) == (
        sid, 2, 3, 1, 2, True)
    assert dict(report.removed) == {
        "subscriber": 1, "subscriber_attr": 3, "event": 2, "event_daily": 2, "trait": 1,
        "segment_member": 1, "segment_transition": 1, "event_future": 1, "subscriber_hash": 1}
    assert _cells_containing(store, needles) == []
    digest = number_hash(HASH_KEY, NUMBER)
    assert store.scalar("SELECT reason FROM suppression WHERE phone_hash = ?", (digest,)) == \
        "erasure"
    rows = store.query("SELECT * FROM consent ORDER BY id")
    assert [r["phone_e164"] for r in rows] == [HASH_PREFIX + digest] * 2
    assert rows[1]["keyword_text"] == "STOP texting [erased]"
    assert json.loads(rows[0]["evidence"])["phone_field"] == "[erased]"
    assert {r["subscriber_id"] for r in rows} == {None}
    # an unkeyed hash of the number (brute-forceable) does not survive either
    assert rows[1]["dedupe_key"].startswith("erased:")
    assert _cells_containing(store, [hashlib.sha256(NUMBER.encode()).hexdigest()]) == []
    assert not is_sendable(store, NUMBER, "marketing")
    assert is_sendable(store, NUMBER, "transactional")
    assert current_consent(store, NUMBER, "marketing") is None
    # everyone else is untouched; the segment counter counts current members
    assert export_subscriber(store, OTHER)["events"] == before_other["events"]
    assert store.scalar("SELECT member_count FROM segment WHERE id = 1") == 1
    assert store.scalar("SELECT count(*) FROM segment_member") == 1
    assert changes[-1].subscriber_ids == frozenset({sid})
    assert other != sid
    # erasing again: only the already-hashed evidence remains, so there is nothing to do
    with pytest.raises(PrivacyError):
        erase_subscriber(store, NUMBER)


def test_erasure_of_a_number_known_only_by_a_stop(store: Store) -> None:
    record_consent(store, NUMBER, "marketing", "revoke", "keyword", actor="inbound",
                   keyword_text="STOP")
    report = erase_subscriber(store, NUMBER)
    assert report.subscriber_id is None and report.consent_rows_pseudonymised == 1
    assert _cells_containing(store, ["3125550103"]) == []


def test_erasure_needs_the_hash_key(tmp_path: Path) -> None:
    with Store(tmp_path / "nokey.db") as s:
        upsert_subscriber(s, NUMBER)
        with pytest.raises(StoreError):
            erase_subscriber(s, NUMBER)
        assert s.scalar("SELECT count(*) FROM subscriber") == 1


def test_segment_export_csv(store: Store) -> None:
    _seed(store)
    out = io.StringIO()
    assert export_segment_csv(store, "buyers", out) == 2
    lines = out.getvalue().splitlines()
    assert lines[0] == "phone,country,region,tz,locale,entered_at"
    assert lines[1].startswith("+12125550101,US,NY,America/New_York,,2026-01-15T12:00:00")
    assert lines[2].startswith("+13125550103,US,IL,America/Chicago,en-US,")
    empty = io.StringIO()
    with pytest.raises(PrivacyError):
        export_segment_csv(store, "nope", empty)
    assert empty.getvalue() == ""


def test_export_keeps_last_seen_under_profile(store: Store) -> None:
    """Schema 9 moved last_seen_ms into the trait row; the export's keys stay as they were."""
    _seed(store)
    out = export_subscriber(store, NUMBER)
    assert out["profile"]["last_seen_ms"] == out["traits"]["last_seen_ms"] is not None


def test_export_never_fails_on_times_an_older_store_holds(store: Store) -> None:
    """Before times and dates were bounded (audit 6, finding 5) a store could take an event at
    9e18 ms or a date attribute of 1e20 ms: no calendar date, and the right-of-access export
    raised OverflowError. They are exported as their numbers now; valid ones as ISO."""
    sid, _, _ = _seed(store)
    define_attribute(store, "born", "date")
    with store.atomic():  # what older code wrote; today's importer and API refuse these
        store.conn.execute("INSERT INTO event(subscriber_id, type, ts_ms) VALUES (?, 'x', ?)",
                           (sid, 9_000_000_000_000_000_000))
        store.conn.execute("INSERT INTO subscriber_attr(subscriber_id, key, value_num, "
                           "updated_ms) VALUES (?, 'born', 1e20, 0)", (sid,))
        store.conn.execute("UPDATE segment_member SET entered_ms = ? WHERE subscriber_id = ?",
                           (-(2**62), sid))
    out = export_subscriber(store, NUMBER)
    json.dumps(out)
    assert out["events"][-1]["at"] == "9000000000000000000"
    assert out["events"][0]["at"] == "2026-01-15T12:00:00+00:00"
    assert out["attributes"]["born"] == "1e+20"
    rows = io.StringIO()
    export_segment_csv(store, "buyers", rows)
    assert rows.getvalue().splitlines()[2].endswith(f",{-(2**62)}")


def test_date_attributes_outside_years_1_to_9999_are_refused(store: Store) -> None:
    sid = upsert_subscriber(store, NUMBER)
    define_attribute(store, "born", "date")
    for bad in (10**20, MIN_DATE_MS - 1, MAX_TIMESTAMP_MS + 1):
        with pytest.raises(AttributeValueError, match="out of range"):
            set_attributes(store, sid, {"born": bad})
    set_attributes(store, sid, {"born": MIN_DATE_MS})
    assert get_attributes(store, sid) == {"born": "0001-01-01T00:00:00+00:00"}
