"""``smsgate encode`` run as a separate process, exactly as a user runs it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from smspdudecoder.fields import SMSSubmit

ROOT = Path(__file__).resolve().parents[2]


def smsgate(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "encode", *args],
        cwd=ROOT,
        input=stdin.decode("utf-8", "surrogateescape") if stdin is not None else None,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="surrogateescape",
        timeout=30,
        check=False,
    )


def test_json_gsm7_multipart_exact() -> None:
    text = "a" * 152 + "€" + "b" * 10
    r = smsgate("--json", text)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert list(out)[:4] == ["encoding", "data_coding", "segments", "parts"]
    assert out["encoding"] == "gsm7" and out["data_coding"] == 0 and out["segments"] == 2
    # a fresh process: the per-destination counter starts at 0
    assert out["parts"] == [
        "050003000201" + "61" * 152,
        "050003000202" + "1B65" + "62" * 10,
    ]
    assert "pdus" not in out
    assert out["esm_class"] == 0x40 and out["reference"] == 0 and out["units_left"] == 153 - 12


def test_json_ucs2_and_stdin() -> None:
    r = smsgate("--json", "-", stdin="ça va 😀\n".encode())
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["encoding"] == "ucs2" and out["data_coding"] == 8 and out["segments"] == 1
    assert out["parts"] == ["00E700610020007600610020D83DDE00"]
    assert out["ucs2_chars"] == ["ç", "😀"]


def test_json_sar_and_substitutions() -> None:
    r = smsgate("--json", "--concat", "sar", "--substitute", "“" + "x" * 160 + "”")
    out = json.loads(r.stdout)
    assert out["encoding"] == "gsm7" and out["segments"] == 2
    assert out["parts"] == ["22" + "78" * 151, "78" * 9 + "22"]
    assert out["sar"] == [[0, 2, 1], [0, 2, 2]]
    assert out["substitutions"] == [["“", '"'], ["”", '"']]


def test_json_national_language() -> None:
    text = "Türkçe ğış " * 16  # 176 characters: 3 parts as UCS-2, 2 with the Turkish locking table
    r = smsgate("--json", "--national", "tr", text)
    out = json.loads(r.stdout)
    assert out["encoding"] == "gsm7" and out["national_language"] == [1, 0]
    assert out["parts"][0].startswith("08000300020125" + "0101")


def test_human_summary() -> None:
    r = smsgate("Hi 😀 “there”", "--substitute")
    assert r.returncode == 0, r.stderr
    assert "encoding:          UCS-2 (data_coding 0x08)" in r.stdout
    assert "characters:        12 (13 UTF-16 units)" in r.stdout
    assert "parts:             1" in r.stdout
    assert "left in last part: 57 UTF-16 units" in r.stdout
    assert "forcing UCS-2:     '😀' (U+1F600)" in r.stdout
    r = smsgate("--substitute", "it’s")
    assert "substitutions:     '’' -> \"'\"" in r.stdout
    assert "encoding:          GSM-7" in r.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (("--to", "12ab", "x"), "invalid number '12ab' for --to"),
        (("--concat", "udh32", "x"), "invalid choice: 'udh32'"),
        (("--national", "de", "x"), "unknown national language 'de'"),
        (("a" * 40000,), "262 parts needed, at most 255"),
    ],
)
def test_bad_input_exits_2_with_a_message(args: tuple[str, ...], message: str) -> None:
    r = smsgate(*args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_invalid_utf8_on_stdin() -> None:
    r = smsgate("-", stdin=b"\xff\xfe")
    assert r.returncode == 2 and "not UTF-8" in r.stderr


def _submit(hex_pdu: str) -> dict[str, Any]:
    """Decode an SMS-SUBMIT (SCA first) with smspdudecoder, which shares no code with ours."""
    decoded: dict[str, Any] = SMSSubmit.decode(io.StringIO(hex_pdu))
    return decoded


def test_pdus_for_a_modem_match_the_tutorial_vector() -> None:
    # protocols.md §3.3 "hellohello" to +46708251358, without the tutorial's validity period
    r = smsgate("--json", "--to", "+46708251358", "hellohello")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert list(out)[:5] == ["encoding", "data_coding", "segments", "parts", "pdus"]
    assert out["parts"] == ["68656C6C6F68656C6C6F"]
    assert out["pdus"] == ["0001000B916407281553F800000AE8329BFD4697D9EC37"]


@pytest.mark.parametrize("concat", ["udh8", "udh16", "sar", "payload"])
def test_multipart_pdus_decode_independently(concat: str) -> None:
    text = "Grüße aus Zürich " * 12 + "€"  # 205 characters, GSM-7, two parts
    r = smsgate("--json", "--to", "+41791234567", "--concat", concat, text)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["segments"] == 2 and len(out["pdus"]) == 2
    texts, refs = [], set()
    for seq, pdu in enumerate(out["pdus"], start=1):
        d = _submit(pdu)
        assert d["recipient"]["number"] == "41791234567"
        assert d["header"]["udhi"] is True
        (element,) = d["user_data"]["header"]["elements"]
        assert element["iei"] == (8 if concat in ("udh16", "sar") else 0)
        concat_info = element["data"]
        assert concat_info["part_number"] == seq and concat_info["parts_count"] == 2
        refs.add(concat_info["reference"])
        texts.append(d["user_data"]["data"])
    assert "".join(texts) == text and len(refs) == 1


def test_ucs2_pdu_decodes_independently() -> None:
    r = smsgate("--json", "--to", "447700900123", "Привет 😀")
    d = _submit(json.loads(r.stdout)["pdus"][0])
    assert d["dcs"]["encoding"] == "ucs2" and d["user_data"]["data"] == "Привет 😀"
    assert d["recipient"]["toa"]["ton"] != "international"
