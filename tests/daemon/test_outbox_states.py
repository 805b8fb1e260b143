"""Pure outbox rules: id normalisation, report aggregation, retry decisions, the state table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.outbox import estimate_parts
from gateway.outbox_ids import IdFormat, normalise_message_id
from gateway.outbox_states import (
    FINAL,
    TRANSITIONS,
    PartState,
    ReportOutcome,
    RetryDecision,
    RetryPolicy,
    State,
    aggregate,
    decide_retry,
    part_after_report,
)

# -- carrier ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "convention", "expected"),
    [
        ("1A2B", "hex", "6699"),
        ("1a2b", "hex", "6699"),
        ("00001a2b", "hex", "6699"),
        ("0x1A2B", "hex", "6699"),
        (" 1a2b\x00", "hex", "6699"),
        ("6699", "dec", "6699"),
        ("0006699", "dec", "6699"),
        ("0", "dec", "0"),
        ("000", "hex", "0"),
        ("AbC-12", "text", "abc-12"),
        ("00AbC", "text", "abc"),
        ("000", "text", "0"),
        # an id that does not parse in its declared convention is kept, in text form
        ("XYZ", "hex", "xyz"),
        ("12ab", "dec", "12ab"),
    ],
)
def test_normalise_message_id(raw: str, convention: str, expected: str) -> None:
    assert normalise_message_id(raw, convention) == expected  # type: ignore[arg-type]


def test_vonage_style_hex_submit_decimal_report_match() -> None:
    # Vonage: hex in submit_sm_resp, decimal in the receipt (field-failures.md §3.3).
    fmt = IdFormat("hex", "dec")
    assert fmt.submit_id("0A1B2C3D") == fmt.report_id("169552957")
    assert str(fmt) == "hex/dec" and str(IdFormat("dec", "dec")) == "dec"


@given(st.integers(min_value=0, max_value=2**128), st.integers(0, 6), st.booleans())
def test_hex_and_decimal_spellings_of_one_number_agree(n: int, zeros: int, upper: bool) -> None:
    hex_text = "0" * zeros + (f"{n:X}" if upper else f"{n:x}")
    dec_text = "0" * zeros + str(n)
    assert normalise_message_id(hex_text, "hex") == normalise_message_id(dec_text, "dec")


@given(st.text(min_size=1, max_size=20), st.sampled_from(["hex", "dec", "text"]))
def test_normalisation_is_idempotent_in_text_form(raw: str, convention: str) -> None:
    once = normalise_message_id(raw, convention)  # type: ignore[arg-type]
    assert normalise_message_id(once, "text") == normalise_message_id(once, "text")
    if convention != "text" and once.isdigit():
        assert normalise_message_id(once, "dec") == once


# -- aggregation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([PartState.DELIVERED], State.DELIVERED),
        ([PartState.DELIVERED, PartState.DELIVERED, PartState.DELIVERED], State.DELIVERED),
        ([PartState.DELIVERED, PartState.SUBMITTED], None),
        ([PartState.DELIVERED, PartState.UNDELIVERABLE], State.UNDELIVERABLE),
        ([PartState.SUBMITTED, PartState.UNDELIVERABLE], State.UNDELIVERABLE),
        ([PartState.DELIVERED, PartState.EXPIRED], State.EXPIRED),
        ([PartState.EXPIRED, PartState.UNDELIVERABLE], State.UNDELIVERABLE),
        ([PartState.DELIVERED, PartState.UNKNOWN], State.UNKNOWN),
        ([PartState.UNKNOWN], State.UNKNOWN),
        ([PartState.SENDING], None),
        ([], None),
    ],
)
def test_aggregate_rules(parts: list[PartState], expected: State | None) -> None:
    assert aggregate(parts) == expected


@given(st.lists(st.sampled_from(list(PartState)), min_size=1, max_size=8))
def test_aggregate_never_claims_delivery_without_every_part_delivered(
    parts: list[PartState],
) -> None:
    result = aggregate(parts)
    if result == State.DELIVERED:
        assert all(p == PartState.DELIVERED for p in parts)
    if PartState.UNDELIVERABLE in parts:
        assert result == State.UNDELIVERABLE
    # order of reports does not matter
    assert aggregate(list(reversed(parts))) == result
    # the store passes raw column values: they must give the same answer
    assert aggregate([p.value for p in parts]) == result


@given(
    st.sampled_from(list(PartState)), st.lists(st.sampled_from(list(ReportOutcome)), max_size=6)
)
def test_a_final_report_is_never_overridden(
    start: PartState, outcomes: list[ReportOutcome]
) -> None:
    state = start
    reached_final = None
    for outcome in outcomes:
        state = part_after_report(state, outcome)
        if reached_final is not None:
            assert state == reached_final
        if state in (PartState.DELIVERED, PartState.UNDELIVERABLE, PartState.EXPIRED):
            reached_final = state


def test_enroute_changes_nothing_and_unknown_needs_a_sent_part() -> None:
    assert part_after_report(PartState.SUBMITTED, ReportOutcome.ENROUTE) == PartState.SUBMITTED
    assert part_after_report(PartState.SUBMITTED, ReportOutcome.UNKNOWN) == PartState.UNKNOWN
    assert part_after_report(PartState.QUEUED, ReportOutcome.UNKNOWN) == PartState.QUEUED
    assert part_after_report(PartState.UNKNOWN, ReportOutcome.DELIVERED) == PartState.DELIVERED
    # the report overtook the submit response: the part is still `sending`
    assert part_after_report(PartState.SENDING, ReportOutcome.DELIVERED) == PartState.DELIVERED


# -- retries -------------------------------------------------------------------------------------


def test_backoff_is_exponential_and_capped() -> None:
    policy = RetryPolicy(base_s=2, cap_s=30)
    assert [policy.delay_ms(n) for n in range(0, 7)] == [0, 2000, 4000, 8000, 16000, 30000, 30000]
    assert policy.delay_ms(10_000) == 30_000


@given(
    st.integers(1, 50), st.integers(0, 20), st.integers(0, 10**9),
    st.one_of(st.none(), st.integers(0, 2 * 10**9)),
)
def test_decide_retry_respects_limit_and_deadline(
    attempts: int, max_retries: int, now: int, expires: int | None
) -> None:
    policy = RetryPolicy(base_s=1, cap_s=60)
    decision, not_before = decide_retry(
        attempts=attempts, max_retries=max_retries, now_ms=now, expires_ms=expires, policy=policy
    )
    if attempts > max_retries:
        assert decision is RetryDecision.FAIL
    elif decision is RetryDecision.RETRY:
        assert now < not_before <= now + 60_000
        assert expires is None or not_before < expires
    else:
        assert decision is RetryDecision.EXPIRE
        assert expires is not None and now + policy.delay_ms(attempts) >= expires


@given(st.integers(1, 60), st.floats(0, 1), st.floats(0.1, 100), st.floats(0.1, 1000),
       st.floats(0, 0.99))
def test_jitter_stays_within_its_spread_and_under_the_cap(
    attempt: int, u: float, base: float, cap: float, jitter: float
) -> None:
    policy = RetryPolicy(base_s=base, cap_s=cap, jitter=jitter)
    nominal = policy.delay_ms(attempt)
    delay = policy.delay_ms(attempt, u)
    assert delay <= int(cap * 1000)
    assert int(nominal * (1 - jitter)) - 1 <= delay <= int(nominal * (1 + jitter)) + 1
    assert policy.delay_ms(attempt, 0.0) <= delay <= policy.delay_ms(attempt, 1.0)


def test_jitter_spreads_by_a_fifth_either_way_by_default() -> None:
    policy = RetryPolicy(base_s=10, cap_s=600)
    assert (policy.delay_ms(1, 0.0), policy.delay_ms(1), policy.delay_ms(1, 1.0)) == (
        8_000, 10_000, 12_000)
    # at the cap the spread only shortens
    assert (policy.delay_ms(20, 0.0), policy.delay_ms(20, 1.0)) == (480_000, 600_000)
    with pytest.raises(ValueError):
        RetryPolicy(jitter=1.0)


@given(
    st.integers(1, 50), st.integers(0, 20), st.integers(0, 10**9),
    st.one_of(st.none(), st.integers(0, 2 * 10**9)), st.floats(0, 1),
)
def test_jitter_never_changes_the_decision_nor_crosses_the_deadline(
    attempts: int, max_retries: int, now: int, expires: int | None, u: float
) -> None:
    policy = RetryPolicy(base_s=1, cap_s=60, jitter=0.5)
    common = {"attempts": attempts, "max_retries": max_retries, "now_ms": now,
              "expires_ms": expires, "policy": policy}
    nominal, _ = decide_retry(**common)  # type: ignore[arg-type]
    decision, not_before = decide_retry(**common, u=u)  # type: ignore[arg-type]
    assert decision is nominal
    if decision is RetryDecision.RETRY:
        assert now < not_before <= now + 60_000
        assert expires is None or not_before < expires


# -- state table ---------------------------------------------------------------------------------


def test_transition_table_covers_every_state_and_final_states_are_dead_ends() -> None:
    assert set(TRANSITIONS) == set(State)
    for state in FINAL - {State.FAILED}:
        assert TRANSITIONS[state] == frozenset()
    assert TRANSITIONS[State.FAILED] == frozenset({State.QUEUED})
    # nothing goes straight from waiting to delivered: it has to be sent first
    assert State.DELIVERED not in TRANSITIONS[State.QUEUED]


# -- part estimate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # 160 septets: the euro sign is an escape pair (TS 23.038 §6.2.1.1)
        ("€" * 81, 2),
        ("é" * 160, 1),  # é is in the default alphabet
        ("ж" * 70, 1),
        ("ж" * 71, 2),
        ("😀" * 35, 1),  # a surrogate pair is two UCS-2 units
        ("😀" * 36, 2),
    ],
)
def test_estimate_parts(text: str, parts: int) -> None:
    assert estimate_parts(text) == parts
