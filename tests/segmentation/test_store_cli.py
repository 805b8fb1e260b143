"""`smsgate import`, `smsgate event add`, `smsgate subscriber export|erase` run as processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from segmentation.consent import number_hash
from segmentation.store import Store

ROOT = Path(__file__).resolve().parents[2]
KEY = "cli-test-key"


def _smsgate(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SMSGATE_TEST_HASH_KEY": KEY}
    env.pop("SMSGATE_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, capture_output=True,
        text=True, timeout=60, env=env,
    )


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "smsgate.toml"
    cfg.write_text(
        '[database]\npath = "gate.db"\n\n[segments]\ndefault_region = "US"\n'
        'hash_key_env = "SMSGATE_TEST_HASH_KEY"\n', encoding="utf-8")
    return cfg


def test_import_event_export_erase_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two commands run as real processes; the rest in-process (same parser and handlers)
    # to keep the file fast on a shared machine.
    monkeypatch.setenv("SMSGATE_TEST_HASH_KEY", KEY)
    monkeypatch.delenv("SMSGATE_CONFIG", raising=False)
    cfg = str(_config(tmp_path))
    subs = tmp_path / "subs.csv"
    subs.write_text("Mobile,Age,consent_program\n(212) 555-0101,41,marketing\n"
                    "oops,3,marketing\n", encoding="utf-8")
    r = _smsgate("import", "subscribers", str(subs), "--map", "Mobile=phone",
                 "--map", "Age=attr.age:number", "--json", "--config", cfg)
    assert r.returncode == 2, r.stderr  # one bad row: reported, exit 2, good row kept
    assert r.stderr.strip().splitlines() == [
        "subs.csv: row 3, column Mobile: not a phone number (The string supplied did not "
        "seem to be a phone number.)"]
    summary = json.loads(r.stdout)
    assert (summary["rows"], summary["imported"], summary["skipped"]) == (2, 1, 1)

    def run(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--config", cfg])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = run("event", "add", "212-555-0101", "purchase", "--value", "9.5",
                         "--prop", "sku=A", "--id", "o-1", "--at", "2026-01-15T12:00:00Z")
    assert (code, out.strip()) == (0, "recorded"), err
    code, out, _ = run("event", "add", "212-555-0101", "purchase", "--value", "9.5",
                       "--id", "o-1")
    assert (code, out.strip()) == (0, "already recorded (same --id)")

    code, out, err = run("subscriber", "export", "+12125550101")
    assert code == 0, err
    data = json.loads(out)
    assert data["attributes"] == {"age": 41}
    assert [(e["type"], e["value"], e["props"]) for e in data["events"]] == [
        ("purchase", 9.5, {"sku": "A"})]
    assert data["consent"][0]["method"] == "import"

    code, _, err = run("subscriber", "erase", "+12125550101")
    assert code == 2 and "--yes" in err
    r = _smsgate("subscriber", "erase", "+12125550101", "--yes", "--json", "--config", cfg)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["events"] == 1
    with Store(tmp_path / "gate.db") as s:
        assert s.scalar("SELECT count(*) FROM subscriber") == 0
        assert s.scalar("SELECT phone_hash FROM suppression") == number_hash(
            KEY.encode(), "+12125550101")
    code, out, err = run("subscriber", "export", "+12125550101")
    assert code == 1 and out == "" and "no subscriber and no consent records" in err


def test_clear_errors_for_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process (the same parser and handlers) to keep the file fast; one process above.
    monkeypatch.setenv("SMSGATE_TEST_HASH_KEY", KEY)
    monkeypatch.delenv("SMSGATE_CONFIG", raising=False)
    cfg = str(_config(tmp_path))
    db = str(tmp_path / "direct.db")
    cases = [
        (("import", "events", str(tmp_path / "missing.csv"), "--db", db), "no such file"),
        (("event", "add", "hello", "purchase", "--db", db, "--default-region", "US"),
         "bad phone number 'hello'"),
        (("event", "add", "+12125550101", "Purchase!", "--db", db), "bad event type"),
        (("event", "add", "+12125550101", "purchase", "--at", "tomorrow", "--db", db), "--at"),
        (("event", "add", "+12125550101", "purchase", "--prop", "x", "--config", cfg),
         "KEY=VALUE"),
        (("subscriber", "export", "+12125550101", "--config", str(tmp_path / "none.toml")),
         "not found"),
        (("event", "add", "2125550101", "reply", "--db", db, "--default-region", "USA"),
         "2-letter"),
    ]
    bad = tmp_path / "ev.csv"
    bad.write_text("who,what\n1,2\n", encoding="utf-8")
    cases.append((("import", "events", str(bad), "--db", db), "no phone column"))
    for args, message in cases:
        code = main(list(args))
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert message in err, (args, err)
