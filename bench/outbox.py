"""End to end through the durable outbox vs the raw SMPP driver, against the SMSC simulator.

Run by hand from the repository root:  .venv/bin/python bench/outbox.py [--count 100000]

The SMSC simulator runs in its own process (window 64, no throughput cap). In this process:

1. **smsgate daemon**: ``--count`` single-part messages are enqueued into a fresh outbox (WAL,
   ``synchronous=NORMAL``: the durable settings the daemon runs with), then the daemon (the
   real :class:`gateway.daemon.Daemon`: claim, route, encode, submit, batched results) sends
   them until the simulator has accepted every one. While it runs, this script enqueues one
   transactional message every 50 ms from its own connection (as ``smsgate send`` would) and
   records enqueue-commit -> first part accepted.
2. **raw SMPP driver**: the same number of submits through :class:`drivers.smpp.client.SmppClient`
   with 64 concurrent submitters, no database.

Printed: msgs/s of both and their ratio (goal >= 0.7), peak and sampled RSS during our run (goal
< 150 MB, flat), p99 enqueue-to-submit latency of the transactional messages (goal < 250 ms).
Delivery receipts are off in the simulator for both runs so both measure the submit path.

3. **receipts** (``--receipts N``, 0 skips it): a second simulator sends each receipt 8 s after
   its submit, so N receipts arrive as one burst after the daemon sent N messages; printed:
   receipts/s from the first report in to the last one committed (``delivered`` on disk).
   Each deliver_sm is answered only once its report is committed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drivers.smpp.client import Accepted, SmppClient, SubmitRequest  # noqa: E402
from drivers.smpp.config import BindMode, SmppConfig  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.daemon import Daemon, DaemonOptions  # noqa: E402
from gateway.daemon_procs import SimProcess, write_config  # noqa: E402
from gateway.dispatch_db import AsyncOutbox  # noqa: E402
from gateway.outbox import Outbox  # noqa: E402
from gateway.outbox_states import Lane, State  # noqa: E402
from gateway.outbox_types import NewMessage  # noqa: E402

TEXT = "Your order #12345 has shipped and arrives tomorrow."
WINDOW = 64


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_daemon(port: int, count: int, folder: Path, otp: bool = True
                     ) -> dict[str, object]:
    config = load_config(write_config(folder, smsc_port=port, window=WINDOW))
    db = config.database.path
    with Outbox(db) as box:
        chunk = 10_000
        for start in range(0, count, chunk):
            box.enqueue_many([
                NewMessage(f"+4479{i:08d}", TEXT, lane=Lane.CAMPAIGN)
                for i in range(start, min(count, start + chunk))
            ])
    daemon = Daemon(config, options=DaemonOptions())
    task = asyncio.create_task(daemon.run())
    await daemon.wait_routes_up()
    dispatcher = daemon.dispatcher
    assert dispatcher is not None
    dispatcher.track_submit_times = True
    otp_enqueued: dict[int, float] = {}
    samples: list[float] = []
    started = time.perf_counter()
    # The "API client": its own connection (as smsgate send has) on its own thread.
    api = await AsyncOutbox.open(db)
    try:
        n = 0
        while dispatcher.statistics().parts_accepted < count + len(otp_enqueued):
            if n % 10 == 0:
                samples.append(rss_mb())
            n += 1
            if otp and dispatcher.statistics().parts_accepted < count * 0.95:
                message = NewMessage(f"+1202555{len(otp_enqueued):04d}", "Your code is 123456")
                accepted = await api.run(Outbox.enqueue, message)
                otp_enqueued[accepted.id] = time.monotonic()
                dispatcher.wake()
            await asyncio.sleep(0.05)
    finally:
        await api.aclose()
    elapsed = time.perf_counter() - started
    daemon.stop()
    await task
    latencies = [
        (dispatcher.submit_times[mid] - t) * 1000 for mid, t in otp_enqueued.items()
        if mid in dispatcher.submit_times
    ] or [float("nan")]
    with Outbox(db) as box:
        stats = box.statistics()
    assert stats.count(state=State.SUBMITTED) == count + len(otp_enqueued), stats
    return {
        "msgs_per_s": count / elapsed, "seconds": elapsed, "rss_samples": samples,
        "otp": len(otp_enqueued), "otp_p50_ms": percentile(latencies, 0.50),
        "otp_p99_ms": percentile(latencies, 0.99), "otp_max_ms": max(latencies),
    }


async def run_raw(port: int, count: int) -> dict[str, object]:
    config = SmppConfig("raw", "127.0.0.1", port, "raw", "pw", bind=BindMode.TRANSCEIVER,
                        window=WINDOW)
    request = SubmitRequest("447900000000", TEXT.encode(), registered_delivery=1)
    async with SmppClient(config) as client:
        await client.wait_bound(10)
        per_worker = count // WINDOW
        started = time.perf_counter()

        async def worker(n: int) -> None:
            for _ in range(n):
                outcome = await client.submit(request)
                assert isinstance(outcome, Accepted), outcome

        async with asyncio.TaskGroup() as tg:
            for i in range(WINDOW):
                tg.create_task(worker(per_worker + (1 if i < count % WINDOW else 0)))
        elapsed = time.perf_counter() - started
    return {"msgs_per_s": count / elapsed, "seconds": elapsed}


RECEIPT_DELAY_S = 8.0


async def run_receipts(port: int, count: int, folder: Path) -> dict[str, float]:
    """Receipts/s: ``count`` receipts arriving in one burst, each acknowledged after commit."""
    config = load_config(write_config(folder, smsc_port=port, window=WINDOW))
    db = config.database.path
    with Outbox(db) as box:
        box.enqueue_many([NewMessage(f"+4479{i:08d}", TEXT, lane=Lane.CAMPAIGN)
                          for i in range(count)])
    daemon = Daemon(config, options=DaemonOptions())
    task = asyncio.create_task(daemon.run())
    await daemon.wait_routes_up()
    dispatcher = daemon.dispatcher
    assert dispatcher is not None
    reader = await AsyncOutbox.open(db)
    try:
        deadline = time.monotonic() + 120
        while dispatcher.statistics().reports == 0:
            assert time.monotonic() < deadline, "no receipts"
            await asyncio.sleep(0.005)
        first = time.perf_counter()
        sent_by_then = dispatcher.statistics().parts_accepted
        while dispatcher.statistics().reports < count:
            assert time.monotonic() < deadline, dispatcher.statistics()
            await asyncio.sleep(0.005)
        while (await reader.run(Outbox.statistics)).count(state=State.DELIVERED) < count:
            assert time.monotonic() < deadline, "reports not committed"
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - first
    finally:
        await reader.aclose()
    daemon.stop()
    await task
    return {"receipts_per_s": count / elapsed, "seconds": elapsed,
            "sent_before_first": float(sent_by_then)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--no-otp", action="store_true",
                        help="no transactional messages from a second connection during the run")
    parser.add_argument("--receipts", type=int, default=10_000,
                        help="receipts for the receipts/s run (0: skip it)")
    parser.add_argument("--skip-send", action="store_true",
                        help="only the receipts run (daemon vs raw driver skipped)")
    args = parser.parse_args()
    if args.receipts:
        with SimProcess("smsc", {"receipts": True, "record": False, "window": WINDOW,
                                 "receipt_delay": RECEIPT_DELAY_S}) as sim, \
                tempfile.TemporaryDirectory(prefix="smsgate-bench-") as tmp:
            dlr = asyncio.run(run_receipts(sim.port, args.receipts, Path(tmp)))
        if dlr["sent_before_first"] < args.receipts:
            print("warning: sending overlapped the receipts burst; use fewer --receipts")
        print(f"receipts: {args.receipts} in one burst, each acknowledged after its commit: "
              f"{dlr['receipts_per_s']:.0f} receipts/s ({dlr['seconds']:.2f} s)")
    if args.skip_send:
        return
    with SimProcess("smsc", {"receipts": False, "record": False, "window": WINDOW}) as sim, \
            tempfile.TemporaryDirectory(prefix="smsgate-bench-") as tmp:
        ours = asyncio.run(run_daemon(sim.port, args.count, Path(tmp), otp=not args.no_otp))
        peak_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        raw = asyncio.run(run_raw(sim.port, args.count))
    rss: list[float] = ours["rss_samples"]  # type: ignore[assignment]
    quarter = [rss[min(len(rss) - 1, i * len(rss) // 4)] for i in range(4)] + [rss[-1]]
    ratio = float(ours["msgs_per_s"]) / float(raw["msgs_per_s"])  # type: ignore[arg-type]
    print(f"messages: {args.count} single-part, window {WINDOW}, simulator in its own process, "
          "receipts off")
    print(f"smsgate daemon (durable outbox): {ours['msgs_per_s']:9.0f} msgs/s "
          f"({ours['seconds']:.1f} s)")
    print(f"raw SMPP driver (no database):   {raw['msgs_per_s']:9.0f} msgs/s "
          f"({raw['seconds']:.1f} s)")
    print(f"ratio: {ratio:.2f} (goal >= 0.7)")
    print(f"peak RSS during our run: {peak_ours:.0f} MB (goal < 150); over the run: "
          + " -> ".join(f"{q:.0f}" for q in quarter) + " MB")
    print(f"transactional enqueue -> submit ({ours['otp']} messages during the run): "
          f"p50 {ours['otp_p50_ms']:.0f} ms, p99 {ours['otp_p99_ms']:.0f} ms "
          f"(goal < 250), max {ours['otp_max_ms']:.0f} ms")


if __name__ == "__main__":
    main()
