"""What :mod:`segmentation.membership` takes and returns: its errors, the frozen results of
its operations, and which event types can move a segment (``trigger_events``). A module of its
own so the engine's module stays about the engine."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import SmsgateError
from segmentation.rules.ast import Rule
from segmentation.rules.compile import Deps
from segmentation.rules.dsl import format_rule
from segmentation.rules.evaluate import Explanation
from segmentation.traits import INTERACTION_TYPES, LAST_TS_TRAIT, OUTBOUND_TYPES

Cause = tuple[str, str | None]


class SegmentError(SmsgateError, ValueError):
    """A segment operation that cannot be done (``name``, ``why``)."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"segment {name!r}: {why}")
        self.name = name
        self.why = why


class UnknownSegmentError(SegmentError, LookupError):
    pass


class SegmentCycleError(SegmentError):
    """A definition whose ``in_segment`` references lead back to itself; ``path`` shows how."""

    def __init__(self, name: str, path: tuple[str, ...]) -> None:
        super().__init__(name, "membership references form a cycle: " + " -> ".join(path))
        self.path = path


@dataclass(frozen=True)
class SegmentInfo:
    id: int
    name: str
    kind: str
    status: str
    version: int
    member_count: int
    rule: Rule
    dsl_text: str | None
    deps: Deps
    created_ms: int
    last_full_ms: int | None
    swept_ms: int | None = None
    """Time conditions are accounted for up to here (``process_due``); None: never swept."""

    @property
    def manual(self) -> bool:
        """A list set by hand (``set_manual_members``), not a rule. Its ``rule`` is
        ``in_segment(<itself>)`` — what its membership means when read — and its ``deps`` are
        empty: nothing but the list changes it."""
        return self.kind == "manual"

    @property
    def text(self) -> str:
        """The rule as text: what it was defined with, else the printed tree."""
        if self.manual:
            return "(manual list)"
        return self.dsl_text or format_rule(self.rule)


@dataclass(frozen=True)
class Diff:
    """The outcome of evaluating one segment: who entered, who left, how long it took."""

    segment: str
    entered: int
    exited: int
    member_count: int
    elapsed_ms: float


@dataclass(frozen=True)
class Prepared:
    """One batch evaluated on a read snapshot by ``Membership.prepare`` (a connection and
    thread of its own), for ``Membership.commit`` to write on the writer's connection.

    ``queue_ids``: the ``membership_queue`` rows it took (ids are never reused, schema 14).
    ``pairs``: segment id -> subscriber -> cause, everything the batch re-evaluates.
    ``carried``: the part of ``pairs`` handed over from the writer's memory (not queued),
    given back to it when the batch cannot be committed. ``fresh``: segment id -> (the
    definition evaluated, which of its pairs' subscribers the rule selected at ``now``), for
    the segments that read no other segment and have no carried pair. ``elapsed_ms``: how
    long preparing took."""

    now: int
    queue_ids: tuple[int, ...]
    pairs: dict[int, dict[int, Cause]]
    carried: dict[int, dict[int, Cause]]
    fresh: dict[int, tuple[str, frozenset[int]]]
    elapsed_ms: float = 0.0


@dataclass(frozen=True)
class BatchResult:
    segments: int
    pairs: int
    entered: int
    exited: int


@dataclass(frozen=True)
class Drift:
    """Reconcile's finding for one segment: ids that should be members and are not, and back."""

    segment: str
    missing: tuple[int, ...]
    extra: tuple[int, ...]
    stored_count: int
    counted: int
    missing_total: int = 0
    """How many should be members and are not (``missing`` is a sample of them)."""
    extra_total: int = 0

    @property
    def clean(self) -> bool:
        return not self.missing and not self.extra and self.stored_count == self.counted


@dataclass(frozen=True)
class ExplainResult:
    subscriber_id: int
    segment: str
    stored_member: bool
    result: bool
    tree: Explanation


@dataclass(frozen=True)
class MembershipStatistics:
    batches: int
    pairs_evaluated: int
    entered: int
    exited: int
    due_processed: int
    pending_subscribers: int
    last_batch_ms: float


def trigger_events(deps: Deps) -> frozenset[str]:
    """Event types whose ingest can change a segment with ``deps``: the ones it reads, plus
    the types that move the traits it reads (``segmentation.ingest`` keeps them) and, for
    ``last_seen_ms``, every type that comes from the subscriber."""
    out = set(deps.events)
    for trait in deps.traits:
        if trait in ("orders", "spend", "first_purchase_ms"):
            out.add("purchase")
        elif trait == "last_interaction_ms":
            out |= INTERACTION_TYPES
        else:
            out |= {t for t, col in LAST_TS_TRAIT.items() if col == trait}
    if "profile.last_seen_ms" in deps.keys:
        out.add(ANY_INBOUND)
    return frozenset(out)


ANY_INBOUND = "*inbound"
"""Stands for every event type that is not outbound (sent, delivered, failed)."""


def with_inbound(types: set[str]) -> set[str]:
    return types | {ANY_INBOUND} if types - OUTBOUND_TYPES else types
