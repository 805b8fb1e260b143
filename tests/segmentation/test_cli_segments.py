"""`smsgate segment ...` run as processes: history, explain's stored state, rules from standard
input and as canonical JSON, export errors, reconcile's report, builtins option errors."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import build_parser, main
from segmentation.ingest import Event, ingest_events
from segmentation.store import Store
from segmentation.subscribers import define_attribute, upsert_subscriber

ROOT = Path(__file__).resolve().parents[2]
A, B = "+12125550101", "+12125550102"
UTC_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "gate.db"
    with Store(path) as store:
        a, b = upsert_subscriber(store, A), upsert_subscriber(store, B)
        now = store.now_ms()
        ingest_events(store, [Event("purchase", now - 1000, subscriber_id=a, value=50),
                              Event("link_click", now - 1000, subscriber_id=b)])
    return path


class Cli:
    """``smsgate segment ARGS --db DB``: as a process (``proc=True``, the real entry point), or
    in this process through the same parser and handlers (fast, for the many variants)."""

    def __init__(self, db: Path, capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.db, self.capsys, self.monkeypatch = db, capsys, monkeypatch
        monkeypatch.delenv("SMSGATE_CONFIG", raising=False)

    def __call__(self, *args: str, stdin: str | None = None, proc: bool = False
                 ) -> subprocess.CompletedProcess[str]:
        argv = ["segment", *args, "--db", str(self.db)]
        if proc:
            env = {k: v for k, v in os.environ.items() if k != "SMSGATE_CONFIG"}
            return subprocess.run([sys.executable, "-m", "gateway.cli", *argv], cwd=ROOT,
                                  capture_output=True, text=True, timeout=60, env=env,
                                  input=stdin)
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin or ""))
        code = main(argv)
        out, err = self.capsys.readouterr()
        return subprocess.CompletedProcess(argv, code, out, err)


@pytest.fixture
def cli(db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(db, capsys, monkeypatch)


def test_history_lists_every_transition_and_explain_shows_the_last(cli: Cli) -> None:
    assert cli("define", "buyers", "count(purchase) >= 1").returncode == 0
    assert cli("define", "buyers", "count(link_click) >= 1").returncode == 0  # v2
    r = cli("history", A, "buyers", "--json", proc=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["number"], out["segment"], out["member"]) == (A, "buyers", False)
    steps = [(t["direction"], t["cause"], t["cause_ref"]) for t in out["transitions"]]
    assert steps == [("enter", "definition", "v1"), ("exit", "definition", "v2")]
    assert all(re.fullmatch(UTC_TIME, t["time"]) and isinstance(t["ts_ms"], int)
               for t in out["transitions"])

    r = cli("history", "(212) 555-0101", "buyers", "--default-region", "US")
    lines = r.stdout.splitlines()
    assert lines[0] == f"{A} in 'buyers': not a member now; 2 transitions recorded"
    assert re.fullmatch(rf"  {UTC_TIME} +enter  definition  v1", lines[1]), lines[1]
    assert re.fullmatch(rf"  {UTC_TIME} +exit   definition  v2", lines[2]), lines[2]

    r = cli("explain", A, "buyers", proc=True)
    assert r.returncode == 0, r.stderr
    stored = r.stdout.splitlines()[1]
    assert re.fullmatch(rf"stored:    not a member; last left {UTC_TIME} \(cause definition, "
                        r"ref v2\); 2 changes in all \(smsgate segment history\)", stored), stored
    r = cli("explain", B, "buyers", "--json")
    out = json.loads(r.stdout)
    assert out["stored_member"] and out["transitions"] == 1
    assert {k: out["last_transition"][k] for k in ("direction", "cause", "cause_ref")} == {
        "direction": "enter", "cause": "definition", "cause_ref": "v2"}
    assert "tree" in out and out["result"]  # the existing keys are unchanged

    assert cli("define", "never", "trait.orders >= 99").returncode == 0
    r = cli("explain", A, "never")
    assert r.stdout.splitlines()[1] == "stored:    not a member; no entry or exit recorded"
    r = cli("history", A, "never")
    assert r.stdout == f"{A} in 'never': not a member now; no transitions recorded\n"
    r = cli("history", "+12125550199", "never")
    assert r.returncode == 1 and "no subscriber with number +12125550199" in r.stderr
    r = cli("history", A, "nope")
    assert r.returncode == 2 and "segment 'nope': no such segment" in r.stderr
    r = cli("explain", "+12125550199", "never")
    assert r.returncode == 1 and "no subscriber with number +12125550199" in r.stderr


def test_explain_says_what_a_differing_stored_membership_means(cli: Cli, db: Path) -> None:
    assert cli("define", "buyers", "count(purchase) >= 1").returncode == 0
    with Store(db) as store:
        store.conn.execute("DELETE FROM segment_member")  # as if not applied yet
    first = cli("explain", A, "buyers").stdout.splitlines()[0]
    assert first == (f"{A} IS in 'buyers' now (stored membership differs: a queued change or "
                     "a time re-check not applied yet; if it stays, run smsgate segment "
                     "reconcile)")


def test_rules_from_standard_input_and_as_canonical_json(cli: Cli) -> None:
    r = cli("count", "-", "--json", stdin="count(purchase) >= 1\n  or count(link_click) >= 1\n",
            proc=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["count"] == 2 and json.loads(r.stdout)["source"] == "query"
    r = cli("define", "buyers", "-", stdin="count(purchase) >= 1\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("segment 'buyers' version 1: 1 members")
    shown = json.loads(cli("show", "buyers", "--json").stdout)
    assert shown["rule"] == "count(purchase) >= 1"  # the text as written is kept

    # the JSON `show --json` prints, bare or in the versioned envelope, from stdin or argument
    bare = json.dumps(shown["definition"])
    envelope = json.dumps({"version": 1, "rule": shown["definition"]}, indent=2)
    r = cli("define", "copy", "-", "--json", stdin=envelope, proc=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["members"] == 1
    assert json.loads(r.stdout)["rule"] == "count(purchase) >= 1"  # printed from the tree
    r = cli("count", bare, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["count"] == 1, r.stderr
    r = cli("count", "-", "--preview", "--json", stdin=bare)
    assert r.returncode == 0 and json.loads(r.stdout)["preview"]["matched"] == 1, r.stderr

    # errors name the JSON path
    bad = {"kind": "or", "children": [shown["definition"],
                                      {"kind": "consent", "program": "marketing", "state": "yes"}]}
    r = cli("count", "-", stdin=json.dumps(bad))
    assert r.returncode == 2
    assert r.stderr.startswith("smsgate: rule.children[1].state: unknown consent state 'yes'")
    r = cli("define", "x", "-", stdin='{"version": 1, "rule": {"kind": "and"}}')
    assert (r.returncode, r.stderr) == (2, "smsgate: rule: missing field 'children'\n")
    r = cli("count", "-", stdin="")
    assert r.returncode == 2 and "nothing was read from standard input" in r.stderr


def test_export_to_an_unwritable_path_is_a_sentence(cli: Cli, tmp_path: Path) -> None:
    assert cli("define", "buyers", "count(purchase) >= 1").returncode == 0
    target = tmp_path / "missing-dir" / "x.csv"
    r = cli("export", "buyers", "-o", str(target), proc=True)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == f"smsgate: {target}: cannot write (No such file or directory)\n"
    r = cli("export", "buyers", "-o", str(tmp_path))
    assert r.returncode == 2 and r.stderr == f"smsgate: {tmp_path}: cannot write (Is a directory)\n"


def test_reconcile_names_the_exact_count_and_the_numbers(cli: Cli, db: Path) -> None:
    with Store(db) as store:
        many = [upsert_subscriber(store, f"+1212555{n:04d}") for n in range(200, 225)]
        ingest_events(store, [Event("reply", store.now_ms() - 1000, subscriber_id=s)
                              for s in many])
    assert cli("define", "buyers", "count(purchase) >= 1 or count(link_click) >= 1"
                    ).returncode == 0
    assert cli("define", "repliers", "count(reply) >= 1").returncode == 0
    with Store(db) as store:
        store.conn.execute("DELETE FROM segment_member")  # stored membership drifts
    r = cli("reconcile", proc=True)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0] == (f"buyers: DRIFT: 2 missing ({A}, {B}), 0 extra; stored count 2 vs 2 "
                        "counted")
    first20 = ", ".join(f"+1212555{n:04d}" for n in range(200, 220))
    assert lines[1] == (f"repliers: DRIFT: 25 missing (first 20: {first20}), 0 extra; "
                        "stored count 25 vs 25 counted")
    out = json.loads(cli("reconcile", "--json").stdout)
    assert out[0]["missing_numbers"] == [A, B] and out[0]["complete"]
    assert out[0]["missing_total"] == 2
    assert len(out[1]["missing"]) == 20 and not out[1]["complete"]
    assert (out[1]["missing_total"], out[1]["extra_total"]) == (25, 0)
    assert out[1]["missing_numbers"][0] == "+12125550200"


def test_builtins_options_are_named_in_errors(cli: Cli) -> None:
    cases = {
        ("--store", "x:100,2"): "smsgate: --store 'x:100,2': latitude must be between -90 and "
                                "90",
        ("--store", "x:1,2:0"): "smsgate: --store 'x:1,2:0': radius must be > 0",
        ("--region", "n:ENG:GBR"): "smsgate: --region 'n:ENG:GBR': country 'GBR' is not an "
                                   "ISO 3166-1 alpha-2 code with phone numbers (e.g. GB, US, DE)",
        ("--region", "n:ENG:UK"): "country 'UK' is not an ISO 3166-1 alpha-2 code",
    }
    for i, (args, message) in enumerate(cases.items()):
        r = cli("builtins", *args, proc=i == 0)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
        assert "line 1" not in r.stderr
    # a template is checked against the attribute schema too, and named by its option
    r = cli("builtins", "--age-band", "25-44")
    assert r.returncode == 0 and r.stderr == (
        "smsgate: warning: --age-band '25-44': no attribute 'age' is defined, so every "
        "subscriber lacks it\n")
    with Store(cli.db) as store:
        define_attribute(store, "age", "text")
    r = cli("builtins", "--age-band", "18-24")
    assert (r.returncode, r.stderr) == (2, "smsgate: --age-band '18-24': 'age' is a text "
                                           "attribute: between does not apply to it (it takes "
                                           "=, !=, in, contains, starts, ends, exists or "
                                           "missing)\n")
    r = cli("builtins", "--region", "north:ENG:gb", "--json")
    assert r.returncode == 0, r.stderr
    shown = json.loads(cli("show", "region_north", "--json").stdout)
    assert shown["rule"] == 'geo.country in ["GB"] and geo.region in ["ENG"]'


def test_every_segment_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    parser = build_parser()
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    seg = top.choices["segment"]
    sub = next(a for a in seg._actions if isinstance(a, argparse._SubParsersAction))
    lines = [ln for ln in readme.splitlines() if "`smsgate segment " in ln]
    for name in sub.choices:
        assert any(re.search(rf"`smsgate segment [^`]*\b{name}\b", ln) for ln in lines), name
