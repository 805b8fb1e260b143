"""`smsgate subscriber rehash [--all]`: fills subscriber_hash; errors for people."""

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
from segmentation.subscribers import upsert_subscriber

ROOT = Path(__file__).resolve().parents[2]
KEY = "rehash-test-key"
NUMBERS = ("+12125550101", "+12125550102", "+12125550103")


def _keyless_store(path: Path) -> None:
    with Store(path, default_region="US") as store:
        for n in NUMBERS:
            upsert_subscriber(store, n)


def _hashes(path: Path) -> dict[str, str | None]:
    with Store(path) as store:
        return dict(store.conn.execute(
            "SELECT s.phone_e164, h.phone_hash FROM subscriber s "
            "LEFT JOIN subscriber_hash h ON h.subscriber_id = s.id"))


def test_rehash_fills_missing_hashes_and_all_rewrites_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "gate.db"
    _keyless_store(db)
    monkeypatch.setenv("SMSGATE_HASH_KEY", KEY)
    assert main(["subscriber", "rehash", "--db", str(db)]) == 0
    assert capsys.readouterr().out == "hashed 3 rows without a hash\n"
    want = {n: number_hash(KEY.encode(), n) for n in NUMBERS}
    assert _hashes(db) == want
    assert main(["subscriber", "rehash", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"rows": 0, "changed": 0, "all": False}
    assert main(["subscriber", "rehash", "--all", "--db", str(db)]) == 0
    assert capsys.readouterr().out == "hashed 3 rows (0 changed)\n"
    assert _hashes(db) == want


def test_rehash_through_the_config_as_a_process(tmp_path: Path) -> None:
    _keyless_store(tmp_path / "gate.db")
    cfg = tmp_path / "smsgate.toml"
    cfg.write_text('[database]\npath = "gate.db"\n\n[segments]\n'
                   'hash_key_env = "SMSGATE_TEST_HASH_KEY"\n', encoding="utf-8")
    env = {**os.environ, "SMSGATE_TEST_HASH_KEY": KEY}
    env.pop("SMSGATE_CONFIG", None)
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "subscriber", "rehash", "--json",
                        "--config", str(cfg)], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"rows": 3, "changed": 3, "all": False}


def test_rehash_errors_are_sentences_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "gate.db"
    _keyless_store(db)
    monkeypatch.delenv("SMSGATE_HASH_KEY", raising=False)
    monkeypatch.delenv("SMSGATE_CONFIG", raising=False)
    assert main(["subscriber", "rehash", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("smsgate: rehash needs the site hash key") and "Traceback" not in err
    assert set(_hashes(db).values()) == {None}
    assert main(["subscriber", "rehash", "--config", str(tmp_path / "none.toml")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[database]\npath = 3\n", encoding="utf-8")
    assert main(["subscriber", "rehash", "--config", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("smsgate: invalid configuration")
