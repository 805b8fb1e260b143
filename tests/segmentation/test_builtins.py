"""Every built-in segment on a hand-checked fixture (expected members worked out by hand)."""

from __future__ import annotations

from segmentation import builtins
from segmentation.ingest import Event, ingest_events
from segmentation.membership import Membership
from segmentation.rules.dsl import parse
from segmentation.store import Store
from segmentation.subscribers import set_attributes, upsert_subscriber
from tests.segmentation.conftest import START_MS, ManualClock

DAY = 86_400_000
HOUR = 3_600_000


def _fixture(store: Store, clock: ManualClock) -> dict[str, int]:
    def sub(name: str, number: str, created_days_ago: int, **profile: object) -> int:
        clock.now = START_MS - created_days_ago * DAY
        return upsert_subscriber(store, number, **profile)  # type: ignore[arg-type]

    s = {
        "new": sub("new", "+12125550001", 2),
        "clicker": sub("clicker", "+12125550002", 100, lat=53.81, lon=-1.56),
        "big_spender": sub("big_spender", "+441134960000", 200, region="ENG"),
        "abandoner": sub("abandoner", "+12125550004", 50),
        "never": sub("never", "+12125550005", 40),
        "frequent": sub("frequent", "+12125550006", 400),
        "replenish": sub("replenish", "+12125550007", 100),
    }
    clock.now = START_MS
    ev = [
        *(Event("link_click", START_MS - d * DAY, subscriber_id=s["clicker"]) for d in (1, 3, 5)),
        Event("purchase", START_MS - 60 * DAY, subscriber_id=s["big_spender"], value=500),
        Event("cart_add", START_MS - 2 * HOUR, subscriber_id=s["abandoner"]),
        *(Event("purchase", START_MS - d * DAY, subscriber_id=s["frequent"], value=1)
          for d in (10, 50, 100, 200, 300)),
        Event("purchase", START_MS - 35 * DAY, subscriber_id=s["replenish"], value=2,
              props={"sku": "SKU-30"}),
    ]
    ingest_events(store, ev)
    set_attributes(store, s["never"], {"age": 30}, define_missing=True)
    set_attributes(store, s["frequent"], {"age": 50, "gender": "f"}, define_missing=True)
    return s


EXPECTED = {
    "new_subscribers": {"new"},
    "active_subscribers": {"clicker", "abandoner", "frequent"},
    "inactive_subscribers": {"big_spender", "replenish"},
    "no_interaction_30d": {"big_spender", "never", "replenish"},
    "cart_abandoners": {"abandoner"},
    "engagement_high": {"clicker"},
    "engagement_medium": {"abandoner", "frequent"},
    "engagement_low": {"new", "big_spender", "never", "replenish"},
    "top_buyers": {"big_spender", "frequent"},  # P90 of spend {500, 5, 2} is 500; 5 orders/yr
    "replenish_SKU-30": {"replenish"},
    "near_leeds": {"clicker"},
    "region_north": {"big_spender"},
    "age_25_44": {"never"},
    "gender_f": {"frequent"},
}


def test_every_builtin_on_a_hand_checked_fixture(store: Store, clock: ManualClock) -> None:
    s = _fixture(store, clock)
    m = Membership(store)
    extra = [builtins.replenishment("SKU-30", 30), builtins.near_store("leeds", 53.8, -1.55),
             builtins.in_region("north", ["ENG"], country="GB"), builtins.age_band(25, 44),
             builtins.demographic("gender", "f")]
    builtins.install(m, extra)
    names = {v: k for k, v in s.items()}
    got = {seg.name: {names[i] for i in m.members(seg.name)} for seg in m.segments()}
    assert got == EXPECTED
    assert {seg.kind for seg in m.segments()} == {"builtin"}
    assert all(m.count(n) == len(v) for n, v in EXPECTED.items())
    # idempotent: nothing is recomputed when nothing changed
    assert builtins.install(m, extra) == []
    # the percentile moves with the data: top_buyers is redefined on the next install
    ingest_events(store, [Event("purchase", START_MS, subscriber_id=s["never"], value=900)])
    diffs = builtins.install(m, extra)
    assert [d.segment for d in diffs] == ["top_buyers"]
    assert {names[i] for i in m.members("top_buyers")} == {"never", "frequent"}


def test_cart_abandoners_leave_after_the_window(store: Store, clock: ManualClock) -> None:
    s = _fixture(store, clock)
    m = Membership(store)
    builtins.install(m)
    clock.advance(2 * HOUR)  # the cart add is now 4 h old
    m.process_due()
    assert m.members("cart_abandoners") == []
    assert s["abandoner"] in m.members("active_subscribers")


def _symbolic(b: builtins.Builtin, **names: str) -> tuple[str, str]:
    """A template's segment name and rule with the values it was built from replaced by the
    docs' placeholders (``{"14d": "<2×cycle>d"}``), in the order given."""
    name, rule = b.name, b.rule
    for value, placeholder in names.items():
        name, rule = name.replace(value, placeholder), rule.replace(value, placeholder)
    return name, rule


def test_every_builtin_rule_parses_and_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "segments.md").read_text("utf-8")
    rows = [line for line in doc.splitlines() if line.startswith("| `")]
    # the fixed ones: each table row is | `name` | `rule` | meaning |
    for b in builtins.BUILTINS:
        parse(b.rule)
        assert any(r.startswith(f"| `{b.name}` | `{b.rule}` |") for r in rows), b.name
    top = builtins.top_buyers(123.5)
    parse(top.rule)
    assert any(r.startswith(f"| `top_buyers` | `{top.rule.replace('123.5', 'P90')}` |")
               for r in rows), top.rule
    # the templates: | `call(...)` | `segment name` | `rule` |, built with stand-in values
    templates = {
        "replenishment": _symbolic(builtins.replenishment("<sku>", 7),
                                   **{"14d": "<2×cycle>d", "7d": "<cycle>d"}),
        "near_store": _symbolic(builtins.near_store("<name>", 1.5, 2.5, 3.5),
                                **{"3.5": "<km>", "1.5": "<lat>", "2.5": "<lon>"}),
        "in_region": _symbolic(builtins.in_region("<name>", ["R1", "R2"], country="<country>"),
                               **{'["R1", "R2"]': "[...]",
                                  'geo.country in ["<country>"] and ':
                                  '[geo.country in ["<country>"] and] '}),
        "age_band": _symbolic(builtins.age_band(11, 99), **{"11": "<lo>", "99": "<hi>"}),
        "demographic": _symbolic(builtins.demographic("KEY", "VALUE"),
                                 KEY="<key>", VALUE="<value>"),
    }
    for call, (name, rule) in templates.items():
        row = next((r for r in rows if r.startswith(f"| `{call}(")), None)
        assert row is not None, call
        assert f"| `{name}` | `{rule}` |" in row, (call, name, rule)
