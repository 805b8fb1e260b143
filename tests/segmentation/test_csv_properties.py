"""Hypothesis: CSV event import reports exactly the bad rows, keeps the good, and is idempotent."""

from __future__ import annotations

import csv
import datetime as dt
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from segmentation.csvio import RowError, import_events, parse_number, parse_time_ms
from segmentation.store import Store
from segmentation.subscribers import to_epoch_ms
from tests.segmentation.conftest import ManualClock

GOOD = {
    "phone": st.sampled_from(["+12125550101", "(312) 555-0103", "+1 415 555 0199"]),
    "ts": st.sampled_from(["2026-01-15", "2026-01-15T09:30:00Z", "1768478400000",
                           "2026-01-15T09:30:00+02:00"]),
    "value": st.sampled_from(["", "12.50", "-3", "1e3", ".5"]),
    "type": st.sampled_from(["purchase", "link_click", "custom.thing"]),
}
BAD = {
    "phone": st.sampled_from(["nope", "+1555", "12"]),
    "ts": st.sampled_from(["2026-13-01", "yesterday", "1768478400", "15/01/2026"]),
    "value": st.sampled_from(["12,50", "1.2.3", "abc", "nan"]),
    "type": st.sampled_from(["Purchase", "two words", "ü"]),
}
ORDER = ("phone", "ts", "value", "type")  # the order a row's fields are checked in

row_st = st.fixed_dictionaries({
    k: st.one_of(GOOD[k].map(lambda v: (v, True)), BAD[k].map(lambda v: (v, False)))
    for k in ORDER
} | {"id": st.integers(0, 8)})


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(row_st, max_size=20), batch=st.integers(1, 7))
def test_bad_rows_reported_once_good_rows_kept_reimport_idempotent(
    rows: list[dict[str, object]], batch: int
) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "e.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["phone", "ts", "value", "type", "id"])
            for r in rows:
                w.writerow([r[k][0] for k in ORDER] + [f"e{r['id']}"])  # type: ignore[index]
        expected_errors = []
        good_ids = set()
        for n, r in enumerate(rows, start=2):
            bad = [k for k in ORDER if not r[k][1]]  # type: ignore[index]
            if bad:
                expected_errors.append((n, bad[0]))
            else:
                good_ids.add(r["id"])
        with Store(Path(d) / "s.db", clock=ManualClock(), default_region="US") as s:
            errors: list[RowError] = []
            rep = import_events(s, path, batch_size=batch, on_error=errors.append)
            assert [(e.row, e.column) for e in errors] == expected_errors
            assert rep.skipped == len(expected_errors)
            assert rep.imported == len(good_ids)  # the same id twice counts once
            assert s.scalar("SELECT count(*) FROM event") == len(good_ids)
            again = import_events(s, path, batch_size=batch)
            assert (again.imported, again.skipped) == (0, len(expected_errors))
            assert s.scalar("SELECT count(*) FROM event") == len(good_ids)


@given(st.datetimes(min_value=dt.datetime(1973, 1, 1), max_value=dt.datetime(2200, 1, 1),
                    timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-5)),
                                               dt.timezone(dt.timedelta(hours=5, minutes=30))])))
def test_iso_times_parse_to_the_same_instant(when: dt.datetime) -> None:
    when = when.replace(microsecond=when.microsecond // 1000 * 1000)
    assert parse_time_ms(when.isoformat()) == to_epoch_ms(when)
    assert parse_time_ms(str(to_epoch_ms(when))) == to_epoch_ms(when)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_round_trip_through_text(x: float) -> None:
    assert parse_number(repr(x)) == x
