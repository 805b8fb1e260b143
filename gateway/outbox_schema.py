"""Outbox schema: STRICT tables in the shared database file, versioned per component.

The segment store owns ``PRAGMA user_version``; the outbox keeps its own version in the row
``schema_version(component='outbox')`` so the two migrate independently in one file. Each
migration is a tuple of single statements, run inside one ``BEGIN IMMEDIATE`` transaction
together with the version bump (``executescript`` would commit on its own, so it is not used).

Conventions as in ``segmentation.schema``: ``*_ms`` columns are UTC epoch milliseconds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

COMPONENT = "outbox"

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    component TEXT PRIMARY KEY,
    version   INTEGER NOT NULL
) STRICT
"""

_STATES = (
    "'queued','scheduled','sending','submitted','delivered','undeliverable','expired',"
    "'failed','cancelled','unknown'"
)
_PART_STATES = (
    "'queued','sending','submitted','delivered','undeliverable','expired','failed',"
    "'cancelled','unknown'"
)

FINAL_EVENT_STATES = ("delivered", "undeliverable", "failed", "expired")
"""Final states whose history rows the event pump reads (gateway/daemon_events.py)."""
FINAL_EVENT_STATES_SQL = "('delivered', 'undeliverable', 'failed', 'expired')"
"""The same as an SQL list (schema 2's index condition)."""


def is_final_event_state(column: str) -> str:
    """``column`` is one of FINAL_EVENT_STATES, as a chain of comparisons: the condition of
    the index ``outbox_history_final`` (schema 4). A query must repeat it with the same
    column for the planner to use the index (``is_final_event_state("h.state")``)."""
    return "(" + " OR ".join(f"{column} = '{s}'" for s in FINAL_EVENT_STATES) + ")"

Step = str | Callable[[sqlite3.Connection], None]
"""One migration step: a statement, or a function run on the migrating connection."""


def _as_comparisons(column: str, values: str) -> str:
    """``values`` (an SQL list body: "'a','b'" or "0, 1") as ``column = a OR column = b``."""
    return " OR ".join(f"{column} = {v.strip()}" for v in values.split(","))


def _rewrite_checks(conn: sqlite3.Connection, edits: Sequence[tuple[str, str, str]]) -> None:
    """Replace CHECK texts in tables' SQL: (table, old text, new text), each found exactly
    once. The new constraints must accept exactly the values the old ones did.

    The procedure SQLite documents for changing constraints that do not affect the on-disk
    format (lang_altertable.html, "otheralter"): edit the table's SQL in sqlite_schema with
    writable_schema on, then bump schema_version so every connection re-reads it. Runs inside
    the migration's transaction; a table whose CHECK text is not the expected one is an error
    (and the transaction rolls back)."""
    version = int(conn.execute("PRAGMA schema_version").fetchone()[0])
    conn.execute("PRAGMA writable_schema = ON")
    try:
        for table, old, new in edits:
            changed = conn.execute(
                "UPDATE sqlite_schema SET sql = replace(sql, ?, ?) "
                "WHERE type = 'table' AND name = ? AND instr(sql, ?) > 0",
                (old, new, table, old),
            ).rowcount
            if changed != 1:
                raise sqlite3.DatabaseError(f"{table}: {old!r} is not in its schema")
        conn.execute(f"PRAGMA schema_version = {version + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")


def state_checks_as_comparisons(conn: sqlite3.Connection) -> None:
    """Rewrite the ``state IN (...)`` CHECK constraints of outbox_message and outbox_part as
    chains of ``state = '...' OR ...``: the same set of values, so every stored row satisfies
    both, and nothing on disk changes (see _rewrite_checks).

    Why: SQLite (3.40) evaluates a CHECK's ``IN (list of more than two constants)`` by building
    a temporary b-tree of the list *for every row written* (OP_OpenEphemeral in the row loop,
    no OP_Once), which cleared and zeroed a page and inserted ten keys on each state change:
    about 30 % of the instructions of claim + mark. Comparisons cost a few opcodes."""
    _rewrite_checks(conn, [
        (table, f"CHECK (state IN ({states}))", f"CHECK ({_as_comparisons('state', states)})")
        for table, states in (("outbox_message", _STATES), ("outbox_part", _PART_STATES))
    ])


def lane_check_as_comparisons(conn: sqlite3.Connection) -> None:
    """The same for outbox_message's ``lane IN (0, 1, 2)``, paid on every message accepted."""
    _rewrite_checks(conn, [
        ("outbox_message", "CHECK (lane IN (0, 1, 2))",
         f"CHECK ({_as_comparisons('lane', '0, 1, 2')})"),
    ])


MIGRATIONS: tuple[tuple[Step, ...], ...] = (
    # 1: messages, parts, history, reports waiting for their id
    (
        f"""
        CREATE TABLE outbox_message (
            id            INTEGER PRIMARY KEY,
            lane          INTEGER NOT NULL CHECK (lane IN (0, 1, 2)),
            state         TEXT    NOT NULL CHECK (state IN ({_STATES})),
            dest          TEXT    NOT NULL,              -- E.164, '+447700900123'
            sender        TEXT    NOT NULL DEFAULT '',   -- '' = the route's default sender
            body          TEXT    NOT NULL,
            ref           TEXT,                          -- client reference, unique per sender
            campaign_id   INTEGER,
            total_parts   INTEGER NOT NULL CHECK (total_parts >= 1),
            created_ms    INTEGER NOT NULL,
            not_before_ms INTEGER NOT NULL,              -- ready from; orders a lane (age)
            expires_ms    INTEGER,                       -- validity deadline, NULL = none
            retries       INTEGER NOT NULL DEFAULT 0,    -- temporary failures so far
            max_retries   INTEGER NOT NULL,
            route         TEXT,                          -- last route that took it
            error_code    INTEGER,                       -- carrier / modem code of the failure
            error_text    TEXT,
            updated_ms    INTEGER NOT NULL
        ) STRICT
        """,
        # Idempotency: a retried submission with the same (sender, ref) finds the first one.
        """
        CREATE UNIQUE INDEX outbox_message_ref ON outbox_message(sender, ref)
            WHERE ref IS NOT NULL
        """,
        # Claim: per lane, ready rows in age order; partial so it only holds waiting rows and
        # stays O(log n) however many are queued.
        """
        CREATE INDEX outbox_message_ready ON outbox_message(lane, not_before_ms, id)
            WHERE state IN ('queued', 'scheduled')
        """,
        """
        CREATE INDEX outbox_message_deadline ON outbox_message(expires_ms)
            WHERE state IN ('queued', 'scheduled') AND expires_ms IS NOT NULL
        """,
        # Not (dest, state): an index holding `state` is rewritten on every state change.
        "CREATE INDEX outbox_message_dest ON outbox_message(dest)",
        "CREATE INDEX outbox_message_state ON outbox_message(state, lane)",
        f"""
        CREATE TABLE outbox_part (
            message_id    INTEGER NOT NULL REFERENCES outbox_message(id),
            seq           INTEGER NOT NULL,               -- 0-based part number
            state         TEXT    NOT NULL CHECK (state IN ({_PART_STATES})),
            route         TEXT,                           -- bind or modem that accepted it
            carrier_id    TEXT,                           -- normalised (gateway.outbox_ids)
            error_code    INTEGER,
            submitted_ms  INTEGER,
            report_ms     INTEGER,
            PRIMARY KEY (message_id, seq)
        ) STRICT, WITHOUT ROWID
        """,
        """
        CREATE INDEX outbox_part_carrier ON outbox_part(route, carrier_id)
            WHERE carrier_id IS NOT NULL
        """,
        """
        CREATE INDEX outbox_part_awaiting ON outbox_part(submitted_ms)
            WHERE state = 'submitted'
        """,
        # Clustered by message (one b-tree, no second index to keep up on every change); `id`
        # orders the changes and comes from outbox_sequence, one read per transaction.
        """
        CREATE TABLE outbox_history (
            message_id  INTEGER NOT NULL REFERENCES outbox_message(id),
            id          INTEGER NOT NULL,
            ts_ms       INTEGER NOT NULL,
            state       TEXT    NOT NULL,
            detail      TEXT,
            PRIMARY KEY (message_id, id)
        ) STRICT, WITHOUT ROWID
        """,
        """
        CREATE TABLE outbox_sequence (
            name   TEXT PRIMARY KEY,
            value  INTEGER NOT NULL
        ) STRICT
        """,
        "INSERT INTO outbox_sequence (name, value) VALUES ('history', 0)",
        # A delivery report whose carrier id is not stored yet (it overtook the submit
        # response): kept here and applied when the id arrives, never dropped.
        """
        CREATE TABLE outbox_report_pending (
            id           INTEGER PRIMARY KEY,
            route        TEXT    NOT NULL,
            carrier_id   TEXT    NOT NULL,
            outcome      TEXT    NOT NULL,
            error_code   INTEGER,
            received_ms  INTEGER NOT NULL
        ) STRICT
        """,
        "CREATE INDEX outbox_report_pending_id ON outbox_report_pending(route, carrier_id)",
    ),
    # 2: cheaper state changes, an indexed feed of final states
    (
        # Every state change rewrote this index (a b-tree delete + insert per message per
        # change, ~25 % of claim + mark). Its readers were statistics (now one scan, on demand)
        # and recovery (one scan at start-up).
        "DROP INDEX IF EXISTS outbox_message_state",
        # The event pump's cursor over final states (gateway/daemon_events.py): partial, so
        # only a message's last history row enters it and the pump reads just what it reports;
        # covering (the primary key adds message_id), so no history lookups.
        f"""
        CREATE INDEX outbox_history_final ON outbox_history(id, state, ts_ms)
            WHERE state IN {FINAL_EVENT_STATES_SQL}
        """,
    ),
    # 3: state CHECKs that cost nothing per row written
    (state_checks_as_comparisons,),
    # 4: the same for the final-state index's condition (evaluated for every history row
    # written, with a temporary b-tree per row while it was an IN list) and the lane CHECK
    (
        "DROP INDEX outbox_history_final",
        f"""
        CREATE INDEX outbox_history_final ON outbox_history(id, state, ts_ms)
            WHERE {is_final_event_state("state")}
        """,
        lane_check_as_comparisons,
    ),
)
