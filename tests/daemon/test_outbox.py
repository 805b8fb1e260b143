"""The outbox on a real SQLite file: accept, claim by lane, results, reports, timers, operators."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.outbox import (
    Lane,
    NewMessage,
    Outbox,
    OutboxError,
    PartState,
    PermanentFailure,
    Report,
    ReportOutcome,
    Requeue,
    RetryPolicy,
    State,
    Submitted,
    TemporaryFailure,
)
from gateway.outbox_schema import COMPONENT, MIGRATIONS

START = 1_700_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(tmp_path: Path, clock: Clock) -> Iterator[Outbox]:
    with Outbox(
        tmp_path / "smsgate.db", clock=clock, max_retries=3,
        retry=RetryPolicy(base_s=10, cap_s=60), dlr_unknown_after_s=3600,
        rand=lambda: 0.5,  # nominal delays: the jitter has its own tests (test_outbox_ops.py)
    ) as ob:
        yield ob


def msg(n: int = 1, **kw: object) -> NewMessage:
    return NewMessage(to=f"+4477009{n:05d}", text=kw.pop("text", f"hello {n}"), **kw)  # type: ignore[arg-type]


def history_states(outbox: Outbox, mid: int) -> list[State]:
    return [h.state for h in outbox.history(mid)]


# -- accept --------------------------------------------------------------------------------------


def test_enqueue_commits_message_parts_and_history(outbox: Outbox, tmp_path: Path) -> None:
    (a,) = outbox.enqueue_many([msg(1, text="x" * 200)])
    assert a.created
    # Visible to another connection at once: accepted means committed.
    other = sqlite3.connect(tmp_path / "smsgate.db")
    assert other.execute("SELECT state, total_parts FROM outbox_message").fetchall() == [
        ("queued", 2)
    ]
    assert other.execute("SELECT count(*) FROM outbox_part").fetchone() == (2,)
    other.close()
    m = outbox.get(a.id)
    assert m is not None and m.state == State.QUEUED and len(m.parts) == 2
    assert history_states(outbox, a.id) == [State.QUEUED]


def test_ref_is_idempotent_per_sender(outbox: Outbox) -> None:
    first = outbox.enqueue(msg(1, ref="order-1", sender="Shop"))
    again = outbox.enqueue(msg(1, ref="order-1", sender="Shop", text="changed"))
    other_sender = outbox.enqueue(msg(1, ref="order-1", sender="Other"))
    assert (again.id, again.created) == (first.id, False)
    assert other_sender.created and other_sender.id != first.id
    in_batch = outbox.enqueue_many([msg(2, ref="b"), msg(3, ref="b"), msg(4)])
    assert in_batch[1].id == in_batch[0].id and not in_batch[1].created
    assert len(outbox.find()) == 4


def test_bad_input_is_refused_and_nothing_is_half_stored(outbox: Outbox) -> None:
    with pytest.raises(OutboxError):
        outbox.enqueue_many([msg(1), NewMessage(to="07700900123", text="x")])
    with pytest.raises(OutboxError):
        outbox.enqueue(NewMessage(to="+447700900123", text=""))
    assert outbox.find() == []


def test_schema_version_is_per_component_and_user_version_untouched(
    outbox: Outbox, tmp_path: Path, clock: Clock
) -> None:
    conn = sqlite3.connect(tmp_path / "smsgate.db")
    assert conn.execute("PRAGMA user_version").fetchone() == (0,)
    assert conn.execute(
        "SELECT version FROM schema_version WHERE component = ?", (COMPONENT,)
    ).fetchone() == (len(MIGRATIONS),)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    # Opening again migrates nothing and keeps the data.
    outbox.enqueue(msg(1))
    with Outbox(tmp_path / "smsgate.db", clock=clock) as again:
        assert again.schema_version == len(MIGRATIONS)
        assert len(again.find()) == 1


def test_newer_schema_is_refused(tmp_path: Path, clock: Clock) -> None:
    Outbox(tmp_path / "db", clock=clock).close()
    conn = sqlite3.connect(tmp_path / "db")
    conn.execute("UPDATE schema_version SET version = 99 WHERE component = 'outbox'")
    conn.commit()
    conn.close()
    with pytest.raises(OutboxError, match="newer"):
        Outbox(tmp_path / "db", clock=clock)


# -- claim ---------------------------------------------------------------------------------------


def test_transactional_overtakes_queued_campaign(outbox: Outbox, clock: Clock) -> None:
    campaign = outbox.enqueue_many([msg(i, lane=Lane.CAMPAIGN) for i in range(10_000)])
    clock.advance(1)
    auto = outbox.enqueue(msg(20_000, lane=Lane.AUTOMATION))
    otp = outbox.enqueue(msg(20_001, lane=Lane.TRANSACTIONAL))
    first = outbox.claim(3)
    assert [c.id for c in first] == [otp.id, auto.id, campaign[0].id]
    assert [c.lane for c in first] == [Lane.TRANSACTIONAL, Lane.AUTOMATION, Lane.CAMPAIGN]
    # the rest of the campaign comes out in age order
    assert [c.id for c in outbox.claim(3)] == [a.id for a in campaign[1:4]]


def test_claim_marks_sending_on_disk_before_returning(outbox: Outbox, tmp_path: Path) -> None:
    outbox.enqueue_many([msg(1, text="y" * 300), msg(2)])
    claimed = outbox.claim(10)
    assert [c.parts for c in claimed] == [(0, 1), (0,)]
    conn = sqlite3.connect(tmp_path / "smsgate.db")
    assert {r[0] for r in conn.execute("SELECT state FROM outbox_message")} == {"sending"}
    assert {r[0] for r in conn.execute("SELECT state FROM outbox_part")} == {"sending"}
    conn.close()
    assert outbox.claim(10) == []


def test_claim_query_uses_the_ready_index(outbox: Outbox) -> None:
    # all lanes in one query: walked lane by lane down the index, no sort
    plan = outbox.conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM outbox_message INDEXED BY outbox_message_ready "
        "WHERE state IN ('queued', 'scheduled') AND lane IN (0, 1, 2) AND not_before_ms <= 5 "
        "ORDER BY lane, not_before_ms, id LIMIT 10"
    ).fetchall()
    detail = " ".join(str(r[-1]) for r in plan)
    assert "USING INDEX outbox_message_ready" in detail and "TEMP B-TREE" not in detail


def test_claim_fills_its_limit_across_lanes_in_priority_order(
    outbox: Outbox, clock: Clock
) -> None:
    campaign = [outbox.enqueue(msg(i, lane=Lane.CAMPAIGN)).id for i in range(3)]
    clock.advance(1)
    automation = [outbox.enqueue(msg(10 + i, lane=Lane.AUTOMATION)).id for i in range(2)]
    clock.advance(1)
    otp = outbox.enqueue(msg(20)).id
    got = outbox.claim(4)
    assert [c.id for c in got] == [otp, *automation, campaign[0]]
    assert [c.lane for c in got] == [Lane.TRANSACTIONAL, Lane.AUTOMATION, Lane.AUTOMATION,
                                     Lane.CAMPAIGN]
    assert [c.id for c in outbox.claim(10, lanes=[Lane.TRANSACTIONAL])] == []
    assert [c.id for c in outbox.claim(10, lanes=[Lane.CAMPAIGN])] == campaign[1:]
    assert outbox.claim(0) == [] and outbox.claim(5, lanes=[]) == []


@pytest.mark.slow
def test_claim_stays_fast_with_100k_queued(outbox: Outbox, clock: Clock) -> None:
    for chunk in range(10):
        outbox.enqueue_many([msg(chunk * 10_000 + i, lane=Lane.CAMPAIGN) for i in range(10_000)])
    otp = outbox.enqueue(msg(999_999))
    # Count SQLite VM instructions (in steps of 100) rather than time: deterministic on a
    # shared machine. A scan of 100k rows costs millions; index seeks cost a few thousand.
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    outbox.conn.set_progress_handler(count, 100)
    got = outbox.claim(1)
    outbox.conn.set_progress_handler(None, 100)
    assert [c.id for c in got] == [otp.id]
    assert steps[0] * 100 < 20_000, steps
    assert outbox.statistics().depth(Lane.CAMPAIGN) == 100_000


def test_scheduled_messages_wait_for_their_time(outbox: Outbox, clock: Clock) -> None:
    later = outbox.enqueue(msg(1, not_before_ms=START + 60_000))
    assert outbox.get(later.id).state == State.SCHEDULED  # type: ignore[union-attr]
    assert outbox.claim(10) == []
    clock.advance(60)
    assert [c.id for c in outbox.claim(10)] == [later.id]


def test_message_past_its_deadline_expires_instead_of_going_out(
    outbox: Outbox, clock: Clock
) -> None:
    soon = outbox.enqueue(msg(1, expires_ms=START + 5_000))
    fine = outbox.enqueue(msg(2, expires_ms=START + 50_000))
    clock.advance(5)
    assert [c.id for c in outbox.claim(10)] == [fine.id]
    m = outbox.get(soon.id)
    assert m is not None and m.state == State.EXPIRED
    assert {p.state for p in m.parts} == {PartState.EXPIRED}
    assert history_states(outbox, soon.id) == [State.QUEUED, State.EXPIRED]


# -- submit results ------------------------------------------------------------------------------


def test_multipart_submitted_then_delivered_from_its_parts(outbox: Outbox) -> None:
    a = outbox.enqueue(msg(1, text="z" * 400))  # 3 parts
    (c,) = outbox.claim(1)
    assert c.parts == (0, 1, 2)
    outbox.mark_many(
        [Submitted(a.id, 0, "carrier-a", "100"), Submitted(a.id, 1, "carrier-a", "101")]
    )
    assert outbox.get(a.id).state == State.SENDING  # type: ignore[union-attr]
    outbox.mark_many([Submitted(a.id, 2, "carrier-a", "102")])
    assert outbox.get(a.id).state == State.SUBMITTED  # type: ignore[union-attr]
    r = outbox.record_reports([
        Report("carrier-a", "100", ReportOutcome.DELIVERED),
        Report("carrier-a", "102", ReportOutcome.DELIVERED),
    ])
    assert (r.matched, r.pending) == (2, 0)
    assert outbox.get(a.id).state == State.SUBMITTED  # type: ignore[union-attr]
    outbox.record_reports([Report("carrier-a", "101", ReportOutcome.DELIVERED)])
    m = outbox.get(a.id)
    assert m is not None and m.state == State.DELIVERED
    assert history_states(outbox, a.id) == [
        State.QUEUED, State.SENDING, State.SUBMITTED, State.DELIVERED
    ]


def test_a_part_submitted_twice_in_one_batch_keeps_its_first_carrier_id(outbox: Outbox) -> None:
    # The set-based update applies one source row per part; a repeated part takes the ordered
    # path, so the first submit of the batch wins as it always did.
    a = outbox.enqueue(msg(1))
    b = outbox.enqueue(msg(2))
    outbox.claim(2)
    outbox.mark_many([
        Submitted(a.id, 0, "carrier-a", "first"), Submitted(b.id, 0, "carrier-a", "b0"),
        Submitted(a.id, 0, "carrier-a", "second"),
    ])
    ma, mb = outbox.get(a.id), outbox.get(b.id)
    assert ma is not None and mb is not None
    assert [p.carrier_id for p in ma.parts] == ["first"]
    assert [p.carrier_id for p in mb.parts] == ["b0"]
    assert (ma.state, mb.state) == (State.SUBMITTED, State.SUBMITTED)
    assert history_states(outbox, a.id) == [State.QUEUED, State.SENDING, State.SUBMITTED]


def test_claim_returns_text_and_fields_exactly(outbox: Outbox, clock: Clock) -> None:
    # The claim reads its rows as JSON (one step per lane): text must come back unchanged.
    text = 'quote " back \\ slash \n newline \t tab \x01 € 漢字 😀 end'
    a = outbox.enqueue(NewMessage("+447700900001", text, sender="Shop", ref="r1",
                                  expires_ms=clock() + 60_000))
    b = outbox.enqueue(NewMessage("+447700900002", "x" * 400))
    claimed = {c.id: c for c in outbox.claim(10)}
    ca, cb = claimed[a.id], claimed[b.id]
    assert (ca.to, ca.sender, ca.text, ca.total_parts, ca.parts, ca.retries, ca.expires_ms) == (
        "+447700900001", "Shop", text, 1, (0,), 0, clock() + 60_000
    )
    assert (cb.sender, cb.parts, cb.expires_ms) == ("", (0, 1, 2), None)


def test_one_undeliverable_part_makes_the_message_undeliverable(outbox: Outbox) -> None:
    a = outbox.enqueue(msg(1, text="z" * 200))
    outbox.claim(1)
    outbox.mark_many([Submitted(a.id, 0, "c", "1"), Submitted(a.id, 1, "c", "2")])
    outbox.record_reports([
        Report("c", "1", ReportOutcome.DELIVERED),
        Report("c", "2", ReportOutcome.UNDELIVERABLE, code=0x0B),
    ])
    m = outbox.get(a.id)
    assert m is not None and m.state == State.UNDELIVERABLE and m.error_code == 0x0B
    # a repeated report does not change a final state
    outbox.record_reports([Report("c", "2", ReportOutcome.DELIVERED)])
    assert outbox.get(a.id).state == State.UNDELIVERABLE  # type: ignore[union-attr]


def test_report_before_its_id_waits_and_is_matched(outbox: Outbox) -> None:
    a = outbox.enqueue(msg(1))
    outbox.claim(1)
    # the SMSC's deliver_sm overtook our handling of submit_sm_resp (field-failures.md §3.4)
    r = outbox.record_reports([Report("c", "77", ReportOutcome.DELIVERED)])
    assert (r.matched, r.pending) == (0, 1)
    assert outbox.statistics().pending_reports == 1
    outbox.mark_many([Submitted(a.id, 0, "c", "77")])
    assert outbox.get(a.id).state == State.DELIVERED  # type: ignore[union-attr]
    assert outbox.statistics().pending_reports == 0


def test_same_id_on_another_route_is_another_message(outbox: Outbox) -> None:
    a, b = outbox.enqueue_many([msg(1), msg(2)])
    outbox.claim(2)
    outbox.mark_many([Submitted(a.id, 0, "x", "5"), Submitted(b.id, 0, "y", "5")])
    outbox.record_reports([Report("y", "5", ReportOutcome.DELIVERED)])
    assert outbox.get(a.id).state == State.SUBMITTED  # type: ignore[union-attr]
    assert outbox.get(b.id).state == State.DELIVERED  # type: ignore[union-attr]


def test_temporary_failure_backs_off_then_fails_when_retries_are_used(
    outbox: Outbox, clock: Clock
) -> None:
    a = outbox.enqueue(msg(1))
    delays = []
    for _ in range(3):
        (c,) = outbox.claim(1)
        outbox.mark_many([TemporaryFailure(c.id, code=0x14, text="queue full")])
        m = outbox.get(a.id)
        assert m is not None and m.state == State.QUEUED
        delays.append((m.not_before_ms - clock.now) / 1000)
        assert outbox.claim(1) == []  # not before its backoff
        clock.now = m.not_before_ms
    assert delays == [10, 20, 40]
    outbox.claim(1)
    outbox.mark_many([TemporaryFailure(a.id, code=0x14)])
    m = outbox.get(a.id)
    assert m is not None and m.state == State.FAILED and m.error_code == 0x14 and m.retries == 4


def test_temporary_failure_past_validity_expires(outbox: Outbox) -> None:
    a = outbox.enqueue(msg(1, expires_ms=START + 5_000))
    outbox.claim(1)
    outbox.mark_many([TemporaryFailure(a.id)])
    assert outbox.get(a.id).state == State.EXPIRED  # type: ignore[union-attr]


def test_permanent_failure_keeps_the_code(outbox: Outbox) -> None:
    a = outbox.enqueue(msg(1, text="q" * 200))
    outbox.claim(1)
    outbox.mark_many([
        Submitted(a.id, 0, "m1", "3"),
        PermanentFailure(a.id, code=38, text="+CMS ERROR: 38", route="m1"),
    ])
    m = outbox.get(a.id)
    assert m is not None and m.state == State.FAILED
    assert (m.error_code, m.error_text, m.route) == (38, "+CMS ERROR: 38", "m1")
    assert [p.state for p in m.parts] == [PartState.SUBMITTED, PartState.FAILED]


def test_requeue_keeps_place_and_counts_no_retry(outbox: Outbox, clock: Clock) -> None:
    a, b = outbox.enqueue_many([msg(1), msg(2)])
    outbox.claim(1)
    clock.advance(1)
    outbox.mark_many([Requeue(a.id)])
    m = outbox.get(a.id)
    assert m is not None and m.state == State.QUEUED and m.retries == 0
    assert [c.id for c in outbox.claim(2)] == [a.id, b.id]


def test_partial_send_resends_only_unsent_parts(outbox: Outbox, clock: Clock) -> None:
    a = outbox.enqueue(msg(1, text="w" * 400))
    outbox.claim(1)
    outbox.mark_many([Submitted(a.id, 0, "c", "1"), TemporaryFailure(a.id, code=0x58)])
    clock.advance(10)
    (again,) = outbox.claim(1)
    assert again.parts == (1, 2)


# -- timers, recovery, operators ---------------------------------------------------------------


def test_no_report_in_time_is_unknown_not_delivered(outbox: Outbox, clock: Clock) -> None:
    a, b = outbox.enqueue_many([msg(1), msg(2)])
    outbox.claim(2)
    outbox.mark_many([Submitted(a.id, 0, "c", "1"), Submitted(b.id, 0, "c", "2")])
    clock.advance(1800)
    outbox.record_reports([Report("c", "2", ReportOutcome.DELIVERED)])
    assert outbox.mark_unknown_due() == 0
    clock.advance(1800)
    assert outbox.mark_unknown_due() == 1
    assert outbox.get(a.id).state == State.UNKNOWN  # type: ignore[union-attr]
    # a late report still counts
    outbox.record_reports([Report("c", "1", ReportOutcome.DELIVERED)])
    assert outbox.get(a.id).state == State.DELIVERED  # type: ignore[union-attr]


def test_recover_puts_sending_back_in_line(outbox: Outbox, tmp_path: Path, clock: Clock) -> None:
    a, b = outbox.enqueue_many([msg(1, text="v" * 200), msg(2)])
    outbox.claim(2)
    outbox.mark_many([Submitted(a.id, 0, "c", "1"), Submitted(b.id, 0, "c", "2")])
    outbox.close()
    with Outbox(tmp_path / "smsgate.db", clock=clock) as after_crash:
        assert after_crash.recover() == 1
        m = after_crash.get(a.id)
        assert m is not None and m.state == State.QUEUED
        assert [p.state for p in m.parts] == [PartState.SUBMITTED, PartState.QUEUED]
        (c,) = after_crash.claim(5)
        assert (c.id, c.parts) == (a.id, (1,))
        assert after_crash.get(b.id).state == State.SUBMITTED  # type: ignore[union-attr]


def test_cancel_only_while_waiting(outbox: Outbox) -> None:
    a, b = outbox.enqueue_many([msg(1), msg(2)])
    outbox.claim(1)
    assert not outbox.cancel(a.id)
    assert outbox.cancel(b.id)
    assert not outbox.cancel(b.id)
    assert not outbox.cancel(12345)
    assert outbox.get(b.id).state == State.CANCELLED  # type: ignore[union-attr]


def test_cancel_queued_for_number_is_the_stop_path(outbox: Outbox) -> None:
    ids = outbox.enqueue_many([
        msg(1, lane=Lane.CAMPAIGN), msg(1, lane=Lane.AUTOMATION), msg(2, lane=Lane.CAMPAIGN),
        msg(1, not_before_ms=START + 10**6),
    ])
    assert outbox.cancel_queued_for_number("+447700900001") == 3
    assert [m.id for m in outbox.find(state=State.CANCELLED)] == [ids[3].id, ids[1].id, ids[0].id]
    assert [c.id for c in outbox.claim(10)] == [ids[2].id]
    assert outbox.history(ids[0].id)[-1].detail == "opt-out"


def test_retry_failed_message(outbox: Outbox) -> None:
    a = outbox.enqueue(msg(1))
    outbox.claim(1)
    assert not outbox.retry(a.id)  # sending: not failed
    outbox.mark_many([PermanentFailure(a.id, code=1)])
    assert outbox.retry(a.id)
    m = outbox.get(a.id)
    assert m is not None and m.state == State.QUEUED and m.error_code is None
    assert [c.id for c in outbox.claim(1)] == [a.id]


def test_find_by_number_state_and_ref(outbox: Outbox) -> None:
    outbox.enqueue_many([msg(1, ref="a"), msg(2), msg(1)])
    assert len(outbox.find(to="+447700900001")) == 2
    assert [m.ref for m in outbox.find(ref="a")] == ["a"]
    assert len(outbox.find(state=State.QUEUED, limit=1)) == 1
    assert outbox.find(state=State.DELIVERED) == []


def test_statistics_per_lane_and_state(outbox: Outbox) -> None:
    outbox.enqueue_many(
        [msg(i, lane=Lane.CAMPAIGN) for i in range(5)] + [msg(9, lane=Lane.TRANSACTIONAL)]
    )
    outbox.claim(2)
    stats = outbox.statistics()
    assert stats.count(state=State.SENDING) == 2
    assert stats.depth(Lane.CAMPAIGN) == 4 and stats.depth(Lane.TRANSACTIONAL) == 0
    assert stats.count(lane=Lane.CAMPAIGN) == 5
    assert stats.count() == 6


def test_reshape_before_first_submit_only(outbox: Outbox) -> None:
    a = outbox.enqueue(msg(1, text="u" * 200))
    assert len(outbox.claim(1)) == 1
    outbox.reshape(a.id, 3)
    m = outbox.get(a.id)
    assert m is not None and m.total_parts == 3
    assert [p.state for p in m.parts] == [PartState.SENDING] * 3
    outbox.mark_many([Submitted(a.id, 0, "c", "1")])
    with pytest.raises(OutboxError):
        outbox.reshape(a.id, 2)
