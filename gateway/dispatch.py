"""The dispatcher: ready outbox rows -> route -> codec -> driver -> results back in the outbox.

One claim loop takes ready messages from the outbox, lane by lane (transactional > automation >
campaign, :meth:`gateway.outbox.Outbox.claim`), only as many as the routes that are up can keep
in flight (each route's ``capacity``: a few windows of an SMPP bind, two messages per modem).
Every claimed batch gets one task, which splits it by route and hands each route its share at
once (:meth:`gateway.routes.Route.send_many`): an SMPP bind fills its window from the list with
no task or future per message (the raw driver's cost per part, not a coroutine chain's); the
driver's window and rate limiter decide when each part goes out, batches take the window in
turn and a batch led by a transactional message goes ahead of the bulk batches waiting, so a
transactional message claimed now waits behind at most the in-flight bulk, never behind the
queued bulk (issue 5 "Dispatch"). A message stays "in flight" until its results are
committed (its slot is freed by the writer, not by the send), so what a ``kill -9`` can make us
send twice is bounded by the routes' capacity.

Results flow through one ordered write queue to one writer task, which stores them in batches
(one outbox transaction for the results of a batch, one for its reports). A part's carrier id is put
on the queue the moment the driver hands it over, before our receive loop can hand us the
report that names it; a report that still overtakes it waits in the outbox's pending table and
is matched when the id is stored (field-failures.md §3.4). A delivery report is acknowledged
to the SMSC only once committed (:meth:`Dispatcher.report`, :meth:`Dispatcher.report_many`):
the receipts read together wait for one commit (group commit), so a ``kill -9`` loses none.

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
from collections.abc import Callable, Iterable, Mapping
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
from gateway.routes import Outgoing, PartResult, PartStatus, Route
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


# Single-part encodings by (text, concat): a one-part message carries no concatenation
# reference and its encoding depends on nothing else, and a campaign often sends one text to
# many numbers. Frozen results, so sharing them is safe; cleared when full.
_SINGLE_PARTS: dict[tuple[str, Concat], EncodedMessage] = {}
_SINGLE_PARTS_MAX = 1024


def encode_for(message: Claimed, concat: Concat) -> EncodedMessage:
    key = (message.text, concat)
    encoded = _SINGLE_PARTS.get(key)
    if encoded is not None:
        return encoded
    options = _options(concat, concat_reference(message.id, concat))
    encoded = encode(message.text, options, destination=message.to)
    if len(encoded.parts) == 1:
        if len(_SINGLE_PARTS) >= _SINGLE_PARTS_MAX:
            _SINGLE_PARTS.clear()
        _SINGLE_PARTS[key] = encoded
    return encoded


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
        suppressed: Callable[[str], bool] | None = None,
        on_written: Callable[[], None] | None = None,
    ) -> None:
        self._box = box
        self._router = router
        self._routes = dict(routes)
        self.settings = settings
        self.opted_out: set[str] = opted_out if opted_out is not None else set()
        # Numbers on the suppression list (keyed hashes: what is left of an erased number
        # that opted out) get no marketing either; asked only when the set above says no.
        self._suppressed = suppressed
        self._on_written = on_written
        # The write queue: a deque and a flag rather than asyncio.Queue, whose put is several
        # calls; one item goes on per part accepted.
        self._writes: collections.deque[WriteItem | _EndOfWrites] = collections.deque()
        self._writes_ready = asyncio.Event()
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
        # [threshold, messages]: slots freed once ``_committed`` reaches the threshold
        self._releases: collections.deque[list[int]] = collections.deque()
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
        """A delivery report from a route: returns once it is committed.

        The SMPP client answers the deliver_sm only when this returns, so a report the SMSC
        saw acknowledged is durable (a ``kill -9`` loses none: unacknowledged ones are
        delivered again). Reports wait together: the client runs a window of handlers at
        once and the writer commits whatever is queued in one transaction (group commit).
        """
        self._reports += 1
        self._put(report)
        await self._wait_committed()

    async def report_many(self, reports: list[Report]) -> None:
        """Reports read together (an SMPP bind's receipts): queued in order, one wait."""
        self._reports += len(reports)
        for report in reports:
            self._put(report)
        await self._wait_committed()

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
            self._retried, self._reports, self._blocked, self._batches, len(self._writes),
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
                self._started(len(batch))
                tg.create_task(self._send_batch(batch), name=f"send-{batch[0].id}+{len(batch)}")

    async def run_writer(self) -> None:
        """Store results and reports in batches as they come (see :meth:`_write`), until
        :meth:`finish_writing`; everything queued before that is written first."""
        writes = self._writes
        while True:
            if not writes:
                self._writes_ready.clear()
                await self._writes_ready.wait()
                continue
            items = [writes.popleft() for _ in range(min(len(writes), _WRITE_BATCH))]
            batch = [i for i in items if not isinstance(i, _EndOfWrites)]
            done = len(batch) < len(items)
            if batch:
                # Shielded: a cancelled daemon must not drop results it already took off
                # the queue (their messages would be sent again after the restart).
                await asyncio.shield(self._write(batch))
                self._note_committed(len(batch))
            if done:
                return

    def finish_writing(self) -> None:
        """Let the writer store what is queued, then end."""
        self._writes.append(_END)
        self._writes_ready.set()

    async def flush(self) -> None:
        """Write what is still queued (at shutdown, after the writer task ended)."""
        items: list[WriteItem] = []
        while self._writes:
            item = self._writes.popleft()
            if not isinstance(item, _EndOfWrites):
                items.append(item)
        if items:
            await self._write(items)
            self._note_committed(len(items))

    # -- internals -------------------------------------------------------------------------------

    def _room(self) -> int:
        capacity = sum(r.capacity for r in self._routes.values() if r.is_up())
        return capacity - self._in_flight

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()

    def _started(self, n: int) -> None:
        self._in_flight += n
        self._idle.clear()

    def _finished(self, n: int) -> None:
        self._in_flight -= n
        if self._in_flight == 0:
            self._idle.set()
        self._wake.set()

    def _release_after_commit(self) -> None:
        """Free one message's slot once everything queued so far (its results) is committed.
        Messages concluded between two writes share one entry."""
        threshold = self._enqueued
        if self._committed >= threshold:
            self._finished(1)
        elif self._releases and self._releases[-1][0] == threshold:
            self._releases[-1][1] += 1
        else:
            self._releases.append([threshold, 1])

    def _put(self, item: WriteItem) -> None:
        self._enqueued += 1
        self._writes.append(item)
        if not self._writes_ready.is_set():
            self._writes_ready.set()

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
        freed = 0
        while self._releases and self._releases[0][0] <= self._committed:
            freed += self._releases.popleft()[1]
        if freed:
            self._finished(freed)
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
                    # Not at the head of the lane on the next claim: see Outbox.postpone.
                    box.postpone(later, delay_ms)

            await self._box.run(store)
            self._batches += 1
        if reports:
            await self._box.run(Outbox.record_reports, reports)
            self._batches += 1
        self._progress.set()
        if self._on_written is not None:
            self._on_written()

    async def _send_batch(self, batch: list[Claimed]) -> None:
        """A claimed batch, start to queued results: each message goes to its route (routes
        that refuse it pass it on, in the rule's failover order), every route's share in one
        ``send_many``. Nothing here waits for a commit: a message's slot is freed by the writer
        once its results are durable (:meth:`_release_after_commit`), so "in flight" means
        "would be sent again after a crash" and a kill -9's duplicates stay within the
        routes' capacity."""
        run = _BatchRun(self, batch)
        try:
            pending = [(m, frozenset[str]()) for m in batch]
            while pending:
                groups: dict[str, list[tuple[Claimed, frozenset[str]]]] = {}
                memo: dict[tuple[int, frozenset[str]], tuple[str, frozenset[str]] | None] = {}
                for message, refused in pending:
                    picked = self._pick(run, message, refused, memo)
                    if picked is not None:
                        groups.setdefault(picked[0], []).append((message, picked[1]))
                if len(groups) == 1:
                    [(name, entries)] = groups.items()
                    pending = await self._on_route(run, self._routes[name], entries)
                elif groups:
                    async with asyncio.TaskGroup() as tg:
                        tasks = [tg.create_task(self._on_route(run, self._routes[name], entries))
                                 for name, entries in groups.items()]
                    pending = [entry for task in tasks for entry in task.result()]
                else:
                    pending = []
        except Exception:  # a bug must not stop the daemon: log, send the rest again later
            log.exception("dispatch: a batch of %d failed unexpectedly; requeued", len(batch))
            for message in list(run.open.values()):
                self._no_route.add(message.id)  # postponed: one that always fails never spins
                run.conclude(message, Requeue(message.id))

    def _conclude(self, message: Claimed, outcome: Outcome | None) -> None:
        if outcome is not None:
            self._record(outcome)
            self._put(outcome)
            log.debug("message %d: %s", message.id, outcome)
        self._release_after_commit()

    def _record(self, outcome: Outcome) -> None:
        if isinstance(outcome, PermanentFailure):
            self._failed += 1
            self._unknowns.pop(outcome.message_id, None)
        elif isinstance(outcome, Requeue):
            self._requeued += 1
        elif isinstance(outcome, TemporaryFailure):
            self._retried += 1

    def _pick(
        self, run: _BatchRun, message: Claimed, refused: frozenset[str],
        memo: dict[tuple[int, frozenset[str]], tuple[str, frozenset[str]] | None],
    ) -> tuple[str, frozenset[str]] | None:
        """The route to try ``message`` on (and the routes that refused it so far), or None
        when its fate is already decided here (opted out, no rule, every route down).
        ``memo``: the choice per (rule, refused) within one round of a batch -- messages under
        one rule get the same answer while route health stands still."""
        if message.lane in _MARKETING_LANES and (
                message.to in self.opted_out
                or (self._suppressed is not None and self._suppressed(message.to))):
            self._blocked += 1
            run.conclude(message, PermanentFailure(message.id, None, "opted out"))
            return None
        sender = message.sender or None
        try:
            rule = self._router.table.rule_for(message.to, sender)
        except NoRouteError as exc:
            run.conclude(message, PermanentFailure(message.id, None, str(exc)))
            return None
        key = (rule.index, refused)
        if key in memo:
            picked = memo[key]
        else:
            picked = memo[key] = self._first_up(message.to, sender, refused)
        if picked is None:
            # Every candidate is down: back in line, but not at its head (see _write).
            self._no_route.add(message.id)
            run.conclude(message, Requeue(message.id))
        return picked

    def _first_up(self, to: str, sender: str | None, refused: frozenset[str]
                  ) -> tuple[str, frozenset[str]] | None:
        while True:
            choice = self._router.choose(to, sender, refused=refused)
            if choice is None:
                return None
            route = self._routes.get(choice.name)
            if route is None or not route.is_up():
                refused = refused | {choice.name}
                continue
            return choice.name, refused

    async def _on_route(
        self, run: _BatchRun, route: Route, entries: list[tuple[Claimed, frozenset[str]]],
    ) -> list[tuple[Claimed, frozenset[str]]]:
        """Send ``entries`` on one route; returns those it refused (for the next route)."""
        passed_on: list[tuple[Claimed, frozenset[str]]] = []
        sending: list[_Sending] = []
        items: list[Outgoing] = []
        for message, refused in entries:
            try:
                encoded = encode_for(message, route.concat)
            except CodecError as exc:
                run.conclude(message, PermanentFailure(message.id, None, f"cannot encode: {exc}"))
                continue
            seqs = message.parts
            if len(encoded.parts) != message.total_parts:
                try:
                    await self._box.run(Outbox.reshape, message.id, len(encoded.parts))
                except OutboxError:
                    # Some parts already went out split another way: this route cannot go on.
                    passed_on.append((message, refused | {route.name}))
                    continue
                seqs = tuple(range(len(encoded.parts)))
            sending.append(_Sending(message, refused, seqs))
            items.append(Outgoing(message.id, message.to, message.sender, encoded, seqs))
        if not items:
            return passed_on
        track = self.track_submit_times
        name = route.name
        # Claims come lane by lane: a transactional message leads its batch, and the batch
        # goes ahead of the bulk already waiting for the route's window.
        urgent = sending[0].message.lane is Lane.TRANSACTIONAL

        def on_part(index: int, result: PartResult) -> None:
            state = sending[index]
            if state.done:
                return  # after the guard below gave up on it
            state.results.append(result)
            if result.status is PartStatus.ACCEPTED and result.carrier_id is not None:
                message = state.message
                self._accepted += 1
                if track and message.lane is Lane.TRANSACTIONAL \
                        and message.id not in self.submit_times:
                    self.submit_times[message.id] = time.monotonic()
                # Queued now: before our receive loop can hand us the report that names it.
                self._put(Submitted(message.id, result.seq, name, result.carrier_id))
            if len(state.results) >= len(state.seqs):
                self._settle(run, route, state, passed_on)

        try:
            # A guard, not the protocol's timeout (the drivers have their own): a send that
            # never finishes must not hold its messages in `sending` until the next restart.
            async with asyncio.timeout(self.settings.send_timeout_s):
                await route.send_many(items, on_part, first=urgent)
        except TimeoutError:
            log.warning("dispatch: %s gave no outcome for some of %d messages in %g s",
                        name, len(items), self.settings.send_timeout_s)
        except Exception:
            log.exception("dispatch: %s failed a batch of %d unexpectedly", name, len(items))
        for state in sending:
            if not state.done:
                # Every part needs an outcome, or the message would stay `sending` until
                # the next restart: one without an answer is unknown.
                answered = {r.seq for r in state.results}
                state.results.extend(PartResult(seq, PartStatus.UNKNOWN, text="no outcome")
                                     for seq in state.seqs if seq not in answered)
                self._settle(run, route, state, passed_on)
        return passed_on

    def _settle(self, run: _BatchRun, route: Route, state: _Sending,
                passed_on: list[tuple[Claimed, frozenset[str]]]) -> None:
        """Every part of a message has its result on ``route``: conclude it, or pass it on."""
        state.done = True
        message, results = state.message, state.results
        if len(results) == 1 and results[0].status is PartStatus.ACCEPTED:
            # The common case, as verdict() would decide it: reports decide from here on.
            if self._unknowns:
                self._unknowns.pop(message.id, None)
            run.conclude(message, None)
            return
        count = self._unknowns.get(message.id, 0)
        outcome = verdict(message, route.name, results, count, self.settings.unknown_resends)
        if outcome is None:
            if any(r.status is not PartStatus.ACCEPTED for r in results):
                passed_on.append((message, state.refused | {route.name}))  # refused: next route
                return
            if count:
                del self._unknowns[message.id]
        elif any(r.status is PartStatus.UNKNOWN for r in results):
            self._unknowns[message.id] = count + 1
        run.conclude(message, outcome)


class _Sending:
    """A message on one route: its parts' results as they come."""

    __slots__ = ("done", "message", "refused", "results", "seqs")

    def __init__(self, message: Claimed, refused: frozenset[str], seqs: tuple[int, ...]) -> None:
        self.message = message
        self.refused = refused
        self.seqs = seqs
        self.results: list[PartResult] = []
        self.done = False


class _BatchRun:
    """A claimed batch's messages not concluded yet: each is concluded exactly once."""

    __slots__ = ("dispatcher", "open")

    def __init__(self, dispatcher: Dispatcher, batch: list[Claimed]) -> None:
        self.dispatcher = dispatcher
        self.open = {m.id: m for m in batch}

    def conclude(self, message: Claimed, outcome: Outcome | None) -> None:
        if self.open.pop(message.id, None) is not None:
            self.dispatcher._conclude(message, outcome)
