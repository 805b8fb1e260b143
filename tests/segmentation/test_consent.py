"""Consent ledger (latest wins, append-only, pruning) and the suppression list."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmentation.consent import (
    RETENTION_MS,
    ConsentError,
    consent_history,
    current_consent,
    is_sendable,
    is_suppressed,
    number_hash,
    prune_consent,
    record_consent,
    suppress,
    unsuppress,
)
from segmentation.store import Change, Store
from segmentation.subscribers import upsert_subscriber
from tests.segmentation.conftest import HASH_KEY, START_MS, ManualClock

A, B = "+12125550101", "+13125550103"


def test_latest_entry_wins_and_gates_marketing(store: Store) -> None:
    assert current_consent(store, A, "marketing") is None
    assert not is_sendable(store, A, "marketing")
    assert is_sendable(store, A, "transactional")  # no revoke: transactional allowed
    record_consent(store, A, "marketing", "grant", "web_form", actor="api",
                   disclosure="Msg & data rates may apply. Reply STOP to end.",
                   evidence={"url": "https://shop.example/join", "ip": "192.0.2.7"})
    assert is_sendable(store, "(212) 555-0101", "marketing")
    record_consent(store, A, "marketing", "revoke", "keyword", actor="inbound",
                   keyword_text="stop please", ts_ms=START_MS + 1)
    cur = current_consent(store, A, "marketing")
    assert cur is not None and (cur.action, cur.keyword_text) == ("revoke", "stop please")
    assert not is_sendable(store, A, "marketing")
    assert is_sendable(store, A, "transactional")  # programs are independent
    record_consent(store, A, "transactional", "revoke", "operator", actor="cli:ann")
    assert not is_sendable(store, A, "transactional")
    assert [e.action for e in consent_history(store, A)] == ["grant", "revoke", "revoke"]


def test_a_late_arriving_older_row_does_not_win(store: Store) -> None:
    record_consent(store, A, "marketing", "grant", "api", actor="api", ts_ms=START_MS)
    record_consent(store, A, "marketing", "revoke", "api", actor="api", ts_ms=START_MS - 10)
    cur = current_consent(store, A, "marketing")
    assert cur is not None and cur.action == "grant"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"program": "promo"}, "program"),
        ({"action": "maybe"}, "action"),
        ({"method": "telepathy"}, "method"),
        ({"method": "keyword"}, "keyword_text"),
        ({"method": "import"}, "evidence"),
        ({"actor": ""}, "actor"),
    ],
)
def test_invalid_rows_are_refused(store: Store, kwargs: dict[str, str], field: str) -> None:
    args = {"program": "marketing", "action": "grant", "method": "api", "actor": "api"} | kwargs
    with pytest.raises(ConsentError) as info:
        record_consent(store, A, args["program"], args["action"], args["method"],
                       actor=args["actor"])
    assert info.value.field == field
    assert store.scalar("SELECT count(*) FROM consent") == 0


def test_dedupe_key_records_a_fact_once_and_rows_link_to_subscribers(store: Store) -> None:
    changes: list[Change] = []
    store.add_listener(changes.append)
    ev = {"file_sha256": "ab" * 32, "row": 2}
    first = record_consent(store, A, "marketing", "grant", "import", actor="cli",
                           evidence=ev, dedupe_key="x")
    assert first is not None
    assert record_consent(store, A, "marketing", "grant", "import", actor="cli",
                          evidence=ev, dedupe_key="x") is None
    assert store.scalar("SELECT count(*) FROM consent") == 1
    assert store.scalar("SELECT subscriber_id FROM consent") is None
    assert "consent.marketing" in changes[0].attributes
    sid = upsert_subscriber(store, A)
    assert store.scalar("SELECT subscriber_id FROM consent") == sid  # linked on creation
    record_consent(store, A, "marketing", "revoke", "api", actor="api")
    assert sid in changes[-1].subscriber_ids


def test_suppression_blocks_marketing_even_with_a_grant(store: Store) -> None:
    record_consent(store, A, "marketing", "grant", "api", actor="api")
    assert suppress(store, A, "marketing", "complaint")
    assert not suppress(store, A, "marketing", "again")  # already there
    assert is_suppressed(store, A, "marketing")
    assert not is_sendable(store, A, "marketing")
    assert is_sendable(store, A, "transactional")
    record_consent(store, A, "marketing", "grant", "api", actor="api", ts_ms=START_MS + 5)
    assert not is_sendable(store, A, "marketing")  # a later grant does not lift it
    assert unsuppress(store, A, "marketing")
    assert is_sendable(store, A, "marketing")
    suppress(store, A, "all", "legal hold")
    assert not is_sendable(store, A, "transactional")
    # the list holds the keyed hash, never the number
    row = store.query("SELECT phone_hash FROM suppression")[0]
    assert row["phone_hash"] == number_hash(HASH_KEY, A)
    assert "2125550101" not in row["phone_hash"]
    assert number_hash(b"other key", A) != number_hash(HASH_KEY, A)


def test_prune_keeps_the_latest_row_per_number_and_program(store: Store) -> None:
    day = 86_400_000
    for i, action in enumerate(["grant", "revoke", "grant"]):
        record_consent(store, A, "marketing", action, "api", actor="api", ts_ms=i * day)
    record_consent(store, A, "transactional", "grant", "api", actor="api", ts_ms=0)
    record_consent(store, B, "marketing", "grant", "api", actor="api", ts_ms=10 * day)
    assert prune_consent(store, before_ms=100 * day) == 2
    left = {(r["phone_e164"], r["program"], r["ts_ms"]) for r in store.query(
        "SELECT phone_e164, program, ts_ms FROM consent")}
    assert left == {(A, "marketing", 2 * day), (A, "transactional", 0), (B, "marketing", 10 * day)}
    assert is_sendable(store, A, "marketing")


ops = st.lists(
    st.tuples(st.sampled_from([A, B]), st.sampled_from(["marketing", "transactional"]),
              st.sampled_from(["grant", "revoke"]), st.integers(0, 5)),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(ops=ops, cutoff=st.integers(0, 6))
def test_latest_wins_and_prune_agree_with_a_python_model(
    ops: list[tuple[str, str, str, int]], cutoff: int
) -> None:
    with tempfile.TemporaryDirectory() as d, Store(
        Path(d) / "c.db", clock=ManualClock(), hash_key=HASH_KEY
    ) as s:
        model: dict[tuple[str, str], tuple[int, int, str]] = {}
        for seq, (num, program, action, ts) in enumerate(ops):
            record_consent(s, num, program, action, "api", actor="api", ts_ms=ts)
            key = (num, program)
            if key not in model or (ts, seq) >= model[key][:2]:
                model[key] = (ts, seq, action)

        def check() -> None:
            for num in (A, B):
                for program in ("marketing", "transactional"):
                    cur = current_consent(s, num, program)
                    exp = model.get((num, program))
                    assert (cur.action if cur else None) == (exp[2] if exp else None)
                    sendable = (exp is not None and exp[2] == "grant") if program == "marketing" \
                        else (exp is None or exp[2] != "revoke")
                    assert is_sendable(s, num, program) == sendable

        check()
        prune_consent(s, before_ms=cutoff)
        check()  # pruning never changes the current state
        assert s.scalar("SELECT count(*) FROM consent WHERE ts_ms < ?", (cutoff,)) <= len(model)


def test_prune_refuses_a_cutoff_inside_the_five_year_retention(
    store: Store, clock: ManualClock
) -> None:
    old = START_MS - RETENTION_MS - 10
    for ts in (old, old + 1, START_MS):
        record_consent(store, A, "marketing", "grant", "api", actor="api", ts_ms=ts)
    with pytest.raises(ConsentError) as info:
        prune_consent(store, before_ms=START_MS - RETENTION_MS + 1)  # 1 ms too young
    assert info.value.field == "before_ms" and "5 years" in info.value.why
    assert store.scalar("SELECT count(*) FROM consent") == 3  # nothing deleted
    assert prune_consent(store, before_ms=START_MS - RETENTION_MS) == 2  # exactly 5 years: fine
    clock.advance(86_400_000)  # a day later the limit moved with the clock
    assert prune_consent(store, before_ms=START_MS - RETENTION_MS + 86_400_000) == 0


@pytest.mark.parametrize("ts", [-1, 10**20, 253_402_300_800_000])
def test_a_consent_time_outside_1970_to_9999_is_refused(store: Store, ts: int) -> None:
    with pytest.raises(ConsentError) as info:
        record_consent(store, A, "marketing", "grant", "api", actor="api", ts_ms=ts)
    assert info.value.field == "ts_ms"
    assert store.scalar("SELECT count(*) FROM consent") == 0
