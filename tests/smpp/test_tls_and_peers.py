"""TLS with certificate checking (a throwaway CA from trustme), and smpplib's own blocking
client run against the simulator as an independent peer."""

from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path

import pytest
import trustme
from smpplib import consts
from smpplib.client import Client as SmpplibClient

from drivers.sim.smsc import SmscOptions, SmscSimulator
from drivers.smpp.client import Accepted, SmppClient, SubmitRequest
from drivers.smpp.config import BindMode
from drivers.smpp.mo import MobileOriginated
from tests.smpp.conftest import Collector, fast_config, running


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, name: str = "smsc.test") -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(ctx)
    return ctx


async def test_tls_bind_with_certificate_checking(
    ca: trustme.CA, tmp_path: Path, collector: Collector
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with SmscSimulator(SmscOptions(ssl=server_context(ca))) as sim:
        cfg = fast_config(
            sim.port,
            tls=True,
            ca_file=str(ca_file),
            tls_server_name="smsc.test",
            bind=BindMode.PAIR,
        )
        async with SmppClient(cfg, collector) as client:
            await client.wait_bound(5)
            outcome = await client.submit(SubmitRequest("447700900123", b"over TLS"))
            assert isinstance(outcome, Accepted)
            [receipt] = await collector.wait_for(1)
            assert receipt.message_id == outcome.message_id  # type: ignore[union-attr]


async def test_tls_refuses_a_certificate_for_another_name(ca: trustme.CA, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with SmscSimulator(SmscOptions(ssl=server_context(ca, "other.test"))) as sim:
        cfg = fast_config(sim.port, tls=True, ca_file=str(ca_file), tls_server_name="smsc.test")
        async with SmppClient(cfg) as client:
            with pytest.raises(TimeoutError):
                await client.wait_bound(0.5)
            assert "CERTIFICATE_VERIFY_FAILED" in (client.last_error or "")
            assert sim.statistics().binds_accepted == 0


async def test_tls_refuses_an_unknown_ca(ca: trustme.CA, tmp_path: Path) -> None:
    other = trustme.CA()
    ca_file = tmp_path / "other.pem"
    other.cert_pem.write_to_path(str(ca_file))
    async with SmscSimulator(SmscOptions(ssl=server_context(ca))) as sim:
        cfg = fast_config(sim.port, tls=True, ca_file=str(ca_file), tls_server_name="smsc.test")
        async with SmppClient(cfg) as client:
            with pytest.raises(TimeoutError):
                await client.wait_bound(0.5)
            assert sim.statistics().binds_accepted == 0


def run_smpplib_peer(port: int, results: dict[str, object]) -> None:
    """smpplib's blocking client: bind, submit, read the response and the receipt, unbind."""
    client = SmpplibClient("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    seen: list[object] = []
    client.set_message_sent_handler(lambda pdu: seen.append(("sent", pdu.message_id)))
    client.set_message_received_handler(lambda pdu: seen.append(("dlr", pdu.receipted_message_id)))
    client.connect()
    try:
        client.bind_transceiver(system_id="peer", password="pw")
        client.send_message(
            source_addr_ton=consts.SMPP_TON_ALNUM,
            source_addr="Peer",
            dest_addr_ton=consts.SMPP_TON_INTL,
            dest_addr_npi=consts.SMPP_NPI_ISDN,
            destination_addr="447700900123",
            short_message=b"from smpplib",
            registered_delivery=1,
        )
        while len(seen) < 2:
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
    results["seen"] = seen


async def test_smpplib_client_against_the_simulator() -> None:
    async with SmscSimulator(SmscOptions(credentials={"peer": "pw"})) as sim:
        results: dict[str, object] = {}
        thread = threading.Thread(target=run_smpplib_peer, args=(sim.port, results))
        thread.start()
        await asyncio.to_thread(thread.join, 10)
        assert not thread.is_alive()
        seen = results["seen"]
        assert isinstance(seen, list) and len(seen) == 2
        [(_, sent), (_, dlr)] = seen
        assert sent == dlr == sim.received[0].message_id.encode()
        assert sim.received[0].pdu.short_message == b"from smpplib"
        assert sim.received[0].system_id == "peer"


async def test_pair_bind_receives_mo_on_the_receiver(collector: Collector) -> None:
    async with running(None, collector, bind=BindMode.PAIR) as (sim, _client):
        await sim.wait_bound(2)
        conn = sim.inject([])  # finds the connection that can receive
        assert conn.session.bind_type is not None
        assert conn.session.bind_type.value == "receiver"
        sim.inject_mo("reply", "447700900123", "1")
        [mo] = await collector.wait_for(1)
        assert isinstance(mo, MobileOriginated)
