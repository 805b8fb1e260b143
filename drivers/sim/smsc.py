"""SMSC simulator: an SMPP 3.4 server on 127.0.0.1 built on the same session core (SMSC role).

It accepts binds (credentials configurable), answers submit_sm with message ids (hex or
decimal), sends delivery receipts after a delay with an outcome mix, injects MO messages
(multipart, any order), and on request throttles above a rate, stalls responses, drops the
connection after N PDUs, refuses binds, or sends malformed PDUs. It records what it received.

The connection handler is an ``asyncio.Protocol``: one ``data_received`` call decodes every
complete frame in the chunk and answers them in one ``write``, which is what keeps it ahead of
the benchmark clients (measured by ``bench/smpp.py`` with a raw pipelining client).
Receipts and redeliveries are scheduled with ``loop.call_later`` (plain callbacks, no tasks
to own), all cancelled by ``close()``. A deliver_sm that a lost connection never confirmed, or
that was answered with a temporary error, is delivered again, as real SMSCs do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import ssl
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType, TracebackType

from drivers.ratelimit import TokenBucket
from drivers.sim.smsc_messages import malformed_frame, mo_parts, receipt_pdu
from drivers.smpp.errors import CommandStatus
from drivers.smpp.mo import MobileOriginated, Reassembler
from drivers.smpp.pdu import (
    Bind,
    BindResp,
    BindType,
    CommandId,
    DeliverSm,
    HeaderOnly,
    SubmitSm,
    SubmitSmResp,
)
from drivers.smpp.session import (
    CAN_RECEIVE,
    PeerUnbound,
    Request,
    Response,
    Role,
    Session,
    Violation,
)

log = logging.getLogger(__name__)

OUTCOMES = ("DELIVRD", "UNDELIV", "EXPIRED", "REJECTD")


@dataclass(frozen=True, slots=True)
class SmscOptions:
    """Everything the simulator can be asked to do. Change at run time with ``configure()``."""

    host: str = "127.0.0.1"
    port: int = 0
    system_id: str = "SMSGATE-SIM"
    credentials: Mapping[str, str] | None = None  # system_id -> password; None accepts any
    id_format: str = "hex"  # submit_sm_resp message_id: "hex" (%08X) or "decimal" (%010d)
    receipt_id_format: str | None = None  # id in the receipt text; None: same as id_format
    receipt_tlvs: bool = True  # receipted_message_id + message_state in receipts
    receipt_delay: float = 0.0  # seconds from submit to receipt
    receipts_first: bool = False  # write the receipt before the submit_sm_resp (the DLR race)
    outcomes: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({"DELIVRD": 1.0})
    )
    throttle_rate: float | None = None  # submits/s accepted; above it ESME_RTHROTTLED
    throttle_status: int = CommandStatus.ESME_RTHROTTLED
    submit_status: int = 0  # answer every submit_sm with this status (0 = accept)
    stall_submits: bool = False  # never answer submit_sm
    stall_all: bool = False  # answer nothing at all (enquire_link neither): a dead link
    drop_after: int | None = None  # drop a connection on its N-th PDU, leaving it unanswered
    reject_binds: int = 0  # refuse this many binds (then accept); -1 refuses all
    reject_status: int = CommandStatus.ESME_RBINDFAIL
    max_binds_per_system_id: int | None = None  # more binds get ESME_RALYBND
    window: int = 64  # outstanding deliver_sm per connection
    redeliver_delay: float = 1.0  # after a temporary error in deliver_sm_resp
    record: bool = True  # keep every received submit_sm in ``received``
    seed: int = 0
    ssl: ssl.SSLContext | None = None


@dataclass(frozen=True, slots=True)
class ReceivedSubmit:
    system_id: str
    pdu: SubmitSm
    message_id: str  # "" when it was refused
    status: int
    at: float


@dataclass(frozen=True, slots=True)
class SmscStatistics:
    connections: int
    bound: int
    binds_accepted: int
    binds_refused: int
    submits: int
    accepted: int
    throttled: int
    receipts_sent: int
    receipts_pending: int
    delivers_sent: int
    deliver_responses: int
    violations: int
    redeliveries: int  # deliver_sm sent again after a temporary error response


class SmscConnection(asyncio.Protocol):
    def __init__(self, sim: SmscSimulator) -> None:
        self.sim = sim
        self.session = Session(Role.SMSC, window=sim.options.window)
        self.transport: asyncio.Transport | None = None
        self.system_id = ""
        self.pdus_received = 0
        self.queued: deque[DeliverSm] = deque()
        self.deliver_results: list[tuple[int, int]] = []  # (sequence, status)

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sim._connections.add(self)
        self.sim._notify()

    def connection_lost(self, exc: Exception | None) -> None:
        unconfirmed = [
            o.context for o in self.session.connection_lost() if isinstance(o.context, DeliverSm)
        ]
        unconfirmed.extend(self.queued)
        self.queued.clear()
        self.sim._connections.discard(self)
        if self.system_id:
            self.sim._hold(self.system_id, unconfirmed)
        self.sim._notify()

    def data_received(self, data: bytes) -> None:
        sim = self.sim
        opts = sim.options
        now = sim.loop.time()
        events = self.session.receive_data(data, now)
        sim._notify()
        if opts.stall_all:
            self.session.data_to_send()  # swallow the automatic answers too
            return
        out: list[bytes] = []
        for event in events:
            self.pdus_received += 1
            if opts.drop_after is not None and self.pdus_received >= opts.drop_after:
                # The N-th PDU is never answered: the connection dies with it in flight.
                self._flush(out)
                self.abort()
                return
            if isinstance(event, Request):
                pdu = event.pdu
                if isinstance(pdu, SubmitSm):
                    answer = sim._on_submit(self, pdu, now)
                    if answer is not None:
                        out.append(answer)
                elif isinstance(pdu, Bind):
                    out.append(sim._on_bind(self, pdu, now))
            elif isinstance(event, Response):
                self._on_response(event)
            elif isinstance(event, Violation):
                sim._violations += 1
                log.info("sim smsc: peer violation: %s", event.error)
                if event.fatal:
                    self._flush(out)
                    self.close()
                    return
            elif isinstance(event, PeerUnbound):
                sim._unbound(self)
        self._flush(out)
        if self.queued:
            self.pump()

    def _flush(self, out: list[bytes]) -> None:
        auto = self.session.data_to_send()
        if auto:
            out.append(auto)
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def _on_response(self, event: Response) -> None:
        if event.request.command_id == CommandId.DELIVER_SM:
            status = event.pdu.status
            self.deliver_results.append((event.pdu.sequence, status))
            self.sim._deliver_responses += 1
            pdu = event.request.context
            if status and status != CommandStatus.ESME_RX_P_APPN and isinstance(pdu, DeliverSm):
                # A temporary refusal (ESME_RX_T_APPN, ...): the SMSC tries again later.
                self.sim.later(
                    self.sim.options.redeliver_delay, self.sim._redeliver, self.system_id, pdu
                )
        elif event.request.command_id == CommandId.UNBIND:
            self.close()

    # -- sending --

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def deliver(self, pdu: DeliverSm) -> None:
        self.queued.append(pdu)
        self.pump()

    def pump(self) -> None:
        """Send queued deliver_sm while the window has room (SMSC-side window)."""
        now = self.sim.loop.time()
        out = []
        while self.queued and self.session.window_free > 0 and self.session.state in CAN_RECEIVE:
            pdu = self.queued.popleft()
            out.append(self.session.send(pdu, now, pdu))
            self.sim._delivers_sent += 1
        if out:
            self.write(b"".join(out))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def unbind(self) -> None:
        """SMSC-initiated unbind (the ESME must answer and reconnect)."""
        self.write(self.session.send(HeaderOnly(CommandId.UNBIND), self.sim.loop.time()))


class SmscSimulator:
    """``async with SmscSimulator(SmscOptions(...)) as sim:`` then connect to ``sim.port``."""

    def __init__(self, options: SmscOptions | None = None) -> None:
        self.options = options or SmscOptions()
        self.received: list[ReceivedSubmit] = []
        self.binds: list[Bind] = []  # every bind request, accepted or not
        self.bind_times: list[float] = []  # loop time of each, for backoff checks
        self.unbinds = 0  # unbind requests from ESMEs
        self._connections: set[SmscConnection] = set()
        self._server: asyncio.Server | None = None
        self._rng = random.Random(self.options.seed)
        self._next_id = 0x10000000
        self._bucket: TokenBucket | None = None
        self._binds_refused = 0
        self._rejected = 0  # refusals asked for by ``reject_binds``
        self._binds_accepted = 0
        self._submits = 0
        self._accepted = 0
        self._throttled = 0
        self._receipts_sent = 0
        self._delivers_sent = 0
        self._deliver_responses = 0
        self._violations = 0
        self._held: dict[str, deque[DeliverSm]] = {}  # waiting for a receiver of that system_id
        self._redeliveries = 0
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._timer_token = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "simulator not started"
        return self._loop

    # -- lifecycle --

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._configure_bucket()
        self._server = await self._loop.create_server(
            lambda: SmscConnection(self), self.options.host, self.options.port, ssl=self.options.ssl
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> SmscSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def configure(self, **changes: object) -> None:
        """Change options at run time (e.g. start throttling, stop stalling)."""
        self.options = dataclasses.replace(self.options, **changes)  # type: ignore[arg-type]
        self._configure_bucket()

    def _configure_bucket(self) -> None:
        rate = self.options.throttle_rate
        now = self._loop.time() if self._loop is not None else 0.0
        self._bucket = TokenBucket(rate, max(1.0, rate / 10), now=now) if rate else None

    # -- handlers called by connections --

    def _on_bind(self, conn: SmscConnection, pdu: Bind, now: float) -> bytes:
        opts = self.options
        self.binds.append(pdu)
        self.bind_times.append(now)
        status = 0
        creds = opts.credentials
        if opts.reject_binds and (opts.reject_binds < 0 or self._rejected < opts.reject_binds):
            status = opts.reject_status
            self._rejected += 1
        elif creds is not None and pdu.system_id not in creds:
            status = CommandStatus.ESME_RINVSYSID
        elif creds is not None and creds[pdu.system_id] != pdu.password:
            status = CommandStatus.ESME_RINVPASWD
        elif opts.max_binds_per_system_id is not None:
            bound = sum(
                1 for c in self._connections if c.system_id == pdu.system_id and c.session.bound
            )
            if bound >= opts.max_binds_per_system_id:
                status = CommandStatus.ESME_RALYBND
        if status:
            self._binds_refused += 1
        else:
            self._binds_accepted += 1
            conn.system_id = pdu.system_id
        raw = conn.session.send(BindResp(pdu.kind, opts.system_id, status, pdu.sequence), now)
        if not status and pdu.kind is not BindType.TRANSMITTER:
            self._release_held(conn)
        return raw

    def _on_submit(self, conn: SmscConnection, pdu: SubmitSm, now: float) -> bytes | None:
        opts = self.options
        self._submits += 1
        status = opts.submit_status
        if not status and self._bucket is not None:
            if self._bucket.peek(now) > 0:
                status = opts.throttle_status
                self._throttled += 1
            else:
                self._bucket.take(now)
        message_id = ""
        if not status:
            self._accepted += 1
            self._next_id += 1
            n = self._next_id
            message_id = f"{n:08X}" if opts.id_format == "hex" else f"{n:010d}"
            if pdu.registered_delivery & 0x03:
                receipt = self._receipt(pdu, n, message_id)
                if receipt is not None and opts.receipts_first:
                    self._send_receipt(conn.system_id, receipt)
                elif receipt is not None:
                    self._schedule_receipt(conn.system_id, receipt)
        if opts.record:
            self.received.append(ReceivedSubmit(conn.system_id, pdu, message_id, status, now))
        if opts.stall_submits:
            return None
        return conn.session.send(SubmitSmResp(message_id, status, pdu.sequence), now)

    def _receipt(self, pdu: SubmitSm, n: int, resp_id: str) -> DeliverSm | None:
        opts = self.options
        outcomes = list(opts.outcomes.items())
        stat = self._rng.choices([o for o, _ in outcomes], weights=[w for _, w in outcomes])[0]
        if stat == "DELIVRD" and pdu.registered_delivery & 0x03 == 0x02:
            return None  # receipt on failure only (registered_delivery 2)
        text_format = opts.receipt_id_format or opts.id_format
        text_id = f"{n:08X}" if text_format == "hex" else f"{n:010d}"
        submitted = datetime.now().replace(microsecond=0)
        return receipt_pdu(
            pdu, resp_id, text_id, stat, submitted, submitted, with_tlvs=opts.receipt_tlvs
        )

    def _schedule_receipt(self, system_id: str, receipt: DeliverSm) -> None:
        opts = self.options
        if opts.receipt_delay <= 0:
            self.loop.call_soon(self._send_receipt, system_id, receipt)
            return
        self.later(opts.receipt_delay, self._send_receipt, system_id, receipt)

    def later(self, delay: float, callback: Callable[..., None], *args: object) -> None:
        """``callback(*args)`` after ``delay`` seconds; cancelled by ``close()``."""
        self._timer_token += 1
        token = self._timer_token

        def fire() -> None:
            del self._timers[token]
            callback(*args)

        self._timers[token] = self.loop.call_later(delay, fire)

    def _send_receipt(self, system_id: str, receipt: DeliverSm) -> None:
        self._receipts_sent += 1
        self._route(system_id, receipt)

    def _route(self, system_id: str, pdu: DeliverSm) -> None:
        conn = self._receiver_for(system_id)
        if conn is None:
            # Real SMSCs keep receipts and MO until a receiver binds; so do we.
            self._held.setdefault(system_id, deque()).append(pdu)
            return
        conn.deliver(pdu)

    def _hold(self, system_id: str, pdus: list[DeliverSm]) -> None:
        """deliver_sm that a lost connection never confirmed: deliver them again later."""
        if not pdus:
            return
        self._held.setdefault(system_id, deque()).extend(pdus)
        conn = self._receiver_for(system_id)
        if conn is not None:
            self._release_held(conn)

    def _redeliver(self, system_id: str, pdu: DeliverSm) -> None:
        self._redeliveries += 1
        self._route(system_id, pdu)

    def _release_held(self, conn: SmscConnection) -> None:
        held = self._held.pop(conn.system_id, None)
        if held:
            self.loop.call_soon(self._deliver_all, conn, held)

    @staticmethod
    def _deliver_all(conn: SmscConnection, pdus: deque[DeliverSm]) -> None:
        for pdu in pdus:
            conn.deliver(pdu)

    def _receiver_for(self, system_id: str | None) -> SmscConnection | None:
        for conn in self._connections:
            if conn.session.state in CAN_RECEIVE and (
                system_id is None or conn.system_id == system_id
            ):
                return conn
        return None

    def _unbound(self, conn: SmscConnection) -> None:
        self.unbinds += 1
        # The automatic unbind_resp is written by the caller's flush; close after it.
        self.loop.call_soon(conn.close)

    # -- test and demo controls --

    @property
    def connections(self) -> list[SmscConnection]:
        return list(self._connections)

    async def wait_bound(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until ``count`` connections are bound."""
        await self.wait_for(
            lambda: sum(1 for c in self._connections if c.session.bound) >= count, timeout
        )

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``condition()`` holds; it is re-checked whenever the simulator's state
        changes (a connection, a bind, a PDU, a response). TimeoutError after ``timeout``."""
        if self._changed is None:
            self._changed = asyncio.Event()
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def inject(self, pdus: Sequence[DeliverSm], system_id: str | None = None) -> SmscConnection:
        """Send deliver_sm PDUs (in the given order) to a bound receiver of ``system_id``."""
        conn = self._receiver_for(system_id)
        if conn is None:
            raise LookupError(f"no receiver bound for {system_id or 'any system_id'}")
        for pdu in pdus:
            conn.deliver(pdu)
        return conn

    def inject_mo(
        self,
        text: str,
        source_addr: str,
        destination_addr: str,
        *,
        concat: str = "udh8",
        reference: int | None = None,
        shuffle: bool = False,
        system_id: str | None = None,
    ) -> list[DeliverSm]:
        """Split ``text`` into MO parts (optionally out of order) and deliver them."""
        ref = self._rng.randrange(256) if reference is None else reference
        rng = self._rng if shuffle else None
        parts = mo_parts(
            text, source_addr, destination_addr, concat=concat, reference=ref, shuffle=rng
        )
        self.inject(parts, system_id)
        return parts

    def send_malformed(self, kind: str, system_id: str | None = None) -> None:
        conn = self._receiver_for(system_id) or next(iter(self._connections), None)
        if conn is None:
            raise LookupError("no connection to send a malformed PDU on")
        conn.write(malformed_frame(kind, 0x7FFF0000 + self._rng.randrange(0xFFFF)))

    def unbind_all(self) -> None:
        for conn in list(self._connections):
            if conn.session.bound:
                conn.unbind()

    def drop_all(self) -> None:
        for conn in list(self._connections):
            conn.abort()

    def assembled(self) -> list[MobileOriginated]:
        """The accepted submits put back together (UDH or SAR concatenation, any order), so a
        test can check what a handset would show. Incomplete messages come last, marked."""
        reassembler = Reassembler(timeout=0.0)
        done: list[MobileOriginated] = []
        for r in self.received:
            if r.status == 0:
                message, _ = reassembler.add(r.pdu, 0.0)
                if message is not None:
                    done.append(message)
        return done + reassembler.expire(float("inf"))

    def statistics(self) -> SmscStatistics:
        return SmscStatistics(
            connections=len(self._connections),
            bound=sum(1 for c in self._connections if c.session.bound),
            binds_accepted=self._binds_accepted,
            binds_refused=self._binds_refused,
            submits=self._submits,
            accepted=self._accepted,
            throttled=self._throttled,
            receipts_sent=self._receipts_sent,
            receipts_pending=len(self._timers) + sum(len(q) for q in self._held.values()),
            redeliveries=self._redeliveries,
            delivers_sent=self._delivers_sent,
            deliver_responses=self._deliver_responses,
            violations=self._violations,
        )
