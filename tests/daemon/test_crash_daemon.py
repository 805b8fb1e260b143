"""``kill -9`` the daemon (``smsgate run`` in its own process) several times during a
5,000-message run against the SMSC simulator (another process): after the last restart every
message is final, none is lost, and the duplicates the SMSC saw stay within what can be in
flight at a kill (the bind's capacity, IN_FLIGHT_WINDOWS windows, per kill).

Delivery receipts the simulator had already written to a connection that died are not sent
again (real SMSCs redeliver unacknowledged deliver_sm; the simulator does not), so a few parts
per kill never get a report: those messages must end ``unknown`` after the configured horizon,
never ``delivered`` without proof and never stuck in ``submitted``."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from gateway.daemon_procs import SimProcess, write_config
from gateway.outbox import Outbox
from gateway.outbox_types import NewMessage
from gateway.routes import IN_FLIGHT_WINDOWS
from tests.daemon.daemon_process import daemon_process, start, states, wait_until

TOTAL = 5_000
WINDOW = 16
KILL_AT = (0.15, 0.35, 0.55, 0.75)  # fraction of messages delivered when we kill


@pytest.mark.slow
def test_kill_nine_during_a_run_loses_nothing_and_bounds_duplicates(tmp_path: Path) -> None:
    with SimProcess("smsc", {"receipt_delay": 0.01, "record": True}) as sim:
        config = write_config(tmp_path, smsc_port=sim.port, window=WINDOW,
                              smpp_extra="throughput = 800",
                              extra="[daemon]\ndlr_unknown_after_s = 2\n")
        db = tmp_path / "smsgate.db"
        numbers = [f"+4477{i:08d}" for i in range(TOTAL)]
        with Outbox(db) as box:
            box.enqueue_many([NewMessage(n, f"message {i}") for i, n in enumerate(numbers)])
        kills = 0
        for fraction in KILL_AT:
            daemon = start(config)
            try:
                wait_until(lambda f=fraction: states(db)["delivered"] >= f * TOTAL, 60)
            finally:
                daemon.send_signal(signal.SIGKILL)
                daemon.wait(10)
            kills += 1
            assert sum(states(db).values()) == TOTAL  # readable after a kill mid-write, all there
        with daemon_process(config) as daemon:
            wait_until(lambda: set(states(db)) <= {"delivered", "unknown"}, 90)
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(30) == 0
        received = sim.command("received", timeout=30)["destinations"]
    final = states(db)
    assert set(final) <= {"delivered", "unknown"} and sum(final.values()) == TOTAL, final
    # Only reports lost with a dead connection: at most what was awaiting a report (the
    # capacity) plus the simulator's deliver_sm window (64) per kill.
    assert final["unknown"] <= kills * (IN_FLIGHT_WINDOWS * WINDOW + 64), final
    assert set(received) == {n.removeprefix("+") for n in numbers}  # nothing lost
    duplicates = len(received) - TOTAL
    assert 0 <= duplicates <= kills * IN_FLIGHT_WINDOWS * WINDOW, (duplicates, kills)
