"""CSV import: mapping, bad rows reported and skipped, good rows kept, idempotent re-import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segmentation.consent import current_consent, is_sendable
from segmentation.csvio import (
    CsvImportError,
    RowError,
    file_sha256,
    import_events,
    import_subscribers,
    parse_mapping,
    parse_time_ms,
)
from segmentation.store import Store
from segmentation.subscribers import define_attribute, find_subscriber, get_attributes

ROOT = Path(__file__).resolve().parents[2]

SUBSCRIBERS = """\
Mobile,region,Age,VIP,tags,consent_program,consent_time,consent_disclosure,notes
(212) 555-0101,NY,41,yes,a|b,marketing,2026-01-02T10:00:00Z,Reply STOP to end,x
not-a-number,CA,30,no,,marketing,2026-01-02,,y
(312) 555-0103,IL,thirty,no,,,,,z
+13125550104,IL,22,maybe,,,,,
+13125550105,IL,22
+13125550106,IL,55,no,,marketing,yesterday,,
+13125550107,,60,true,,promo,,,
+13125550108,IL,61,false,"[""x"", ""y""]",,,,
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _import_subs(store: Store, path: Path) -> tuple[list[RowError], int, int, int]:
    errors: list[RowError] = []
    r = import_subscribers(
        store, path,
        mapping=parse_mapping(["Mobile=phone", "Age=attr.age:number", "VIP=attr.vip:bool",
                               "tags=attr.tags:list"]),
        on_error=errors.append,
    )
    assert r.errors == tuple(errors)
    assert r.rows == r.imported + r.unchanged + r.skipped
    return errors, r.imported, r.unchanged, r.skipped


def test_subscriber_import_reports_each_bad_row_and_keeps_the_good(
    store: Store, tmp_path: Path
) -> None:
    path = _write(tmp_path, "subs.csv", SUBSCRIBERS)
    errors, imported, unchanged, skipped = _import_subs(store, path)
    assert [str(e) for e in errors] == [
        "row 3, column Mobile: not a phone number (The string supplied did not seem to be a "
        "phone number.)",
        "row 4, column Age: number expected; not a number: 'thirty'",
        "row 5, column VIP: bool expected; not true/false: 'maybe'",
        "row 6, column VIP: missing (row has 3 of 9 cells)",
        "row 7, column consent_time: not a date/time (ISO 8601 or epoch ms): 'yesterday'",
        "row 8, column consent_program: must be one of marketing, transactional",
    ]
    assert (imported, unchanged, skipped) == (2, 0, 6)
    sid = find_subscriber(store, "+12125550101")
    assert sid is not None
    assert get_attributes(store, sid) == {"age": 41, "tags": ["a", "b"], "vip": True}
    other = find_subscriber(store, "+13125550108")
    assert other is not None and get_attributes(store, other)["tags"] == ["x", "y"]
    assert find_subscriber(store, "+13125550103") is None  # bad rows leave nothing behind
    c = current_consent(store, "+12125550101", "marketing")
    assert c is not None and (c.action, c.method, c.disclosure) == (
        "grant", "import", "Reply STOP to end")
    assert c.evidence == {"file": "subs.csv", "file_sha256": file_sha256(path), "row": 2}
    assert c.ts_ms == parse_time_ms("2026-01-02T10:00:00Z")
    assert is_sendable(store, "+12125550101", "marketing")


def test_subscriber_reimport_is_idempotent(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path, "subs.csv", SUBSCRIBERS)
    _import_subs(store, path)
    dump = {t: store.query(f"SELECT * FROM {t}")
            for t in ("subscriber", "subscriber_attr", "consent")}
    _errors, imported, unchanged, skipped = _import_subs(store, path)
    assert (imported, unchanged, skipped) == (0, 2, 6)
    for table, rows in dump.items():
        assert [tuple(r) for r in store.query(f"SELECT * FROM {table}")] == [
            tuple(r) for r in rows]


def test_unmapped_unknown_columns_are_ignored_and_listed(store: Store, tmp_path: Path) -> None:
    define_attribute(store, "city", "text")
    path = _write(tmp_path, "s.csv", "phone,city,shoe\n+12125550101,Paris,44\n")
    r = import_subscribers(store, path)
    assert r.ignored_columns == ("shoe",)
    sid = find_subscriber(store, "+12125550101")
    assert sid is not None and get_attributes(store, sid) == {"city": "Paris"}


@pytest.mark.parametrize(
    ("text", "mapping", "message"),
    [
        ("mobile\n+12125550101\n", [], "no phone column"),
        ("phone,age\n+12125550101,3\n", ["age=attr.age"], "not defined"),
        ("phone\n+12125550101\n", ["cell=phone"], "not in the header"),
        ("phone,x\n+12125550101,1\n", ["x=shoe_size"], "unknown field"),
        ("", [], "empty file"),
    ],
)
def test_file_level_problems_are_refused_before_any_row(
    store: Store, tmp_path: Path, text: str, mapping: list[str], message: str
) -> None:
    path = _write(tmp_path, "bad.csv", text)
    with pytest.raises(CsvImportError, match=message):
        import_subscribers(store, path, mapping=parse_mapping(mapping))
    assert store.scalar("SELECT count(*) FROM subscriber") == 0


EVENTS = """\
phone,type,ts,value,prop.sku,order
+12125550101,purchase,2026-01-10T12:00:00Z,19.99,A,o-1
+12125550101,purchase,2026-01-11T12:00:00Z,5,B,o-2
nope,purchase,2026-01-11T12:00:00Z,5,B,o-3
+12125550101,purchase,2026-13-01,5,B,o-4
+12125550101,purchase,2026-01-11,12;50,B,o-5
+12125550101,Bad Type,2026-01-11,1,B,o-6
+12125550101,link_click,1768478400,,,
+12125550101,link_click
+13125550103,link_click,1768478400000,,,
+13125550103,link_click,1768478400000,,,
"""


def test_event_import_reports_bad_rows_dedupes_and_reimports_idempotently(
    store: Store, tmp_path: Path
) -> None:
    path = _write(tmp_path, "ev.csv", EVENTS)
    errors: list[RowError] = []
    r = import_events(store, path, mapping={"order": "id"}, on_error=errors.append)
    assert [str(e) for e in errors] == [
        "row 4, column phone: not a phone number (The string supplied did not seem to be a "
        "phone number.)",
        "row 5, column ts: not a date/time (ISO 8601 or epoch ms): '2026-13-01'",
        "row 6, column value: not a number: '12;50'",
        "row 7, column type: 'Bad Type': lower-case letters, digits and _ . : - (max 64)",
        "row 8, column ts: integer times are epoch milliseconds; '1768478400' is too small",
        "row 9, column ts: missing (row has 2 of 6 cells)",
    ]
    # the identical click twice without an id counts once
    assert (r.rows, r.imported, r.unchanged, r.skipped) == (10, 3, 1, 6)
    sid = find_subscriber(store, "+12125550101")
    t = store.query("SELECT orders, spend FROM trait WHERE subscriber_id = ?", (sid,))[0]
    assert (t["orders"], t["spend"]) == (2, pytest.approx(24.99))
    props = [json.loads(p) for (p,) in store.conn.execute(
        "SELECT props FROM event WHERE type = 'purchase' ORDER BY ts_ms")]
    assert props == [{"sku": "A"}, {"sku": "B"}]
    assert store.scalar("SELECT DISTINCT source FROM event") == f"csv:{file_sha256(path)}"
    again = import_events(store, path, mapping={"order": "id"})
    assert (again.imported, again.unchanged) == (0, 4)
    assert store.scalar("SELECT count(*) FROM event") == 3


def test_small_batches_give_the_same_result(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path, "ev.csv", EVENTS)
    r = import_events(store, path, mapping={"order": "id"}, batch_size=1)
    assert (r.imported, r.unchanged, r.skipped) == (3, 1, 6)


_BIG_IMPORT = """
import sys
from pathlib import Path
from segmentation.store import Store
from segmentation.csvio import import_events
s = Store(Path(sys.argv[1]) / "big.db", cache_kib=2000)  # measure the import, not the cache
r = import_events(s, Path(sys.argv[1]) / "big.csv")
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec() from the (large) parent.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmHWM:"))
print(r.imported, r.skipped, hwm)
"""


@pytest.mark.slow
def test_large_event_file_imports_in_bounded_memory(tmp_path: Path) -> None:
    n = 200_000
    with (tmp_path / "big.csv").open("w", encoding="utf-8") as f:
        f.write("phone,type,ts,value,prop.sku,id\n")
        for i in range(n):
            f.write(f"+1312555{i % 10_000:04d},purchase,{1_768_000_000_000 + i * 1000},"
                    f"{i % 50}.5,SKU-{i % 97},e{i}\n")
    r = subprocess.run(
        [sys.executable, "-c", _BIG_IMPORT, str(tmp_path)], cwd=ROOT, capture_output=True,
        text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr
    imported, skipped, max_rss_kib = (int(x) for x in r.stdout.split())
    assert (imported, skipped) == (n, 0)
    # the whole file as Event objects would need several hundred MB; a stream needs a batch
    assert max_rss_kib < 150 * 1024, f"peak RSS {max_rss_kib} KiB"
