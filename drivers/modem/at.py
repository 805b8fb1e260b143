"""The AT channel: a pure protocol core (no I/O) between our driver and a GSM modem.

Fed the bytes the modem sent (:meth:`AtChannel.feed`), it emits events: the final result of the
command in flight with its information lines (:class:`Response`), the ``> `` prompt of
``AT+CMGS`` (:class:`Prompt`, carrying the PDU bytes to write next), unsolicited result codes
(:class:`Urc`, including the PDU line of ``+CMT``/``+CDS``) even in the middle of a response, and
deadlines that passed (:class:`Timeout`, from :meth:`AtChannel.tick`). It refuses a second
command while one is in flight (:class:`~drivers.modem.errors.ChannelBusy`).

Framing follows 3GPP TS 27.007 §4 / V.250 §5.7 (``<CR><LF>result<CR><LF>``) but tolerates what
real modems do (``../shared/reference/protocols.md`` §5.8): echo on, stray ``\\r`` (Huawei sends
``\\r\\r\\n``), garbage bytes, vendor final results (Huawei ``COMMAND NOT SUPPORT``) and a missing
``OK`` after ``+CPIN:`` (Wavecom), handled by an optional grace deadline per command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from drivers.modem.errors import (
    ChannelBusy,
    CmeError,
    CmsError,
    CommandFailed,
    CommandTimeout,
    ModemError,
)

CTRL_Z = b"\x1a"  # TS 27.005 §3.5.1: ends the PDU of +CMGS
ESC = b"\x1b"  # TS 27.005 §3.5.1: cancels the PDU of +CMGS

# Unsolicited result codes we recognise by name (TS 27.005 §3.4.1 +CMTI/+CMT/+CDS/+CDSI/+CBM;
# TS 27.007 §7.2 +CREG, §10.1.20 +CGREG, +CEREG; V.250 RING; Huawei ^RSSI/^BOOT/^MODE/...;
# SIMCom start-up lines). A line whose name is the one the command in flight answers with is
# an information line instead (``+CREG:`` while ``AT+CREG?`` runs).
URC_NAMES: frozenset[str] = frozenset(
    {
        "+CMTI", "+CMT", "+CDS", "+CDSI", "+CBM", "+CBMI", "+CREG", "+CGREG", "+CEREG",
        "+CUSD", "+CIEV", "+CPIN", "+CFUN", "RING", "NO CARRIER", "^RSSI", "^BOOT", "^MODE",
        "^SRVST", "^SIMST", "^HCSQ", "^DSFLOWRPT", "^RSSILVL", "RDY", "CALL READY", "SMS READY",
    }
)
# URCs followed by one line of PDU hex (TS 27.005 §3.4.1: "+CMT: [<alpha>],<length><CR><LF><pdu>").
URC_WITH_PDU: frozenset[str] = frozenset({"+CMT", "+CDS", "+CBM"})


class ResultKind(StrEnum):
    OK = "ok"
    ERROR = "error"  # plain ERROR
    CME = "cme"  # +CME ERROR: n (TS 27.007 §9.2)
    CMS = "cms"  # +CMS ERROR: n (TS 27.005 §3.2.5)
    VENDOR = "vendor"  # a vendor final result such as Huawei's COMMAND NOT SUPPORT


# Vendor / V.250 final results other than OK and ERROR.
_VENDOR_FINALS: frozenset[str] = frozenset(
    {"COMMAND NOT SUPPORT", "TOO MANY PARAMETERS", "BUSY", "NO ANSWER", "NO DIALTONE"}
)
_ERROR_RE = re.compile(r"^\+(CME|CMS) ERROR:\s*(.*)$")
_COMMAND_NAME_RE = re.compile(r"^AT([+^$#%*][A-Z0-9]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Command:
    """One AT command. ``prompt_timeout`` set means it expects ``> `` and then writes ``pdu``."""

    text: str
    timeout: float = 10.0
    prompt_timeout: float | None = None
    pdu: bytes = b""
    # Wavecom answers AT+CPIN? with "+CPIN: READY" and no OK: after a line with this prefix the
    # command completes on its own once ``implicit_grace`` seconds pass without a final result.
    implicit_ok_after: str | None = None
    implicit_grace: float = 0.3

    @property
    def answer_name(self) -> str | None:
        """The prefix information lines of this command carry (``+CMGR`` for ``AT+CMGR=1``)."""
        m = _COMMAND_NAME_RE.match(self.text)
        return m.group(1).upper() if m else None


# Commands that must not be sent twice after a timeout: the first may have taken effect
# (AT+CMGS/AT+CMSS: the part went out -> a duplicate; AT+CMGD: the index may hold a newer
# message by now; AT+CMGW stores another copy; AT+CNMA acknowledges the wrong message;
# AT+CPIN=: every attempt counts towards the PUK lock; ATD dials).
_NOT_IDEMPOTENT = ("AT+CMGS", "AT+CMSS", "AT+CMGD", "AT+CMGW", "AT+CNMA", "AT+CPIN=", "ATD")


def idempotent(command: Command) -> bool:
    """Whether ``command`` may be sent again after it timed out (hang escalation's retry)."""
    upper = command.text.upper()
    return not command.pdu and not upper.startswith(_NOT_IDEMPOTENT)


@dataclass(frozen=True, slots=True)
class Response:
    """The command finished: its information lines and final result."""

    command: str
    lines: tuple[str, ...]
    kind: ResultKind
    result: str  # the final result line as received ("OK", "+CMS ERROR: 42", ...)
    code: int | None = None  # CME/CMS numeric code
    implicit: bool = False  # completed without a final result (Wavecom +CPIN)

    @property
    def ok(self) -> bool:
        return self.kind is ResultKind.OK

    def error(self) -> ModemError | None:
        """The error this response stands for, or None when it is OK."""
        if self.kind is ResultKind.OK:
            return None
        if self.kind is ResultKind.CMS:
            return CmsError(self.code if self.code is not None else 500, self.command)
        if self.kind is ResultKind.CME:
            return CmeError(self.code, self.command, self.result)
        return CommandFailed(self.command, self.result)

    def check(self) -> Response:
        """Return self when OK, else raise the error it stands for."""
        err = self.error()
        if err is not None:
            raise err
        return self

    def info(self, name: str) -> list[str]:
        """Values of the information lines named ``name`` (``+CSQ`` -> ["20,99"])."""
        prefix = name + ":"
        return [ln[len(prefix):].strip() for ln in self.lines if ln.startswith(prefix)]


@dataclass(frozen=True, slots=True)
class Prompt:
    """``> `` arrived: write ``data`` (the PDU hex and Ctrl-Z) now."""

    command: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Urc:
    """An unsolicited result code: ``+CMTI: "SM",3`` -> name "+CMTI", value '"SM",3'."""

    name: str
    value: str
    pdu: str | None = None


@dataclass(frozen=True, slots=True)
class Timeout:
    """The command in flight passed its deadline waiting for ``stage`` ("prompt" / "result")."""

    command: str
    stage: str

    def error(self) -> CommandTimeout:
        return CommandTimeout(self.command, self.stage)


@dataclass(frozen=True, slots=True)
class Unexpected:
    """A line that belongs to nothing (no command in flight, not a URC): logged, never fatal."""

    line: str


Event = Response | Prompt | Urc | Timeout | Unexpected


@dataclass(slots=True)
class _InFlight:
    command: Command
    deadline: float
    stage: str  # "prompt" before "> " (commands with a PDU), then "result"
    lines: list[str] = field(default_factory=list)
    grace_deadline: float | None = None


def _clean(raw: bytes) -> str:
    # Garbage tolerance: keep printable ASCII only; PDU mode makes every useful line ASCII.
    return "".join(ch for ch in raw.decode("latin-1") if " " <= ch <= "~").strip()


def _parse_final(line: str) -> tuple[ResultKind, int | None] | None:
    if line == "OK":
        return ResultKind.OK, None
    if line == "ERROR":
        return ResultKind.ERROR, None
    if line in _VENDOR_FINALS:
        return ResultKind.VENDOR, None
    m = _ERROR_RE.match(line)
    if m:
        kind = ResultKind.CME if m.group(1) == "CME" else ResultKind.CMS
        arg = m.group(2).strip()
        return kind, int(arg) if arg.isdigit() else None
    return None


_REGISTRATION = frozenset({"+CREG", "+CGREG", "+CEREG"})


def _registration_urc(name: str, line: str) -> bool:
    # TS 27.007 §7.2: the read answer is "+CREG: <n>,<stat>[,...]" (second field a bare number);
    # the URC is "+CREG: <stat>[,<lac>,<ci>...]" (one field, or a quoted <lac> second).
    if name not in _REGISTRATION:
        return False
    fields = line.partition(":")[2].strip().split(",")
    return len(fields) < 2 or not fields[1].strip().isdigit()


def _urc_name(line: str) -> str:
    head, sep, _ = line.partition(":")
    return head.strip().upper() if sep else line.upper()


class AtChannel:
    """One modem's AT conversation. Time is passed in (seconds, any monotonic clock)."""

    __slots__ = ("_buffer", "_flight", "_urc_waiting_pdu")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._flight: _InFlight | None = None
        self._urc_waiting_pdu: Urc | None = None

    @property
    def busy(self) -> bool:
        return self._flight is not None

    @property
    def in_flight(self) -> Command | None:
        return self._flight.command if self._flight else None

    def send(self, command: Command, now: float) -> bytes:
        """Start ``command``; return the bytes to write. Raises ChannelBusy if one is in flight."""
        if self._flight is not None:
            raise ChannelBusy(
                f"{command.text!r} while {self._flight.command.text!r} is in flight"
            )
        if command.prompt_timeout is not None:
            self._flight = _InFlight(command, now + command.prompt_timeout, "prompt")
        else:
            self._flight = _InFlight(command, now + command.timeout, "result")
        return command.text.encode("ascii") + b"\r"

    def abort(self) -> None:
        """Forget the command in flight and any partial input (after a timeout or a reopen)."""
        self._flight = None
        self._buffer.clear()
        self._urc_waiting_pdu = None

    def next_deadline(self) -> float | None:
        f = self._flight
        if f is None:
            return None
        if f.grace_deadline is not None:
            return min(f.deadline, f.grace_deadline)
        return f.deadline

    def tick(self, now: float) -> list[Event]:
        """Emit what the passing of time decides: implicit completion or a timeout."""
        f = self._flight
        if f is None:
            return []
        if f.grace_deadline is not None and now >= f.grace_deadline:
            self._flight = None
            return [Response(f.command.text, tuple(f.lines), ResultKind.OK, "", implicit=True)]
        if now >= f.deadline:
            self._flight = None
            return [Timeout(f.command.text, f.stage)]
        return []

    def feed(self, data: bytes, now: float) -> list[Event]:
        """Consume bytes from the modem; return the events they complete, in order."""
        events: list[Event] = []
        self._buffer += data
        while True:
            cut = self._next_terminator()
            if cut < 0:
                break
            raw = bytes(self._buffer[:cut])
            del self._buffer[: cut + 1]
            line = _clean(raw)
            if line:
                self._line(line, now, events)
        self._maybe_prompt(now, events)
        return events

    def _next_terminator(self) -> int:
        cr = self._buffer.find(b"\r")
        lf = self._buffer.find(b"\n")
        if cr < 0:
            return lf
        if lf < 0:
            return cr
        return min(cr, lf)

    def _maybe_prompt(self, now: float, events: list[Event]) -> None:
        # TS 27.005 §3.5.1: the prompt is "<CR><LF><greater_than><space>" with no terminator.
        f = self._flight
        if f is None or f.stage != "prompt" or not self._buffer.endswith(b"> "):
            return
        self._buffer.clear()
        self._prompt(f, now, events)

    def _prompt(self, f: _InFlight, now: float, events: list[Event]) -> None:
        f.stage = "result"
        f.deadline = now + f.command.timeout
        events.append(Prompt(f.command.text, f.command.pdu + CTRL_Z))

    def _line(self, line: str, now: float, events: list[Event]) -> None:
        if self._urc_waiting_pdu is not None:
            urc = self._urc_waiting_pdu
            self._urc_waiting_pdu = None
            events.append(Urc(urc.name, urc.value, line))
            return
        f = self._flight
        if f is not None and self._is_echo(f, line):
            return
        if f is not None and f.stage == "prompt" and line in (">", "> "):
            self._prompt(f, now, events)
            return
        final = _parse_final(line)
        if f is not None and final is not None:
            self._flight = None
            kind, code = final
            events.append(Response(f.command.text, tuple(f.lines), kind, line, code))
            return
        name = _urc_name(line)
        answer = f.command.answer_name if f is not None else None
        if name in URC_NAMES and (name != answer or _registration_urc(name, line)):
            value = line.partition(":")[2].strip() if ":" in line else ""
            urc = Urc(name, value)
            if name in URC_WITH_PDU:
                self._urc_waiting_pdu = urc
            else:
                events.append(urc)
            return
        if f is None:
            events.append(Unexpected(line))
            return
        f.lines.append(line)
        pending = f.command.implicit_ok_after
        if pending is not None and line.startswith(pending):
            f.grace_deadline = now + f.command.implicit_grace

    @staticmethod
    def _is_echo(f: _InFlight, line: str) -> bool:
        # Echo on (ATE1): the modem repeats our command line, and the PDU typed after "> ".
        if line == f.command.text:
            return True
        if f.command.pdu:
            echoed = line.removeprefix(">").strip()
            return echoed == f.command.pdu.decode("ascii")
        return False
