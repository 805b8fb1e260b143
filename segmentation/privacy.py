"""Per-subscriber export and erasure (GDPR Art. 15/17, segmentation-compliance.md §6.5), and
segment export as CSV.

Erasure removes the person and keeps what the law and good practice need:

- deleted: the ``subscriber`` row and, by ``ON DELETE CASCADE``, attributes, events, daily
  roll-ups, traits, segment memberships, membership history, future-stamped event times and
  the stored keyed hash of the number (``subscriber_hash``);
- kept, pseudonymised: the consent ledger rows. They are legal evidence (FTC TSR keeps consent
  records 5 years, §6.4), so they are not deleted; their number is replaced by
  ``hmac-sha256:<keyed hash>`` (the same hash the suppression list uses, so the evidence stays
  attributable to whoever can prove the number), the subscriber link is cut, and any copy of
  the number inside ``keyword_text``, ``disclosure`` or ``evidence`` is replaced by ``[erased]``,
  and a dedupe key (an unkeyed content hash, brute-forceable over phone numbers) is re-hashed
  with the site key;
- added: a ``suppression`` row (scope ``marketing``, reason ``erasure``) keyed by the hash, so
  the number is never marketed to again by mistake (ICO practice, §6.5) — transactional
  messages the person asks for later still work;
- untouched: aggregate figures elsewhere (campaign statistics and the like). Segment
  ``member_count`` counters are decremented, since they count current members.

This module erases the segment store's tables only (segmentation imports nothing of the
daemon's); ``gateway.erasure.erase_number`` runs :func:`erase_segment_data` and the outbox,
inbox and MO-part erasure in one transaction over the whole file (``docs/privacy.md``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, TextIO

import phonenumbers

from gateway.errors import SmsgateError
from segmentation.consent import HASH_PREFIX, consent_history, number_hash
from segmentation.phones import normalise
from segmentation.store import Store
from segmentation.subscribers import get_attributes, iso_from_epoch_ms

ERASED = "[erased]"


class PrivacyError(SmsgateError, LookupError):
    """Nothing to export or erase for a number, or an unknown segment (``what``)."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")
        self.what = what
        self.why = why


@dataclass(frozen=True)
class ErasureReport:
    number_hash: str
    subscriber_id: int | None
    events: int
    attributes: int
    memberships: int
    consent_rows_pseudonymised: int
    suppression_added: bool
    removed: tuple[tuple[str, int], ...] = ()  # (table, rows deleted), subscriber's tables only

    @property
    def found_anything(self) -> bool:
        return (self.subscriber_id is not None or self.consent_rows_pseudonymised > 0
                or self.suppression_added)


def _iso(ms: int | None) -> str | None:
    # never raises: a time outside years 1..9999 (an older store's) is given as its number
    return None if ms is None else iso_from_epoch_ms(ms)


def _dicts(store: Store, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [dict(r) for r in store.query(sql, params)]


def export_subscriber(store: Store, number: str) -> dict[str, Any]:
    """Everything the store holds about ``number``, as a JSON-ready dict.

    ``profile`` is the whole subscriber row plus ``phone_hash`` from ``subscriber_hash``
    (schema 11; None when not stored): the keyed hash of the number (the suppression list's
    key), held about the person and so exported, under its own name; it is never given as
    the number.

    Raises :class:`PrivacyError` when there is neither a subscriber nor a consent row.
    """
    e164 = normalise(number, store.default_region)
    out = export_segment_data(store, e164)
    if out["profile"] is None and not out["consent"]:
        raise PrivacyError(e164, "no subscriber and no consent records")
    return out


def export_segment_data(store: Store, e164: str) -> dict[str, Any]:
    """:func:`export_subscriber` for a normalised number, without the "nothing stored" check
    (the gateway's export adds the outbox and inbox and decides that over all of them)."""
    # phone_hash lives in its side table (schema 11); the export keeps it under profile
    profile = store.query(
        "SELECT s.*, h.phone_hash FROM subscriber s LEFT JOIN subscriber_hash h "
        "ON h.subscriber_id = s.id WHERE s.phone_e164 = ?", (e164,))
    consent = [asdict(c) for c in consent_history(store, e164, as_written=True)]
    out: dict[str, Any] = {"number": e164, "exported_at": _iso(store.now_ms()),
                           "profile": None, "attributes": {}, "traits": None, "events": [],
                           "consent": consent, "memberships": [], "membership_history": []}
    if profile:
        p = dict(profile[0])
        sid = int(p["id"])
        if p.get("tz_candidates"):
            p["tz_candidates"] = json.loads(p["tz_candidates"])
        out["profile"] = p
        out["attributes"] = get_attributes(store, sid)
        traits = store.query("SELECT * FROM trait WHERE subscriber_id = ?", (sid,))
        out["traits"] = dict(traits[0]) if traits else None
        # kept under profile as before schema 9 moved it into trait (export keys are stable)
        p["last_seen_ms"] = out["traits"]["last_seen_ms"] if out["traits"] else None
        out["events"] = [
            {**e, "props": json.loads(e["props"]) if e["props"] else None, "at": _iso(e["ts_ms"])}
            for e in _dicts(store, "SELECT id, type, ts_ms, value, props, source, dedupe_key "
                            "FROM event WHERE subscriber_id = ? ORDER BY ts_ms, id", (sid,))
        ]
        out["memberships"] = _dicts(
            store, "SELECT g.name AS segment, m.entered_ms, m.version FROM segment_member m "
            "JOIN segment g ON g.id = m.segment_id WHERE m.subscriber_id = ? ORDER BY g.name",
            (sid,))
        out["membership_history"] = _dicts(
            store, "SELECT g.name AS segment, t.ts_ms, t.direction, t.cause, t.cause_ref "
            "FROM segment_transition t JOIN segment g ON g.id = t.segment_id "
            "WHERE t.subscriber_id = ? ORDER BY t.ts_ms, t.id", (sid,))
    if store.has_hash_key:
        out["suppression"] = _dicts(
            store, "SELECT scope, reason, ts_ms FROM suppression WHERE phone_hash = ?",
            (number_hash(store.hash_key, e164),))
    return out


def number_forms(e164: str) -> list[str]:
    """Spellings of a number that may appear in free text, longest first."""
    forms = {e164, e164.lstrip("+")}
    try:
        n = phonenumbers.parse(e164, None)
        forms.add(phonenumbers.national_significant_number(n))
        for fmt in (phonenumbers.PhoneNumberFormat.NATIONAL,
                    phonenumbers.PhoneNumberFormat.INTERNATIONAL):
            forms.add(phonenumbers.format_number(n, fmt))
    except phonenumbers.NumberParseException:
        pass
    return sorted(forms, key=len, reverse=True)


def _scrub(text: str | None, forms: list[str]) -> str | None:
    if text is None:
        return None
    for form in forms:
        text = text.replace(form, ERASED)
    return text


def _rekey(store: Store, dedupe_key: str | None) -> str | None:
    # Import dedupe keys are unkeyed sha256 over row content including the number: a phone
    # number space is small enough to brute-force them, so they are re-hashed with the key.
    if dedupe_key is None:
        return None
    return "erased:" + number_hash(store.hash_key, dedupe_key)


# Tables that hold rows per subscriber, all removed by ``ON DELETE CASCADE`` (segmentation.schema);
# each is keyed or indexed subscriber first (segment_member since schema 13).
_CASCADED: tuple[tuple[str, str], ...] = (
    ("subscriber_attr", "subscriber_id = ?"),
    ("event", "subscriber_id = ?"),
    ("event_daily", "subscriber_id = ?"),
    ("trait", "subscriber_id = ?"),
    ("segment_member", "subscriber_id = ?"),
    ("segment_transition", "subscriber_id = ?"),
    ("event_future", "subscriber_id = ?"),
    ("subscriber_hash", "subscriber_id = ?"),
)


def erase_subscriber(store: Store, number: str, *, reason: str = "erasure") -> ErasureReport:
    """Erase ``number`` as the module docstring describes; all or nothing.

    Raises :class:`PrivacyError` when nothing was stored (no subscriber, no consent row, and
    the suppression was already there).
    """
    e164 = normalise(number, store.default_region)
    with store.atomic():
        report = erase_segment_data(store, e164, reason=reason)
        if not report.found_anything:
            raise PrivacyError(e164, "nothing stored for this number")
    return report


def erase_segment_data(store: Store, e164: str, *, reason: str = "erasure") -> ErasureReport:
    """The segment store's part of an erasure, for a normalised number, in the caller's
    transaction when there is one (``gateway.erasure`` adds the outbox and inbox to it)."""
    digest = number_hash(store.hash_key, e164)
    forms = number_forms(e164)
    with store.atomic():
        conn = store.conn
        sid_raw = store.scalar("SELECT id FROM subscriber WHERE phone_e164 = ?", (e164,))
        sid = None if sid_raw is None else int(sid_raw)
        removed: dict[str, int] = {}
        if sid is not None:
            removed["subscriber"] = 1
            for table, where in _CASCADED:
                removed[table] = int(store.scalar(
                    f"SELECT count(*) FROM {table} WHERE {where}", (sid,)))
            conn.execute(
                "UPDATE segment SET member_count = max(member_count - 1, 0) WHERE id IN "
                "(SELECT segment_id FROM segment_member WHERE subscriber_id = ?)", (sid,))
            conn.execute("DELETE FROM subscriber WHERE id = ?", (sid,))  # cascades
        rows = conn.execute(
            "SELECT id, keyword_text, disclosure, evidence, dedupe_key FROM consent "
            "WHERE phone_e164 = ?", (e164,)).fetchall()
        conn.executemany(
            "UPDATE consent SET phone_e164 = ?, subscriber_id = NULL, keyword_text = ?, "
            "disclosure = ?, evidence = ?, dedupe_key = ? WHERE id = ?",
            [(HASH_PREFIX + digest, _scrub(kw, forms), _scrub(disc, forms), _scrub(ev, forms),
              _rekey(store, key), id_) for id_, kw, disc, ev, key in rows],
        )
        added = conn.execute(
            "INSERT INTO suppression(phone_hash, scope, reason, ts_ms) VALUES (?, 'marketing', "
            "?, ?) ON CONFLICT(phone_hash, scope) DO NOTHING", (digest, reason, store.now_ms()),
        ).rowcount == 1
        store.note_change(subscriber_ids={sid} if sid is not None else (),
                          attributes={"erased", "suppression"})
    return ErasureReport(digest, sid, removed.get("event", 0), removed.get("subscriber_attr", 0),
                         removed.get("segment_member", 0), len(rows), added,
                         tuple(sorted(removed.items())))


SEGMENT_CSV_COLUMNS = ("phone", "country", "region", "tz", "locale", "entered_at")


def segment_members(store: Store, segment: str) -> Iterator[tuple[Any, ...]]:
    """Rows of :data:`SEGMENT_CSV_COLUMNS` for a segment's current members, by number."""
    seg_id = store.scalar("SELECT id FROM segment WHERE name = ?", (segment,))
    if seg_id is None:
        raise PrivacyError(segment, "no such segment")
    cur = store.conn.execute(
        "SELECT s.phone_e164, s.country, s.region, s.tz, s.locale, m.entered_ms "
        "FROM segment_member m JOIN subscriber s ON s.id = m.subscriber_id "
        "WHERE m.segment_id = ? ORDER BY s.phone_e164", (seg_id,))
    for phone, country, region, tz, locale, entered in cur:
        yield phone, country, region, tz, locale, _iso(entered)


def export_segment_csv(store: Store, segment: str, out: TextIO) -> int:
    """Write a segment's members as CSV (streamed); returns how many rows were written."""
    rows = segment_members(store, segment)
    first = next(rows, None)  # resolve the segment (and fail) before writing a header
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SEGMENT_CSV_COLUMNS)
    if first is None:
        return 0
    writer.writerow(first)
    n = 1
    for row in rows:
        writer.writerow(row)
        n += 1
    return n
