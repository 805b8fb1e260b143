"""Consent ledger and suppression list (segmentation-compliance.md §6.4, §6.5).

The ledger is append-only legal evidence: one row per grant or revoke, per E.164 number and
program (``marketing`` / ``transactional``), with the time, the method (``keyword`` with the exact
inbound text, ``web_form``, ``point_of_sale``, ``import`` with the file's sha256, ``api``,
``operator``), the disclosure text shown, evidence JSON and the actor. Rows are never UPDATEd,
except by erasure, which replaces the number by its keyed hash (see :mod:`segmentation.privacy`).

*Current consent* for (number, program) is the latest row: greatest ``ts_ms``, ties broken by
insertion order (``id``). The send-time gate asks :func:`is_sendable` (opt-in only):

- ``marketing`` needs a current ``grant`` and no suppression (scope ``marketing`` or ``all``);
- ``transactional`` needs no current ``revoke`` and no suppression (scope ``transactional`` or
  ``all``) — a number with no transactional row at all may receive transactional messages.

The suppression list is keyed by HMAC-SHA256(site key, E.164) so it survives erasure without
keeping the number. A suppression is lifted only by :func:`unsuppress` (an operator decision); a
later grant does not lift it, so re-importing an old list cannot re-contact an erased person.

Retention: FTC TSR keeps consent records 5 years (§6.4); :func:`prune_consent` deletes rows older
than a cutoff but never the latest row of a (number, program), which is the current state, and
refuses a cutoff less than :data:`RETENTION_MS` before now (it would delete evidence the law says
to keep).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import SmsgateError
from segmentation.phones import normalise
from segmentation.rules.ast import MAX_TIMESTAMP_MS
from segmentation.store import Store

PROGRAMS: tuple[str, ...] = ("marketing", "transactional")
ACTIONS: tuple[str, ...] = ("grant", "revoke")
METHODS: tuple[str, ...] = ("keyword", "web_form", "point_of_sale", "import", "api", "operator")
SCOPES: tuple[str, ...] = ("marketing", "transactional", "all")

RETENTION_MS = 5 * 365 * 86_400_000 + 86_400_000  # 5 years, one leap day included (FTC TSR)
HASH_PREFIX = "hmac-sha256:"  # how an erased number is written in consent.phone_e164


class ConsentError(SmsgateError, ValueError):
    """A consent row that cannot be recorded (``field``, ``value``, ``why``)."""

    def __init__(self, field: str, value: object, why: str) -> None:
        super().__init__(f"consent {field} = {value!r}: {why}")
        self.field = field
        self.value = value
        self.why = why


@dataclass(frozen=True)
class ConsentEntry:
    id: int
    phone_e164: str
    subscriber_id: int | None
    program: str
    action: str
    ts_ms: int
    method: str
    keyword_text: str | None
    disclosure: str | None
    evidence: dict[str, Any] | None
    actor: str


def number_hash(key: bytes, e164: str) -> str:
    """Hex HMAC-SHA256 of an E.164 number under the site key (the suppression key)."""
    return hmac.new(key, e164.encode("ascii"), hashlib.sha256).hexdigest()


def _check(program: str, action: str, method: str, actor: str, keyword_text: str | None,
           evidence: Mapping[str, Any] | None) -> None:
    if program not in PROGRAMS:
        raise ConsentError("program", program, f"must be one of {', '.join(PROGRAMS)}")
    if action not in ACTIONS:
        raise ConsentError("action", action, "must be grant or revoke")
    if method not in METHODS:
        raise ConsentError("method", method, f"must be one of {', '.join(METHODS)}")
    if not actor:
        raise ConsentError("actor", actor, "say who recorded it")
    if method == "keyword" and not keyword_text:
        raise ConsentError("keyword_text", keyword_text, "a keyword row keeps the exact text")
    if method == "import" and not (evidence and evidence.get("file_sha256")):
        raise ConsentError("evidence", evidence, "an import row keeps the file's sha256")


def record_consent(
    store: Store,
    number: str,
    program: str,
    action: str,
    method: str,
    *,
    actor: str,
    ts_ms: int | None = None,
    keyword_text: str | None = None,
    disclosure: str | None = None,
    evidence: Mapping[str, Any] | None = None,
    dedupe_key: str | None = None,
) -> int | None:
    """Append one ledger row; returns its id, or None when ``dedupe_key`` was recorded before.

    The row is linked to the subscriber when one exists for the number (a STOP from an unknown
    number is still recorded; :func:`segmentation.subscribers.upsert_subscriber` links it later).
    """
    _check(program, action, method, actor, keyword_text, evidence)
    if ts_ms is not None and (isinstance(ts_ms, bool) or not isinstance(ts_ms, int)
                              or not 0 <= ts_ms <= MAX_TIMESTAMP_MS):
        raise ConsentError("ts_ms", ts_ms, "epoch milliseconds from 1970 to the end of year 9999")
    e164 = normalise(number, store.default_region)
    when = store.now_ms() if ts_ms is None else ts_ms
    evidence_json = (
        json.dumps(dict(evidence), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if evidence else None
    )
    with store.atomic():
        sid = store.scalar("SELECT id FROM subscriber WHERE phone_e164 = ?", (e164,))
        cur = store.conn.execute(
            "INSERT INTO consent(subscriber_id, phone_e164, program, action, ts_ms, method, "
            "keyword_text, disclosure, evidence, actor, dedupe_key) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(dedupe_key) DO NOTHING",
            (sid, e164, program, action, when, method, keyword_text, disclosure, evidence_json,
             actor, dedupe_key),
        )
        if cur.rowcount != 1:
            return None
        store.note_change(subscriber_ids={int(sid)} if sid is not None else (),
                          attributes={f"consent.{program}"})
        return int(cur.lastrowid or 0)


# What a keyword does to ``subscriber.status`` (segmentation.schema): a STOP stops an active
# subscriber, a START/UNSTOP/YES after it makes them active again. Only these two statuses
# move: 'invalid' (a number that cannot receive) is not cured by a text, and an operator's
# other statuses are theirs. The ledger stays the gate; the status is what people read.
KEYWORD_STATUS: dict[str, tuple[str, str]] = {
    "revoke": ("active", "stopped"),
    "grant": ("stopped", "active"),
}


def set_status_for_keyword(store: Store, number: str, action: str) -> int | None:
    """Move an existing subscriber's status as :data:`KEYWORD_STATUS` says for ``action``
    (``revoke`` / ``grant``); returns the subscriber id when it changed, else None. Run it in
    the transaction that records the ledger row, so the two are never seen apart."""
    if action not in KEYWORD_STATUS:
        raise ConsentError("action", action, "must be grant or revoke")
    try:
        e164 = normalise(number, store.default_region)
    except SmsgateError:
        return None  # not a number the store accepts, so no subscriber has it
    old, new = KEYWORD_STATUS[action]
    with store.atomic():
        row = store.conn.execute(
            "UPDATE subscriber SET status = ? WHERE phone_e164 = ? AND status = ? RETURNING id",
            (new, e164, old),
        ).fetchall()
        if not row:
            return None
        sid = int(row[0][0])
        store.note_change(subscriber_ids={sid}, attributes={"profile.status"})
        return sid


def _entry(row: tuple[Any, ...]) -> ConsentEntry:
    (id_, phone, sid, program, action, ts, method, kw, disclosure, evidence, actor) = row
    return ConsentEntry(id_, phone, sid, program, action, ts, method, kw, disclosure,
                        json.loads(evidence) if evidence else None, actor)


_COLUMNS = ("id, phone_e164, subscriber_id, program, action, ts_ms, method, keyword_text, "
            "disclosure, evidence, actor")


def current_consent(store: Store, number: str, program: str) -> ConsentEntry | None:
    """The latest ledger row for (number, program), or None when there is none."""
    e164 = normalise(number, store.default_region)
    row = store.conn.execute(
        f"SELECT {_COLUMNS} FROM consent WHERE phone_e164 = ? AND program = ? "
        "ORDER BY ts_ms DESC, id DESC LIMIT 1",
        (e164, program),
    ).fetchone()
    return None if row is None else _entry(row)


def consent_history(store: Store, number: str, *, as_written: bool = False
                    ) -> list[ConsentEntry]:
    """Every ledger row of a number, oldest first (for export and "why"). ``as_written``:
    ``number`` is already the stored spelling (E.164, or a number the inbox recorded as written
    because the numbering-plan check rejects it), so it is looked up without normalising."""
    e164 = number if as_written else normalise(number, store.default_region)
    rows = store.conn.execute(
        f"SELECT {_COLUMNS} FROM consent WHERE phone_e164 = ? ORDER BY ts_ms, id", (e164,)
    )
    return [_entry(r) for r in rows]


def _suppressed(store: Store, e164: str, program: str) -> bool:
    if not store.has_hash_key:
        # Without the key nothing can have been suppressed by hash; refuse rather than guess.
        raise SmsgateError("suppression check needs the site hash key")
    found = store.scalar(
        "SELECT 1 FROM suppression WHERE phone_hash = ? AND scope IN (?, 'all')",
        (number_hash(store.hash_key, e164), program),
    )
    return found is not None


def suppressed_hashes(store: Store, program: str) -> frozenset[str]:
    """Every keyed hash on the list for ``program`` (scope ``program`` or ``all``): for callers
    that check many numbers at once (the preview's fallback, the daemon's send gate)."""
    return frozenset(r[0] for r in store.conn.execute(
        "SELECT phone_hash FROM suppression WHERE scope IN (?, 'all')", (program,)))


def is_suppressed(store: Store, number: str, program: str) -> bool:
    return _suppressed(store, normalise(number, store.default_region), program)


def is_sendable(store: Store, number: str, program: str) -> bool:
    """May ``program`` messages go to ``number`` now? (module docstring: opt-in only)."""
    if program not in PROGRAMS:
        raise ConsentError("program", program, f"must be one of {', '.join(PROGRAMS)}")
    e164 = normalise(number, store.default_region)
    if _suppressed(store, e164, program):
        return False
    current = current_consent(store, e164, program)
    if program == "marketing":
        return current is not None and current.action == "grant"
    return current is None or current.action != "revoke"


def suppress(store: Store, number: str, scope: str, reason: str) -> bool:
    """Add (number, scope) to the suppression list; False when it was already there."""
    if scope not in SCOPES:
        raise ConsentError("scope", scope, f"must be one of {', '.join(SCOPES)}")
    e164 = normalise(number, store.default_region)
    with store.atomic():
        cur = store.conn.execute(
            "INSERT INTO suppression(phone_hash, scope, reason, ts_ms) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(phone_hash, scope) DO NOTHING",
            (number_hash(store.hash_key, e164), scope, reason, store.now_ms()),
        )
        sid = store.scalar("SELECT id FROM subscriber WHERE phone_e164 = ?", (e164,))
        store.note_change(subscriber_ids={int(sid)} if sid is not None else (),
                          attributes={"suppression"})
        return cur.rowcount == 1


def unsuppress(store: Store, number: str, scope: str) -> bool:
    """Remove (number, scope) from the suppression list (an operator's explicit decision)."""
    e164 = normalise(number, store.default_region)
    with store.atomic():
        cur = store.conn.execute(
            "DELETE FROM suppression WHERE phone_hash = ? AND scope = ?",
            (number_hash(store.hash_key, e164), scope),
        )
        return cur.rowcount > 0


def prune_consent(store: Store, before_ms: int) -> int:
    """Delete ledger rows older than ``before_ms`` except each (number, program)'s latest row.

    Raises :class:`ConsentError` when ``before_ms`` is later than now minus
    :data:`RETENTION_MS`: rows younger than 5 years are evidence that must be kept (§6.4).
    """
    oldest_allowed = store.now_ms() - RETENTION_MS
    if before_ms > oldest_allowed:
        raise ConsentError(
            "before_ms", before_ms,
            f"consent rows are kept {RETENTION_MS // 86_400_000} days (5 years, FTC TSR); "
            f"the cutoff may be at most {oldest_allowed} (now minus the retention)")
    with store.atomic():
        cur = store.conn.execute(
            "DELETE FROM consent WHERE ts_ms < ? AND id NOT IN ("
            "  SELECT id FROM (SELECT id, row_number() OVER ("
            "    PARTITION BY phone_e164, program ORDER BY ts_ms DESC, id DESC) AS rn"
            "    FROM consent) WHERE rn = 1)",
            (before_ms,),
        )
        return cur.rowcount
