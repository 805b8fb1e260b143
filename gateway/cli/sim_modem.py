"""``smsgate sim modem --profile NAME ...``: simulated GSM modems on pseudo-terminals.

Prints one device path per modem on standard output (one line each, flushed), then serves until
SIGINT/SIGTERM. ``--record FILE`` writes what each modem was asked to send (JSON lines, with
timestamps) when it stops, for benchmarks that count cap violations.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_IMEI = 356938035643809


def register(sims: Any) -> None:
    from drivers.sim.modem_profiles import PROFILES  # small, data only

    parser: argparse.ArgumentParser = sims.add_parser(
        "modem",
        help="GSM modems answering AT commands on ptys (prints the device paths)",
        description="Simulated GSM modems on pseudo-terminals, answering AT commands like a "
        "chosen real device. Prints one device path per modem, then runs until interrupted.",
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="generic",
                        help="device to imitate (default: generic)")
    parser.add_argument("--count", type=int, default=1, help="how many modems (default 1)")
    parser.add_argument("--imei", type=int, default=DEFAULT_IMEI,
                        help="IMEI of the first modem; the next ones count up")
    parser.add_argument("--pin", default=None, help="SIM PIN the modem asks for (default none)")
    parser.add_argument("--sim-busy", type=float, default=0.0, metavar="SECONDS",
                        help="SIM busy (+CME ERROR: 14) this long after the PIN")
    parser.add_argument("--send-latency", type=float, default=3.0, metavar="SECONDS",
                        help="seconds per AT+CMGS (default 3)")
    parser.add_argument("--status-reports", type=float, default=None, metavar="SECONDS",
                        help="send a status report this long after each part that asks")
    parser.add_argument("--fail", type=int, action="append", default=[], metavar="CODE",
                        help="answer the next AT+CMGS with +CMS ERROR: CODE (repeatable)")
    parser.add_argument("--record", type=Path, default=None, metavar="FILE",
                        help="on exit, write every send as a JSON line to FILE")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    import asyncio
    import sys

    if args.count < 1:
        print("smsgate sim modem: --count must be at least 1", file=sys.stderr)
        return 2
    if args.send_latency < 0 or args.sim_busy < 0:
        print("smsgate sim modem: latencies must be >= 0 seconds", file=sys.stderr)
        return 2
    asyncio.run(_serve(args))  # SIGINT/SIGTERM end it cleanly (signal handlers)
    return 0


async def _serve(args: argparse.Namespace) -> None:
    import asyncio
    import contextlib
    import json
    import signal
    from contextlib import AsyncExitStack

    from drivers.sim.modem import SimModem
    from drivers.sim.modem_profiles import profile

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        sims: list[SimModem] = []
        for i in range(args.count):
            sim = SimModem(
                profile(args.profile),
                imei=str(args.imei + i),
                imsi=f"23415{i:010d}",
                pin=args.pin,
                sim_busy_seconds=args.sim_busy,
                send_latency=args.send_latency,
                status_report_delay=args.status_reports,
            )
            for code in args.fail:
                sim.fail_next_send(code)
            sims.append(await stack.enter_async_context(sim))
            print(sim.path, flush=True)
        await stop.wait()
        if args.record is not None:
            with args.record.open("w", encoding="utf-8") as out:
                for sim in sims:
                    for rec in sim.records:
                        out.write(json.dumps({
                            "imei": sim.imei, "received": rec.received, "at": rec.at,
                            "mr": rec.mr, "recipient": rec.recipient, "error": rec.error,
                            "pdu": rec.pdu.hex().upper(),
                        }) + "\n")
        with contextlib.suppress(Exception):
            for sim in sims:
                sim.unplug()
