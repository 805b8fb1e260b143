"""event_daily holds exactly the events of the days before the roll-up mark (segmentation.daily),
whatever the order of ingests (late, current, future-stamped events) and roll-ups."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmentation.daily import DAY_MS, daily_mark, roll_up
from segmentation.ingest import Event, ingest_events
from segmentation.store import Store
from tests.segmentation.conftest import START_MS, ManualClock

NUMBERS = ("+12125550101", "+12125550102", "+12125550103")


def _rolled(store: Store) -> list[tuple[int, str, int, int, float]]:
    return [tuple(r) for r in store.conn.execute(  # type: ignore[misc]
        "SELECT subscriber_id, type, day, n, total FROM event_daily ORDER BY 1, 2, 3")]


def _expected(store: Store, mark: int | None) -> list[tuple[int, str, int, int, float]]:
    return [tuple(r) for r in store.conn.execute(  # type: ignore[misc]
        "SELECT subscriber_id, type, ts_ms / ?, COUNT(*), TOTAL(value) FROM event "
        "WHERE ts_ms < ? GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        (DAY_MS, 2**62 if mark is None else mark * DAY_MS))]


events = st.builds(
    lambda n, t, day, ms, v: Event(t, START_MS + day * DAY_MS + ms, number=n, value=v),
    st.sampled_from(NUMBERS), st.sampled_from(("purchase", "link_click", "custom.x")),
    st.integers(-3, 3), st.integers(-DAY_MS // 2, DAY_MS // 2),
    st.one_of(st.none(), st.sampled_from((1.5, 4.0))),
)
steps = st.lists(st.one_of(st.lists(events, min_size=1, max_size=5),
                           st.integers(0, 2 * DAY_MS)), max_size=12)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps)
def test_the_roll_up_is_exact_below_the_mark_and_empty_above(
    tmp_path: Path, steps: list[list[Event] | int]
) -> None:
    path = tmp_path / f"d{abs(hash(repr(steps)))}.db"
    clock = ManualClock()
    with Store(path, clock=clock) as store:
        for step in steps:
            if isinstance(step, int):
                clock.advance(step)
                roll_up(store, clock())
            else:
                ingest_events(store, step)
            mark = daily_mark(store)
            assert _rolled(store) == _expected(store, mark), step
            if isinstance(step, int):
                assert mark == clock() // DAY_MS  # the mark follows the clock's day
    path.unlink()


def test_today_is_not_rolled_up_until_the_day_is_over(store: Store, clock: ManualClock) -> None:
    today = clock() // DAY_MS
    ingest_events(store, [Event("purchase", clock() - 2 * DAY_MS, number=NUMBERS[0], value=2)])
    assert daily_mark(store) is None and len(_rolled(store)) == 1  # legacy: every day
    assert roll_up(store, clock()) and daily_mark(store) == today
    assert not roll_up(store, clock())  # once a day
    ingest_events(store, [Event("purchase", clock(), number=NUMBERS[0], value=3),
                          Event("purchase", clock() - DAY_MS, number=NUMBERS[1], value=5)])
    # the late event (yesterday) goes in at once; today's waits
    assert [(r[2], r[4]) for r in _rolled(store)] == [(today - 2, 2.0), (today - 1, 5.0)]
    clock.advance(DAY_MS)
    assert roll_up(store, clock()) and daily_mark(store) == today + 1
    assert (today, 3.0) in [(r[2], r[4]) for r in _rolled(store)]
    assert _rolled(store) == _expected(store, today + 1)
