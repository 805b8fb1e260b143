"""Inbound texts: stored, then keywords applied (STOP/START/HELP), other replies -> events.

The outbox has no inbox table, so this module keeps ``inbox_message`` in the same database file
(one row per received text: sender, receiving route, recipient, text, what we made of it).

Order of effects for one inbound text (issue 5 "Inbound and keywords";
segmentation-compliance.md §6):

1. the row is committed (before the driver acknowledges the deliver_sm / deletes the modem's
   copy: a crash after this point replays nothing, a crash before it gets the text again);
2. the keyword decision (:func:`gateway.inbound.keywords.decide`) from the number's current
   consent and when we last confirmed an opt-out to it;
3. opt-out: the number joins the dispatcher's opted-out set at once (in memory, so the very next
   send decision sees it), a ``revoke`` row goes into the consent ledger, every queued message to
   the number is cancelled, and at most one confirmation is enqueued (transactional lane);
   re-opt-in (START/UNSTOP/YES after an opt-out): a ``grant`` row and the confirmation;
   HELP/INFO: the configured reply; anything else (and flagged phrases, which an operator
   reads) becomes a ``reply`` event in the segment store.

Replies are enqueued with the client reference ``mo:<inbox id>`` so a replay after a crash
never sends a second one (the outbox's (sender, ref) idempotency).

Copies and fragments (field-failures.md: at-least-once delivery):

* A carrier or modem that did not see our acknowledgement (we crashed after committing the row)
  delivers the same text again. A text from the same sender, on the same route, with the same
  body and the same network identity (:class:`gateway.routes.RouteInbound.identity`, or none on
  both) as the sender's latest text on that route, within :data:`DUPLICATE_WINDOW_MS`, is a
  copy. Only the latest: STOP, START, STOP from a person is three decisions, not two (an
  opt-out must never be swallowed as a copy). A copy is kept (row with
  ``duplicate_of``) but has no effect of its own -- no second confirmation, no second reply
  event. If the first copy's decision was never noted (the crash came between the row and the
  decision), the copy carries the decision out under the first copy's inbox id, so the
  idempotency keys above still hold.
* A multipart text released with parts missing (``complete = 0``, ``missing`` as a JSON list
  of part numbers when known) is stored and decided like any other; the row says it is partial.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass

from gateway.errors import SmsgateError
from gateway.inbound.keywords import Action, ConsentState, ConsentView, Replies, decide
from gateway.outbox import Outbox
from gateway.outbox_states import Lane
from gateway.outbox_types import NewMessage
from segmentation import consent as ledger
from segmentation.consent import current_consent, suppressed_hashes
from segmentation.ingest import Event, ingest_event
from segmentation.store import Store

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS inbox_message (
        id          INTEGER PRIMARY KEY,
        received_ms INTEGER NOT NULL,
        route       TEXT    NOT NULL,
        sender      TEXT    NOT NULL,    -- E.164 when it looked like a number
        recipient   TEXT    NOT NULL,
        body        TEXT    NOT NULL,
        action      TEXT,                -- opt_out / opt_in / help / flagged / other
        keyword     TEXT,
        flagged     TEXT,                -- why an operator should read it
        reply_id    INTEGER,             -- outbox id of our reply, if any
        complete    INTEGER NOT NULL DEFAULT 1,  -- 0: multipart text with parts missing
        missing     TEXT,                -- JSON list of the missing part numbers, if known
        identity    TEXT,                -- the network's identity of the text (routes.py)
        duplicate_of INTEGER             -- inbox id of the first copy of a redelivered text
    ) STRICT
    """,
    "CREATE INDEX IF NOT EXISTS inbox_message_sender ON inbox_message(sender, id)",
)

# Added after the first release: ALTER TABLE for databases created before them.
_ADDED_COLUMNS = (
    ("complete", "INTEGER NOT NULL DEFAULT 1"),
    ("missing", "TEXT"),
    ("identity", "TEXT"),
    ("duplicate_of", "INTEGER"),
)

DUPLICATE_WINDOW_MS = 10 * 60 * 1000
"""How long after a text an identical one counts as a redelivery: an SMSC retries an
unacknowledged deliver_sm within minutes (field-failures.md), a daemon restart takes seconds.
Longer would swallow a person who really sends the same words twice."""

PROGRAM = "marketing"
"""The consent programme STOP revokes (segmentation schema: 'marketing' | 'transactional')."""


def e164(address: str) -> str:
    """SMPP source_addr (TON 1, no '+') and modem originators as E.164 when they are numbers.

    '00' is the international prefix (ITU-T E.164 §6.2.1 recommends it; most of Europe dials
    it), so '0044...' is '+44...': the opted-out set and the STOP's cancellation compare with
    the outbox's E.164 destinations and must see the same spelling."""
    digits = address.strip()
    if digits.startswith("+"):
        return digits
    if digits.startswith("00") and digits.isdigit() and len(digits) >= 9:
        return "+" + digits[2:]
    if digits.isdigit() and len(digits) >= 7:
        return "+" + digits
    return digits


@dataclass(frozen=True, slots=True)
class InboundResult:
    inbox_id: int
    action: Action
    keyword: str | None
    reply_id: int | None
    cancelled: int
    duplicate_of: int | None = None  # a redelivered copy of this inbox id: no effects of its own


@dataclass(frozen=True, slots=True)
class StoredInbound:
    """A committed inbox row; for a copy, the first copy's id and decision (None: undecided)."""

    inbox_id: int
    duplicate_of: int | None = None
    first_action: str | None = None
    first_keyword: str | None = None


def ensure_schema(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA:
        conn.execute(statement)
    have = {row[1] for row in conn.execute("PRAGMA table_info(inbox_message)")}
    for name, declaration in _ADDED_COLUMNS:
        if name not in have:
            conn.execute(f"ALTER TABLE inbox_message ADD COLUMN {name} {declaration}")


def store_inbound(
    conn: sqlite3.Connection, now_ms: int, route: str, sender: str, recipient: str, text: str,
    *, complete: bool = True, missing: tuple[int, ...] = (), identity: str | None = None,
) -> StoredInbound:
    """Commit one received text, noting whether it is a copy of one stored within
    :data:`DUPLICATE_WINDOW_MS`. Runs on the connection's one thread, so the look-up and the
    insert are not interleaved with another text's."""
    latest = conn.execute(
        "SELECT id, action, keyword, body, identity FROM inbox_message WHERE sender = ? "
        "AND route = ? AND duplicate_of IS NULL AND received_ms >= ? ORDER BY id DESC LIMIT 1",
        (sender, route, now_ms - DUPLICATE_WINDOW_MS),
    ).fetchone()
    first = latest if latest is not None and (latest[3], latest[4]) == (text, identity) else None
    cur = conn.execute(
        "INSERT INTO inbox_message (received_ms, route, sender, recipient, body, complete, "
        "missing, identity, duplicate_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (now_ms, route, sender, recipient, text, int(complete),
         None if complete and not missing else json.dumps(list(missing)), identity,
         None if first is None else first[0]),
    )
    assert cur.lastrowid is not None
    if first is None:
        return StoredInbound(cur.lastrowid)
    return StoredInbound(cur.lastrowid, int(first[0]), first[1], first[2])


def last_confirmation_ms(conn: sqlite3.Connection, sender: str) -> int | None:
    row = conn.execute(
        "SELECT max(received_ms) FROM inbox_message WHERE sender = ? AND action = 'opt_out' "
        "AND reply_id IS NOT NULL",
        (sender,),
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def note_decision(
    conn: sqlite3.Connection, inbox_id: int, action: Action, keyword: str | None,
    flagged: str | None, reply_id: int | None,
) -> None:
    conn.execute(
        "UPDATE inbox_message SET action = ?, keyword = ?, flagged = ?, reply_id = ? WHERE id = ?",
        (action.value, keyword, flagged, reply_id, inbox_id),
    )


# -- erasure and export (gateway.erasure) ------------------------------------------------------

_INBOX_COLUMNS = ("id", "received_ms", "route", "sender", "recipient", "body", "action",
                  "keyword", "flagged", "reply_id", "complete", "missing", "identity",
                  "duplicate_of")


def _sender_ids(conn: sqlite3.Connection, senders: Collection[str]) -> str:
    """The ids of every text from ``senders`` (forms of one number), as a JSON array."""
    return json.dumps([int(r[0]) for r in conn.execute(
        "SELECT id FROM inbox_message WHERE sender IN (SELECT value FROM json_each(?)) "
        "ORDER BY id", (json.dumps(sorted(senders)),))])


def export_inbox(conn: sqlite3.Connection, senders: Collection[str]) -> list[dict[str, object]]:
    """Every stored text from ``senders``, oldest first (for a data subject export)."""
    if not _has_inbox(conn):
        return []
    rows = conn.execute(
        f"SELECT {', '.join(_INBOX_COLUMNS)} FROM inbox_message WHERE id IN "
        "(SELECT value FROM json_each(?)) ORDER BY id", (_sender_ids(conn, senders),),
    ).fetchall()
    out = []
    for row in rows:
        item = dict(zip(_INBOX_COLUMNS, row, strict=True))
        item["complete"] = bool(item["complete"])
        item["missing"] = json.loads(str(item["missing"])) if item["missing"] else None
        out.append(item)
    return out


def erase_inbox(conn: sqlite3.Connection, senders: Collection[str]) -> list[tuple[int, str, int]]:
    """Delete every text from ``senders`` in the caller's transaction; returns what was
    deleted as ``(day, action, n)`` counts (UTC day received, the decision or 'undecided')
    for the erased-message tally. The texts' replies are outbox messages to the same number,
    erased with the outbox."""
    if not _has_inbox(conn):
        return []
    ids = _sender_ids(conn, senders)
    counts = [(int(day), str(action), int(n)) for day, action, n in conn.execute(
        "SELECT received_ms / 86400000, coalesce(action, 'undecided'), count(*) "
        "FROM inbox_message WHERE id IN (SELECT value FROM json_each(?)) GROUP BY 1, 2", (ids,),
    )]
    conn.execute("DELETE FROM inbox_message WHERE id IN (SELECT value FROM json_each(?))", (ids,))
    return counts


def _has_inbox(conn: sqlite3.Connection) -> bool:
    return conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'inbox_message'"
    ).fetchone() is not None


# -- consent ledger (segment store) ------------------------------------------------------------


def consent_of(store: Store, phone: str) -> tuple[ConsentState, int | None]:
    """Latest ledger row for ``phone`` in the marketing programme: state and when it began."""
    try:
        entry = current_consent(store, phone, PROGRAM)
    except SmsgateError:  # a number phonenumbers rejects: look it up as written
        row = store.conn.execute(
            "SELECT action, ts_ms FROM consent WHERE phone_e164 = ? AND program = ? "
            "ORDER BY ts_ms DESC, id DESC LIMIT 1", (phone, PROGRAM),
        ).fetchone()
        action, since = (row[0], int(row[1])) if row else (None, None)
    else:
        action, since = (entry.action, entry.ts_ms) if entry else (None, None)
    if action is None:
        return ConsentState.UNKNOWN, None
    return (ConsentState.OPTED_OUT if action == "revoke" else ConsentState.SUBSCRIBED), since


def marketing_suppressions(store: Store) -> tuple[bytes | None, frozenset[str]]:
    """The site key and the keyed hashes suppressed for marketing (scope 'marketing' or
    'all'); no key configured -> (None, empty): hashes cannot be matched without it."""
    if not store.has_hash_key:
        return None, frozenset()
    return store.hash_key, suppressed_hashes(store, PROGRAM)


def opted_out_numbers(store: Store) -> set[str]:
    """Every number whose latest marketing consent row is a revoke (loaded at start-up)."""
    rows = store.conn.execute(
        "SELECT phone_e164, action FROM consent c WHERE program = ? AND id = ("
        "  SELECT id FROM consent d WHERE d.phone_e164 = c.phone_e164 AND d.program = c.program"
        "  ORDER BY ts_ms DESC, id DESC LIMIT 1)",
        (PROGRAM,),
    ).fetchall()
    return {phone for phone, action in rows if action == "revoke"}


def record_consent(
    store: Store, phone: str, action: str, keyword_text: str, inbox_id: int, ts_ms: int
) -> None:
    """Append one keyword row to the consent ledger (append-only, latest row wins, §6.4);
    the inbox id is the evidence and the dedupe key, so a replay records it once. In the same
    transaction the subscriber's status follows (STOP: 'stopped', START after it: 'active';
    :func:`segmentation.consent.set_status_for_keyword`), so the ledger and the status an
    operator or a campaign preview reads never disagree.

    A STOP must be honoured whoever sends it: a sender the ledger's number check rejects
    (test ranges, short codes) is recorded as written instead of being dropped.
    """
    evidence = {"inbox_id": inbox_id}
    with store.atomic() as conn:
        try:
            ledger.record_consent(
                store, phone, PROGRAM, action, "keyword", actor="inbound", ts_ms=ts_ms,
                keyword_text=keyword_text, evidence=evidence, dedupe_key=f"inbox:{inbox_id}",
            )
        except SmsgateError:
            conn.execute(
                "INSERT INTO consent (phone_e164, program, action, ts_ms, method, keyword_text, "
                "evidence, actor, dedupe_key) VALUES (?, ?, ?, ?, 'keyword', ?, ?, 'inbound', ?) "
                "ON CONFLICT(dedupe_key) DO NOTHING",
                (phone, PROGRAM, action, ts_ms, keyword_text, json.dumps(evidence),
                 f"inbox:{inbox_id}"),
            )
            store.note_change(attributes={f"consent.{PROGRAM}"})
        ledger.set_status_for_keyword(store, phone, action)


def reply_event(store: Store, phone: str, inbox_id: int, ts_ms: int, route: str) -> None:
    """A reply that is no keyword becomes a ``reply`` event for segmentation."""
    ingest_event(store, Event(
        "reply", ts_ms, number=phone, source=f"inbound:{route}", dedupe_key=f"inbox:{inbox_id}",
    ))


def enqueue_reply(outbox: Outbox, to: str, text: str, inbox_id: int) -> int:
    accepted = outbox.enqueue(NewMessage(to, text, ref=f"mo:{inbox_id}", lane=Lane.TRANSACTIONAL))
    return accepted.id


def consent_view(state: ConsentState, since_ms: int | None, confirmed_ms: int | None
                 ) -> ConsentView:
    return ConsentView(
        state,
        since_ms / 1000 if state is ConsentState.OPTED_OUT and since_ms is not None else None,
        confirmed_ms / 1000 if confirmed_ms is not None else None,
    )


def decide_for(text: str, view: ConsentView, replies: Replies, received_ms: int, now_ms: int
               ) -> tuple[Action, str | None, str | None, str | None]:
    d = decide(text, view, replies, received_at=received_ms / 1000, now=now_ms / 1000)
    return d.action, d.keyword, d.reply, d.flagged
