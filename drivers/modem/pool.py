"""A pool of modems serving one route.

Each modem runs one worker that takes the next job from the shared queue only when its own
limits allow (parts per minute, parts per day, random gap) and it is ready, so the pool's
throughput is the sum of its modems'. By default a job is a whole message (every part on one
modem: parts from different SIMs carry different sender numbers and a handset cannot join
them); with ``allow_split`` each part is its own job.

A part that fails because of its modem (link-level: hang, unplug; or a SIM/network-side error
such as barring or congestion) goes back to the front of the queue for another modem -- the
whole message again unless splitting is allowed. Errors about the message itself (unassigned
number, our PDU is wrong) fail it at once. ``statistics()`` reports per modem.

A part whose AT+CMGS wrote the PDU and got no answer (timeout, unplug mid-send) may have been
sent: the pool does not resend it on another modem by default (a duplicate on the handset).
The message ends with :attr:`MessageResult.unknown` naming that part and
:class:`~drivers.modem.errors.SendOutcomeUnknown` as its error; the caller decides. An operator
who prefers a duplicate to a delay sets ``resend_unknown=True``: such a part is then moved like
any other failed part.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from drivers.modem.client import (
    ModemClient,
    ModemState,
    ModemStatistics,
    OnMessage,
    OnReport,
    PortRegistry,
    default_ports,
    ignore_message,
    ignore_report,
)
from drivers.modem.config import ModemConfig
from drivers.modem.errors import (
    CmsError,
    Disposition,
    ModemDown,
    ModemError,
    SendOutcomeUnknown,
)
from drivers.modem.limits import ModemLimits
from drivers.modem.pdu import SubmitPdu, encode_submit_part
from gateway.codec import EncodedMessage
from gateway.codec.errors import CodecError, SmsgateError

log = logging.getLogger("smsgate.modem.pool")

# +CMS codes that are about the recipient, not the SIM or network: another modem won't help
# (TS 24.011 Annex E: 1 unassigned number, 21 SM transfer rejected, 28/30 unknown subscriber,
# 29 facility rejected; TS 23.040 §9.2.3.22: 195 invalid SME address, 196 SME barred).
_RECIPIENT_CODES = frozenset({1, 21, 28, 29, 30, 195, 196})


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    id: str
    destination: str
    message: EncodedMessage
    status_report: bool = True


@dataclass(frozen=True, slots=True)
class PartSent:
    seq: int
    modem: str
    message_reference: int  # TP-MR, to match status reports (with the recipient)
    at: float  # clock() when +CMGS answered
    released: float = 0.0  # clock() the modem's limits released the part at (sent from then)


@dataclass(frozen=True, slots=True)
class MessageResult:
    id: str
    # Every part when ok; empty when failed; when the outcome is unknown, the parts confirmed
    # sent before it (their TP-MRs match status reports).
    parts: tuple[PartSent, ...]
    error: SmsgateError | None = None  # ModemError, or CodecError for an unusable destination
    attempts: int = 1
    # Parts (seq, 1-based) whose AT+CMGS got no answer after the PDU went out: possibly sent.
    # Set only with error = SendOutcomeUnknown; parts in neither list were not sent.
    unknown: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def outcome_unknown(self) -> bool:
        """Some part may have been sent without confirmation: resending risks a duplicate."""
        return bool(self.unknown)


@dataclass(frozen=True, slots=True)
class PoolModemStatistics:
    modem: ModemStatistics
    sent_today: int
    parts_sent: int
    failovers: int
    unknown: int = 0  # parts whose AT+CMGS got no answer after the PDU went out


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    modems: tuple[PoolModemStatistics, ...]
    queued_jobs: int
    messages_done: int
    messages_failed: int
    ready_modems: int
    messages_unknown: int = 0  # ended with an unknown outcome (not counted in messages_failed)


@dataclass(slots=True)
class _Job:
    """A whole message (or one part of it when splitting is allowed)."""

    out: OutboundMessage
    seqs: list[int]  # parts still to send, in order
    result: _Result
    excluded: set[str] = field(default_factory=set)
    attempts: int = 0


@dataclass(eq=False, slots=True)
class _Result:
    id: str
    future: asyncio.Future[MessageResult]
    total: int
    sent: dict[int, PartSent] = field(default_factory=dict)
    attempts: int = 0
    failed: bool = False


@dataclass(slots=True)
class _Slot:
    client: ModemClient
    limits: ModemLimits
    parts_sent: int = 0
    failovers: int = 0
    unknown: int = 0


class ModemPool:
    def __init__(
        self,
        configs: Sequence[ModemConfig],
        *,
        allow_split: bool = False,
        max_attempts: int = 3,
        resend_unknown: bool = False,
        on_message: OnMessage = ignore_message,
        on_report: OnReport = ignore_report,
        discover: Callable[[], Iterable[str]] = default_ports,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        if not configs:
            raise ValueError("a modem pool needs at least one modem")
        self.allow_split = allow_split
        self.max_attempts = max_attempts
        self.resend_unknown = resend_unknown  # move a possibly-sent part to another modem
        self._clock = clock
        self._wall = wall
        rng = rng or random.Random()
        registry = PortRegistry()
        self._wakeup = asyncio.Event()
        self._slots = [
            _Slot(
                ModemClient(
                    c, on_message=on_message, on_report=on_report, discover=discover,
                    registry=registry, on_state=self._state_changed,
                ),
                ModemLimits.from_config(c, clock(), rng),
            )
            for c in configs
        ]
        self._jobs: deque[_Job] = deque()
        self._outstanding: set[_Result] = set()
        self._done = 0
        self._failed = 0
        self._unknown = 0
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def clients(self) -> list[ModemClient]:
        return [s.client for s in self._slots]

    async def __aenter__(self) -> ModemPool:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        for slot in self._slots:
            await slot.client.__aenter__()
            self._tasks.append(
                self._tg.create_task(self._worker(slot), name=f"pool-{slot.client.name}")
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        # Nobody waits forever: queued and in-flight messages end with an error the caller
        # can act on (the outbox sends them again after a restart).
        closed = ModemDown("modem pool closed")
        self.fail_queued(closed)
        for result in list(self._outstanding):
            if not result.future.done():
                result.future.set_result(MessageResult(result.id, (), closed, result.attempts))
        for slot in self._slots:
            await slot.client.__aexit__(None, None, None)
        assert self._tg is not None
        await self._tg.__aexit__(None, None, None)

    # --- submitting -----------------------------------------------------------------------

    def submit_nowait(self, out: OutboundMessage) -> asyncio.Future[MessageResult]:
        """Queue a message; the future resolves when every part was sent or it failed."""
        parts = len(out.message.parts)
        result = _Result(out.id, asyncio.get_running_loop().create_future(), parts)
        self._outstanding.add(result)
        result.future.add_done_callback(lambda _: self._outstanding.discard(result))
        seqs = list(range(1, parts + 1))
        if self.allow_split:
            for seq in seqs:
                self._jobs.append(_Job(out, [seq], result))
        else:
            self._jobs.append(_Job(out, seqs, result))
        self._notify()
        return result.future

    async def send(self, out: OutboundMessage) -> MessageResult:
        return await self.submit_nowait(out)

    @property
    def ready(self) -> int:
        """How many modems can take work right now."""
        return sum(1 for s in self._slots if s.client.state is ModemState.READY)

    async def wait_available(self) -> None:
        """Wait until at least one modem is ready."""
        while not self.ready:
            await self._wakeup.wait()

    def fail_queued(self, error: SmsgateError) -> int:
        """Resolve every message not yet started with ``error`` (e.g. ModemDown when no modem
        is left, so the dispatcher can try the route's next way out); return how many."""
        failed = 0
        while self._jobs:
            job = self._jobs.popleft()
            if not job.result.future.done():
                failed += 1
            self._fail(job, error)
        return failed

    def _notify(self) -> None:
        # Wake every idle worker; each checks the queue again (no await between its check
        # and its wait, so no wake-up is ever missed).
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def _state_changed(self, client: ModemClient) -> None:
        self._notify()  # a modem came back: its worker may take jobs others could not

    # --- workers --------------------------------------------------------------------------

    def _take_job(self, name: str) -> _Job | None:
        for job in self._jobs:
            if name not in job.excluded or len(job.excluded) >= len(self._slots):
                self._jobs.remove(job)
                return job
        return None

    async def _worker(self, slot: _Slot) -> None:
        client = slot.client
        while True:
            await client.wait_state(ModemState.READY)
            wait = slot.limits.wait_before(self._clock(), self._wall())
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            job = self._take_job(client.name)
            if job is None:
                await self._wakeup.wait()
                continue
            parts = len(job.seqs)
            if limit := slot.limits.daily.limit:
                parts = min(parts, limit)  # a message longer than the cap still goes out
            blocked = slot.limits.daily.seconds_blocked(self._wall(), parts)
            if blocked > 0:  # the whole message does not fit today: leave it to others
                self._requeue(job, slot, front=True, exclude=False)
                await asyncio.sleep(min(blocked, 60.0))
                continue
            await self._run_job(slot, job)

    async def _run_job(self, slot: _Slot, job: _Job) -> None:
        client = slot.client
        job.attempts += 1
        job.result.attempts += 1
        out = job.out
        while job.seqs:
            seq = job.seqs[0]
            now = self._clock()
            wait = slot.limits.take(now, self._wall())
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                pdu = self._pdu(out, seq, client.config.smsc)
            except CodecError as exc:  # e.g. a destination that is not a phone number
                self._fail(job, exc)
                return
            try:
                mr = await client.send(pdu, more=len(job.seqs) > 1)
            except SendOutcomeUnknown as exc:
                self._unknown_part(slot, job, seq, exc)
                return
            except ModemError as exc:
                if exc.disposition is Disposition.DUPLICATE:
                    mr = -1  # TP-RD: the SC already had this part, so it went out before
                else:
                    self._failed_part(slot, job, exc)
                    return
            slot.parts_sent += 1
            job.result.sent[seq] = PartSent(seq, client.name, mr, self._clock(), now + wait)
            job.seqs.pop(0)
        self._maybe_finish(job.result, out)

    @staticmethod
    def _pdu(out: OutboundMessage, seq: int, smsc: str | None) -> SubmitPdu:
        part = out.message.parts[seq - 1]
        return encode_submit_part(
            out.message, part, out.destination, smsc=smsc, status_report=out.status_report
        )

    def _failed_part(self, slot: _Slot, job: _Job, exc: ModemError) -> None:
        disposition = exc.disposition
        recipient_fault = isinstance(exc, CmsError) and int(exc.code) in _RECIPIENT_CODES
        if recipient_fault or disposition is Disposition.INVALID_PDU:
            self._fail(job, exc)
            return
        if job.result.attempts >= self.max_attempts:
            self._fail(job, exc)
            return
        slot.failovers += 1
        log.info("pool: %s failed on %s (%s); moving it", job.out.id, slot.client.name, exc)
        self._requeue(job, slot, front=True, exclude=True)

    def _unknown_part(self, slot: _Slot, job: _Job, seq: int, exc: SendOutcomeUnknown) -> None:
        slot.unknown += 1
        if self.resend_unknown and job.result.attempts < self.max_attempts:
            slot.failovers += 1
            log.warning("pool: %s part %d: outcome unknown on %s; resending elsewhere "
                        "(resend_unknown)", job.out.id, seq, slot.client.name)
            self._requeue(job, slot, front=True, exclude=True)
            return
        result = job.result
        if result.failed or result.future.done():
            return
        result.failed = True
        self._unknown += 1
        parts = tuple(result.sent[s] for s in sorted(result.sent))
        result.future.set_result(
            MessageResult(job.out.id, parts, exc, result.attempts, unknown=(seq,))
        )
        self._drop_siblings(result)

    def _requeue(self, job: _Job, slot: _Slot, *, front: bool, exclude: bool) -> None:
        if exclude:
            job.excluded.add(slot.client.name)
        if not self.allow_split:
            # All parts on one modem: the next modem sends the whole message again.
            for seq in list(job.result.sent):
                del job.result.sent[seq]
            job.seqs = list(range(1, job.result.total + 1))
        if front:
            self._jobs.appendleft(job)
        else:
            self._jobs.append(job)
        self._notify()

    def _fail(self, job: _Job, exc: SmsgateError) -> None:
        result = job.result
        if result.failed or result.future.done():
            return
        result.failed = True
        self._failed += 1
        result.future.set_result(MessageResult(job.out.id, (), exc, result.attempts))
        self._drop_siblings(result)

    def _drop_siblings(self, result: _Result) -> None:
        """Drop the queued sibling jobs (split mode) of a message that has its result."""
        for job in [j for j in self._jobs if j.result is result]:
            self._jobs.remove(job)

    def _maybe_finish(self, result: _Result, out: OutboundMessage) -> None:
        if result.failed or result.future.done() or len(result.sent) < result.total:
            return
        self._done += 1
        parts = tuple(result.sent[s] for s in sorted(result.sent))
        result.future.set_result(MessageResult(out.id, parts, None, result.attempts))

    # --- statistics -----------------------------------------------------------------------

    def statistics(self) -> PoolStatistics:
        wall = self._wall()
        return PoolStatistics(
            tuple(
                PoolModemStatistics(
                    s.client.statistics(), s.limits.daily.sent_today(wall), s.parts_sent,
                    s.failovers, s.unknown,
                )
                for s in self._slots
            ),
            len(self._jobs),
            self._done,
            self._failed,
            self.ready,
            self._unknown,
        )
