"""Built-in segments for the common strategies, each a plain rule (``docs/segments.md``).

Fixed ones (:data:`BUILTINS`) need no settings. Templates take the shop's facts: products and
their replenishment cycles, store locations, regions, age bands and other demographics.
``top_buyers`` needs the spend percentile of the current data; :func:`top_buyers` computes it
and :func:`install` (run again nightly) redefines the segment only when the threshold moved.
Rules follow ``../shared/reference/segmentation-compliance.md`` §5.5; traits are maintained by
``segmentation.ingest`` (``last_interaction_ms`` = click, view, cart add, purchase or reply).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from segmentation.membership import Diff, Membership
from segmentation.rules.dsl import parse


@dataclass(frozen=True)
class Builtin:
    name: str
    rule: str
    description: str


BUILTINS: tuple[Builtin, ...] = (
    Builtin("new_subscribers", "trait.created_ms within_last 14d",
            "joined in the last 14 days"),
    Builtin("active_subscribers", "trait.last_interaction_ms within_last 30d",
            "clicked, viewed, added to cart, bought or replied in the last 30 days"),
    Builtin("inactive_subscribers", "trait.last_interaction_ms more_than_ago 30d",
            "interacted before, but not in the last 30 days"),
    Builtin("no_interaction_30d",
            "not trait.last_interaction_ms within_last 30d and trait.created_ms more_than_ago 30d",
            "re-engagement: no interaction in 30 days (never counts), subscribed over 30 days"),
    Builtin("cart_abandoners", "sequence(cart_add, then_not purchase, within 4h, min_age 1h)",
            "added to cart 1-4 hours ago and has not bought since"),
    Builtin("engagement_high",
            "trait.last_interaction_ms within_last 7d and (count(link_click, last 30d) >= 3 "
            "or count(purchase, last 30d) >= 1 or count(reply, last 30d) >= 2)",
            "interacted this week, and clicks, buys or replies often"),
    Builtin("engagement_medium",
            'trait.last_interaction_ms within_last 30d and not in_segment("engagement_high")',
            "interacted this month, not highly engaged"),
    Builtin("engagement_low", "not trait.last_interaction_ms within_last 30d",
            "no interaction this month (or ever)"),
)


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else _q(key)


def top_buyers(spend_threshold: float | None, orders_per_year: int = 5) -> Builtin:
    """Top 10 % of buyers by spend, or ``orders_per_year`` purchases in the last 365 days."""
    yearly = f"count(purchase, last 365d) >= {orders_per_year}"
    rule = yearly if spend_threshold is None else f"trait.spend >= {spend_threshold!r} or {yearly}"
    return Builtin("top_buyers", rule,
                   f"top 10 % of buyers by total spend, or >= {orders_per_year} orders a year")


def spend_p90(m: Membership) -> float | None:
    """The spend at which the top 10 % of buyers start (None: nobody has bought)."""
    n = int(m.conn.execute("SELECT COUNT(*) FROM trait WHERE spend > 0").fetchone()[0])
    if n == 0:
        return None
    k = max(1, math.ceil(n * 0.10))
    row = m.conn.execute(
        "SELECT spend FROM trait WHERE spend > 0 ORDER BY spend DESC LIMIT 1 OFFSET ?", (k - 1,)
    ).fetchone()
    return float(row[0])


def replenishment(sku: str, cycle_days: int) -> Builtin:
    """Last purchase of ``sku`` is older than its cycle (and not older than two cycles: after
    that the customer has probably moved on)."""
    spec = f"purchase where sku = {_q(sku)}"
    return Builtin(
        f"replenish_{sku}",
        f"last({spec}) more_than_ago {cycle_days}d and last({spec}) within_last "
        f"{2 * cycle_days}d",
        f"bought {sku} more than {cycle_days} days ago (its cycle), within {2 * cycle_days}",
    )


def near_store(name: str, lat: float, lon: float, km: float = 25.0) -> Builtin:
    return Builtin(f"near_{name}", f"geo.within({km!r}km, {lat!r}, {lon!r})",
                   f"within {km:g} km of the {name} store")


def in_region(name: str, regions: Sequence[str], *, country: str | None = None) -> Builtin:
    rule = f"geo.region in [{', '.join(_q(r) for r in regions)}]"
    if country is not None:
        rule = f"geo.country in [{_q(country)}] and {rule}"
    return Builtin(f"region_{name}", rule, f"lives in {', '.join(regions)}")


def age_band(lo: int, hi: int, key: str = "age") -> Builtin:
    return Builtin(f"age_{lo}_{hi}", f"attr.{_key(key)} between [{lo}, {hi}]",
                   f"aged {lo} to {hi} (attribute {key})")


def demographic(key: str, value: str) -> Builtin:
    return Builtin(f"{key}_{value}", f"attr.{_key(key)} = {_q(value)}", f"{key} is {value}")


def install(
    m: Membership,
    extra: Iterable[Builtin] = (),
    *,
    orders_per_year: int = 5,
) -> list[Diff]:
    """Define every built-in (and ``extra`` templates) whose rule differs from the stored one;
    returns the diffs of those (re)computed. Idempotent; run nightly to move top_buyers."""
    wanted = [*BUILTINS, top_buyers(spend_p90(m), orders_per_year), *extra]
    stored = {s.name: s.dsl_text for s in m.segments()}
    diffs = []
    for b in wanted:
        parse(b.rule)  # fail before writing anything if a template produced a bad rule
    for b in wanted:
        if stored.get(b.name) != b.rule:
            diffs.append(m.define(b.name, b.rule, kind="builtin"))
    return diffs
