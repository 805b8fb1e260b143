"""Modem pool benchmark (run by hand: ``.venv/bin/python bench/modems.py [--quick]``).

1. Pool: eight simulated modems (``smsgate sim modem`` in another process, 0.5 s per AT+CMGS),
   a 60 parts/minute cap each, 2,000 single-part messages. Prints the achieved throughput as a
   fraction of the theoretical maximum (8 modems x 1 part/s; goal >= 0.95), the per-modem cap
   violations found in the simulators' own timestamps (61 parts inside any 60 s; goal 0), and
   our CPU seconds per message (the simulators' CPU is separate and printed too).
2. Peer: one simulated modem, the same latency, N messages sent one after another, by our
   ModemClient and by python-gsmmodem (``python-gsmmodem-new`` 0.13.0, the library the issue
   names: a reader thread reading one byte at a time), in the same run: wall seconds and CPU
   seconds per message, and the ratios.

``--quick`` sends 200 messages through the pool and 10 per driver in part 2 (~40 s in all).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drivers.modem.client import ModemClient, ModemState  # noqa: E402
from drivers.modem.config import ModemConfig  # noqa: E402
from drivers.modem.pdu import encode_submit  # noqa: E402
from drivers.modem.pool import ModemPool, OutboundMessage  # noqa: E402
from gateway.codec import encode  # noqa: E402


async def start_sims(count: int, latency: float, record: Path) -> tuple[Any, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "sim", "modem", "--count", str(count),
        "--send-latency", str(latency), "--record", str(record),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    paths = [(await proc.stdout.readline()).decode().strip() for _ in range(count)]
    return proc, paths


async def stop_sims(proc: Any) -> float:
    """SIGTERM the simulator process; return its CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc.send_signal(signal.SIGTERM)
    await proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def violations(times: list[float], cap: int, window: float = 60.0) -> int:
    """Windows of ``window`` seconds holding more than ``cap`` parts (cap + 1 within < 60 s)."""
    times = sorted(times)
    return sum(1 for a, b in zip(times, times[cap:], strict=False) if b - a < window)


async def pool_run(modems: int, latency: float, rate: int, messages: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "sent.jsonl"
        proc, paths = await start_sims(modems, latency, record)
        configs = [
            ModemConfig(f"m{i}", port=p, rate_per_minute=rate, status_reports=False)
            for i, p in enumerate(paths)
        ]
        async with ModemPool(configs, discover=list) as pool:
            for c in pool.clients:
                await asyncio.wait_for(c.wait_state(ModemState.READY), 30)
            body = encode("Your order has shipped. Reply STOP to opt out.")
            outs = [
                OutboundMessage(f"m{i}", f"+4477009{i:05d}", body, status_report=False)
                for i in range(messages)
            ]
            cpu0, t0 = time.process_time(), time.monotonic()
            results = await asyncio.gather(*(pool.send(o) for o in outs))
            elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
        sim_cpu = await stop_sims(proc)
        rows = [json.loads(line) for line in record.read_text().splitlines()]
    failed = sum(1 for r in results if not r.ok)
    per_modem: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        per_modem.setdefault(row["imei"], []).append(row)
    bad_received = sum(violations([r["received"] for r in v], rate) for v in per_modem.values())
    bad_answered = sum(violations([r["at"] for r in v], rate) for v in per_modem.values())
    theoretical = modems * rate / 60.0
    achieved = messages / elapsed
    # The best any scheduler can do: each modem's first part at once, then one per interval,
    # the last answered one latency later.
    best = (-(-messages // modems) - 1) * 60.0 / rate + latency
    print(f"pool: {modems} modems, {latency} s per part, cap {rate}/min each, {messages} msgs")
    print(f"  elapsed {elapsed:.1f} s (best possible {best:.1f} s), failed {failed},"
          f" parts recorded {len(rows)}")
    print(f"  throughput {achieved:.3f} parts/s, theoretical maximum {theoretical:.3f}:"
          f" fraction {best / elapsed:.3f} of the best possible time (goal >= 0.95)")
    print(f"  cap violations: {bad_received} by PDU arrival, {bad_answered} by +CMGS answer"
          " (goal 0)")
    print(f"  parts per modem: {sorted(len(v) for v in per_modem.values())}")
    print(f"  CPU: ours {cpu:.2f} s = {cpu / messages * 1000:.2f} ms/message;"
          f" simulators {sim_cpu:.2f} s")


async def ours_single(path: str, n: int) -> tuple[float, float]:
    config = ModemConfig("one", port=path, status_reports=False)
    async with ModemClient(config) as modem:
        await asyncio.wait_for(modem.wait_state(ModemState.READY), 30)
        pdus = [encode_submit(encode(f"hello {i}"), "+447700900123")[0] for i in range(n)]
        cpu0, t0 = time.process_time(), time.monotonic()
        for p in pdus:
            await modem.send(p)
        return (time.monotonic() - t0) / n, (time.process_time() - cpu0) / n


def peer_single(path: str, n: int) -> tuple[float, float]:
    from gsmmodem.modem import GsmModem  # type: ignore[import-untyped]  # bench extra

    modem = GsmModem(path, 115200)
    modem.connect()
    try:
        cpu0, t0 = time.process_time(), time.monotonic()
        for i in range(n):
            modem.sendSms("+447700900123", f"hello {i}")
        return (time.monotonic() - t0) / n, (time.process_time() - cpu0) / n
    finally:
        modem.close()


async def peer_run(latency: float, n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, (path,) = await start_sims(1, latency, Path(tmp) / "a.jsonl")
        ours = await ours_single(path, n)
        await stop_sims(proc)
        proc, (path,) = await start_sims(1, latency, Path(tmp) / "b.jsonl")
        peer = await asyncio.to_thread(peer_single, path, n)
        await stop_sims(proc)
    print(f"single modem, {latency} s per part, {n} messages one after another:")
    print(f"  smsgate ModemClient: {ours[0]:.3f} s/message, CPU {ours[1] * 1000:.2f} ms/message")
    print(f"  python-gsmmodem    : {peer[0]:.3f} s/message, CPU {peer[1] * 1000:.2f} ms/message")
    print(f"  ratio peer/ours    : wall {peer[0] / ours[0]:.2f}x, CPU {peer[1] / ours[1]:.2f}x"
          f" (overhead above the modem's {latency} s: ours {ours[0] - latency:.3f} s,"
          f" peer {peer[0] - latency:.3f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 messages (about 40 s)")
    args = parser.parse_args()
    messages, single = (200, 10) if args.quick else (2000, 20)
    asyncio.run(pool_run(modems=8, latency=0.5, rate=60, messages=messages))
    asyncio.run(peer_run(latency=0.5, n=single))
    return 0


if __name__ == "__main__":
    sys.exit(main())
