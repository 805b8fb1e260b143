"""`smsgate subscriber erase` of a number never stored, and `smsgate event add opt_out`, run
as processes (the JSON variants in-process, through the same parser and handlers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from segmentation.consent import current_consent, number_hash, record_consent
from segmentation.store import Store
from segmentation.subscribers import upsert_subscriber
from tests.segmentation.conftest import ROOT, run_cli

KEY = "cli-test-key"
STORED, NEVER = "+12125550101", "+12125550199"


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SMSGATE_HASH_KEY", KEY)
    monkeypatch.delenv("SMSGATE_CONFIG", raising=False)
    path = tmp_path / "gate.db"
    with Store(path, hash_key=KEY.encode()) as store:
        upsert_subscriber(store, STORED)
        record_consent(store, STORED, "marketing", "grant", "operator", actor="test")
    return path


def _smsgate(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(db, *args, hash_key=KEY)


def test_erasing_a_number_never_stored_says_so(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = _smsgate(db, "subscriber", "erase", NEVER, "--yes")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"nothing was stored for {NEVER}: no subscriber, events, consent records or messages, "
        "so no rows were removed.",
        "a marketing suppression was added for it, so it will not be sent marketing messages. "
        "If you meant another number, check it and erase that one.",
    ]
    assert "erased" not in r.stdout
    with Store(db) as store:  # the suppression is there, and the stored number untouched
        assert store.scalar("SELECT COUNT(*) FROM suppression WHERE phone_hash = ?",
                            (number_hash(KEY.encode(), NEVER),)) == 1
        assert store.scalar("SELECT COUNT(*) FROM subscriber") == 1

    # JSON: the report's keys as before, plus nothing_stored
    assert main(["subscriber", "erase", "+12125550198", "--yes", "--json", "--db", str(db)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["nothing_stored"] is True and out["suppression_added"] is True
    assert out["removed"] == {} and out["subscriber_id"] is None
    assert main(["subscriber", "erase", STORED, "--yes", "--json", "--db", str(db)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["nothing_stored"] is False and out["removed"]["subscriber"] == 1
    # the same never-stored number again: nothing stored and already suppressed -> exit 1
    assert main(["subscriber", "erase", NEVER, "--yes", "--db", str(db)]) == 1
    assert "nothing stored for this number" in capsys.readouterr().err


def test_erasing_a_stored_number_still_reports_rows(db: Path) -> None:
    r = _smsgate(db, "subscriber", "erase", STORED, "--yes")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "erased; rows removed per table:"
    assert "nothing was stored" not in r.stdout


def test_opt_out_event_warns_that_consent_is_unchanged(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = _smsgate(db, "event", "add", STORED, "opt_out")
    assert (r.returncode, r.stdout) == (0, "recorded\n")
    assert r.stderr == (
        "smsgate: warning: an opt_out event records behaviour only; it does NOT change "
        "consent. To record the revoke itself: smsgate consent revoke NUMBER --note TEXT\n")
    with Store(db) as store:  # and indeed the consent is unchanged
        entry = current_consent(store, STORED, "marketing")
        assert entry is not None and entry.action == "grant"

    assert main(["event", "add", STORED, "opt_in", "--json", "--db", str(db)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["inserted"] == 1  # stdout stays one JSON object
    assert "an opt_in event records behaviour only" in err and "consent grant NUMBER" in err
    assert main(["event", "add", STORED, "purchase", "--db", str(db)]) == 0
    assert capsys.readouterr().err == ""
    help_text = subprocess.run([sys.executable, "-m", "gateway.cli", "event", "add", "--help"],
                               cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert "do NOT change consent" in " ".join(help_text.split())
