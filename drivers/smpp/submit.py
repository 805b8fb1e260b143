"""What the daemon hands the client and what it gets back: one part's submit request, the
three outcomes, the bind's statistics, and the bridge from the codec's ``EncodedMessage``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from drivers.smpp.errors import StatusClass, status_name
from drivers.smpp.pdu import SubmitSm
from gateway.codec import Concat, EncodedMessage


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    """One part to submit: the fields of submit_sm the daemon chooses (SMPP 3.4 §4.4.1)."""

    destination_addr: str
    short_message: bytes = b""
    message_payload: bytes | None = None
    data_coding: int = 0
    esm_class: int = 0
    source_addr: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 1
    dest_addr_npi: int = 1
    registered_delivery: int = 1
    validity_period: str = ""
    schedule_delivery_time: str = ""
    sar: tuple[int, int, int] | None = None  # (sar_msg_ref_num, total, seqnum)
    service_type: str = ""
    protocol_id: int = 0
    priority_flag: int = 0

    def to_pdu(self) -> SubmitSm:
        sar = self.sar or (None, None, None)
        return SubmitSm(
            destination_addr=self.destination_addr,
            short_message=self.short_message,
            source_addr=self.source_addr,
            source_addr_ton=self.source_addr_ton,
            source_addr_npi=self.source_addr_npi,
            dest_addr_ton=self.dest_addr_ton,
            dest_addr_npi=self.dest_addr_npi,
            service_type=self.service_type,
            esm_class=self.esm_class,
            protocol_id=self.protocol_id,
            priority_flag=self.priority_flag,
            schedule_delivery_time=self.schedule_delivery_time,
            validity_period=self.validity_period,
            registered_delivery=self.registered_delivery,
            data_coding=self.data_coding,
            message_payload=self.message_payload,
            sar_msg_ref_num=sar[0],
            sar_total_segments=sar[1],
            sar_segment_seqnum=sar[2],
        )


@dataclass(frozen=True, slots=True)
class Accepted:
    message_id: str  # normalised per the bind's IdConvention
    raw_id: str
    throttled: int = 0  # how many times the driver resubmitted after a throttle


@dataclass(frozen=True, slots=True)
class Rejected:
    status: int
    classification: StatusClass  # TEMPORARY or PERMANENT (or LINK after repeated rebinds)

    @property
    def status_name(self) -> str:
        return status_name(self.status)


@dataclass(frozen=True, slots=True)
class Unavailable(Rejected):
    """Nothing was written: no bound link within ``wait_bound_timeout``.

    A ``Rejected`` with ``classification`` LINK and ``status`` ESME_RINVBNDSTS ("incorrect
    bind status for given command", SMPP 3.4 §5.1.3), so callers that map LINK to "this route
    cannot take it now" send the message elsewhere; it is never ``Unknown``, since the SMSC
    cannot have seen it. ``reason`` says why, for people.
    """

    reason: str = ""


@dataclass(frozen=True, slots=True)
class Unknown:
    """The request may or may not have reached the SMSC: resending risks a duplicate."""

    reason: str


SubmitOutcome = Accepted | Rejected | Unknown


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    name: str
    state: str
    window: int
    window_in_use: int
    submits_per_second: float
    submitted: int
    accepted: int
    rejected: int
    unknown: int
    throttles: int
    rate_limit: float | None
    reconnects: int
    errors_by_status: Mapping[str, int]
    receipts: int
    mo_messages: int
    violations: int
    last_error: str | None
    unavailable: int = 0  # submits that found no bound link within wait_bound_timeout


def submit_requests(
    message: EncodedMessage,
    destination_addr: str,
    *,
    source_addr: str = "",
    source_addr_ton: int = 0,
    source_addr_npi: int = 0,
    dest_addr_ton: int = 1,
    dest_addr_npi: int = 1,
    registered_delivery: int = 1,
    validity_period: str = "",
    service_type: str = "",
) -> list[SubmitRequest]:
    """One SubmitRequest per part of ``message`` (codec contract: codec-api.md).

    UDH concatenation: ``short_message`` = UDH + payload with esm_class 0x40 (protocols.md §4.8);
    SAR: the payload alone plus sar_* TLVs (SMPP 3.4 §5.3.2.22-24); PAYLOAD: the whole message
    in the message_payload TLV (0x0424) with an empty short_message (§5.3.2.32).
    """
    requests = []
    for part in message.parts:
        payload_mode = message.concat is Concat.PAYLOAD
        requests.append(
            SubmitRequest(
                destination_addr=destination_addr,
                short_message=b"" if payload_mode else part.short_message,
                message_payload=part.short_message if payload_mode else None,
                data_coding=message.data_coding,
                esm_class=message.esm_class,
                source_addr=source_addr,
                source_addr_ton=source_addr_ton,
                source_addr_npi=source_addr_npi,
                dest_addr_ton=dest_addr_ton,
                dest_addr_npi=dest_addr_npi,
                registered_delivery=registered_delivery,
                validity_period=validity_period,
                sar=part.sar if message.concat is Concat.SAR else None,
                service_type=service_type,
            )
        )
    return requests
