"""``smsgate demo --headless`` end to end in its own process (simulators as its children): it
finishes well under a minute, its summary adds up, and it leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

from gateway.daemon_procs import REPO
from gateway.demo import UK_FAIL, UK_STOP, demo_messages


def test_headless_demo_runs_and_its_summary_adds_up() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo"], cwd=REPO, capture_output=True,
        text=True, timeout=90,
    )
    assert result.returncode == 0, result.stderr
    assert "running the headless demo" in result.stderr
    out = result.stdout
    assert "[" + "#" * 30 + "]" in out  # the progress bar reached the end
    numbers = {k: int(v) for k, v in re.findall(r"^  (\S+(?: \S+)?)\s{2,}(\d+)", out, re.M)}
    seconds = float(re.search(r"summary after ([\d.]+) s", out).group(1))  # type: ignore[union-attr]
    total = len(demo_messages(0))
    assert numbers["messages"] == total
    assert numbers["delivered"] + numbers["failed"] + numbers["cancelled"] == total
    assert numbers["failed"] == len(UK_FAIL)  # the numbers the SMSC simulator fails
    assert numbers["opt-outs"] == len(UK_STOP)
    assert numbers["cancelled"] == len(UK_STOP)  # the second wave, cancelled by the STOPs
    assert numbers["parts sent"] > total  # long texts went out as several parts
    assert "undeliverable" in out and "expired" in out
    routes = dict(re.findall(r"(modems|sim-smsc): (\d+)", out.split("routes", 1)[1]))
    assert int(routes["modems"]) > 0 and int(routes["sim-smsc"]) > 0
    assert seconds < 60


def test_ctrl_c_ends_the_demo_and_its_simulators() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "demo", "--headless"], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert demo.stdout is not None
    pids: list[int] = []
    try:
        for line in demo.stdout:  # bounded by the demo itself (it ends within a minute)
            if line.startswith("demo: simulator pids"):
                pids = [int(p) for p in line.split()[3:]]
            if line.startswith("demo:") and "queued" in line:
                break
        assert len(pids) == 3
        demo.send_signal(signal.SIGINT)
        rest = demo.stdout.read()
        demo.wait(30)
        assert "demo: interrupted" in rest
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        demo.stdout.close()
    for pid in pids:
        assert not alive(pid), pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child just ended may still be a zombie waiting for init to reap it.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"
