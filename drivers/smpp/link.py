"""The client's per-connection pieces: a link (transport, session, write coalescing, the
inbound hand-over queue), its asyncio protocol, and the contexts a request waits in while it
holds a window slot -- a ``Waiter`` (one ``submit()``: a future) or a ``BatchSlot`` (one
request of a ``submit_many()`` batch: no future, its outcome goes to the batch's callback from
the receive path itself).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
from collections.abc import Callable, Sequence

from drivers.smpp.errors import LinkDown
from drivers.smpp.mo_store import MoGroup
from drivers.smpp.pdu import BindType, DeliverSm, Pdu, SubmitSm
from drivers.smpp.session import CAN_TRANSMIT, Session
from drivers.smpp.submit import SubmitOutcome, Unknown

log = logging.getLogger("drivers.smpp.client")


class Retry(enum.Enum):
    """A response that is not the request's outcome: the driver submits it again."""

    THROTTLED = "throttled"  # ESME_RTHROTTLED / ESME_RMSGQFUL: the bind slowed down
    REBIND = "rebind"  # ESME_RINVBNDSTS: the link is dropped and bound again


Judge = Callable[["Link", "Pdu | Unknown", int, int], "SubmitOutcome | Retry"]
OnOutcome = Callable[[int, SubmitOutcome], None]


class Window:
    """The window's free slots, shared by ``submit()`` callers (who wait in line, FIFO) and
    the client's batch pump (which only takes a slot nobody is waiting for, synchronously:
    :meth:`try_take`). A released slot goes to the first waiter, if any."""

    __slots__ = ("_waiters", "free")

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_take(self) -> bool:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_take():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed to us just as we were cancelled: pass it on
            elif fut in self._waiters:
                self._waiters.remove(fut)
            raise

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1


class Batch:
    """The requests of one ``submit_many()`` call.

    ``todo`` holds the indexes still to write (new ones, and ones the SMSC throttled or refused
    for a bind-state reason: it took nothing, so they are written again); while it has any,
    the batch stands in the client's ``queue``, from which the client's pump writes into free
    window slots -- from the receive path, as responses free them. Each written request waits
    in the session as a :class:`BatchSlot`; its response is judged (``judge``: the client's
    classification, shared with ``submit()``) and its outcome handed to ``on_outcome`` at
    once: no task, future or loop iteration per request. ``left`` counts the requests without
    an outcome; the caller's coroutine sleeps on :meth:`wait` and is woken by :meth:`poke`
    when the last outcome is in or the link it needs went away.
    """

    __slots__ = ("_wake", "closed", "judge", "left", "link_errors", "on_outcome", "pdus",
                 "queue", "queued", "throttled", "todo")

    def __init__(self, pdus: Sequence[SubmitSm], judge: Judge, on_outcome: OnOutcome,
                 queue: collections.deque[Batch]) -> None:
        self.pdus = pdus
        self.todo: collections.deque[int] = collections.deque(range(len(pdus)))
        self.left = len(pdus)
        self.throttled: dict[int, int] = {}
        self.link_errors: dict[int, int] = {}
        self.judge = judge
        self.on_outcome = on_outcome
        self.queue = queue
        self.queued = False
        self.closed = False  # the caller stopped listening (cancelled): outcomes are dropped
        self._wake: asyncio.Future[None] | None = None

    def enqueue(self, first: bool = False) -> None:
        if not self.queued and not self.closed:
            self.queued = True
            if first:
                self.queue.appendleft(self)
            else:
                self.queue.append(self)

    def on_response(self, index: int, link: Link, result: Pdu | Unknown) -> None:
        outcome = self.judge(link, result, self.throttled.get(index, 0),
                             self.link_errors.get(index, 0))
        if outcome is Retry.THROTTLED:
            self.throttled[index] = self.throttled.get(index, 0) + 1
        elif outcome is Retry.REBIND:
            self.link_errors[index] = self.link_errors.get(index, 0) + 1
        else:
            self.finish(index, outcome)
            return
        self.todo.appendleft(index)  # written again first: it has waited longest
        self.enqueue(first=True)

    def finish(self, index: int, outcome: SubmitOutcome) -> None:
        self.left -= 1
        if not self.closed:
            try:
                self.on_outcome(index, outcome)
            except Exception:  # the receive path must survive a failing callback
                log.exception("submit_many: outcome callback failed for request %d", index)
        if self.left == 0:
            self.poke()

    async def wait(self) -> None:
        """Until :meth:`poke`: the last outcome came in, or the link went away."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wake = fut
        try:
            await fut
        finally:
            self._wake = None

    def poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)


class BatchSlot:
    """One written request of a :class:`Batch` and the window slot it holds (released when the
    session resolves it, as for :class:`Waiter`). ``drained`` is set only by a client that is
    closing and waits for the responses still due."""

    __slots__ = ("batch", "drained", "index", "link", "slot")

    def __init__(self, batch: Batch, index: int, slot: Window, link: Link) -> None:
        self.batch = batch
        self.index = index
        self.slot: Window | None = slot
        self.link = link
        self.drained: asyncio.Future[None] | None = None

    def resolve(self, result: Pdu | Unknown) -> None:
        if self.slot is None:
            return  # resolved already
        self.slot.release()
        self.slot = None
        self.batch.on_response(self.index, self.link, result)
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)


class Waiter:
    """The context of a submit in the session's window: the submitter's future and the window
    slot it holds. The slot is released when the session resolves the request (response,
    timeout, lost link), never earlier: a submitter that stops waiting must not let another
    submit overfill the window."""

    __slots__ = ("future", "slot")

    def __init__(self, future: asyncio.Future[Pdu | Unknown], slot: Window) -> None:
        self.future = future
        self.slot: Window | None = slot

    def resolve(self, result: Pdu | Unknown) -> None:
        if self.slot is not None:
            self.slot.release()
            self.slot = None
        if not self.future.done():
            self.future.set_result(result)


def resolve(context: object, result: Pdu | Unknown) -> None:
    """Hand a request's fate to whatever waits for it (the session's ``context``)."""
    kind = type(context)
    if kind is Waiter or kind is BatchSlot:
        context.resolve(result)  # type: ignore[attr-defined]
    elif isinstance(context, asyncio.Future) and not context.done():
        context.set_result(result)


class Link:
    """One TCP (or TLS) connection of the bind and its session."""

    def __init__(self, kind: BindType, inbound_queue: int) -> None:
        self.kind = kind
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        self.writable = asyncio.Event()  # cleared while the transport's buffer is over its mark
        self.writable.set()
        self.bind_future: asyncio.Future[Pdu | Unknown] | None = None
        self.bound = asyncio.Event()
        self.dead = asyncio.Event()
        self.dead_reason = ""
        self.generation = 0
        self.window = Window(1)
        self.on_writable: Callable[[], None] | None = None  # the client's pump
        # Hand-over to the handler; above ``inbound_limit`` waiting PDUs we stop reading from
        # the socket until the handler catches up (backpressure, naz #27).
        # deliver_sm to answer, or MO groups the store released (no PDU to answer).
        self.inbound: asyncio.Queue[DeliverSm | MoGroup] = asyncio.Queue()
        self.inbound_limit = inbound_queue
        self.reading_paused = False
        self.last_rx = 0.0
        self._out: list[bytes] = []
        self._flush_scheduled = False

    @property
    def usable(self) -> bool:
        s = self.session
        return s is not None and s.state in CAN_TRANSMIT and not self.dead.is_set()

    def write(self, data: bytes, *, alone: bool = False) -> None:
        """Queue ``data``; everything queued in one loop iteration leaves in one write() call.
        ``alone``: nothing else is in flight, so nothing will join it: write at once and save
        the loop iteration (window 1, or the first submit after an idle spell)."""
        if not data or self.transport is None:
            return
        if alone and not self._out:
            if not self.transport.is_closing():
                self.transport.write(data)
            return
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def die(self, reason: str) -> None:
        if not self.dead.is_set():
            self.dead_reason = reason
            self.dead.set()
        # Submitters wait on ``bound``: clear it now, not when the loops have wound down.
        self.bound.clear()
        self.writable.set()  # nobody may stay parked on a buffer that will never drain
        if self.bind_future is not None and not self.bind_future.done():
            self.bind_future.set_exception(LinkDown(reason))


class LinkProtocol(asyncio.Protocol):
    """Hands the socket's bytes to the client synchronously: one loop iteration per read, no
    stream buffer in between. A protocol whose connection the link has already dropped (a
    reconnect may be under way) is ignored, so it can never touch the next connection."""

    def __init__(self, on_data: Callable[[Link, bytes], None], link: Link) -> None:
        self.on_data = on_data
        self.link = link
        self.transport: asyncio.Transport | None = None

    def _current(self) -> bool:
        return self.transport is not None and self.link.transport is self.transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.link.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._current():
            self.on_data(self.link, data)

    def eof_received(self) -> bool:
        if self._current():
            self.link.die("connection closed by the SMSC")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._current():
            self.link.die(f"connection lost: {exc}" if exc else "connection closed by the SMSC")

    def pause_writing(self) -> None:
        if self._current():
            self.link.writable.clear()

    def resume_writing(self) -> None:
        if self._current():
            self.link.writable.set()
            if self.link.on_writable is not None:
                self.link.on_writable()


