"""``smsgate sim smsc --port N ...``: the SMSC simulator as its own process.

Prints the bound port on the first line of stdout (``--port 0`` picks a free one), then serves
until SIGTERM or SIGINT. Used by the benchmark, the demo and by hand against other clients.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drivers.sim.smsc import SmscSimulator

OUTCOME_NAMES = ("DELIVRD", "UNDELIV", "EXPIRED", "REJECTD")
DEFAULT_MO = (
    "Hi! Is the blue jacket from your newsletter still available in size M? I'd like to "
    "pick it up on Saturday if possible. Also, can you tell me whether the discount code "
    "applies to items that are already on sale? Thanks a lot, see you soon."
)


def _outcomes(text: str) -> dict[str, float]:
    """``DELIVRD=0.9,UNDELIV=0.1`` -> weights."""
    mix: dict[str, float] = {}
    for item in text.split(","):
        name, sep, weight = item.strip().partition("=")
        name = name.strip().upper()
        if name not in OUTCOME_NAMES:
            raise argparse.ArgumentTypeError(
                f"unknown outcome {name!r}; use {', '.join(OUTCOME_NAMES)}"
            )
        try:
            value = float(weight) if sep else 1.0
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"weight for {name} is not a number: {weight!r}"
            ) from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"weight for {name} must be >= 0")
        mix[name] = value
    if not any(mix.values()):
        raise argparse.ArgumentTypeError("at least one outcome needs a weight above 0")
    return mix


def _credential(text: str) -> tuple[str, str]:
    system_id, sep, password = text.partition(":")
    if not sep or not system_id:
        raise argparse.ArgumentTypeError(f"expected SYSTEM_ID:PASSWORD, got {text!r}")
    return system_id, password


def _status(text: str) -> int:
    try:
        status = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a command_status: {text!r} (decimal, or hex like 0x58)"
        ) from None
    if not 0 <= status <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"command_status out of range: {text}")
    return status


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {port}")
    return port


def register(sims: Any) -> None:
    p: argparse.ArgumentParser = sims.add_parser(
        "smsc",
        help="SMPP 3.4 SMSC simulator",
        description="An SMPP 3.4 server: accepts binds, answers submit_sm with message ids, "
        "sends delivery receipts, and misbehaves on request. Prints the bound port, then runs "
        "until SIGTERM.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=2775, help="TCP port; 0 picks a free one")
    p.add_argument(
        "--credentials",
        type=_credential,
        action="append",
        metavar="SYSTEM_ID:PASSWORD",
        help="accept only these binds (repeatable); default: accept any",
    )
    p.add_argument("--id-format", choices=("hex", "decimal"), default="hex")
    p.add_argument(
        "--receipt-id-format",
        choices=("hex", "decimal"),
        default=None,
        help="id format in the receipt text (default: as --id-format)",
    )
    p.add_argument("--no-receipt-tlvs", action="store_true", help="receipt text only")
    p.add_argument("--receipt-delay", type=float, default=0.0, metavar="SECONDS")
    p.add_argument(
        "--outcomes",
        type=_outcomes,
        default={"DELIVRD": 1.0},
        metavar="STAT=W,...",
        help="receipt outcome mix, e.g. DELIVRD=0.9,UNDELIV=0.05,EXPIRED=0.03,REJECTD=0.02",
    )
    p.add_argument("--throttle-rate", type=float, default=None, metavar="PER_SECOND")
    p.add_argument("--stall-submits", action="store_true", help="never answer submit_sm")
    p.add_argument("--stall-all", action="store_true", help="answer nothing (a dead link)")
    p.add_argument(
        "--submit-status",
        type=_status,
        default=0,
        metavar="STATUS",
        help="answer every submit_sm with this command_status, e.g. 0x45 (default 0: accept)",
    )
    p.add_argument(
        "--receipts-first",
        action="store_true",
        help="write each receipt before its submit_sm_resp (the receipt race)",
    )
    p.add_argument(
        "--redeliver-delay",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="redeliver a deliver_sm refused with a temporary error after this long",
    )
    p.add_argument("--drop-after", type=int, default=None, metavar="N", help="drop after N PDUs")
    p.add_argument("--reject-binds", type=int, default=0, metavar="N", help="-1 refuses all")
    p.add_argument("--max-binds", type=int, default=None, metavar="N", help="per system_id")
    p.add_argument("--window", type=int, default=64, help="outstanding deliver_sm")
    p.add_argument("--record", action="store_true", help="keep received submits in memory")
    p.add_argument("--tls-cert", default=None, metavar="PEM")
    p.add_argument("--tls-key", default=None, metavar="PEM")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--mo-every",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="send an MO message to a bound receiver this often (0: never)",
    )
    p.add_argument("--mo-text", default=DEFAULT_MO, help="text of the injected MO messages")
    p.add_argument("--mo-from", default="447700900100", metavar="NUMBER")
    p.add_argument("--mo-to", default="12345", metavar="NUMBER")
    p.add_argument(
        "--mo-concat",
        choices=("udh8", "udh16", "sar", "payload"),
        default="udh8",
        help="how multipart MO messages are concatenated (parts are sent in random order)",
    )
    p.set_defaults(func=run)


async def inject_mo(sim: SmscSimulator, args: argparse.Namespace) -> None:
    """Every ``--mo-every`` seconds, deliver one MO message (shuffled parts) if anyone listens."""
    import asyncio
    import contextlib

    while True:
        await asyncio.sleep(args.mo_every)
        with contextlib.suppress(LookupError):  # LookupError: no receiver bound yet
            sim.inject_mo(
                args.mo_text, args.mo_from, args.mo_to, concat=args.mo_concat, shuffle=True
            )


def run(args: argparse.Namespace) -> int:
    import asyncio
    import signal
    import ssl
    import sys
    from types import MappingProxyType

    from drivers.sim.smsc import SmscOptions, SmscSimulator

    ctx: ssl.SSLContext | None = None
    if bool(args.tls_cert) != bool(args.tls_key):
        print("smsgate sim smsc: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            print(f"smsgate sim smsc: cannot load the TLS certificate: {exc}", file=sys.stderr)
            return 2
    options = SmscOptions(
        host=args.host,
        port=args.port,
        credentials=dict(args.credentials) if args.credentials else None,
        id_format=args.id_format,
        receipt_id_format=args.receipt_id_format,
        receipt_tlvs=not args.no_receipt_tlvs,
        receipt_delay=args.receipt_delay,
        outcomes=MappingProxyType(args.outcomes),
        throttle_rate=args.throttle_rate,
        stall_submits=args.stall_submits,
        stall_all=args.stall_all,
        submit_status=args.submit_status,
        receipts_first=args.receipts_first,
        redeliver_delay=args.redeliver_delay,
        drop_after=args.drop_after,
        reject_binds=args.reject_binds,
        max_binds_per_system_id=args.max_binds,
        window=args.window,
        record=args.record,
        seed=args.seed,
        ssl=ctx,
    )

    async def serve() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            sim = SmscSimulator(options)
            await sim.start()
        except OSError as exc:
            print(
                f"smsgate sim smsc: cannot listen on {args.host}:{args.port}: {exc}",
                file=sys.stderr,
            )
            return 2
        try:
            print(sim.port, flush=True)
            async with asyncio.TaskGroup() as tg:
                if args.mo_every > 0:
                    injector = tg.create_task(inject_mo(sim, args))
                await stop.wait()
                if args.mo_every > 0:
                    injector.cancel()
        finally:
            await sim.close()
        return 0

    return asyncio.run(serve())
