"""Hypothesis drives the outbox through random operation sequences on a real SQLite file.

After every step the stored data must be consistent: every accepted message is present, every
recorded state change follows the transition table, the current state agrees with the parts
(a waiting message has a part to send, a submitted one has none in flight, a delivered one has
every part delivered), and nothing waiting is ever stuck without a part to send.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gateway.outbox import (
    Lane,
    NewMessage,
    Outbox,
    OutboxError,
    Outcome,
    PermanentFailure,
    Report,
    ReportOutcome,
    Requeue,
    RetryPolicy,
    State,
    Submitted,
    TemporaryFailure,
)
from gateway.outbox_states import TRANSITIONS

NUMBERS = ["+447911123450", "+447911123451", "+447911123452"]
ROUTES = ["a", "b"]


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="outbox-machine-"))
        self.now = 1_000_000
        self.accepted: set[int] = set()
        self.outbox = self._open()

    def _open(self) -> Outbox:
        return Outbox(
            self.folder / "db", clock=lambda: self.now, max_retries=2,
            retry=RetryPolicy(base_s=1, cap_s=4), dlr_unknown_after_s=30,
        )

    def teardown(self) -> None:
        self.outbox.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    @initialize()
    def start(self) -> None:
        self.outbox.recover()

    # -- helpers ---------------------------------------------------------------------------------

    def _ids(self, state: str) -> list[int]:
        return [r[0] for r in self.outbox.conn.execute(
            "SELECT id FROM outbox_message WHERE state = ? ORDER BY id", (state,)
        )]

    def _sending_parts(self) -> list[tuple[int, int]]:
        return [(r[0], r[1]) for r in self.outbox.conn.execute(
            "SELECT message_id, seq FROM outbox_part WHERE state = 'sending' "
            "ORDER BY message_id, seq"
        )]

    # -- rules -----------------------------------------------------------------------------------

    @rule(
        batch=st.lists(
            st.tuples(
                st.sampled_from(NUMBERS), st.sampled_from(list(Lane)), st.integers(1, 3),
                st.one_of(st.none(), st.sampled_from(["r1", "r2", "r3"])),
                st.one_of(st.none(), st.integers(-2, 60)),
                st.one_of(st.none(), st.integers(1, 20)),
            ),
            min_size=1, max_size=4,
        )
    )
    def enqueue(
        self, batch: list[tuple[str, Lane, int, str | None, int | None, int | None]]
    ) -> None:
        results = self.outbox.enqueue_many([
            NewMessage(
                to=to, text="t", lane=lane, parts=parts, ref=ref,
                expires_ms=None if exp is None else self.now + exp * 1000,
                not_before_ms=None if later is None else self.now + later * 1000,
            )
            for to, lane, parts, ref, exp, later in batch
        ])
        self.accepted.update(r.id for r in results)

    @rule(limit=st.integers(1, 5))
    def claim(self, limit: int) -> None:
        claimed = self.outbox.claim(limit)
        for c in claimed:
            assert c.parts, f"message {c.id} handed out with nothing to send"

    @precondition(lambda self: bool(self._sending_parts()))
    @rule(data=st.data(), route=st.sampled_from(ROUTES))
    def submit(self, data: st.DataObject, route: str) -> None:
        mid, seq = data.draw(st.sampled_from(self._sending_parts()))
        self.outbox.mark_many([Submitted(mid, seq, route, f"{mid}-{seq}")])

    @precondition(lambda self: bool(self._ids("sending")))
    @rule(data=st.data(), kind=st.sampled_from(["temporary", "permanent", "requeue"]))
    def fail(self, data: st.DataObject, kind: str) -> None:
        mid = data.draw(st.sampled_from(self._ids("sending")))
        outcomes: dict[str, Outcome] = {
            "temporary": TemporaryFailure(mid, code=0x58),
            "permanent": PermanentFailure(mid, code=0x0B),
            "requeue": Requeue(mid),
        }
        self.outbox.mark_many([outcomes[kind]])

    @precondition(lambda self: bool(self._sending_parts()))
    @rule(data=st.data(), route=st.sampled_from(ROUTES))
    def submit_all_then_fail(self, data: st.DataObject, route: str) -> None:
        # A batch where every part's submit comes before a failure of the same message.
        mid = data.draw(st.sampled_from(sorted({m for m, _ in self._sending_parts()})))
        seqs = [s for m, s in self._sending_parts() if m == mid]
        self.outbox.mark_many(
            [Submitted(mid, s, route, f"{mid}-{s}") for s in seqs] + [TemporaryFailure(mid)]
        )

    @rule(batch=st.lists(
        st.tuples(st.integers(1, 30), st.integers(0, 2), st.sampled_from(ROUTES),
                  st.sampled_from(list(ReportOutcome))),
        min_size=1, max_size=3,
    ))
    def report(self, batch: list[tuple[int, int, str, ReportOutcome]]) -> None:
        # Ids follow the submit scheme, so a report may come before, after or without its id.
        self.outbox.record_reports([
            Report(route, f"{mid}-{seq}", outcome, code=7) for mid, seq, route, outcome in batch
        ])

    @rule(seconds=st.integers(1, 40))
    def advance(self, seconds: int) -> None:
        self.now += seconds * 1000

    @rule()
    def timers(self) -> None:
        self.outbox.expire_due()
        self.outbox.mark_unknown_due()

    @rule()
    def restart(self) -> None:
        self.outbox.close()
        self.outbox = self._open()
        self.outbox.recover()

    @rule(mid=st.integers(1, 30))
    def cancel(self, mid: int) -> None:
        self.outbox.cancel(mid)

    @rule(to=st.sampled_from(NUMBERS))
    def stop(self, to: str) -> None:
        self.outbox.cancel_queued_for_number(to)

    @rule(mid=st.integers(1, 30))
    def retry(self, mid: int) -> None:
        self.outbox.retry(mid)

    @rule(mid=st.integers(1, 30), total=st.integers(1, 4))
    def reshape(self, mid: int, total: int) -> None:
        # refused once a part went out, or for a final or unknown message
        with contextlib.suppress(OutboxError):
            self.outbox.reshape(mid, total)

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def consistent(self) -> None:
        conn = self.outbox.conn
        messages = dict(conn.execute("SELECT id, state FROM outbox_message").fetchall())
        assert self.accepted <= set(messages)
        parts: dict[int, list[str]] = {}
        for mid, state in conn.execute(
            "SELECT message_id, state FROM outbox_part ORDER BY message_id, seq"
        ):
            parts.setdefault(mid, []).append(state)
        history: dict[int, list[State]] = {}
        for mid, state in conn.execute("SELECT message_id, state FROM outbox_history ORDER BY id"):
            history.setdefault(mid, []).append(State(state))
        totals = dict(conn.execute("SELECT id, total_parts FROM outbox_message").fetchall())
        for mid, raw in messages.items():
            state = State(raw)
            ps = parts[mid]
            assert len(ps) == totals[mid], (mid, ps, totals[mid])
            states = history[mid]
            assert states[0] in (State.QUEUED, State.SCHEDULED)
            for old, new in itertools.pairwise(states):
                assert new in TRANSITIONS[old], (mid, states)
            assert states[-1] == state, (mid, states, state)
            if state in (State.QUEUED, State.SCHEDULED):
                assert "queued" in ps and "sending" not in ps, (mid, state, ps)
            if state == State.SENDING:
                assert "sending" in ps, (mid, ps)
            if state == State.SUBMITTED:
                assert "queued" not in ps and "sending" not in ps, (mid, ps)
            if state == State.DELIVERED:
                assert set(ps) == {"delivered"}, (mid, ps)


TestOutboxMachine = OutboxMachine.TestCase
TestOutboxMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
