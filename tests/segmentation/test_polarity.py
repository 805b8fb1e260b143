"""polarity(): the claimed direction holds against the evaluator for every rule and data.

D' is D with new events appended and its traits / last_seen_ms recomputed exactly as ingest
keeps them (``derive_traits``; last_seen over inbound types), both evaluated at the same now.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_rules_support import (
    HOUR,
    NOW,
    WINDOWS,
    derive_traits,
    durations,
    leaves,
    prop_filters,
    prop_values,
    rules,
    sequences,
    subscriber_data,
    timestamps,
    values,
)

from segmentation.builtins import BUILTINS
from segmentation.rules.ast import (
    DAY_MS,
    TRAITS,
    And,
    EventCount,
    EventSpec,
    EventSum,
    LastEvent,
    Not,
    Or,
    Rule,
    Sequence,
    Trait,
    walk,
)
from segmentation.rules.dsl import parse
from segmentation.rules.evaluate import EventRow, SubscriberData, evaluate
from segmentation.rules.polarity import NewEvents, Polarity, polarity
from segmentation.traits import LAST_TS_TRAIT, OUTBOUND_TYPES

# the support strategies' types plus ones that move other traits (reply, product_view),
# outbound ones (sent moves last_sent_ms only, failed moves nothing) and a custom one
NEW_TYPES = ("purchase", "cart_add", "link_click", "signup", "reply", "product_view", "sent",
             "failed")
DAY = DAY_MS

SEEN: Counter[str] = Counter()
"""Answers over the property run; "up flipped": the claim held while the result changed."""


def inbound_last_seen(events: Iterable[EventRow]) -> int | None:
    """``trait.last_seen_ms`` as ingest keeps it: latest event not of an outbound type."""
    return max((e.ts_ms for e in events if e.type not in OUTBOUND_TYPES), default=None)


def with_events(d: SubscriberData, new: list[EventRow]) -> SubscriberData:
    events = (*d.events, *new)
    return dataclasses.replace(d, events=events, traits=derive_traits(events),
                               last_seen_ms=inbound_last_seen(events))


# -- strategies ----------------------------------------------------------------------------------

new_ts = st.one_of(
    timestamps,  # around now, including up to 12 h ahead
    st.sampled_from((NOW, NOW - 1, NOW - 30 * DAY, NOW - 30 * DAY + 1)),
    st.sampled_from((NOW + 1, NOW + HOUR, NOW + DAY)),  # stamped in the future
    st.integers(NOW - 400 * DAY, NOW - 20 * DAY),  # far in the past
)
new_props = st.one_of(st.none(), st.dictionaries(st.sampled_from(("sku", "qty")), prop_values,
                                                 max_size=2))
new_values = st.one_of(values, st.sampled_from((-100.0, -0.5, 1e6)))

all_specs = st.builds(EventSpec, st.sampled_from(NEW_TYPES),
                      st.lists(prop_filters(), max_size=2).map(tuple))
all_windows = st.one_of(st.none(), st.sampled_from((*WINDOWS, 30 * DAY)))
cmp_ops = st.sampled_from(("eq", "ne", "lt", "le", "gt", "ge"))


def extra_leaves() -> st.SearchStrategy[Rule]:
    """Leaves over every trait and the new event types (the support set has fewer)."""
    name = st.sampled_from(sorted(TRAITS))
    time_name = st.sampled_from(sorted(n for n, k in TRAITS.items() if k == "time"))
    return st.one_of(
        st.builds(Trait, name, st.sampled_from(("exists", "missing")), st.none()),
        st.builds(Trait, st.sampled_from(("orders", "spend")), cmp_ops, st.integers(-1, 4)),
        st.builds(Trait, time_name, st.sampled_from(("within_last", "more_than_ago")),
                  st.one_of(durations, st.just(30 * DAY))),
        st.builds(Trait, time_name, cmp_ops, st.one_of(timestamps, new_ts)),
        st.builds(EventCount, all_specs, cmp_ops, st.integers(0, 3), all_windows),
        st.builds(EventSum, all_specs, cmp_ops, st.sampled_from((-1, 0, 0.5, 3)), all_windows),
        st.builds(LastEvent, all_specs, st.sampled_from(("within_last", "more_than_ago")),
                  st.one_of(durations, st.just(30 * DAY))),
        sequences(),
        st.builds(Sequence, all_specs, all_specs, st.sampled_from((4 * HOUR, DAY)),
                  st.sampled_from((0, HOUR))),
    )


def all_leaves() -> st.SearchStrategy[Rule]:
    return st.one_of(leaves(), extra_leaves())


def mixed_rules() -> st.SearchStrategy[Rule]:
    return st.recursive(
        all_leaves(),
        lambda inner: st.one_of(
            st.lists(inner, min_size=2, max_size=3).map(lambda c: And(tuple(c))),
            st.lists(inner, min_size=2, max_size=3).map(lambda c: Or(tuple(c))),
            inner.map(Not),
        ),
        max_leaves=4,
    )


_TRAIT_TYPES = {"orders": "purchase", "spend": "purchase", "first_purchase_ms": "purchase",
                "last_interaction_ms": "reply", "last_seen_ms": "signup",
                **{col: t for t, col in LAST_TS_TRAIT.items()}}


def mentioned_types(rules_: list[Rule]) -> set[str]:
    """Event types the rules read directly or through a trait."""
    out: set[str] = set()
    for node in (n for r in rules_ for n in walk(r)):
        match node:
            case EventCount(spec) | EventSum(spec) | LastEvent(spec):
                out.add(spec.type)
            case Sequence(first, then_not):
                out |= {first.type, then_not.type}
            case Trait(name) if name in _TRAIT_TYPES:
                out.add(_TRAIT_TYPES[name])
    return out


SUPPORT_RULES = rules()  # built once: a fresh recursive strategy per draw is slow
MIXED_RULES = mixed_rules()
LEAVES = all_leaves()


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[Rule], SubscriberData, list[EventRow]]:
    # several rules per data set: drawing subscriber data is the costly part
    # leaves make the claims; trees check how they combine
    rules_ = [draw(SUPPORT_RULES), *(draw(MIXED_RULES) for _ in range(2)),
              *(draw(LEAVES) for _ in range(3))]
    d = draw(subscriber_data(7))
    # distinct ids (Sequence: "another row"); subscriber_data draws them all as 0
    d = dataclasses.replace(d, events=tuple(
        dataclasses.replace(e, id=i) for i, e in enumerate(d.events, start=1)))
    # mostly types the rules read, so the events matter more often than not
    read = sorted(mentioned_types(rules_))
    any_type = st.sampled_from(NEW_TYPES)
    type_ = st.one_of(st.sampled_from(read), any_type) if read else any_type
    types = draw(st.lists(type_, min_size=1, max_size=2, unique=True))
    new = [
        EventRow(1000 + i, draw(st.sampled_from(types)), draw(new_ts), draw(new_values),
                 draw(new_props))
        for i in range(draw(st.integers(1, 4)))
    ]
    return rules_, d, new


def check(rule: Rule, d: SubscriberData, new: list[EventRow]) -> tuple[Polarity, bool]:
    span = NewEvents(frozenset(e.type for e in new), min(e.ts_ms for e in new),
                     max(e.ts_ms for e in new))
    p = polarity(rule, span, NOW)
    before = evaluate(rule, d, NOW)
    after = evaluate(rule, with_events(d, new), NOW)
    if p is Polarity.UP:
        assert after >= before, (rule, span)
    elif p is Polarity.DOWN:
        assert after <= before, (rule, span)
    elif p is Polarity.CONST:
        assert after == before, (rule, span)
    return p, after != before


@settings(max_examples=600, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_claim_holds_against_the_evaluator(
    case: tuple[list[Rule], SubscriberData, list[EventRow]],
) -> None:
    rules_, d, new = case
    for rule in rules_:
        p, changed = check(rule, d, new)
        SEEN[p.value] += 1
        SEEN[f"{p.value} flipped"] += changed


def test_property_run_saw_every_answer() -> None:
    # runs after the property test in file order; alone (-k) it checks the seeded set below
    if not SEEN:
        test_claim_holds_against_the_evaluator()
    print(dict(SEEN))
    # floors well under what a run draws (~190-290 UP/DOWN of 3,600; the draw differs with
    # the other test files in the session), high enough that no answer goes unexercised
    for p in Polarity:
        assert SEEN[p.value] >= 100, SEEN
    # the directions were tested where they matter: the result moved the claimed way
    assert SEEN["up flipped"] >= 10 and SEEN["down flipped"] >= 10, SEEN
    assert SEEN["any flipped"] >= 10, SEEN


# -- hand-written cases ---------------------------------------------------------------------------

RULES = {b.name: parse(b.rule) for b in BUILTINS}


def pol(name: str, types: set[str], lo: int, hi: int) -> Polarity:
    return polarity(RULES[name], NewEvents(frozenset(types), lo, hi), NOW)


def test_builtins_for_a_live_click() -> None:
    click = {"link_click"}
    assert pol("active_subscribers", click, NOW, NOW) is Polarity.UP
    assert pol("inactive_subscribers", click, NOW, NOW) is Polarity.DOWN
    assert pol("engagement_low", click, NOW, NOW) is Polarity.DOWN
    assert pol("no_interaction_30d", click, NOW, NOW) is Polarity.DOWN
    assert pol("engagement_high", click, NOW, NOW) is Polarity.UP
    assert pol("engagement_medium", click, NOW, NOW) is Polarity.ANY  # in_segment
    assert pol("new_subscribers", click, NOW, NOW) is Polarity.CONST  # created_ms


def test_builtins_for_odd_times_and_types() -> None:
    # a future-stamped click raises last_interaction_ms past now: out of "within_last"
    assert pol("active_subscribers", {"link_click"}, NOW, NOW + 1) is Polarity.ANY
    # a backdated click may be the first interaction, already 30 days old
    assert pol("inactive_subscribers", {"link_click"}, NOW - 30 * DAY, NOW) is Polarity.ANY
    assert pol("inactive_subscribers", {"link_click"}, NOW - 30 * DAY + 1, NOW) is Polarity.DOWN
    # outbound and custom types are no interaction
    for t in ("sent", "delivered", "failed", "signup"):
        assert pol("active_subscribers", {t}, NOW, NOW) is Polarity.CONST
    # a purchase closes an abandoned cart; a cart add may open one
    assert pol("cart_abandoners", {"purchase"}, NOW, NOW) is Polarity.DOWN
    assert pol("cart_abandoners", {"cart_add"}, NOW, NOW) is Polarity.UP
    assert pol("cart_abandoners", {"cart_add", "purchase"}, NOW, NOW) is Polarity.ANY
    assert pol("cart_abandoners", {"cart_add"}, NOW + 1, NOW + 5) is Polarity.CONST


def test_counterexamples_to_tempting_claims() -> None:
    d = SubscriberData(id=1, events=(EventRow(1, "link_click", NOW - 40 * DAY),),
                       traits=derive_traits([EventRow(1, "link_click", NOW - 40 * DAY)]),
                       last_seen_ms=NOW - 40 * DAY)
    # a future click: last_interaction_ms > now, so "within_last" turns false
    r = parse("trait.last_interaction_ms within_last 60d")
    assert check(r, d, [EventRow(2, "link_click", NOW + 1)]) == (Polarity.ANY, True)
    assert evaluate(r, d, NOW) and not evaluate(r, with_events(d, [EventRow(2, "link_click",
                                                                           NOW + 1)]), NOW)
    # a negative purchase value lowers a sum
    s = EventSum(EventSpec("purchase"), "ge", 0)
    assert check(s, d, [EventRow(2, "purchase", NOW, -1.0)]) == (Polarity.ANY, True)
    # first_purchase_ms only moves earlier: "< x" can only turn true
    f = Trait("first_purchase_ms", "lt", NOW - DAY)
    assert check(f, d, [EventRow(2, "purchase", NOW - 2 * DAY)]) == (Polarity.UP, True)
    assert check(Not(Or((f, s))), d, [EventRow(2, "purchase", NOW)])[0] is Polarity.ANY


# -- exhaustive over trait leaves (the random trees draw each trait/op pair rarely) -----------

EDGES = (NOW - 40 * DAY, NOW - 30 * DAY, NOW - 30 * DAY + 1, NOW - 2 * DAY, NOW - HOUR, NOW,
         NOW + 1, NOW + HOUR)


def trait_leaves() -> list[Rule]:
    out: list[Rule] = []
    for name, kind in TRAITS.items():
        out += [Trait(name, "exists"), Trait(name, "missing")]
        numbers = (NOW - 30 * DAY, NOW - HOUR, NOW, NOW + 1) if kind == "time" else (0, 0.5, 1)
        out += [Trait(name, op, v) for op in ("eq", "ne", "lt", "le", "gt", "ge")
                for v in numbers]
        if kind == "time":
            out += [Trait(name, op, ms) for op in ("within_last", "more_than_ago")
                    for ms in (HOUR, 2 * DAY, 30 * DAY)]
    return out


def histories() -> list[SubscriberData]:
    out = [SubscriberData(id=1, created_ms=NOW - 2 * DAY)]
    for t in ("purchase", "link_click", "sent", "signup"):
        for ts in (NOW - 40 * DAY, NOW - HOUR, NOW + HOUR):
            out.append(with_events(out[0], [EventRow(1, t, ts, -3.0 if ts < NOW else 2.0)]))
    return out


@pytest.mark.slow  # ~15 s: 400 leaves x 13 histories x 72 batches
def test_every_trait_leaf_against_single_events() -> None:
    seen: Counter[Polarity] = Counter()
    batches = [[EventRow(9, t, ts, -5.0 if ts % 2 else 10.0)]
               for t in (*NEW_TYPES, "delivered") for ts in EDGES]
    batches += [[EventRow(9, t, a, -5.0), EventRow(10, t, b, 10.0)]  # lo < hi
                for t in ("purchase", "link_click")
                for a, b in ((NOW - 40 * DAY, NOW), (NOW - 30 * DAY, NOW - HOUR),
                             (NOW - HOUR, NOW + 1))]
    for rule in trait_leaves():
        for d in histories():
            for new in batches:
                seen[check(rule, d, new)[0]] += 1
    assert min(seen[p] for p in Polarity) >= 1000, seen
