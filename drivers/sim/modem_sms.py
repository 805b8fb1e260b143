"""The simulated modem's SMS side: message storage (TS 27.005 §3.1 <mem>, <index>, <stat>) and
the TPDUs it produces (SMS-DELIVER for inbound, SMS-STATUS-REPORT for submits that asked)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from drivers.modem.pdu import decode_submit, encode_deliver, encode_status_report
from gateway.codec import Concat, EncodeOptions, encode

STAT_UNREAD = 0  # TS 27.005 §3.1 <stat> in PDU mode: 0 received unread
STAT_READ = 1  # 1 received read
TP_ST_DELIVERED = 0x00  # TS 23.040 §9.2.3.15: "Short message received by the SME"


class SmsStore:
    """Storages ("SM", "ME", ...) of numbered slots; indexes start at the profile's base."""

    capacity = 50

    def __init__(self, index_base: int) -> None:
        self._base = index_base
        self._mems: dict[str, dict[int, tuple[int, bytes]]] = {}

    def _mem(self, mem: str) -> dict[int, tuple[int, bytes]]:
        # "MT" is ME+SM combined; the simulator keeps one pool for all message storages, like
        # modems that map every name onto the SIM, and a separate one for status reports (SR).
        return self._mems.setdefault("SR" if mem == "SR" else "all", {})

    def put(self, mem: str, stat: int, pdu: bytes) -> int:
        slots = self._mem(mem)
        index = self._base
        while index in slots:
            index += 1
        slots[index] = (stat, pdu)
        return index

    def get(self, mem: str, index: int) -> tuple[int, bytes] | None:
        return self._mem(mem).get(index)

    def mark_read(self, mem: str, index: int) -> None:
        slots = self._mem(mem)
        if index in slots and slots[index][0] == STAT_UNREAD:
            slots[index] = (STAT_READ, slots[index][1])

    def delete(self, mem: str, index: int) -> bool:
        return self._mem(mem).pop(index, None) is not None

    def delete_flagged(self, mem: str, flag: int) -> None:
        # TS 27.005 §3.5.4 <delflag>: 1 read, 2 read+sent, 3 +unsent, 4 all (we store only
        # received messages, so 1..3 delete the read ones and 4 everything).
        slots = self._mem(mem)
        for index in [i for i, (st, _) in slots.items() if flag == 4 or st == STAT_READ]:
            del slots[index]

    def used(self, mem: str) -> int:
        return len(self._mem(mem))

    def items(self, mem: str) -> list[tuple[int, tuple[int, bytes]]]:
        return sorted(self._mem(mem).items())


@dataclass(frozen=True, slots=True)
class SubmitSummary:
    recipient: str
    status_report: bool


def submit_summary(pdu: bytes) -> SubmitSummary:
    """The fields of an SMS-SUBMIT the simulator acts on (recipient, TP-SRR)."""
    try:
        submit = decode_submit(pdu)
    except ValueError:
        return SubmitSummary("?", False)
    return SubmitSummary(submit.destination, submit.status_report_request)


def delivered_report(mr: int, recipient: str, status: int = TP_ST_DELIVERED) -> bytes:
    """An SMS-STATUS-REPORT (SCA first) for TP-MR ``mr``."""
    now = datetime.now(UTC).replace(microsecond=0)
    return encode_status_report(mr, recipient, scts=now, discharge_time=now, status=status)


def deliver_pdus(
    originator: str,
    text: str,
    *,
    reference: int = 1,
    scts: datetime | None = None,
) -> list[bytes]:
    """SMS-DELIVER TPDUs (SCA first) carrying ``text`` from ``originator``, one per part; a
    long text becomes a concatenated message (8-bit reference ``reference``). The codec picks
    GSM-7 or UCS-2 (any character outside GSM-7 makes it UCS-2)."""
    message = encode(text, EncodeOptions(concat=Concat.UDH8, reference=reference))
    when = scts or datetime.now(UTC).replace(microsecond=0)
    return [encode_deliver(message, part, originator, scts=when) for part in message.parts]
