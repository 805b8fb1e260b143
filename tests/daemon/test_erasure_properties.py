"""Property: for any mix of messages (every outbox state, several lanes and campaigns) and
received texts over a few numbers, erasing one number removes exactly its rows; every other
number's outbox, inbox and history rows are byte-for-byte as before; and, per outbox state,
the rows left plus the erased-message tally equal what there was."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.erasure import erase_number
from gateway.inbox import ensure_schema, store_inbound
from gateway.outbox import Outbox
from gateway.outbox_states import Lane, ReportOutcome
from gateway.outbox_types import NewMessage, PermanentFailure, Report, Submitted
from segmentation.store import Store

NUMBERS = ("+447911123456", "+447912345678", "+447400123456", "+447911123457")
T0 = 1_800_000_000_000
ROUTE = "carrier-a"

# what happens to a message after it is enqueued
FATES = ("queued", "scheduled", "sending", "submitted", "delivered", "undeliverable", "failed",
         "cancelled")

message = st.tuples(st.integers(0, len(NUMBERS) - 1), st.sampled_from(list(Lane)),
                    st.sampled_from(FATES), st.integers(0, 2), st.integers(1, 3))
text = st.tuples(st.integers(0, len(NUMBERS) - 1), st.sampled_from(("STOP", "hi", "START")))


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        self.ms += 1_000
        return self.ms


def build(path: Path, messages: list[tuple[int, Lane, str, int, int]],
          texts: list[tuple[int, str]]) -> None:
    clock = Clock()
    waiting = ("queued", "scheduled", "cancelled")
    # Messages that move on first, one at a time, so each claim takes exactly that message;
    # the ones left waiting afterwards.
    order = sorted(range(len(messages)), key=lambda i: messages[i][2] in waiting)
    with Outbox(path, clock=clock) as box:
        for i in order:
            who, lane, fate, campaign, parts = messages[i]
            later = T0 + 10 * 86_400_000 if fate == "scheduled" else None
            mid = box.enqueue(NewMessage(NUMBERS[who], f"text {i}", lane=lane, parts=parts,
                                         campaign_id=campaign or None,
                                         not_before_ms=later)).id
            if fate == "cancelled":
                assert box.cancel(mid)
            if fate in waiting:
                continue
            assert [c.id for c in box.claim(1, lanes=(lane,))] == [mid]
            if fate == "failed":
                box.mark_many([PermanentFailure(mid, 0x45)])
            elif fate != "sending":
                box.mark_many([Submitted(mid, seq, ROUTE, f"c{mid}.{seq}")
                               for seq in range(parts)])
                if fate in ("delivered", "undeliverable"):
                    box.record_reports([Report(ROUTE, f"c{mid}.{seq}", ReportOutcome(fate))
                                        for seq in range(parts)])
        ensure_schema(box.conn)
        for who, body in texts:
            store_inbound(box.conn, clock(), ROUTE, NUMBERS[who], "1", body)


def dump(conn: sqlite3.Connection, sql: str) -> list[tuple[Any, ...]]:
    return sorted(conn.execute(sql).fetchall(), key=repr)


def others(conn: sqlite3.Connection, erased: str) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "messages": dump(conn, f"SELECT * FROM outbox_message WHERE dest != '{erased}'"),
        "parts": dump(conn, "SELECT p.* FROM outbox_part p JOIN outbox_message m "
                            f"ON m.id = p.message_id WHERE m.dest != '{erased}'"),
        "history": dump(conn, "SELECT h.* FROM outbox_history h JOIN outbox_message m "
                              f"ON m.id = h.message_id WHERE m.dest != '{erased}'"),
        "inbox": dump(conn, f"SELECT * FROM inbox_message WHERE sender != '{erased}'"),
    }


def per_state(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for state, n, parts in conn.execute(
            "SELECT CASE WHEN state IN ('queued', 'scheduled') THEN 'cancelled' ELSE state END, "
            "count(*), sum(total_parts) FROM outbox_message GROUP BY 1"):
        out[state] = (n, parts)
    return out


@settings(max_examples=15)
@given(messages=st.lists(message, min_size=1, max_size=8),
       texts=st.lists(text, max_size=6), victim=st.integers(0, len(NUMBERS) - 1))
def test_erasure_removes_exactly_the_number_and_keeps_the_counts(
        messages: list[tuple[int, Lane, str, int, int]], texts: list[tuple[int, str]],
        victim: int) -> None:
    erased = NUMBERS[victim]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "smsgate.db"
        build(path, messages, texts)
        with Store(path, hash_key=b"k") as store:
            before_others = others(store.conn, erased)
            before = per_state(store.conn)
            report = erase_number(store, erased)
            conn = store.conn
            assert others(conn, erased) == before_others
            assert conn.execute("SELECT count(*) FROM outbox_message WHERE dest = ?",
                                (erased,)).fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM inbox_message WHERE sender = ?",
                                (erased,)).fetchone() == (0,)
            mine = [m for m in messages if m[0] == victim]
            assert report.outbox.messages == len(mine)
            assert report.outbox.parts == sum(m[4] for m in mine)
            assert report.inbox_messages == sum(1 for t in texts if t[0] == victim)
            assert report.outbox.cancelled == sum(
                1 for m in mine if m[2] in ("queued", "scheduled"))
            assert report.outbox.in_flight == sum(
                1 for m in mine if m[2] in ("sending", "submitted"))
            tally = dict(((s, (n, p)) for s, n, p in conn.execute(
                "SELECT state, sum(messages), sum(parts) FROM erased_message_tally "
                "WHERE source = 'outbox' GROUP BY 1"))) if mine else {}
            after = per_state(conn)
            for state, (n, parts) in before.items():
                left, erased_n = after.get(state, (0, 0)), tally.get(state, (0, 0))
                assert (left[0] + erased_n[0], left[1] + erased_n[1]) == (n, parts), state
