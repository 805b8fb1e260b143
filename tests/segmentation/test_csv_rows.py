"""CSV import: one bad row (a time out of range, props that cannot be stored, a byte that is not
UTF-8, an oversized cell or line, a swallowed line break, a row the database refuses) is
reported with its row number and skipped; every other row, before and after it and in the same
batch, is kept, and the import never ends in a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from segmentation.csvio import (
    ImportReport,
    RowError,
    id_dedupe_key,
    import_events,
    import_subscribers,
    parse_time_ms,
)
from segmentation.csvread import MAX_LINE_CHARS
from segmentation.ingest import Event, ingest_events
from segmentation.rules.ast import MAX_TIMESTAMP_MS
from segmentation.store import Store
from segmentation.subscribers import define_attribute, find_subscriber, get_attributes

ROOT = Path(__file__).resolve().parents[2]
N1, N2, N3, N4 = "+12125550101", "+13125550103", "+14155550199", "+12125550102"
TS = 1_768_478_400_000


def _events(store: Store, path: Path, batch_size: int = 5000
            ) -> tuple[list[str], ImportReport]:
    errors: list[RowError] = []
    report = import_events(store, path, on_error=errors.append, batch_size=batch_size)
    return [str(e) for e in errors], report


def _subscribers(store: Store, path: Path) -> tuple[list[str], ImportReport]:
    errors: list[RowError] = []
    report = import_subscribers(store, path, on_error=errors.append)
    return [str(e) for e in errors], report


def _numbers(store: Store, table: str = "event") -> list[str]:
    if table == "event":
        sql = ("SELECT s.phone_e164 FROM event e JOIN subscriber s ON s.id = e.subscriber_id "
               "ORDER BY e.ts_ms, e.id")
    else:
        sql = "SELECT phone_e164 FROM subscriber ORDER BY phone_e164"
    return [r[0] for r in store.conn.execute(sql)]


@pytest.mark.parametrize("ts", ["99999999999999999999", "253402300800000", "0001-01-01",
                                "9999-12-31T23:59:59-01:00", "0" * 30 + "1" * 20])
def test_event_time_out_of_range_is_one_bad_row_in_its_batch(
    store: Store, tmp_path: Path, ts: str
) -> None:
    path = tmp_path / "ev.csv"
    path.write_text(f"phone,type,ts\n{N1},purchase,{TS}\n{N2},purchase,{ts}\n"
                    f"{N3},purchase,{TS + 1}\n", encoding="utf-8")
    errors, report = _events(store, path)  # one batch of three rows
    assert len(errors) == 1 and errors[0].startswith("row 3, column ts: out of range")
    assert _numbers(store) == [N1, N3]
    assert (report.rows, report.imported, report.skipped) == (3, 2, 1)


def test_time_bounds_are_1970_and_the_end_of_year_9999() -> None:
    assert parse_time_ms(str(MAX_TIMESTAMP_MS)) == MAX_TIMESTAMP_MS
    assert parse_time_ms("9999-12-31T23:59:59.999Z") == MAX_TIMESTAMP_MS
    assert parse_time_ms("1970-01-01") == 0
    for text in (str(MAX_TIMESTAMP_MS + 1), "1969-12-31", "1" * 5000):
        with pytest.raises(ValueError, match="out of range"):
            parse_time_ms(text)


def test_event_add_at_out_of_range_is_a_clear_cli_error(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "event", "add", N1, "purchase",
         "--at", "99999999999999999999", "--db", str(tmp_path / "s.db")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "SMSGATE_HASH_KEY": "k", "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 2, r.stderr
    assert "--at: out of range" in r.stderr and "Traceback" not in r.stderr


def test_consent_time_out_of_range_is_one_bad_subscriber_row(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "s.csv"
    path.write_text(
        "phone,consent_program,consent_time\n"
        f"{N1},marketing,2026-01-02\n{N2},marketing,99999999999999999999\n"
        f"{N3},marketing,2026-01-03\n", encoding="utf-8")
    errors, _ = _subscribers(store, path)
    assert len(errors) == 1
    assert errors[0].startswith("row 3, column consent_time: out of range")
    assert _numbers(store, "subscriber") == [N1, N3]
    assert store.scalar("SELECT count(*) FROM consent") == 2


@pytest.mark.parametrize("props", ['{"a": 1e999}', '{"a": NaN}', '{"a": [-Infinity]}'])
def test_props_that_parse_but_cannot_be_stored_are_one_bad_row(
    store: Store, tmp_path: Path, props: str
) -> None:
    cell = '"' + props.replace('"', '""') + '"'
    path = tmp_path / "ev.csv"
    path.write_text(f'phone,type,ts,props\n{N1},purchase,{TS},"{{""a"": 1}}"\n'
                    f"{N2},purchase,{TS},{cell}\n{N3},purchase,{TS},\n", encoding="utf-8")
    errors, _ = _events(store, path)
    assert len(errors) == 1 and errors[0].startswith("row 3, column props: ")
    assert "not JSON-serialisable" in errors[0]
    assert _numbers(store) == [N1, N3]
    assert json.loads(store.scalar("SELECT props FROM event ORDER BY id LIMIT 1")) == {"a": 1}


def test_props_nested_too_deeply_or_with_a_huge_integer_are_one_bad_row(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "ev.csv"
    path.write_text(f"phone,type,ts,props\n{N1},purchase,{TS},{'[' * 5000}\n"
                    f'{N2},purchase,{TS},"{{""a"": {"9" * 5000}}}"\n{N3},purchase,{TS},\n',
                    encoding="utf-8")
    errors, _ = _events(store, path)
    assert [e[:25] for e in errors] == ["row 2, column props: not ", "row 3, column props: not "]
    assert _numbers(store) == [N3]


def _event_lines(n: int, start: int = 0) -> bytes:
    return b"".join(f"+1312555{i % 10_000:04d},purchase,{TS + i},e{i}\n".encode()
                    for i in range(start, start + n))


def test_a_bad_byte_after_the_first_batch_is_one_bad_row_and_the_rest_imports(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "ev.csv"
    path.write_bytes(b"phone,type,ts,id\n" + _event_lines(120)
                     + b"+13125559999,purch\xffase,1768478400000,bad\n" + _event_lines(30, 120))
    errors, report = _events(store, path, batch_size=50)
    assert errors == [  # the spreadsheet row (header = row 1), not a byte offset
        "row 122, column type: not UTF-8 (byte 0xFF; save the file as UTF-8)"]
    assert (report.rows, report.imported, report.skipped) == (151, 150, 1)
    assert store.scalar("SELECT count(*) FROM event") == 150


def test_a_bad_byte_in_a_small_file_names_the_row_not_a_byte_offset(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(f"phone,region\n{N1},NY\n{N2},Bogot\xe1\n{N3},CA\n".encode("latin-1"))
    errors, _ = _subscribers(store, path)
    assert errors == ["row 3, column region: not UTF-8 (byte 0xE1; save the file as UTF-8)"]
    assert _numbers(store, "subscriber") == [N1, N3]


def test_a_bad_byte_in_the_header_refuses_the_file(store: Store, tmp_path: Path) -> None:
    from segmentation.csvio import CsvImportError

    path = tmp_path / "s.csv"
    path.write_bytes(b"phone,r\xe9gion\n+12125550101,NY\n")
    with pytest.raises(CsvImportError, match="header row: not UTF-8"):
        import_subscribers(store, path)


def test_an_oversized_cell_is_one_bad_row_and_reading_goes_on(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "ev.csv"
    path.write_text(f"phone,type,ts,note\n{N1},purchase,{TS},x\n"
                    f"{N2},purchase,{TS},{'y' * 200_000}\n{N3},purchase,{TS},z\n",
                    encoding="utf-8")
    errors, report = _events(store, path)
    assert errors == ["row 3: not readable as CSV (field larger than field limit (131072))"]
    assert _numbers(store) == [N1, N3]
    assert (report.rows, report.skipped) == (3, 1)


def test_an_overlong_line_is_cut_reported_and_the_next_rows_kept(
    store: Store, tmp_path: Path
) -> None:
    # every cell under the csv module's field limit, the line over MAX_LINE_CHARS
    wide = 10
    cell = "w" * (MAX_LINE_CHARS // wide + 10)
    head = "phone,type,ts," + ",".join(f"c{i}" for i in range(wide))
    path = tmp_path / "ev.csv"
    path.write_text(f"{head}\n{N1},purchase,{TS}{',' * wide}\n"
                    f"{N2},purchase,{TS},{','.join([cell] * wide)}\n"
                    f"{N3},purchase,{TS}{',' * wide}\n", encoding="utf-8")
    errors, _ = _events(store, path)
    assert errors == [f"row 3: a line longer than {MAX_LINE_CHARS:,} characters"]
    assert _numbers(store) == [N1, N3]


def test_an_unterminated_quote_is_reported_not_stored(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(f'phone,region\n{N1},NY\n{N2},"unterminated\n{N3},x\n{N4},y\n',
                    encoding="utf-8")
    errors, report = _subscribers(store, path)
    assert errors == ["row 3, column region: line break inside a field: unterminated quote?"]
    assert _numbers(store, "subscriber") == [N1]  # the swallowed rows were never rows
    assert (report.rows, report.imported, report.skipped) == (2, 1, 1)
    # the same in an events file, in an ignored column
    ev = tmp_path / "ev.csv"
    ev.write_text(f'phone,type,ts,note\n{N1},purchase,{TS},a\n{N2},purchase,{TS},"b\n'
                  f"{N3},purchase,{TS},c\n", encoding="utf-8")
    errors, _ = _events(store, ev)
    assert errors == ["row 3, column note: line break inside a field: unterminated quote?"]
    # the audit's file: the quote runs to the end, so the row is short of cells as well; the
    # report names the line break, which says why
    short = tmp_path / "short.csv"
    short.write_text(f'phone,region,status\n{N2},"unterminated\n{N3},x\n', encoding="utf-8")
    errors, _ = _subscribers(store, short)
    assert errors == ["row 2, column region: line break inside a field: unterminated quote?"]
    assert find_subscriber(store, N2) is None and find_subscriber(store, N3) is None


def test_a_props_cell_may_span_lines(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "ev.csv"
    path.write_text(f'phone,type,ts,props\n{N1},purchase,{TS},"{{\n ""a"": 1\n}}"\n',
                    encoding="utf-8")
    errors, report = _events(store, path)
    assert errors == [] and report.imported == 1


def test_a_row_the_database_refuses_is_reported_and_its_batch_kept(
    store: Store, tmp_path: Path
) -> None:
    # A constraint the per-row checks do not know (here a trigger) fails the batch's insert;
    # the importer then ingests row by row, so only that row is lost, and reported.
    store.conn.execute("CREATE TRIGGER no_poison BEFORE INSERT ON event WHEN NEW.type = "
                       "'poison' BEGIN SELECT RAISE(ABORT, 'poison refused'); END")
    store.conn.execute("CREATE TRIGGER no_zip BEFORE INSERT ON subscriber WHEN "
                       "NEW.postal_code = '00000' BEGIN SELECT RAISE(ABORT, 'no such zip'); END")
    ev = tmp_path / "ev.csv"
    ev.write_text(f"phone,type,ts\n{N1},purchase,{TS}\n{N2},poison,{TS}\n{N3},purchase,{TS}\n",
                  encoding="utf-8")
    errors, report = _events(store, ev)
    assert errors == ["row 3: poison refused"]
    assert _numbers(store) == [N1, N3]
    assert (report.imported, report.skipped) == (2, 1)
    subs = tmp_path / "s.csv"
    subs.write_text(f"phone,postal_code\n{N4},10001\n+13125550104,00000\n+13125550105,60601\n",
                    encoding="utf-8")
    errors, _ = _subscribers(store, subs)
    assert errors == ["row 3: no such zip"]
    assert find_subscriber(store, N4) is not None
    assert find_subscriber(store, "+13125550105") is not None
    assert find_subscriber(store, "+13125550104") is None


def test_far_future_date_attributes_are_refused_and_old_dates_kept(
    store: Store, tmp_path: Path
) -> None:
    define_attribute(store, "born", "date")
    path = tmp_path / "s.csv"
    path.write_text(f"phone,born\n{N1},1965-03-02\n{N2},99999999999999999999\n"
                    f"{N3},9999-12-31\n", encoding="utf-8")
    errors, _ = _subscribers(store, path)
    assert len(errors) == 1
    assert errors[0].startswith("row 3, column born: date expected; out of range")
    born = {n: get_attributes(store, find_subscriber(store, n) or 0).get("born")
            for n in (N1, N3)}
    assert born == {N1: "1965-03-02T00:00:00+00:00", N3: "9999-12-31T00:00:00+00:00"}


def test_ids_are_scoped_by_event_type_and_subscriber(store: Store, tmp_path: Path) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_text(f"phone,type,ts,id\n{N1},purchase,{TS},1\n", encoding="utf-8")
    clicks = tmp_path / "clicks.csv"
    clicks.write_text(f"phone,type,ts,id\n{N2},link_click,{TS},1\n{N1},link_click,{TS},1\n"
                      f"{N2},purchase,{TS},1\n", encoding="utf-8")
    assert _events(store, orders)[1].imported == 1
    errors, report = _events(store, clicks)
    assert errors == [] and (report.imported, report.unchanged) == (3, 0)
    assert store.scalar("SELECT count(*) FROM event") == 4
    for path in (orders, clicks):  # re-import adds nothing
        assert _events(store, path)[1].imported == 0
    assert store.scalar("SELECT dedupe_key FROM event ORDER BY id LIMIT 1") == id_dedupe_key(
        "purchase", N1, "1")


def test_a_file_imported_with_the_old_global_id_key_still_dedupes(
    store: Store, tmp_path: Path
) -> None:
    # what the importer wrote before ids were scoped: dedupe_key "import:{id}"
    ingest_events(store, [Event("purchase", TS, number=N1, dedupe_key="import:7"),
                          Event("link_click", TS, number=N2, dedupe_key="import:8")])
    path = tmp_path / "ev.csv"
    path.write_text(f"phone,type,ts,id\n{N1},purchase,{TS},7\n{N2},link_click,{TS},8\n"
                    f"{N2},purchase,{TS},7\n{N1},link_click,{TS},8\n", encoding="utf-8")
    errors, report = _events(store, path, batch_size=3)
    # the same (subscriber, type, id) as an old row: unchanged; another subscriber or type with
    # the same id: a different event, imported
    assert errors == [] and (report.imported, report.unchanged) == (2, 2)
    assert store.scalar("SELECT count(*) FROM event") == 4
    again = import_events(store, path)
    assert (again.imported, again.unchanged) == (0, 4)
