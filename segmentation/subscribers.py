"""Subscribers (keyed by E.164) and their typed attributes.

Attribute types (``attribute_def.type``) and how a value is stored in ``subscriber_attr``:

======  ==========================================  =======================================
type    Python value accepted                       columns
======  ==========================================  =======================================
text    ``str``                                      value_text
number  ``int`` / ``float`` (not bool, finite)       value_num
bool    ``bool``                                     value_num (0/1)
date    ``datetime.date`` / ``datetime`` / epoch ms  value_num (epoch ms, UTC; a date is 00:00)
list    list/tuple of ``str``                        value_text (JSON array)
geo     :class:`GeoPoint` (lat, lon in degrees)      value_num = lat, value_num2 = lon
======  ==========================================  =======================================

A date lies in years 1 to 9999 (:data:`MIN_DATE_MS` .. ``MAX_TIMESTAMP_MS``): what ISO 8601 and
Python's calendar can write, so every stored date can be exported. Birth dates before 1970 are
real data, so dates (unlike event and consent times, which start in 1970) may be negative.
:func:`iso_from_epoch_ms` still formats any value, for stores written before the bound.

Setting a value checks it against the key's type. An unknown key is an error unless the caller
passes ``define_missing=True``; then the type is inferred from the Python value (``str`` ->
text, ``bool`` -> bool, number -> number, date/datetime -> date, list -> list, GeoPoint -> geo).
Setting ``None`` removes the value.

``subscriber_hash`` (schema 11) holds HMAC-SHA256 of each subscriber's ``phone_e164`` under the
site key (the suppression list's key), one row per subscriber, written when the subscriber is
created by a store opened with a key; a subscriber written without one has no row until
:func:`fill_phone_hashes` (``smsgate subscriber rehash``) writes it. A row's number never changes
(it is the row's identity), so neither does its hash. It is a side table, not a subscriber
column, because every live count walks subscriber rows and only the preview reads the hash: it
goes from the suppression list to subscriber ids in SQL (:mod:`segmentation.preview`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import SmsgateError
from segmentation.consent import number_hash
from segmentation.phones import locate, normalise
from segmentation.rules.ast import MAX_TIMESTAMP_MS
from segmentation.store import Store

ATTRIBUTE_TYPES: tuple[str, ...] = ("text", "number", "bool", "date", "list", "geo")
STATUSES: tuple[str, ...] = ("active", "stopped", "invalid", "erased")


class AttributeValueError(SmsgateError, ValueError):
    """A subscriber attribute that cannot be set as asked (``key``, ``value``, ``why``)."""

    def __init__(self, key: str, value: object, why: str) -> None:
        super().__init__(f"attribute {key!r} = {value!r}: {why}")
        self.key = key
        self.value = value
        self.why = why


class SubscriberError(SmsgateError, ValueError):
    """A profile field that cannot be stored (``field``, ``value``, ``why``)."""

    def __init__(self, field: str, value: object, why: str) -> None:
        super().__init__(f"{field} = {value!r}: {why}")
        self.field = field
        self.value = value
        self.why = why


@dataclass(frozen=True)
class GeoPoint:
    lat: float
    lon: float


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def to_epoch_ms(value: dt.date | dt.datetime | int) -> int:
    """Epoch ms (UTC) of a date (00:00 UTC), a datetime (naive = UTC) or an int of epoch ms."""
    if isinstance(value, bool):
        raise TypeError("a bool is not a date")
    if isinstance(value, int):
        return value
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return (aware - _EPOCH) // dt.timedelta(milliseconds=1)
    if isinstance(value, dt.date):
        return to_epoch_ms(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC))
    raise TypeError(f"not a date: {value!r}")


def from_epoch_ms(ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ms)


MIN_DATE_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z, the first instant datetime can hold


def iso_from_epoch_ms(ms: float) -> str:
    """ISO 8601 (UTC) of epoch milliseconds, for exports. A value no calendar date has (outside
    years 1 to 9999, or not finite) is given as its number, as text: only a store written
    before times and dates were bounded holds one, and a right-of-access export must not fail
    on it."""
    try:
        return from_epoch_ms(int(ms)).isoformat()
    except (OverflowError, ValueError):
        return str(ms)


def infer_type(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, GeoPoint):
        return "geo"
    raise TypeError(f"no attribute type for {type(value).__name__}")


Columns = tuple[str | None, float | None, float | None]


def encode_value(key: str, type_: str, value: object) -> Columns:
    """(value_text, value_num, value_num2) for ``value`` of attribute ``key``, or raise."""
    if type_ == "text":
        if not isinstance(value, str):
            raise AttributeValueError(key, value, "expected text")
        return value, None, None
    if type_ == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AttributeValueError(key, value, "expected a number")
        if not math.isfinite(value):
            raise AttributeValueError(key, value, "expected a finite number")
        return None, float(value), None
    if type_ == "bool":
        if not isinstance(value, bool):
            raise AttributeValueError(key, value, "expected true or false")
        return None, 1.0 if value else 0.0, None
    if type_ == "date":
        if isinstance(value, bool) or not isinstance(value, int | dt.date):
            raise AttributeValueError(key, value, "expected a date")
        ms = to_epoch_ms(value)
        if not MIN_DATE_MS <= ms <= MAX_TIMESTAMP_MS:
            raise AttributeValueError(key, value, "out of range: dates run from year 1 to 9999")
        return None, float(ms), None
    if type_ == "list":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise AttributeValueError(key, value, "expected a list of text")
        return json.dumps(list(value), separators=(",", ":"), ensure_ascii=False), None, None
    if type_ == "geo":
        if not isinstance(value, GeoPoint):
            raise AttributeValueError(key, value, "expected a point (lat, lon)")
        if not (-90.0 <= value.lat <= 90.0 and -180.0 <= value.lon <= 180.0):
            raise AttributeValueError(key, value, "latitude/longitude out of range")
        return None, float(value.lat), float(value.lon)
    raise AttributeValueError(key, value, f"unknown attribute type {type_!r}")


def decode_value(type_: str, text: str | None, num: float | None, num2: float | None) -> object:
    """The Python value of a ``subscriber_attr`` row (JSON-friendly: dates as ISO strings)."""
    if type_ == "text":
        return text
    if type_ == "number":
        return int(num) if num is not None and num.is_integer() else num
    if type_ == "bool":
        return bool(num)
    if type_ == "date":
        return None if num is None else iso_from_epoch_ms(num)
    if type_ == "list":
        return json.loads(text) if text is not None else None
    if type_ == "geo":
        return None if num is None or num2 is None else [num, num2]
    return text


def define_attribute(store: Store, key: str, type_: str, description: str | None = None) -> None:
    """Define ``key`` with ``type_``; idempotent for the same type, an error for another."""
    if type_ not in ATTRIBUTE_TYPES:
        raise AttributeValueError(key, type_, f"type must be one of {', '.join(ATTRIBUTE_TYPES)}")
    if not key or not key.replace("_", "").replace("-", "").isalnum():
        raise AttributeValueError(key, type_, "key must be letters, digits, '_' or '-'")
    existing = store.scalar("SELECT type FROM attribute_def WHERE key = ?", (key,))
    if existing is not None:
        if existing != type_:
            raise AttributeValueError(key, type_, f"already defined as {existing}")
        return
    with store.atomic():
        store.conn.execute(
            "INSERT INTO attribute_def(key, type, description, created_ms) VALUES (?, ?, ?, ?)",
            (key, type_, description, store.now_ms()),
        )


def attribute_types(store: Store) -> dict[str, str]:
    return {r[0]: r[1] for r in store.conn.execute("SELECT key, type FROM attribute_def")}


def find_subscriber(store: Store, number: str) -> int | None:
    """The id of ``number`` (any format the store's default region can read), or None."""
    e164 = normalise(number, store.default_region)
    found = store.scalar("SELECT id FROM subscriber WHERE phone_e164 = ?", (e164,))
    return None if found is None else int(found)


# -- the keyed hash of the number (subscriber_hash) ------------------------------------------

# rows per transaction: the write lock is held ~0.26 s at a time (1M rows in 26 s: every
# batch writes hashes all over the primary key, ~half its leaves; the column did it in 6.9 s)
REHASH_BATCH = 10_000


@dataclass(frozen=True)
class RehashReport:
    rows: int  # subscribers hashed (those without a hash row, or with every=True all of them)
    changed: int  # of those, subscribers whose stored hash was missing or different


def phone_hash_of(store: Store, e164: str) -> str | None:
    """The ``subscriber_hash`` of a new subscriber: the suppression list's keyed hash of the
    number under the store's key (:func:`segmentation.consent.number_hash`), or None when the
    store was opened without a key (``smsgate subscriber rehash`` writes it later)."""
    return number_hash(store.hash_key, e164) if store.has_hash_key else None


# Insert or replace one subscriber's hash; the WHERE keeps an equal hash out of ``changed``
# (an upsert that updates nothing is not a change).
_WRITE_HASH = (
    "INSERT INTO subscriber_hash(phone_hash, subscriber_id) VALUES (?1, ?2) "
    "ON CONFLICT(subscriber_id) DO UPDATE SET phone_hash = excluded.phone_hash "
    "WHERE phone_hash IS NOT excluded.phone_hash")


def fill_phone_hashes(store: Store, *, every: bool = False, batch_size: int = REHASH_BATCH,
                      on_batch: Callable[[RehashReport], None] | None = None) -> RehashReport:
    """Write the ``subscriber_hash`` row of every subscriber that has none (``every``: of all
    of them), in id order, one transaction per ``batch_size`` subscribers, so a running daemon
    waits at most one batch for the write lock. Raises
    :class:`~segmentation.store.StoreError` without a key.

    The table holds the hash under the key the store is opened with; ``every`` rewrites rows
    written under another one, but the suppression list cannot be re-keyed (it keeps no
    numbers), so changing the site key is not supported. Listeners are not told: no rule reads
    the hash, and a change note per row would re-evaluate every segment for nothing.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    key = store.hash_key
    where = "" if every else (
        " AND NOT EXISTS (SELECT 1 FROM subscriber_hash h WHERE h.subscriber_id = s.id)")
    last, rows, changed = 0, 0, 0
    while True:
        with store.atomic():
            batch = store.conn.execute(
                f"SELECT s.id, s.phone_e164 FROM subscriber s WHERE s.id > ?{where} "
                "ORDER BY s.id LIMIT ?", (last, batch_size)).fetchall()
            if batch:
                # in hash order: the primary key's leaves are then written left to right
                cur = store.conn.executemany(
                    _WRITE_HASH, sorted((number_hash(key, e164), sid) for sid, e164 in batch))
                changed += max(cur.rowcount, 0)
        if not batch:
            return RehashReport(rows, changed)
        rows += len(batch)
        last = int(batch[-1][0])
        if on_batch is not None:
            on_batch(RehashReport(rows, changed))


_PROFILE_FIELDS = ("region", "postal_code", "tz", "locale", "lat", "lon", "status")


def _status_from_ledger(store: Store, e164: str) -> str:
    """A new subscriber whose number already opted out (a STOP from a number we did not know
    yet) starts 'stopped', not 'active': status must agree with the ledger's latest marketing
    row, which an operator and the send preview read through it."""
    row = store.conn.execute(
        "SELECT action FROM consent WHERE phone_e164 = ? AND program = 'marketing' "
        "ORDER BY ts_ms DESC, id DESC LIMIT 1", (e164,)
    ).fetchone()
    return "stopped" if row is not None and row[0] == "revoke" else "active"


def upsert_subscriber(
    store: Store,
    number: str,
    *,
    region: str | None = None,
    postal_code: str | None = None,
    tz: str | None = None,
    locale: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    status: str | None = None,
) -> int:
    """Create or update the subscriber for ``number``; returns its id.

    Only the fields given (not None) change; location (country, area code, region, zone) is
    re-derived from the number and the stored hints whenever a hint changes. ``created_ms`` is
    set once; ``last_seen_ms`` is moved by events, not by profile updates.
    """
    e164 = normalise(number, store.default_region)
    if status is not None and status not in STATUSES:
        raise SubscriberError("status", status, f"must be one of {', '.join(STATUSES)}")
    if (lat is None) != (lon is None):
        raise SubscriberError("lat/lon", (lat, lon), "give both latitude and longitude")
    if lat is not None and lon is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise SubscriberError("lat/lon", (lat, lon), "out of range")
    given: dict[str, Any] = {
        k: v for k, v in zip(
            _PROFILE_FIELDS, (region, postal_code, tz, locale, lat, lon, status), strict=True
        ) if v is not None
    }
    with store.atomic():
        row = store.conn.execute(
            "SELECT id, region, postal_code, tz, tz_source, locale, lat, lon, status "
            "FROM subscriber WHERE phone_e164 = ?", (e164,)
        ).fetchone()
        if row is None:
            loc = locate(e164, tz=tz, region=region, postal_code=postal_code)
            if status is None:
                status = _status_from_ledger(store, e164)
            cur = store.conn.execute(
                "INSERT INTO subscriber(phone_e164, phone_raw, country, region, area_code, "
                "postal_code, lat, lon, tz, tz_source, tz_candidates, locale, status, created_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (e164, number, loc.country, loc.region, loc.area_code, postal_code, lat, lon,
                 loc.tz, loc.tz_source,
                 json.dumps(list(loc.tz_candidates)) if loc.tz_candidates else None,
                 locale, status, store.now_ms()),
            )
            sub_id = int(cur.lastrowid or 0)
            digest = phone_hash_of(store, e164)
            if digest is not None:
                store.conn.execute("INSERT INTO subscriber_hash(phone_hash, subscriber_id) "
                                   "VALUES (?, ?)", (digest, sub_id))
            # Every subscriber has a trait row (zeros and NULLs until events arrive), so rule
            # SQL can join it without LEFT JOIN NULL handling for "orders = 0".
            store.conn.execute("INSERT INTO trait(subscriber_id) VALUES (?)", (sub_id,))
            # Consent recorded before the subscriber existed (e.g. a STOP) is linked now.
            store.conn.execute(
                "UPDATE consent SET subscriber_id = ? WHERE phone_e164 = ? "
                "AND subscriber_id IS NULL", (sub_id, e164),
            )
            store.note_change(subscriber_ids={sub_id},
                              attributes={f"profile.{k}" for k in ("created", *given)})
            return sub_id
        sub_id = int(row[0])
        old = dict(zip(("region", "postal_code", "tz", "tz_source", "locale", "lat", "lon",
                        "status"), row[1:], strict=True))
        changed = {k: v for k, v in given.items() if old.get(k) != v}
        if not changed:
            return sub_id
        sets = dict(changed)
        if {"region", "postal_code", "tz"} & changed.keys():
            explicit_tz = tz if tz is not None else (
                old["tz"] if old["tz_source"] == "explicit" else None)
            loc = locate(e164, tz=explicit_tz,
                         region=region if region is not None else old["region"],
                         postal_code=postal_code if postal_code is not None
                         else old["postal_code"])
            sets.update(region=loc.region, tz=loc.tz, tz_source=loc.tz_source,
                        tz_candidates=json.dumps(list(loc.tz_candidates))
                        if loc.tz_candidates else None)
        assignments = ", ".join(f"{col} = ?" for col in sets)  # column names are ours, fixed
        store.conn.execute(
            f"UPDATE subscriber SET {assignments} WHERE id = ?", (*sets.values(), sub_id)
        )
        store.note_change(subscriber_ids={sub_id}, attributes={f"profile.{k}" for k in sets})
        return sub_id


def set_attributes(
    store: Store,
    subscriber_id: int,
    values: Mapping[str, object],
    *,
    define_missing: bool = False,
) -> None:
    """Set (or with ``None`` remove) typed attributes of one subscriber, all or nothing."""
    types = attribute_types(store)
    now = store.now_ms()
    with store.atomic():
        for key, value in values.items():
            if value is None:
                store.conn.execute(
                    "DELETE FROM subscriber_attr WHERE subscriber_id = ? AND key = ?",
                    (subscriber_id, key),
                )
                continue
            type_ = types.get(key)
            if type_ is None:
                if not define_missing:
                    raise AttributeValueError(key, value, "unknown attribute (define it first)")
                try:
                    type_ = infer_type(value)
                except TypeError as exc:
                    raise AttributeValueError(key, value, str(exc)) from None
                define_attribute(store, key, type_)
                types[key] = type_
            text, num, num2 = encode_value(key, type_, value)
            store.conn.execute(
                "INSERT INTO subscriber_attr(subscriber_id, key, value_text, value_num, "
                "value_num2, updated_ms) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(subscriber_id, key) DO UPDATE SET value_text = excluded.value_text, "
                "value_num = excluded.value_num, value_num2 = excluded.value_num2, "
                "updated_ms = excluded.updated_ms",
                (subscriber_id, key, text, num, num2, now),
            )
        store.note_change(subscriber_ids={subscriber_id}, attributes=set(values))


def get_attributes(store: Store, subscriber_id: int) -> dict[str, object]:
    rows = store.conn.execute(
        "SELECT a.key, d.type, a.value_text, a.value_num, a.value_num2 FROM subscriber_attr a "
        "JOIN attribute_def d ON d.key = a.key WHERE a.subscriber_id = ? ORDER BY a.key",
        (subscriber_id,),
    )
    return {key: decode_value(type_, t, n, n2) for key, type_, t, n, n2 in rows}
