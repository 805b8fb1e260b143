"""``smsgate sim smsc`` as a separate process: prints its port, serves, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from drivers.smpp.client import Accepted, SmppClient, SubmitRequest
from drivers.smpp.config import BindMode
from drivers.smpp.mo import MobileOriginated
from drivers.smpp.receipts import DeliveryReceipt, IdConvention, IdFormat, MessageState
from tests.smpp.conftest import Collector, fast_config

ROOT = Path(__file__).resolve().parents[2]


async def test_separate_process_simulator(collector: Collector) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "sim",
        "smsc",
        "--port",
        "0",
        "--credentials",
        "shop:secret",
        "--id-format",
        "decimal",
        "--outcomes",
        "UNDELIV=1",
        "--receipts-first",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        port = int(line)
        cfg = fast_config(port, id_convention=IdConvention(IdFormat.DECIMAL, IdFormat.DECIMAL))
        async with SmppClient(cfg, collector) as client:
            await client.wait_bound(5)
            outcome = await client.submit(SubmitRequest("447700900123", b"hi"))
            assert isinstance(outcome, Accepted) and outcome.raw_id.isdigit()
            [receipt] = await collector.wait_for(1)
            assert isinstance(receipt, DeliveryReceipt)
            assert receipt.state is MessageState.UNDELIVERABLE
            assert receipt.message_id == outcome.message_id
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 10)
    assert code == 0


async def test_separate_process_injects_mo_messages(collector: Collector) -> None:
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "gateway.cli", "sim", "smsc", "--port", "0"],
        *["--mo-every", "0.05", "--mo-concat", "sar", "--mo-text", "Hello? " * 40],
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(proc.stdout.readline(), 10))
        async with SmppClient(fast_config(port, bind=BindMode.RECEIVER), collector) as client:
            await client.wait_bound(5)
            [mo, *_] = await collector.wait_for(1)
            assert isinstance(mo, MobileOriginated) and mo.text == "Hello? " * 40
            assert mo.total > 1 and mo.complete
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


def test_bad_input_is_exit_2_with_a_clear_message() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "sim", "smsc", "--outcomes", "DELIVERED=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert "unknown outcome 'DELIVERED'" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "sim", "smsc", "--tls-cert", "x.pem"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "--tls-key" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "sim", "smsc", "--submit-status", "zz"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "--submit-status" in r.stderr and "Traceback" not in r.stderr
