"""SMPP submit throughput: smsgate's client vs smpplib and smpp34, against our SMSC simulator.

Run by hand from the repository root:  .venv/bin/python bench/smpp.py [--count 20000]

The simulator runs in its own process (``smsgate sim smsc --port 0``); every client runs in its
own process too, so CPU time and peak RSS are the client's alone. For each client: msgs/s (wall
time from first submit to last response), client CPU microseconds per message (user + system,
all threads: smpp34 does its work on tokio threads), peak RSS, RSS at each quarter of the run
(memory should stay flat), and the simulator's CPU use during the run (near 100% of one core
would mean the simulator, not the client, is the limit). A raw client that pipelines pre-built
PDUs measures what the simulator itself can take.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEST = "447700900123"
TEXT = b"Your order #12345 has shipped and arrives tomorrow."
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Run:
    """Timing and memory samples for one client run."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.samples: list[int] = []
        self.next_sample = count // 4
        self.done = 0

    def start(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def tick(self, n: int = 1) -> None:
        self.done += n
        while self.done >= self.next_sample and len(self.samples) < 4:
            self.samples.append(rss_kb())
            self.next_sample += self.count // 4

    def result(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() - self.cpu
        return {
            "msgs_per_s": self.count / wall,
            "cpu_us": cpu / self.count * 1e6,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_quarters_mb": [round(s / 1024, 1) for s in self.samples],
            "wall_s": wall,
        }


# --- clients (each runs in its own process) ------------------------------------------------


async def ours(port: int, count: int, window: int) -> dict[str, Any]:
    from drivers.smpp.client import Accepted, SmppClient, SubmitRequest
    from drivers.smpp.config import BindMode, SmppConfig

    cfg = SmppConfig(
        "bench", "127.0.0.1", port, "bench", "pw", bind=BindMode.TRANSMITTER, window=window
    )
    request = SubmitRequest(
        DEST, TEXT, source_addr="Shop", source_addr_ton=5, registered_delivery=0
    )
    per_worker = count // window
    run = Run(per_worker * window)
    async with SmppClient(cfg) as client:
        await client.wait_bound(10)

        async def worker() -> None:
            for _ in range(per_worker):
                outcome = await client.submit(request)
                assert isinstance(outcome, Accepted), outcome
                run.tick()

        run.start()
        async with asyncio.TaskGroup() as tg:
            for _ in range(window):
                tg.create_task(worker())
        return run.result()


def smpplib_client(port: int, count: int, pipelined: bool, window: int) -> dict[str, Any]:
    import smpplib.client
    from smpplib import consts

    client = smpplib.client.Client("127.0.0.1", port, timeout=10)
    responses = 0

    def on_sent(pdu: Any) -> None:
        nonlocal responses
        responses += 1
        run.tick()

    client.set_message_sent_handler(on_sent)
    client.connect()
    client.bind_transmitter(system_id="bench", password="pw")
    run = Run(count)
    run.start()
    sent = 0
    while responses < count:
        if sent < count and (sent - responses < (window if pipelined else 1)):
            client.send_message(
                source_addr_ton=consts.SMPP_TON_ALNUM,
                source_addr="Shop",
                dest_addr_ton=consts.SMPP_TON_INTL,
                dest_addr_npi=consts.SMPP_NPI_ISDN,
                destination_addr=DEST,
                short_message=TEXT,
                registered_delivery=0,
            )
            sent += 1
            continue
        client.read_once()
    result = run.result()
    client.unbind()
    client.disconnect()
    return result


async def smpp34_client(port: int, count: int, window: int) -> dict[str, Any]:
    import smpp34

    client = smpp34.Client("127.0.0.1", port, "bench", "pw", bind_type="TX", window_size=window)
    smsc = await client.connect()
    per_worker = count // window
    run = Run(per_worker * window)

    async def worker() -> None:
        for _ in range(per_worker):
            await smsc.submit_sm(
                DEST, TEXT, source_addr="Shop", source_addr_ton=5, dest_addr_ton=1, dest_addr_npi=1
            )
            run.tick()

    run.start()
    async with asyncio.TaskGroup() as tg:
        for _ in range(window):
            tg.create_task(worker())
    result = run.result()
    await smsc.unbind()
    await client.stop()
    return result


def raw_client(port: int, count: int, window: int) -> dict[str, Any]:
    """Pre-built submit_sm frames, pipelined ``window`` deep: the simulator's own ceiling."""
    from drivers.smpp.pdu import Bind, BindType, SubmitSm, encode

    frames = [
        encode(
            SubmitSm(
                destination_addr=DEST,
                short_message=TEXT,
                source_addr="Shop",
                source_addr_ton=5,
                dest_addr_ton=1,
                dest_addr_npi=1,
                sequence=i + 2,
            )
        )
        for i in range(count)
    ]
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(encode(Bind(BindType.TRANSMITTER, "bench", "pw", sequence=1)))
    buf = b""
    while len(buf) < 4 or len(buf) < int.from_bytes(buf[:4], "big"):
        buf += sock.recv(4096)
    run = Run(count)
    run.start()
    sent = received = 0
    pending = b""
    while received < count:
        if sent < count and sent - received < window:
            n = min(window - (sent - received), count - sent)
            sock.sendall(b"".join(frames[sent : sent + n]))
            sent += n
        data = sock.recv(1 << 16)
        pending += data
        before = received
        pos = 0
        while len(pending) - pos >= 16:
            length = int.from_bytes(pending[pos : pos + 4], "big")
            if len(pending) - pos < length:
                break
            pos += length
            received += 1
        pending = pending[pos:]
        run.tick(received - before)
    result = run.result()
    sock.close()
    return result


def client_main(args: argparse.Namespace) -> None:
    kind, port, count, window = args.client, args.port, args.count, args.window
    if kind == "ours":
        result = asyncio.run(ours(port, count, window))
    elif kind == "smpplib-sync":
        result = smpplib_client(port, count, False, 1)
    elif kind == "smpplib-pipelined":
        result = smpplib_client(port, count, True, window)
    elif kind == "smpp34":
        result = asyncio.run(smpp34_client(port, count, window))
    elif kind == "raw":
        result = raw_client(port, count, window)
    else:
        raise SystemExit(f"unknown client {kind}")
    print(json.dumps(result))


# --- the driver ----------------------------------------------------------------------------


def run_client(kind: str, port: int, count: int, window: int, sim_pid: int) -> dict[str, Any]:
    for attempt in range(3):
        sim_before = proc_cpu(sim_pid)
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--client",
                kind,
                "--port",
                str(port),
                "--count",
                str(count),
                "--window",
                str(window),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if out.returncode == 0:
            result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
            result["sim_cpu_pct"] = 100 * (proc_cpu(sim_pid) - sim_before) / result["wall_s"]
            return result
        # Seen with smpp34 now and then: the process dies with a signal and no output.
        print(
            f"  ({kind} run {attempt + 1} failed with exit code {out.returncode}: "
            f"{out.stderr.strip()[-300:] or 'no output'}; retrying)",
            file=sys.stderr,
        )
    raise SystemExit(f"{kind} failed three times")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per client (median shown)")
    parser.add_argument("--client", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--window", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return
    sim = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "sim", "smsc", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        port = int(sim.stdout.readline())
        count = args.count
        runs = [
            ("raw pipelined (simulator ceiling)", "raw", 256),
            ("smsgate window 1", "ours", 1),
            ("smsgate window 10", "ours", 10),
            ("smsgate window 64", "ours", 64),
            ("smpplib sync (send, wait)", "smpplib-sync", 1),
            ("smpplib pipelined window 64", "smpplib-pipelined", 64),
            ("smpp34 window 64", "smpp34", 64),
        ]
        results: dict[str, dict[str, Any]] = {}
        repeat = args.repeat
        print(
            f"{count} single-part submit_sm per client; simulator pid {sim.pid} port {port}; "
            f"median of {repeat} interleaved runs; load average {os.getloadavg()[0]:.1f}"
        )
        samples: dict[str, list[dict[str, Any]]] = {kind + str(w): [] for _, kind, w in runs}
        for _ in range(repeat):
            for _label, kind, window in runs:
                samples[kind + str(window)].append(run_client(kind, port, count, window, sim.pid))
        print(
            f"{'client':36} {'msgs/s':>9} {'(min-max)':>15} {'cpu us/msg':>10} {'peak MB':>8} "
            f"{'sim cpu%':>8}  rss MB at 25/50/75/100%"
        )
        for label, kind, window in runs:
            runs_of = sorted(samples[kind + str(window)], key=lambda r: r["msgs_per_s"])
            r = runs_of[len(runs_of) // 2]
            results[kind + str(window)] = r
            spread = f"{runs_of[0]['msgs_per_s']:.0f}-{runs_of[-1]['msgs_per_s']:.0f}"
            print(
                f"{label:36} {r['msgs_per_s']:9.0f} {spread:>15} {r['cpu_us']:10.1f} "
                f"{r['peak_rss_mb']:8.1f} {r['sim_cpu_pct']:8.0f}  {r['rss_quarters_mb']}"
            )
        ours64, ours1 = results["ours64"], results["ours1"]
        lib_p, lib_s, rust = (
            results["smpplib-pipelined64"],
            results["smpplib-sync1"],
            results["smpp3464"],
        )
        print()
        print(
            f"smsgate w64 / smpp34 w64:            "
            f"{ours64['msgs_per_s'] / rust['msgs_per_s']:.2f}x msgs/s, "
            f"{ours64['cpu_us'] / rust['cpu_us']:.2f}x CPU per message"
        )
        print(
            f"smsgate w64 / smpplib pipelined:     "
            f"{ours64['msgs_per_s'] / lib_p['msgs_per_s']:.2f}x msgs/s, "
            f"{ours64['cpu_us'] / lib_p['cpu_us']:.2f}x CPU per message"
        )
        print(
            f"smsgate w1 / smpplib sync:           "
            f"{ours1['msgs_per_s'] / lib_s['msgs_per_s']:.2f}x msgs/s"
        )
        print(
            f"simulator ceiling / smsgate w64:     "
            f"{results['raw256']['msgs_per_s'] / ours64['msgs_per_s']:.2f}x"
        )
    finally:
        sim.terminate()
        sim.wait(10)


if __name__ == "__main__":
    main()
