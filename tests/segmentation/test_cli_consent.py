"""`smsgate consent show|grant|revoke`: the ledger by hand, run as processes (one JSON
variant in-process, through the same parser and handlers)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gateway.cli import main
from segmentation.consent import is_sendable, record_consent
from segmentation.store import Store
from segmentation.subscribers import upsert_subscriber
from tests.segmentation.conftest import run_cli

KEY = "cli-consent-key"
NUMBER = "+12125550101"


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SMSGATE_HASH_KEY", KEY)
    monkeypatch.delenv("SMSGATE_CONFIG", raising=False)
    path = tmp_path / "gate.db"
    with Store(path, hash_key=KEY.encode()) as store:
        upsert_subscriber(store, NUMBER)
        record_consent(store, NUMBER, "marketing", "grant", "web_form", actor="test",
                       ts_ms=store.now_ms() - 60_000)
    return path


def _smsgate(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(db, *args, hash_key=KEY)


def _sendable_and_status(db: Path) -> tuple[bool, str]:
    with Store(db, hash_key=KEY.encode()) as store:
        status = store.scalar("SELECT status FROM subscriber WHERE phone_e164 = ?", (NUMBER,))
        return is_sendable(store, NUMBER, "marketing"), str(status)


def test_a_revoke_by_hand_takes_effect_at_once_and_a_grant_undoes_it(db: Path) -> None:
    assert _sendable_and_status(db) == (True, "active")
    assert _smsgate(db, "segment", "define", "reachable",
                    "consent.marketing = granted").returncode == 0
    done = _smsgate(db, "consent", "revoke", "(212) 555-0101", "--default-region", "US",
                    "--note", "called support, ticket 4711")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{NUMBER}: marketing revoke recorded (was granted ")
    assert _sendable_and_status(db) == (False, "stopped")  # as a STOP text
    count = _smsgate(db, "segment", "count", "reachable", "--json")
    assert json.loads(count.stdout)["count"] == 0  # the stored count followed at once
    shown = _smsgate(db, "consent", "show", NUMBER)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"{NUMBER}: subscriber stopped"
    assert lines[1].startswith("  marketing: revoked ") and lines[1].endswith("(operator)")
    assert lines[2] == "  transactional: none"
    assert lines[3] == "  suppressed: no"
    assert "web_form" in lines[4] and "called support, ticket 4711" in lines[5]
    assert " cli:" in lines[5]
    done = _smsgate(db, "consent", "grant", NUMBER, "--note", "asked to rejoin by phone",
                    "--disclosure", "Weekly offers, reply STOP to end")
    assert done.returncode == 0, done.stderr
    assert _sendable_and_status(db) == (True, "active")  # as START
    assert json.loads(_smsgate(db, "segment", "count", "reachable", "--json").stdout)[
        "count"] == 1


def test_json_shows_the_row_recorded_and_what_it_replaced(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["consent", "revoke", NUMBER, "--program", "transactional", "--note", "n",
                 "--db", str(db), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["before"] is None
    assert (out["current"]["action"], out["current"]["method"]) == ("revoke", "operator")
    assert out["current"]["evidence"] == {"note": "n"} and out["current"]["id"] == out["id"]
    assert _sendable_and_status(db) == (True, "active")  # transactional: no status change
    code = main(["consent", "show", NUMBER, "--db", str(db), "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert code == 0 and shown["suppressed"] == {"marketing": False, "transactional": False}
    assert [h["action"] for h in shown["history"]] == ["grant", "revoke"]


def test_bad_input_is_named_and_nothing_is_recorded(db: Path) -> None:
    cases = [
        (("consent", "revoke", NUMBER), "--note"),
        (("consent", "revoke", "hello", "--note", "x"), "bad phone number 'hello'"),
        (("consent", "revoke", NUMBER, "--note", "  "), "--note: say why"),
        (("consent", "grant", NUMBER, "--note", "x", "--program", "sms"), "--program"),
    ]
    for args, message in cases:
        done = _smsgate(db, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert _sendable_and_status(db) == (True, "active")
