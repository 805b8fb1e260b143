"""``smsgate demo --headless``: the whole appliance on one machine, no hardware, no configuration.

Starts the SMSC simulator and two simulated modems as separate processes, writes a
configuration and a database in a temporary folder, adds demo subscribers, runs the daemon,
sends a mixed batch (short and long, GSM-7 and UCS-2; UK numbers through the SMPP bind, US
numbers through the modem pool; some numbers the simulators fail, some that answer STOP, and a
second wave already queued for them that the STOP cancels), shows a plain-text progress bar and
prints a summary. Every child process is ended on the way out, also on Ctrl-C.

The modems are simulated at 600 parts per minute so the demo takes seconds; a real SIM manages
6-12 (DESIGN.md), and ``rate_per_minute`` in the configuration says so.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from gateway.config import load_config
from gateway.daemon import Daemon, DaemonOptions
from gateway.daemon_procs import SimProcess, write_config
from gateway.errors import SmsgateError
from gateway.outbox import Outbox
from gateway.outbox_states import FINAL, Lane, State
from gateway.outbox_types import NewMessage

UK_FAIL = {"+447911123413": "UNDELIV", "+447911123414": "EXPIRED"}
UK_STOP = ("+447911123421", "+447911123422")
TEXTS = (
    "Hi {name}, your order has shipped.",
    "Hi {name}! Summer sale: 20% off everything until Sunday at shop.example. "
    "Show this text in store or use code SUMMER20 online. Reply STOP to opt out.",
    "Zoë, votre colis arrive demain ✨",
    "{name}, спасибо за покупку! Ваш заказ уже в пути, номер для отслеживания придёт "
    "отдельным сообщением. Ответьте STOP, чтобы отписаться.",
)
NAMES = ("Ana", "Ben", "Chloé", "Dev", "Eli", "Fay", "Gus", "Hana")
DEADLINE_S = 50.0


@dataclass
class Summary:
    messages: int = 0
    parts_sent: int = 0
    states: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    opt_outs: int = 0
    cancelled_by_stop: int = 0
    replies_sent: int = 0
    by_route: collections.Counter[str] = field(default_factory=collections.Counter)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        final = sum(self.states.values())
        out = [
            f"summary after {self.seconds:.1f} s:",
            f"  messages        {self.messages} (+{self.replies_sent} keyword replies)",
            f"  parts sent      {self.parts_sent}",
            f"  delivered       {self.states['delivered']}",
            f"  failed          {final - self.states['delivered'] - self.states['cancelled']}"
            + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(self.failures.items())) + ")"
               if self.failures else ""),
            f"  cancelled       {self.states['cancelled']} ({self.cancelled_by_stop} by STOP)",
            f"  opt-outs        {self.opt_outs}",
            "  routes          " + ", ".join(f"{k}: {v}" for k, v in sorted(self.by_route.items())),
        ]
        return out


def demo_messages(now_ms: int) -> list[NewMessage]:
    """The mixed batch: 24 to the UK (SMPP), 16 to the US (modems), and a second wave."""
    out: list[NewMessage] = []
    for i in range(24):
        to = f"+4479111234{i:02d}"
        text = TEXTS[i % len(TEXTS)].format(name=NAMES[i % len(NAMES)])
        lane = Lane.TRANSACTIONAL if i % 4 == 0 else Lane.CAMPAIGN
        out.append(NewMessage(to, text, lane=lane, ref=f"demo-{i}"))
    for i in range(16):
        to = f"+1202555{100 + i:04d}"
        text = TEXTS[(i + 1) % len(TEXTS)].format(name=NAMES[i % len(NAMES)])
        out.append(NewMessage(to, text, lane=Lane.CAMPAIGN, ref=f"demo-us-{i}"))
    # Second wave to the numbers that will answer STOP: queued now, due in 20 s; the STOP
    # arrives first and cancels them.
    for to in UK_STOP:
        out.append(NewMessage(to, "Last chance: the sale ends tonight!", lane=Lane.CAMPAIGN,
                              not_before_ms=now_ms + 20_000, ref=f"demo-wave2-{to}"))
    return out


def progress_bar(done: int, total: int, width: int = 30) -> str:
    filled = width * done // total if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} final"


@contextlib.contextmanager
def simulators(folder: Path) -> Iterator[tuple[SimProcess, SimProcess, SimProcess]]:
    smsc = SimProcess("smsc", {"receipt_delay": 0.3, "fail_numbers": UK_FAIL,
                               "stop_numbers": list(UK_STOP)})
    try:
        opts = {"send_latency": 0.05, "status_report_delay": 0.3}
        a = SimProcess("modem", {**opts, "imei": "356938035643801"})
        try:
            b = SimProcess("modem", {**opts, "imei": "356938035643802"})
            try:
                yield smsc, a, b
            finally:
                b.close()
        finally:
            a.close()
    finally:
        smsc.close()


def add_subscribers(db: Path, numbers: list[str]) -> int:
    """Demo subscribers with a marketing opt-in, so delivered/failed events reach them."""
    from segmentation.consent import record_consent
    from segmentation.store import Store
    from segmentation.subscribers import upsert_subscriber

    added = 0
    with Store(db) as store:
        for n in numbers:
            try:
                upsert_subscriber(store, n)
                record_consent(store, n, "marketing", "grant", "operator", actor="demo",
                               evidence={"source": "smsgate demo"})
            except SmsgateError:  # a number the store rejects is no demo subscriber
                continue
            added += 1
    return added


async def run_demo(out: TextIO, folder: Path) -> Summary:
    start = time.monotonic()
    with simulators(folder) as (smsc, a, b):
        path = write_config(
            folder, smsc_port=smsc.port, modem_paths=(a.path, b.path),
            routes=(("+44", ("sim-smsc", "modems")), ("+1", ("modems", "sim-smsc"))),
        )
        config = load_config(path)
        print(f"demo: SMSC simulator on 127.0.0.1:{smsc.port}, modems on {a.path} and "
              f"{b.path}, database {config.database.path}", file=out)
        print("demo: simulator pids " + " ".join(str(p.proc.pid) for p in (smsc, a, b)),
              file=out, flush=True)
        now_ms = time.time_ns() // 1_000_000
        batch = demo_messages(now_ms)
        subscribers = add_subscribers(config.database.path, [m.to for m in batch])
        daemon = Daemon(config, options=DaemonOptions(status_interval_s=0.5,
                                                      timers_interval_s=0.5))
        # The daemon task lives in a TaskGroup: leaving the group waits for its drain and exit.
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(daemon.run(), name="demo-daemon")
            try:
                # Both routes up first, so the batch shows routing rather than failover.
                async with asyncio.timeout(20):
                    await daemon.wait_routes_up()
                with Outbox(config.database.path) as box:
                    ids = [acc.id for acc in box.enqueue_many(batch)]
                print(f"demo: {len(ids)} messages queued ({subscribers} demo subscribers)",
                      file=out)
                summary = await _watch(daemon, task, config.database.path, ids, out, start)
            finally:
                daemon.stop()
        summary.seconds = time.monotonic() - start
        return summary


async def _watch(daemon: Daemon, task: asyncio.Task[int], db: Path, ids: list[int],
                 out: TextIO, start: float) -> Summary:
    last = -1
    tty = out.isatty()
    while True:
        done = _final_count(db, ids)
        if done != last:
            bar = progress_bar(done, len(ids))
            print(("\r" + bar) if tty else bar, end="" if tty else "\n", file=out, flush=True)
            last = done
        if done == len(ids) or time.monotonic() - start > DEADLINE_S:
            break
        if task.done():  # Ctrl-C (SIGINT) stops the daemon: stop watching, clean up, report
            print(file=out)
            print("demo: interrupted", file=out)
            break
        dispatcher = daemon.dispatcher
        if dispatcher is None:
            await asyncio.sleep(0.1)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(dispatcher.wait_progress(), 0.5)
    if tty:
        print(file=out)
    return _summary(daemon, db, ids)


def _final_count(db: Path, ids: list[int]) -> int:
    finals = tuple(s.value for s in FINAL)
    conn = sqlite3.connect(db, timeout=10)
    try:
        marks = ",".join("?" * len(ids))
        row = conn.execute(
            f"SELECT count(*) FROM outbox_message WHERE id IN ({marks}) AND state IN "
            f"({','.join('?' * len(finals))})", (*ids, *finals),
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


def _summary(daemon: Daemon, db: Path, ids: list[int]) -> Summary:
    s = Summary(messages=len(ids))
    with Outbox(db) as box:
        for mid in ids:
            m = box.get(mid)
            if m is None:
                continue
            s.states[m.state.value] += 1
            if m.route:
                s.by_route[m.route] += 1
            s.parts_sent += sum(1 for p in m.parts if p.carrier_id)
            if m.state not in (State.DELIVERED, State.CANCELLED):
                reason = m.state.value + (f" code {m.error_code}" if m.error_code else "")
                s.failures[reason] += 1
            if m.state is State.CANCELLED:
                hist = box.history(mid)
                if any(h.detail == "opt-out" for h in hist):
                    s.cancelled_by_stop += 1
    if daemon.inbound is not None:
        stats = daemon.inbound.statistics()
        s.opt_outs = stats.opt_outs
        s.replies_sent = stats.replies_sent
    return s


def main(out: TextIO = sys.stdout) -> int:
    with tempfile.TemporaryDirectory(prefix="smsgate-demo-") as tmp:
        try:
            summary = asyncio.run(run_demo(out, Path(tmp)))
        except KeyboardInterrupt:  # before the daemon's handler was installed; children closed
            print("demo: interrupted", file=out)
            return 130
    for line in summary.lines():
        print(line, file=out)
    final = sum(summary.states.values())
    return 0 if final == summary.messages else 1
