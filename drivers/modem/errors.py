"""Modem errors: +CMS ERROR (3GPP TS 27.005 §3.2.5) and +CME ERROR (3GPP TS 27.007 §9.2) codes.

Each code is classified by :func:`cms_disposition` / :func:`cme_disposition` into what the
driver should do about it. The classification follows TS 24.011 Annex E (cause descriptions for
0..127), TS 23.040 §9.2.3.22 (TP-FCS, 128..255), TS 27.005 §3.2.5 (300..511) and real-modem
experience (``../shared/reference/protocols.md`` §5.6, from Gammu's ``ATGEN_HandleCMSError``).

Errors are *message-level* (retry or fail this part) or *link-level* (reset the modem, move its
parts elsewhere); ``link_level`` says which. Unknown codes are kept as plain ints.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

from gateway.codec.errors import SmsgateError


class Disposition(StrEnum):
    """What a failed part should do next."""

    TEMPORARY = "temporary"  # retry later (maybe on another modem)
    PERMANENT = "permanent"  # fail the message with this code
    INVALID_PDU = "invalid-pdu"  # our PDU or length is wrong: a bug on our side, never retry
    DEVICE = "device"  # the modem/SIM is unusable as it is: mark down, move parts elsewhere
    CONFIG = "config"  # PIN, SMSC address...: an operator must act
    DUPLICATE = "duplicate"  # SC rejected a duplicate (TP-RD=1): the first copy was sent


class CmsCode(IntEnum):
    """+CMS ERROR codes we name (others stay ints). TS 24.011 Annex E-2, TS 23.040 §9.2.3.22,
    TS 27.005 §3.2.5."""

    UNASSIGNED_NUMBER = 1
    OPERATOR_DETERMINED_BARRING = 8
    CALL_BARRED = 10
    SM_TRANSFER_REJECTED = 21
    DESTINATION_OUT_OF_SERVICE = 27
    UNIDENTIFIED_SUBSCRIBER = 28
    FACILITY_REJECTED = 29
    UNKNOWN_SUBSCRIBER = 30
    NETWORK_OUT_OF_ORDER = 38
    TEMPORARY_FAILURE = 41
    CONGESTION = 42
    RESOURCES_UNAVAILABLE = 47
    FACILITY_NOT_SUBSCRIBED = 50
    FACILITY_NOT_IMPLEMENTED = 69
    INVALID_SM_TRANSFER_REFERENCE = 81
    INVALID_MESSAGE = 95
    PROTOCOL_ERROR = 111
    INTERWORKING_UNSPECIFIED = 127
    SC_BUSY = 192
    NO_SC_SUBSCRIPTION = 193
    SC_SYSTEM_FAILURE = 194
    INVALID_SME_ADDRESS = 195
    DESTINATION_SME_BARRED = 196
    SM_REJECTED_DUPLICATE = 197
    VPF_NOT_SUPPORTED = 198
    VP_NOT_SUPPORTED = 199
    UNSPECIFIED_TP_ERROR = 255
    ME_FAILURE = 300
    SMS_SERVICE_RESERVED = 301
    OPERATION_NOT_ALLOWED = 302
    OPERATION_NOT_SUPPORTED = 303
    INVALID_PDU_MODE_PARAMETER = 304
    INVALID_TEXT_MODE_PARAMETER = 305
    SIM_NOT_INSERTED = 310
    SIM_PIN_REQUIRED = 311
    PH_SIM_PIN_REQUIRED = 312
    SIM_FAILURE = 313
    SIM_BUSY = 314
    SIM_WRONG = 315
    SIM_PUK_REQUIRED = 316
    SIM_PIN2_REQUIRED = 317
    SIM_PUK2_REQUIRED = 318
    MEMORY_FAILURE = 320
    INVALID_MEMORY_INDEX = 321
    MEMORY_FULL = 322
    SMSC_ADDRESS_UNKNOWN = 330
    NO_NETWORK_SERVICE = 331
    NETWORK_TIMEOUT = 332
    NO_CNMA_EXPECTED = 340
    UNKNOWN_ERROR = 500
    MANUFACTURER_USER_ABORT = 512


class CmeCode(IntEnum):
    """+CME ERROR codes we act on (TS 27.007 §9.2.1; 515 is a widespread vendor code)."""

    PHONE_FAILURE = 0
    OPERATION_NOT_ALLOWED = 3
    OPERATION_NOT_SUPPORTED = 4
    SIM_NOT_INSERTED = 10
    SIM_PIN_REQUIRED = 11
    SIM_PUK_REQUIRED = 12
    SIM_FAILURE = 13
    SIM_BUSY = 14
    SIM_WRONG = 15
    INCORRECT_PASSWORD = 16
    MEMORY_FULL = 20
    INVALID_INDEX = 21
    NOT_FOUND = 22
    NO_NETWORK_SERVICE = 30
    NETWORK_TIMEOUT = 31
    UNKNOWN = 100
    BUSY_INIT_IN_PROGRESS = 515  # "Please wait, init or command processing in progress" (vendor)


# TS 24.011 Annex E: 38 "likely to last a relatively long period", 41 "not likely to last a long
# period", 42 "high traffic"; the rest per protocols.md §5.6.
_CMS_TEMPORARY = frozenset(
    {27, 38, 41, 42, 47, 111, 127, 192, 194, 255, 300, 301, 314, 331, 332, 500, 522, 535}
)
_CMS_INVALID_PDU = frozenset(
    {95, 96, 97, 98, 99, 304, 305, 514, 515, 517, 519, 520, 538, 549, 550, 551, 552, 553, 554}
)
_CMS_DEVICE = frozenset({303, 310, 313, 315, 320, 322, 532})
_CMS_CONFIG = frozenset({302, 311, 312, 316, 317, 318, 330})


def cms_disposition(code: int) -> Disposition:
    """Classify a +CMS ERROR code (protocols.md §5.6 "retry policy" column)."""
    if code == CmsCode.SM_REJECTED_DUPLICATE:
        return Disposition.DUPLICATE
    if code in _CMS_TEMPORARY:
        return Disposition.TEMPORARY
    if code in _CMS_INVALID_PDU:
        return Disposition.INVALID_PDU
    if code in _CMS_DEVICE:
        return Disposition.DEVICE
    if code in _CMS_CONFIG:
        return Disposition.CONFIG
    if 208 <= code <= 212:  # TS 23.040 §9.2.3.22: SIM storage / SAT busy: device side
        return Disposition.DEVICE
    if code == 512:  # manufacturer "user abort" (Siemens); seen on transient stalls
        return Disposition.TEMPORARY
    return Disposition.PERMANENT


_CME_TEMPORARY = frozenset({14, 30, 31, 100, 515})
_CME_CONFIG = frozenset({11, 12, 16, 17, 18})
_CME_DEVICE = frozenset({0, 10, 13, 15, 20})


def cme_disposition(code: int) -> Disposition:
    """Classify a +CME ERROR code (TS 27.007 §9.2; 14 SIM busy and 515 init-in-progress wait)."""
    if code in _CME_TEMPORARY:
        return Disposition.TEMPORARY
    if code in _CME_CONFIG:
        return Disposition.CONFIG
    if code in _CME_DEVICE:
        return Disposition.DEVICE
    return Disposition.PERMANENT


def _named_cms(code: int) -> CmsCode | int:
    try:
        return CmsCode(code)
    except ValueError:
        return code


def _named_cme(code: int) -> CmeCode | int:
    try:
        return CmeCode(code)
    except ValueError:
        return code


_SECRET_COMMANDS = ("AT+CPIN=", "AT+CPWD=", "AT+CLCK=")


def redact(command: str) -> str:
    """``AT+CPIN="1234"`` -> ``AT+CPIN=***``: PINs never reach logs or the TUI."""
    upper = command.upper()
    for prefix in _SECRET_COMMANDS:
        if upper.startswith(prefix):
            return command[: len(prefix)] + "***"
    return command


class ModemError(SmsgateError):
    """Root of the modem driver's errors."""

    link_level: bool = False

    @property
    def disposition(self) -> Disposition:
        return Disposition.DEVICE if self.link_level else Disposition.TEMPORARY


class CmsError(ModemError):
    """``+CMS ERROR: <code>`` (message service failure)."""

    def __init__(self, code: int, command: str = "") -> None:
        self.code: CmsCode | int = _named_cms(code)
        self.command = command = redact(command)
        super().__init__(f"+CMS ERROR: {code} ({command})")

    @property
    def disposition(self) -> Disposition:
        return cms_disposition(int(self.code))


class CmeError(ModemError):
    """``+CME ERROR: <code>`` (mobile equipment failure). ``code`` is None for verbose text."""

    def __init__(self, code: int | None, command: str = "", text: str = "") -> None:
        self.code: CmeCode | int | None = None if code is None else _named_cme(code)
        self.command = command = redact(command)
        self.text = text
        super().__init__(f"+CME ERROR: {code if code is not None else text} ({command})")

    @property
    def disposition(self) -> Disposition:
        if self.code is None:
            return Disposition.PERMANENT
        return cme_disposition(int(self.code))


class CommandFailed(ModemError):
    """Plain ``ERROR`` or a vendor variant such as Huawei's ``COMMAND NOT SUPPORT``."""

    def __init__(self, command: str, result: str) -> None:
        self.command = command = redact(command)
        self.result = result
        super().__init__(f"{result} ({command})")

    @property
    def disposition(self) -> Disposition:
        return Disposition.PERMANENT


class ChannelBusy(ModemError):
    """We broke the AT protocol: a second command while one is in flight (a bug on our side)."""


class CommandTimeout(ModemError):
    """The modem did not finish a command before its deadline (link-level: escalate)."""

    link_level = True

    def __init__(self, command: str, stage: str) -> None:
        self.command = command = redact(command)
        self.stage = stage
        super().__init__(f"timeout waiting for {stage} ({command})")


class ModemGone(ModemError):
    """The serial port failed or vanished (unplugged): link-level, mark the modem down."""

    link_level = True


class SendOutcomeUnknown(ModemError):
    """AT+CMGS wrote its PDU but no answer came (timeout, or the link died): the part may have
    left the modem. Never resent blindly (that is a duplicate on the handset); the caller
    decides. ``cause`` is the timeout or link error behind it.

    :attr:`disposition` is TEMPORARY so that a caller reading only the disposition retries
    later (a bounded duplicate, never a loss); callers that know this class report "unknown".
    """

    link_level = True
    possibly_sent = True

    def __init__(self, command: str, cause: ModemError) -> None:
        self.command = command = redact(command)
        self.cause = cause
        super().__init__(f"outcome unknown, the part may have been sent ({command}): {cause}")

    @property
    def disposition(self) -> Disposition:
        return Disposition.TEMPORARY


class ModemDown(ModemError):
    """The modem is marked down and takes no work until it is found again."""

    link_level = True


class StartupFailed(ModemError):
    """Start-up could not bring the modem to a usable state (PIN, SIM, no answer...).
    ``retry`` False: retrying cannot help or does harm (a wrong PIN locks the SIM)."""

    link_level = True

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry
