"""The daemon's inbound path: every received text through :mod:`gateway.inbox`, in order.

Runs on the routes' receive loops (SMPP deliver_sm, modem +CMTI/+CMT): the driver acknowledges
the message only after :meth:`InboundHandler.handle` returned, so a text is stored before the
carrier or the modem forgets it. Outbox and inbox writes run on the outbox thread, consent
rows and events on the segment-store thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from gateway.dispatch_db import AsyncOutbox
from gateway.inbound.keywords import Action, ConsentState, Replies
from gateway.inbox import (
    InboundResult,
    consent_of,
    consent_view,
    decide_for,
    e164,
    enqueue_reply,
    ensure_schema,
    last_confirmation_ms,
    marketing_suppressions,
    note_decision,
    opted_out_numbers,
    record_consent,
    reply_event,
    store_inbound,
)
from gateway.outbox import Outbox
from gateway.routes import RouteInbound
from segmentation.consent import number_hash
from segmentation.store import AsyncStore

log = logging.getLogger("smsgate.inbound")


@dataclass(frozen=True, slots=True)
class InboundStatistics:
    received: int
    opt_outs: int
    opt_ins: int
    help: int
    flagged: int
    replies_sent: int
    cancelled: int
    duplicates: int  # redelivered copies stored without effects of their own
    incomplete: int  # multipart texts stored with parts missing


class InboundHandler:
    def __init__(
        self, box: AsyncOutbox, store: AsyncStore, replies: Replies, *,
        clock_ms: Callable[[], int],
    ) -> None:
        self._box = box
        self._store = store
        self._replies = replies
        self._clock_ms = clock_ms
        self.opted_out: set[str] = set()
        self._suppressed_hashes: frozenset[str] = frozenset()
        self._hash_key: bytes | None = None
        self.on_enqueued: Callable[[], None] | None = None
        self._received = self._opt_outs = self._opt_ins = self._help = 0
        self._flagged = self._sent = self._cancelled = 0
        self._duplicates = self._incomplete = 0

    async def start(self) -> None:
        await self._box.run(lambda ob: ensure_schema(ob.conn))
        self.opted_out.update(await self._store.run(opted_out_numbers))
        self._hash_key, self._suppressed_hashes = await self._store.run(marketing_suppressions)

    def is_suppressed(self, e164: str) -> bool:
        """Whether ``e164`` is on the marketing suppression list as loaded at start-up. An
        erased number is only there (its ledger rows carry the hash, not the number), so the
        opted-out set alone would let marketing reach it again after a restart."""
        if not self._suppressed_hashes or self._hash_key is None:
            return False
        return number_hash(self._hash_key, e164) in self._suppressed_hashes

    async def handle(self, message: RouteInbound) -> None:
        result = await self.process(message)
        log.debug("inbound %d from route %s: %s", result.inbox_id, message.route,
                  result.action.value)

    async def process(self, message: RouteInbound) -> InboundResult:
        now = self._clock_ms()
        sender = e164(message.sender)
        self._received += 1
        stored = await self._box.run(
            lambda ob: store_inbound(
                ob.conn, now, message.route, sender, message.recipient, message.text,
                complete=message.complete, missing=message.missing, identity=message.identity,
            )
        )
        if not message.complete:
            self._incomplete += 1
            log.info("inbound %d on route %s is incomplete (missing parts %s)", stored.inbox_id,
                     message.route, list(message.missing) or "unknown")
        first = stored.duplicate_of
        if first is None:
            return await self._decide(message, sender, stored.inbox_id, now)
        self._duplicates += 1
        if stored.first_action is not None:
            # The first copy's effects happened: this one only leaves its row.
            log.info("inbound %d is a redelivered copy of %d: no second effect",
                     stored.inbox_id, first)
            action, keyword = Action(stored.first_action), stored.first_keyword
        else:
            # The first copy was stored but never decided (a crash in between): decide now,
            # as the first copy, so its idempotency keys (inbox:<id>, mo:<id>) still hold.
            log.info("inbound %d is a copy of undecided %d: deciding it now",
                     stored.inbox_id, first)
            result = await self._decide(message, sender, first, now)
            action, keyword = result.action, result.keyword
        await self._box.run(
            lambda ob: note_decision(ob.conn, stored.inbox_id, action, keyword, None, None)
        )
        return InboundResult(stored.inbox_id, action, keyword, None, 0, duplicate_of=first)

    async def _decide(self, message: RouteInbound, sender: str, inbox_id: int, now: int
                      ) -> InboundResult:
        """The keyword decision and its effects for the text stored as ``inbox_id``."""
        state, since = await self._store.run(consent_of, sender)
        confirmed = await self._box.run(lambda ob: last_confirmation_ms(ob.conn, sender))
        action, keyword, reply, flagged = decide_for(
            message.text, consent_view(state, since, confirmed), self._replies, now,
            self._clock_ms(),
        )
        cancelled = 0
        if action is Action.OPT_OUT:
            self._opt_outs += 1
            # In memory first: the dispatcher's very next decision for this number sees it.
            self.opted_out.add(sender)
            if state is not ConsentState.OPTED_OUT:  # a repeated STOP changes nothing
                await self._store.run(record_consent, sender, "revoke", message.text, inbox_id,
                                      now)
            cancelled = await self._box.run(Outbox.cancel_queued_for_number, sender, "opt-out")
            self._cancelled += cancelled
            log.info("opt-out (%s) from inbound %d: %d queued messages cancelled", keyword,
                     inbox_id, cancelled)
        elif action is Action.OPT_IN:
            self._opt_ins += 1
            self.opted_out.discard(sender)
            await self._store.run(record_consent, sender, "grant", message.text, inbox_id, now)
        elif action is Action.HELP:
            self._help += 1
        else:
            if action is Action.FLAGGED:
                self._flagged += 1
                log.info("inbound %d flagged for an operator: %s", inbox_id, flagged)
            await self._store.run(_reply_event_if_subscriber, sender, inbox_id, now,
                                  message.route)
        reply_id: int | None = None
        if reply is not None:
            reply_id = await self._box.run(enqueue_reply, sender, reply, inbox_id)
            self._sent += 1
            if self.on_enqueued is not None:
                self.on_enqueued()
        await self._box.run(
            lambda ob: note_decision(ob.conn, inbox_id, action, keyword, flagged, reply_id)
        )
        return InboundResult(inbox_id, action, keyword, reply_id, cancelled)

    def statistics(self) -> InboundStatistics:
        return InboundStatistics(self._received, self._opt_outs, self._opt_ins, self._help,
                                 self._flagged, self._sent, self._cancelled, self._duplicates,
                                 self._incomplete)


def _reply_event_if_subscriber(store: object, phone: str, inbox_id: int, ts_ms: int,
                               route: str) -> None:
    from segmentation.store import Store

    assert isinstance(store, Store)
    if store.scalar("SELECT 1 FROM subscriber WHERE phone_e164 = ?", (phone,)) is None:
        return
    reply_event(store, phone, inbox_id, ts_ms, route)
