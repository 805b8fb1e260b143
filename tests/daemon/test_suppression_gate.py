"""A number that opted out and was then erased is only a keyed hash on the suppression list:
after a restart the daemon must still refuse it marketing (the opted-out set it loads from the
ledger names numbers, and the erased number's ledger rows carry the hash instead)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.daemon_procs import SimProcess, write_config
from gateway.dispatch import Dispatcher
from gateway.erasure import erase_number
from gateway.outbox import Outbox
from gateway.outbox_states import Lane, State
from gateway.outbox_types import NewMessage
from gateway.routes import RouteInbound
from segmentation.store import Store
from tests.daemon.test_daemon import counts, enqueue, running, until

NUMBER = "+447700900777"
OTHER = "+447700900778"
KEY = "suppression-gate-test-key"


@pytest.fixture
def smsc() -> Iterator[SimProcess]:
    with SimProcess("smsc", {"receipt_delay": 0.02}) as sim:
        yield sim


async def test_an_erased_opted_out_number_gets_no_marketing_after_a_restart(
    smsc: SimProcess, tmp_path: Path
) -> None:
    config = load_config(write_config(tmp_path, smsc_port=smsc.port,
                                      extra=f'[segments]\nhash_key = "{KEY}"\n'))
    async with running(config) as daemon:  # the STOP arrives through the real inbound path
        assert daemon.inbound is not None
        await daemon.inbound.handle(RouteInbound("sim-smsc", NUMBER[1:], "1", "STOP"))
    with Store(config.database.path, hash_key=KEY.encode()) as store:
        erase_number(store, NUMBER)

    ids = enqueue(config, [
        NewMessage(NUMBER, "promo", lane=Lane.CAMPAIGN),
        NewMessage(NUMBER, "automation", lane=Lane.AUTOMATION),
        NewMessage(NUMBER, "Your code is 123456"),  # transactional: still goes
        NewMessage(OTHER, "promo", lane=Lane.CAMPAIGN),  # not suppressed: goes
    ])
    async with running(config) as daemon:
        dispatcher: Dispatcher = daemon.dispatcher  # type: ignore[assignment]
        assert daemon.inbound is not None and NUMBER not in daemon.inbound.opted_out
        dispatcher.wake()
        await until(daemon, lambda: counts(config)[State.FAILED] == 2
                    and counts(config)[State.QUEUED] == 0 and counts(config)[State.SENDING] == 0)
        assert dispatcher.statistics().opt_out_blocked == 2
    with Outbox(config.database.path) as box:
        got = [box.get(mid) for mid in ids]
    assert [m.state if m else None for m in got][:2] == [State.FAILED, State.FAILED]
    assert all(m is not None and m.error_text == "opted out" for m in got[:2])
    assert all(m is not None and m.state is not State.FAILED for m in got[2:])
