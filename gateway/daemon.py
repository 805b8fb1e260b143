"""The gateway daemon: routes, dispatcher, inbound keywords, timers and status in one TaskGroup.

``await Daemon(config).run()`` is what ``smsgate run`` does:

1. open the outbox (own thread) and put back every part a crash left ``sending`` (recovery:
   those are sent again, so duplicates are bounded by what was in flight, nothing is lost);
   open the segment store (own thread) on the same database file; load the opted-out numbers;
2. start every route (SMPP binds, modem pools) and, in one TaskGroup: the claim loop, the result
   writer, the timers (reports overdue -> ``unknown``; final states -> segment-store events),
   live segment membership (the events the daemon ingests -- delivered, failed, reply, consent
   -- move numbers in and out of segments within a batch window, 250 ms), the status writer
   (every second, read by ``smsgate status``) and the systemd watchdog;
3. on SIGTERM/SIGINT (or :meth:`Daemon.stop`): stop claiming, wait up to ``drain_timeout_s`` for
   in-flight responses, store every result and its events, drain segment membership once more,
   unbind and close the ports, write a final ``stopped`` status, exit 0. What did not finish
   stays ``sending`` on disk and is recovered by the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.config import Config
from gateway.daemon_events import EventPump
from gateway.daemon_inbound import InboundHandler
from gateway.dispatch import Dispatcher, DispatchSettings
from gateway.dispatch_db import AsyncOutbox
from gateway.inbound.keywords import Replies
from gateway.mo_store import MoPartDb
from gateway.outbox import Outbox
from gateway.outbox_states import RetryPolicy
from gateway.routes import ModemRoute, Route, SmppRoute
from gateway.routing import RouteKind, Router
from gateway.sdnotify import Notifier, keep_alive
from gateway.status import ensure_schema, write_snapshot
from segmentation.checkpoint import SAFETY_NET_PAGES, WalReset, run_checkpointer
from segmentation.membership_live import LiveMembership
from segmentation.store import AsyncStore, Store

log = logging.getLogger("smsgate.daemon")


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    """Knobs for tests and benchmarks; production uses the defaults."""

    status_interval_s: float = 1.0
    timers_interval_s: float = 1.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    membership_batch_ms: float = 250.0  # segment membership micro-batch window


class Daemon:
    def __init__(
        self, config: Config, *, options: DaemonOptions = DaemonOptions(),
        notifier: Notifier | None = None, clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.config = config
        self.options = options
        self.notifier = notifier or Notifier()
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._stop = asyncio.Event()
        self._state = "starting"
        self._started_ms = self._clock_ms()
        self.router = Router.from_config(config)
        self.routes: dict[str, Route] = {}
        self.dispatcher: Dispatcher | None = None
        self.inbound: InboundHandler | None = None
        self.membership: LiveMembership | None = None
        self.ready = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def wait_routes_up(self, names: Iterable[str] | None = None) -> None:
        """Until the routes named (default: all) are up: bound binds, a ready modem per pool."""
        await self.ready.wait()
        for name in self.routes if names is None else names:
            await self.routes[name].wait_up()

    # -- run -----------------------------------------------------------------------------------

    async def run(self) -> int:
        cfg = self.config
        db = cfg.database.path
        box = await AsyncOutbox.open(
            db, max_retries=cfg.daemon.max_retries, retry=self.options.retry,
            dlr_unknown_after_s=cfg.daemon.dlr_unknown_after_s, clock=self._clock_ms,
        )
        try:
            recovered = await box.run(Outbox.recover)
            if recovered:
                log.info("recovered %d messages left in flight by the last run", recovered)
            await box.run(lambda ob: ensure_schema(ob.conn))
            key = cfg.segments.hash_key
            # The site key lets the send gate recognise suppressed numbers (kept as keyed
            # hashes, which survive erasure) -- the same key the CLI's erasure uses.
            store = await AsyncStore.open(
                db, clock=self._clock_ms, default_region=cfg.segments.default_region,
                hash_key=key.encode("utf-8") if key else None,
                cache_kib=cfg.segments.cache_mb * 1024,
                autocheckpoint_pages=SAFETY_NET_PAGES,
            )
            # the WAL checkpointer task copies pages back (segmentation.checkpoint); the
            # outbox's commits only checkpoint past the same safety net
            await box.run(lambda ob: ob.conn.execute(
                f"PRAGMA wal_autocheckpoint={SAFETY_NET_PAGES}"))
            try:
                return await self._run(box, store)
            finally:
                await store.aclose()
        finally:
            await self._write_status(box, "stopped")
            await box.aclose()

    async def _run(self, box: AsyncOutbox, store: AsyncStore) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        inbound = InboundHandler(
            box, store, Replies.from_config(self.config.keywords), clock_ms=self._clock_ms,
        )
        await inbound.start()
        self.inbound = inbound
        dispatcher = Dispatcher(
            box, self.router, {}, settings=self.options.dispatch,
            opted_out=inbound.opted_out, suppressed=inbound.is_suppressed,
        )
        self.dispatcher = dispatcher
        inbound.on_enqueued = dispatcher.wake
        events = EventPump(box, store)
        live = LiveMembership(store, batch_ms=self.options.membership_batch_ms)
        self.membership = live
        async with AsyncExitStack() as stack:
            # Opened first, closed last: the binds use it until they are closed.
            mo_db = await MoPartDb.open(self.config.database.path)
            stack.push_async_callback(mo_db.aclose)
            for name, route in self._build_routes(dispatcher, inbound, mo_db).items():
                await stack.enter_async_context(route)
                self.routes[name] = route
            dispatcher.set_routes(self.routes)
            async with asyncio.TaskGroup() as tg:
                claims = tg.create_task(dispatcher.run_claims(), name="claims")
                writer = tg.create_task(dispatcher.run_writer(), name="writer")
                segments = tg.create_task(live.run(), name="membership")
                # the store's writer restarts the WAL when the checkpointer asks, keeping
                # its page cache (segmentation.checkpoint)
                reset = WalReset()
                await store.run(lambda s: s.restart_wal_when_asked(reset))
                loops = [
                    tg.create_task(run_checkpointer(str(self.config.database.path),
                                                    reset=reset),
                                   name="wal-checkpoint"),
                    tg.create_task(self._timers(box, events), name="timers"),
                    tg.create_task(self._status_loop(box), name="status"),
                    tg.create_task(keep_alive(self.notifier), name="watchdog"),
                ]
                self._state = "running"
                await self._write_status(box, "running")
                self.notifier.ready(self._summary())
                self.ready.set()
                log.info("smsgate running: %d routes", len(self.routes))
                await self._stop.wait()
                # -- drain -------------------------------------------------------------------
                self._state = "draining"
                self.notifier.stopping("draining")
                log.info("stopping: draining %d messages in flight", dispatcher.in_flight)
                dispatcher.stop_claiming()
                try:
                    async with asyncio.timeout(self.config.daemon.drain_timeout_s):
                        await claims
                except TimeoutError:
                    log.warning("drain timeout: %d messages left in flight (resent on the "
                                "next start)", dispatcher.in_flight)
                    claims.cancel()
                dispatcher.finish_writing()
                try:
                    async with asyncio.timeout(self.config.daemon.drain_timeout_s):
                        await writer
                except TimeoutError:
                    writer.cancel()
                for task in loops:
                    task.cancel()
                await asyncio.wait(loops)
                # The last results and their events go in while membership still listens.
                await dispatcher.flush()
                await events.pump()
                await self._last_membership_batch(live, segments)
            log.info("stopped: unbinding and closing ports")
        self.notifier.close()
        return 0

    def _build_routes(
        self, dispatcher: Dispatcher, inbound: InboundHandler, mo_db: MoPartDb,
    ) -> dict[str, SmppRoute | ModemRoute]:
        cfg = self.config
        routes: dict[str, SmppRoute | ModemRoute] = {}

        def health(name: str, up: bool) -> None:
            log.info("route %s is %s", name, "up" if up else "down")
            # A pool's health is its modems' (the router knows groups by their members).
            route = self.router.table.routes[name]
            for member in route.members if route.kind is RouteKind.GROUP else (name,):
                self.router.set_up(member, up)
            if up:
                dispatcher.wake()

        for bind in cfg.smpp:
            routes[bind.name] = SmppRoute(
                bind, on_report=dispatcher.report, on_inbound=inbound.handle, on_health=health,
                mo_db=mo_db, on_reports=dispatcher.report_many,
            )
        # One pool per modem or group that a rule names; a modem may serve one pool only.
        used: set[str] = set()
        modems = {m.name: m for m in cfg.modem}
        for rule in self.router.table.rules:
            for name in rule.via:
                route = self.router.table.routes[name]
                if route.kind is RouteKind.SMPP or name in routes:
                    continue
                members = (name,) if route.kind is RouteKind.MODEM else route.members
                overlap = used.intersection(members)
                if overlap:
                    raise ValueError(
                        f"modem {sorted(overlap)[0]} is named by two routes; "
                        "give each rule the same modem group"
                    )
                used.update(members)
                routes[name] = ModemRoute(
                    name, [modems[m] for m in members], on_report=dispatcher.report,
                    on_inbound=inbound.handle, on_health=health,
                    resend_unknown=cfg.daemon.resend_unknown,
                )
        return routes

    async def _last_membership_batch(self, live: LiveMembership,
                                     task: asyncio.Task[None]) -> None:
        """Drain what is still pending (at most one batch window's worth), then stop the loops.
        Bounded by the drain timeout: a locked database must not keep systemd waiting."""
        try:
            async with asyncio.timeout(self.config.daemon.drain_timeout_s):
                await live.wait_started()
                membership = live.membership

                def drain(_store: Store) -> int:
                    return membership.drain().entered

                await live.store.run(drain)
        except (TimeoutError, sqlite3.OperationalError) as exc:
            log.warning("segment membership not drained at stop (%s): re-checked later", exc)
        task.cancel()

    # -- loops -----------------------------------------------------------------------------------

    async def _timers(self, box: AsyncOutbox, events: EventPump) -> None:
        while True:
            unknown = await box.run(Outbox.mark_unknown_due)
            if unknown:
                log.info("%d parts had no report in time: unknown", unknown)
            await events.pump()
            for route in self.routes.values():
                route.is_up()  # health changes are noticed and passed to the router
            await asyncio.sleep(self.options.timers_interval_s)

    async def _status_loop(self, box: AsyncOutbox) -> None:
        last = 0
        while True:
            await self._write_status(box, self._state)
            d = self.dispatcher.statistics() if self.dispatcher else None
            if d is not None and d.parts_accepted != last:
                self.notifier.status(self._summary())
                last = d.parts_accepted
            await asyncio.sleep(self.options.status_interval_s)

    def _summary(self) -> str:
        up = sum(1 for r in self.routes.values() if r.is_up())
        d = self.dispatcher.statistics() if self.dispatcher else None
        sent = d.parts_accepted if d else 0
        return f"{up}/{len(self.routes)} routes up, {sent} parts sent"

    def snapshot(self) -> dict[str, Any]:
        routes = []
        rate = 0.0
        for route in self.routes.values():
            s = route.statistics()
            rate += s.rate
            routes.append({
                "name": s.name, "kind": s.kind, "up": s.up, "state": s.state,
                "in_flight": s.in_flight, "capacity": s.capacity, "rate": s.rate,
                "detail": [list(kv) for kv in s.detail],
            })
        d = self.dispatcher.statistics() if self.dispatcher else None
        return {
            "routes": routes,
            "dispatch": asdict(d) if d else {},
            "parts_per_s": rate,
            "opted_out": len(self.dispatcher.opted_out) if self.dispatcher else 0,
            "inbound": asdict(self.inbound.statistics()) if self.inbound else {},
            "membership": asdict(self.membership.statistics()) if self.membership else {},
        }

    async def _write_status(self, box: AsyncOutbox, state: str) -> None:
        data = self.snapshot()
        now = self._clock_ms()

        def write(ob: Outbox) -> None:
            write_snapshot(ob.conn, pid=os.getpid(), started_ms=self._started_ms, now_ms=now,
                           state=state, data=data)

        try:
            await box.run(write)
        except Exception as exc:  # a busy database must not stop sending; the next second retries
            log.debug("status not written: %s", exc)
