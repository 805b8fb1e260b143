"""Storing driver results and delivery reports, and settling messages from their parts.

Split from :mod:`gateway.outbox` (the store's class keeps the transactions and the order of
steps); these functions run inside its transaction and append the history rows they cause to
``history`` (written at COMMIT by :func:`gateway.outbox_history.write_history`).

Set-based where the hot path goes (a batch of submits, the settle of a batch): the ids go in as
one JSON value and each statement is one ``sqlite3_step``, because every step releases and
re-takes the GIL the daemon's event loop competes for (see gateway.outbox_history).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, cast

from gateway.outbox_history import HistoryRow
from gateway.outbox_states import (
    PartState,
    ReportOutcome,
    State,
    aggregate,
    can_move,
    part_after_report,
)
from gateway.outbox_types import Report, Submitted

_MAX_GROUPS = 4  # (route, part) groups of submits written one statement each; more: one array


def store_submits(conn: sqlite3.Connection, run: Sequence[Submitted], now: int) -> None:
    """Store the carrier id, route and time of each submitted part (in a transaction)."""
    if not run:
        return
    # One statement per (route, part number) over a JSON object {message id: carrier
    # id}: json_each hands SQLite each carrier id as it is, with no per-row JSON to parse
    # (see gateway.outbox_history). UPDATE .. FROM applies one source row per part, so this
    # is only used when no part appears twice in the run; otherwise in order, row by row.
    groups: dict[tuple[str, int], dict[int, str]] = {}
    for s in run:
        groups.setdefault((s.route, s.seq), {})[s.message_id] = s.carrier_id
    if sum(len(g) for g in groups.values()) == len(run) and len(groups) <= _MAX_GROUPS:
        updated = 0
        for (route, seq), ids in groups.items():
            updated += conn.execute(
                "UPDATE outbox_part SET state = 'submitted', route = ?, carrier_id = j.value, "
                "submitted_ms = ? FROM json_each(?) AS j "
                "WHERE outbox_part.message_id = CAST(j.key AS INTEGER) "
                "AND outbox_part.seq = ? AND outbox_part.state IN ('sending', 'queued')",
                (route, now, json.dumps(ids), seq),
            ).rowcount
    elif len({(s.message_id, s.seq) for s in run}) == len(run):
        updated = conn.execute(
            "UPDATE outbox_part SET state = 'submitted', route = j.value ->> 2, "
            "carrier_id = j.value ->> 3, submitted_ms = ? FROM json_each(?) AS j "
            "WHERE outbox_part.message_id = j.value ->> 0 AND outbox_part.seq = j.value ->> 1 "
            "AND outbox_part.state IN ('sending', 'queued')",
            (now, json.dumps([(s.message_id, s.seq, s.route, s.carrier_id) for s in run])),
        ).rowcount
    else:
        updated = conn.executemany(
            "UPDATE outbox_part SET state = 'submitted', route = ?, carrier_id = ?, "
            "submitted_ms = ? WHERE message_id = ? AND seq = ? "
            "AND state IN ('sending', 'queued')",
            [(s.route, s.carrier_id, now, s.message_id, s.seq) for s in run],
        ).rowcount
    if updated < len(run):
        # Some parts were already final (e.g. cancelled): keep their ids for late reports.
        conn.executemany(
            "UPDATE outbox_part SET route = ?, carrier_id = ? "
            "WHERE message_id = ? AND seq = ? AND carrier_id IS NULL",
            [(s.route, s.carrier_id, s.message_id, s.seq) for s in run],
        )


def apply_pending(
    conn: sqlite3.Connection, run: Sequence[Submitted], now: int, history: list[HistoryRow]
) -> None:
    """Apply the reports that arrived before these parts' carrier ids were stored.

    One probe for the whole run (reports waiting for *other* ids are common in the field:
    a carrier sending ids we never stored, field-failures.md §3.3; they must not cost every
    batch a statement per part). A waiting report goes to the first part of the run with
    its id, in the order the reports arrived."""
    text = conn.execute(
        "SELECT json_group_array(json_array(j.key, p.id, p.outcome, p.error_code)) "
        "FROM json_each(?) AS j "
        "CROSS JOIN outbox_report_pending AS p INDEXED BY outbox_report_pending_id "
        "ON p.route = j.value ->> 0 AND p.carrier_id = j.value ->> 1",
        (json.dumps([(s.route, s.carrier_id) for s in run]),),
    ).fetchone()[0]
    done: set[int] = set()
    for index, pid, outcome, code in sorted(json.loads(text)):
        if pid in done:
            continue  # the same id twice in the run: the first part took it
        done.add(pid)
        s = run[index]
        apply_report(conn, s.message_id, s.seq, ReportOutcome(outcome), code, now, history)
    if done:
        conn.execute(
            "DELETE FROM outbox_report_pending WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(done)),),
        )


def apply_report(
    conn: sqlite3.Connection, mid: int, seq: int, outcome: ReportOutcome, code: int | None,
    now: int, history: list[HistoryRow],
) -> None:
    """One delivery report on part ``seq`` of message ``mid``, then its message settled."""
    row = conn.execute(
        "SELECT state FROM outbox_part WHERE message_id = ? AND seq = ?", (mid, seq)
    ).fetchone()
    current = PartState(row[0])
    new = part_after_report(current, outcome)
    if new != current:
        conn.execute(
            "UPDATE outbox_part SET state = ?, error_code = coalesce(?, error_code), "
            "report_ms = ? WHERE message_id = ? AND seq = ?",
            (new.value, code, now, mid, seq),
        )
        if code is not None and new != PartState.DELIVERED:
            conn.execute(
                "UPDATE outbox_message SET error_code = ? WHERE id = ?", (code, mid)
            )
    settle_many(conn, {mid: None}, now, history)


def settle_many(
    conn: sqlite3.Connection, messages: Mapping[int, str | None], now: int,
    history: list[HistoryRow], *, unless_pending: bool = False,
) -> bool:
    """Derive sent messages' states from their parts (``outbox_states.aggregate``);
    a route given for a message is recorded as its route.

    With ``unless_pending``, nothing is changed and True is returned when any delivery
    report waits for its id (the same read tells, so the common case costs no extra
    statement)."""
    if not messages:
        return False
    # Set-based (see gateway.outbox_history): the ids go in as one JSON array, each
    # message comes back with its parts' states as one string, all in one JSON row, and the
    # updates are one statement per (new state, route) group.
    text, pending = conn.execute(
        "SELECT json_group_array(json_array(m.id, m.state, (SELECT group_concat(p.state) "
        "FROM outbox_part AS p WHERE p.message_id = m.id))), "
        "EXISTS (SELECT 1 FROM outbox_report_pending) "
        "FROM outbox_message AS m WHERE m.id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(messages)),),
    ).fetchone()
    if unless_pending and pending:
        return True
    changes: dict[tuple[str, str | None], list[int]] = {}
    routes: dict[str, list[int]] = {}
    # Raw strings, not enums (PartState and State are StrEnums, so the rules compare them
    # directly), and each (message state, part states) decided once per batch: this runs
    # for every message of every batch, and a batch is mostly one shape.
    decided: dict[tuple[str, str], str | None] = {}
    for mid, current, parts in json.loads(text):
        if parts is None:
            continue
        key = (current, parts)
        if key in decided:
            new = decided[key]
        else:
            state = settled_state(current, parts.split(","))
            new = decided[key] = None if state is None else state.value
        route = messages[mid]
        if new is not None:
            changes.setdefault((new, route), []).append(mid)
            history.append((mid, now, new, None))
        elif route is not None:
            routes.setdefault(route, []).append(mid)
    for (new, route), ids in changes.items():
        conn.execute(
            "UPDATE outbox_message SET state = ?, route = coalesce(?, route), updated_ms = ? "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (new, route, now, json.dumps(ids)),
        )
    for route, ids in routes.items():
        conn.execute(
            "UPDATE outbox_message SET route = ?, updated_ms = ? "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (route, now, json.dumps(ids)),
        )
    return False


_SENT = frozenset({PartState.SUBMITTED, PartState.DELIVERED, PartState.UNKNOWN})


def settled_state(current: str, parts: Sequence[str]) -> State | None:
    """The state a message (``current``, a State value) moves to given its parts' states, or
    None to stay as it is."""
    new = aggregate(parts)
    if new is None and current == State.SENDING and _SENT.issuperset(parts):
        new = State.SUBMITTED
    if new is None or new == current or not can_move(State(current), new):
        return None
    return new


def store_reports(
    conn: sqlite3.Connection, reports: Sequence[Report], now: int, history: list[HistoryRow]
) -> tuple[int, int]:
    """Apply delivery reports in order (inside a transaction); returns (matched, pending).

    Set-based: one read finds every report's part (the newest message with that carrier id
    on that route) with its message's state and all its parts; the reports are then applied
    one after the other in memory, with the message settled after each exactly as one report
    at a time would (so a multipart message passes through the same states and history
    rows); then one write per group of parts and of messages that change alike (usually one
    each: "delivered"), and one for the reports still waiting for their id."""
    if not reports:
        return 0, 0
    hits, parts, seqs, states = _find_parts(conn, reports)
    changed_parts: dict[tuple[int, int], int | None] = {}  # -> last code given with a change
    message_codes: dict[int, int] = {}
    changed_messages: set[int] = set()
    waiting: list[tuple[str, str, str, int | None]] = []
    # Raw strings and memoised rules, as in settle_many: a batch is mostly one shape.
    after: dict[tuple[str, str], str] = {}
    settles: dict[tuple[str, tuple[str, ...]], str | None] = {}
    for index, r in enumerate(reports):
        key = hits.get(index)
        if key is None:
            if r.outcome != ReportOutcome.ENROUTE:
                waiting.append((r.route, r.carrier_id, r.outcome.value, r.code))
            continue
        mid = key[0]
        current = parts[key]
        rule = (current, r.outcome.value)
        if rule not in after:
            after[rule] = part_after_report(PartState(current), r.outcome).value
        new = after[rule]
        if new != current:
            parts[key] = new
            before = changed_parts.get(key)
            changed_parts[key] = r.code if r.code is not None else before
            if r.code is not None and new != PartState.DELIVERED:
                message_codes[mid] = r.code
        shape = (states[mid], tuple([parts[(mid, s)] for s in seqs[mid]]))
        if shape not in settles:
            settled = settled_state(*shape)
            settles[shape] = None if settled is None else settled.value
        settled_value = settles[shape]
        if settled_value is not None:
            states[mid] = settled_value
            changed_messages.add(mid)
            history.append((mid, now, settled_value, None))
    _write_reports(conn, now, [(m, s, parts[(m, s)], c) for (m, s), c in changed_parts.items()],
                   {m: states[m] for m in changed_messages}, message_codes, waiting)
    return len(hits), len(waiting)


def _find_parts(conn: sqlite3.Connection, reports: Sequence[Report]) -> tuple[
    dict[int, tuple[int, int]], dict[tuple[int, int], str], dict[int, list[int]], dict[int, str]
]:
    """For the reports whose carrier id is stored, in one statement: {report index: (message
    id, seq)}, {(message id, seq): part state} for all the parts of those messages, {message
    id: its part numbers} and {message id: its state}.

    Driven by the reports (json_each) down the carrier index; a carrier id found on several
    messages (ids are reused over time) belongs to the newest. A single-part message's part
    is the one found; only a multipart message's other parts are read."""
    text = conn.execute(
        "SELECT json_group_array(json_array(j.key, p.message_id, p.seq, p.state, m.state, "
        "CASE WHEN m.total_parts > 1 THEN (SELECT json_group_array(json_array(q.seq, q.state)) "
        "FROM outbox_part AS q WHERE q.message_id = m.id) END)) "
        "FROM json_each(?) AS j "
        "CROSS JOIN outbox_part AS p INDEXED BY outbox_part_carrier "
        "ON p.route = j.value ->> 0 AND p.carrier_id = j.value ->> 1 "
        "CROSS JOIN outbox_message AS m ON m.id = p.message_id",
        (json.dumps([(r.route, r.carrier_id) for r in reports]),),
    ).fetchone()[0]
    hits: dict[int, tuple[int, int]] = {}
    parts: dict[tuple[int, int], str] = {}
    seqs: dict[int, list[int]] = {}
    states: dict[int, str] = {}
    for index, mid, seq, part_state, state, others in json.loads(text):
        found = hits.get(index)
        if found is None or mid > found[0]:
            hits[index] = (mid, seq)
        if mid in states:
            continue
        states[mid] = state
        rows = [(seq, part_state)] if others is None else _nested(others)
        seqs[mid] = sorted(s for s, _ in rows)
        for s, ps in rows:
            parts[(mid, s)] = ps
    return hits, parts, seqs, states


def _nested(value: list[Any] | str) -> list[Any]:
    """A JSON array nested by a subquery: kept as an array, or as its text should SQLite not
    keep the inner value's JSON subtype through the subquery."""
    return value if isinstance(value, list) else cast("list[Any]", json.loads(value))


def _write_reports(
    conn: sqlite3.Connection, now: int, parts: list[tuple[int, int, str, int | None]],
    states: dict[int, str], codes: dict[int, int], waiting: list[tuple[str, str, str, int | None]],
) -> None:
    """The parts' new states (each keeps its code unless a report brought one), the messages'
    new states and codes, and the reports that wait for their id.

    One statement per group of rows written alike, over a plain id array (no per-row JSON
    parsing); many different groups (mixed codes) go in as one array of rows instead."""
    part_groups: dict[tuple[str, int | None, int], list[int]] = {}
    for mid, seq, state, code in parts:
        part_groups.setdefault((state, code, seq), []).append(mid)
    if len(part_groups) <= _MAX_GROUPS:
        for (state, code, seq), ids in part_groups.items():
            conn.execute(
                "UPDATE outbox_part SET state = ?, error_code = coalesce(?, error_code), "
                "report_ms = ? WHERE message_id IN (SELECT value FROM json_each(?)) AND seq = ?",
                (state, code, now, json.dumps(ids), seq),
            )
    else:
        conn.execute(
            "UPDATE outbox_part SET state = j.value ->> 2, "
            "error_code = coalesce(j.value ->> 3, error_code), report_ms = ? "
            "FROM json_each(?) AS j "
            "WHERE outbox_part.message_id = j.value ->> 0 AND outbox_part.seq = j.value ->> 1",
            (now, json.dumps(parts)),
        )
    state_groups: dict[str, list[int]] = {}
    for mid, state in states.items():
        state_groups.setdefault(state, []).append(mid)
    code_groups: dict[int, list[int]] = {}
    for mid, code in codes.items():
        code_groups.setdefault(code, []).append(mid)
    if len(state_groups) + len(code_groups) <= _MAX_GROUPS:
        for state, ids in state_groups.items():
            conn.execute(
                "UPDATE outbox_message SET state = ?, updated_ms = ? "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (state, now, json.dumps(ids)),
            )
        for code, ids in code_groups.items():
            conn.execute(
                "UPDATE outbox_message SET error_code = ? "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (code, json.dumps(ids)),
            )
    else:
        rows = [(m, states.get(m), codes.get(m)) for m in states.keys() | codes.keys()]
        conn.execute(
            "UPDATE outbox_message SET state = coalesce(j.value ->> 1, state), "
            "updated_ms = CASE WHEN j.value ->> 1 IS NULL THEN updated_ms ELSE ? END, "
            "error_code = coalesce(j.value ->> 2, error_code) FROM json_each(?) AS j "
            "WHERE outbox_message.id = j.value ->> 0",
            (now, json.dumps(rows)),
        )
    if waiting:
        conn.execute(
            "INSERT INTO outbox_report_pending (route, carrier_id, outcome, error_code, "
            "received_ms) SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, ? "
            "FROM json_each(?) AS j ORDER BY j.key",
            (now, json.dumps(waiting)),
        )
