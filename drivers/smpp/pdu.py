"""SMPP 3.4 wire format: bytes <-> our own frozen PDU objects. The only module that sees smpplib.

Encoding: the cold PDUs (binds, bind responses) go through smpplib's ``make_pdu(...).generate()``.
submit_sm, deliver_sm, their responses and the header-only PDUs are encoded here by hand because
smpplib costs ~60 µs per submit_sm (profiled: it dominated the submit path); the test suite proves
these encoders byte-identical to smpplib's on a large Hypothesis sample.

Decoding is done here for every PDU, strictly: smpplib's parser reads past a missing C-string
terminator, ignores a TLV's declared length and raises assorted exceptions on bad input, so a
malformed frame would either be mis-decoded or crash the caller. Ours raises ``MalformedPdu``
carrying the command_status to answer with; the suite cross-checks it against
``smpplib.smpp.parse_pdu`` on valid PDUs and fuzzes it with random and mutated frames.

Layout: SMPP 3.4 §3.2 (header), §4.1 (binds), §4.4 (submit_sm), §4.6 (deliver_sm), §4.11
(enquire_link), §4.2 (unbind), §4.3 (generic_nack), §5.3 (TLVs).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Final

from smpplib import smpp as _smpplib

from drivers.smpp.errors import CommandStatus, LocalProtocolError, MalformedPdu


class CommandId(IntEnum):
    """SMPP 3.4 §5.1.2 command_id; responses set bit 31."""

    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103


RESPONSE_BIT: Final = 0x80000000
HEADER_SIZE: Final = 16
MAX_PDU_SIZE: Final = 70_000
"""Larger than any legal PDU (64K message_payload + fields); anything longer is a broken frame."""
MAX_SEQUENCE: Final = 0x7FFFFFFF
"""SMPP 3.4 §5.1.4: sequence_number 0x00000001..0x7FFFFFFF."""


class Tag(IntEnum):
    """SMPP 3.4 §5.3.2 TLV tags we read or write (protocols.md §4.3)."""

    USER_MESSAGE_REFERENCE = 0x0204
    SAR_MSG_REF_NUM = 0x020C
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    MESSAGE_PAYLOAD = 0x0424
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_STATE = 0x0427
    RECEIPTED_MESSAGE_ID = 0x001E


class BindType(StrEnum):
    TRANSMITTER = "transmitter"
    RECEIVER = "receiver"
    TRANSCEIVER = "transceiver"


_BIND_REQUEST = {
    BindType.TRANSMITTER: CommandId.BIND_TRANSMITTER,
    BindType.RECEIVER: CommandId.BIND_RECEIVER,
    BindType.TRANSCEIVER: CommandId.BIND_TRANSCEIVER,
}
_BIND_OF = {v: k for k, v in _BIND_REQUEST.items()}
_BIND_OF_RESP = {CommandId(v | RESPONSE_BIT): k for k, v in _BIND_REQUEST.items()}


# --- PDU objects -------------------------------------------------------------------------------
# ``sequence`` is 0 on a request until the session numbers it; ``status`` is 0 on requests.


@dataclass(frozen=True, slots=True)
class Bind:
    kind: BindType
    system_id: str
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""
    sequence: int = 0
    status: int = 0

    @property
    def command_id(self) -> CommandId:
        return _BIND_REQUEST[self.kind]


@dataclass(frozen=True, slots=True)
class BindResp:
    kind: BindType
    system_id: str = ""
    status: int = 0
    sequence: int = 0

    @property
    def command_id(self) -> CommandId:
        return CommandId(_BIND_REQUEST[self.kind] | RESPONSE_BIT)


@dataclass(frozen=True, slots=True)
class ShortMessage:
    """The body shared by submit_sm (§4.4.1) and deliver_sm (§4.6.1), with the TLVs we use."""

    destination_addr: str = ""
    short_message: bytes = b""
    source_addr: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    service_type: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    user_message_reference: int | None = None
    sar_msg_ref_num: int | None = None
    sar_total_segments: int | None = None
    sar_segment_seqnum: int | None = None
    message_payload: bytes | None = None
    network_error_code: bytes | None = None
    message_state: int | None = None
    receipted_message_id: str | None = None
    other_tlvs: tuple[tuple[int, bytes], ...] = ()
    sequence: int = 0
    status: int = 0


@dataclass(frozen=True, slots=True)
class SubmitSm(ShortMessage):
    @property
    def command_id(self) -> CommandId:
        return CommandId.SUBMIT_SM


@dataclass(frozen=True, slots=True)
class DeliverSm(ShortMessage):
    @property
    def command_id(self) -> CommandId:
        return CommandId.DELIVER_SM


@dataclass(frozen=True, slots=True)
class SubmitSmResp:
    message_id: str = ""
    status: int = 0
    sequence: int = 0

    @property
    def command_id(self) -> CommandId:
        return CommandId.SUBMIT_SM_RESP


@dataclass(frozen=True, slots=True)
class DeliverSmResp:
    status: int = 0
    sequence: int = 0

    @property
    def command_id(self) -> CommandId:
        return CommandId.DELIVER_SM_RESP


@dataclass(frozen=True, slots=True)
class HeaderOnly:
    """enquire_link(_resp), unbind(_resp), generic_nack: SMPP 3.4 §4.11, §4.2, §4.3."""

    command_id: CommandId
    status: int = 0
    sequence: int = 0


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A well-formed request or response of a command we do not implement (query_sm, data_sm...).
    The session answers requests with generic_nack ESME_RINVCMDID."""

    command_id: int
    status: int = 0
    sequence: int = 0


Pdu = (
    Bind | BindResp | SubmitSm | DeliverSm | SubmitSmResp | DeliverSmResp | HeaderOnly | Unsupported
)

ENQUIRE_LINK: Final = CommandId.ENQUIRE_LINK
ENQUIRE_LINK_RESP: Final = CommandId.ENQUIRE_LINK_RESP
UNBIND: Final = CommandId.UNBIND
UNBIND_RESP: Final = CommandId.UNBIND_RESP
GENERIC_NACK: Final = CommandId.GENERIC_NACK
_HEADER_ONLY = frozenset({ENQUIRE_LINK, ENQUIRE_LINK_RESP, UNBIND, UNBIND_RESP, GENERIC_NACK})


def is_response(command_id: int) -> bool:
    return bool(command_id & RESPONSE_BIT)


# --- encoding ----------------------------------------------------------------------------------

_HEADER = struct.Struct(">IIII")
_U8 = struct.Struct(">B")
_TLV_U8 = struct.Struct(">HHB")
_TLV_U16 = struct.Struct(">HHH")
_TLV_HEAD = struct.Struct(">HH")
_BB = struct.Struct(">BB")
_BBB = struct.Struct(">BBB")
_BBBBB = struct.Struct(">BBBBB")

# SMPP 3.4 §4.4.1 / §4.7: C-Octet String maxima, terminating NULL included.
_MAX = {
    "service_type": 6,
    "source_addr": 21,
    "destination_addr": 21,
    "schedule_delivery_time": 17,
    "validity_period": 17,
    "message_id": 65,
    "system_id": 16,
    "password": 9,
    "system_type": 13,
    "address_range": 41,
    "receipted_message_id": 65,
}


def _cstr(value: str, field: str) -> bytes:
    if not value:
        return b"\x00"
    raw = value.encode("latin-1")
    if len(raw) >= _MAX[field] or b"\x00" in raw:
        raise LocalProtocolError(
            f"{field} {value!r} does not fit a C-Octet String of {_MAX[field]} octets",
            status=CommandStatus.ESME_RINVPARLEN,
        )
    return raw + b"\x00"


def _header(command_id: int, body: bytes, status: int, sequence: int) -> bytes:
    return _HEADER.pack(HEADER_SIZE + len(body), command_id, status, sequence) + body


def _short_message_body(p: ShortMessage) -> bytes:
    sm = p.short_message
    if len(sm) > 254:
        raise LocalProtocolError(
            f"short_message of {len(sm)} octets exceeds 254 (SMPP 3.4 §4.4.1)",
            status=CommandStatus.ESME_RINVMSGLEN,
        )
    if sm and p.message_payload:
        raise LocalProtocolError(
            "short_message and message_payload are mutually exclusive (SMPP 3.4 §5.3.2.32)",
            status=CommandStatus.ESME_RINVMSGLEN,
        )
    try:
        parts = [
            _cstr(p.service_type, "service_type"),
            _BB.pack(p.source_addr_ton, p.source_addr_npi),
            _cstr(p.source_addr, "source_addr"),
            _BB.pack(p.dest_addr_ton, p.dest_addr_npi),
            _cstr(p.destination_addr, "destination_addr"),
            _BBB.pack(p.esm_class, p.protocol_id, p.priority_flag),
            _cstr(p.schedule_delivery_time, "schedule_delivery_time"),
            _cstr(p.validity_period, "validity_period"),
            _BBBBB.pack(
                p.registered_delivery,
                p.replace_if_present_flag,
                p.data_coding,
                p.sm_default_msg_id,
                len(sm),
            ),
            sm,
        ]
    except struct.error as exc:
        raise LocalProtocolError(f"an integer field does not fit one octet: {exc}") from None
    # TLV order follows smpplib's params_order so the bytes are identical to its output.
    if p.user_message_reference is not None:
        parts.append(_TLV_U16.pack(Tag.USER_MESSAGE_REFERENCE, 2, p.user_message_reference))
    if p.sar_msg_ref_num is not None:
        parts.append(_TLV_U16.pack(Tag.SAR_MSG_REF_NUM, 2, p.sar_msg_ref_num))
    if p.sar_total_segments is not None:
        parts.append(_TLV_U8.pack(Tag.SAR_TOTAL_SEGMENTS, 1, p.sar_total_segments))
    if p.sar_segment_seqnum is not None:
        parts.append(_TLV_U8.pack(Tag.SAR_SEGMENT_SEQNUM, 1, p.sar_segment_seqnum))
    if p.message_payload:
        parts.append(_TLV_HEAD.pack(Tag.MESSAGE_PAYLOAD, len(p.message_payload)))
        parts.append(p.message_payload)
    if p.network_error_code:
        parts.append(_TLV_HEAD.pack(Tag.NETWORK_ERROR_CODE, len(p.network_error_code)))
        parts.append(p.network_error_code)
    if p.message_state is not None:
        parts.append(_TLV_U8.pack(Tag.MESSAGE_STATE, 1, p.message_state))
    if p.receipted_message_id:
        rid = _cstr(p.receipted_message_id, "receipted_message_id")
        parts.append(_TLV_HEAD.pack(Tag.RECEIPTED_MESSAGE_ID, len(rid)))
        parts.append(rid)
    for tag, value in p.other_tlvs:
        parts.append(_TLV_HEAD.pack(tag, len(value)))
        parts.append(value)
    return b"".join(parts)


def _smpplib_generate(name: str, sequence: int, status: int, **fields: object) -> bytes:
    # smpplib asks its (absent) client for a sequence unless one is given, and then ignores the
    # given one because its dummy client already reports 0: pass it, then set it.
    pdu = _smpplib.make_pdu(name, sequence=sequence, **fields)
    pdu.sequence = sequence
    pdu.status = status
    raw: bytes = pdu.generate()
    return raw


def encode(pdu: Pdu, sequence: int | None = None) -> bytes:
    """Serialise one PDU (with ``sequence`` instead of ``pdu.sequence`` when given).
    ``LocalProtocolError`` when a field does not fit its wire type."""
    if sequence is not None and sequence != pdu.sequence:
        if isinstance(pdu, SubmitSm | DeliverSm):
            return _header(pdu.command_id, _short_message_body(pdu), pdu.status, sequence)
        raw = encode(pdu)
        return raw[:12] + sequence.to_bytes(4, "big") + raw[16:]
    if isinstance(pdu, SubmitSm | DeliverSm):
        return _header(pdu.command_id, _short_message_body(pdu), pdu.status, pdu.sequence)
    if isinstance(pdu, SubmitSmResp):
        # SMPP 3.4 §4.4.2: the body is returned only when the status is 0; smpplib writes the
        # NULL message_id in both cases, and so do we (most SMSCs accept either).
        body = _cstr(pdu.message_id, "message_id")
        return _header(CommandId.SUBMIT_SM_RESP, body, pdu.status, pdu.sequence)
    if isinstance(pdu, DeliverSmResp):
        return _header(CommandId.DELIVER_SM_RESP, b"\x00", pdu.status, pdu.sequence)
    if isinstance(pdu, HeaderOnly):
        return _HEADER.pack(HEADER_SIZE, pdu.command_id, pdu.status, pdu.sequence)
    if isinstance(pdu, Bind):
        for field in ("system_id", "password", "system_type", "address_range"):
            _cstr(getattr(pdu, field), field)  # validate: smpplib would truncate silently
        return _smpplib_generate(
            "bind_" + pdu.kind.value,
            pdu.sequence,
            pdu.status,
            system_id=pdu.system_id,
            password=pdu.password,
            system_type=pdu.system_type,
            addr_ton=pdu.addr_ton,
            addr_npi=pdu.addr_npi,
            address_range=pdu.address_range,
        )
    if isinstance(pdu, BindResp):
        _cstr(pdu.system_id, "system_id")
        return _smpplib_generate(
            "bind_" + pdu.kind.value + "_resp",
            pdu.sequence,
            pdu.status,
            system_id=pdu.system_id,
        )
    if isinstance(pdu, Unsupported):
        return _HEADER.pack(HEADER_SIZE, pdu.command_id, pdu.status, pdu.sequence)
    raise LocalProtocolError(f"cannot encode {pdu!r}")


def encode_submit_sm_resp(message_id: bytes, sequence: int, status: int = 0) -> bytes:
    """Hot path for the simulator: ``message_id`` already ASCII bytes without the NULL."""
    return _HEADER.pack(HEADER_SIZE + len(message_id) + 1, 0x80000004, status, sequence) + (
        message_id + b"\x00"
    )


def generic_nack(sequence: int, status: int) -> bytes:
    return _HEADER.pack(HEADER_SIZE, CommandId.GENERIC_NACK, status, sequence)


# --- decoding ----------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("command_id", "data", "frame", "pos", "sequence")

    def __init__(self, frame: bytes, command_id: int, sequence: int) -> None:
        self.frame = frame
        self.data = frame
        self.pos = HEADER_SIZE
        self.command_id = command_id
        self.sequence = sequence

    def fail(self, what: str, status: int = CommandStatus.ESME_RINVCMDLEN) -> MalformedPdu:
        return MalformedPdu(
            f"{what} in command 0x{self.command_id:08X} at octet {self.pos}",
            frame=self.frame,
            status=status,
            sequence=self.sequence,
            command_id=self.command_id,
        )

    def cstr(self, field: str) -> str:
        end = self.data.find(b"\x00", self.pos, self.pos + _MAX[field])
        if end < 0:
            raise self.fail(f"{field} has no NULL within {_MAX[field]} octets")
        value = self.data[self.pos : end].decode("latin-1")
        self.pos = end + 1
        return value

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("body truncated")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def octets(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(f"body truncated ({n} octets announced)")
        value = self.data[self.pos : self.pos + n]
        self.pos += n
        return value

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def tlvs(self) -> list[tuple[int, bytes]]:
        out = []
        end = len(self.data)
        while self.pos < end:
            if self.pos + 4 > end:
                raise self.fail("truncated TLV header", CommandStatus.ESME_RINVOPTPARSTREAM)
            tag, length = _TLV_HEAD.unpack_from(self.data, self.pos)
            self.pos += 4
            if self.pos + length > end:
                raise self.fail(
                    f"TLV 0x{tag:04X} announces {length} octets past the end",
                    CommandStatus.ESME_RINVOPTPARSTREAM,
                )
            out.append((tag, self.data[self.pos : self.pos + length]))
            self.pos += length
        return out


_INT_TLVS = {
    Tag.USER_MESSAGE_REFERENCE: ("user_message_reference", 2),
    Tag.SAR_MSG_REF_NUM: ("sar_msg_ref_num", 2),
    Tag.SAR_TOTAL_SEGMENTS: ("sar_total_segments", 1),
    Tag.SAR_SEGMENT_SEQNUM: ("sar_segment_seqnum", 1),
    Tag.MESSAGE_STATE: ("message_state", 1),
}


def _decode_short_message(r: _Reader, cls: type[SubmitSm] | type[DeliverSm], status: int) -> Pdu:
    service_type = r.cstr("service_type")
    source_ton, source_npi = r.u8(), r.u8()
    source = r.cstr("source_addr")
    dest_ton, dest_npi = r.u8(), r.u8()
    dest = r.cstr("destination_addr")
    esm_class, protocol_id, priority = r.u8(), r.u8(), r.u8()
    schedule = r.cstr("schedule_delivery_time")
    validity = r.cstr("validity_period")
    registered, replace, data_coding, default_id, sm_length = (r.u8() for _ in range(5))
    short_message = r.octets(sm_length)
    fields: dict[str, object] = {}
    other: list[tuple[int, bytes]] = []
    for tag, value in r.tlvs():
        if tag in _INT_TLVS:
            name, size = _INT_TLVS[Tag(tag)]
            if len(value) != size:
                raise r.fail(f"TLV 0x{tag:04X} has length {len(value)}", 0xC2)
            fields[name] = int.from_bytes(value, "big")
        elif tag == Tag.MESSAGE_PAYLOAD:
            fields["message_payload"] = value
        elif tag == Tag.NETWORK_ERROR_CODE:
            fields["network_error_code"] = value
        elif tag == Tag.RECEIPTED_MESSAGE_ID:
            # Some SMSCs omit the NULL; tolerate it (the length already delimits the value).
            fields["receipted_message_id"] = value.split(b"\x00", 1)[0].decode("latin-1")
        else:
            other.append((tag, value))
    return cls(
        destination_addr=dest,
        short_message=short_message,
        source_addr=source,
        source_addr_ton=source_ton,
        source_addr_npi=source_npi,
        dest_addr_ton=dest_ton,
        dest_addr_npi=dest_npi,
        service_type=service_type,
        esm_class=esm_class,
        protocol_id=protocol_id,
        priority_flag=priority,
        schedule_delivery_time=schedule,
        validity_period=validity,
        registered_delivery=registered,
        replace_if_present_flag=replace,
        data_coding=data_coding,
        sm_default_msg_id=default_id,
        other_tlvs=tuple(other),
        sequence=r.sequence,
        status=status,
        **fields,  # type: ignore[arg-type]
    )


def _decode_body(frame: bytes, command_id: int, status: int, sequence: int) -> Pdu:
    r = _Reader(frame, command_id, sequence)
    if command_id == CommandId.SUBMIT_SM_RESP:
        # §4.4.2: the body may be absent on an error response.
        message_id = "" if r.at_end() else r.cstr("message_id")
        return SubmitSmResp(message_id, status, sequence)
    if command_id == CommandId.SUBMIT_SM:
        return _decode_short_message(r, SubmitSm, status)
    if command_id == CommandId.DELIVER_SM:
        return _decode_short_message(r, DeliverSm, status)
    if command_id == CommandId.DELIVER_SM_RESP:
        if not r.at_end():
            r.cstr("message_id")  # §4.6.2: unused, NULL
        return DeliverSmResp(status, sequence)
    if command_id in _HEADER_ONLY:
        return HeaderOnly(CommandId(command_id), status, sequence)
    if command_id in _BIND_OF:
        kind = _BIND_OF[CommandId(command_id)]
        system_id = r.cstr("system_id")
        password = r.cstr("password")
        system_type = r.cstr("system_type")
        version, ton, npi = r.u8(), r.u8(), r.u8()
        address_range = r.cstr("address_range")
        return Bind(
            kind, system_id, password, system_type, version, ton, npi, address_range, sequence
        )
    if command_id in _BIND_OF_RESP:
        system_id = "" if r.at_end() else r.cstr("system_id")
        r.tlvs()  # sc_interface_version (0x0210) may follow; nothing we act on
        return BindResp(_BIND_OF_RESP[CommandId(command_id)], system_id, status, sequence)
    if command_id in CommandId._value2member_map_:
        return Unsupported(command_id, status, sequence)
    raise MalformedPdu(
        f"unknown command_id 0x{command_id:08X}",
        frame=frame,
        status=CommandStatus.ESME_RINVCMDID,
        sequence=sequence,
        command_id=command_id,
    )


def decode(frame: bytes) -> Pdu:
    """Decode one complete frame (header included). ``MalformedPdu`` when it is not valid."""
    if len(frame) < HEADER_SIZE:
        raise MalformedPdu(
            f"frame of {len(frame)} octets is shorter than the header", frame=frame, fatal=True
        )
    length, command_id, status, sequence = _HEADER.unpack_from(frame)
    if length != len(frame):
        raise MalformedPdu(
            f"command_length {length} but frame has {len(frame)} octets",
            frame=frame,
            sequence=sequence,
            command_id=command_id,
            fatal=True,
        )
    if command_id == 0x80000004 and length > HEADER_SIZE:
        # Hot path (the ESME reads one of these per submit): skip the generic reader.
        end = frame.find(b"\x00", HEADER_SIZE, HEADER_SIZE + 65)
        if end >= 0:
            return SubmitSmResp(frame[HEADER_SIZE:end].decode("latin-1"), status, sequence)
    try:
        return _decode_body(frame, command_id, status, sequence)
    except MalformedPdu:
        raise
    except (ValueError, IndexError, struct.error) as exc:  # defensive: never crash the reader
        raise MalformedPdu(
            f"undecodable body: {exc}", frame=frame, sequence=sequence, command_id=command_id
        ) from exc


class FrameReader:
    """Splits a byte stream into frames by command_length (SMPP 3.4 §3.2).

    A command_length below 16 or above ``MAX_PDU_SIZE`` cannot be resynchronised: the reader
    raises a fatal ``MalformedPdu`` and the connection has to be closed.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> tuple[list[bytes], MalformedPdu | None]:
        """Complete frames so far, and the fatal framing error if the stream broke after them."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        n = len(buf)
        error: MalformedPdu | None = None
        while n - pos >= 4:
            length = int.from_bytes(buf[pos : pos + 4], "big")
            if length < HEADER_SIZE or length > MAX_PDU_SIZE:
                head = bytes(buf[pos : pos + HEADER_SIZE])
                error = MalformedPdu(
                    f"command_length {length} outside 16..{MAX_PDU_SIZE}",
                    frame=head,
                    sequence=int.from_bytes(head[12:16], "big") if len(head) == 16 else None,
                    command_id=int.from_bytes(head[4:8], "big") if len(head) >= 8 else None,
                    fatal=True,
                )
                pos = n
                break
            if n - pos < length:
                break
            frames.append(bytes(buf[pos : pos + length]))
            pos += length
        if pos:
            del buf[:pos]
        return frames, error

    @property
    def buffered(self) -> int:
        return len(self._buf)
