"""What the modem driver hands out: states, identity, inbound messages, delivery reports and
statistics (frozen dataclasses), and the hand-over callbacks' types. Re-exported by
:mod:`drivers.modem.client`, where they were first defined."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from drivers.modem.responses import Registration


class ModemState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    RECOVERING = "recovering"
    DOWN = "down"
    CLOSED = "closed"


class Escalation(StrEnum):
    """The steps of hang escalation, in order (issue 4: retry -> ATZ -> reopen -> marked down)."""

    RETRY = "retry"  # the timed-out command once more (idempotent commands only)
    RESET = "atz"  # ATZ, then the volatile settings again
    REOPEN = "reopen"  # close the port and run start-up on it again
    DOWN = "down"  # start-up after the reopen failed too: marked down, rediscovery continues


@dataclass(frozen=True, slots=True)
class EscalationCounts:
    """How many times each escalation step was taken since the client started."""

    retry: int = 0
    atz: int = 0
    reopen: int = 0
    down: int = 0

    def add(self, step: Escalation) -> EscalationCounts:
        field = {Escalation.RETRY: "retry", Escalation.RESET: "atz",
                 Escalation.REOPEN: "reopen", Escalation.DOWN: "down"}[step]
        return replace(self, **{field: getattr(self, field) + 1})


@dataclass(frozen=True, slots=True)
class ModemIdentity:
    manufacturer: str
    model: str
    revision: str
    imei: str
    imsi: str


@dataclass(frozen=True, slots=True)
class InboundMessage:
    modem: str
    originator: str
    text: str
    scts: datetime
    parts: int
    total: int

    @property
    def complete(self) -> bool:
        return self.parts == self.total


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    modem: str
    message_reference: int
    recipient: str
    status: int  # TP-ST (TS 23.040 §9.2.3.15)
    category: str  # delivered / pending-temporary / permanent-failure / temporary-failure-final
    discharge_time: datetime


@dataclass(frozen=True, slots=True)
class ModemStatistics:
    name: str
    state: ModemState
    port: str | None
    imei: str | None
    signal_dbm: int | None
    bars: int
    registration: Registration
    operator: str | None
    sent: int
    errors: int
    last_error: str | None
    polling: bool  # no usable +CNMI: inbound found by AT+CMGL polling
    inbound: int
    last_escalation: Escalation | None = None  # furthest step the latest hang reached
    escalations: EscalationCounts = EscalationCounts()
    routed: bool = False  # +CMT/+CDS routed mode (not durable across a crash, see the module)


Location = int | tuple[str, int]  # storage index in the usual storage, or (storage, index)
OnMessage = Callable[[InboundMessage], Awaitable[None]]
OnReport = Callable[[DeliveryReport], Awaitable[None]]
