"""``smsgate send`` and ``smsgate messages`` against a real database file."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.cli.send import CliInputError, normalise_number
from gateway.config import load_config
from gateway.outbox import Outbox, PermanentFailure, State

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "smsgate.toml"
    path.write_text('[database]\npath = "gw.db"\n[segments]\ndefault_region = "GB"\n')
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def rows(tmp_path: Path) -> list[tuple[int, str, str, str, str | None, str]]:
    with Outbox(tmp_path / "gw.db") as ob:
        return [(m.id, m.to, m.sender, m.text, m.ref, m.state.value) for m in reversed(ob.find())]


def test_send_prints_the_id_of_a_committed_row(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "send", "--config", str(config_file), "--to", "07911 123456",
                         "--from", "Shop", "Your code is 123456")
    assert (code, err) == (0, "")
    assert rows(tmp_path) == [
        (int(out), "+447911123456", "Shop", "Your code is 123456", None, "queued")
    ]


def test_send_with_ref_is_idempotent(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("send", "--config", str(config_file), "--to", "+447911123456", "--ref", "o-1", "hi")
    _, first, _ = run(capsys, *args)
    code, again, err = run(capsys, *args)
    assert code == 0 and again == first
    assert "already accepted" in err
    assert len(rows(tmp_path)) == 1


def test_send_reads_text_from_stdin(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin ✓"))
    code, _, _ = run(capsys, "send", "--config", str(config_file), "--to", "+447911123456", "-")
    assert code == 0
    assert rows(tmp_path)[0][3] == "from stdin ✓"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--to", "12", "x"], "bad number '12'"),
        (["--to", "+447700900123", "x"], "not a valid number"),
        (["--to", "+447911123456", "--from", "WayTooLongSender", "x"], "bad sender"),
        (["--to", "+447911123456"], "give --to NUMBER and TEXT"),
        (["--to", "+447911123456", ""], "empty message text"),
    ],
)
def test_send_bad_input_exits_2_with_a_message_and_stores_nothing(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str],
    argv: list[str], message: str,
) -> None:
    code, out, err = run(capsys, "send", "--config", str(config_file), *argv)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "gw.db").exists() or rows(tmp_path) == []


def test_send_with_a_bad_config_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[database]\npath = "gw.db"\n[daemon]\nmax_retries = "5"\n')
    code, _, err = run(capsys, "send", "--config", str(bad), "--to", "+447911123456", "x")
    assert code == 2
    assert f"{bad}:4: daemon.max_retries: expected an integer" in err


def test_batch_keeps_good_lines_and_reports_each_bad_one(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join([
        json.dumps({"to": "+447911123456", "text": "one"}),
        "{not json",
        json.dumps({"to": "07911 123457", "text": "two", "from": "Shop", "ref": "r2"}),
        json.dumps({"to": "+447911123458"}),
        "",
        json.dumps({"to": "+447911123457", "text": "two again", "from": "Shop", "ref": "r2"}),
        json.dumps({"to": "+447911123459", "text": "x", "colour": "red"}),
        json.dumps(["to", "text"]),
        json.dumps({"to": "+447911123450", "text": "three", "ref": None}),
    ]) + "\n")
    code, out, err = run(capsys, "send", "--config", str(config_file), "--batch", str(batch))
    assert code == 2
    assert out.strip() == "3 accepted, 1 already accepted (same sender and ref), 4 bad lines"
    lines = err.strip().splitlines()
    assert [line.split(":")[1] for line in lines] == ["2", "4", "7", "8"]
    assert "not JSON" in lines[0] and "'text'" in lines[1] and "'colour'" in lines[2]
    assert [(r[1], r[3], r[4]) for r in rows(tmp_path)] == [
        ("+447911123456", "one", None), ("+447911123457", "two", "r2"),
        ("+447911123450", "three", None),
    ]


def test_large_batch_is_committed_in_chunks(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "big.jsonl"
    batch.write_text("".join(
        json.dumps({"to": f"+4479111{i % 100000:05d}", "text": f"m{i}", "ref": str(i)}) + "\n"
        for i in range(12_000)
    ))
    code, out, _ = run(capsys, "send", "--config", str(config_file), "--batch", str(batch),
                       "--lane", "campaign")
    assert (code, out.strip()) == (0, "12000 accepted")
    with Outbox(tmp_path / "gw.db") as ob:
        assert ob.statistics().count(state=State.QUEUED) == 12_000


def test_messages_find_show_cancel_retry(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = ("--config", str(config_file))
    ids = [int(run(capsys, "send", *c, "--to", f"+44791112345{i}", f"m{i}")[1]) for i in range(3)]
    code, out, _ = run(capsys, "messages", *c)
    assert code == 0 and [int(line.split()[0]) for line in out.splitlines()[1:]] == ids[::-1]
    code, out, _ = run(capsys, "messages", *c, "--to", "07911 123451")
    assert [int(line.split()[0]) for line in out.splitlines()[1:]] == [ids[1]]

    assert run(capsys, "messages", *c, "--cancel", str(ids[0]))[:2] == (
        0, f"message {ids[0]} cancelled\n"
    )
    code, _, err = run(capsys, "messages", *c, "--cancel", str(ids[0]))
    assert code == 2 and "is cancelled" in err
    code, _, err = run(capsys, "messages", *c, "--retry", str(ids[1]))
    assert code == 2 and "only failed" in err

    with Outbox(tmp_path / "gw.db") as ob:
        ob.claim(10)
        ob.mark_many([PermanentFailure(ids[1], code=0x45, text="submit failed")])
    code, out, _ = run(capsys, "messages", *c, "--state", "failed")
    assert "0x45 submit failed" in out
    code, out, _ = run(capsys, "messages", *c, str(ids[1]))
    assert code == 0 and "message" in out and "failed" in out and "history" in out
    assert run(capsys, "messages", *c, "--retry", str(ids[1]))[0] == 0
    code, out, _ = run(capsys, "messages", *c, str(ids[1]), "--json")
    shown = json.loads(out)
    assert shown["state"] == "queued"
    assert [h["state"] for h in shown["history"]] == ["queued", "sending", "failed", "queued"]
    code, _, err = run(capsys, "messages", *c, "999")
    assert code == 2 and "no message 999" in err


def test_normalise_number_agrees_with_the_segment_store(config_file: Path) -> None:
    from segmentation.phones import PhoneError, normalise

    config = load_config(config_file)
    for raw in ["07911 123456", "+44 7911 123456", "00447911123456", "+1 415 555 0123",
                "+14155550123", "12", "+447700900123", "hello", "+999123", "0033612345678"]:
        try:
            expected: str | None = normalise(raw, "GB")
        except PhoneError:
            expected = None
        try:
            got: str | None = normalise_number(raw, config)
        except CliInputError:
            got = None
        assert got == expected, raw


def test_send_runs_as_a_command(tmp_path: Path, config_file: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "send", "--config", str(config_file),
         "--to", "+447911123456", "hello"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert rows(tmp_path)[0][0] == int(r.stdout)


def test_batch_file_that_cannot_be_read(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "send", "--config", str(config_file), "--batch",
                       str(tmp_path / "absent.jsonl"))
    assert code == 2 and "cannot read" in err and "absent.jsonl" in err
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"to": "+447911123456", "text": "caf\xe9"}\n')
    code, _, err = run(capsys, "send", "--config", str(config_file), "--batch", str(bad))
    assert code == 2 and "not UTF-8" in err


def test_missing_config_file_is_reported_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "messages", "--config", str(tmp_path / "none.toml"))
    assert code == 2 and "cannot read the file" in err
