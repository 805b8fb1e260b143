"""Draft segment preview: *matched* / *sendable* / *send-now* (segmentation-compliance.md §5.4.7).

- **matched** — subscribers the rule matches now (or a stored segment's members);
- **sendable** — of those: subscriber status ``active`` (not stopped, erased or marked invalid:
  every stored number was validated as E.164 when it was stored, ``invalid`` marks one that
  cannot receive), current *marketing* consent granted (the latest ledger row, as
  :func:`segmentation.consent.is_sendable` reads it) and not suppressed (scope ``marketing``
  or ``all``);
- **send-now** — of the sendable: not inside quiet hours in the recipient's own time zone at
  this moment (default 21:00-08:00 local, §6.2: US federal 8 am - 9 pm).

The recipient's zones (:func:`recipient_zones`): every zone of ``tz_candidates`` when the
number is ambiguous (the strictest wins: quiet if quiet in any of them, as
``segmentation.phones`` asks of the send-time gate), else ``tz``, else the zones of the
subscriber's country (all of them, strictest again), else the default zone.

There is no frequency cap in the codebase yet, so send-now does not apply one; caps belong to
the send-time compliance gate.

One SQL pass groups the matched subscribers by (zone columns, reason code); the pure functions
here turn those groups into the three numbers for an injected ``now``. Zones are looked up once
per distinct group, never per subscriber.

Suppression: the list is keyed by an HMAC of the number (``segmentation.consent``), and the
``subscriber_hash`` side table (schema 11) holds the same HMAC of each subscriber's number under
the configured site key (``segmentation.subscribers``). The suppressed subscribers are found
from the (small) list through the side table's primary key, a set of ids built once per
statement; each matched row is one probe of that set: SQL, no Python per row. Subscribers
without a stored hash (written by a store opened without a key, or before schema 10, until
``smsgate subscriber rehash``) are hashed in Python as before (~6.5 us each); whether there are
any is decided by two counts, so a fully hashed store does not probe the side table per row.
A different site key is not supported: the stored hashes and the list are both under the one
key.

Cost at 1M subscribers / 10M events (2 cores, shared): the three-condition draft of
``bench/segments.py`` previews in ~0.4-0.7 s; the 522,780-member ``active_subscribers`` in
~1.3-1.9 s with an empty suppression list, and with a 10,000-number list in 1.5 s through the
side table vs 3.8 s hashing every consented number in Python (the fallback; same run,
``bench/segment_counts.py``, schema 11).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import phonenumbers
from phonenumbers import timezone as pn_timezone

from gateway.errors import SmsgateError
from segmentation.consent import number_hash, suppressed_hashes
from segmentation.membership import Membership
from segmentation.phones import COUNTRY_DEFAULT_TZ
from segmentation.rules.ast import InSegment, Rule, validate, walk
from segmentation.rules.compile import compile_filter
from segmentation.rules.dsl import parse

PROGRAM: Final = "marketing"

# reason codes computed per subscriber by the SQL (the first that applies)
SENDABLE: Final = 0
INACTIVE: Final = 1  # status stopped / invalid / erased
NO_CONSENT: Final = 2  # latest marketing consent row is not a grant (or there is none)
SUPPRESSED: Final = 3  # on the suppression list for marketing or all

_TIME_RE: Final = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)\Z")


class PreviewError(SmsgateError, ValueError):
    """Bad preview settings (quiet hours, time zone); the message names the value."""


@dataclass(frozen=True)
class QuietHours:
    """A local-time window in which marketing is not sent; ``start`` inclusive, ``end``
    exclusive, wrapping midnight when ``start > end``. ``start == end``: no quiet hours."""

    start: dt.time = dt.time(21, 0)
    end: dt.time = dt.time(8, 0)

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """``"21:00-08:00"`` (24-hour local times), or ``"none"``."""
        if text.strip().lower() == "none":
            return cls(dt.time(0, 0), dt.time(0, 0))
        start, sep, end = text.strip().partition("-")
        times = [_TIME_RE.match(x.strip()) for x in (start, end)]
        if not sep or times[0] is None or times[1] is None:
            raise PreviewError(f"quiet hours {text!r}: expected HH:MM-HH:MM, e.g. 21:00-08:00")
        a, b = (dt.time(int(m[1]), int(m[2])) for m in times if m is not None)
        return cls(a, b)

    def contains(self, local: dt.time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def __str__(self) -> str:
        if self.start == self.end:
            return "none"
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class Group:
    """Matched subscribers sharing zone columns and reason code (one SQL result row)."""

    tz: str | None
    tz_candidates: str | None  # JSON list, as stored
    country: str | None
    reason: int
    count: int


@dataclass(frozen=True)
class Preview:
    matched: int
    sendable: int
    send_now: int
    inactive: int  # matched but not status active
    no_consent: int  # active, but marketing consent not currently granted
    suppressed: int  # active, consented, but on the suppression list
    quiet: int  # sendable, but inside quiet hours in their zone now
    now_ms: int
    quiet_hours: str

    def to_json(self) -> dict[str, Any]:
        return {
            "matched": self.matched, "sendable": self.sendable, "send_now": self.send_now,
            "excluded": {"inactive": self.inactive, "no_consent": self.no_consent,
                         "suppressed": self.suppressed, "quiet_hours": self.quiet},
            "now_ms": self.now_ms, "quiet_hours": self.quiet_hours,
        }


# -- pure part ---------------------------------------------------------------------------------


def check_zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise PreviewError(f"{name!r} is not an IANA time zone") from None
    return name


@functools.lru_cache(maxsize=512)
def country_zones(country: str) -> tuple[str, ...]:
    """Every zone of a country (ISO 3166-1 alpha-2): its calling code's zones in
    libphonenumber's data (as ``segmentation.phones`` reads them). A shared calling code
    (+1) keeps every zone on it, which only makes quiet hours stricter."""
    code = phonenumbers.country_code_for_region(country.upper())
    if code == 0:
        return ()
    data: dict[str, tuple[str, ...]] = getattr(pn_timezone, "TIMEZONE_DATA", {})
    zones = tuple(sorted(z for z in data.get(str(code), ()) if z != "Etc/Unknown"))
    if not zones and country.upper() in COUNTRY_DEFAULT_TZ:
        return (COUNTRY_DEFAULT_TZ[country.upper()],)
    return zones


@functools.lru_cache(maxsize=4096)
def recipient_zones(tz: str | None, tz_candidates: str | None, country: str | None,
                    default_tz: str) -> tuple[str, ...]:
    """The zones whose quiet hours bind this recipient (module docstring); never empty."""
    if tz_candidates:
        try:
            cands = json.loads(tz_candidates)
        except ValueError:
            cands = None
        if isinstance(cands, list):
            zones = tuple(z for z in cands if isinstance(z, str) and _known(z))
            if zones:
                return zones
    if tz and _known(tz):
        return (tz,)
    if country:
        zones = tuple(z for z in country_zones(country) if _known(z))
        if zones:
            return zones
    return (default_tz,)


@functools.lru_cache(maxsize=1024)
def _known(zone: str) -> bool:
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def in_quiet_hours(zones: Iterable[str], now_ms: int, quiet: QuietHours) -> bool:
    """Is it quiet hours at ``now_ms`` in any of ``zones`` (the strictest applies)?"""
    utc = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    return any(quiet.contains(utc.astimezone(zoneinfo.ZoneInfo(z)).time()) for z in zones)


def summarise(groups: Iterable[Group], now_ms: int, quiet: QuietHours,
              default_tz: str = "UTC") -> Preview:
    """The three numbers (and why the others dropped out) from the grouped rows."""
    counts = {SENDABLE: 0, INACTIVE: 0, NO_CONSENT: 0, SUPPRESSED: 0}
    quiet_n = 0
    verdict: dict[tuple[str, ...], bool] = {}
    for g in groups:
        counts[g.reason] += g.count
        if g.reason != SENDABLE:
            continue
        zones = recipient_zones(g.tz, g.tz_candidates, g.country, default_tz)
        if zones not in verdict:
            verdict[zones] = in_quiet_hours(zones, now_ms, quiet)
        if verdict[zones]:
            quiet_n += g.count
    sendable = counts[SENDABLE]
    return Preview(
        matched=sum(counts.values()), sendable=sendable, send_now=sendable - quiet_n,
        inactive=counts[INACTIVE], no_consent=counts[NO_CONSENT],
        suppressed=counts[SUPPRESSED], quiet=quiet_n, now_ms=now_ms, quiet_hours=str(quiet),
    )


# -- the SQL path ------------------------------------------------------------------------------


_FUNCTION = "smsgate_preview_suppressed"


# Subscribers whose stored keyed hash is on the list: read from the (small) list through the
# side table's primary key, one probe per listed hash (CROSS JOIN keeps that order), never a
# walk of the side table. Built once per statement into a set of ids.
_SUPPRESSED_IDS = ("SELECT h.subscriber_id FROM suppression p CROSS JOIN subscriber_hash h "
                   f"ON h.phone_hash = p.phone_hash WHERE p.scope IN ('{PROGRAM}', 'all')")
# a subscriber with no stored hash (written without the key, until rehash)
_UNHASHED = "NOT EXISTS (SELECT 1 FROM subscriber_hash h WHERE h.subscriber_id = s.id)"


def _reason_sql(check_suppression: bool, fallback: bool = False) -> str:
    # One CASE per subscriber, the cheapest test first; CASE stops at the first branch taken,
    # so the consent look-up runs only for active subscribers and the suppression check only
    # for consented ones. Suppressed: the subscriber's id is in the set found from the list
    # (one probe per row); with ``fallback``, a subscriber with no stored hash is hashed in
    # Python as it was before the hash was stored (AND stops at the probe for the others).
    # consent by subscriber id (the consent_sub index, an integer key: measured 1.6x faster
    # than by number at 1M); the ledger rows of a subscriber's number are linked to it
    # (record_consent links them, upsert_subscriber links rows recorded before it existed)
    consent = ("COALESCE((SELECT c.action = 'grant' FROM consent c WHERE c.subscriber_id = "
               "s.id AND c.program = ? ORDER BY c.ts_ms DESC, c.id DESC LIMIT 1), 0)")
    sup = ""
    if check_suppression:
        sup = f" WHEN s.id IN ({_SUPPRESSED_IDS}) THEN {SUPPRESSED}"
        if fallback:
            sup += f" WHEN {_UNHASHED} AND {_FUNCTION}(s.phone_e164) THEN {SUPPRESSED}"
    return (f"CASE WHEN s.status <> 'active' THEN {INACTIVE} WHEN NOT {consent} THEN "
            f"{NO_CONSENT}{sup} ELSE {SENDABLE} END")


def _python_check(m: Membership) -> Callable[[str], bool]:
    """The per-row fallback for subscribers without a stored hash: hash the number in Python
    (~6.5 us) and look it up; the list is read on the first such row only."""
    key = m.store.hash_key
    hashes: frozenset[str] | None = None

    def suppressed(e164: str) -> bool:
        nonlocal hashes
        if hashes is None:
            hashes = suppressed_hashes(m.store, PROGRAM)
        return number_hash(key, e164) in hashes

    return suppressed


def _unhashed_subscribers(m: Membership) -> bool:
    """Whether some subscriber has no stored hash. Counts, not a walk: every side-table row
    belongs to a distinct subscriber (UNIQUE, foreign key with ON DELETE CASCADE), so equal
    counts mean every subscriber has one, and the per-row probe of the fallback is left out."""
    row = m.conn.execute("SELECT (SELECT COUNT(*) FROM subscriber) > "
                         "(SELECT COUNT(*) FROM subscriber_hash)").fetchone()
    return bool(row[0])


def _groups(m: Membership, source: str, params: Sequence[Any]) -> list[Group]:
    """Run the grouped pass over ``source`` (``FROM ... WHERE ...`` yielding rows of ``s``)."""
    listed = m.conn.execute("SELECT EXISTS (SELECT 1 FROM suppression WHERE scope IN (?, 'all'))",
                            (PROGRAM,)).fetchone()[0]
    fallback = False
    if listed:
        # Also when every subscriber has its hash: the side table holds hashes under the
        # configured key (segmentation.subscribers); a store opened without it cannot vouch.
        if not m.store.has_hash_key:
            raise PreviewError("the suppression list needs the site hash key to be checked")
        fallback = _unhashed_subscribers(m)
        if fallback:
            m.conn.create_function(_FUNCTION, 1, _python_check(m), deterministic=True)
    sql = (f"SELECT s.tz, s.tz_candidates, s.country, {_reason_sql(bool(listed), fallback)} "
           f"AS why, COUNT(*) {source} GROUP BY 1, 2, 3, 4")
    return [Group(tz, cands, country, int(why), int(n))
            for tz, cands, country, why, n in m.conn.execute(sql, (PROGRAM, *params))]


def preview_rule(m: Membership, rule: Rule | str, *, now: int | None = None,
                 quiet: QuietHours = QuietHours(), default_tz: str = "UTC") -> Preview:
    """Preview a draft rule (not stored): matched by the compiled query at ``now``."""
    tree = parse(rule) if isinstance(rule, str) else validate(rule)
    for node in walk(tree):
        if isinstance(node, InSegment):
            m.get(node.segment)  # an unknown segment is an error, not an empty set
    t = m.store.now_ms() if now is None else now
    q = compile_filter(tree, t)
    return summarise(_groups(m, q.sql, q.params), t, quiet, check_zone(default_tz))


def preview_segment(m: Membership, name: str, *, now: int | None = None,
                    quiet: QuietHours = QuietHours(), default_tz: str = "UTC") -> Preview:
    """Preview a stored segment: matched = its stored members (manual lists included)."""
    seg = m.get(name)
    t = m.store.now_ms() if now is None else now
    source = ("FROM segment_member sm CROSS JOIN subscriber s ON s.id = sm.subscriber_id "
              "WHERE sm.segment_id = ?")
    return summarise(_groups(m, source, (seg.id,)), t, quiet, check_zone(default_tz))
