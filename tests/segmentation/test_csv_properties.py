"""Hypothesis: CSV event import reports exactly the bad rows (bad values, out-of-range times,
non-finite JSON props, bytes that are not UTF-8), keeps the good, and is idempotent."""

from __future__ import annotations

import csv
import datetime as dt
import io
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from segmentation.csvio import (
    RowError,
    import_events,
    import_subscribers,
    parse_number,
    parse_time_ms,
)
from segmentation.store import Store
from segmentation.subscribers import to_epoch_ms
from tests.segmentation.conftest import ManualClock

GOOD = {
    "phone": st.sampled_from(["+12125550101", "(312) 555-0103", "+1 415 555 0199"]),
    "ts": st.sampled_from(["2026-01-15", "2026-01-15T09:30:00Z", "1768478400000",
                           "2026-01-15T09:30:00+02:00", "253402300799999"]),
    "value": st.sampled_from(["", "12.50", "-3", "1e3", ".5"]),
    "type": st.sampled_from(["purchase", "link_click", "custom.thing"]),
    "props": st.sampled_from(["", '{"a":1}', '{"s":"x","n":[1,2.5]}', '{"big":1e300}']),
}
BAD = {
    "phone": st.sampled_from(["nope", "+1555", "12"]),
    # out of range: past year 9999 (one ms past, and past SQLite's INTEGER), before 1970
    "ts": st.sampled_from(["2026-13-01", "yesterday", "1768478400", "15/01/2026",
                           "99999999999999999999", "253402300800000", "0001-01-01",
                           "9999-12-31T23:59:59-01:00"]),
    "value": st.sampled_from(["12,50", "1.2.3", "abc", "nan", "1e999"]),
    "type": st.sampled_from(["Purchase", "two words", "ü"]),
    # JSON that parses but cannot be stored (non-finite), checked after the type
    "props": st.sampled_from(['{"a":1e999}', '{"a":NaN}', '{"a":[-Infinity]}']),
}
BAD_BEFORE_TYPE = {  # props that do not parse as a JSON object: checked before the type
    "props": st.sampled_from(["[1]", "{", '"x"', "[" * 3000]),
}
COLUMNS = ("phone", "ts", "value", "type", "props")  # file order
# the order a row's fields are checked in; "props<" = a props value that does not parse
CHECK_ORDER = ("phone", "ts", "value", "props<", "type", "props")
E164 = {"+12125550101": "+12125550101", "(312) 555-0103": "+13125550103",
        "+1 415 555 0199": "+14155550199"}
POISON = "\u00a7\u00a7"  # replaced in the file by a byte that is not UTF-8


def _value(k: str) -> st.SearchStrategy[tuple[str, str | None]]:
    """(cell text, None when good or the check that refuses it)."""
    options = [GOOD[k].map(lambda v: (v, None)), BAD[k].map(lambda v, k=k: (v, k))]
    if k in BAD_BEFORE_TYPE:
        options.append(BAD_BEFORE_TYPE[k].map(lambda v, k=k: (v, k + "<")))
    return st.one_of(*options)


row_st = st.fixed_dictionaries({k: _value(k) for k in COLUMNS} | {
    "id": st.integers(0, 8),
    "poison": st.one_of(st.none(), st.sampled_from(COLUMNS)),  # a bad byte in this cell
})


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow([*COLUMNS, "id"])
    for r in rows:
        w.writerow([r[k][0] + (POISON if r["poison"] == k else "") for k in COLUMNS]
                   + [f"e{r['id']}"])
    path.write_bytes(text.getvalue().encode("utf-8").replace(POISON.encode("utf-8"), b"\xff"))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(row_st, max_size=20), batch=st.integers(1, 7))
def test_bad_rows_reported_once_good_rows_kept_reimport_idempotent(
    rows: list[dict[str, Any]], batch: int
) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "e.csv"
        _write_rows(path, rows)
        expected_errors = []
        good_keys = set()  # ids are scoped by event type and subscriber
        for n, r in enumerate(rows, start=2):
            if r["poison"] is not None:  # undecodable bytes are found before any value check
                expected_errors.append((n, r["poison"]))
                continue
            bad = sorted((CHECK_ORDER.index(r[k][1]), k) for k in COLUMNS if r[k][1])
            if bad:
                expected_errors.append((n, bad[0][1]))
            else:
                good_keys.add((r["type"][0], E164[r["phone"][0]], r["id"]))
        with Store(Path(d) / "s.db", clock=ManualClock(), default_region="US") as s:
            errors: list[RowError] = []
            rep = import_events(s, path, batch_size=batch, on_error=errors.append)
            assert [(e.row, e.column) for e in errors] == expected_errors
            assert rep.skipped == len(expected_errors)
            assert rep.imported == len(good_keys)  # the same (type, number, id) twice: once
            assert s.scalar("SELECT count(*) FROM event") == len(good_keys)
            again = import_events(s, path, batch_size=batch)
            assert (again.imported, again.skipped) == (0, len(expected_errors))
            assert s.scalar("SELECT count(*) FROM event") == len(good_keys)


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


SUB_GOOD = {
    "phone": st.sampled_from(["+12125550101", "(312) 555-0103", "+1 415 555 0199"]),
    "region": st.sampled_from(["", "NY", "IL"]),
    "born": st.sampled_from(["", "1965-03-02", "2026-01-15T09:30:00Z", "253402300799999"]),
    "consent_time": st.sampled_from(["", "2026-01-02", "1768478400000"]),  # <= the clock
}
SUB_BAD = {
    "phone": st.sampled_from(["nope", "+1555"]),
    "region": st.sampled_from(["two\nlines", "cr\rhere"]),  # a swallowed line break
    "born": st.sampled_from(["99999999999999999999", "10000-01-01", "yesterday"]),
    "consent_time": st.sampled_from(["99999999999999999999", "2027-01-01", "1969-12-31",
                                     "nope"]),
}
SUB_COLUMNS = ("phone", "region", "born", "consent_time")  # file order


def _sub_value(k: str) -> st.SearchStrategy[tuple[str, bool]]:
    return st.one_of(SUB_GOOD[k].map(lambda v: (v, True)), SUB_BAD[k].map(lambda v: (v, False)))


sub_row_st = st.fixed_dictionaries({k: _sub_value(k) for k in SUB_COLUMNS} | {
    "poison": st.one_of(st.none(), st.sampled_from(SUB_COLUMNS)),
})


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(sub_row_st, max_size=12), batch=st.integers(1, 5))
def test_subscriber_rows_bad_values_and_bytes_reported_good_kept(
    rows: list[dict[str, Any]], batch: int
) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.csv"
        text = io.StringIO()
        w = csv.writer(text)  # "\r\n": a cell with a bare "\r" is quoted too
        w.writerow(["phone", "region", "born", "consent_program", "consent_time"])
        for r in rows:
            cells = [r[k][0] + (POISON if r["poison"] == k else "") for k in SUB_COLUMNS]
            w.writerow([*cells[:3], "marketing", cells[3]])
        path.write_bytes(text.getvalue().encode("utf-8").replace(POISON.encode("utf-8"),
                                                                  b"\xff"))
        expected, numbers, consents = [], set(), set()
        for n, r in enumerate(rows, start=2):
            # cell checks (a bad byte, a line break) in file order, then the values
            cell_bad = [k for k in SUB_COLUMNS
                        if r["poison"] == k or (k == "region" and not r[k][1])]
            bad = cell_bad or [k for k in ("phone", "born", "consent_time") if not r[k][1]]
            if bad:
                expected.append((n, bad[0]))
                continue
            e164 = E164[r["phone"][0]]
            numbers.add(e164)
            consents.add((e164, r["consent_time"][0]))
        with Store(Path(d) / "s.db", clock=ManualClock(), default_region="US",
                   hash_key=b"k") as s:
            s.conn.execute("INSERT INTO attribute_def(key, type, created_ms) "
                           "VALUES ('born', 'date', 0)")
            errors: list[RowError] = []
            rep = import_subscribers(s, path, batch_size=batch, on_error=errors.append)
            assert [(e.row, e.column) for e in errors] == expected
            assert (rep.rows, rep.skipped) == (len(rows), len(expected))
            assert s.scalar("SELECT count(*) FROM subscriber") == len(numbers)
            assert s.scalar("SELECT count(*) FROM consent") == len(consents)
            dump = {t: [tuple(x) for x in s.query(f"SELECT * FROM {t}")]
                    for t in ("subscriber", "subscriber_attr", "consent")}
            again = import_subscribers(s, path, batch_size=batch)
            assert again.skipped == len(expected)
            assert dump == {t: [tuple(x) for x in s.query(f"SELECT * FROM {t}")]
                            for t in ("subscriber", "subscriber_attr", "consent")}
