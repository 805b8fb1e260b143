"""Delivery reports applied as one batch give exactly what they give one at a time: the same
part and message states, codes, history rows and waiting reports (gateway/outbox_results.py
applies a batch in memory, then writes it with a few statements)."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.outbox import (
    NewMessage,
    Outbox,
    Report,
    ReportOutcome,
    State,
    Submitted,
)

START = 1_700_000_000_000
ROUTES = ("a", "b")


def clock() -> int:
    return START


@pytest.fixture(scope="module")
def template() -> Iterator[Path]:
    """Six messages of 1-3 parts, submitted on two routes except each third message's last
    part (still sending, so its reports wait for the id)."""
    folder = Path(tempfile.mkdtemp(prefix="outbox-reports-"))
    db = folder / "template.db"
    with Outbox(db, clock=clock) as ob:
        ob.enqueue_many([NewMessage(f"+4477009{i:05d}", "x", parts=1 + i % 3) for i in range(6)])
        submits = []
        for c in ob.claim(10):
            seqs = c.parts[:-1] if c.id % 3 == 0 else c.parts
            submits += [Submitted(c.id, s, ROUTES[c.id % 2], f"{c.id}-{s}") for s in seqs]
        ob.mark_many(submits)
    yield db
    shutil.rmtree(folder, ignore_errors=True)


def snapshot(db: Path) -> tuple[object, ...]:
    conn = sqlite3.connect(db)
    try:
        return tuple(conn.execute(sql).fetchall() for sql in (
            "SELECT id, state, error_code, updated_ms FROM outbox_message ORDER BY id",
            "SELECT message_id, seq, state, error_code, report_ms, carrier_id FROM outbox_part "
            "ORDER BY message_id, seq",
            "SELECT message_id, ts_ms, state, detail FROM outbox_history ORDER BY id",
            "SELECT route, carrier_id, outcome, error_code FROM outbox_report_pending ORDER BY id",
        ))
    finally:
        conn.close()


reports = st.lists(
    st.builds(
        Report,
        route=st.sampled_from(ROUTES),
        carrier_id=st.builds(lambda m, s: f"{m}-{s}", st.integers(1, 7), st.integers(0, 2)),
        outcome=st.sampled_from(list(ReportOutcome)),
        code=st.one_of(st.none(), st.integers(0, 0x45)),
    ),
    max_size=12,
)


@settings(max_examples=100, deadline=None)
@given(batch=reports)
@example(batch=[  # one part changed twice: the code of the first change stays
    Report("b", "1-0", ReportOutcome.UNKNOWN, code=5),
    Report("b", "1-0", ReportOutcome.DELIVERED),
])
@example(batch=[  # a report for a part still sending waits; later ones for it in the batch too
    Report("a", "3-2", ReportOutcome.DELIVERED, code=1),
    Report("a", "3-2", ReportOutcome.UNDELIVERABLE, code=2),
    Report("a", "3-0", ReportOutcome.UNDELIVERABLE, code=3),
])
def test_a_batch_of_reports_equals_the_reports_one_at_a_time(
    template: Path, batch: list[Report]
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="outbox-reports-"))
    try:
        together, alone = folder / "together.db", folder / "alone.db"
        shutil.copy(template, together)
        shutil.copy(template, alone)
        with Outbox(together, clock=clock) as ob:
            result = ob.record_reports(batch)
        matched = pending = 0
        with Outbox(alone, clock=clock) as ob:
            for r in batch:
                one = ob.record_reports([r])
                matched += one.matched
                pending += one.pending
        assert (result.matched, result.pending) == (matched, pending)
        assert snapshot(together) == snapshot(alone)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_multipart_message_passes_through_the_same_states_within_one_batch(
    template: Path, tmp_path: Path
) -> None:
    """Message 2 has two parts on route 'a': a batch that first expires one part at the
    carrier and then reports the other undeliverable settles it EXPIRED (final) at the first
    report, as one report at a time does; the second report does not rewrite it."""
    db = tmp_path / "gw.db"
    shutil.copy(template, db)
    with Outbox(db, clock=clock) as ob:
        result = ob.record_reports([
            Report("a", "2-0", ReportOutcome.EXPIRED, code=0x11),
            Report("a", "2-1", ReportOutcome.UNDELIVERABLE, code=0x22),
            Report("b", "1-0", ReportOutcome.DELIVERED, code=0),
            Report("b", "9-9", ReportOutcome.DELIVERED),  # no such id yet: waits
            Report("b", "9-8", ReportOutcome.ENROUTE),  # intermediate, unknown id: dropped
        ])
        assert (result.matched, result.pending) == (3, 1)
        m2, m1 = ob.get(2), ob.get(1)
        assert m2 is not None and m1 is not None
        assert m2.state == State.EXPIRED and m2.error_code == 0x22
        assert [p.state for p in m2.parts] == ["expired", "undeliverable"]
        assert [h.state for h in ob.history(2)][-1:] == [State.EXPIRED]
        assert m1.state == State.DELIVERED and m1.error_code is None
        assert ob.statistics().pending_reports == 1
