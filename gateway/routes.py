"""Ways out behind one small interface: an SMPP bind, or a pool of modems (one modem or a group).

The dispatcher (:mod:`gateway.dispatch`) only sees :class:`Route`: is it up, how many messages it
can usefully hold in flight, how it concatenates long texts, and ``send()`` -- which hands over
some parts of one encoded message and reports each part's fate through a callback *as soon as
it is known*, so a carrier id reaches the outbox before the delivery report that names it
(field-failures.md §3.4).

Outcomes are classified once, here, from the drivers' own classes (DESIGN.md "Durability and
delivery semantics"):

* ``ACCEPTED``   -- the SMSC or modem took the part; ``carrier_id`` is normalised for matching.
* ``TEMPORARY``  -- message-level, retry later with backoff (SMPP TEMPORARY statuses, a modem's
  temporary +CMS codes after the pool tried its modems).
* ``PERMANENT``  -- message-level, fail now and keep the code (SMPP 3.4 §5.1.3 command_status,
  3GPP TS 27.005 §3.2.5 +CMS ERROR).
* ``REFUSED``    -- route-level: this route cannot take it now (not bound, link refused it after
  rebinds, every modem unusable). The dispatcher offers the message to the next route.
* ``UNKNOWN``    -- the request went out and no answer came (timeout, link dropped). Resending
  risks one duplicate; the dispatcher decides (it resends, so duplicates stay bounded by what was
  in flight).

Delivery reports and inbound texts come out of the routes as :class:`RouteReport` and
:class:`RouteInbound` through callbacks given at construction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from drivers.modem.client import DeliveryReport, InboundMessage, ModemState
from drivers.modem.config import ModemConfig as DriverModemConfig
from drivers.modem.errors import ModemError
from drivers.modem.pool import MessageResult, ModemPool, OutboundMessage
from drivers.smpp.client import Accepted, Rejected, SmppClient, Unknown
from drivers.smpp.config import BindMode
from drivers.smpp.config import SmppConfig as DriverSmppConfig
from drivers.smpp.errors import StatusClass
from drivers.smpp.mo import MobileOriginated
from drivers.smpp.pdu import SubmitSm
from drivers.smpp.receipts import DeliveryReceipt, IdConvention, IdFormat, MessageState
from gateway.codec import Concat, EncodedMessage
from gateway.config import ModemConfig, SmppConfig
from gateway.mo_store import MoPartDb
from gateway.outbox_states import ReportOutcome
from gateway.outbox_types import Report

log = logging.getLogger("smsgate.routes")


class PartStatus(enum.Enum):
    ACCEPTED = "accepted"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"
    REFUSED = "refused"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class PartResult:
    """The fate of part ``seq`` (0-based, as the outbox counts) on one route."""

    seq: int
    status: PartStatus
    carrier_id: str | None = None
    code: int | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class RouteInbound:
    """A complete (or timed-out partial) inbound text received on ``route``.

    ``complete`` is False for a multipart text released with parts still missing (their
    numbers in ``missing`` when the driver knows them). ``identity`` is what the network says
    about this message beyond its text, when there is anything: the modem's TP-SCTS (SMSC
    timestamp, TS 23.040 §9.2.3.11) or the concatenation reference and count (§9.2.3.24.1).
    Copies of one message carry the same identity; the inbox uses it to spot redeliveries.
    """

    route: str
    sender: str
    recipient: str
    text: str
    complete: bool = True
    missing: tuple[int, ...] = ()
    identity: str | None = None


@dataclass(frozen=True, slots=True)
class RouteStatistics:
    name: str
    kind: str  # "smpp" | "modems"
    up: bool
    state: str
    in_flight: int
    capacity: int
    rate: float  # parts per second accepted recently
    detail: tuple[tuple[str, str], ...]  # per modem / bind facts for `smsgate status`


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Parts ``seqs`` of one encoded message, for :meth:`Route.send_many`."""

    message_id: int
    to: str
    sender: str
    encoded: EncodedMessage
    seqs: tuple[int, ...]


OnPart = Callable[[PartResult], None]
OnBatchPart = Callable[[int, PartResult], None]  # (index of the message in the batch, result)
OnReports = Callable[[Report], Awaitable[None]]
OnReportList = Callable[[list[Report]], Awaitable[None]]
OnInbound = Callable[[RouteInbound], Awaitable[None]]
OnHealth = Callable[[str, bool], None]


class Route(Protocol):
    """What the dispatcher needs of a way out."""

    name: str
    concat: Concat
    capacity: int  # messages worth keeping in flight to keep it busy

    def is_up(self) -> bool: ...

    async def wait_up(self) -> None:
        """Until the route can take messages (bound; a modem ready)."""

    async def send(
        self, message_id: int, to: str, sender: str, encoded: EncodedMessage,
        seqs: Sequence[int], on_part: OnPart,
    ) -> None: ...

    async def send_many(self, items: Sequence[Outgoing], on_part: OnBatchPart, *,
                        first: bool = False) -> None:
        """Several messages at once: each part's fate goes to ``on_part`` with its message's
        index in ``items`` as soon as it is known; returns when every part has one.
        ``first``: urgent (transactional), ahead of the bulk already waiting for the route."""

    def statistics(self) -> RouteStatistics: ...


# -- SMPP ----------------------------------------------------------------------------------------

# SMPP 3.4 §5.2.28 message_state -> what the outbox makes of one part.
_RECEIPT_OUTCOMES: dict[MessageState, ReportOutcome] = {
    MessageState.DELIVERED: ReportOutcome.DELIVERED,
    MessageState.EXPIRED: ReportOutcome.EXPIRED,
    MessageState.DELETED: ReportOutcome.UNDELIVERABLE,
    MessageState.UNDELIVERABLE: ReportOutcome.UNDELIVERABLE,
    MessageState.REJECTED: ReportOutcome.UNDELIVERABLE,
    MessageState.UNKNOWN: ReportOutcome.UNKNOWN,
    MessageState.ENROUTE: ReportOutcome.ENROUTE,
    MessageState.ACCEPTED: ReportOutcome.ENROUTE,
}


def driver_smpp_config(cfg: SmppConfig) -> DriverSmppConfig:
    """The daemon's ``[[smpp]]`` table as the driver's own config object."""
    return DriverSmppConfig(
        name=cfg.name, host=cfg.host, port=cfg.port, system_id=cfg.system_id,
        password=cfg.password, system_type=cfg.system_type, bind=BindMode(cfg.bind),
        window=cfg.window, throughput=cfg.throughput,
        id_convention=IdConvention(
            IdFormat(cfg.id_format.submit), IdFormat(cfg.id_format.report)
        ),
        enquire_link_interval=cfg.enquire_link_s, response_timeout=cfg.response_timeout_s,
        wait_bound_timeout=cfg.wait_bound_timeout_s, mo_timeout=cfg.mo_timeout_s,
        tls=cfg.tls, ca_file=str(cfg.ca_file) if cfg.ca_file else None,
    )


def report_from_receipt(route: str, receipt: DeliveryReceipt) -> Report:
    """A delivery receipt as the outbox's per-part report (SMPP 3.4 Appendix B ``err:``)."""
    state = receipt.state
    outcome = ReportOutcome.UNKNOWN if state is None else _RECEIPT_OUTCOMES[state]
    code: int | None = None
    if receipt.err and receipt.err.strip().isdigit():
        code = int(receipt.err.strip())
    if outcome is ReportOutcome.DELIVERED:
        code = None
    return Report(route, receipt.message_id, outcome, code)


IN_FLIGHT_WINDOWS = 8
"""Messages a bind holds "in flight", in windows: one on the wire, the rest being claimed or
waiting for their results to commit (a message counts until its result is durable). The
claim -> send -> commit cycle is latency-bound (loop, outbox thread and simulator together used
~1.2 of 2 cores at 4 windows), so more in flight keeps the window on the wire full while the
outbox thread commits. Measured with bench/outbox.py at 100,000 messages on a quiet machine,
alternating runs: 4 windows 8,919 / 8,757 / 8,374 msgs/s, 8 windows 13,589 / 10,300 / 9,860,
16 windows 14,149 / 9,871 / 8,134 (no better, and transactional p99 doubled); earlier, before
the batched send path, 2 windows 782 and 4 windows 1,418. It is also the bound on what a
kill -9 can make us send twice (tests/daemon/test_crash_daemon.py checks it). A transactional
message finds less ahead of it: its batch is queued at the client ahead of the waiting bulk
(``send_many(first=True)``), so only the window on the wire and its own batch go first."""


class SmppRoute:
    """One carrier bind. Parts of a message go out concurrently; the bind's window is the limit,
    ``capacity`` (:data:`IN_FLIGHT_WINDOWS` windows) keeps it from running dry between claims."""

    def __init__(
        self, cfg: SmppConfig, *, on_report: OnReports, on_inbound: OnInbound,
        on_health: OnHealth, mo_db: MoPartDb | None = None,
        on_reports: OnReportList | None = None,
    ) -> None:
        """``on_reports``: receipts read together go there as one list (one wait for their
        commit), instead of one ``on_report`` call each."""
        self.name = cfg.name
        self.concat = Concat(cfg.concat)
        self.capacity = max(2, cfg.window * IN_FLIGHT_WINDOWS)
        self._cfg = cfg
        self._on_report = on_report
        self._on_inbound = on_inbound
        self._on_health = on_health
        self._in_flight = 0
        driver_cfg = driver_smpp_config(cfg)
        # Parts of a multipart MO wait in the daemon's database (acknowledged parts survive a
        # crash); without one, in memory (the driver's default).
        self.mo_store = None if mo_db is None else mo_db.store(cfg.name, driver_cfg.mo_timeout)
        self._on_reports = on_reports
        self.client = SmppClient(
            driver_cfg, handler=self._handle, mo_store=self.mo_store,
            receipts_handler=None if on_reports is None else self._handle_receipts,
        )
        self._was_up = False

    async def __aenter__(self) -> SmppRoute:
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(None, None, None)

    async def wait_up(self) -> None:
        await self.client.wait_bound()
        self.is_up()

    def is_up(self) -> bool:
        up = self.client.bound
        if up != self._was_up:
            self._was_up = up
            self._on_health(self.name, up)
        return up

    async def _handle_receipts(self, receipts: list[DeliveryReceipt]) -> None:
        assert self._on_reports is not None
        await self._on_reports([report_from_receipt(self.name, r) for r in receipts])

    async def _handle(self, event: DeliveryReceipt | MobileOriginated) -> None:
        if isinstance(event, DeliveryReceipt):
            await self._on_report(report_from_receipt(self.name, event))
            return
        text = event.text if event.text is not None else event.user_data.hex()
        identity = None if event.reference is None else f"ref:{event.reference}/{event.total}"
        await self._on_inbound(RouteInbound(
            self.name, event.source_addr, event.destination_addr, text,
            complete=event.complete, missing=event.missing, identity=identity,
        ))

    async def send(
        self, message_id: int, to: str, sender: str, encoded: EncodedMessage,
        seqs: Sequence[int], on_part: OnPart,
    ) -> None:
        await self.send_many([Outgoing(message_id, to, sender, encoded, tuple(seqs))],
                             lambda _index, result: on_part(result))

    async def send_many(self, items: Sequence[Outgoing], on_part: OnBatchPart, *,
                        first: bool = False) -> None:
        """Every part of every message in one ``submit_many``: the client fills its window
        from the list with no task or future per part (the daemon's hot path)."""
        pdus: list[SubmitSm] = []
        owners: list[tuple[int, int]] = []  # request index -> (message index, part seq)
        for index, item in enumerate(items):
            for seq in item.seqs:
                pdus.append(self._pdu(item.to, item.sender, item.encoded, seq))
                owners.append((index, seq))

        def on_outcome(i: int, outcome: Accepted | Rejected | Unknown) -> None:
            index, seq = owners[i]
            on_part(index, smpp_part_result(seq, outcome))

        self._in_flight += len(items)
        try:
            await self.client.submit_many(pdus, on_outcome, first=first)
        finally:
            self._in_flight -= len(items)

    @staticmethod
    def _pdu(to: str, sender: str, encoded: EncodedMessage, seq: int) -> SubmitSm:
        """submit_sm for part ``seq`` (SMPP 3.4 §4.4.1), built directly: a ``SubmitRequest``
        first would cost a second object of 20 fields per part on the hot path. Defaults as
        ``SubmitRequest``'s: destination international/ISDN, a delivery receipt asked for."""
        part = encoded.parts[seq]
        concat = encoded.concat
        payload = concat is Concat.PAYLOAD
        # SMPP 3.4 §5.2.5 addr_ton 1 = international (E.164 without '+'), 5 = alphanumeric.
        src_ton = 5 if sender and not sender.lstrip("+").isdigit() else (1 if sender else 0)
        sar = part.sar if concat is Concat.SAR else None
        return SubmitSm(
            destination_addr=to.removeprefix("+"),
            short_message=b"" if payload else part.short_message,
            source_addr=sender.removeprefix("+"),
            source_addr_ton=src_ton,
            source_addr_npi=1 if src_ton == 1 else 0,
            dest_addr_ton=1,
            dest_addr_npi=1,
            esm_class=encoded.esm_class,
            registered_delivery=1,
            data_coding=encoded.data_coding,
            message_payload=part.payload if payload else None,
            sar_msg_ref_num=sar[0] if sar else None,
            sar_total_segments=sar[1] if sar else None,
            sar_segment_seqnum=sar[2] if sar else None,
        )

    def statistics(self) -> RouteStatistics:
        s = self.client.statistics()
        return RouteStatistics(
            self.name, "smpp", self.client.bound, s.state, self._in_flight, self.capacity,
            s.submits_per_second,
            (("window", f"{s.window_in_use}/{s.window}"), ("accepted", str(s.accepted)),
             ("rejected", str(s.rejected)), ("unknown", str(s.unknown)),
             ("throttles", str(s.throttles)), ("reconnects", str(s.reconnects)),
             ("receipts", str(s.receipts)), ("mo", str(s.mo_messages)),
             ("last_error", s.last_error or "")),
        )


def smpp_part_result(seq: int, outcome: Accepted | Rejected | Unknown) -> PartResult:
    if isinstance(outcome, Accepted):
        return PartResult(seq, PartStatus.ACCEPTED, carrier_id=outcome.message_id)
    if isinstance(outcome, Unknown):
        return PartResult(seq, PartStatus.UNKNOWN, text=outcome.reason)
    kind = {
        StatusClass.TEMPORARY: PartStatus.TEMPORARY,
        StatusClass.PERMANENT: PartStatus.PERMANENT,
        StatusClass.LINK: PartStatus.REFUSED,
    }.get(outcome.classification, PartStatus.TEMPORARY)
    return PartResult(seq, kind, code=outcome.status, text=outcome.status_name)


# -- modems --------------------------------------------------------------------------------------


def driver_modem_config(cfg: ModemConfig) -> DriverModemConfig:
    gap = (0.0, cfg.jitter_s)
    return DriverModemConfig(
        name=cfg.name, port=cfg.port, imei=cfg.imei, baudrate=cfg.baudrate, pin=cfg.pin,
        groups=cfg.groups, rate_per_minute=cfg.rate_per_minute, parts_per_day=cfg.per_day,
        day_reset=cfg.day_reset, random_gap=gap,
    )


def modem_carrier_id(modem: str, reference: int) -> str:
    """Modems have no message ids: TP-MR (TS 23.040 §9.2.3.6) is unique per modem for a while."""
    return f"{modem}/{reference}"


def report_from_modem(route: str, report: DeliveryReport) -> Report:
    """TP-ST (TS 23.040 §9.2.3.15): 0x00-0x1F delivered, 0x20-0x3F still trying, 0x40-0x7F
    permanent, 0x60-0x7F temporary given up; 0x46 validity period expired."""
    st = report.status
    if st <= 0x1F:
        outcome = ReportOutcome.DELIVERED
    elif st <= 0x3F:
        outcome = ReportOutcome.ENROUTE
    elif st == 0x46:
        outcome = ReportOutcome.EXPIRED
    else:
        outcome = ReportOutcome.UNDELIVERABLE
    code = None if outcome in (ReportOutcome.DELIVERED, ReportOutcome.ENROUTE) else st
    return Report(route, modem_carrier_id(report.modem, report.message_reference), outcome, code)


class ModemRoute:
    """A pool of modems (one modem, or a ``groups`` name) as one route.

    The pool keeps each modem busy within its own rate limit and moves a message off a modem
    that fails (drivers/modem/pool.py); whole messages go to one modem, so every part of a text
    comes from one SIM. A message's result arrives when all its parts were sent or it failed.
    """

    def __init__(
        self, name: str, modems: Sequence[ModemConfig], *, on_report: OnReports,
        on_inbound: OnInbound, on_health: OnHealth, resend_unknown: bool = False,
    ) -> None:
        self.name = name
        self.concat = Concat.UDH8  # TS 23.040 §9.2.3.24.1 in the TPDU: modems have no SAR
        self.capacity = max(2, 2 * len(modems))
        self._on_report = on_report
        self._on_inbound = on_inbound
        self._on_health = on_health
        self._in_flight = 0
        self._was_up = False
        self._rate = (time.monotonic(), 0, 0.0)  # (when, parts sent then, parts/s since before)
        self.pool = ModemPool(
            [driver_modem_config(m) for m in modems],
            on_message=self._message, on_report=self._report, resend_unknown=resend_unknown,
            discover=lambda: [m.port for m in modems if m.port],
        )

    async def __aenter__(self) -> ModemRoute:
        await self.pool.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.__aexit__(None, None, None)

    async def wait_up(self) -> None:
        """Until the first modem is ready. One waiter per modem, all in a TaskGroup scoped to
        this call: the first one in cancels the rest before the call returns."""
        up = asyncio.Event()

        async def one(wait_ready: Callable[[], Awaitable[None]]) -> None:
            await wait_ready()
            up.set()

        async with asyncio.TaskGroup() as tg:
            waiters = [tg.create_task(one(c.wait_ready)) for c in self.pool.clients]
            await up.wait()
            for w in waiters:
                w.cancel()
        self.is_up()

    def is_up(self) -> bool:
        up = any(c.state is ModemState.READY for c in self.pool.clients)
        if up != self._was_up:
            self._was_up = up
            self._on_health(self.name, up)
        return up

    async def _message(self, message: InboundMessage) -> None:
        await self._on_inbound(RouteInbound(
            self.name, message.originator, message.modem, message.text,
            complete=message.complete, identity=f"scts:{message.scts.isoformat()}",
        ))

    async def _report(self, report: DeliveryReport) -> None:
        await self._on_report(report_from_modem(self.name, report))

    async def send(
        self, message_id: int, to: str, sender: str, encoded: EncodedMessage,
        seqs: Sequence[int], on_part: OnPart,
    ) -> None:
        # The pool numbers parts 1..n of what it is given: give it exactly the parts to send.
        wanted = dataclasses.replace(encoded, parts=tuple(encoded.parts[s] for s in seqs))
        self._in_flight += 1
        try:
            result = await self.pool.send(OutboundMessage(str(message_id), to, wanted))
        finally:
            self._in_flight -= 1
        for part in modem_part_results(seqs, result):
            on_part(part)

    async def send_many(self, items: Sequence[Outgoing], on_part: OnBatchPart, *,
                        first: bool = False) -> None:
        """Each message on its own (the pool spreads them over its modems, seconds each).
        One that fails unexpectedly is refused (the next route, or back in the queue) and
        does not stop its siblings."""

        async def one(index: int, item: Outgoing) -> None:
            answered: set[int] = set()

            def part(result: PartResult) -> None:
                answered.add(result.seq)
                on_part(index, result)

            try:
                await self.send(item.message_id, item.to, item.sender, item.encoded,
                                item.seqs, part)
            except Exception as exc:
                log.exception("route %s: message %d failed unexpectedly", self.name,
                              item.message_id)
                for seq in item.seqs:
                    if seq not in answered:
                        on_part(index, PartResult(seq, PartStatus.REFUSED, text=repr(exc)))

        async with asyncio.TaskGroup() as tg:
            for index, item in enumerate(items):
                tg.create_task(one(index, item))

    def statistics(self) -> RouteStatistics:
        s = self.pool.statistics()
        # The pool counts parts; the rate is the change since the previous snapshot (the
        # status loop asks every second).
        now, sent = time.monotonic(), sum(m.parts_sent for m in s.modems)
        then, before, rate = self._rate
        if now - then >= 0.5:
            rate = (sent - before) / (now - then)
            self._rate = (now, sent, rate)
        detail = tuple(
            (m.modem.name, f"{m.modem.state} signal={m.modem.signal_dbm} dBm "
             f"sent={m.parts_sent} today={m.sent_today} errors={m.modem.errors}")
            for m in s.modems
        )
        return RouteStatistics(
            self.name, "modems", self.is_up(),
            ",".join(str(m.modem.state) for m in s.modems), self._in_flight, self.capacity,
            rate, (*detail, ("queued", str(s.queued_jobs))),
        )


def modem_part_results(seqs: Sequence[int], result: MessageResult) -> list[PartResult]:
    """The pool's verdict on the parts ``seqs`` (the pool numbered them 1..n) as part results.

    An unknown outcome (AT+CMGS took the PDU, no answer came: drivers/modem/pool.py) is split
    three ways: parts confirmed before it are accepted with their carrier ids (their status
    reports must match), the parts in doubt are UNKNOWN (the dispatcher's bounded resend), and
    the parts never attempted are TEMPORARY: they certainly did not go out.
    """
    accepted = [
        PartResult(seqs[sent.seq - 1], PartStatus.ACCEPTED,
                   carrier_id=modem_carrier_id(sent.modem, sent.message_reference))
        for sent in result.parts
    ]
    if result.ok:
        return accepted
    if result.outcome_unknown:
        text = str(result.error) if result.error else "outcome unknown"
        doubt = {seqs[n - 1] for n in result.unknown}
        done = {r.seq for r in accepted} | doubt
        return [
            *accepted,
            *(PartResult(seq, PartStatus.UNKNOWN, text=text) for seq in sorted(doubt)),
            *(PartResult(seq, PartStatus.TEMPORARY, text=f"not sent: {text}")
              for seq in seqs if seq not in done),
        ]
    status, code, text = modem_failure(result.error)
    return [PartResult(seq, status, code=code, text=text) for seq in seqs]


def modem_failure(error: Exception | None) -> tuple[PartStatus, int | None, str]:
    """The pool already tried other modems for temporary and device errors: what it gives back
    is the verdict on the message, except "every modem is unusable", which is the route's."""
    if isinstance(error, ModemError):
        code = getattr(error, "code", None)
        disposition = str(getattr(error, "disposition", ""))
        if disposition in ("device", "config"):
            return PartStatus.REFUSED, _int(code), str(error)
        if disposition == "temporary":
            return PartStatus.TEMPORARY, _int(code), str(error)
        return PartStatus.PERMANENT, _int(code), str(error)
    return PartStatus.PERMANENT, None, str(error) if error else "modem send failed"


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int) else None
