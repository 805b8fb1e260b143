"""Outbox operations besides claim and mark (postpone, timers), retry jitter, submit grouping,
and the statement count per batch."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from gateway.outbox import (
    Lane,
    NewMessage,
    Outbox,
    Report,
    ReportOutcome,
    Requeue,
    RetryPolicy,
    State,
    Submitted,
    TemporaryFailure,
)
from tests.daemon.test_outbox import START, Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(tmp_path: Path, clock: Clock) -> Iterator[Outbox]:
    with Outbox(tmp_path / "smsgate.db", clock=clock) as ob:
        yield ob


def not_before(outbox: Outbox, mid: int) -> int:
    m = outbox.get(mid)
    assert m is not None
    return m.not_before_ms


def test_postpone_moves_queued_messages_behind_the_delay(outbox: Outbox, clock: Clock) -> None:
    a, b = (outbox.enqueue(NewMessage(f"+44770090000{i}", "hi")).id for i in (1, 2))
    claimed = outbox.claim(10)
    outbox.mark_many([Requeue(c.id) for c in claimed])
    assert outbox.postpone([a], 30_000) == 1
    assert not_before(outbox, a) == START + 30_000
    assert not_before(outbox, b) == START
    # b is ready now, a only after the delay
    assert [c.id for c in outbox.claim(10)] == [b]
    clock.now = START + 29_999
    assert outbox.claim(10) == []
    clock.now = START + 30_000
    assert [c.id for c in outbox.claim(10)] == [a]


def test_postpone_never_moves_a_message_earlier(outbox: Outbox, clock: Clock) -> None:
    later = START + 60_000
    mid = outbox.enqueue(NewMessage("+447700900001", "hi", lane=Lane.CAMPAIGN)).id
    outbox.claim(1)
    outbox.mark_many([Requeue(mid)])
    assert outbox.postpone([mid], 60_000) == 1
    assert outbox.postpone([mid], 10_000) == 0
    assert not_before(outbox, mid) == later


def test_postpone_leaves_other_states_alone(outbox: Outbox, clock: Clock) -> None:
    scheduled = outbox.enqueue(NewMessage("+447700900001", "s", not_before_ms=START + 5_000)).id
    sending = outbox.enqueue(NewMessage("+447700900002", "x")).id
    assert [c.id for c in outbox.claim(10)] == [sending]
    assert outbox.postpone([scheduled, sending, 999], 60_000) == 0
    assert not_before(outbox, scheduled) == START + 5_000
    m = outbox.get(sending)
    assert m is not None and m.state == State.SENDING and m.not_before_ms == START
    assert outbox.postpone([], 60_000) == 0


def test_messages_failing_together_retry_spread_out(tmp_path: Path, clock: Clock) -> None:
    """A seeded random source: deterministic, and the retries of one failed window land at
    different times within the policy's spread, never in lock-step."""
    source = random.Random(7)
    policy = RetryPolicy(base_s=10, cap_s=60, jitter=0.2)
    with Outbox(tmp_path / "j.db", clock=clock, retry=policy, rand=source.random) as ob:
        ob.enqueue_many([NewMessage(f"+4477009{i:05d}", "hi") for i in range(50)])
        claimed = ob.claim(50)
        ob.mark_many([TemporaryFailure(c.id, code=0x14) for c in claimed])
        delays = [not_before(ob, c.id) - START for c in claimed]
    assert all(8_000 <= d <= 12_000 for d in delays)
    assert len(set(delays)) > 40
    assert max(delays) - min(delays) > 3_000
    # the same seed places them the same way
    source.seed(7)
    assert [policy.delay_ms(1, source.random()) for _ in delays] == delays


@pytest.mark.parametrize("routes", [1, 3, 7])
def test_submits_store_each_parts_route_and_carrier_id_however_they_group(
    outbox: Outbox, routes: int
) -> None:
    """Submits are written one statement per (route, part number) group, or as one array when
    there are many groups: either way every part gets its own route and carrier id."""
    ids = [a.id for a in outbox.enqueue_many(
        [NewMessage(f"+4477009{i:05d}", "x" * (200 if i % 2 else 10)) for i in range(12)])]
    claimed = outbox.claim(12)
    submits = [Submitted(c.id, seq, f"r{c.id % routes}", f"{c.id}-{seq}")
               for c in claimed for seq in c.parts]
    outbox.mark_many(submits)
    for mid in ids:
        m = outbox.get(mid)
        assert m is not None and m.state == State.SUBMITTED and m.route == f"r{mid % routes}"
        assert [(p.route, p.carrier_id) for p in m.parts] == [
            (f"r{mid % routes}", f"{mid}-{p.seq}") for p in m.parts]


def test_unknown_due_is_taken_in_bounded_batches_oldest_first(
    outbox: Outbox, clock: Clock
) -> None:
    """A backlog of parts with no report falls due at once: each call moves at most
    ``limit`` parts, oldest first, and settles their messages (a multipart message becomes
    unknown when its last part does)."""
    ids = [a.id for a in outbox.enqueue_many(
        [NewMessage(f"+4477009{i:05d}", "x" * (200 if i % 2 else 10)) for i in range(6)])]
    for c in outbox.claim(6):
        outbox.mark_many([Submitted(c.id, s, "r", f"{c.id}-{s}") for s in c.parts])
        clock.now += 1_000  # each message submitted a second after the one before
    clock.now += 48 * 3600 * 1000  # the default dlr_unknown_after_s
    assert outbox.mark_unknown_due(limit=4) == 4  # messages 1 (1 part), 2 (2), 3 (1)
    states = [outbox.get(mid).state for mid in ids]  # type: ignore[union-attr]
    assert states == [State.UNKNOWN, State.UNKNOWN, State.UNKNOWN] + [State.SUBMITTED] * 3
    assert outbox.mark_unknown_due(limit=4) == 4
    assert outbox.mark_unknown_due(limit=4) == 1
    assert outbox.mark_unknown_due(limit=4) == 0
    assert all(outbox.get(mid).state == State.UNKNOWN for mid in ids)  # type: ignore[union-attr]
    assert [h.state for h in outbox.history(ids[1])][-1] == State.UNKNOWN


def test_a_claim_expires_every_waiting_message_past_its_deadline_first(
    outbox: Outbox, clock: Clock
) -> None:
    deadline = START + 10_000
    doomed = [a.id for a in outbox.enqueue_many(
        [NewMessage(f"+4477009{i:05d}", "x", expires_ms=deadline) for i in range(40)])]
    partial = outbox.enqueue(NewMessage("+447700900999", "y" * 200, expires_ms=deadline)).id
    fine = outbox.enqueue(NewMessage("+447700900998", "z", expires_ms=deadline + 60_000)).id
    claimed = outbox.claim(50)
    (c,) = [x for x in claimed if x.id == partial]
    outbox.mark_many([Submitted(partial, 0, "r", "p0"), Requeue(partial)])  # part 1 unsent
    outbox.mark_many([Requeue(mid) for mid in [*doomed, fine]])  # the others go back too
    clock.now = deadline
    got = outbox.claim(100)
    assert [x.id for x in got] == [fine]
    for mid in [*doomed, partial]:
        m = outbox.get(mid)
        assert m is not None and m.state == State.EXPIRED, mid
        assert outbox.history(mid)[-1].detail == "deadline passed before sending"
    m = outbox.get(partial)
    assert m is not None and [p.state for p in m.parts] == ["submitted", "expired"]
    assert c.parts == (0, 1)


def test_a_batch_costs_a_fixed_number_of_statements_whatever_its_size(outbox: Outbox) -> None:
    """Every statement is one sqlite3_step, which releases and re-takes the GIL the daemon's
    loop competes for: claim, a batch of submits and a batch of reports stay at 7 each."""
    outbox.enqueue_many([NewMessage(f"+4477009{i:05d}", "x") for i in range(200)])
    executed: list[str] = []
    outbox.conn.set_trace_callback(executed.append)

    def statements(call: Callable[[], object]) -> int:
        executed.clear()
        call()
        return len(executed)

    for size in (1, 80):
        ids = [c.id for c in outbox.claim(size)]
        submits = [Submitted(mid, 0, "r", str(mid)) for mid in ids]
        reports = [Report("r", str(mid), ReportOutcome.DELIVERED) for mid in ids]
        assert statements(lambda: outbox.claim(0)) == 0
        assert statements(partial(outbox.mark_many, submits)) == 7
        assert statements(partial(outbox.record_reports, reports)) == 7
    assert statements(lambda: outbox.claim(80)) == 7


def test_reports_waiting_for_other_ids_cost_a_batch_one_probe(outbox: Outbox) -> None:
    """A carrier sending ids we never stored leaves reports waiting for up to
    dlr_unknown_after_s: a batch of submits then pays one probe for all of them, and a report
    that does wait for one of the batch's ids is applied."""
    outbox.record_reports([Report("r", f"stale-{i}", ReportOutcome.DELIVERED) for i in range(100)])
    ids = [a.id for a in outbox.enqueue_many(
        [NewMessage(f"+4477009{i:05d}", "x") for i in range(80)])]
    outbox.record_reports([Report("r", str(ids[5]), ReportOutcome.UNDELIVERABLE, code=0x22)])
    outbox.claim(80)
    executed: list[str] = []
    outbox.conn.set_trace_callback(executed.append)
    outbox.mark_many([Submitted(mid, 0, "r", str(mid)) for mid in ids])
    outbox.conn.set_trace_callback(None)
    # 7, one probe, the one report applied (a few statements of its own), its delete and the
    # settle; a probe per submit would be 80 more
    assert len(executed) <= 20, executed
    m = outbox.get(ids[5])
    assert m is not None and m.state == State.UNDELIVERABLE and m.error_code == 0x22
    assert outbox.get(ids[6]).state == State.SUBMITTED  # type: ignore[union-attr]
    assert outbox.statistics().pending_reports == 100


def test_a_waiting_report_goes_to_the_first_part_submitted_with_its_id(outbox: Outbox) -> None:
    a, b = (x.id for x in outbox.enqueue_many(
        [NewMessage("+447700900001", "a"), NewMessage("+447700900002", "b")]))
    outbox.record_reports([Report("r", "same", ReportOutcome.DELIVERED)])
    outbox.claim(2)
    # a carrier repeating an id within one batch: the earlier report belongs to the first
    outbox.mark_many([Submitted(a, 0, "r", "same"), Submitted(b, 0, "r", "same")])
    assert outbox.get(a).state == State.DELIVERED  # type: ignore[union-attr]
    assert outbox.get(b).state == State.SUBMITTED  # type: ignore[union-attr]
    assert outbox.statistics().pending_reports == 0
