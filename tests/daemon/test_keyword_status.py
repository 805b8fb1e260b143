"""STOP sets ``subscriber.status = 'stopped'`` and START/UNSTOP/YES after it sets 'active',
in the transaction that writes the consent row, through the daemon's inbound handler on a
real database file."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.config import KeywordsConfig
from gateway.daemon_inbound import InboundHandler
from gateway.dispatch_db import AsyncOutbox
from gateway.inbound.keywords import Action, Replies
from gateway.inbox import record_consent
from gateway.outbox import Outbox
from gateway.outbox_types import NewMessage
from gateway.routes import RouteInbound
from segmentation.consent import set_status_for_keyword
from segmentation.store import AsyncStore, Change, Store
from segmentation.subscribers import upsert_subscriber

NUMBER = "+447911123456"
STRANGER = "+447912345678"
ROUTE = "carrier-a"


class Clock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        self.ms += 1000  # every text a second after the last
        return self.ms


@asynccontextmanager
async def handler(path: Path, clock: Clock) -> AsyncIterator[InboundHandler]:
    box = await AsyncOutbox.open(path, clock=clock)
    store = await AsyncStore.open(path, clock=clock)
    try:
        inbound = InboundHandler(box, store, Replies.from_config(KeywordsConfig()),
                                 clock_ms=clock)
        await inbound.start()
        yield inbound
    finally:
        await store.aclose()
        await box.aclose()


def status(path: Path, number: str = NUMBER) -> str | None:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT status FROM subscriber WHERE phone_e164 = ?",
                           (number,)).fetchone()
    return None if row is None else str(row[0])


def ledger(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT phone_e164, action FROM consent ORDER BY id").fetchall()


async def say(inbound: InboundHandler, text: str, sender: str = NUMBER) -> Action:
    return (await inbound.process(RouteInbound(ROUTE, sender.removeprefix("+"), "1", text))).action


@pytest.mark.parametrize("again", ["START", "unstop", "Yes"])
async def test_stop_stops_and_a_start_after_it_makes_active_again(
        tmp_path: Path, again: str) -> None:
    path = tmp_path / "smsgate.db"
    with Store(path) as store:
        upsert_subscriber(store, NUMBER)
    async with handler(path, Clock()) as inbound:
        assert await say(inbound, "Hello") is Action.OTHER
        assert status(path) == "active"
        assert await say(inbound, "stop") is Action.OPT_OUT
        assert status(path) == "stopped"
        assert await say(inbound, "STOP") is Action.OPT_OUT  # a repeat changes nothing
        assert status(path) == "stopped"
        assert await say(inbound, again) is Action.OPT_IN
        assert status(path) == "active"
    assert ledger(path) == [(NUMBER, "revoke"), (NUMBER, "grant")]


async def test_a_start_without_a_stop_and_a_stop_from_a_stranger(tmp_path: Path) -> None:
    path = tmp_path / "smsgate.db"
    with Store(path) as store:
        upsert_subscriber(store, NUMBER)
        invalid = upsert_subscriber(store, "+447400123456", status="invalid")
    async with handler(path, Clock()) as inbound:
        assert await say(inbound, "START") is Action.OTHER  # no prior opt-out: just a reply
        assert status(path) == "active"
        assert await say(inbound, "STOP", STRANGER) is Action.OPT_OUT
        assert await say(inbound, "STOP", "+447400123456") is Action.OPT_OUT
        assert await say(inbound, "START", "+447400123456") is Action.OPT_IN
    assert status(path, STRANGER) is None  # no subscriber is made from a STOP
    assert status(path, "+447400123456") == "invalid"  # a text does not cure 'invalid'
    assert ledger(path) == [(STRANGER, "revoke"), ("+447400123456", "revoke"),
                            ("+447400123456", "grant")]
    assert invalid > 0


def test_the_status_and_the_consent_row_commit_together(tmp_path: Path) -> None:
    """If the status cannot be written, the ledger row is not written either (and the other
    way round: a replayed STOP whose row exists changes nothing)."""
    path = tmp_path / "smsgate.db"
    with Store(path) as store:
        sid = upsert_subscriber(store, NUMBER)
        changes: list[Change] = []
        store.add_listener(changes.append)
        store.conn.execute(
            "CREATE TEMP TRIGGER refuse BEFORE UPDATE OF status ON subscriber "
            "BEGIN SELECT RAISE(ABORT, 'status locked'); END")
        with pytest.raises(sqlite3.IntegrityError):
            record_consent(store, NUMBER, "revoke", "STOP", 7, 1_800_000_000_000)
        assert store.scalar("SELECT count(*) FROM consent") == 0
        assert status(path) == "active" and changes == []
        store.conn.execute("DROP TRIGGER refuse")
        record_consent(store, NUMBER, "revoke", "STOP", 7, 1_800_000_000_000)
        assert status(path) == "stopped"
        assert changes[-1].subscriber_ids == {sid}
        assert {"profile.status", "consent.marketing"} <= changes[-1].attributes
        assert set_status_for_keyword(store, NUMBER, "revoke") is None  # already stopped
        assert set_status_for_keyword(store, "12345", "grant") is None  # a short code


async def test_a_stop_from_an_address_with_the_00_prefix_is_the_number(tmp_path: Path) -> None:
    """'0044...' is '+44...': the STOP cancels the number's queued messages and joins the
    dispatcher's opted-out set under the outbox's spelling."""
    path = tmp_path / "smsgate.db"
    with Store(path) as store:
        upsert_subscriber(store, NUMBER)
    with Outbox(path) as box:
        box.enqueue(NewMessage(NUMBER, "a campaign text"))
    async with handler(path, Clock()) as inbound:
        result = await inbound.process(RouteInbound(ROUTE, "0044" + NUMBER[3:], "1", "STOP"))
        assert result.action is Action.OPT_OUT and result.cancelled == 1
        assert NUMBER in inbound.opted_out
    assert status(path) == "stopped"
