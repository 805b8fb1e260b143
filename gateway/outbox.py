"""The durable outbox: every accepted message, its parts, their carrier ids and states (SQLite).

A message is accepted when :meth:`Outbox.enqueue_many` has committed its row and its part rows;
nothing is held in memory between steps. The state rules live in :mod:`gateway.outbox_states`
(pure); this module stores their outcome in the shared WAL database (``synchronous=NORMAL``:
a commit survives a process crash, and a power cut loses at most the last few transactions,
never corrupts).

Commit protocol (DESIGN.md "Durability and delivery semantics"), what the dispatcher relies on:

1. :meth:`claim` commits the message and its unsent parts as ``sending`` *before* it returns,
   so nothing is written to the wire for a part that is not ``sending`` on disk. After a crash,
   :meth:`recover` puts every ``sending`` part back to ``queued``: it is sent again, so
   duplicates are bounded by what was in flight and nothing is lost.
2. :meth:`mark_many` with :class:`Submitted` commits the carrier id of a part. The dispatcher
   processes a bind's events in arrival order, so the id is stored before any report for it is
   processed; a report that still overtakes it (a fast SMSC answers deliver_sm before our
   submit_sm_resp handling, field-failures.md §3.4) is stored in ``outbox_report_pending`` by
   :meth:`record_reports` and applied the moment the id is stored. A report is not dropped:
   it waits until its id arrives, or until it is older than ``dlr_unknown_after_s`` (then its
   part, if it ever existed, is ``unknown`` anyway and the report can no longer be placed).
3. Every method is one transaction (``BEGIN IMMEDIATE`` .. ``COMMIT``), batched: a whole claim,
   a whole batch of results or reports, one fsync-free WAL commit, so throughput does not
   depend on one commit per message.

Cost (issue 5): the hot path is a handful of statements per *batch*, whatever its size: ids
go in as one JSON value, rows come back as one JSON value, and every change of a batch is one
set-based statement (with BEGIN and COMMIT: 7 per claim, 7 per batch of submits, 7 per batch
of delivery reports; it was 11, 9 and about 6 per report). Each statement is one
``sqlite3_step``, and every step releases and re-takes the GIL the daemon's event loop
competes for, so the count matters as much as the work inside. Results and reports are
stored by :mod:`gateway.outbox_results`, history rows by :mod:`gateway.outbox_history`; the
indexes and CHECKs are chosen so a state change rewrites as little as possible
(:mod:`gateway.outbox_schema`, schemas 2-4).

The connection has one owner thread (the daemon runs it on a single-thread executor, like the
segment store). Other processes (CLI, TUI) open their own :class:`Outbox` on the same file.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from gateway import outbox_read
from gateway.outbox_history import HistoryRow, write_history
from gateway.outbox_results import (
    apply_pending,
    settle_many,
    store_reports,
    store_submits,
)
from gateway.outbox_schema import COMPONENT, MIGRATIONS, VERSION_TABLE
from gateway.outbox_states import (
    FINAL,
    WAITING,
    Lane,
    PartState,
    ReportOutcome,
    RetryDecision,
    RetryPolicy,
    State,
    decide_retry,
)
from gateway.outbox_types import (
    Accepted,
    Claimed,
    HistoryEntry,
    Message,
    NewMessage,
    OutboxError,
    OutboxStatistics,
    Outcome,
    Part,
    PermanentFailure,
    Report,
    ReportResult,
    Requeue,
    Submitted,
    TemporaryFailure,
    estimate_parts,
)

Clock = Callable[[], int]
"""UTC epoch milliseconds."""


def system_clock_ms() -> int:
    return time.time_ns() // 1_000_000


_WAITING_SQL = "('queued', 'scheduled')"

DEFAULT_RETRY = RetryPolicy()

_LANES: tuple[Lane, ...] = tuple(sorted(Lane))  # by value: _LANES[n] is Lane(n), cheaper



class Outbox:
    """One open outbox on a database file (see the module docstring)."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock = system_clock_ms,
        max_retries: int = 5,
        retry: RetryPolicy = DEFAULT_RETRY,
        dlr_unknown_after_s: float = 48 * 3600.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.path = str(path)
        self.clock = clock
        self.max_retries = max_retries
        self.retry_policy = retry
        self.rand = rand  # places each retry in the policy's jitter (inject to test)
        self.dlr_unknown_after_ms = int(dlr_unknown_after_s * 1000)
        # Autocommit mode: every transaction is an explicit BEGIN IMMEDIATE in _tx().
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA busy_timeout=10000")
        self.conn.execute("PRAGMA cache_size=-32768")
        # after a WAL restart, trim the file to what is written: no tail of old page images
        # (erased rows) outlives it, whichever writer commits first (segmentation.checkpoint)
        self.conn.execute("PRAGMA journal_size_limit=0")
        self._history_rows: list[HistoryRow] = []
        self.migrate()

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; history rows collected by ``_history`` go in just before
        COMMIT, in one statement."""
        self.conn.execute("BEGIN IMMEDIATE")
        self._history_rows.clear()
        try:
            yield self.conn
            write_history(self.conn, self._history_rows)
        except BaseException:
            self._history_rows.clear()
            self.conn.execute("ROLLBACK")
            raise
        self._history_rows.clear()
        self.conn.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        self.conn.execute(VERSION_TABLE)
        row = self.conn.execute(
            "SELECT version FROM schema_version WHERE component = ?", (COMPONENT,)
        ).fetchone()
        return int(row[0]) if row else 0

    def migrate(self) -> int:
        """Apply the outbox migrations not yet applied (safe with several processes)."""
        with self._tx() as conn:
            conn.execute(VERSION_TABLE)
            row = conn.execute(
                "SELECT version FROM schema_version WHERE component = ?", (COMPONENT,)
            ).fetchone()
            current = int(row[0]) if row else 0
            if current > len(MIGRATIONS):
                raise OutboxError(
                    f"outbox schema version {current} is newer than this code ({len(MIGRATIONS)})"
                )
            for steps in MIGRATIONS[current:]:
                for step in steps:
                    if isinstance(step, str):
                        conn.execute(step)
                    else:
                        step(conn)
            if current < len(MIGRATIONS):
                conn.execute(
                    "INSERT INTO schema_version (component, version) VALUES (?, ?) "
                    "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                    (COMPONENT, len(MIGRATIONS)),
                )
        return len(MIGRATIONS)

    # -- accept --------------------------------------------------------------------------------

    def enqueue(self, message: NewMessage) -> Accepted:
        return self.enqueue_many([message])[0]

    def enqueue_many(self, messages: Sequence[NewMessage]) -> list[Accepted]:
        """Accept ``messages`` in one transaction; results in input order.

        A message whose (sender, ref) is already stored, or appears earlier in the batch, is not
        stored again: its result names the first id with ``created=False``.
        """
        now = self.clock()
        results: list[Accepted] = []
        rows: list[tuple[object, ...]] = []
        parts: list[tuple[int, int]] = []
        history: list[HistoryRow] = []
        with self._tx() as conn:
            next_id = int(conn.execute("SELECT coalesce(max(id), 0) FROM outbox_message")
                          .fetchone()[0]) + 1
            seen: dict[tuple[str, str], int] = {}
            for m in messages:
                _check_new(m)
                if m.ref is not None:
                    key = (m.sender, m.ref)
                    found = seen.get(key)
                    if found is None:
                        row = conn.execute(
                            "SELECT id FROM outbox_message WHERE sender = ? AND ref = ?", key
                        ).fetchone()
                        found = int(row[0]) if row else None
                    if found is not None:
                        results.append(Accepted(found, created=False))
                        continue
                    seen[key] = next_id
                mid = next_id
                next_id += 1
                total = m.parts if m.parts is not None else estimate_parts(m.text)
                not_before = now if m.not_before_ms is None else m.not_before_ms
                state = State.SCHEDULED if not_before > now else State.QUEUED
                rows.append((
                    mid, int(m.lane), state.value, m.to, m.sender, m.text, m.ref,
                    m.campaign_id, total, now, not_before, m.expires_ms,
                    self.max_retries if m.max_retries is None else m.max_retries, now,
                ))
                parts.extend((mid, seq) for seq in range(total))
                history.append((mid, now, state.value, None))
                results.append(Accepted(mid, created=True))
            conn.executemany(
                "INSERT INTO outbox_message (id, lane, state, dest, sender, body, ref, "
                "campaign_id, total_parts, created_ms, not_before_ms, expires_ms, max_retries, "
                "updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "INSERT INTO outbox_part (message_id, seq, state) VALUES (?, ?, 'queued')", parts
            )
            self._history(history)
        return results

    # -- hand out ------------------------------------------------------------------------------

    def claim(self, limit: int, *, lanes: Iterable[Lane] = tuple(Lane)) -> list[Claimed]:
        """Up to ``limit`` ready messages, lane by lane in priority order, oldest first.

        "Oldest" is the time a message became ready (``not_before_ms``, then id): a retry waits
        its backoff and then queues behind what was ready before it. Messages past their
        deadline are expired first, in the same transaction, so they never go out late. Each
        returned message and its unsent parts are ``sending`` on disk when this returns.
        """
        now = self.clock()
        wanted = sorted({int(lane) for lane in lanes})
        if limit <= 0 or not wanted:
            return []
        with self._tx() as conn:
            rows, expired_waiting = self._ready(conn, wanted, now, limit)
            if expired_waiting:  # rare: expire them, then read the ready rows again
                self._expire_due(conn, now)
                rows, _ = self._ready(conn, wanted, now, limit)
            if not rows:
                return []
            lane_of = _LANES
            claimed = [
                Claimed(mid, lane_of[lane], dest, sender, body, total, _seqs(seqs), retries,
                        expires)
                for lane, _, mid, dest, sender, body, total, retries, expires, seqs in rows
            ]
            ids = json.dumps([c.id for c in claimed])
            conn.execute(
                "UPDATE outbox_message SET state = 'sending', updated_ms = ? "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (now, ids),
            )
            conn.execute(
                "UPDATE outbox_part SET state = 'sending' "
                "WHERE message_id IN (SELECT value FROM json_each(?)) AND state = 'queued'",
                (ids,),
            )
            sending = State.SENDING.value
            self._history([(c.id, now, sending, None) for c in claimed])
        return claimed

    @staticmethod
    def _ready(
        conn: sqlite3.Connection, lanes: Sequence[int], now: int, limit: int
    ) -> tuple[list[list[Any]], bool]:
        """The ready rows (with each message's unsent parts) in claim order, and whether any
        waiting message is past its deadline.

        One statement, one JSON row: a plain SELECT steps once per row, and every step releases
        and re-takes the GIL the event loop competes for (see gateway.outbox_history). The
        lanes go in as a literal IN list in ascending order, which SQLite walks one lane after
        the other down the ready index, so ``ORDER BY lane, not_before_ms, id LIMIT`` needs no
        sort and reads only the rows it returns. Sorted again here because the order an
        aggregate sees its rows in is not guaranteed."""
        text, expired = conn.execute(
            "SELECT json_group_array(json_array(lane, not_before_ms, id, dest, sender, body, "
            "total_parts, retries, expires_ms, (SELECT json_group_array(seq) "
            "FROM outbox_part WHERE message_id = m.id AND state = 'queued'))), "
            "EXISTS (SELECT 1 FROM outbox_message INDEXED BY outbox_message_deadline "
            f"WHERE state IN {_WAITING_SQL} AND expires_ms IS NOT NULL AND expires_ms <= ?1) "
            "FROM (SELECT * FROM outbox_message INDEXED BY outbox_message_ready "
            f"WHERE state IN {_WAITING_SQL} AND lane IN ({', '.join(map(str, lanes))}) "
            "AND not_before_ms <= ?1 ORDER BY lane, not_before_ms, id LIMIT ?2) AS m",
            (now, limit),
        ).fetchone()
        rows: list[list[Any]] = json.loads(text)
        rows.sort()
        return rows, bool(expired)

    def postpone(self, ids: Sequence[int], delay_ms: int) -> int:
        """Move queued messages ``delay_ms`` into the future: ``not_before_ms`` (their "ready
        from") becomes ``max(not_before_ms, now + delay_ms)``; returns how many moved.

        For a message whose only route is down: without it, it comes straight back at the head
        of its lane on every claim and crowds out messages for routes that are up. Rows in any
        other state are left alone (a message claimed or settled meanwhile is not queued).
        """
        if not ids:
            return 0
        until = self.clock() + delay_ms
        with self._tx() as conn:
            # The ids as one JSON array: one statement (see gateway.outbox_history).
            return conn.execute(
                "UPDATE outbox_message SET not_before_ms = ? "
                "WHERE id IN (SELECT value FROM json_each(?)) AND state = 'queued' "
                "AND not_before_ms < ?",
                (until, json.dumps(list(ids)), until),
            ).rowcount

    def reshape(self, message_id: int, total_parts: int) -> None:
        """Set the part count the route really splits into, before any part was submitted."""
        if total_parts < 1:
            raise OutboxError("a message has at least one part")
        with self._tx() as conn:
            row = conn.execute(
                "SELECT count(*) FROM outbox_part WHERE message_id = ? "
                "AND (carrier_id IS NOT NULL OR state NOT IN ('queued', 'sending'))",
                (message_id,),
            ).fetchone()
            state = self._state(conn, message_id)
            if state is None or row[0] or state not in (*WAITING, State.SENDING):
                raise OutboxError(f"message {message_id} cannot be re-split now")
            part_state = "sending" if state == State.SENDING else "queued"
            conn.execute("DELETE FROM outbox_part WHERE message_id = ?", (message_id,))
            conn.executemany(
                "INSERT INTO outbox_part (message_id, seq, state) VALUES (?, ?, ?)",
                [(message_id, seq, part_state) for seq in range(total_parts)],
            )
            conn.execute(
                "UPDATE outbox_message SET total_parts = ? WHERE id = ?", (total_parts, message_id)
            )

    # -- results from the drivers --------------------------------------------------------------

    def mark_many(self, outcomes: Iterable[Outcome]) -> None:
        """Store submit results and failures in one transaction, in order."""
        now = self.clock()
        batch = list(outcomes)
        with self._tx() as conn:
            if all(type(o) is Submitted for o in batch):
                self._submits_only(conn, cast("list[Submitted]", batch), now)
                return
            touched: dict[int, str] = {}
            history = self._history_rows
            # Reports overtaking their submit response are rare: look them up only if any wait.
            any_pending = bool(conn.execute(
                "SELECT EXISTS (SELECT 1 FROM outbox_report_pending)"
            ).fetchone()[0])
            run: list[Submitted] = []
            for outcome in batch:
                if isinstance(outcome, Submitted):
                    run.append(outcome)
                    touched[outcome.message_id] = outcome.route
                    continue
                # keep the order: submits before this failure are stored before it
                store_submits(conn, run, now)
                if any_pending:
                    apply_pending(conn, run, now, self._history_rows)
                run.clear()
                if isinstance(outcome, Requeue):
                    self._back_to_queue(conn, outcome.message_id, now, None, "requeued", history)
                elif isinstance(outcome, TemporaryFailure):
                    self._temporary(conn, outcome, now, history)
                else:
                    self._permanent(conn, outcome, now, history)
            store_submits(conn, run, now)
            if any_pending:
                apply_pending(conn, run, now, self._history_rows)
            settle_many(conn, touched, now, self._history_rows)

    def _submits_only(self, conn: sqlite3.Connection, run: list[Submitted], now: int) -> None:
        """The common batch, in as few statements as the general path allows: the parts'
        update, one read of the messages to settle that also says whether any report waits
        for an id, the messages' update, the history."""
        store_submits(conn, run, now)
        touched = {s.message_id: s.route for s in run}
        if settle_many(conn, touched, now, self._history_rows, unless_pending=True):
            # Reports wait (they overtook a submit response): apply those for these ids
            # first, exactly as the general path does, then settle.
            apply_pending(conn, run, now, self._history_rows)
            settle_many(conn, touched, now, self._history_rows)

    def _back_to_queue(
        self, conn: sqlite3.Connection, mid: int, now: int, not_before: int | None,
        detail: str, history: list[HistoryRow],
    ) -> None:
        if self._state(conn, mid) != State.SENDING:
            return
        moved = conn.execute(
            "UPDATE outbox_part SET state = 'queued' WHERE message_id = ? AND state = 'sending'",
            (mid,),
        ).rowcount
        if moved == 0:
            # Every part already went out (their submits came earlier in this batch): there is
            # nothing to send again, and a queued message with no queued part would never
            # leave the queue. Its parts' states settle it instead.
            settle_many(conn, {mid: None}, now, self._history_rows)
            return
        conn.execute(
            "UPDATE outbox_message SET state = 'queued', updated_ms = ?, "
            "not_before_ms = coalesce(?, not_before_ms) WHERE id = ?",
            (now, not_before, mid),
        )
        history.append((mid, now, State.QUEUED.value, detail))

    def _temporary(
        self, conn: sqlite3.Connection, f: TemporaryFailure, now: int,
        history: list[HistoryRow],
    ) -> None:
        row = conn.execute(
            "SELECT state, retries, max_retries, expires_ms FROM outbox_message WHERE id = ?",
            (f.message_id,),
        ).fetchone()
        if row is None or State(row[0]) != State.SENDING:
            return
        retries = int(row[1]) + 1
        decision, not_before = decide_retry(
            attempts=retries, max_retries=int(row[2]), now_ms=now, expires_ms=row[3],
            policy=self.retry_policy, u=self.rand(),
        )
        conn.execute(
            "UPDATE outbox_message SET retries = ?, error_code = ?, error_text = ?, "
            "route = coalesce(?, route) WHERE id = ?",
            (retries, f.code, f.text or None, f.route, f.message_id),
        )
        code = _code_detail(f.code, f.text)
        if decision is RetryDecision.RETRY:
            detail = f"retry {retries} after {(not_before - now) / 1000:g} s{code}"
            self._back_to_queue(conn, f.message_id, now, not_before, detail, history)
        elif decision is RetryDecision.EXPIRE:
            self._finish(conn, f.message_id, State.EXPIRED, now, f"deadline before retry{code}",
                         history)
        else:
            self._finish(conn, f.message_id, State.FAILED, now, f"retries used up{code}", history)

    def _permanent(
        self, conn: sqlite3.Connection, f: PermanentFailure, now: int,
        history: list[HistoryRow],
    ) -> None:
        if self._state(conn, f.message_id) != State.SENDING:
            return
        conn.execute(
            "UPDATE outbox_message SET error_code = ?, error_text = ?, route = coalesce(?, route) "
            "WHERE id = ?",
            (f.code, f.text or None, f.route, f.message_id),
        )
        self._finish(conn, f.message_id, State.FAILED, now, _code_detail(f.code, f.text).strip(),
                     history)

    def _finish(
        self, conn: sqlite3.Connection, mid: int, state: State, now: int, detail: str | None,
        history: list[HistoryRow],
    ) -> None:
        """Move a not-yet-submitted message (or its unsent rest) to a final state."""
        part_state = PartState.FAILED if state == State.FAILED else PartState(state.value)
        conn.execute(
            "UPDATE outbox_part SET state = ? WHERE message_id = ? "
            "AND state IN ('queued', 'sending')",
            (part_state.value, mid),
        )
        conn.execute(
            "UPDATE outbox_message SET state = ?, updated_ms = ? WHERE id = ?",
            (state.value, now, mid),
        )
        history.append((mid, now, state.value, detail or None))

    # -- delivery reports ----------------------------------------------------------------------

    def record_reports(self, reports: Iterable[Report]) -> ReportResult:
        """Apply delivery reports in order; one whose id is not stored yet waits in the pending
        table. One transaction and a handful of statements for the whole batch
        (:func:`gateway.outbox_results.store_reports`)."""
        now = self.clock()
        batch = list(reports)
        with self._tx() as conn:
            matched, pending = store_reports(conn, batch, now, self._history_rows)
        return ReportResult(matched, pending)

    # -- timers ----------------------------------------------------------------------------------

    def expire_due(self) -> int:
        """Expire waiting messages past their deadline; returns how many."""
        with self._tx() as conn:
            return self._expire_due(conn, self.clock())

    def _expire_due(self, conn: sqlite3.Connection, now: int) -> int:
        # Set-based: a campaign whose validity runs out expires thousands of messages at
        # once, inside a claim; one read, two updates and one history run for all of them.
        text = conn.execute(
            "SELECT json_group_array(id) FROM outbox_message INDEXED BY outbox_message_deadline "
            f"WHERE state IN {_WAITING_SQL} AND expires_ms IS NOT NULL AND expires_ms <= ?",
            (now,),
        ).fetchone()[0]
        ids: list[int] = json.loads(text)
        if not ids:
            return 0
        conn.execute(
            "UPDATE outbox_part SET state = 'expired' "
            "WHERE message_id IN (SELECT value FROM json_each(?)) "
            "AND state IN ('queued', 'sending')",
            (text,),
        )
        conn.execute(
            "UPDATE outbox_message SET state = 'expired', updated_ms = ? "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (now, text),
        )
        expired = State.EXPIRED.value
        self._history([(mid, now, expired, "deadline passed before sending") for mid in ids])
        return len(ids)

    def mark_unknown_due(self, limit: int = 5000) -> int:
        """Parts with no report ``dlr_unknown_after_s`` after submission become ``unknown``;
        returns how many (at most ``limit`` per call, oldest first, so a day's backlog
        falling due at once does not hold the outbox thread: the timer's next calls take the
        rest)."""
        now = self.clock()
        cutoff = now - self.dlr_unknown_after_ms
        with self._tx() as conn:
            # Set-based, as the hot path: the due parts as one JSON row, one update, one
            # settle of all their messages.
            text = conn.execute(
                "SELECT json_group_array(json_array(message_id, seq)) FROM "
                "(SELECT message_id, seq FROM outbox_part INDEXED BY outbox_part_awaiting "
                "WHERE state = 'submitted' AND submitted_ms <= ? ORDER BY submitted_ms LIMIT ?)",
                (cutoff, limit),
            ).fetchone()[0]
            due: list[list[int]] = json.loads(text)
            if due:
                conn.execute(
                    "UPDATE outbox_part SET state = 'unknown' FROM json_each(?) AS j "
                    "WHERE outbox_part.message_id = j.value ->> 0 "
                    "AND outbox_part.seq = j.value ->> 1",
                    (text,),
                )
                settle_many(conn, dict.fromkeys(mid for mid, _ in due), now, self._history_rows)
            # A pending report older than the unknown horizon will not find its id any more.
            conn.execute(
                "DELETE FROM outbox_report_pending WHERE received_ms <= ?", (cutoff,)
            )
        return len(due)

    def recover(self) -> int:
        """At start-up: parts left ``sending`` by a crash go back to ``queued`` (sent again)."""
        now = self.clock()
        history: list[HistoryRow] = []
        with self._tx() as conn:
            # One scan at start-up: an index on state would cost every claim and mark.
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM outbox_message WHERE state = 'sending'"
            )]
            for mid in ids:
                self._back_to_queue(conn, mid, now, None, "recovered after restart", history)
            # A part can be `sending` under a message that moved on (a report settled it).
            # One scan at start-up instead of an index every claim would have to maintain.
            conn.execute("UPDATE outbox_part SET state = 'queued' WHERE state = 'sending'")
            self._history(history)
        return len(ids)

    # -- operator actions ----------------------------------------------------------------------

    def cancel(self, message_id: int) -> bool:
        """Cancel a message that has not been handed out; False when it is too late."""
        now = self.clock()
        history: list[HistoryRow] = []
        with self._tx() as conn:
            if self._state(conn, message_id) not in WAITING:
                return False
            self._cancel(conn, message_id, now, "cancelled", history)
            self._history(history)
        return True

    def cancel_queued_for_number(self, e164: str, detail: str = "opt-out") -> int:
        """Cancel every waiting message to ``e164`` (the STOP path); returns how many."""
        now = self.clock()
        history: list[HistoryRow] = []
        with self._tx() as conn:
            ids = [r[0] for r in conn.execute(
                f"SELECT id FROM outbox_message WHERE dest = ? AND state IN {_WAITING_SQL}",
                (e164,),
            )]
            for mid in ids:
                self._cancel(conn, mid, now, detail, history)
            self._history(history)
        return len(ids)

    def _cancel(
        self, conn: sqlite3.Connection, mid: int, now: int, detail: str,
        history: list[HistoryRow],
    ) -> None:
        conn.execute(
            "UPDATE outbox_part SET state = 'cancelled' WHERE message_id = ? AND state = 'queued'",
            (mid,),
        )
        conn.execute(
            "UPDATE outbox_message SET state = 'cancelled', updated_ms = ? WHERE id = ?",
            (now, mid),
        )
        history.append((mid, now, State.CANCELLED.value, detail))

    def retry(self, message_id: int) -> bool:
        """Operator retry of a failed message: back to queued with its retries reset."""
        now = self.clock()
        with self._tx() as conn:
            if self._state(conn, message_id) != State.FAILED:
                return False
            moved = conn.execute(
                "UPDATE outbox_part SET state = 'queued', error_code = NULL "
                "WHERE message_id = ? AND state = 'failed'",
                (message_id,),
            ).rowcount
            if moved == 0:
                return False  # every part went out before the failure: nothing to resend
            conn.execute(
                "UPDATE outbox_message SET state = 'queued', retries = 0, not_before_ms = ?, "
                "error_code = NULL, error_text = NULL, updated_ms = ? WHERE id = ?",
                (now, now, message_id),
            )
            self._history([(message_id, now, State.QUEUED.value, "operator retry")])
        return True

    # -- reading (queries in gateway.outbox_read) -----------------------------------------------

    def get(self, message_id: int) -> Message | None:
        return outbox_read.get_message(self.conn, message_id)

    def find(
        self, *, to: str | None = None, state: State | None = None, ref: str | None = None,
        limit: int = 100,
    ) -> list[Message]:
        """Newest first, filtered by number, state and client reference."""
        return outbox_read.find_messages(self.conn, to=to, state=state, ref=ref, limit=limit)

    def history(self, message_id: int) -> list[HistoryEntry]:
        return outbox_read.history(self.conn, message_id)

    def statistics(self) -> OutboxStatistics:
        return outbox_read.statistics(self.conn)

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _state(conn: sqlite3.Connection, mid: int) -> State | None:
        row = conn.execute("SELECT state FROM outbox_message WHERE id = ?", (mid,)).fetchone()
        return State(row[0]) if row else None

    def _history(self, rows: Iterable[HistoryRow]) -> None:
        """Queue history rows for the transaction in progress (written at its COMMIT)."""
        self._history_rows.extend(rows)


def _seqs(value: list[int] | str) -> tuple[int, ...]:
    """Part numbers from the claim's JSON: nested as an array, or as its text should SQLite
    not keep the inner array's JSON subtype through the subquery."""
    seqs = value if isinstance(value, list) else json.loads(value)
    return (seqs[0],) if len(seqs) == 1 else tuple(sorted(seqs))


def _code_detail(code: int | None, text: str) -> str:
    parts = []
    if code is not None:
        parts.append(f"code 0x{code:X}")
    if text:
        parts.append(text)
    return f": {', '.join(parts)}" if parts else ""


def _check_new(m: NewMessage) -> None:
    if not m.to.startswith("+") or not m.to[1:].isdigit():
        raise OutboxError(f"destination must be E.164 ('+' and digits), got {m.to!r}")
    if not m.text:
        raise OutboxError("empty message text")
    if m.parts is not None and m.parts < 1:
        raise OutboxError("a message has at least one part")
    if m.ref is not None and not m.ref:
        raise OutboxError("an empty client reference")


__all__ = [
    "FINAL",
    "Accepted",
    "Claimed",
    "HistoryEntry",
    "Lane",
    "Message",
    "NewMessage",
    "Outbox",
    "OutboxError",
    "OutboxStatistics",
    "Outcome",
    "Part",
    "PartState",
    "PermanentFailure",
    "Report",
    "ReportOutcome",
    "ReportResult",
    "Requeue",
    "RetryPolicy",
    "State",
    "Submitted",
    "TemporaryFailure",
    "estimate_parts",
]
