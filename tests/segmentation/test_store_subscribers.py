"""Phones (E.164, location, time zones) and subscribers with typed attributes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmentation.consent import number_hash
from segmentation.phones import REGION_TZ, PhoneError, locate, normalise, state_for_us_zip
from segmentation.store import Change, Store, StoreError
from segmentation.subscribers import (
    AttributeValueError,
    GeoPoint,
    RehashReport,
    SubscriberError,
    define_attribute,
    fill_phone_hashes,
    find_subscriber,
    get_attributes,
    set_attributes,
    upsert_subscriber,
)
from tests.segmentation.conftest import HASH_KEY, START_MS


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("(212) 555-0123", "US", "+12125550123"),
        ("212.555.0123", "us", "+12125550123"),
        ("+1 212 555 0123", None, "+12125550123"),
        ("07911 123456", "GB", "+447911123456"),
        ("0044 7911 123456", None, "+447911123456"),
        ("06 12 34 56 78", "FR", "+33612345678"),
    ],
)
def test_normalise(raw: str, region: str | None, e164: str) -> None:
    assert normalise(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "region", "why"),
    [
        ("", "US", "empty"),
        ("hello", "US", "not a phone number"),
        ("12345", "US", "length"),
        ("2125550123", None, "default region"),
        ("+15555550123", None, "not a valid number"),
    ],
)
def test_normalise_errors_name_the_value(raw: str, region: str | None, why: str) -> None:
    with pytest.raises(PhoneError) as info:
        normalise(raw, region)
    assert info.value.value == raw
    assert why in info.value.why


@settings(max_examples=50, deadline=None)
@given(national=st.integers(2_000_000, 9_999_999), area=st.sampled_from(["212", "312", "415"]))
def test_normalise_is_idempotent_and_agrees_with_formatting(national: int, area: str) -> None:
    raw = f"({area}) {str(national)[:3]}-{str(national)[3:]}"
    number = phonenumbers.parse(raw, "US")
    if not phonenumbers.is_valid_number(number):
        with pytest.raises(PhoneError):
            normalise(raw, "US")
        return
    e164 = normalise(raw, "US")
    assert e164 == f"+1{area}{national}"
    assert normalise(e164) == e164


def test_location_precedence() -> None:
    # area code alone: exact zone
    loc = locate("+13125550103")
    assert (loc.country, loc.area_code, loc.region, loc.tz, loc.tz_source) == (
        "US", "312", "IL", "America/Chicago", "area_code")
    # region beats the area code
    loc = locate("+13125550103", region="CA")
    assert (loc.region, loc.tz, loc.tz_source) == ("CA", "America/Los_Angeles", "region")
    # a split state with a matching area code picks the exact zone (El Paso is Mountain time)
    loc = locate("+19155550123", region="US-TX")
    assert (loc.tz, loc.tz_source, loc.tz_candidates) == ("America/Denver", "region", None)
    # a postal code places the number when no region is given
    loc = locate("+13125550103", postal_code="94105-1234")
    assert (loc.region, loc.tz, loc.tz_source) == ("CA", "America/Los_Angeles", "postal")
    # explicit beats everything
    loc = locate("+13125550103", tz="Europe/Paris", region="CA")
    assert (loc.tz, loc.tz_source) == ("Europe/Paris", "explicit")
    # one zone in the country
    loc = locate("+33612345678")
    assert (loc.country, loc.tz, loc.tz_source) == ("FR", "Europe/Paris", "country")


def test_ambiguous_numbers_keep_candidates_and_pick_the_documented_default() -> None:
    loc = locate("+18005550199")  # toll free: no geography
    assert loc.tz_source == "default" and loc.tz == "America/New_York"
    assert loc.tz_candidates is not None and "America/Los_Angeles" in loc.tz_candidates
    loc = locate("+61412345678")  # Australian mobile
    assert (loc.tz, loc.tz_source) == ("Australia/Sydney", "default")
    assert loc.tz_candidates is not None and "Australia/Perth" in loc.tz_candidates


def test_bad_explicit_zone_is_an_error() -> None:
    with pytest.raises(PhoneError):
        locate("+13125550103", tz="Mars/Olympus")


def test_zip_table() -> None:
    assert state_for_us_zip("10001") == "NY"
    assert state_for_us_zip("73301") == "TX"
    assert state_for_us_zip("99501") == "AK"
    assert state_for_us_zip("ABCDE") is None


def test_upsert_creates_once_and_updates_hints(store: Store) -> None:
    changes: list[Change] = []
    store.add_listener(changes.append)
    sid = upsert_subscriber(store, "(312) 555-0103", locale="en-US")
    assert upsert_subscriber(store, "+13125550103") == sid
    row = store.query("SELECT * FROM subscriber")[0]
    assert (row["phone_e164"], row["phone_raw"], row["tz"], row["tz_source"], row["status"],
            row["created_ms"], row["locale"]) == (
        "+13125550103", "(312) 555-0103", "America/Chicago", "area_code", "active", START_MS,
        "en-US")
    assert store.scalar("SELECT count(*) FROM trait WHERE subscriber_id = ?", (sid,)) == 1
    assert len(changes) == 1  # the no-op upsert announced nothing
    upsert_subscriber(store, "+13125550103", region="NY")
    row = store.query("SELECT region, tz, tz_source FROM subscriber")[0]
    assert tuple(row) == ("NY", "America/New_York", "region")
    assert "profile.region" in changes[-1].attributes and "profile.tz" in changes[-1].attributes
    assert find_subscriber(store, "312-555-0103") == sid
    assert find_subscriber(store, "+12125550101") is None


def test_ambiguous_subscriber_stores_candidates(store: Store) -> None:
    upsert_subscriber(store, "+18005550199")
    row = store.query("SELECT tz, tz_source, tz_candidates FROM subscriber")[0]
    assert row["tz_source"] == "default"
    assert "America/Chicago" in json.loads(row["tz_candidates"])


def test_upsert_refuses_bad_profile_fields(store: Store) -> None:
    with pytest.raises(SubscriberError):
        upsert_subscriber(store, "+13125550103", status="gone")
    with pytest.raises(SubscriberError):
        upsert_subscriber(store, "+13125550103", lat=10.0)
    with pytest.raises(PhoneError):
        upsert_subscriber(store, "not a number")
    assert store.scalar("SELECT count(*) FROM subscriber") == 0


def test_typed_attributes(store: Store) -> None:
    sid = upsert_subscriber(store, "+13125550103")
    define_attribute(store, "age", "number")
    define_attribute(store, "age", "number")  # idempotent
    with pytest.raises(AttributeValueError):
        define_attribute(store, "age", "text")
    set_attributes(store, sid, {"age": 41})
    with pytest.raises(AttributeValueError) as info:
        set_attributes(store, sid, {"age": "forty"})
    assert info.value.key == "age"
    with pytest.raises(AttributeValueError):
        set_attributes(store, sid, {"shoe": 44})  # unknown, caller did not allow defining
    set_attributes(store, sid, {
        "vip": True, "birthday": dt.date(1985, 3, 2), "tags": ["a", "b"],
        "home": GeoPoint(41.88, -87.63), "name": "Ann",
    }, define_missing=True)
    assert get_attributes(store, sid) == {
        "age": 41, "birthday": "1985-03-02T00:00:00+00:00", "home": [41.88, -87.63],
        "name": "Ann", "tags": ["a", "b"], "vip": True,
    }
    types = dict(tuple(r) for r in store.query("SELECT key, type FROM attribute_def"))
    assert types == {"age": "number", "vip": "bool", "birthday": "date", "tags": "list",
                     "home": "geo", "name": "text"}
    for bad in ({"vip": 1}, {"birthday": "1985"}, {"tags": [1]}, {"home": GeoPoint(91, 0)},
                {"age": True}, {"age": float("inf")}):
        with pytest.raises(AttributeValueError):
            set_attributes(store, sid, bad)
    set_attributes(store, sid, {"age": None})
    assert "age" not in get_attributes(store, sid)


def test_nanp_region_table_matches_the_installed_libphonenumber() -> None:
    # Fails after a phonenumbers upgrade that changes the data: regenerate the table then.
    from segmentation.nanp_regions import NANP_REGION, generate

    assert generate() == NANP_REGION
    assert (NANP_REGION["212"], NANP_REGION["416"], NANP_REGION["915"]) == ("NY", "ON", "TX")


us_regions = st.sampled_from(sorted(REGION_TZ["US"]))
nanp = st.tuples(st.sampled_from(["212", "312", "415", "915", "808", "907", "800", "602"]),
                 st.integers(2_000_000, 9_999_999)).map(lambda t: f"+1{t[0]}{t[1]}")


@settings(max_examples=80, deadline=None)
@given(number=nanp, region=st.one_of(st.none(), us_regions),
       tz=st.one_of(st.none(), st.sampled_from(["Europe/Paris", "Asia/Tokyo"])))
def test_zone_precedence_property(number: str, region: str | None, tz: str | None) -> None:
    try:
        e164 = normalise(number)
    except PhoneError:
        return  # not every generated exchange is assigned
    loc = locate(e164, tz=tz, region=region)
    if tz is not None:
        assert (loc.tz, loc.tz_source) == (tz, "explicit")
    elif region is not None:
        assert loc.tz_source == "region" and loc.tz in REGION_TZ["US"][region]
    else:
        assert loc.tz_source in ("area_code", "country", "default")
    if loc.tz_candidates is not None:
        assert loc.tz in loc.tz_candidates and len(loc.tz_candidates) > 1
    assert loc.country == "US" and loc.area_code == e164[2:5]


def test_postal_codes_of_three_countries() -> None:
    loc = locate("+12125550123", postal_code="T2P 1J9")  # Calgary, a New York number
    assert (loc.region, loc.tz, loc.tz_source) == ("AB", "America/Edmonton", "postal")
    loc = locate("+61412345678", postal_code="6000")  # Perth
    assert (loc.region, loc.tz, loc.tz_source) == ("WA", "Australia/Perth", "postal")
    loc = locate("+61412345678", postal_code="2600")  # Canberra
    assert (loc.region, loc.tz) == ("ACT", "Australia/Sydney")
    loc = locate("+12125550123", postal_code="nope")
    assert loc.tz_source == "area_code"


def test_a_subscriber_created_after_a_stop_starts_stopped(store: Store) -> None:
    """A STOP from a number not yet in the store is recorded against the number alone; the
    subscriber made later for that number must not start 'active' against its ledger."""
    from segmentation.consent import record_consent

    record_consent(store, "+12025550101", "marketing", "revoke", "keyword", actor="inbound",
                   keyword_text="STOP")
    record_consent(store, "+12025550102", "marketing", "revoke", "keyword", actor="inbound",
                   keyword_text="STOP")
    record_consent(store, "+12025550102", "marketing", "grant", "keyword", actor="inbound",
                   keyword_text="START")
    stopped = upsert_subscriber(store, "+12025550101")
    regranted = upsert_subscriber(store, "+12025550102")
    fresh = upsert_subscriber(store, "+12025550103")
    explicit = upsert_subscriber(store, "+12025550104", status="invalid")
    rows = dict(store.conn.execute("SELECT id, status FROM subscriber").fetchall())
    assert rows[stopped] == "stopped"
    assert rows[regranted] == "active"
    assert rows[fresh] == "active"
    assert rows[explicit] == "invalid"


# -- subscriber_hash: the keyed hash of the number (schema 11) ----------------------------------


def _hashes(store: Store) -> dict[str, str | None]:
    return dict(store.conn.execute(
        "SELECT s.phone_e164, h.phone_hash FROM subscriber s "
        "LEFT JOIN subscriber_hash h ON h.subscriber_id = s.id").fetchall())


def test_every_way_a_subscriber_is_created_stores_its_keyed_hash(
        store: Store, tmp_path: Path) -> None:
    from segmentation.csvio import import_subscribers
    from segmentation.ingest import Event, ingest_event
    upsert_subscriber(store, "(212) 555-0101")
    ingest_event(store, Event("link_click", START_MS, number="+12125550102"))
    csv_path = tmp_path / "subs.csv"
    csv_path.write_text("phone\n+12125550103\n", encoding="utf-8")
    import_subscribers(store, csv_path)
    # (segmentation.manual creates listed numbers through upsert_subscriber too)
    expected = {n: number_hash(HASH_KEY, n) for n in
                ("+12125550101", "+12125550102", "+12125550103")}
    assert _hashes(store) == expected
    # a profile update leaves it as it is (a row's number never changes)
    upsert_subscriber(store, "+12125550101", tz="Europe/London", status="stopped")
    assert _hashes(store) == expected
    # one side row per subscriber, and the subscriber row itself stays narrow
    assert store.scalar("SELECT COUNT(*) FROM subscriber_hash") == 3
    assert "phone_hash" not in {r[1] for r in store.conn.execute("PRAGMA table_info(subscriber)")}


def test_a_store_without_a_key_writes_no_hash_and_rehash_fills_it_in_batches(
        tmp_path: Path) -> None:
    path = tmp_path / "keyless.db"
    numbers = [f"+1212555{i:04d}" for i in range(101, 108)]
    with Store(path, clock=lambda: START_MS, default_region="US") as keyless:
        for n in numbers:
            upsert_subscriber(keyless, n)
        assert set(_hashes(keyless).values()) == {None}
        assert keyless.scalar("SELECT COUNT(*) FROM subscriber_hash") == 0
        with pytest.raises(StoreError, match="hash key"):
            fill_phone_hashes(keyless)
    with Store(path, clock=lambda: START_MS, hash_key=HASH_KEY) as keyed:
        keyed.conn.execute("INSERT INTO subscriber_hash(phone_hash, subscriber_id) "
                           "SELECT 'kept', id FROM subscriber WHERE phone_e164 = ?",
                           (numbers[0],))
        before = keyed.statistics().transactions_committed
        seen: list[RehashReport] = []
        report = fill_phone_hashes(keyed, batch_size=3, on_batch=seen.append)
        # six without a hash: batches of 3 and 3, then the empty read that ends it
        assert report == RehashReport(rows=6, changed=6)
        assert seen == [RehashReport(3, 3), RehashReport(6, 6)]
        assert keyed.statistics().transactions_committed - before == 3
        hashes = _hashes(keyed)
        assert hashes == {numbers[0]: "kept",
                          **{n: number_hash(HASH_KEY, n) for n in numbers[1:]}}
        assert fill_phone_hashes(keyed) == RehashReport(0, 0)
        # every=True rewrites all rows under the configured key; only the wrong one changes
        assert fill_phone_hashes(keyed, every=True, batch_size=4) == RehashReport(7, 1)
        assert _hashes(keyed) == {n: number_hash(HASH_KEY, n) for n in numbers}
        assert keyed.scalar("SELECT COUNT(*) FROM subscriber_hash") == len(numbers)
        assert fill_phone_hashes(keyed, every=True) == RehashReport(7, 0)
        with pytest.raises(ValueError):
            fill_phone_hashes(keyed, batch_size=0)


def test_rehash_tells_no_listener(store: Store) -> None:
    # no rule reads the hash: a change note would re-evaluate segments for nothing
    upsert_subscriber(store, "+12125550101")
    store.conn.execute("DELETE FROM subscriber_hash")
    changes: list[Change] = []
    store.add_listener(changes.append)
    assert fill_phone_hashes(store) == RehashReport(1, 1)
    assert not [c for c in changes if c]


def test_export_names_the_hash_as_a_hash_and_erasure_takes_it_with_the_row(
        store: Store) -> None:
    from segmentation.privacy import erase_subscriber, export_subscriber

    upsert_subscriber(store, "+12125550101")
    digest = number_hash(HASH_KEY, "+12125550101")
    upsert_subscriber(store, "+12125550102")
    store.conn.execute("DELETE FROM subscriber_hash WHERE phone_hash = ?",
                       (number_hash(HASH_KEY, "+12125550102"),))
    profile = export_subscriber(store, "+12125550101")["profile"]
    assert (profile["phone_e164"], profile["phone_hash"]) == ("+12125550101", digest)
    # the export's keys are as before the hash moved to its side table (schema 11)
    assert list(profile)[-3:] == ["created_ms", "phone_hash", "last_seen_ms"]
    assert export_subscriber(store, "+12125550102")["profile"]["phone_hash"] is None
    erase_subscriber(store, "+12125550101")
    # the side row went with the subscriber (ON DELETE CASCADE); only the list keeps the hash
    assert store.scalar("SELECT COUNT(*) FROM subscriber_hash WHERE phone_hash = ?",
                        (digest,)) == 0
    assert store.scalar("SELECT reason FROM suppression WHERE phone_hash = ?",
                        (digest,)) == "erasure"
