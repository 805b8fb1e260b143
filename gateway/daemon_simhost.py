"""Run one simulator in its own process, driven by JSON lines on stdin (tests, demo, bench).

``python -m gateway.daemon_simhost smsc '{"receipt_delay": 0.05}'`` prints one JSON line
``{"ready": true, "port": N}`` and then answers commands, one JSON object per line::

    {"cmd": "stats"}                                   -> simulator statistics
    {"cmd": "configure", "options": {...}}             -> SmscOptions changes at run time
    {"cmd": "inject_mo", "text": ..., "source": ..., "destination": ...}
        optional "parts": [1, 3] and "reference": N deliver only those parts of the
        concatenated text (a part lost, or the rest of a message sent later)
    {"cmd": "drop"}                                    -> abort every connection
    {"cmd": "received"}                                -> destinations of accepted submits

``python -m gateway.daemon_simhost modem '{"imei": "..."}'`` prints ``{"ready": true,
"path": "/dev/pts/N"}``; commands ``stats``, ``deliver`` (``source``, ``text``), ``unplug``.

Beyond the simulators' own options the host adds per-number behaviour the demo needs (until the
simulators grow it): ``fail_numbers`` maps a destination to the receipt stat it always gets
(``"UNDELIV"``, ``"EXPIRED"``, ...), ``stop_numbers`` lists destinations that answer STOP to
the first message they receive, and ``"receipts": false`` sends no delivery receipts at all (the
benchmark compares submit paths). The process ends when stdin closes or on SIGTERM, so a parent
that dies takes its simulators with it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from typing import Any

from drivers.sim.smsc import SmscOptions, SmscSimulator
from drivers.sim.smsc_messages import mo_parts
from drivers.smpp.pdu import DeliverSm, SubmitSm


class DemoSmsc(SmscSimulator):
    """The SMSC simulator plus per-destination outcomes and STOP replies."""

    def __init__(self, options: SmscOptions, fail_numbers: dict[str, str],
                 stop_numbers: set[str], receipts: bool = True) -> None:
        super().__init__(options)
        self.receipts = receipts
        self.fail_numbers = fail_numbers
        self.stop_numbers = stop_numbers
        self._stopped: set[str] = set()

    def _receipt(self, pdu: SubmitSm, n: int, resp_id: str) -> DeliverSm | None:
        if not self.receipts:
            return None
        stat = self.fail_numbers.get(pdu.destination_addr)
        if stat is None:
            receipt = super()._receipt(pdu, n, resp_id)
        else:
            saved = self.options
            self.options = SmscOptions(**{**_fields(saved), "outcomes": {stat: 1.0}})
            try:
                receipt = super()._receipt(pdu, n, resp_id)
            finally:
                self.options = saved
        dest = pdu.destination_addr
        if dest in self.stop_numbers and dest not in self._stopped:
            self._stopped.add(dest)
            self.loop.call_later(0.05, self._reply_stop, dest, pdu.source_addr)
        return receipt

    def _reply_stop(self, source: str, destination: str) -> None:
        try:
            self.inject_mo("STOP", source, destination or "12345")
        except LookupError:
            self._stopped.discard(source)


def _fields(options: SmscOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in SmscOptions.__dataclass_fields__}


async def _serve_commands(handle: Callable[[dict[str, Any]], Any]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        try:
            reply = handle(json.loads(line))
        except Exception as exc:  # report to the parent; keep serving
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        _say(reply if reply is not None else {"ok": True})


def _say(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


async def _until_stopped(serve: asyncio.Task[None]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    serve.add_done_callback(lambda _: stop.set())  # stdin closed: the parent is gone
    await stop.wait()
    serve.cancel()


def _inject_mo(sim: SmscSimulator, cmd: dict[str, Any]) -> None:
    source, destination = cmd["source"].removeprefix("+"), cmd.get("destination", "12345")
    if "parts" not in cmd:
        sim.inject_mo(cmd["text"], source, destination)
        return
    every = mo_parts(cmd["text"], source, destination, reference=int(cmd.get("reference", 1)))
    sim.inject([every[n - 1] for n in cmd["parts"]])


async def run_smsc(opts: dict[str, Any]) -> None:
    fail = {k.removeprefix("+"): v for k, v in opts.pop("fail_numbers", {}).items()}
    stop = {k.removeprefix("+") for k in opts.pop("stop_numbers", [])}
    receipts = bool(opts.pop("receipts", True))
    options = SmscOptions(**opts)
    async with DemoSmsc(options, fail, stop, receipts) as sim:
        def handle(cmd: dict[str, Any]) -> Any:
            kind = cmd["cmd"]
            if kind == "stats":
                return _fields_of(sim.statistics())
            if kind == "configure":
                sim.configure(**cmd["options"])
                return None
            if kind == "inject_mo":
                _inject_mo(sim, cmd)
                return None
            if kind == "drop":
                sim.drop_all()
                return None
            if kind == "received":
                return {"destinations": [r.pdu.destination_addr for r in sim.received
                                         if r.status == 0]}
            raise ValueError(f"unknown command {kind!r}")

        _say({"ready": True, "port": sim.port})
        async with asyncio.TaskGroup() as tg:
            serve = tg.create_task(_serve_commands(handle))
            tg.create_task(_until_stopped(serve))


async def run_modem(opts: dict[str, Any]) -> None:
    from drivers.sim.modem import SimModem
    from drivers.sim.modem_profiles import profile
    from drivers.sim.modem_sms import deliver_pdus

    name = opts.pop("profile", "generic")
    async with SimModem(profile(name), **opts) as sim:
        reference = 0

        def handle(cmd: dict[str, Any]) -> Any:
            nonlocal reference
            kind = cmd["cmd"]
            if kind == "stats":
                return {"sent": sum(1 for r in sim.records if r.error is None),
                        "failed": sum(1 for r in sim.records if r.error is not None),
                        "recipients": [r.recipient for r in sim.records if r.error is None]}
            if kind == "deliver":
                reference = (reference + 1) % 256
                for pdu in deliver_pdus(cmd["source"], cmd["text"], reference=reference):
                    sim.deliver(pdu)
                return None
            if kind == "fail_next_send":
                sim.fail_next_send(int(cmd["code"]), int(cmd.get("count", 1)))
                return None
            if kind == "unplug":
                sim.unplug()
                return None
            raise ValueError(f"unknown command {kind!r}")

        _say({"ready": True, "path": sim.path})
        async with asyncio.TaskGroup() as tg:
            serve = tg.create_task(_serve_commands(handle))
            tg.create_task(_until_stopped(serve))


def _fields_of(obj: object) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in getattr(obj, "__dataclass_fields__", {})}


def main(argv: list[str]) -> int:
    kind = argv[0]
    opts: dict[str, Any] = json.loads(argv[1]) if len(argv) > 1 else {}
    runner = {"smsc": run_smsc, "modem": run_modem}[kind]
    asyncio.run(runner(opts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
