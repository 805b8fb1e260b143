"""Manual segments from CSV lists: bad rows, unknown numbers, idempotent re-import, the three
modes, dependents following the list, bounded memory, and the CLI."""

from __future__ import annotations

import itertools
import json
import tracemalloc
from pathlib import Path

import pytest
from conftest import HASH_KEY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.cli import main
from segmentation.csvio import CsvImportError, RowError
from segmentation.manual import UNKNOWN_WHY, set_members_from_csv
from segmentation.membership import Membership, SegmentError, UnknownSegmentError
from segmentation.store import Store
from segmentation.subscribers import find_subscriber, upsert_subscriber

KNOWN = ["+12125550101", "+12125550102", "+12125550103", "+447911123456"]


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def m(store: Store) -> Membership:
    for n in KNOWN:
        upsert_subscriber(store, n)
    mem = Membership(store)
    mem.define_manual("vip")
    return mem


def _members(m: Membership, name: str) -> set[str]:
    ids = m.members(name)
    return {str(r[0]) for i in ids for r in m.conn.execute(
        "SELECT phone_e164 FROM subscriber WHERE id = ?", (i,))}


def test_bad_rows_are_reported_and_good_rows_kept(m: Membership, tmp_path: Path) -> None:
    f = _csv(tmp_path / "list.csv",
             "name,Mobile\n"
             "ann,+12125550101\n"            # row 2: good (E.164 as stored)
             "bob,(212) 555-0102\n"          # row 3: good (national, default region US)
             "cy,\n"                         # row 4: empty
             "dee\n"                         # row 5: missing cell
             "eve,not a number\n"            # row 6: bad
             "fay,+1212555\n"                # row 7: too short
             "\n"                            # blank line: not a row
             "gus,+12125550199\n"            # row 9: valid, unknown
             "hal,+1 212 555 0101\n")        # row 10: ann again, other format
    seen: list[RowError] = []
    r = set_members_from_csv(m, "vip", f, "replace", column="mobile", on_error=seen.append)
    assert _members(m, "vip") == {"+12125550101", "+12125550102"}
    assert [(e.row, e.column) for e in r.errors] == [(4, "Mobile"), (5, "Mobile"),
                                                     (6, "Mobile"), (7, "Mobile"),
                                                     (9, "Mobile")]
    assert list(r.errors) == seen
    assert r.errors[0].why == "empty" and "missing" in r.errors[1].why
    assert r.errors[4].why == UNKNOWN_WHY
    assert str(r.errors[2]).startswith("row 6, column Mobile: ")
    assert (r.rows, r.listed, r.duplicates, r.unknown, r.skipped, r.created) == \
        (8, 2, 1, 1, 4, 0)
    assert (r.diff.entered, r.diff.exited, r.diff.member_count) == (2, 0, 2)
    assert find_subscriber(m.store, "+12125550199") is None  # reported, not created


def test_bad_bytes_and_unreadable_records_are_reported_with_their_reason(
    m: Membership, tmp_path: Path
) -> None:
    f = tmp_path / "list.csv"
    f.write_bytes(b"name,mobile\n"
                  b"ann,+12125550101\n"                      # row 2: good
                  b"bob,+1212555\xff0102\n"                  # row 3: not UTF-8
                  b"cy," + b"9" * 1_100_000 + b"\n"          # row 4: a line too long
                  b"dee,+12125550103\n")                     # row 5: good
    r = set_members_from_csv(m, "vip", f, "replace", column="mobile")
    assert _members(m, "vip") == {"+12125550101", "+12125550103"}
    assert [(e.row, e.column) for e in r.errors] == [(3, "mobile"), (4, "")]
    assert "not UTF-8 (byte 0xFF" in r.errors[0].why
    assert "longer than" in r.errors[1].why


def test_create_adds_unknown_numbers(m: Membership, tmp_path: Path) -> None:
    f = _csv(tmp_path / "l.csv", "phone\n+12125550199\n+12125550199\n+12125550101\n")
    r = set_members_from_csv(m, "vip", f, "append", create=True)
    assert (r.created, r.listed, r.duplicates, r.unknown) == (1, 2, 1, 0)
    new = find_subscriber(m.store, "+12125550199")
    assert new is not None and new in m.members("vip")
    again = set_members_from_csv(m, "vip", f, "append", create=True)
    assert again.created == 0 and (again.diff.entered, again.diff.exited) == (0, 0)


def test_modes_are_idempotent_and_recorded_as_manual(m: Membership, tmp_path: Path) -> None:
    three = _csv(tmp_path / "3.csv", "phone\n" + "\n".join(KNOWN[:3]) + "\n")
    one = _csv(tmp_path / "1.csv", "phone\n+447911123456\n")
    first = set_members_from_csv(m, "vip", three, "replace")
    assert (first.diff.entered, first.diff.exited) == (3, 0)
    again = set_members_from_csv(m, "vip", three, "replace")
    assert (again.diff.entered, again.diff.exited, again.diff.member_count) == (0, 0, 3)
    set_members_from_csv(m, "vip", one, "append")
    assert _members(m, "vip") == set(KNOWN)
    assert set_members_from_csv(m, "vip", one, "append").diff.entered == 0
    swapped = set_members_from_csv(m, "vip", one, "replace")
    assert (swapped.diff.entered, swapped.diff.exited) == (0, 3)
    gone = set_members_from_csv(m, "vip", one, "remove")
    assert (gone.diff.exited, gone.diff.member_count) == (1, 0)
    assert set_members_from_csv(m, "vip", one, "remove").diff.exited == 0
    sid = find_subscriber(m.store, "+447911123456")
    assert sid is not None
    causes = [h[1:3] for h in m.history(sid, "vip")]
    assert causes == [("enter", "manual"), ("exit", "manual")]


def test_dependents_follow_the_list(m: Membership, tmp_path: Path) -> None:
    m.define("vip_us", 'in_segment("vip") and geo.country in ["US"]')
    m.define("not_vip", 'not in_segment("vip")')
    f = _csv(tmp_path / "l.csv", "phone\n+12125550101\n+447911123456\n")
    set_members_from_csv(m, "vip", f, "replace")
    assert _members(m, "vip_us") == {"+12125550101"}
    assert _members(m, "not_vip") == {"+12125550102", "+12125550103"}
    set_members_from_csv(m, "vip", f, "remove")
    assert _members(m, "vip_us") == set()
    assert len(m.members("not_vip")) == 4
    assert all(d.clean for d in m.reconcile())


def test_errors_for_the_whole_file(m: Membership, tmp_path: Path) -> None:
    f = _csv(tmp_path / "l.csv", "number\n+12125550101\n")
    with pytest.raises(CsvImportError, match="column 'phone' is not in the header"):
        set_members_from_csv(m, "vip", f, "replace")
    with pytest.raises(UnknownSegmentError):
        set_members_from_csv(m, "nope", f, "replace", column="number")
    m.define("rule_seg", "trait.orders >= 1")
    with pytest.raises(SegmentError, match="manual"):
        set_members_from_csv(m, "rule_seg", f, "replace", column="number")
    with pytest.raises(CsvImportError, match="empty file"):
        set_members_from_csv(m, "vip", _csv(tmp_path / "e.csv", ""), "replace")
    assert m.members("vip") == []


def test_a_long_list_is_streamed(store: Store, tmp_path: Path) -> None:
    """30,000 rows (fast path: numbers as stored) read in bounded Python memory: the ids live
    in a temporary table, not in a list (a list of 30,000 ids alone is ~1 MB). Measured
    on re-applying the same list, where Membership.set_manual_members has no changes to hold
    (it keeps the entered/exited ids of a change in Python lists)."""
    n = 30_000
    store.conn.execute("BEGIN")
    store.conn.executemany(
        "INSERT INTO subscriber(id, phone_e164, status, created_ms) VALUES (?, ?, 'active', 0)",
        ((i, f"+1555{i:07d}") for i in range(1, n + 1)))
    store.conn.execute("COMMIT")
    f = tmp_path / "big.csv"
    with f.open("w", encoding="utf-8") as out:
        out.write("phone\n")
        for i in range(1, n + 1):
            out.write(f"+1555{i:07d}\n")
    m = Membership(store)
    m.define_manual("big")
    first = set_members_from_csv(m, "big", f, "replace")
    assert (first.listed, first.diff.member_count, first.skipped) == (n, n, 0)
    tracemalloc.start()
    try:
        r = set_members_from_csv(m, "big", f, "replace")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (r.listed, r.diff.entered, r.diff.exited, r.diff.member_count) == (n, 0, 0, n)
    assert peak < 800_000, peak


def test_cli_define_manual_and_members(store: Store, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for n in KNOWN:
        upsert_subscriber(store, n)
    monkeypatch.setenv("SMSGATE_HASH_KEY", HASH_KEY.decode())
    db = store.path
    code = main(["segment", "define", "vip", "--manual", "--json", "--db", db])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and (out["kind"], out["members"]) == ("manual", 0)
    f = _csv(tmp_path / "l.csv", "phone\n+12125550101\nbad\n+12125550199\n")
    code = main(["segment", "members", "vip", "--replace", str(f), "--json", "--db", db])
    out_, err = capsys.readouterr()
    out = json.loads(out_)
    assert code == 2  # a row was bad, one unknown: the good one is kept
    assert (out["members"], out["entered"], out["skipped"], out["unknown"]) == (1, 1, 1, 1)
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("row 3, column phone: ")
    assert lines[1] == f"row 4, column phone: {UNKNOWN_WHY}"
    code = main(["segment", "members", "vip", "--append", str(f), "--create", "--db", db])
    text = capsys.readouterr().out
    assert code == 2 and "2 members (+1 -0)" in text and "1 created" in text
    code = main(["segment", "count", "vip", "--json", "--db", db])
    assert code == 0 and json.loads(capsys.readouterr().out)["count"] == 2
    for bad in (["define", "x", "--db", db], ["define", "x", "trait.orders >= 1", "--manual",
                                               "--db", db],
                ["members", "vip", "--remove", str(tmp_path / "missing.csv"), "--db", db],
                ["members", "vip", "--remove", str(f), "--column", "mobile", "--db", db],
                ["members", "nope", "--remove", str(f), "--db", db]):
        code = main(["segment", *bad])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("smsgate: "), (bad, err)


# -- a model: any sequence of list files and modes -------------------------------------------------

_EXAMPLE = itertools.count()
# (cell text, the subscriber's number or None when the row is bad or unknown)
_CELLS = [
    ("+12125550101", "+12125550101"), ("(212) 555-0102", "+12125550102"),
    ("212.555.0103", "+12125550103"), ("+44 7911 123456", "+447911123456"),
    ("+12125550199", None), ("", None), ("call me", None), ("+1212", None),
]


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(
    st.sampled_from(("replace", "append", "remove")),
    st.lists(st.sampled_from(range(len(_CELLS))), max_size=10),
    st.integers(1, 4),
), min_size=1, max_size=4))
def test_lists_match_a_set_model(m: Membership, tmp_path: Path,
                                 steps: list[tuple[str, list[int], int]]) -> None:
    # the fixture lives across examples: a fresh pair of segments for each
    name = f"model{next(_EXAMPLE)}"
    m.define_manual(name)
    m.define(f"{name}_us", f'in_segment("{name}") and geo.country in ["US"]')
    model: set[str] = set()
    for i, (mode, cells, batch) in enumerate(steps):
        f = _csv(tmp_path / f"s{i}.csv",
                 "phone\n" + "".join(f'"{_CELLS[c][0]}"\n' for c in cells))
        r = set_members_from_csv(m, name, f, mode, batch_size=batch)
        named = {_CELLS[c][1] for c in cells} - {None}
        if mode == "replace":
            model = set(named)
        elif mode == "append":
            model |= named
        else:
            model -= named
        assert _members(m, name) == model
        assert _members(m, f"{name}_us") == {n for n in model if n.startswith("+1")}
        good = [c for c in cells if _CELLS[c][1] is not None]
        assert (r.listed, r.duplicates) == (len(named), len(good) - len(named))
        # blank cells make blank lines, which are not rows
        assert r.rows == len([c for c in cells if _CELLS[c][0]])
    assert all(d.clean for d in m.reconcile())
