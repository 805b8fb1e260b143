"""SMPP errors: command_status codes, their classification, and protocol errors by fault.

command_status values: SMPP 3.4 §5.1.3 (names as in smpplib ``consts.py`` and the spec table
reproduced in ``../shared/reference/protocols.md`` §4.6). SMPP 3.4 itself does not say which
statuses are temporary; the classification below is common practice (§4.6 "handling" column).
"""

from __future__ import annotations

from enum import Enum, IntEnum

from gateway.codec.errors import SmsgateError


class CommandStatus(IntEnum):
    """SMPP 3.4 §5.1.3 command_status. Unknown codes stay plain ints where they are carried."""

    ESME_ROK = 0x00
    ESME_RINVMSGLEN = 0x01
    ESME_RINVCMDLEN = 0x02
    ESME_RINVCMDID = 0x03
    ESME_RINVBNDSTS = 0x04
    ESME_RALYBND = 0x05
    ESME_RINVPRTFLG = 0x06
    ESME_RINVREGDLVFLG = 0x07
    ESME_RSYSERR = 0x08
    ESME_RINVSRCADR = 0x0A
    ESME_RINVDSTADR = 0x0B
    ESME_RINVMSGID = 0x0C
    ESME_RBINDFAIL = 0x0D
    ESME_RINVPASWD = 0x0E
    ESME_RINVSYSID = 0x0F
    ESME_RCANCELFAIL = 0x11
    ESME_RREPLACEFAIL = 0x13
    ESME_RMSGQFUL = 0x14
    ESME_RINVSERTYP = 0x15
    ESME_RINVNUMDESTS = 0x33
    ESME_RINVDLNAME = 0x34
    ESME_RINVDESTFLAG = 0x40
    ESME_RINVSUBREP = 0x42
    ESME_RINVESMCLASS = 0x43
    ESME_RCNTSUBDL = 0x44
    ESME_RSUBMITFAIL = 0x45
    ESME_RINVSRCTON = 0x48
    ESME_RINVSRCNPI = 0x49
    ESME_RINVDSTTON = 0x50
    ESME_RINVDSTNPI = 0x51
    ESME_RINVSYSTYP = 0x53
    ESME_RINVREPFLAG = 0x54
    ESME_RINVNUMMSGS = 0x55
    ESME_RTHROTTLED = 0x58
    ESME_RINVSCHED = 0x61
    ESME_RINVEXPIRY = 0x62
    ESME_RINVDFTMSGID = 0x63
    ESME_RX_T_APPN = 0x64
    ESME_RX_P_APPN = 0x65
    ESME_RX_R_APPN = 0x66
    ESME_RQUERYFAIL = 0x67
    ESME_RINVOPTPARSTREAM = 0xC0
    ESME_ROPTPARNOTALLWD = 0xC1
    ESME_RINVPARLEN = 0xC2
    ESME_RMISSINGOPTPARAM = 0xC3
    ESME_RINVOPTPARAMVAL = 0xC4
    ESME_RDELIVERYFAILURE = 0xFE
    ESME_RUNKNOWNERR = 0xFF


class StatusClass(Enum):
    """What a non-zero command_status means for the message or the bind."""

    OK = "ok"
    TEMPORARY = "temporary"  # retry this message later (with backoff)
    PERMANENT = "permanent"  # fail this message now, keep the carrier's code
    THROTTLE = "throttle"  # slow the bind down and resubmit; never fails the message
    LINK = "link"  # the session is wrong (not bound): rebind, then retry


# Common practice per protocols.md §4.6: queue-full and throttling slow the bind down (Sun JMS
# "adjust MAX_PAGES_PER_BIND", kannel-users); system errors and "temporary application error"
# are retried; bind-state errors are link-level; everything else about the message is permanent.
_THROTTLE = frozenset({CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL})
_TEMPORARY = frozenset(
    {
        CommandStatus.ESME_RSYSERR,
        CommandStatus.ESME_RX_T_APPN,
        CommandStatus.ESME_RSUBMITFAIL,
        CommandStatus.ESME_RDELIVERYFAILURE,
        CommandStatus.ESME_RUNKNOWNERR,
    }
)
_LINK = frozenset({CommandStatus.ESME_RINVBNDSTS})


def classify(status: int) -> StatusClass:
    """Classify a response's command_status (unknown vendor codes count as temporary: a
    carrier-specific code is more often a transient platform fault than a verdict on the text)."""
    if status == 0:
        return StatusClass.OK
    if status in _THROTTLE:
        return StatusClass.THROTTLE
    if status in _LINK:
        return StatusClass.LINK
    if status in _TEMPORARY:
        return StatusClass.TEMPORARY
    if status in CommandStatus._value2member_map_:
        return StatusClass.PERMANENT
    return StatusClass.TEMPORARY


def status_name(status: int) -> str:
    """``ESME_RTHROTTLED`` for known codes, ``0x000000AB`` for vendor codes."""
    try:
        return CommandStatus(status).name
    except ValueError:
        return f"0x{status:08X}"


class Fault(Enum):
    LOCAL = "local"  # we broke the protocol (a bug on our side)
    REMOTE = "remote"  # the peer did


class SmppError(SmsgateError):
    """Root of the SMPP driver's errors."""


class ProtocolError(SmppError):
    """A PDU that is illegal in the session's state, or that cannot be decoded.

    ``fault`` names who broke the protocol; ``status`` is the command_status to answer with
    (generic_nack or the request's response) when the PDU was the peer's.
    """

    def __init__(
        self,
        message: str,
        *,
        fault: Fault,
        status: int = CommandStatus.ESME_RSYSERR,
        sequence: int | None = None,
        command_id: int | None = None,
    ) -> None:
        super().__init__(message)
        self.fault = fault
        self.status = status
        self.sequence = sequence
        self.command_id = command_id


class LocalProtocolError(ProtocolError):
    def __init__(
        self,
        message: str,
        *,
        status: int = CommandStatus.ESME_RSYSERR,
        sequence: int | None = None,
        command_id: int | None = None,
    ) -> None:
        super().__init__(
            message, fault=Fault.LOCAL, status=status, sequence=sequence, command_id=command_id
        )


class RemoteProtocolError(ProtocolError):
    def __init__(
        self,
        message: str,
        *,
        status: int = CommandStatus.ESME_RSYSERR,
        sequence: int | None = None,
        command_id: int | None = None,
    ) -> None:
        super().__init__(
            message, fault=Fault.REMOTE, status=status, sequence=sequence, command_id=command_id
        )


class MalformedPdu(RemoteProtocolError):
    """A frame whose body cannot be decoded; ``frame_hex`` is logged, the PDU is nacked.

    ``fatal`` is set when the framing itself is broken (bad command_length): the stream cannot be
    resynchronised and the connection must be closed after the generic_nack.
    """

    def __init__(
        self,
        message: str,
        *,
        frame: bytes,
        status: int = CommandStatus.ESME_RINVCMDLEN,
        sequence: int | None = None,
        command_id: int | None = None,
        fatal: bool = False,
    ) -> None:
        super().__init__(message, status=status, sequence=sequence, command_id=command_id)
        self.frame_hex = frame[:512].hex()
        self.fatal = fatal


class BindRefused(SmppError):
    """The SMSC answered our bind with a non-zero status (wrong credentials, already bound...)."""

    def __init__(self, status: int, system_id: str) -> None:
        super().__init__(f"bind as {system_id!r} refused: {status_name(status)}")
        self.status = status
        self.system_id = system_id

    @property
    def credentials(self) -> bool:
        return self.status in (CommandStatus.ESME_RINVPASWD, CommandStatus.ESME_RINVSYSID)


class LinkDown(SmppError):
    """The connection is gone (closed, reset, timed out, or declared dead)."""


class NotBound(SmppError):
    """A submit was asked of a client whose bind cannot transmit (receiver-only, or closed)."""
