"""Modem simulator: a real pseudo-terminal answering AT commands like a chosen real device.

``async with SimModem(profile("huawei-e1752"), send_latency=0.01) as sim:`` opens a pty and
serves it on the running event loop; ``sim.path`` is the device a driver opens. Control methods
inject what real modems do: failures (:meth:`fail_next_send`), a SIM busy after the PIN, inbound
messages (:meth:`deliver`), status reports (:meth:`status_report`, or automatically for submits
that ask for one), URCs in the middle of a response (:meth:`urc_in_next_response`), a hang
(:meth:`hang`) and an unplug (:meth:`unplug`, then :meth:`replug` on a new device path). Every
part it was asked to send is kept in :attr:`records` with timestamps.

Commands follow 3GPP TS 27.005 (SMS) and TS 27.007 (general); device quirks come from
:mod:`drivers.sim.modem_profiles`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from drivers.sim.modem_profiles import ModemProfile
from drivers.sim.modem_sms import SmsStore, submit_summary

CTRL_Z = 0x1A
ESC = 0x1B
_EXT_RE = re.compile(r"^([+^][A-Z]+)(.*)$")
# Commands that need a ready SIM (TS 27.007 §9.2: +CME ERROR 11 "SIM PIN required", 14 "SIM busy").
_SIM_COMMANDS = frozenset(
    {"+CIMI", "+CPMS", "+CSCA", "+CMGL", "+CMGR", "+CMGD", "+CMGS", "+CNMI", "+CSMS", "+CMMS"}
)


@dataclass(frozen=True, slots=True)
class SentRecord:
    """One AT+CMGS the simulator answered: what, to whom, when (``clock`` seconds)."""

    received: float  # the PDU arrived
    at: float  # the answer (+CMGS or +CMS ERROR) was written: the part left the "modem"
    pdu: bytes  # SCA first, as written after the prompt
    length: int  # the <length> of AT+CMGS
    mr: int | None  # TP-MR answered in +CMGS, None when failed
    recipient: str
    status_report: bool
    error: int | None  # +CMS ERROR code answered instead (injected failure)


class SimModem:
    """One simulated modem on a pty (see the module docstring)."""

    def __init__(
        self,
        profile: ModemProfile,
        *,
        imei: str = "356938035643809",
        imsi: str = "234150000000001",
        pin: str | None = None,
        sim_busy_seconds: float = 0.0,
        send_latency: float = 3.0,
        smsc: str = "+447785016005",
        operator: str = "SimTel",
        signal: int = 20,
        registration: int = 1,
        status_report_delay: float | None = None,
        huawei_urc_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile = profile
        self.imei = imei
        self.imsi = imsi
        self.pin = pin
        self.sim_busy_seconds = sim_busy_seconds
        self.send_latency = send_latency
        self.smsc = smsc
        self.operator = operator
        self.signal = signal
        self.registration = registration
        self.status_report_delay = status_report_delay
        self.huawei_urc_interval = huawei_urc_interval
        self.clock = clock
        self.records: list[SentRecord] = []
        self.commands: list[str] = []  # every command line received, in order
        self.unacknowledged = 0  # +CMT/+CDS routed while +CSMS service 1 and not yet +CNMA'd
        self.negative_acks = 0  # AT+CNMA=2 received (the network would deliver again)
        self.store = SmsStore(profile.index_base)
        self._fails: deque[int] = deque()
        self._urcs_next: deque[bytes] = deque()
        self._hung = False
        self._hang_recovers_on_atz = False
        self._hang_left: int | None = None
        self._hang_after_pdu: bool | None = None
        self.ignored = 0  # command lines a hang swallowed
        self._unplugged = False
        self._master = -1
        self._slave = -1
        self.path = ""
        self._mr = 0
        self._inbox: asyncio.Queue[str] = asyncio.Queue()
        self._rx = bytearray()
        self._pdu_future: asyncio.Future[bytes] | None = None
        self._out = bytearray()
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._activity = asyncio.Event()  # set and replaced on every change worth waiting for
        self._reset_device_state()

    # --- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> SimModem:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._open_pty()
        self._tasks.append(self._tg.create_task(self._serve(), name=f"sim-modem-{self.imei}"))
        if self.profile.huawei_urcs:
            self._tasks.append(self._tg.create_task(self._huawei_urcs(), name="sim-huawei-urcs"))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close_pty()
        for task in self._tasks:
            task.cancel()
        assert self._tg is not None
        await self._tg.__aexit__(exc_type, exc, tb)

    def _open_pty(self) -> None:
        self._master, self._slave = os.openpty()
        # Raw line discipline: no kernel echo, no CR/LF translation (what a USB serial port is).
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        asyncio.get_running_loop().add_reader(self._master, self._on_readable)
        self._unplugged = False
        for line in self.profile.start_up_lines:
            self._write(self._line(line))

    def _close_pty(self) -> None:
        if self._master >= 0:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._master)
            loop.remove_writer(self._master)
            os.close(self._master)
            os.close(self._slave)
            self._master = self._slave = -1
        self._out.clear()

    def _reset_device_state(self) -> None:
        """Power-on state (also after ATZ for the volatile settings)."""
        self.echo = self.profile.echo
        self.cmee = 0
        self.pdu_mode = False
        self.cnmi = (0, 0, 0, 0, 0)
        self.cmms = 0
        self.curc = self.profile.huawei_urcs
        self.csms = self.profile.csms_service
        self.pin_ok = self.pin is None
        self.sim_busy_until = 0.0
        self.cfun_busy_until = 0.0
        self.mems = tuple(s[0] for s in self.profile.storages)

    # --- control methods (tests, the demo, the CLI) ---------------------------------------

    def fail_next_send(self, code: int, count: int = 1) -> None:
        """Answer the next ``count`` AT+CMGS with ``+CMS ERROR: code`` (38, 42, 500, 512...)."""
        self._fails.extend([code] * count)

    def clear_failures(self) -> None:
        self._fails.clear()

    def urc_in_next_response(self, raw: str) -> None:
        """Put this URC line between the information lines and the final result of the next
        command (e.g. ``+CMTI: "SM",3`` in the middle of ``AT+CSQ``)."""
        self._urcs_next.append(raw.encode("ascii"))

    def hang(self, *, recover_on_atz: bool = False, commands: int | None = None) -> None:
        """Stop answering (a wedged USB stick); optionally come back when ATZ arrives, or after
        ignoring ``commands`` command lines (the next one is answered again)."""
        self._hung = True
        self._hang_recovers_on_atz = recover_on_atz
        self._hang_left = commands

    def hang_after_next_pdu(self, *, sent: bool = True, recover_on_atz: bool = False) -> None:
        """The next AT+CMGS takes its PDU, then the modem stops answering (no +CMGS, no error):
        with ``sent`` the part did leave (it is in :attr:`records` with its TP-MR), else not."""
        self._hang_after_pdu = sent
        self._hang_recovers_on_atz = recover_on_atz
        self._hang_left = None

    def resume(self) -> None:
        self._hung = False
        self._hang_left = None

    def unplug(self) -> None:
        """Close the pty: the driver's port fails with an I/O error and the device vanishes."""
        self._unplugged = True
        self._close_pty()
        self.path = ""  # the device node is gone; its number may go to another pty
        if self._pdu_future is not None and not self._pdu_future.done():
            self._pdu_future.cancel()

    def replug(self) -> str:
        """Come back on a new pty (ports renumber on replug); stored messages survive."""
        if not self._unplugged:
            raise RuntimeError("replug() without unplug()")
        self._reset_device_state()
        self._hung = False
        self._rx.clear()
        self._open_pty()
        return self.path

    def deliver(self, pdu: bytes) -> int | None:
        """An SMS-DELIVER (SCA first) arrives from the network; returns its storage index
        (None when routed as +CMT). Routed or stored according to +CNMI <mt> (TS 27.005 §3.4.1)."""
        mt = self.cnmi[1] if self.profile.cnmi is not None else 0
        if mt in (2, 3):
            self._route("+CMT: ,", pdu)
            return None
        index = self.store.put(self.mems[2], 0, pdu)
        if mt == 1:
            self._write(self._line(f'+CMTI: "{self.mems[2]}",{index}'))
        return index

    def status_report(self, pdu: bytes) -> int | None:
        """An SMS-STATUS-REPORT arrives: +CDS (ds=1), stored with +CDSI (ds=2) or dropped (0)."""
        ds = self.cnmi[3] if self.profile.cnmi is not None else 0
        if ds == 1:
            self._route("+CDS: ", pdu)
            return None
        if ds == 2:
            # Modems that offer an "SR" storage keep reports there (Wavecom), others with the
            # messages.
            mem = "SR" if "SR" in self.profile.storages[0] else self.mems[2]
            index = self.store.put(mem, 0, pdu)
            self._write(self._line(f'+CDSI: "{mem}",{index}'))
            return index
        return None

    def _route(self, prefix: str, pdu: bytes) -> None:
        tpdu_len = len(pdu) - 1 - pdu[0]
        self._write(self._line(f"{prefix}{tpdu_len}") + pdu.hex().upper().encode() + self.eol)
        if self.csms == 1:
            self.unacknowledged += 1

    @property
    def eol(self) -> bytes:
        return self.profile.eol

    # --- pty I/O --------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._master < 0:
            return
        if not self._out:
            try:
                n = os.write(self._master, data)
            except BlockingIOError:
                n = 0
            except OSError:
                return
            data = data[n:]
            if not data:
                return
            asyncio.get_running_loop().add_writer(self._master, self._flush)
        self._out += data

    def _flush(self) -> None:
        try:
            n = os.write(self._master, self._out)
        except BlockingIOError:
            return
        except OSError:
            self._out.clear()
            n = 0
        del self._out[:n]
        if not self._out:
            asyncio.get_running_loop().remove_writer(self._master)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except OSError:  # EIO: nobody has the slave open right now
            return
        if self._hung:
            data = self._while_hung(data)
        for byte in data:
            self._byte(byte)

    def _while_hung(self, data: bytes) -> bytes:
        """What a hung modem makes of ``data``: nothing, unless it comes back; returns the bytes
        to process normally."""
        if self._hang_recovers_on_atz and b"ATZ" in data.upper():
            self._hung = False
            return data
        while self._hang_left is not None and self._hang_left > 0:
            cut = data.find(b"\r")
            if cut < 0:
                return b""
            self._hang_left -= 1
            self.ignored += 1
            self._pulse()
            data = data[cut + 1 :]
        if self._hang_left is None:
            if b"\r" in data:
                self.ignored += data.count(b"\r")
                self._pulse()
            return b""
        self._hung = False
        self._hang_left = None
        return data

    def _byte(self, byte: int) -> None:
        fut = self._pdu_future
        if fut is not None and not fut.done():
            if byte in (CTRL_Z, ESC):
                fut.set_result(bytes(self._rx) + bytes([byte]))
                self._rx.clear()
            else:
                self._rx.append(byte)
                if self.echo:
                    self._write(bytes([byte]))
            return
        if byte == 0x0D:  # V.250 §5.2.1: S3 (CR) ends the command line
            line = self._rx.decode("latin-1").strip()
            self._rx.clear()
            if self.echo:
                self._write(line.encode("latin-1") + b"\r")
            if line:
                self._inbox.put_nowait(line)
        elif byte not in (0x0A, ESC, CTRL_Z):  # outside PDU entry ESC/Ctrl-Z mean nothing
            self._rx.append(byte)

    def _line(self, text: str) -> bytes:
        return self.eol + text.encode("latin-1") + self.eol

    def _respond(self, lines: list[str], final: str = "OK") -> None:
        out = b"".join(self._line(ln) for ln in lines)
        while self._urcs_next:
            out += self._line(self._urcs_next.popleft().decode("ascii"))
        self._write(out + self._line(final))

    def _error(self, kind: str, code: int) -> None:
        if kind == "CMS":
            self._respond([], f"+CMS ERROR: {code}" if self.cmee else "ERROR")
        else:
            self._respond([], f"+CME ERROR: {code}" if self.cmee else "ERROR")

    # --- command processing ---------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            line = await self._inbox.get()
            if self._unplugged:
                continue
            self.commands.append(line)
            self._pulse()
            await self._command(line)
            self._pulse()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; checked when each command arrives, when it has
        been answered and when a hang swallows a command line."""
        while not predicate():
            await self._activity.wait()

    def _pulse(self) -> None:
        self._activity.set()
        self._activity = asyncio.Event()

    async def _huawei_urcs(self) -> None:
        # Huawei sticks chatter ^RSSI/^BOOT/^MODE until AT^CURC=0 (Gammu F_HUAWEI_INIT).
        n = 0
        while True:
            await asyncio.sleep(self.huawei_urc_interval)
            if self.curc and not self._hung:
                n += 1
                urc = (f"^RSSI:{self.signal}", "^BOOT:20952066,0,0,0,72", "^MODE:5,4")[n % 3]
                self._write(self._line(urc))

    async def _command(self, line: str) -> None:
        up = line.upper()
        if not up.startswith("AT"):
            return self._respond([], "ERROR")
        body = line[2:]
        now = self.clock()
        if now < self.cfun_busy_until and body.upper() not in ("", "Z"):
            return self._error("CME", 515)  # Wavecom: "init or command processing in progress"
        m = _EXT_RE.match(body.upper())
        if m is None:
            return self._basic(body.upper())
        name, rest = m.group(1), body[len(m.group(1)) :]
        if name in _SIM_COMMANDS:
            if not self.pin_ok:
                return self._error("CME", 11)
            if now < self.sim_busy_until:
                return self._error("CME", 14)
        handler = _HANDLERS.get(name)
        if handler is None or (name == "^CURC" and not self.profile.huawei_urcs):
            return self._respond([], self.profile.unsupported)
        if name == "+CMMS" and not self.profile.cmms:
            return self._respond([], self.profile.unsupported)
        await handler(self, rest)

    def _basic(self, body: str) -> None:
        if body == "":
            return self._respond([])
        if body in ("Z", "Z0"):
            pin_ok, busy = self.pin_ok, self.sim_busy_until
            self._reset_device_state()
            self.pin_ok, self.sim_busy_until = pin_ok, busy  # ATZ resets settings, not the SIM
            return self._respond([])
        if body in ("E0", "E1", "E"):
            self.echo = body == "E1"
            return self._respond([])
        if body in ("I", "I0"):
            return self._respond([self.profile.manufacturer, self.profile.model])
        return self._respond([], self.profile.unsupported)

    async def _identity(self, rest: str, value: str) -> None:
        self._respond([value] if rest in ("", "?") else [], "OK" if rest in ("", "?") else "ERROR")

    async def _cgmi(self, rest: str) -> None:
        await self._identity(rest, self.profile.manufacturer)

    async def _cgmm(self, rest: str) -> None:
        await self._identity(rest, self.profile.model)

    async def _cgmr(self, rest: str) -> None:
        await self._identity(rest, self.profile.revision)

    async def _cgsn(self, rest: str) -> None:
        await self._identity(rest, self.imei)

    async def _cimi(self, rest: str) -> None:
        await self._identity(rest, self.imsi)

    async def _cmee(self, rest: str) -> None:
        if rest.startswith("="):
            self.cmee = int(rest[1:] or 0)
            return self._respond([])
        self._respond([f"+CMEE: {self.cmee}"])

    async def _cpin(self, rest: str) -> None:
        if rest == "?":
            state = "READY" if self.pin_ok else "SIM PIN"
            if not self.profile.cpin_ok:  # Wavecom: no final result after +CPIN:
                return self._write(self._line(f"+CPIN: {state}"))
            return self._respond([f"+CPIN: {state}"])
        given = rest.lstrip("=").strip('"')
        if self.pin_ok:
            return self._error("CME", 3)
        if given != self.pin:
            return self._error("CME", 16)
        self.pin_ok = True
        self.sim_busy_until = self.clock() + self.sim_busy_seconds
        self._respond([])

    async def _cfun(self, rest: str) -> None:
        if rest == "?":
            return self._respond(["+CFUN: 1"])
        self.cfun_busy_until = self.clock() + self.profile.cfun_busy_seconds
        self._respond([])

    async def _cmgf(self, rest: str) -> None:
        if rest == "?":
            return self._respond([f"+CMGF: {0 if self.pdu_mode else 1}"])
        if rest == "=?":
            return self._respond(["+CMGF: (0,1)"])
        self.pdu_mode = rest == "=0"
        self._respond([])

    async def _cpms(self, rest: str) -> None:
        storages = self.profile.storages
        if rest == "=?":
            groups = ",".join("(" + ",".join(f'"{m}"' for m in s) + ")" for s in storages)
            return self._respond([f"+CPMS: {groups}"])
        if rest == "?":
            parts = [f'"{m}",{self.store.used(m)},{self.store.capacity}' for m in self.mems]
            return self._respond(["+CPMS: " + ",".join(parts)])
        wanted = [m.strip().strip('"') for m in rest.lstrip("=").split(",")]
        if not 1 <= len(wanted) <= 3 or any(m not in storages[i] for i, m in enumerate(wanted)):
            return self._error("CMS", 302) if self.cmee else self._respond([], "ERROR")
        self.mems = tuple(wanted) + self.mems[len(wanted) :]
        counts = [f"{self.store.used(m)},{self.store.capacity}" for m in self.mems]
        self._respond(["+CPMS: " + ",".join(counts)])

    async def _cnmi(self, rest: str) -> None:
        support = self.profile.cnmi
        if support is None:
            return self._respond([], self.profile.unsupported)
        if rest == "=?":
            groups = ",".join("(" + ",".join(map(str, s)) + ")" for s in support)
            return self._respond([f"+CNMI: {groups}"])
        if rest == "?":
            return self._respond(["+CNMI: " + ",".join(map(str, self.cnmi))])
        try:
            values = [int(v) for v in rest.lstrip("=").split(",")]
        except ValueError:
            return self._error("CMS", 302)
        values += [0] * (5 - len(values))
        if any(v not in support[i] for i, v in enumerate(values[:5])):
            return self._error("CMS", 303)
        self.cnmi = tuple(values[:5])  # type: ignore[assignment]
        self._respond([])

    async def _csms(self, rest: str) -> None:
        if rest == "?":
            return self._respond([f"+CSMS: {self.csms},1,1,1"])
        if rest == "=?":
            return self._respond(["+CSMS: (0,1)"])
        self.csms = int(rest.lstrip("=") or 0)
        self._respond(["+CSMS: 1,1,1"])

    async def _cnma(self, rest: str) -> None:
        if self.unacknowledged == 0:
            return self._error("CMS", 340)  # TS 27.005: no +CNMA acknowledgement expected
        self.unacknowledged -= 1
        if rest.startswith("=2"):  # PDU mode <n>=2: RP-ERROR, the SC will try again
            self.negative_acks += 1
        self._respond([])

    async def _csca(self, rest: str) -> None:
        if rest == "?":
            return self._respond([f'+CSCA: "{self.smsc}",145'])
        self.smsc = rest.lstrip("=").split(",")[0].strip('"')
        self._respond([])

    async def _csq(self, rest: str) -> None:
        self._respond([f"+CSQ: {self.signal},99"])

    async def _creg(self, rest: str) -> None:
        self._respond([f"+CREG: 0,{self.registration}"] if rest == "?" else [])

    async def _cgreg(self, rest: str) -> None:
        self._respond([f"+CGREG: 0,{self.registration}"] if rest == "?" else [])

    async def _cops(self, rest: str) -> None:
        self._respond([f'+COPS: 0,0,"{self.operator}"'] if rest == "?" else [])

    async def _curc(self, rest: str) -> None:
        self.curc = rest != "=0"
        self._respond([])

    async def _cmms(self, rest: str) -> None:
        if rest == "?":
            return self._respond([f"+CMMS: {self.cmms}"])
        self.cmms = int(rest.lstrip("=") or 0)
        self._respond([])

    async def _cmgl(self, rest: str) -> None:
        stat = int(rest.lstrip("=") or 4)
        lines: list[str] = []
        for index, (st, pdu) in self.store.items(self.mems[0]):
            if stat in (4, st):
                lines += [f"+CMGL: {index},{st},,{len(pdu) - 1 - pdu[0]}", pdu.hex().upper()]
                self.store.mark_read(self.mems[0], index)
        self._respond(lines)

    async def _cmgr(self, rest: str) -> None:
        index = int(rest.lstrip("="))
        entry = self.store.get(self.mems[0], index)
        if entry is None:
            return self._error("CMS", 321)
        st, pdu = entry
        self.store.mark_read(self.mems[0], index)
        self._respond([f"+CMGR: {st},,{len(pdu) - 1 - pdu[0]}", pdu.hex().upper()])

    async def _cmgd(self, rest: str) -> None:
        args = [int(a) for a in rest.lstrip("=").split(",")]
        flag = args[1] if len(args) > 1 else 0
        if flag:
            self.store.delete_flagged(self.mems[0], flag)
        elif not self.store.delete(self.mems[0], args[0]):
            return self._error("CMS", 321)
        self._respond([])

    async def _cmgs(self, rest: str) -> None:
        if not self.pdu_mode:
            return self._error("CMS", 302)
        try:
            length = int(rest.lstrip("="))
        except ValueError:
            return self._error("CMS", 304)
        self._pdu_future = asyncio.get_running_loop().create_future()
        self._write(self.eol + b"> ")
        try:
            raw = await self._pdu_future
        except asyncio.CancelledError:
            if self._unplugged:
                return
            raise
        finally:
            self._pdu_future = None
        received = self.clock()
        if raw[-1] == ESC:  # TS 27.005 §3.5.1: ESC cancels; "Abortion is acknowledged with OK"
            return self._respond([])
        try:
            pdu = bytes.fromhex(raw[:-1].decode("ascii"))
        except ValueError:
            return self._error("CMS", 304)
        if not pdu or len(pdu) - 1 - pdu[0] != length:
            return self._error("CMS", 304)  # "invalid PDU mode parameter": <length> mismatch
        summary = submit_summary(pdu)
        await asyncio.sleep(self.send_latency)
        if self._unplugged:
            return
        if self._hang_after_pdu is not None:
            sent, self._hang_after_pdu = self._hang_after_pdu, None
            self._hung = True
            if sent:
                self.records.append(
                    SentRecord(received, self.clock(), pdu, length, self._mr, summary.recipient,
                               summary.status_report, None)
                )
                self._mr = (self._mr + 1) % 256
            return
        if self._fails:
            code = self._fails.popleft()
            self.records.append(
                SentRecord(
                    received,
                    self.clock(),
                    pdu,
                    length,
                    None,
                    summary.recipient,
                    summary.status_report,
                    code,
                )
            )
            return self._error("CMS", code)
        mr = self._mr
        self._mr = (self._mr + 1) % 256
        self.records.append(
            SentRecord(
                received,
                self.clock(),
                pdu,
                length,
                mr,
                summary.recipient,
                summary.status_report,
                None,
            )
        )
        self._respond([f"+CMGS: {mr}"])
        if summary.status_report and self.status_report_delay is not None:
            assert self._tg is not None
            self._tasks.append(
                self._tg.create_task(self._report_later(mr, summary.recipient), name="sim-cds")
            )

    async def _report_later(self, mr: int, recipient: str) -> None:
        from drivers.sim.modem_sms import delivered_report

        assert self.status_report_delay is not None
        await asyncio.sleep(self.status_report_delay)
        if not self._unplugged:
            self.status_report(delivered_report(mr, recipient))


_HANDLERS = {
    "+CGMI": SimModem._cgmi,
    "+CGMM": SimModem._cgmm,
    "+CGMR": SimModem._cgmr,
    "+CGSN": SimModem._cgsn,
    "+CIMI": SimModem._cimi,
    "+CMEE": SimModem._cmee,
    "+CPIN": SimModem._cpin,
    "+CFUN": SimModem._cfun,
    "+CMGF": SimModem._cmgf,
    "+CPMS": SimModem._cpms,
    "+CNMI": SimModem._cnmi,
    "+CSMS": SimModem._csms,
    "+CNMA": SimModem._cnma,
    "+CSCA": SimModem._csca,
    "+CSQ": SimModem._csq,
    "+CREG": SimModem._creg,
    "+CGREG": SimModem._cgreg,
    "+COPS": SimModem._cops,
    "^CURC": SimModem._curc,
    "+CMMS": SimModem._cmms,
    "+CMGL": SimModem._cmgl,
    "+CMGR": SimModem._cmgr,
    "+CMGD": SimModem._cmgd,
    "+CMGS": SimModem._cmgs,
}


async def serve_until_cancelled(sim: SimModem, on_ready: Callable[[str], None]) -> None:
    """Run ``sim`` until the task is cancelled (the CLI's process mode)."""
    async with sim:
        on_ready(sim.path)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
