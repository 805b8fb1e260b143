"""`smsgate segment ...` end to end: one real process, the rest in-process (same handlers)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from segmentation.ingest import Event, ingest_events
from segmentation.store import Store
from segmentation.subscribers import set_attributes, upsert_subscriber

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "gate.db"
    store = Store(path)
    try:
        a = upsert_subscriber(store, "+12125550101")
        b = upsert_subscriber(store, "+12125550102")
        now = store.now_ms()
        ingest_events(store, [Event("purchase", now - 1000, subscriber_id=a, value=50),
                              Event("link_click", now - 1000, subscriber_id=b)])
        set_attributes(store, a, {"city": "Leeds"}, define_missing=True)
    finally:
        store.close()
    return path


def _run(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> tuple[int, str, str]:
    code = main(["segment", *args, "--db", str(db)])
    out, err = capsys.readouterr()
    return code, out, err


def test_define_count_list_show_explain_export_reconcile(
    db: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SMSGATE_CONFIG"}
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "segment", "define", "buyers",
         'count(purchase) >= 1 and attr.city = "Leeds"', "--db", str(db), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["members"], out["entered"], out["version"]) == (1, 1, 1)

    code, out, _ = _run(capsys, db, "count", "buyers", "--json")
    assert code == 0 and json.loads(out) == {**json.loads(out), "count": 1, "source": "stored"}
    code, out, _ = _run(capsys, db, "count", "count(link_click) >= 1 or trait.spend > 10",
                        "--json")
    assert code == 0 and json.loads(out)["count"] == 2 and json.loads(out)["source"] == "query"
    code, out, _ = _run(capsys, db, "list")
    assert code == 0 and "buyers" in out and 'attr.city = "Leeds"' in out
    code, out, _ = _run(capsys, db, "show", "buyers", "--json")
    shown = json.loads(out)
    assert shown["deps"]["events"] == ["purchase"] and shown["definition"]["kind"] == "and"

    code, out, _ = _run(capsys, db, "explain", "(212) 555-0102", "buyers", "--default-region",
                        "US")
    assert code == 0
    assert out.splitlines()[0] == "(212) 555-0102 is NOT in 'buyers' now"
    assert 'no    attr.city = "Leeds"   [missing]' in out.splitlines()
    code, out, _ = _run(capsys, db, "explain", "+12125550101", "buyers", "--json")
    tree = json.loads(out)["tree"]
    assert json.loads(out)["result"] and tree["children"][0]["detail"] == "count 1"

    csv_path = tmp_path / "buyers.csv"
    code, _, err = _run(capsys, db, "export", "buyers", "-o", str(csv_path))
    assert code == 0 and "1 members exported" in err
    assert csv_path.read_text().splitlines()[1].startswith("+12125550101,")

    code, out, _ = _run(capsys, db, "reconcile")
    assert (code, out) == (0, "buyers: ok\n")
    store = Store(db)
    store.conn.execute("DELETE FROM segment_member")
    store.close()
    code, out, _ = _run(capsys, db, "reconcile", "--json")
    assert code == 1 and json.loads(out)[0]["missing"] == [1]
    code, out, _ = _run(capsys, db, "reconcile", "--fix")
    assert code == 0 and "fixed 1 segment(s)" in out
    assert _run(capsys, db, "reconcile")[0] == 0


def test_errors_are_sentences_with_exit_2(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, db, "define", "bad", "count(purchase, last 90x) >= 2")
    assert code == 2
    assert err.splitlines() == [
        "smsgate: line 1, column 22: '90x' is not a number, duration (30d, 4h, 15m, 10s, "
        "500ms, 2w) or distance (25km)",
        "count(purchase, last 90x) >= 2",
        "                     ^",
    ]
    code, _, err = _run(capsys, db, "count", "nope")
    assert code == 2 and "no segment named 'nope'" in err
    code, _, err = _run(capsys, db, "show", "nope")
    assert code == 2 and "segment 'nope': no such segment" in err
    _run(capsys, db, "define", "a", "trait.orders >= 1")
    _run(capsys, db, "define", "b", 'in_segment("a")')
    code, _, err = _run(capsys, db, "define", "a", 'in_segment("b")')
    assert code == 2 and "cycle: a -> b -> a" in err
    code, _, err = _run(capsys, db, "builtins", "--product", "nodays")
    assert code == 2 and "expected SKU:DAYS" in err


def test_builtins_command(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, db, "builtins", "--product", "SKU-30:30", "--store",
                        "leeds:53.8,-1.55:10", "--region", "north:ENG,SCT:GB",
                        "--age-band", "25-44", "--json")
    assert code == 0
    names = {d["segment"] for d in json.loads(out)}
    assert {"active_subscribers", "top_buyers", "replenish_SKU-30", "near_leeds",
            "region_north", "age_25_44"} <= names
    code, out, _ = _run(capsys, db, "builtins", "--product", "SKU-30:30", "--store",
                        "leeds:53.8,-1.55:10", "--region", "north:ENG,SCT:GB",
                        "--age-band", "25-44")
    assert (code, out) == (0, "built-in segments are up to date\n")
    code, out, _ = _run(capsys, db, "count", "active_subscribers", "--json")
    assert json.loads(out)["count"] == 2


def test_show_says_how_far_time_conditions_are_re_checked(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, db, "define", "recent", "last(link_click) within_last 30d")
    assert code == 0, err
    code, out, _ = _run(capsys, db, "show", "recent", "--json")
    swept = json.loads(out)["swept_ms"]
    assert isinstance(swept, int) and json.loads(out)["time_sensitive"]
    code, out, _ = _run(capsys, db, "show", "recent")
    line = next(ln for ln in out.splitlines() if ln.startswith("time:"))
    # the one format for times in the CLI (utc_text): ISO 8601 UTC with Z, as history prints
    assert re.search(r"re-checked up to 20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z \(", line), line
    assert "s ago)" in line
    code, _, _ = _run(capsys, db, "define", "leeds", 'attr.city = "Leeds"')
    code, out, _ = _run(capsys, db, "show", "leeds")
    assert code == 0 and not any(ln.startswith("time:") for ln in out.splitlines())
