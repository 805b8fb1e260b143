"""A pure SMPP 3.4 session in either role: bytes in, events out; no sockets, no asyncio, no clock.

The session owns the bind state, sequence numbers, the window of outstanding requests with their
deadlines, and matching of responses (and generic_nacks) to requests. Time is passed in as ``now``
(seconds, any monotonic origin). Anything the peer does that the state table does not allow is
answered on the wire (the request's response with ESME_RINVBNDSTS, or generic_nack) and reported
as a ``Violation`` event; anything *we* try that is not allowed raises ``LocalProtocolError``.

States and legal operations: SMPP 3.4 §2.2 (session states OPEN, BOUND_TX, BOUND_RX, BOUND_TRX,
CLOSED) and §2.3 (which PDU each side may issue in each state). BINDING and UNBINDING are the
in-flight halves of bind and unbind, which §2.2 leaves implicit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import NamedTuple

from drivers.smpp.errors import (
    CommandStatus,
    LocalProtocolError,
    MalformedPdu,
    ProtocolError,
    RemoteProtocolError,
)
from drivers.smpp.pdu import (
    MAX_SEQUENCE,
    RESPONSE_BIT,
    Bind,
    BindResp,
    BindType,
    CommandId,
    DeliverSm,
    DeliverSmResp,
    FrameReader,
    HeaderOnly,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Unsupported,
    decode,
    encode,
    generic_nack,
)


class Role(Enum):
    ESME = "esme"  # the client: binds, submits, receives deliver_sm
    SMSC = "smsc"  # the server: accepts binds, answers submits, sends deliver_sm


class State(StrEnum):
    OPEN = "open"
    BINDING_TX = "binding_tx"
    BINDING_RX = "binding_rx"
    BINDING_TRX = "binding_trx"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"
    CLOSED = "closed"


class Direction(StrEnum):
    SEND = "send"
    RECV = "recv"


SEND, RECV = Direction.SEND, Direction.RECV
C = CommandId

_BINDING = {
    BindType.TRANSMITTER: State.BINDING_TX,
    BindType.RECEIVER: State.BINDING_RX,
    BindType.TRANSCEIVER: State.BINDING_TRX,
}
_BOUND = {
    BindType.TRANSMITTER: State.BOUND_TX,
    BindType.RECEIVER: State.BOUND_RX,
    BindType.TRANSCEIVER: State.BOUND_TRX,
}
_BIND_CMD = {
    BindType.TRANSMITTER: C.BIND_TRANSMITTER,
    BindType.RECEIVER: C.BIND_RECEIVER,
    BindType.TRANSCEIVER: C.BIND_TRANSCEIVER,
}
BOUND_STATES = frozenset(_BOUND.values())
CAN_TRANSMIT = frozenset({State.BOUND_TX, State.BOUND_TRX})  # ESME may submit_sm
CAN_RECEIVE = frozenset({State.BOUND_RX, State.BOUND_TRX})  # SMSC may deliver_sm

Key = tuple[State, Direction, CommandId]
Transition = tuple[State, State]  # (state after a success, state after an error response)


def _build_table(role: Role) -> dict[Key, Transition]:
    # The ESME sends binds and submit_sm and receives deliver_sm; the SMSC mirrors it.
    out = SEND if role is Role.ESME else RECV
    inn = RECV if role is Role.ESME else SEND
    t: dict[Key, Transition] = {}

    def stay(states: Iterable[State], direction: Direction, cmd: CommandId) -> None:
        for s in states:
            t[(s, direction, cmd)] = (s, s)

    for kind in BindType:
        t[(State.OPEN, out, _BIND_CMD[kind])] = (_BINDING[kind], _BINDING[kind])
        resp = CommandId(_BIND_CMD[kind] | RESPONSE_BIT)
        t[(_BINDING[kind], inn, resp)] = (_BOUND[kind], State.OPEN)
    live = [s for s in State if s is not State.CLOSED]
    # §2.3: enquire_link may be issued by either side in any open state; generic_nack too.
    for d in Direction:
        stay(live, d, C.ENQUIRE_LINK)
        stay(live, d, C.ENQUIRE_LINK_RESP)
        stay(live, d, C.GENERIC_NACK)
    transmit = (State.BOUND_TX, State.BOUND_TRX)
    receive = (State.BOUND_RX, State.BOUND_TRX)
    stay(transmit, out, C.SUBMIT_SM)
    # Responses to requests that raced an unbind are still legal while unbinding.
    stay((*transmit, State.UNBINDING), inn, C.SUBMIT_SM_RESP)
    stay(receive, inn, C.DELIVER_SM)
    stay((*receive, State.UNBINDING), out, C.DELIVER_SM_RESP)
    for s in BOUND_STATES:
        for d in Direction:
            t[(s, d, C.UNBIND)] = (State.UNBINDING, State.UNBINDING)
    for d in Direction:
        t[(State.UNBINDING, d, C.UNBIND_RESP)] = (State.CLOSED, State.CLOSED)
    return t


TABLES: dict[Role, dict[Key, Transition]] = {role: _build_table(role) for role in Role}

# The same tables keyed by (State, Direction, int): State and Direction are StrEnums so they
# hash as C-level str (a plain Enum hashes through Python code), and command ids as ints.
# Both showed up in the submit path's profile.
_FAST: dict[Role, dict[tuple[State, Direction, int], Transition]] = {
    role: {(s, d, int(c)): v for (s, d, c), v in table.items()} for role, table in TABLES.items()
}


def transition(role: Role, state: State, direction: Direction, command: int, ok: bool) -> State:
    """The state after ``direction`` ``command`` in ``state``; ProtocolError when illegal."""
    try:
        after_ok, after_error = TABLES[role][(state, direction, CommandId(command))]
    except (KeyError, ValueError):
        name = CommandId(command).name if command in C._value2member_map_ else hex(command)
        message = f"{role.value}: {direction.value} {name} is not allowed in state {state.value}"
        if direction is SEND:
            raise LocalProtocolError(message, command_id=command) from None
        raise RemoteProtocolError(
            message, status=CommandStatus.ESME_RINVBNDSTS, command_id=command
        ) from None
    return after_ok if ok else after_error


# --- events ------------------------------------------------------------------------------------


class Outstanding(NamedTuple):
    """A request we sent and whose response has not arrived (immutable; a NamedTuple because
    one is made per submit and a frozen dataclass costs several times more to build)."""

    command_id: int
    sequence: int
    sent_at: float
    deadline: float
    context: object = None


@dataclass(frozen=True, slots=True)
class Request:
    """A request from the peer that the application must answer (bind in the SMSC role,
    submit_sm to the SMSC, deliver_sm to the ESME)."""

    pdu: Pdu


@dataclass(frozen=True, slots=True)
class Response:
    """A response matched to the request it answers (a generic_nack counts as a response)."""

    pdu: Pdu
    request: Outstanding


@dataclass(frozen=True, slots=True)
class Violation:
    """The peer broke the protocol; the session has already answered on the wire if it could.
    ``fatal``: the byte stream cannot continue, close the connection after sending."""

    error: ProtocolError
    fatal: bool


@dataclass(frozen=True, slots=True)
class PeerUnbound:
    """The peer sent unbind; unbind_resp is queued and the session is closed."""


Event = Request | Response | Violation | PeerUnbound


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    role: str
    state: str
    window: int
    window_in_use: int
    outstanding: int
    sent: int
    received: int
    violations: int


_MESSAGE_REQUESTS = frozenset({C.SUBMIT_SM, C.DELIVER_SM})


class Session:
    """One SMPP session over one connection, in the ESME or the SMSC role."""

    def __init__(self, role: Role, *, window: int = 10, response_timeout: float = 30.0) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.role = role
        self.window = window
        self.response_timeout = response_timeout
        self._table = TABLES[role]
        self._fast = _FAST[role]
        self._state = State.OPEN
        self._bind_type: BindType | None = None
        self._next_seq = 1
        self._outstanding: dict[int, Outstanding] = {}
        self._messages_outstanding = 0
        self._unanswered: dict[int, CommandId] = {}  # peer requests awaiting our response
        self._reader = FrameReader()
        self._outbox: list[bytes] = []
        self._sent = 0
        self._received = 0
        self._violations = 0

    # --- state -----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def bind_type(self) -> BindType | None:
        return self._bind_type

    @property
    def bound(self) -> bool:
        return self._state in BOUND_STATES

    @property
    def window_in_use(self) -> int:
        return self._messages_outstanding

    @property
    def window_free(self) -> int:
        return self.window - self._messages_outstanding

    def outstanding(self) -> list[Outstanding]:
        return list(self._outstanding.values())

    def _move(self, direction: Direction, command: int, ok: bool) -> None:
        entry = self._fast.get((self._state, direction, command))
        if entry is None:
            self._state = transition(self.role, self._state, direction, command, ok)
        else:
            self._state = entry[0] if ok else entry[1]

    def _sequence(self) -> int:
        # §5.1.4: 1..0x7FFFFFFF, then wrap; skip numbers still outstanding after a wrap.
        for _ in range(len(self._outstanding) + 1):
            seq = self._next_seq
            self._next_seq = 1 if seq >= MAX_SEQUENCE else seq + 1
            if seq not in self._outstanding:
                return seq
        raise LocalProtocolError("no free sequence number")  # unreachable: window is bounded

    # --- sending ---------------------------------------------------------------------------

    def send(self, pdu: Pdu, now: float, context: object = None) -> bytes:
        """Bytes for ``pdu``. Requests are numbered here (their ``sequence`` is ignored) and enter
        the window; responses must answer a request the peer sent and we have not answered."""
        cid = pdu.command_id
        if cid & RESPONSE_BIT:
            return self._send_response(pdu, cid)
        if cid in _MESSAGE_REQUESTS and self._messages_outstanding >= self.window:
            raise LocalProtocolError(f"window of {self.window} is full", command_id=cid)
        seq = self._sequence()
        raw = encode(pdu, seq)  # before moving: a PDU that cannot be encoded changes nothing
        self._move(SEND, cid, True)
        self._outstanding[seq] = Outstanding(cid, seq, now, now + self.response_timeout, context)
        if cid in _MESSAGE_REQUESTS:
            self._messages_outstanding += 1
        if isinstance(pdu, Bind):
            self._bind_type = pdu.kind
        self._sent += 1
        return raw

    def _send_response(self, pdu: Pdu, cid: int) -> bytes:
        request = self._unanswered.pop(pdu.sequence, None)
        if cid != C.GENERIC_NACK and request is None:
            raise LocalProtocolError(
                f"no unanswered request with sequence {pdu.sequence} to answer", command_id=cid
            )
        if request is not None and cid != C.GENERIC_NACK and request | RESPONSE_BIT != cid:
            self._unanswered[pdu.sequence] = request
            raise LocalProtocolError(f"{CommandId(cid).name} does not answer {request.name}")
        if cid != C.GENERIC_NACK:
            self._move(SEND, cid, pdu.status == 0)
            if isinstance(pdu, BindResp) and pdu.status == 0:
                self._bind_type = pdu.kind
        self._sent += 1
        return encode(pdu)

    def data_to_send(self) -> bytes:
        """Responses the session wrote on its own (enquire_link_resp, unbind_resp, nacks)."""
        if not self._outbox:
            return b""
        data = b"".join(self._outbox)
        self._outbox.clear()
        return data

    # --- receiving -------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        frames, framing_error = self._reader.feed(data)
        events: list[Event] = []
        for frame in frames:
            self._received += 1
            try:
                pdu = decode(frame)
            except MalformedPdu as exc:
                events.append(self._malformed(exc))
                continue
            event = self._receive_pdu(pdu)
            if event is not None:
                events.append(event)
        if framing_error is not None:
            events.append(self._malformed(framing_error))
        return events

    def _malformed(self, exc: MalformedPdu) -> Violation:
        self._violations += 1
        # §4.3: generic_nack for a PDU whose header is invalid or command_id unknown; never
        # answer a response with anything.
        if exc.command_id is None or not exc.command_id & RESPONSE_BIT:
            self._outbox.append(generic_nack(exc.sequence or 0, exc.status))
        elif exc.sequence in self._outstanding:
            # A response to our request that we cannot read: the request's outcome is unknown
            # to us; the application learns it through the Violation and the window entry
            # stays until its deadline.
            pass
        return Violation(exc, exc.fatal)

    def _receive_pdu(self, pdu: Pdu) -> Event | None:
        cid = pdu.command_id
        if cid & RESPONSE_BIT:
            return self._receive_response(pdu, cid)
        if cid == C.ALERT_NOTIFICATION:
            return None  # §4.12: the SMSC expects no response; we do not act on it
        if isinstance(pdu, Unsupported):
            self._violations += 1
            self._outbox.append(generic_nack(pdu.sequence, CommandStatus.ESME_RINVCMDID))
            return Violation(
                RemoteProtocolError(
                    f"unsupported command 0x{cid:08X}",
                    status=CommandStatus.ESME_RINVCMDID,
                    sequence=pdu.sequence,
                    command_id=cid,
                ),
                False,
            )
        try:
            self._move(RECV, cid, True)
        except RemoteProtocolError as exc:
            return self._refuse(pdu, exc)
        if cid == C.ENQUIRE_LINK:
            self._outbox.append(encode(HeaderOnly(C.ENQUIRE_LINK_RESP, 0, pdu.sequence)))
            return None
        if cid == C.UNBIND:
            self._outbox.append(encode(HeaderOnly(C.UNBIND_RESP, 0, pdu.sequence)))
            self._state = State.CLOSED
            return PeerUnbound()
        self._unanswered[pdu.sequence] = CommandId(cid)
        return Request(pdu)

    def _refuse(self, pdu: Pdu, exc: RemoteProtocolError) -> Violation:
        """Answer a request that is illegal in this state with its own response (§2.3)."""
        self._violations += 1
        seq = pdu.sequence
        exc.sequence = seq
        reply: Pdu
        if isinstance(pdu, Bind):
            already = self._state in BOUND_STATES
            exc.status = CommandStatus.ESME_RALYBND if already else CommandStatus.ESME_RINVBNDSTS
            reply = BindResp(pdu.kind, "", exc.status, seq)
        elif isinstance(pdu, SubmitSm):
            reply = SubmitSmResp("", CommandStatus.ESME_RINVBNDSTS, seq)
        elif isinstance(pdu, DeliverSm):
            reply = DeliverSmResp(CommandStatus.ESME_RINVBNDSTS, seq)
        elif pdu.command_id == C.UNBIND:
            reply = HeaderOnly(C.UNBIND_RESP, CommandStatus.ESME_RINVBNDSTS, seq)
        else:
            reply = HeaderOnly(C.GENERIC_NACK, CommandStatus.ESME_RINVBNDSTS, seq)
        self._outbox.append(encode(reply))
        return Violation(exc, False)

    def _receive_response(self, pdu: Pdu, cid: int) -> Event | None:
        request = self._outstanding.get(pdu.sequence)
        nack = cid == C.GENERIC_NACK
        if request is None or (not nack and request.command_id | RESPONSE_BIT != cid):
            self._violations += 1
            if nack and pdu.sequence == 0:
                # A nack for something we sent that the peer could not even number.
                return Violation(
                    RemoteProtocolError(
                        f"generic_nack {pdu.status:#x} without a sequence number",
                        status=pdu.status,
                        command_id=cid,
                    ),
                    False,
                )
            return Violation(
                RemoteProtocolError(
                    f"response 0x{cid:08X} seq {pdu.sequence} matches no outstanding request",
                    sequence=pdu.sequence,
                    command_id=cid,
                ),
                False,
            )
        del self._outstanding[pdu.sequence]
        if request.command_id in _MESSAGE_REQUESTS:
            self._messages_outstanding -= 1
        ok = pdu.status == 0 and not nack
        if nack:
            # A nacked request: the request failed; for bind/unbind that is the error edge.
            response_cid = request.command_id | RESPONSE_BIT
            key = (self._state, RECV, CommandId(response_cid))
            if key in self._table:
                self._move(RECV, response_cid, False)
        else:
            try:
                self._move(RECV, cid, ok)
            except RemoteProtocolError as exc:
                self._violations += 1
                return Violation(exc, False)
        if self._state is State.OPEN and request.command_id in _BIND_CMD.values():
            self._bind_type = None
        return Response(pdu, request)

    # --- time and teardown -----------------------------------------------------------------

    def next_deadline(self) -> float | None:
        if not self._outstanding:
            return None
        # Requests are sent in time order with one timeout, so the first one is the earliest.
        return next(iter(self._outstanding.values())).deadline

    def expire(self, now: float) -> list[Outstanding]:
        """Remove and return requests whose response is overdue (outcome unknown)."""
        expired: list[Outstanding] = []
        for seq, req in list(self._outstanding.items()):
            if req.deadline > now:
                break
            expired.append(req)
            del self._outstanding[seq]
            if req.command_id in _MESSAGE_REQUESTS:
                self._messages_outstanding -= 1
        return expired

    def connection_lost(self) -> list[Outstanding]:
        """The transport is gone: close, and hand back every request whose outcome is unknown."""
        lost = list(self._outstanding.values())
        self._outstanding.clear()
        self._messages_outstanding = 0
        self._unanswered.clear()
        self._state = State.CLOSED
        return lost

    def statistics(self) -> SessionStatistics:
        return SessionStatistics(
            self.role.value,
            self._state.value,
            self.window,
            self._messages_outstanding,
            len(self._outstanding),
            self._sent,
            self._received,
            self._violations,
        )
