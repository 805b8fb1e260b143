"""One GSM modem: the thin asyncio layer around :class:`drivers.modem.at.AtChannel`.

``async with ModemClient(config, on_message=..., on_report=...) as modem:`` finds the port
(fixed, or by IMEI on any port), runs start-up (:mod:`drivers.modem.startup`), then keeps named
loops in one TaskGroup: the reader, health polling (never while a send waits), the inbound
worker (+CMTI/+CMT/+CDSI/+CDS: read -> hand over -> delete) and, for modems without usable
+CNMI, AT+CMGL polling. :meth:`send` puts one SMS-SUBMIT through AT+CMGS and returns TP-MR.

Inbound durability. **Stored mode** (+CNMI <mt>=1, ``+CMTI``; the default and what start-up
picks whenever the modem offers it) is the durable mode: a message stays in the modem's storage
until it was handed over (the handler returned), and only then is it deleted (AT+CMGD). A crash
or a refused hand-over leaves it stored; start-up (AT+CMGL=4) reads it again, and so does a
sweep ``handover_retry`` seconds after a refusal, so a message may be handed over twice but is
never lost. Status reports kept in a separate "SR" storage follow
the same order (read -> hand over -> delete) and are listed again at start-up too.
**Routed mode** (+CNMI <mt>=2, ``+CMT``) is used only when the modem offers no stored
indication and the operator allowed it (``indications = "route"``; otherwise such a modem is
polled with AT+CMGL=4, which is durable). Routed messages are not durable across a crash: each
part is acknowledged (AT+CNMA, when +CSMS service 1 asks for it) once we took it, and the
earlier parts of a multipart message are then held only in memory until the last one arrives.
A refused single part is answered AT+CNMA=2 (RP-ERROR) so the network delivers it again.

A command that times out is escalated, one step after another (:class:`Escalation`): the same
command once more (only when it is idempotent: never AT+CMGS, AT+CMGD, AT+CNMA, AT+CPIN=) ->
ATZ and re-initialise -> reopen the port -> marked down; ``statistics()`` counts each step and
names the furthest step the latest hang reached. An AT+CMGS whose PDU was written but never
answered (timeout, or the link died) raises :class:`~drivers.modem.errors.SendOutcomeUnknown`:
the part may have left the modem, and the caller decides whether to risk a duplicate. A serial
error (unplug) marks the modem down at once; the supervisor then looks for it again (by IMEI on
every candidate port, since ports renumber on replug).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace

import serial
import serial_asyncio_fast

from drivers.modem.at import (
    AtChannel,
    Command,
    Event,
    Prompt,
    Response,
    Timeout,
    Unexpected,
    Urc,
    idempotent,
)
from drivers.modem.config import ModemConfig
from drivers.modem.errors import (
    CmeError,
    CmsError,
    CommandFailed,
    CommandTimeout,
    ModemDown,
    ModemError,
    ModemGone,
    SendOutcomeUnknown,
    StartupFailed,
)
from drivers.modem.model import (
    DeliveryReport,
    Escalation,
    EscalationCounts,
    InboundMessage,
    Location,
    ModemIdentity,
    ModemState,
    ModemStatistics,
    OnMessage,
    OnReport,
)
from drivers.modem.pdu import Deliver, StatusReport, SubmitPdu, decode_pdu
from drivers.modem.reassembly import InboundPart, Reassembled, Reassembler
from drivers.modem.responses import (
    Registration,
    Signal,
    parse_cmgl,
    parse_cmgr,
    parse_creg,
    parse_csq,
    parse_index,
    signal_from_rssi,
)
from gateway.codec.errors import CodecError

__all__ = [
    "DeliveryReport",
    "Escalation",
    "EscalationCounts",
    "InboundMessage",
    "Location",
    "ModemClient",
    "ModemIdentity",
    "ModemState",
    "ModemStatistics",
    "OnMessage",
    "OnReport",
    "PortRegistry",
    "default_ports",
    "ignore_message",
    "ignore_report",
]

log = logging.getLogger("smsgate.modem")

ESC = b"\x1b"  # TS 27.005 §3.5.1: cancel the PDU entry after a prompt timeout




def default_ports() -> list[str]:
    """Candidate ports for IMEI discovery: USB serial devices (never arbitrary ptys)."""
    return sorted(glob.glob("/dev/ttyUSB*") + glob.glob("/dev/ttyACM*"))


class PortRegistry:
    """Which ports are held by which modem, so discovery never probes a busy port."""

    def __init__(self) -> None:
        self._owners: dict[str, str] = {}

    def claim(self, port: str, owner: str) -> bool:
        if self._owners.get(port, owner) != owner:
            return False
        self._owners[port] = owner
        return True

    def release(self, port: str, owner: str) -> None:
        if self._owners.get(port) == owner:
            del self._owners[port]


class _WrongModem(ModemError):
    """Discovery opened a port holding another modem (IMEI differs)."""


class _Reopen(ModemError):
    """Escalation decided to reopen the port."""


async def ignore_message(message: InboundMessage) -> None:
    log.info("inbound message from %s dropped: no handler", message.originator)


async def ignore_report(report: DeliveryReport) -> None:
    return None


class ModemClient:
    def __init__(
        self,
        config: ModemConfig,
        *,
        on_message: OnMessage = ignore_message,
        on_report: OnReport = ignore_report,
        discover: Callable[[], Iterable[str]] = default_ports,
        registry: PortRegistry | None = None,
        on_state: Callable[[ModemClient], None] | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self._on_message = on_message
        self._on_report = on_report
        self._discover = discover
        self._registry = registry or PortRegistry()
        self._on_state = on_state
        self.state = ModemState.CLOSED  # STARTING once the first port is opened
        self.identity: ModemIdentity | None = None
        self.port: str | None = None
        self.smsc: str | None = None
        self.signal: Signal = signal_from_rssi(99)
        self.registration = Registration.UNKNOWN
        self.operator: str | None = None
        self.polling = False
        self.storages: tuple[str, ...] = ()
        self.report_storage: str | None = None  # "SR": status reports kept apart (Wavecom)
        self.cnmi: tuple[int, ...] | None = None
        self.needs_cnma = False
        self.cmms_supported = True
        self.cmms_on = False  # AT+CMMS=2 is sent once per connection, not once per part
        self.packet_registration = Registration.UNKNOWN
        self.sent = 0
        self.errors = 0
        self.inbound = 0
        self.last_error: str | None = None
        self.last_escalation: Escalation | None = None
        self.escalations = EscalationCounts()
        self._escalating = False  # a ladder is under way (a reopen may still end in DOWN)
        self._pdu_written = False  # the PDU of the AT+CMGS in flight went to the port
        self._channel = AtChannel()
        self._lock = asyncio.Lock()
        self._sends_waiting = 0
        self._pending: asyncio.Future[Response] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at: float | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lost: asyncio.Event = asyncio.Event()
        self._lost_reason: ModemError | None = None
        self._ready = asyncio.Event()
        self._state_changed = asyncio.Event()
        self._queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self._reassembler = Reassembler(config.reassembly_timeout)
        self._held: set[int] = set()  # storage indexes of parts waiting for their siblings
        self._sweep_at: float | None = None  # read the storage again (a refused hand-over)
        self._tg: asyncio.TaskGroup | None = None
        self._supervisor: asyncio.Task[None] | None = None

    # --- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> ModemClient:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._supervisor = self._tg.create_task(self._supervise(), name=f"modem-{self.name}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
        assert self._tg is not None
        await self._tg.__aexit__(None, None, None)
        self._close_port()
        self._set_state(ModemState.CLOSED)

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def wait_gave_up(self) -> None:
        """Wait until the supervisor stopped for good (a wrong PIN, a SIM that needs a PUK)."""
        assert self._supervisor is not None
        await asyncio.shield(self._supervisor)

    async def wait_state(self, *states: ModemState) -> None:
        """Wait until the modem is in one of ``states``."""
        while self.state not in states:
            await self._state_changed.wait()

    def _set_state(self, state: ModemState) -> None:
        if state is self.state:
            return
        log.info("modem %s: %s -> %s", self.name, self.state, state)
        self.state = state
        self._state_changed.set()
        self._state_changed = asyncio.Event()
        if state is ModemState.READY:
            self._ready.set()
        else:
            self._ready.clear()
        if self._on_state is not None:
            self._on_state(self)

    def statistics(self) -> ModemStatistics:
        return ModemStatistics(
            self.name, self.state, self.port, self.identity.imei if self.identity else None,
            self.signal.dbm, self.signal.bars, self.registration, self.operator, self.sent,
            self.errors, self.last_error, self.polling, self.inbound, self.last_escalation,
            self.escalations, self.cnmi is not None and self.cnmi[1] in (2, 3),
        )

    # --- connection supervision -----------------------------------------------------------

    def _candidates(self) -> list[str]:
        """Ports to try. A modem on a fixed port: that port. A modem known by IMEI: the
        configured port, then every discovered port (ports renumber on replug), the last one
        that worked first -- but only while discovery still lists it: after an unplug its
        number may belong to another device or program, which we must not open and talk to."""
        if self.config.imei is None:
            return [p for p in (self.config.port,) if p]
        found = list(self._discover())
        last = [self.port] if self.port in found else []
        fixed = [self.config.port] if self.config.port else []
        return list(dict.fromkeys(last + fixed + found))

    async def _supervise(self) -> None:
        fatal = False
        while not fatal:
            reopen = False
            for port in self._candidates():
                if not self._registry.claim(port, self.name):
                    continue
                self._lost_reason = None
                try:
                    await self._connection(port)
                except* _WrongModem:
                    pass
                except* StartupFailed as group:
                    self._note_error(group.exceptions[0])
                    if not all(e.retry for e in group.exceptions if isinstance(e, StartupFailed)):
                        fatal = True  # a wrong PIN is never retried: it would lock the SIM
                except* (ModemError, OSError, serial.SerialException) as group:
                    self._note_error(group.exceptions[0])
                finally:
                    writer = self._writer
                    self._close_port()
                    if writer is not None:
                        await self._wait_closed(writer)
                    self._registry.release(port, self.name)
                    self._fail_pending(ModemGone(f"{self.name}: link closed"))
                if self._cancelling():
                    # Closing: a command still finishing in a ``finally`` must not turn the
                    # cancellation into an ordinary error that the loop above would retry.
                    raise asyncio.CancelledError
                reopen = isinstance(self._lost_reason, _Reopen) and not fatal
                if not reopen:
                    if self._escalating:  # the reopen did not bring it back either
                        self._step(Escalation.DOWN)
                        self._escalating = False
                    self._set_state(ModemState.DOWN)
                if reopen or fatal:
                    break
            if not reopen and not fatal:
                await asyncio.sleep(self.config.rediscover_interval)
        log.error("modem %s: down until restarted: %s", self.name, self.last_error)

    @staticmethod
    def _cancelling() -> bool:
        task = asyncio.current_task()
        return task is not None and task.cancelling() > 0

    async def _connection(self, port: str) -> None:
        from drivers.modem.startup import start_up

        # exclusive: TIOCEXCL + flock, so a second program (ModemManager, another gateway, a
        # stray terminal) cannot open the port and steal the modem's answers.
        reader, self._writer = await serial_asyncio_fast.open_serial_connection(
            url=port, baudrate=self.config.baudrate, exclusive=True
        )
        self.port = port
        self._channel = AtChannel()
        self._lost = asyncio.Event()
        if self.state is ModemState.CLOSED:
            self._set_state(ModemState.STARTING)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._read_loop(reader), name=f"modem-{self.name}-reader")
            lost = tg.create_task(self._lost.wait(), name=f"modem-{self.name}-lost")
            startup = tg.create_task(start_up(self), name=f"modem-{self.name}-startup")
            await asyncio.wait({lost, startup}, return_when=asyncio.FIRST_COMPLETED)
            if startup.done() and startup.exception() is None:
                self._escalating = False
                self._set_state(ModemState.READY)
                tg.create_task(self._inbound_loop(), name=f"modem-{self.name}-inbound")
                tg.create_task(self._health_loop(), name=f"modem-{self.name}-health")
                if self.polling:
                    tg.create_task(self._poll_loop(), name=f"modem-{self.name}-poll")
                await lost
            raise self._lost_reason or ModemGone(f"{self.name}: link lost")

    def _close_port(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed_at = None
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None

    @staticmethod
    async def _wait_closed(writer: asyncio.StreamWriter) -> None:
        """Until the port is really closed: the transport closes it in a worker thread, and
        the exclusive lock (flock) held until then would make an immediate reopen fail."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await writer.wait_closed()

    def _lose(self, reason: ModemError) -> None:
        """The link is gone (serial error) or escalation wants a reopen."""
        if self._lost_reason is None:
            self._lost_reason = reason
        self._fail_pending(reason)
        if not isinstance(reason, _Reopen):
            self._set_state(ModemState.DOWN)
        self._lost.set()

    def _fail_pending(self, error: ModemError) -> None:
        fut = self._pending
        if fut is not None and not fut.done():
            fut.set_exception(error)

    def _note_error(self, error: BaseException) -> None:
        self.errors += 1
        self.last_error = str(error)
        log.warning("modem %s: %s", self.name, error)

    # --- the reader and event dispatch ----------------------------------------------------

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await reader.read(4096)
            except (serial.SerialException, OSError) as exc:
                self._lose(ModemGone(f"{self.name}: {exc}"))
                return
            if not data:
                self._lose(ModemGone(f"{self.name}: port closed"))
                return
            for event in self._channel.feed(data, loop.time()):
                self._dispatch(event)
            self._arm()

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, Response | Timeout):
            fut = self._pending
            if fut is None or fut.done():
                return
            if isinstance(event, Response):
                fut.set_result(event)
            else:
                if event.stage == "prompt" and self._writer is not None:
                    self._writer.write(ESC)  # leave PDU entry so the modem is usable again
                fut.set_exception(event.error())
        elif isinstance(event, Prompt):
            if self._writer is not None:
                self._writer.write(event.data)
                self._pdu_written = True
        elif isinstance(event, Urc):
            self._urc(event)
        elif isinstance(event, Unexpected):
            log.debug("modem %s: unexpected line %r", self.name, event.line)

    def _urc(self, urc: Urc) -> None:
        if urc.name in ("+CMTI", "+CDSI"):
            where = parse_index(urc.value)
            if where is not None:
                self._queue.put_nowait(("stored", where))
        elif urc.name in ("+CMT", "+CDS") and urc.pdu is not None:
            try:
                self._queue.put_nowait(("routed", bytes.fromhex(urc.pdu)))
            except ValueError:
                log.warning("modem %s: %s with a malformed PDU line", self.name, urc.name)
        elif urc.name == "+CREG":
            self.registration = parse_creg(urc.value, urc=True)
        elif urc.name == "+CGREG":
            self.packet_registration = parse_creg(urc.value, urc=True)
        elif urc.name == "^RSSI":
            self.signal = parse_csq(urc.value)

    # --- commands -------------------------------------------------------------------------

    async def execute(self, command: Command) -> Response:
        """Run one command; the caller holds the lock. Timeouts become CommandTimeout."""
        if self._writer is None:
            raise ModemGone(f"{self.name}: not connected")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Response] = loop.create_future()
        self._pending = fut
        try:
            self._writer.write(self._channel.send(command, loop.time()))
            self._arm()
            return await fut
        finally:
            self._pending = None
            if not fut.done() or fut.cancelled() or fut.exception() is not None:
                self._channel.abort()
            self._arm()

    def _arm(self) -> None:
        """Keep one timer at the channel's next deadline (timeouts, Wavecom's missing OK)."""
        deadline = self._channel.next_deadline()
        if deadline == self._armed_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed_at = deadline
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        self._armed_at = None
        for event in self._channel.tick(asyncio.get_running_loop().time()):
            self._dispatch(event)
        self._arm()

    async def run(self, command: Command) -> Response:
        """Run one command under the lock without escalation (start-up uses this)."""
        async with self._lock:
            return await self.execute(command)

    def command_for(self, text: str, **kw: object) -> Command:
        kw.setdefault("timeout", self.config.command_timeout)
        return Command(text, **kw)  # type: ignore[arg-type]

    async def command(self, text: str, *, timeout: float | None = None) -> Response:
        """Run ``text`` under the lock; escalate on a timeout; return the response (not
        checked: the caller decides what an error means)."""
        cmd = self.command_for(text)
        if timeout is not None:
            cmd = replace(cmd, timeout=timeout)
        async with self._lock:
            return await self._guarded(cmd)

    async def _guarded(self, cmd: Command) -> Response:
        try:
            return await self.execute(cmd)
        except CommandTimeout as exc:
            self._note_error(exc)
            return await self._escalate(cmd, exc)

    def _step(self, step: Escalation) -> None:
        self.last_escalation = step
        self.escalations = self.escalations.add(step)
        log.warning("modem %s: hang escalation: %s", self.name, step)

    async def _escalate(self, cmd: Command, timeout: CommandTimeout) -> Response:
        """The ladder after ``cmd`` timed out (lock held): the same command once more when it
        is idempotent -> ATZ and re-initialise -> reopen the port (-> down, decided by the
        supervisor when start-up fails after the reopen). Returns the retry's response when
        the retry answered; otherwise raises ``timeout`` (the command did not complete)."""
        from drivers.modem.startup import reinitialise

        self._set_state(ModemState.RECOVERING)
        self._escalating = True
        if idempotent(cmd):
            self._step(Escalation.RETRY)
            try:
                resp = await self.execute(cmd)
            except CommandTimeout:
                pass
            else:
                self._recovered()
                return resp
        self._step(Escalation.RESET)
        reset = False
        try:
            if (await self.execute(Command("ATZ", timeout=self.config.command_timeout))).ok:
                await reinitialise(self)
                reset = True
        except CommandTimeout:
            pass
        if reset:
            self._recovered()
            raise timeout
        self._step(Escalation.REOPEN)
        self._lose(_Reopen(f"{self.name}: reopening after a hang"))
        raise timeout

    def _recovered(self) -> None:
        self._escalating = False
        self._set_state(ModemState.READY)

    # --- sending --------------------------------------------------------------------------

    async def send(self, pdu: SubmitPdu, *, more: bool = False) -> int:
        """Send one part; return its TP-MR. ``more``: further parts of the same message
        follow (AT+CMMS=2 keeps the link up, TS 27.005 §3.5.6)."""
        if self.state is not ModemState.READY:
            raise ModemDown(f"{self.name} is {self.state}")
        self._sends_waiting += 1
        acquired = False
        try:
            async with self._lock:
                self._sends_waiting -= 1
                acquired = True
                if self.state is not ModemState.READY:
                    raise ModemDown(f"{self.name} is {self.state}")
                if more and self.config.use_cmms and self.cmms_supported and not self.cmms_on:
                    # TS 27.005 §3.5.6 mode 2: keep the relay link open between parts; the
                    # modem closes it by itself after a few idle seconds, the mode stays.
                    resp = await self._guarded(self.command_for("AT+CMMS=2"))
                    self.cmms_supported = self.cmms_on = resp.ok
                cmd = Command(
                    f"AT+CMGS={pdu.tpdu_length}",
                    timeout=self.config.send_timeout,
                    prompt_timeout=self.config.prompt_timeout,
                    pdu=pdu.hex.encode("ascii"),
                )
                self._pdu_written = False
                try:
                    resp = await self._guarded(cmd)
                except (CommandTimeout, ModemGone) as exc:
                    if not self._pdu_written:
                        raise  # no PDU reached the modem: nothing can have been sent
                    # The modem may have sent it and failed to say so: resending it blindly
                    # would put a duplicate on the handset (TP-MR is not end-to-end).
                    raise SendOutcomeUnknown(cmd.text, exc) from exc
        finally:
            if not acquired:
                self._sends_waiting -= 1
        error = resp.error()
        if error is not None:
            self._note_error(error)
            raise error
        values = resp.info("+CMGS")
        try:
            mr = int(values[0].split(",")[0])
        except (IndexError, ValueError):
            mr = -1  # sent, but the modem did not say which TP-MR (status reports won't match)
        self.sent += 1
        return mr

    # --- inbound --------------------------------------------------------------------------

    async def _inbound_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = [t for t in (self._reassembler.next_expiry(), self._sweep_at) if t is not None]
            try:
                async with asyncio.timeout_at(min(due, default=None)):
                    kind, value = await self._queue.get()
            except TimeoutError:
                now = loop.time()
                for message in self._reassembler.expire(now):
                    await self._hand_over(message)
                if self._sweep_at is not None and now >= self._sweep_at:
                    self._sweep_at = None
                    self._queue.put_nowait(("sweep", None))
                continue
            try:
                if kind == "stored":
                    assert isinstance(value, tuple)
                    await self._read_stored(*value)
                elif kind == "routed":
                    assert isinstance(value, bytes)
                    await self._routed(value)
                else:
                    await self.read_all_stored()
            except ModemError as exc:
                # Escalation has dealt with the modem; what was stored is still there, so
                # sweep the storage once the modem is ready again.
                self._note_error(exc)
                await self.wait_state(ModemState.READY)
                if kind != "sweep":
                    self._queue.put_nowait(("sweep", None))

    async def _in_storage(self, mem: str | None, text: str, **kw: object) -> Response:
        """Run ``text`` (lock held) against storage ``mem``, or the usual one when None.

        A status report may sit in another storage ("SR") than the messages: +CPMS <mem1>
        selects where AT+CMGR/AT+CMGL/AT+CMGD act (TS 27.005 §3.2.2), so switch for this one
        command and back at once (the +CMTI indexes mean the usual storage). The lock is not
        held across a hand-over, so reading and deleting are two short switches."""
        cmd = self.command_for(text, **kw)
        if mem is None:
            return await self._guarded(cmd)
        self._check(await self._guarded(self.command_for(f'AT+CPMS="{mem}"')))
        back = self.command_for("AT+CPMS=" + ",".join(f'"{s}"' for s in self.storages))
        try:
            resp = await self._guarded(cmd)
        except ModemError:
            await self._guarded(back)
            raise
        # Not in a ``finally``: when cancelled (closing) nothing more is written; start-up and
        # reinitialise select the usual storage again anyway.
        await self._guarded(back)
        return resp

    @staticmethod
    def _check(resp: Response) -> Response:
        error = resp.error()
        if error is not None:
            raise error
        return resp

    async def _read_stored(self, mem: str, index: int) -> None:
        other = mem if self.storages and mem != self.storages[0] else None
        async with self._lock:
            resp = await self._in_storage(other, f"AT+CMGR={index}")
        pdu = parse_cmgr(resp.lines) if resp.ok else None
        if pdu is None:
            log.warning("modem %s: could not read message %s/%d (%s)", self.name, mem, index,
                        resp.result)
            return
        # Read -> hand over -> delete, in the other storage too: deleted only once handed over.
        await self.process_pdu(pdu, index if other is None else (other, index))

    async def _routed(self, pdu: bytes) -> None:
        kept = await self.process_pdu(pdu, None)
        if self.needs_cnma:
            # TS 27.005 §3.4.4: +CNMA within the network's timeout once we kept the message;
            # in PDU mode <n>=2 sends RP-ERROR instead, so the SC delivers it again later.
            async with self._lock:
                await self._guarded(self.command_for("AT+CNMA" if kept else "AT+CNMA=2"))

    async def process_pdu(self, pdu: bytes, index: Location | None) -> bool:
        """Decode one stored/routed PDU, hand it over, then delete what was handed over.
        ``index``: where it is stored (an index in the usual storage, or (storage, index) for
        another one such as "SR"); None when routed. False when the receiver refused it (it
        stays stored, or is negatively acknowledged)."""
        try:
            decoded = decode_pdu(pdu)
        except CodecError as exc:
            # Kept stored for a person to look at; a routed one is acknowledged all the same
            # (the SC would only send the same undecodable bytes again).
            log.warning("modem %s: undecodable PDU at %s: %s", self.name, index, exc)
            return True
        loop = asyncio.get_running_loop()
        if isinstance(decoded, StatusReport):
            report = DeliveryReport(
                self.name, decoded.message_reference, decoded.recipient, decoded.status,
                str(decoded.category), decoded.discharge_time,
            )
            try:
                await self._on_report(report)
            except Exception:
                log.exception("modem %s: report hand-over failed; kept on the modem", self.name)
                if index is not None:
                    self._sweep_later()
                return False
            await self._delete([index])
            return True
        if not isinstance(decoded, Deliver):
            await self._delete([index])  # an SMS-SUBMIT in the inbox: nothing to hand over
            return True
        concat = decoded.concat
        part = InboundPart(
            decoded.originator,
            decoded.text if decoded.text is not None else decoded.payload.hex(),
            decoded.scts,
            concat.reference if concat else None,
            concat.total if concat else 1,
            concat.seq if concat else 1,
            concat.ref_bits if concat else 8,
            index,
        )
        if isinstance(index, int):
            self._held.add(index)
        done = self._reassembler.add(part, loop.time())
        return True if done is None else await self._hand_over(done)

    async def _hand_over(self, message: Reassembled) -> bool:
        inbound = InboundMessage(
            self.name, message.originator, message.text, message.scts, message.parts,
            message.total,
        )
        try:
            await self._on_message(inbound)
        except Exception:
            # The receiver could not keep it (database busy...): leave it stored on the modem;
            # start-up or polling reads it again. Never delete what was not handed over.
            log.exception("modem %s: inbound hand-over failed; kept on the modem", self.name)
            self._held.difference_update(t for t in message.tokens if isinstance(t, int))
            if any(t is not None for t in message.tokens):
                self._sweep_later()
            return False
        self.inbound += 1
        await self._delete(list(message.tokens))
        return True

    def _sweep_later(self) -> None:
        """A stored message or report was refused: list the storage again after
        ``handover_retry`` seconds (without polling nothing else would read it before the
        next start-up)."""
        if self._sweep_at is None:
            self._sweep_at = asyncio.get_running_loop().time() + self.config.handover_retry

    async def _delete(self, tokens: list[object]) -> None:
        for token in tokens:
            if isinstance(token, int):
                mem, index = None, token
                self._held.discard(index)
            elif isinstance(token, tuple):
                mem, index = token
            else:
                continue  # routed: nothing stored
            async with self._lock:
                resp = await self._in_storage(mem, f"AT+CMGD={index}")
            if not resp.ok:
                log.warning("modem %s: AT+CMGD=%d failed: %s", self.name, index, resp.result)

    async def read_all_stored(self) -> None:
        """AT+CMGL=4 (all messages, PDU mode) -> process each, then the same for status
        reports in their own storage ("SR"); used at start-up, by polling and after errors."""
        async with self._lock:
            resp = await self._guarded(self.command_for("AT+CMGL=4", timeout=30.0))
        if not resp.ok:
            raise resp.error() or ModemError("AT+CMGL failed")
        for index, _stat, pdu in parse_cmgl(resp.lines):
            if index not in self._held:
                await self.process_pdu(pdu, index)
        mem = self.report_storage
        if mem is None or not self.storages or mem == self.storages[0]:
            return
        try:
            async with self._lock:
                resp = await self._in_storage(mem, "AT+CMGL=4", timeout=30.0)
        except (CmsError, CmeError, CommandFailed) as exc:  # the modem refuses to list it
            log.warning("modem %s: cannot list storage %s: %s", self.name, mem, exc)
            return
        for index, _stat, pdu in parse_cmgl(resp.lines):
            await self.process_pdu(pdu, (mem, index))

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_interval)
            if self._sends_waiting:
                continue
            try:
                await self.read_all_stored()
            except ModemError as exc:
                self._note_error(exc)

    # --- health ---------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_interval)
            try:
                await self.poll_health()
            except ModemError as exc:  # a timeout was escalated already; keep the schedule
                self._note_error(exc)

    async def poll_health(self) -> None:
        """AT+CSQ, AT+CREG?, AT+COPS? -- each only when no send is waiting for the modem."""
        from drivers.modem.responses import parse_cops

        for text in ("AT+CSQ", "AT+CREG?", "AT+CGREG?", "AT+COPS?"):
            if self._sends_waiting or self._lock.locked():
                return
            async with self._lock:
                resp = await self._guarded(self.command_for(text))
            if not resp.ok:
                continue
            if text == "AT+CSQ" and resp.info("+CSQ"):
                self.signal = parse_csq(resp.info("+CSQ")[0])
            elif text == "AT+CREG?" and resp.info("+CREG"):
                self.registration = parse_creg(resp.info("+CREG")[0], urc=False)
            elif text == "AT+CGREG?" and resp.info("+CGREG"):
                self.packet_registration = parse_creg(resp.info("+CGREG")[0], urc=False)
            elif text == "AT+COPS?" and resp.info("+COPS"):
                self.operator = parse_cops(resp.info("+COPS")[0])
