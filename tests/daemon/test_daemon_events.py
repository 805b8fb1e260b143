"""The event pump: outbox final states -> delivered/failed events for subscribers, by an indexed
cursor over final states only (gateway/daemon_events.py), on a real shared database file."""

from __future__ import annotations

from pathlib import Path

from gateway.daemon_events import (
    EVENT_TYPES,
    EventPump,
    ensure_schema,
    final_states_after,
    read_cursor,
)
from gateway.dispatch_db import AsyncOutbox
from gateway.outbox import (
    Lane,
    NewMessage,
    Outbox,
    PermanentFailure,
    Report,
    ReportOutcome,
    Submitted,
)
from gateway.outbox_schema import FINAL_EVENT_STATES, is_final_event_state
from segmentation.store import AsyncStore, Store
from segmentation.subscribers import upsert_subscriber

START = 1_700_000_000_000


def clock() -> int:
    return START


def deliver(ob: Outbox, to: str, carrier_id: str) -> int:
    """Enqueue, claim, submit and report one message delivered; returns its id."""
    mid = ob.enqueue(NewMessage(to, "hello")).id
    (claimed,) = ob.claim(1)
    assert claimed.id == mid
    ob.mark_many([Submitted(mid, 0, "carrier", carrier_id)])
    ob.record_reports([Report("carrier", carrier_id, ReportOutcome.DELIVERED)])
    return mid


def fail(ob: Outbox, to: str) -> int:
    mid = ob.enqueue(NewMessage(to, "hello")).id
    (claimed,) = ob.claim(1)
    assert claimed.id == mid
    ob.mark_many([PermanentFailure(mid, code=0x0B, text="bad number")])
    return mid


def events(db: Path) -> list[tuple[str, str | None, str]]:
    with Store(db) as store:
        return [(r[0], r[1], r[2]) for r in store.query(
            "SELECT type, dedupe_key, props ->> 'state' FROM event WHERE source = 'outbox' "
            "ORDER BY id")]


def test_the_index_holds_exactly_the_states_the_pump_reports() -> None:
    assert set(EVENT_TYPES) == set(FINAL_EVENT_STATES)


def test_final_states_are_read_through_the_final_index_not_a_scan(tmp_path: Path) -> None:
    with Outbox(tmp_path / "gw.db", clock=clock) as ob:
        plan = " ".join(str(r[3]) for r in ob.conn.execute(
            "EXPLAIN QUERY PLAN SELECT h.id, h.message_id, h.state, h.ts_ms, m.dest, "
            "m.error_code FROM outbox_history AS h INDEXED BY outbox_history_final "
            "JOIN outbox_message AS m ON m.id = h.message_id WHERE h.id > 0 AND "
            f"{is_final_event_state('h.state')} ORDER BY h.id LIMIT 10"))
        assert "COVERING INDEX outbox_history_final (id>?)" in plan, plan
        assert "TEMP B-TREE" not in plan, plan


def test_only_final_states_come_out_in_order_and_the_cursor_moves_past_them(
    tmp_path: Path,
) -> None:
    with Outbox(tmp_path / "gw.db", clock=clock) as ob:
        ensure_schema(ob.conn)
        a = deliver(ob, "+447911123401", "1")
        ob.enqueue_many([NewMessage(f"+4479111235{i:02d}", "x", lane=Lane.CAMPAIGN)
                         for i in range(20)])
        ob.claim(5)  # sending, not final: not reported
        b = fail(ob, "+447911123402")
        finals, after = final_states_after(ob.conn, 0, 10)
        assert [(f.message_id, f.state) for f in finals] == [(a, "delivered"), (b, "failed")]
        assert finals[1].error_code == 0x0B and finals[0].dest == "+447911123401"
        assert after == finals[-1].history_id
        # in batches: the second read starts behind the first
        first, cursor = final_states_after(ob.conn, 0, 1)
        second, cursor = final_states_after(ob.conn, cursor, 1)
        assert [f.message_id for f in first + second] == [a, b]
        assert final_states_after(ob.conn, cursor, 1) == ([], cursor)


async def test_pump_ingests_for_subscribers_once_and_only_what_is_new(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    with Store(db, clock=clock) as store:
        upsert_subscriber(store, "+447911123401")
        upsert_subscriber(store, "+447911123402")
    box = await AsyncOutbox.open(db, clock=clock)
    store_a = await AsyncStore.open(db, clock=clock)
    try:
        pump = EventPump(box, store_a, batch=2)  # several batches in one pump
        a = await box.run(deliver, "+447911123401", "1")
        await box.run(deliver, "+447911123499", "2")  # not a subscriber: no event
        b = await box.run(fail, "+447911123402")
        c = await box.run(deliver, "+447911123402", "3")
        assert await pump.pump() == 3
        assert await pump.pump() == 0  # nothing new
        d = await box.run(fail, "+447911123401")
        assert await pump.pump() == 1
        assert pump.ingested == 4
        cursor = await box.run(lambda ob: read_cursor(ob.conn))
        last, _ = await box.run(lambda ob: final_states_after(ob.conn, 0, 100))
        assert cursor == last[-1].history_id
        # a pump started afresh (as after a restart) with the cursor lost ingests nothing twice
        await box.run(lambda ob: ob.conn.execute("DELETE FROM daemon_cursor"))
        assert await EventPump(box, store_a).pump() == 0
    finally:
        await store_a.aclose()
        await box.aclose()
    assert events(db) == [
        ("delivered", f"outbox:{a}:delivered", "delivered"),
        ("failed", f"outbox:{b}:failed", "failed"),
        ("delivered", f"outbox:{c}:delivered", "delivered"),
        ("failed", f"outbox:{d}:failed", "failed"),
    ]
