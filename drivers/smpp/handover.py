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


class Handover:
    """deliver_sm in, events to ``handler`` out, deliver_sm_resp when it returned."""

    def __init__(self, config: SmppConfig, handler: Handler | None, store: MoPartStore,
                 clock: Callable[[], float]) -> None:
        self.config = config
        self._handler = handler
        self._mo_store = store
        self._clock = clock
        self.receipts = 0
        self.mo = 0

    async def run(self, link: Link) -> None:
        """Hand deliver_sm to the handler and answer each when its handler returned.

        Delivery receipts are handled concurrently, up to ``inbound_queue`` at once, each
        answered as soon as its own handler returns, in any order (SMPP 3.4 §2.5: responses
        are matched by sequence number): a handler may then wait until its receipt is durable
        (a group commit) without capping receipts at one commit per round trip. Handlers
        start in arrival order. MO messages (and their parts) are handled one at a time, in
        order, because a STOP followed by a START must take effect in that order.
        """
        # As many as we let wait unread: an SMSC keeps a window of deliver_sm outstanding
        # (often 64), and every one of them may be waiting for the same group commit.
        limit = asyncio.Semaphore(max(1, self.config.inbound_queue))
        in_order = asyncio.Lock()  # FIFO: MO handlers run in the order they started
        async with asyncio.TaskGroup() as tg:
            while True:
                if link.reading_paused and link.inbound.qsize() <= link.inbound_limit // 2:
                    link.reading_paused = False
                    if link.transport is not None:
                        link.transport.resume_reading()
                item = await link.inbound.get()
                await limit.acquire()
                if isinstance(item, MoGroup):
                    tg.create_task(self._released(item, limit, in_order))
                else:
                    ordered = None if is_receipt(item) else in_order
                    tg.create_task(self._answer(link, item, limit, ordered))

    async def _released(self, group: MoGroup, limit: asyncio.Semaphore,
                        in_order: asyncio.Lock) -> None:
        try:
            async with in_order:
                await self._hand_over_released(group)
        finally:
            limit.release()

    async def _answer(self, link: Link, pdu: DeliverSm, limit: asyncio.Semaphore,
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
            limit.release()

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
