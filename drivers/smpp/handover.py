"""The client's hand-over of inbound deliver_sm: receipts and MO messages to the handler,
each deliver_sm answered when its handler returned; multipart MO parts through the
``MoPartStore`` (acknowledged once stored), incomplete groups released after their timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from drivers.smpp.config import SmppConfig
from drivers.smpp.errors import CommandStatus, LocalProtocolError
from drivers.smpp.link import Link
from drivers.smpp.mo import MobileOriginated, assemble, split_part
from drivers.smpp.mo_store import MoGroup, MoPartStore
from drivers.smpp.pdu import DeliverSm, DeliverSmResp
from drivers.smpp.receipts import DeliveryReceipt, is_receipt, receipt_from_deliver
from gateway.codec.errors import CodecError

log = logging.getLogger("drivers.smpp.client")

InboundEvent = DeliveryReceipt | MobileOriginated
Handler = Callable[[InboundEvent], Awaitable[None]]
ReceiptsHandler = Callable[[list[DeliveryReceipt]], Awaitable[None]]


class _Room:
    """How many deliver_sm may be with handlers at once; the hand-over loop waits for room."""

    __slots__ = ("_changed", "free")

    def __init__(self, size: int) -> None:
        self.free = size
        self._changed = asyncio.Event()

    async def wait(self) -> None:
        while self.free <= 0:
            self._changed.clear()
            await self._changed.wait()

    def give(self, n: int) -> None:
        self.free += n
        self._changed.set()


class Handover:
    """deliver_sm in, events to ``handler`` out, deliver_sm_resp when it returned."""

    def __init__(self, config: SmppConfig, handler: Handler | None, store: MoPartStore,
                 clock: Callable[[], float], receipts_handler: ReceiptsHandler | None = None,
                 ) -> None:
        self.config = config
        self._handler = handler
        self._on_receipts = receipts_handler
        self._mo_store = store
        self._clock = clock
        self.receipts = 0
        self.mo = 0

    async def run(self, link: Link) -> None:
        """Hand deliver_sm to the handler and answer each when its handler returned.

        Delivery receipts are handled concurrently, up to ``inbound_queue`` at once, each
        answered as soon as its own handler returns, in any order (SMPP 3.4 §2.5: responses
        are matched by sequence number): a handler may then wait until its receipt is durable
        (a group commit) without capping receipts at one commit per round trip. With a
        ``receipts_handler``, the receipts read together go to it as one list (one call, one
        wait, answered together). Handlers start in arrival order. MO messages (and their
        parts) are handled one at a time, in order, because a STOP followed by a START must
        take effect in that order.
        """
        # As many as we let wait unread: an SMSC keeps a window of deliver_sm outstanding
        # (often 64), and every one of them may be waiting for the same group commit.
        room = _Room(max(1, self.config.inbound_queue))
        in_order = asyncio.Lock()  # FIFO: MO handlers run in the order they started
        async with asyncio.TaskGroup() as tg:
            while True:
                if link.reading_paused and link.inbound.qsize() <= link.inbound_limit // 2:
                    link.reading_paused = False
                    if link.transport is not None:
                        link.transport.resume_reading()
                await room.wait()
                items = [await link.inbound.get()]
                while len(items) < room.free and not link.inbound.empty():
                    items.append(link.inbound.get_nowait())
                room.free -= len(items)
                receipts: list[DeliverSm] = []
                for item in items:
                    if isinstance(item, MoGroup):
                        tg.create_task(self._released(item, room, in_order))
                    elif not is_receipt(item):
                        tg.create_task(self._answer(link, item, room, in_order))
                    elif self._on_receipts is not None:
                        receipts.append(item)  # below, together, still in arrival order
                    else:
                        tg.create_task(self._answer(link, item, room, None))
                if receipts:
                    tg.create_task(self._answer_receipts(link, receipts, room, in_order))

    async def _released(self, group: MoGroup, room: _Room, in_order: asyncio.Lock) -> None:
        try:
            async with in_order:
                await self._hand_over_released(group)
        finally:
            room.give(1)

    async def _answer(self, link: Link, pdu: DeliverSm, room: _Room,
                      in_order: asyncio.Lock | None) -> None:
        """Handle one deliver_sm, then write its deliver_sm_resp (unless the link is gone:
        the SMSC delivers it again)."""
        try:
            if in_order is not None:
                async with in_order:
                    await self._answer_now(link, pdu)
            else:
                await self._answer_now(link, pdu)
        finally:
            room.give(1)

    async def _answer_receipts(self, link: Link, pdus: list[DeliverSm], room: _Room,
                               in_order: asyncio.Lock) -> None:
        """Receipts read together: one ``receipts_handler`` call, then every deliver_sm_resp
        (ESME_RX_T_APPN for all if it raised: the SMSC delivers them again). A PDU flagged as
        a receipt that does not parse as one goes the one-at-a-time way (as an MO part)."""
        assert self._on_receipts is not None
        try:
            events: list[DeliveryReceipt] = []
            answered: list[DeliverSm] = []
            odd: list[DeliverSm] = []
            convention = self.config.id_convention
            for pdu in pdus:
                try:
                    receipt = receipt_from_deliver(pdu, convention)
                except CodecError:
                    receipt = None
                if receipt is None:
                    odd.append(pdu)
                else:
                    events.append(receipt)
                    answered.append(pdu)
            if events:
                self.receipts += len(events)
                status = 0
                try:
                    await self._on_receipts(events)
                except Exception:
                    log.exception("smpp %s: receipts handler failed; asking for redelivery",
                                  self.config.name)
                    status = CommandStatus.ESME_RX_T_APPN
                self._respond(link, answered, status)
            for pdu in odd:
                async with in_order:
                    await self._answer_now(link, pdu)
        finally:
            room.give(len(pdus))

    def _respond(self, link: Link, pdus: list[DeliverSm], status: int) -> None:
        session = link.session
        if session is None or link.dead.is_set():
            return  # the SMSC delivers them again
        now = self._clock()
        out: list[bytes] = []
        try:
            for pdu in pdus:
                out.append(session.send(DeliverSmResp(status, pdu.sequence), now))
        except LocalProtocolError:
            pass  # the session closed meanwhile; the SMSC redelivers the rest
        link.write(b"".join(out))

    async def _answer_now(self, link: Link, pdu: DeliverSm) -> None:
        status = 0
        try:
            await self._handle_deliver(pdu)
        except CodecError as exc:
            log.warning("smpp %s: undecodable deliver_sm: %s", self.config.name, exc)
            status = CommandStatus.ESME_RX_P_APPN
        except Exception:
            log.exception("smpp %s: handler failed; asking for redelivery", self.config.name)
            status = CommandStatus.ESME_RX_T_APPN
        session = link.session
        if session is None or link.dead.is_set():
            return
        try:
            link.write(session.send(DeliverSmResp(status, pdu.sequence), self._clock()))
        except LocalProtocolError:
            return  # the session closed meanwhile; the SMSC will redeliver

    async def _handle_deliver(self, pdu: DeliverSm) -> None:
        if is_receipt(pdu):
            receipt = receipt_from_deliver(pdu, self.config.id_convention)
            if receipt is not None:
                self.receipts += 1
                await self._deliver_event(receipt)
                return
        part = split_part(pdu)  # CodecError: a malformed UDH
        if part.reference is None:
            await self._deliver_event(assemble([part]))
            return
        # The part is handed over once the store has it: only then is it acknowledged.
        group = await self._mo_store.add(part)
        if group is not None:
            await self._deliver_event(group.message)
            await self._forget(group)

    async def _hand_over_released(self, group: MoGroup) -> None:
        """An incomplete message the store released after its timeout. No PDU waits for an
        answer; if the handler fails, the group stays stored and is released again later."""
        try:
            await self._deliver_event(group.message)
        except Exception:
            log.exception(
                "smpp %s: handler failed for a timed-out MO; offered again in %ss",
                self.config.name,
                self.config.mo_timeout,
            )
            return
        await self._forget(group)

    async def _forget(self, group: MoGroup) -> None:
        # The message is handed over: a store failure now must not ask for a redelivery
        # (the handler would get it twice at once); the group is released again later.
        try:
            await self._mo_store.remove(group)
        except Exception:
            log.exception("smpp %s: could not remove a handed-over MO", self.config.name)

    async def release_due(self, link: Link) -> float | None:
        """Queue the MO groups whose time is up; seconds until the next one is due."""
        try:
            delay = await self._mo_store.next_expiry()
            if delay is not None and delay <= 0:
                for group in await self._mo_store.expire():
                    link.inbound.put_nowait(group)
                delay = await self._mo_store.next_expiry()
        except Exception:
            log.exception("smpp %s: MO store failed; trying again shortly", self.config.name)
            return None
        return delay

    async def _deliver_event(self, event: InboundEvent) -> None:
        if isinstance(event, MobileOriginated):
            self.mo += 1
        if self._handler is not None:
            await self._handler(event)
