"""``smsgate sim modem`` as a separate process: prints the device path, serves, records."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from drivers.modem.client import ModemClient, ModemState
from drivers.modem.config import ModemConfig
from tests.modem.modemkit import pdus, wait_state

ROOT = Path(__file__).resolve().parents[2]


async def test_sim_modem_process_serves_a_driver_and_records(tmp_path: Path) -> None:
    record = tmp_path / "sent.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "sim", "modem", "--profile", "wavecom",
        "--count", "2", "--send-latency", "0.01", "--record", str(record),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            paths = [(await proc.stdout.readline()).decode().strip() for _ in range(2)]
        assert all(p.startswith("/dev/") for p in paths) and paths[0] != paths[1]
        config = ModemConfig("cli", port=paths[1], command_timeout=2, wavecom_cpin_grace=0.05)
        async with ModemClient(config) as modem:
            await wait_state(modem, ModemState.READY)
            assert modem.identity is not None
            assert modem.identity.imei == "356938035643810"  # the second counts up
            (p,) = pdus("from another process")
            assert await modem.send(p) == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    (line,) = record.read_text().splitlines()
    sent = json.loads(line)
    assert sent["recipient"] == "+447700900123" and sent["mr"] == 0


async def test_bad_input_is_exit_code_2() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "sim", "modem", "--count", "0",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2 and b"--count" in err
