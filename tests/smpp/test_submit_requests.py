"""From the codec's EncodedMessage to submit_sm parts, through the client, put back together by
the simulator: UDH (8 and 16-bit), SAR and message_payload."""

from __future__ import annotations

import asyncio

import pytest

from drivers.smpp.client import Accepted, submit_requests
from drivers.smpp.pdu import Tag
from gateway.codec import Concat, EncodeOptions, encode
from tests.smpp.conftest import running

TEXTS = [
    "Your parcel is on its way {tracking: [A1-€]} " * 5,  # GSM-7 with escapes, 2+ parts
    "Ваш заказ отправлен 📦 — спасибо! " * 4,  # UCS-2 with surrogate pairs
    "short",
]


@pytest.mark.parametrize("concat", [Concat.UDH8, Concat.UDH16, Concat.SAR, Concat.PAYLOAD])
async def test_parts_reassemble_on_the_simulator(concat: Concat) -> None:
    async with running(window=16) as (sim, client):
        for i, text in enumerate(TEXTS):
            message = encode(text, EncodeOptions(concat=concat, reference=40 + i))
            requests = submit_requests(
                message,
                f"4477009000{i:02d}",
                source_addr="Shop",
                source_addr_ton=5,
                registered_delivery=0,
            )
            assert len(requests) == len(message.parts)
            outcomes = await asyncio.gather(*(client.submit(r) for r in requests))
            assert all(isinstance(o, Accepted) for o in outcomes)
        assembled = sim.assembled()
        assert sorted(m.text or "" for m in assembled) == sorted(TEXTS)
        assert all(m.complete for m in assembled)
        pdus = [r.pdu for r in sim.received]
        if concat is Concat.SAR:
            multi = [p for p in pdus if p.sar_total_segments]
            assert multi and all(p.esm_class & 0x40 == 0 for p in multi)
        elif concat is Concat.PAYLOAD:
            assert all(p.short_message == b"" and p.message_payload for p in pdus)
            assert len(pdus) == len(TEXTS)
        else:
            assert any(p.esm_class & 0x40 for p in pdus)
            iei = 0x08 if concat is Concat.UDH16 else 0x00
            assert all(p.short_message[1] == iei for p in pdus if p.esm_class & 0x40)


def test_payload_request_uses_the_tlv() -> None:
    message = encode("x" * 400, EncodeOptions(concat=Concat.PAYLOAD))
    [request] = submit_requests(message, "447700900123")
    pdu = request.to_pdu()
    assert pdu.short_message == b"" and pdu.message_payload is not None
    assert len(pdu.message_payload) == 400
    assert int(Tag.MESSAGE_PAYLOAD) == 0x0424
