"""ModemRoute over a simulated modem on a real pty: a send whose outcome is unknown (AT+CMGS
took the PDU, then the modem went silent and was unplugged) is reported part by part --
confirmed parts accepted with their carrier ids, the part in doubt unknown, the rest temporary."""

from __future__ import annotations

import asyncio

from drivers.modem.pdu import decode_submit
from drivers.sim.modem import SimModem
from drivers.sim.modem_profiles import profile
from gateway.codec import EncodeOptions, encode
from gateway.config import ModemConfig
from gateway.outbox_types import Report
from gateway.routes import ModemRoute, PartResult, PartStatus, RouteInbound


async def _ignore_report(report: Report) -> None:
    del report


async def _ignore_inbound(message: RouteInbound) -> None:
    del message


async def test_unknown_outcome_maps_confirmed_unknown_and_unsent_parts() -> None:
    async with SimModem(profile("generic"), send_latency=0.05) as sim:
        config = ModemConfig(name="m1", port=sim.path, imei=sim.imei, rate_per_minute=6000)
        route = ModemRoute("modems", [config], on_report=_ignore_report,
                           on_inbound=_ignore_inbound, on_health=lambda name, up: None)
        async with route:
            async with asyncio.timeout(10):
                await route.wait_up()
            encoded = encode("a long text " * 50, EncodeOptions(concat=route.concat, reference=7))
            assert len(encoded.parts) == 4
            results: list[PartResult] = []
            # Part 0 went out on an earlier attempt: this send hands the pool parts 1..3 only.
            seqs = (1, 2, 3)
            async with asyncio.timeout(20), asyncio.TaskGroup() as tg:
                send = tg.create_task(
                    route.send(41, "+447700900041", "", encoded, seqs, results.append)
                )
                # The first part is answered; the second leaves the modem with no answer.
                await sim.wait_for(lambda: len(sim.records) == 1)
                sim.hang_after_next_pdu(sent=True)
                await sim.wait_for(lambda: len(sim.records) == 2)
                sim.unplug()
                await send
    by_seq = {r.seq: r for r in results}
    assert sorted(by_seq) == [1, 2, 3] and len(results) == 3  # every part once
    first, doubt = sim.records
    assert by_seq[1].status is PartStatus.ACCEPTED
    assert by_seq[1].carrier_id == f"m1/{first.mr}"
    assert by_seq[2].status is PartStatus.UNKNOWN and by_seq[2].carrier_id is None
    assert by_seq[3].status is PartStatus.TEMPORARY and by_seq[3].carrier_id is None
    # The simulator saw exactly the pool's parts 1 and 2 (the outbox's seqs 1 and 2).
    concat = [decode_submit(r.pdu).concat for r in (first, doubt)]
    assert [c.seq if c else None for c in concat] == [2, 3]
