"""The dispatcher: ready outbox rows -> route -> codec -> driver -> results back in the outbox.

One claim loop takes ready messages from the outbox, lane by lane (transactional > automation >
campaign, :meth:`gateway.outbox.Outbox.claim`), only as many as the routes that are up can keep
in flight (each route's ``capacity``: a few windows of an SMPP bind, two messages per modem).
Every claimed message gets its own task; the driver's window and rate limiter decide when each
part goes out, so many messages are in flight at once and a transactional message claimed now
waits behind at most the in-flight bulk, never behind the queued bulk (issue 5 "Dispatch").
A message stays "in flight" until its results are committed, so what a ``kill -9`` can make us
send twice is bounded by the routes' capacity.

Results flow through one ordered write queue to one writer task, which stores them in batches
(one outbox transaction for the results of a batch, one for its reports). A part's carrier id is put
on the queue the moment the driver hands it over, before our receive loop can hand us the
report that names it; a report that still overtakes it waits in the outbox's pending table and
is matched when the id is stored (field-failures.md §3.4).

What happens to a message (DESIGN.md "Durability and delivery semantics"):

* every part accepted                   -> stays ``submitted`` until its reports arrive;
* a permanent refusal (or no route rule, or text the codec cannot encode) -> ``failed``,
  carrier/modem code kept;
* a route-level refusal (not bound, every modem unusable) before any part was accepted -> the
  next route in the rule's failover list; none left -> back in the queue, no retry counted;
* a temporary error -> the outbox's retry policy (capped exponential backoff, attempt limit,
  validity);
* unknown (sent, no answer: timeout or dropped link) -> sent again at once, up to
  ``unknown_resends`` times per run, then treated as temporary. A resend may duplicate what was in
  flight when the link dropped; that is the bounded duplicate the issue allows.

Opt-outs: numbers in the opted-out set never get automation or campaign messages (the consent
ledger's ``marketing`` programme); transactional messages (OTPs, HELP/STOP replies) still go.
The set is updated by the inbound path before it cancels the number's queued messages, so a
message claimed just before the STOP is stopped here, at the last moment before the wire.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway.codec import CodecError, EncodedMessage, EncodeOptions, encode
from gateway.codec.model import Concat
from gateway.dispatch_db import AsyncOutbox
from gateway.outbox import Outbox
from gateway.outbox_states import Lane
from gateway.outbox_types import (
    Claimed,
    OutboxError,
    Outcome,
    PermanentFailure,
    Report,
    Requeue,
    Submitted,
    TemporaryFailure,
)
from gateway.routes import PartResult, PartStatus, Route
from gateway.routing import NoRouteError, Router

log = logging.getLogger("smsgate.dispatch")

WriteItem = Outcome | Report


class _EndOfWrites:
    """Queued by :meth:`Dispatcher.finish_writing`: the writer stops after what precedes it."""


_END = _EndOfWrites()

_WRITE_BATCH = 2000  # results per outbox transaction at most
_MARKETING_LANES = frozenset({Lane.AUTOMATION, Lane.CAMPAIGN})


@dataclass(frozen=True, slots=True)
class DispatchStatistics:
    claimed: int
    in_flight: int
    parts_accepted: int
    messages_failed: int
    messages_requeued: int
    messages_retried: int
    reports: int
    opt_out_blocked: int
    write_batches: int
    write_queue: int


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    claim_batch: int = 256
    idle_poll_s: float = 0.1  # how often to look for new rows when nothing is in flight
    unknown_resends: int = 3
    send_timeout_s: float = 300.0  # a modem may take 120 s per part (TS 27.005 +CMGS)
    no_route_delay_s: float = 2.0  # a message whose routes are all down waits this long


def concat_reference(message_id: int, concat: Concat) -> int:
    """The concatenation reference of a message: derived from its id, so parts resent after a
    crash or a partial failure carry the same reference as their siblings (TS 23.040
    §9.2.3.24.1 8-bit, §9.2.3.24.8 16-bit; SMPP 3.4 §5.3.2.22 sar_msg_ref_num is 16-bit)."""
    return message_id & (0xFF if concat is Concat.UDH8 else 0xFFFF)


@functools.lru_cache(maxsize=1024)
def _options(concat: Concat, reference: int) -> EncodeOptions:
    return EncodeOptions(concat=concat, reference=reference)


def encode_for(message: Claimed, concat: Concat) -> EncodedMessage:
    options = _options(concat, concat_reference(message.id, concat))
    return encode(message.text, options, destination=message.to)


def verdict(
    message: Claimed, route: str, results: Iterable[PartResult], unknown_count: int,
    unknown_resends: int,
) -> Outcome | None:
    """What the outbox should record for a message after one route tried its parts.

    None: every part was accepted (the Submitted outcomes were recorded as they came), or the
    route refused before accepting anything (the caller tries the next route).
    """
    rs = list(results)
    failed = [r for r in rs if r.status is not PartStatus.ACCEPTED]
    if not failed:
        return None
    for r in failed:
        if r.status is PartStatus.PERMANENT:
            return PermanentFailure(message.id, r.code, r.text, route)
    accepted_any = len(failed) < len(rs)
    if all(r.status is PartStatus.REFUSED for r in failed) and not accepted_any:
        return None
    first = failed[0]
    temporary = [r for r in failed if r.status in (PartStatus.TEMPORARY, PartStatus.REFUSED)]
    if temporary:
        t = temporary[0]
        return TemporaryFailure(message.id, t.code, t.text, route)
    if unknown_count < unknown_resends:
        return Requeue(message.id)
    return TemporaryFailure(message.id, first.code, f"no answer: {first.text}", route)


def postpone(box: Outbox, ids: Sequence[int], delay_ms: int) -> None:
    """Move requeued messages ``delay_ms`` into the future (``not_before_ms``, the outbox's
    "ready from"). Without it a message whose only route is down comes straight back at the
    head of its lane on every claim and crowds out messages for routes that are up.
    (The outbox's ``Requeue`` has no delay of its own yet; this is the one column we set.)"""
    until = box.clock() + delay_ms
    box.conn.executemany(
        "UPDATE outbox_message SET not_before_ms = max(not_before_ms, ?) "
        "WHERE id = ? AND state = 'queued'",
        [(until, mid) for mid in ids],
    )


class Dispatcher:
    """Owns the claim loop, the per-message send tasks and the result writer."""

    def __init__(
        self,
        box: AsyncOutbox,
        router: Router,
        routes: Mapping[str, Route],
        *,
        settings: DispatchSettings = DispatchSettings(),
        opted_out: set[str] | None = None,
        on_written: Callable[[], None] | None = None,
    ) -> None:
        self._box = box
        self._router = router
        self._routes = dict(routes)
        self.settings = settings
        self.opted_out: set[str] = opted_out if opted_out is not None else set()
        self._on_written = on_written
        self._writes: asyncio.Queue[WriteItem | _EndOfWrites] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._stopping = asyncio.Event()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._unknowns: dict[int, int] = {}
        self._no_route: set[int] = set()  # requeued to wait: every route down, or a bug
        self._enqueued = 0  # items ever put on the write queue
        self._committed = 0  # items ever committed by the writer
        self._barriers: collections.deque[tuple[int, asyncio.Future[None]]] = \
            collections.deque()
        self._claimed = 0
        self._accepted = 0
        self._failed = 0
        self._requeued = 0
        self._retried = 0
        self._reports = 0
        self._blocked = 0
        self._batches = 0
        # transactional message id -> monotonic time its first part was accepted (bench)
        self.submit_times: dict[int, float] = {}
        self.track_submit_times = False

    # -- public --------------------------------------------------------------------------------

    def set_routes(self, routes: Mapping[str, Route]) -> None:
        self._routes = dict(routes)

    def wake(self) -> None:
        """New work may be ready (an enqueue, a route came up)."""
        self._wake.set()

    def stop_claiming(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def report(self, report: Report) -> None:
        """A delivery report from a route: queued for the writer, in arrival order.

        It is not awaited to commit: the SMPP client hands deliver_sm to us one at a time, so
        waiting for a commit per report caps receipts at a few hundred per second (measured:
        250/s against 900/s). The price: a ``kill -9`` loses the reports received in the last
        writer batch (milliseconds); their parts become ``unknown`` after
        ``dlr_unknown_after_s``, never ``delivered`` without proof.
        """
        self._reports += 1
        self._put(report)

    async def wait_progress(self) -> None:
        """Until the writer commits its next batch (results or reports)."""
        self._progress.clear()
        await self._progress.wait()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def statistics(self) -> DispatchStatistics:
        return DispatchStatistics(
            self._claimed, self._in_flight, self._accepted, self._failed, self._requeued,
            self._retried, self._reports, self._blocked, self._batches, self._writes.qsize(),
        )

    # -- loops -----------------------------------------------------------------------------------

    async def run_claims(self) -> None:
        """Claim and hand out until :meth:`stop_claiming`; send tasks live in this TaskGroup."""
        async with asyncio.TaskGroup() as tg:
            while not self._stopping.is_set():
                room = self._room()
                if room <= 0:
                    await self._sleep(self.settings.idle_poll_s)
                    continue
                batch = await self._box.run(Outbox.claim, min(room, self.settings.claim_batch))
                if not batch:
                    await self._sleep(self.settings.idle_poll_s)
                    continue
                self._claimed += len(batch)
                for message in batch:
                    self._started()
                    tg.create_task(self._send(message), name=f"send-{message.id}")

    async def run_writer(self) -> None:
        """Store results and reports in batches as they come (see :meth:`_write`), until
        :meth:`finish_writing`; everything queued before that is written first."""
        while True:
            first = await self._writes.get()
            items = [first]
            while len(items) < _WRITE_BATCH and not self._writes.empty():
                items.append(self._writes.get_nowait())
            done = _END in items
            batch = [i for i in items if not isinstance(i, _EndOfWrites)]
            if batch:
                # Shielded: a cancelled daemon must not drop results it already took off
                # the queue (their messages would be sent again after the restart).
                await asyncio.shield(self._write(batch))
                self._note_committed(len(batch))
            if done:
                return

    def finish_writing(self) -> None:
        """Let the writer store what is queued, then end."""
        self._writes.put_nowait(_END)

    async def flush(self) -> None:
        """Write what is still queued (at shutdown, after the writer task ended)."""
        items: list[WriteItem] = []
        while not self._writes.empty():
            item = self._writes.get_nowait()
            if not isinstance(item, _EndOfWrites):
                items.append(item)
        if items:
            await self._write(items)

    # -- internals -------------------------------------------------------------------------------

    def _room(self) -> int:
        capacity = sum(r.capacity for r in self._routes.values() if r.is_up())
        return capacity - self._in_flight

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()

    def _started(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def _finished(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()
        self._wake.set()

    def _put(self, item: WriteItem) -> None:
        self._enqueued += 1
        self._writes.put_nowait(item)

    async def _wait_committed(self) -> None:
        """Until everything queued for writing so far is committed."""
        threshold = self._enqueued
        if self._committed >= threshold:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._barriers.append((threshold, done))
        await done

    def _note_committed(self, n: int) -> None:
        self._committed += n
        while self._barriers and self._barriers[0][0] <= self._committed:
            _, done = self._barriers.popleft()
            if not done.done():
                done.set_result(None)

    async def _write(self, items: list[WriteItem]) -> None:
        # Outcomes first, then reports: moving a carrier id ahead of a report that arrived
        # before it only lets the report match at once instead of via the pending table, and
        # two transactions per batch keep the writer ahead of a fast SMSC.
        outcomes = [i for i in items if not isinstance(i, Report)]
        reports = [i for i in items if isinstance(i, Report)]
        if outcomes:
            later = [o.message_id for o in outcomes
                     if isinstance(o, Requeue) and o.message_id in self._no_route]
            self._no_route.difference_update(later)
            delay_ms = int(self.settings.no_route_delay_s * 1000)

            def store(box: Outbox) -> None:
                box.mark_many(outcomes)
                if later:
                    postpone(box, later, delay_ms)

            await self._box.run(store)
            self._batches += 1
        if reports:
            await self._box.run(Outbox.record_reports, reports)
            self._batches += 1
        self._progress.set()
        if self._on_written is not None:
            self._on_written()

    async def _send(self, message: Claimed) -> None:
        """One message, start to durable result. Its slot is freed only once its results are
        committed: "in flight" means "would be sent again after a crash", so the duplicates a
        kill -9 can cause stay within the routes' capacity."""
        try:
            try:
                outcome = await self._try_routes(message)
            except Exception:  # one bad message must not stop the daemon: log, send it again
                log.exception("dispatch: message %d failed unexpectedly; requeued", message.id)
                self._no_route.add(message.id)  # postponed: one that always fails never spins
                outcome = Requeue(message.id)
            if outcome is not None:
                self._record(outcome)
                self._put(outcome)
                log.debug("message %d: %s", message.id, outcome)
            await self._wait_committed()
        finally:
            self._finished()

    def _record(self, outcome: Outcome) -> None:
        if isinstance(outcome, PermanentFailure):
            self._failed += 1
            self._unknowns.pop(outcome.message_id, None)
        elif isinstance(outcome, Requeue):
            self._requeued += 1
        elif isinstance(outcome, TemporaryFailure):
            self._retried += 1

    async def _try_routes(self, message: Claimed) -> Outcome | None:
        if message.lane in _MARKETING_LANES and message.to in self.opted_out:
            self._blocked += 1
            return PermanentFailure(message.id, None, "opted out")
        refused: set[str] = set()
        while True:
            try:
                choice = self._router.choose(message.to, message.sender or None, refused=refused)
            except NoRouteError as exc:
                return PermanentFailure(message.id, None, str(exc))
            if choice is None:
                # Every candidate is down: back in line, but not at its head (see _write).
                self._no_route.add(message.id)
                return Requeue(message.id)
            route = self._routes.get(choice.name)
            if route is None or not route.is_up():
                refused.add(choice.name)
                continue
            outcome, tried = await self._on_route(message, route)
            if tried:
                return outcome
            refused.add(route.name)

    async def _on_route(self, message: Claimed, route: Route) -> tuple[Outcome | None, bool]:
        """Send on one route. Returns (outcome, tried); tried False: refused, try the next."""
        try:
            encoded = encode_for(message, route.concat)
        except CodecError as exc:
            return PermanentFailure(message.id, None, f"cannot encode: {exc}"), True
        seqs = message.parts
        if len(encoded.parts) != message.total_parts:
            try:
                await self._box.run(Outbox.reshape, message.id, len(encoded.parts))
            except OutboxError:
                # Some parts already went out split another way: this route cannot continue.
                return None, False
            seqs = tuple(range(len(encoded.parts)))
        results: list[PartResult] = []

        def on_part(result: PartResult) -> None:
            results.append(result)
            if result.status is PartStatus.ACCEPTED and result.carrier_id is not None:
                self._accepted += 1
                if self.track_submit_times and message.lane is Lane.TRANSACTIONAL \
                        and message.id not in self.submit_times:
                    self.submit_times[message.id] = time.monotonic()
                self._put(Submitted(message.id, result.seq, route.name, result.carrier_id))
                log.debug("message %d part %d submitted via %s as %s", message.id, result.seq,
                          route.name, result.carrier_id)

        try:
            # A guard, not the protocol's timeout (the drivers have their own): a send that
            # never finishes must not hold its message in `sending` until the next restart.
            async with asyncio.timeout(self.settings.send_timeout_s):
                await route.send(message.id, message.to, message.sender, encoded, seqs, on_part)
        except TimeoutError:
            log.warning("dispatch: message %d got no outcome from %s in %g s", message.id,
                        route.name, self.settings.send_timeout_s)
        # Every part must have an outcome, or the message would stay `sending` until restart.
        answered = {r.seq for r in results}
        results.extend(PartResult(seq, PartStatus.UNKNOWN, text="no outcome")
                       for seq in seqs if seq not in answered)
        unknown = sum(1 for r in results if r.status is PartStatus.UNKNOWN)
        count = self._unknowns.get(message.id, 0)
        outcome = verdict(message, route.name, results, count, self.settings.unknown_resends)
        if outcome is None and any(r.status is not PartStatus.ACCEPTED for r in results):
            return None, False  # refused before any part was accepted: next route
        if unknown:
            self._unknowns[message.id] = count + 1
        elif outcome is None:
            self._unknowns.pop(message.id, None)
        return outcome, True
