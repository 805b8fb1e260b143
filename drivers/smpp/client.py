"""The thin asyncio ESME: moves bytes between sockets and the pure ``Session``.

``async with SmppClient(config, handler=...) as client:`` owns every loop of the bind (per
connection: reconnect, receive, timers, inbound handler) in one TaskGroup. ``submit()`` returns
an outcome and never resends on its own after a request went out unanswered: a timeout or a
dropped link is ``Unknown`` and the caller decides. Throttling statuses (ESME_RTHROTTLED,
ESME_RMSGQFUL) are the exception: the SMSC told us it did not take the message, so the driver
slows the bind down and resubmits it itself.

``submit_many()`` is the same for a list of parts at the cost of one: the batch queues at the
client and a pump writes its requests into the window as responses free slots, outcomes going
to a callback from the receive path (no task or future per part).

Inbound deliver_sm are handed to ``handler`` (a receipt or an assembled MO message; receipts
several at once, MO one at a time, in order: ``handover.py``) and each deliver_sm_resp is
written only after its handler returned; a handler that raises gets the
SMSC a temporary error (ESME_RX_T_APPN) so the SMSC delivers the PDU again. A part of a
multipart MO that does not complete its message is handed over to the ``mo_store`` instead
(``mo_store.MoPartStore``; in memory unless the caller passes a durable one): its
deliver_sm_resp is written after ``store.add`` returned.

``submit()`` waits for a bound link, at most ``wait_bound_timeout`` seconds (per call or from
the config; None waits as long as it takes): then it returns ``Unavailable``, a link-level
``Rejected`` (nothing was written, so the caller may send the message elsewhere at once).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from types import MappingProxyType, TracebackType

from drivers.smpp.config import SmppConfig
from drivers.smpp.errors import (
    BindRefused,
    CommandStatus,
    LinkDown,
    LocalProtocolError,
    MalformedPdu,
    NotBound,
    StatusClass,
    classify,
    status_name,
)
from drivers.smpp.handover import Handler, Handover, InboundEvent, ReceiptsHandler
from drivers.smpp.link import (
    Batch,
    BatchSlot,
    Link,
    LinkProtocol,
    OnOutcome,
    Retry,
    Waiter,
    Window,
    resolve,
)
from drivers.smpp.mo_store import InMemoryMoStore, MoPartStore
from drivers.smpp.pdu import (
    Bind,
    BindType,
    CommandId,
    DeliverSm,
    HeaderOnly,
    Pdu,
    SubmitSm,
    SubmitSmResp,
)
from drivers.smpp.session import (
    PeerUnbound,
    Request,
    Response,
    Role,
    Session,
    Violation,
)
from drivers.smpp.submit import (
    Accepted,
    ClientStatistics,
    Rejected,
    SubmitOutcome,
    SubmitRequest,
    Unavailable,
    Unknown,
    submit_requests,
)
from drivers.smpp.throttle import AdaptiveRate, RateMeter, reconnect_delay

__all__ = [
    "Accepted",
    "ClientStatistics",
    "Handler",
    "InboundEvent",
    "MoPartStore",
    "ReceiptsHandler",
    "Rejected",
    "SmppClient",
    "SubmitOutcome",
    "SubmitRequest",
    "Unavailable",
    "Unknown",
    "submit_requests",
]

log = logging.getLogger(__name__)

_LINK_RETRIES = 3  # resubmits after ESME_RINVBNDSTS (the SMSC did not take the message)
_BIND_COMMANDS = frozenset(
    {CommandId.BIND_TRANSMITTER, CommandId.BIND_RECEIVER, CommandId.BIND_TRANSCEIVER}
)


class _FromConfig(Enum):
    """``submit(wait_bound_timeout=...)`` not given: use the config's value."""

    VALUE = 0


class SmppClient:
    def __init__(
        self,
        config: SmppConfig,
        handler: Handler | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        mo_store: MoPartStore | None = None,
        receipts_handler: ReceiptsHandler | None = None,
    ) -> None:
        """``handler`` gets every inbound event; with ``receipts_handler``, delivery receipts
        go to that instead, as lists of those read together (one call and one wait for many;
        each deliver_sm is still answered only after the call returned)."""
        self.config = config
        self._clock = clock
        self._rng = rng or random.Random()
        self._links = [Link(kind, config.inbound_queue) for kind in config.bind.bind_types()]
        tx = [lk for lk in self._links if lk.kind is not BindType.RECEIVER]
        self._tx: Link | None = tx[0] if tx else None
        self._rate = AdaptiveRate(
            config.throughput,
            now=clock(),
            recovery=config.throttle_recovery,
            pause=config.throttle_pause,
        )
        self._handover = Handover(
            config, handler, mo_store or InMemoryMoStore(config.mo_timeout, clock=clock), clock,
            receipts_handler,
        )
        self._meter = RateMeter()
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._submitted = 0
        self._accepted = 0
        self._rejected = 0
        self._unknown = 0
        self._unavailable = 0
        self._reconnects = 0
        self._violations = 0
        self._errors: Counter[str] = Counter()
        self._last_error: str | None = None
        # submit_many batches with requests to write, in turn; see _pump
        self._batches: collections.deque[Batch] = collections.deque()
        self._pump_timer: asyncio.TimerHandle | None = None
        self._reserved: Window | None = None  # a slot taken for the rate limiter's next turn

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> SmppClient:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        for link in self._links:
            name = f"smpp-{self.config.name}-{link.kind}"
            self._tasks.append(self._tg.create_task(self._run_link(link), name=name))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        self._wake_batches()
        try:
            await self._unbind_all()
        finally:
            for task in self._tasks:
                task.cancel()
            assert self._tg is not None
            # Our loops were cancelled on purpose; the caller's own exception (if any)
            # propagates as itself rather than wrapped in an ExceptionGroup.
            await self._tg.__aexit__(None, None, None)

    async def wait_bound(self, timeout: float | None = None) -> None:
        """Wait until every connection of the bind is bound."""
        async with asyncio.timeout(timeout):
            for link in self._links:
                await link.bound.wait()

    @property
    def bound(self) -> bool:
        return all(lk.bound.is_set() for lk in self._links)

    @property
    def last_error(self) -> str | None:
        return self._last_error

    # --- connection loop ---------------------------------------------------------------------

    async def _run_link(self, link: Link) -> None:
        attempt = 0
        cfg = self.config
        while not self._closing:
            refused: BindRefused | None = None
            reason = "closed"
            try:
                await self._connect(link)
                await self._bind(link)
                attempt = 0
                self._last_error = None
                reason = await self._serve(link)
                if not self._closing:  # after our own unbind the SMSC closing is expected
                    self._last_error = reason
                    log.warning("smpp %s (%s): link down: %s", cfg.name, link.kind, reason)
            except BindRefused as exc:
                refused = exc
                reason = str(exc)
                self._errors[status_name(exc.status)] += 1
                if exc.credentials and self._last_error != reason:
                    log.error("smpp %s: %s: check system_id and password", cfg.name, exc)
                elif not exc.credentials:
                    log.warning("smpp %s: %s", cfg.name, exc)
                self._last_error = reason
            except (OSError, TimeoutError, LinkDown, MalformedPdu) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self._last_error = reason
                log.warning("smpp %s (%s): link down: %s", cfg.name, link.kind, reason)
            finally:
                self._drop(link, reason)
            if self._closing:
                return
            self._reconnects += 1
            delay = reconnect_delay(attempt, cfg.reconnect_min, cfg.reconnect_max, self._rng)
            attempt += 1
            if refused is not None and refused.credentials:
                delay = max(delay, cfg.credentials_retry)
            await asyncio.sleep(delay)

    async def _connect(self, link: Link) -> None:
        cfg = self.config
        ctx = cfg.ssl_context()
        server_hostname = (cfg.tls_server_name or cfg.host) if ctx is not None else None
        # The session exists before the first byte can arrive.
        link.session = Session(Role.ESME, window=cfg.window, response_timeout=cfg.response_timeout)
        # A new window with the new session, before any byte can arrive: the bind_resp is read
        # (and the pump may run) before _bind resumes, and slots of the old window belong to
        # the old session's requests.
        link.window = Window(cfg.window)
        link.dead = asyncio.Event()
        link.writable.set()
        link.reading_paused = False
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(cfg.connect_timeout):
            await loop.create_connection(
                lambda: LinkProtocol(self._on_data, link),
                cfg.host,
                cfg.port,
                ssl=ctx,
                server_hostname=server_hostname,
            )

    async def _bind(self, link: Link) -> None:
        cfg = self.config
        session = link.session
        assert session is not None and link.transport is not None
        bind = Bind(
            link.kind,
            cfg.system_id,
            cfg.password,
            cfg.system_type,
            0x34,
            cfg.addr_ton,
            cfg.addr_npi,
            cfg.address_range,
        )
        fut: asyncio.Future[Pdu | Unknown] = asyncio.get_running_loop().create_future()
        link.bind_future = fut
        link.transport.write(session.send(bind, self._clock(), fut))
        try:
            async with asyncio.timeout(cfg.link_timeout):
                response = await fut
        finally:
            link.bind_future = None
        if isinstance(response, Unknown):
            raise LinkDown(response.reason)
        if response.status:
            raise BindRefused(response.status, cfg.system_id)
        if not session.bound:
            raise LinkDown("bind not answered with a bind response")
        link.last_rx = self._clock()
        link.generation += 1
        link.on_writable = self._pump
        link.bound.set()
        self._pump()
        log.info("smpp %s: bound as %s (%s)", cfg.name, link.kind, cfg.system_id)

    async def _serve(self, link: Link) -> str:
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self._guard(link, self._timer_loop(link))),
                tg.create_task(self._guard(link, self._handover.run(link))),
            ]
            await link.dead.wait()
            for task in tasks:
                task.cancel()
        return link.dead_reason

    async def _guard(self, link: Link, loop: Awaitable[None]) -> None:
        """Run one of the link's loops; any failure kills the link (and only the link)."""
        try:
            await loop
        except (OSError, LinkDown, MalformedPdu) as exc:
            link.die(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug must not take the whole client down
            log.exception("smpp %s: loop failed", self.config.name)
            link.die(f"internal error: {exc!r}")

    def _drop(self, link: Link, reason: str) -> None:
        link.bound.clear()
        link.die(reason)
        self._wake_batches()
        if link.session is not None:
            lost = Unknown(f"link lost: {reason}")
            for request in link.session.connection_lost():
                resolve(request.context, lost)
        while not link.inbound.empty():
            # Unanswered deliver_sm: the SMSC delivers them again after it rebinds.
            link.inbound.get_nowait()
        if link.transport is not None:
            link.transport.abort()
            link.transport = None

    async def _unbind_all(self) -> None:
        """Unbind every bound connection (after in-flight submits drained), then wait briefly
        for unbind_resp: carriers refuse the next bind with ESME_RALYBND otherwise (vumi #624)."""
        cfg = self.config
        waits: list[asyncio.Future[object]] = []
        loop = asyncio.get_running_loop()
        in_flight: list[asyncio.Future[Pdu | Unknown] | asyncio.Future[None]] = []
        for lk in self._links:
            for o in lk.session.outstanding() if lk.session is not None else ():
                if isinstance(o.context, Waiter):
                    in_flight.append(o.context.future)
                elif isinstance(o.context, BatchSlot):
                    o.context.drained = loop.create_future()
                    in_flight.append(o.context.drained)
        if in_flight:
            await asyncio.wait(in_flight, timeout=cfg.unbind_timeout)
        for link in self._links:
            s = link.session
            if s is None or not s.bound or link.dead.is_set():
                continue
            fut: asyncio.Future[object] = loop.create_future()
            try:
                link.write(s.send(HeaderOnly(CommandId.UNBIND), self._clock(), fut))
            except LocalProtocolError:
                continue
            waits.append(fut)
        if waits:
            try:
                async with asyncio.timeout(cfg.unbind_timeout):
                    await asyncio.gather(*waits)
            except TimeoutError:
                log.info("smpp %s: no unbind_resp within %ss", cfg.name, cfg.unbind_timeout)

    # --- the link's loops ----------------------------------------------------------------------

    def _on_data(self, link: Link, data: bytes) -> None:
        """Bytes from the SMSC (called by the protocol): resolve waiters, queue deliver_sm."""
        session = link.session
        if session is None or link.dead.is_set():
            return
        now = self._clock()
        link.last_rx = now
        for event in session.receive_data(data, now):
            if type(event) is Response:
                resolve(event.request.context, event.pdu)
            elif isinstance(event, Request) and isinstance(event.pdu, DeliverSm):
                link.inbound.put_nowait(event.pdu)
                if link.inbound.qsize() >= link.inbound_limit and link.transport is not None:
                    link.transport.pause_reading()
                    link.reading_paused = True
            elif isinstance(event, Violation):
                self._on_violation(link, event)
            elif isinstance(event, PeerUnbound):
                link.write(session.data_to_send())
                link.die("the SMSC unbound")
        link.write(session.data_to_send())
        if self._batches:
            self._pump()  # into the slots the responses just freed

    def _on_violation(self, link: Link, event: Violation) -> None:
        self._violations += 1
        err = event.error
        frame = getattr(err, "frame_hex", "")
        log.warning(
            "smpp %s: protocol error (%s fault): %s %s",
            self.config.name,
            err.fault.value,
            err,
            frame,
        )
        if event.fatal:
            assert link.session is not None
            link.write(link.session.data_to_send())
            link.die(f"protocol error: {err}")

    async def _timer_loop(self, link: Link) -> None:
        cfg = self.config
        assert link.session is not None
        session = link.session
        loop = asyncio.get_running_loop()
        probe: asyncio.Future[object] | None = None
        probe_sent = 0.0
        while True:
            now = self._clock()
            for request in session.expire(now):
                resolve(request.context, Unknown(f"no response within {cfg.response_timeout}s"))
            if self._batches:
                self._pump()
            if probe is not None and probe.done():
                probe = None
            if probe is not None and now - probe_sent >= cfg.link_timeout:
                link.die(f"no answer to enquire_link within {cfg.link_timeout}s")
                return
            idle = now - link.last_rx
            if probe is None and idle >= cfg.enquire_link_interval:
                probe = loop.create_future()
                probe_sent = now
                link.write(session.send(HeaderOnly(CommandId.ENQUIRE_LINK), now, probe))
            mo_delay = await self._handover.release_due(link)
            if probe is None:
                wake = [now + cfg.enquire_link_interval - idle]
            else:
                wake = [probe_sent + cfg.link_timeout]
            deadline = session.next_deadline()
            if deadline is not None:
                wake.append(deadline)
            if mo_delay is not None:
                wake.append(now + mo_delay)
            # New submits do not wake this loop, so never sleep past a quarter of a timeout.
            cap = min(1.0, cfg.response_timeout / 4, cfg.link_timeout / 4)
            await asyncio.sleep(min(cap, max(0.001, min(wake) - now)))

    # --- submitting ----------------------------------------------------------------------------

    async def _transmitter(self, deadline: float | None = None) -> Link | None:
        """The bound transmitting link; None if it is not bound by ``deadline`` (loop time)."""
        link = self._tx
        if link is not None and link.usable:
            return link
        if link is None:
            raise NotBound(f"smpp {self.config.name} is a receiver-only bind")
        while not link.usable:
            if self._closing:
                raise NotBound(f"smpp {self.config.name} is closing")
            if link.bound.is_set():
                # Bound but not transmitting: the session is unbinding because we are closing.
                raise NotBound(f"smpp {self.config.name} is unbinding")
            try:
                async with asyncio.timeout_at(deadline):
                    await link.bound.wait()
            except TimeoutError:
                return None
        return link

    async def _send_once(self, link: Link, pdu: SubmitSm) -> Pdu | Unknown | None:
        """Write one submit_sm in a window slot and wait for its fate; None if not written.

        The slot is released when the response (or its timeout, or the link's loss) resolves
        the request, not when this coroutine stops waiting: a caller that gives up early must
        not let a new submit overfill the session's window.
        """
        generation, window = link.generation, link.window
        await window.acquire()
        sent = False
        try:
            if not link.usable or link.generation != generation:
                return None
            wait = self._rate.wait(self._clock())
            if wait > 0:
                await asyncio.sleep(wait)
                if not link.usable or link.generation != generation:
                    return None
            session = link.session
            assert session is not None
            fut: asyncio.Future[Pdu | Unknown] = asyncio.get_running_loop().create_future()
            raw = session.send(pdu, self._clock(), Waiter(fut, window))
            link.write(raw, alone=session.window_in_use == 1)
            sent = True
        finally:
            if not sent:
                window.release()
        self._submitted += 1
        if not link.writable.is_set():
            await link.writable.wait()  # the transport is over its high-water mark
        return await fut

    async def submit(
        self,
        request: SubmitRequest,
        *,
        wait_bound_timeout: float | _FromConfig | None = _FromConfig.VALUE,
    ) -> SubmitOutcome:
        """Submit one part. Waits for a bound link, a window slot and the rate limit.

        ``wait_bound_timeout`` (default: the config's): seconds after the call within which
        a bound link must be there whenever the submit needs one (also after a link lost
        before the PDU was written); past it, ``Unavailable``. None waits as long as it takes.
        """
        if isinstance(wait_bound_timeout, _FromConfig):
            wait_bound_timeout = self.config.wait_bound_timeout
        deadline = None
        if wait_bound_timeout is not None:
            deadline = asyncio.get_running_loop().time() + wait_bound_timeout
        pdu = request.to_pdu()
        throttled = 0
        link_errors = 0
        while True:
            link = await self._transmitter(deadline)
            if link is None:
                self._unavailable += 1
                reason = f"no bound link within {wait_bound_timeout}s"
                if self._last_error:
                    reason += f" (last error: {self._last_error})"
                return Unavailable(CommandStatus.ESME_RINVBNDSTS, StatusClass.LINK, reason)
            result = await self._send_once(link, pdu)
            if result is None:
                continue  # the link went away before the PDU was written: nothing was sent
            outcome = self._judge(link, result, throttled, link_errors)
            if outcome is Retry.THROTTLED:
                throttled += 1
            elif outcome is Retry.REBIND:
                link_errors += 1
            else:
                return outcome

    def _judge(
        self, link: Link, result: Pdu | Unknown, throttled: int, link_errors: int
    ) -> SubmitOutcome | Retry:
        """A submit_sm's response as its outcome, or why it is submitted again: a throttle
        slows the bind down (the SMSC took nothing); ESME_RINVBNDSTS drops the link to bind
        again, up to ``_LINK_RETRIES`` times. Shared by ``submit()`` and ``submit_many()``."""
        if isinstance(result, Unknown):
            self._unknown += 1
            return result
        status = result.status
        now = self._clock()
        if status == 0 and isinstance(result, SubmitSmResp):
            self._accepted += 1
            self._meter.add(now)
            raw = result.message_id
            return Accepted(self.config.id_convention.from_submit_resp(raw), raw, throttled)
        self._errors[status_name(status)] += 1
        kind = classify(status) if status else StatusClass.PERMANENT
        if kind is StatusClass.THROTTLE:
            self._rate.on_throttle(now, self._meter.rate(now, 1.0))
            return Retry.THROTTLED
        if kind is StatusClass.LINK and link_errors < _LINK_RETRIES:
            # The SMSC thinks we are not bound: rebind, then resubmit (it took nothing).
            link.die(f"submit refused with {status_name(status)}")
            return Retry.REBIND
        self._rejected += 1
        return Rejected(status, kind)

    async def submit_many(
        self,
        requests: Sequence[SubmitRequest] | Sequence[SubmitSm],
        on_outcome: OnOutcome,
        *,
        wait_bound_timeout: float | _FromConfig | None = _FromConfig.VALUE,
        first: bool = False,
    ) -> None:
        """Submit every request, as many at a time as the window and the rate limit allow.

        ``requests`` may also be ready ``SubmitSm`` PDUs (what a caller that builds them
        directly saves: one object per part). ``on_outcome(i, outcome)`` is called exactly
        once for ``requests[i]``, as soon as its
        outcome is known -- from the receive path, in the order responses arrive -- and the
        call returns when every request has one. The outcomes and rules are ``submit()``'s
        (throttles and bind-state refusals resubmitted, ``Unavailable`` when no bound link
        came within ``wait_bound_timeout``, ``Unknown`` never resent); the difference is the
        cost. The batch joins the client's queue and the pump writes its requests into the
        window as responses free slots, in the same loop iteration that read them: no task,
        future or coroutine resumption per request. Batches go out in the order they came
        (``first``: ahead of those queued, for urgent traffic); ``submit()`` callers waiting
        for a slot get it before the pump. Cancelled, the batch stops writing and reports
        nothing more; what it wrote keeps its window slots until answered.
        """
        if isinstance(wait_bound_timeout, _FromConfig):
            wait_bound_timeout = self.config.wait_bound_timeout
        deadline = None
        if wait_bound_timeout is not None:
            deadline = asyncio.get_running_loop().time() + wait_bound_timeout
        pdus = [r if isinstance(r, SubmitSm) else r.to_pdu() for r in requests]
        batch = Batch(pdus, self._judge, on_outcome, self._batches)
        batch.enqueue(first)
        try:
            while batch.left:
                tx = self._tx
                if batch.todo and (self._closing or tx is None or not tx.usable):
                    try:
                        link = await self._transmitter(deadline)
                    except NotBound as exc:
                        self._unavailable_all(batch, str(exc))
                        continue
                    if link is None:
                        reason = f"no bound link within {wait_bound_timeout}s"
                        if self._last_error:
                            reason += f" (last error: {self._last_error})"
                        self._unavailable_all(batch, reason)
                        continue
                if batch.todo:
                    batch.enqueue(first)
                    self._pump()
                if batch.left:
                    await batch.wait()
        finally:
            batch.closed = True  # the pump drops it from the queue

    def _unavailable_all(self, batch: Batch, reason: str) -> None:
        """Every request not written yet: ``Unavailable`` (the SMSC never saw them)."""
        while batch.todo:
            self._unavailable += 1
            batch.finish(batch.todo.popleft(),
                         Unavailable(CommandStatus.ESME_RINVBNDSTS, StatusClass.LINK, reason))

    def _wake_batches(self) -> None:
        """The link went away (or we are closing): queued batches go and wait for a bound
        link themselves, within their own ``wait_bound_timeout``."""
        for batch in self._batches:
            batch.poke()

    def _pump(self) -> None:
        """Write queued batch requests into free window slots (see ``submit_many``).

        Called when something may have freed a slot or made writing possible: responses read,
        requests expired, a batch queued, the link bound or writable again, the rate limiter's
        wait over. A slot taken while the rate limiter said "wait" stays reserved (with the
        limiter's turn) until the timer calls us back.
        """
        link = self._tx
        if (self._pump_timer is not None or self._closing or link is None or not link.usable
                or not link.writable.is_set()):
            return
        session, window, queue = link.session, link.window, self._batches
        assert session is not None
        reserved = self._reserved is window
        self._reserved = None
        out: list[bytes] = []
        now = self._clock()
        while queue:
            batch = queue[0]
            if batch.closed or not batch.todo:
                queue.popleft()
                batch.queued = False
                continue
            if reserved:
                reserved = False
            elif session.window_free <= 0 or not window.try_take():
                break
            else:
                wait = self._rate.wait(now)
                if wait > 0:
                    self._reserved = window
                    self._pump_timer = asyncio.get_running_loop().call_later(
                        wait, self._pump_due)
                    break
            index = batch.todo.popleft()
            try:
                out.append(session.send(batch.pdus[index], now,
                                        BatchSlot(batch, index, window, link)))
            except LocalProtocolError as exc:
                # A PDU we cannot encode (a field too long for its wire type): nothing was
                # written, and writing it again would fail the same way.
                window.release()
                self._rejected += 1
                batch.finish(index, Rejected(exc.status, StatusClass.PERMANENT))
        if reserved:
            window.release()  # nothing left to write with it
        if out:
            self._submitted += len(out)
            link.write(b"".join(out), alone=True)  # one write; nothing else will join it

    def _pump_due(self) -> None:
        self._pump_timer = None
        self._pump()

    # --- statistics ----------------------------------------------------------------------------

    def statistics(self) -> ClientStatistics:
        now = self._clock()
        states = [lk.session.state.value if lk.session else "closed" for lk in self._links]
        tx_session = self._tx.session if self._tx is not None else None
        rate = self._rate.statistics(now)
        return ClientStatistics(
            name=self.config.name,
            state="+".join(states),
            window=self.config.window,
            window_in_use=tx_session.window_in_use if tx_session else 0,
            submits_per_second=self._meter.rate(now),
            submitted=self._submitted,
            accepted=self._accepted,
            rejected=self._rejected,
            unknown=self._unknown,
            unavailable=self._unavailable,
            throttles=rate.throttles,
            rate_limit=rate.limit,
            reconnects=self._reconnects,
            errors_by_status=MappingProxyType(dict(self._errors)),
            receipts=self._handover.receipts,
            mo_messages=self._handover.mo,
            violations=self._violations,
            last_error=self._last_error,
        )
