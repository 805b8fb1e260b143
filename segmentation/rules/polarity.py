"""Which way appending events can move a rule's result (at the same ``now``).

``polarity(rule, new, now)`` answers for every subscriber data D and every non-empty list of
new events with types in ``new.types`` and ``ts_ms`` in ``[new.lo, new.hi]`` (any props and
values, ids not in D), with D' = D plus those events and its traits / ``last_seen_ms``
recomputed as :mod:`segmentation.ingest` keeps them:

- ``UP``: eval(D') >= eval(D); ``DOWN``: eval(D') <= eval(D); ``CONST``: equal; ``ANY``: no claim.

Membership uses it to skip re-evaluating a pair whose stored result the events cannot change
(an UP rule and a member, a DOWN rule and a non-member, a CONST rule). A wrong claim corrupts
membership silently, so every case below is proven in a comment and held to the evaluator by
the property test ``tests/segmentation/test_polarity.py``; anything unproven is ``ANY``.
Events with ``ts_ms > now`` are ignored by event nodes (``evaluate._matching``) but do raise
max-type traits, which ingest takes over all events.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from segmentation.rules.ast import (
    And,
    Attr,
    Consent,
    EventCount,
    EventSum,
    Geo,
    InSegment,
    LastEvent,
    Near,
    Not,
    Or,
    Random,
    Rule,
    Sequence,
    Trait,
)
from segmentation.traits import INTERACTION_TYPES, LAST_TS_TRAIT, OUTBOUND_TYPES


class Polarity(enum.Enum):
    CONST = "const"  # appending the events cannot change the result
    UP = "up"  # can only turn false -> true
    DOWN = "down"  # can only turn true -> false
    ANY = "any"  # no claim


@dataclass(frozen=True)
class NewEvents:
    types: frozenset[str]  # types of the events appended for one subscriber
    lo: int  # least ts_ms among them
    hi: int  # greatest ts_ms among them


CONST: Final = Polarity.CONST
UP: Final = Polarity.UP
DOWN: Final = Polarity.DOWN
ANY: Final = Polarity.ANY

_PURCHASE_TRAITS: Final = frozenset({"orders", "spend", "first_purchase_ms"})
_MAX_TRAITS: Final = frozenset({*LAST_TS_TRAIT.values(), "last_interaction_ms",
                                "last_seen_ms"})


def _moved_by(name: str, types: frozenset[str]) -> bool:
    """Does an event of one of ``types`` change trait ``name`` (segmentation/ingest.py)?"""
    if name in _PURCHASE_TRAITS:
        return "purchase" in types  # orders/spend/first_purchase_ms: purchase events only
    if name == "last_interaction_ms":
        return bool(types & INTERACTION_TYPES)
    if name == "last_seen_ms":
        return bool(types - OUTBOUND_TYPES)  # every inbound type, custom ones too
    if name == "created_ms":
        return False  # set when the subscriber is created, never by events
    return any(LAST_TS_TRAIT.get(t) == name for t in types)


def _max_trait(op: str, value: int | float, new: NewEvents, now: int) -> Polarity:
    """A trait v' = max(v, ts of the new events that move it); None -> a value is possible."""
    if op == "within_last":
        # now - D < v <= now: a larger v that is still <= now stays inside; None stays false
        # unless an event lands inside. A future event (> now) pushes v out: no claim.
        return UP if new.hi <= now else ANY
    if op == "more_than_ago":
        if new.lo > now - value:
            return DOWN  # every new ts > now - D: v' is v or > now - D (false)
        if new.hi <= now - value:
            return UP  # every new ts <= now - D: v' <= now - D whenever v was (or was None)
        return ANY
    if op in ("gt", "ge"):
        return UP  # v only grows; None (false) may become a value
    if op == "lt":
        if new.lo >= value:
            return DOWN  # v' >= some new ts >= value: false
        return UP if new.hi < value else ANY  # v' = max(v, ts < value): < value iff v was
    if op == "le":
        if new.lo > value:
            return DOWN
        return UP if new.hi <= value else ANY
    return ANY  # eq / ne: a growing v may hit or leave the value


def _min_trait(op: str) -> Polarity:
    """first_purchase_ms: v' = min(v, new purchase ts); None -> a value is possible."""
    if op in ("lt", "le", "more_than_ago"):
        return UP  # v only shrinks; a smaller v stays below the bound (more_than_ago: v <= c)
    return ANY  # gt/ge/within_last/eq/ne: a shrinking v may leave the range


def _trait(node: Trait, new: NewEvents, now: int) -> Polarity:
    if not _moved_by(node.name, new.types):
        return CONST  # trait_value reads only the trait row / profile: unchanged
    if node.op == "exists":
        return UP  # a moved trait goes None -> value or value -> value, never to None
    if node.op == "missing":
        return DOWN
    assert node.value is not None
    if node.name == "orders":
        # orders = count of purchases (0 with no row), only grows
        return {"gt": UP, "ge": UP, "lt": DOWN, "le": DOWN}.get(node.op, ANY)
    if node.name == "spend":
        return ANY  # purchase values may be negative or NULL
    if node.name == "first_purchase_ms":
        return _min_trait(node.op)
    if node.name in _MAX_TRAITS:
        return _max_trait(node.op, node.value, new, now)
    return ANY


def _events_inert(etype: str, new: NewEvents, now: int, window: int | None = None) -> bool:
    """No new event can be read by an event node of type ``etype`` with this window."""
    if etype not in new.types:
        return True  # spec_matches needs the type
    if new.lo > now:
        return True  # _matching ignores ts > now
    return window is not None and new.hi <= now - window  # _in_window needs ts > now - window


def _leaf(rule: Rule, new: NewEvents, now: int) -> Polarity:
    match rule:
        case Attr() | Geo() | Near() | Random() | Consent():
            return CONST  # attributes, location, bucket, consent ledger: not written by events
        case InSegment():
            return ANY  # the other segment may move with the same events
        case Trait():
            return _trait(rule, new, now)
        case EventCount(spec, op, _, window):
            if _events_inert(spec.type, new, now, window):
                return CONST
            # the matching set only grows (filters only drop new events): count only grows
            return {"gt": UP, "ge": UP, "lt": DOWN, "le": DOWN}.get(op, ANY)
        case EventSum(spec, _, _, window):
            if _events_inert(spec.type, new, now, window):
                return CONST
            return ANY  # values may be negative: the sum moves either way
        case LastEvent(spec, op, ms):
            if _events_inert(spec.type, new, now):
                return CONST
            if op == "within_last":
                return UP  # the newest matching ts only grows (or appears)
            if new.lo > now - ms:
                return DOWN  # a counted new event (<= now) is > now - ms: newest is too recent
            if new.hi <= now - ms:
                return UP  # every new ts <= now - ms: newest stays <= now - ms if it was
            return ANY
        case Sequence(first, then_not, _, _):
            hit_first = not _events_inert(first.type, new, now)
            hit_then = not _events_inert(then_not.type, new, now)
            if first.type == then_not.type:
                return ANY if hit_first else CONST
            if hit_first and hit_then:
                return ANY
            if hit_first:
                return UP  # only new candidate starts; follow-ups (then_not) unchanged
            if hit_then:
                return DOWN  # only new follow-ups: an open sequence can only close
            return CONST
    raise TypeError(f"not a rule node: {rule!r}")


def _combine(parts: list[Polarity]) -> Polarity:
    kinds = set(parts) - {CONST}
    if not kinds:
        return CONST  # every child unchanged
    if len(kinds) == 1:
        return kinds.pop()  # all UP/CONST -> UP (and/or are monotone); likewise DOWN; ANY
    return ANY


_FLIP: Final = {UP: DOWN, DOWN: UP, CONST: CONST, ANY: ANY}


def polarity(rule: Rule, new: NewEvents, now: int) -> Polarity:
    """How appending ``new`` can move ``evaluate(rule, d, now)`` (module docstring)."""
    match rule:
        case And(children) | Or(children):
            return _combine([polarity(c, new, now) for c in children])
        case Not(child):
            return _FLIP[polarity(child, new, now)]  # negation reverses the direction
    return _leaf(rule, new, now)
