"""The text syntax: round trips with the tree, the JSON form, and errors with positions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from test_rules_support import DAY_MS, HOUR, all_leaves, rules

from segmentation.rules.ast import (
    And,
    Attr,
    Circle,
    Consent,
    EventCount,
    EventSpec,
    LastEvent,
    Near,
    Not,
    Or,
    PropFilter,
    Rule,
    RuleError,
    Sequence,
    Trait,
    dumps,
    from_json,
    loads,
    to_json,
)
from segmentation.rules.dsl import (
    ParseError,
    format_date,
    format_rule,
    load_rule,
    ops_text,
    parse,
    parse_date,
)


@settings(max_examples=120, deadline=None)
@given(rule=rules(max_leaves=8))
def test_text_round_trip(rule: Rule) -> None:
    text = format_rule(rule)
    assert parse(text) == rule, text
    assert format_rule(parse(text)) == text


@settings(max_examples=120, deadline=None)
@given(rule=rules(max_leaves=8))
def test_json_round_trip(rule: Rule) -> None:
    assert loads(dumps(rule)) == rule
    assert from_json(to_json(rule)) == rule


def test_every_leaf_round_trips() -> None:
    for leaf in all_leaves():
        assert parse(format_rule(leaf)) == leaf, format_rule(leaf)
        assert loads(dumps(leaf)) == leaf


def test_reference_examples_parse() -> None:
    lapsed = parse("""
        trait.spend >= 500
    and count(purchase, last 90d) = 0
    and not last(link_click) within_last 30d
    and geo.within(25km, 40.71, -74.00)
    """)
    assert lapsed == And((
        Trait("spend", "ge", 500),
        EventCount(EventSpec("purchase"), "eq", 0, 90 * DAY_MS),
        Not(LastEvent(EventSpec("link_click"), "within_last", 30 * DAY_MS)),
        Near(40.71, -74.0, 25.0),
    ))
    assert parse("sequence(cart_add, then_not purchase, within 4h, min_age 1h)") == Sequence(
        EventSpec("cart_add"), EventSpec("purchase"), 4 * HOUR, HOUR)
    replenish = parse('last(purchase where sku in ["SKU-30"]) more_than_ago 25d '
                      'and last(purchase where sku in ["SKU-30"]) within_last 35d')
    spec = EventSpec("purchase", (PropFilter("sku", "in", ("SKU-30",)),))
    assert replenish == And((LastEvent(spec, "more_than_ago", 25 * DAY_MS),
                             LastEvent(spec, "within_last", 35 * DAY_MS)))


def test_precedence_and_grouping() -> None:
    a, b, c = (Attr(k, "exists") for k in "abc")
    assert parse("attr.a exists or attr.b exists and attr.c exists") == Or((a, And((b, c))))
    assert parse("(attr.a exists or attr.b exists) and attr.c exists") == And((Or((a, b)), c))
    assert parse("not attr.a exists and attr.b exists") == And((Not(a), b))
    assert parse("not (attr.a exists and attr.b exists)") == Not(And((a, b)))
    nested = format_rule(And((a, And((b, c)))))
    assert nested == "attr.a exists and (attr.b exists and attr.c exists)"


def test_values_and_literals() -> None:
    assert parse('attr."first name" starts "Jo"') == Attr("first name", "starts", "Jo")
    assert parse("attr.vip = true") == Attr("vip", "eq", True)
    assert parse("attr.age between [25, 44]") == Attr("age", "between", (25, 44))
    assert parse("attr.home within 2.5km of (53.8, -1.55)") == Attr(
        "home", "within_km", Circle(53.8, -1.55, 2.5))
    jan1 = parse_date("2026-01-01")
    assert parse("attr.signup after 2026-01-01") == Attr("signup", "after", jan1)
    assert parse("attr.signup before 2026-01-01T10:30:00.250Z").value == parse_date(
        "2026-01-01") + 10 * HOUR + 30 * 60_000 + 250
    assert format_date(parse_date("2026-03-04T05:06:07Z")) == "2026-03-04T05:06:07Z"
    assert parse("consent.marketing = granted") == Consent("marketing", "granted")
    assert parse('count("page view" where path = "/x", last 90m) >= 2') == EventCount(
        EventSpec("page view", (PropFilter("path", "eq", "/x"),)), "ge", 2, 90 * 60_000)
    assert parse("# comment\nattr.a exists  # trailing\n") == Attr("a", "exists")


@pytest.mark.parametrize(
    ("text", "line", "column", "needle"),
    [
        ("attr.age >", 1, 11, "attr.age > needs a number, found end of text"),
        ("count(purchase, last 90x) >= 2", 1, 22, "'90x' is not a number, duration"),
        ("trait.spend >= 500\nand frobnicate(1)", 2, 5, "unknown condition 'frobnicate'"),
        ("trait.colour = 1", 1, 7, "unknown trait 'colour'"),
        ("attr.age < \"ten\"", 1, 12, 'attr.age < needs a number, found the text "ten"'),
        ("count(purchase) >= -1", 1, 20, "count must be between"),
        ("attr.a exists attr.b exists", 1, 15, "expected 'and', 'or' or end of text"),
        ("(attr.a exists", 1, 15, "expected ')'"),
        ("sequence(cart_add, then_not purchase, within 1h, min_age 2h)", 1, 58,
         "min_age must be shorter than within"),
        ("attr.x = \"a\" and @", 1, 18, "unexpected character '@'"),
        ("geo.planet in [\"Mars\"]", 1, 5,
         "unknown location field 'planet' (expected country, region, area_code, postal_code "
         "or within)"),
        ("bucket(\"ab\", 60, 10)", 1, 18, "lo < hi"),
        ("count(purchase where 9 = 1) > 0", 1, 22, "expected a property name"),
        ("", 1, 1, "empty rule"),
    ],
)
def test_parse_errors_point_at_the_position(text: str, line: int, column: int, needle: str
                                            ) -> None:
    with pytest.raises(ParseError) as info:
        parse(text)
    e = info.value
    assert (e.line, e.column) == (line, column), str(e)
    assert needle in e.message, str(e)
    src_line, caret = e.excerpt.split("\n")
    assert src_line == text.split("\n")[line - 1]
    assert caret == " " * (column - 1) + "^"


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        ({"kind": "and", "children": []}, "rule.children"),
        ({"kind": "and", "children": [{"kind": "attr", "key": "a", "op": "lt", "value": "x"}]},
         "rule.children[0].value"),
        ({"kind": "not", "child": {"kind": "event_count", "op": "ge", "n": 1,
                                   "event": {"type": "x", "where": [
                                       {"prop": "a-b", "op": "eq", "value": 1}]}}},
         "rule.child.event.where[0].prop"),
        ({"kind": "trait", "name": "orders", "op": "within_last", "value": 5}, "rule.op"),
        ({"kind": "geo", "field": "country", "values": []}, "rule.values"),
        ({"kind": "random", "salt": "s", "lo": 0, "hi": 101}, "rule.hi"),
        ({"kind": "teleport"}, "rule.kind"),
        ({"kind": "attr", "key": "a", "op": "exists", "extra": 1}, "rule"),
    ],
)
def test_json_errors_name_the_path(obj: object, path: str) -> None:
    with pytest.raises(RuleError) as info:
        from_json(obj)
    assert info.value.path == path, str(info.value)


def test_json_envelope_is_versioned() -> None:
    text = dumps(Attr("a", "exists"))
    assert text == '{"rule":{"key":"a","kind":"attr","op":"exists","value":null},"version":1}'
    with pytest.raises(RuleError, match="version"):
        loads(text.replace('"version":1', '"version":2'))
    with pytest.raises(RuleError, match="not JSON"):
        loads("{")


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        # a consent state is not an operator: the states are named
        ("consent.marketing = yes", 21,
         "consent.marketing = takes a consent state, granted, revoked or none; found 'yes'"),
        ("consent.email = granted", 9,
         "unknown consent program 'email' (expected marketing or transactional)"),
        # operators as people type them, not eq/ne/lt
        ("trait.spend within_last 3d", 13,
         "trait.spend is a number, not a time: within_last works only on the time traits (the "
         "ones ending in _ms); trait.spend takes =, !=, <, <=, >, >=, exists or missing"),
        # what was found, in rule terms (not a Python type name)
        ('attr.age >= "abc"', 13, 'attr.age >= needs a number, found the text "abc"'),
        ("attr.age <= true", 13, "attr.age <= needs a number, found 'true'"),
        # an unterminated string points at its opening quote
        ('attr.city = "Leeds', 13, "unterminated string: this quote is not closed on its line"),
        ('attr.city = "Lee\nds"', 13, "unterminated string"),
        # tree-validation errors point at the offending token, not the condition's start
        ("count(purchase, last 0d) >= 1", 22, "duration (ms) must be between 1 and"),
        ("geo.within(25km, 91, 0)", 18, "latitude must be between -90 and 90"),
        ("geo.within(25km, 9, 200)", 21, "longitude must be between -180 and 180"),
        ("geo.within(0km, 9, 20)", 12, "radius must be > 0"),
        ("attr.home within 1km of (95, 1)", 26, "latitude must be between -90 and 90"),
        ("attr.age between [50, 10]", 23, "between needs low <= high"),
        ("bucket(\"s\", 100, 100)", 13, "bucket low must be between 0 and 99"),
        ("attr.signup before 1969-12-31", 20, "date (epoch ms) must be between"),
        ('in_segment("")', 12, "segment name must not be empty"),
        ('count("" where x = 1) > 1', 7, "event type must not be empty"),
        ('geo.region in ["a", "\\u0000"]', 21, "NUL characters are not allowed"),
    ],
)
def test_errors_for_people(text: str, column: int, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(text)
    e = info.value
    assert e.column == column, str(e)
    assert message in e.message, str(e)
    assert " eq" not in e.message and "ge," not in e.message


def test_ops_text_names_operators_as_typed() -> None:
    assert ops_text(["eq", "ne", "lt", "le", "gt", "ge"]) == "=, !=, <, <=, > or >="
    assert ops_text(["eq", "ne", "within_km", "exists"]) == "=, !=, within or exists"
    assert ops_text(["missing"]) == "missing"


def test_load_rule_takes_text_or_canonical_json() -> None:
    rule = And((Attr("city", "eq", "Leeds"), Trait("orders", "ge", 2)))
    assert load_rule('attr.city = "Leeds" and trait.orders >= 2') == rule
    assert load_rule(dumps(rule)) == rule  # the envelope, as `segment show --json` prints it
    assert load_rule("  \n" + dumps(rule)) == rule
    import json

    assert load_rule(json.dumps(to_json(rule))) == rule  # a bare node
    with pytest.raises(RuleError) as info:
        load_rule('{"kind": "and", "children": [{"kind": "attr", "key": "a", "op": "gte", '
                  '"value": 1}]}')
    assert info.value.path == "rule.children[0].op"
    with pytest.raises(RuleError) as info:
        load_rule('{"version": 1, "rule": {"kind": "consent", "program": "marketing", '
                  '"state": "yes"}}')
    assert info.value.path == "rule.state"
    assert info.value.message.startswith("unknown consent state 'yes' (expected one of granted")
    with pytest.raises(RuleError, match="unknown location field 'planet'"):
        load_rule('{"kind": "geo", "field": "planet", "values": ["Mars"]}')
    with pytest.raises(RuleError, match="unknown operator 'gte'"):  # an operator indeed
        load_rule('{"kind": "trait", "name": "orders", "op": "gte", "value": 1}')
    with pytest.raises(RuleError) as info:
        load_rule('{"version": 7, "rule": {}}')
    assert info.value.path == "$.version" and "version 7" in info.value.message
    with pytest.raises(RuleError) as info:
        load_rule('{"kind": ')
    assert info.value.path == "$" and "not JSON" in info.value.message
    with pytest.raises(ParseError):
        load_rule("attr.a = ")
