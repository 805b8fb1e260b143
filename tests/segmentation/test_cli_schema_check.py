"""Rules checked against the attribute schema: the pure check, and the CLI refusing/warning."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from hypothesis import given, settings
from test_rules_support import rules

from segmentation.rules.ast import Attr, Rule, attr_type, walk
from segmentation.rules.dsl import parse
from segmentation.rules.schema_check import Finding, check_rule, errors, warnings
from segmentation.store import Store
from segmentation.subscribers import define_attribute, set_attributes, upsert_subscriber
from tests.segmentation.conftest import run_cli

TYPES = {"bday": "date", "age": "number", "city": "text", "vip": "bool", "tags": "list",
         "home": "geo"}


def _check(text: str) -> list[Finding]:
    return check_rule(parse(text), TYPES)


def test_the_audit_cases_are_found() -> None:
    # each counted 0 with no word (audit finding 9)
    (f,) = _check('attr.bday = "x"')
    assert (f.severity, f.path, f.key) == ("error", "rule", "bday")
    assert f.message == ("'bday' is a date attribute: = does not apply to it (it takes before, "
                         "after, within_last, more_than_ago, in_next, exists or missing)")
    (f,) = _check('attr.bday includes "x"')
    assert f.severity == "error" and "includes does not apply" in f.message
    (f,) = _check("attr.nosuch = 1")
    assert (f.severity, f.message) == (
        "warning", "no attribute 'nosuch' is defined, so every subscriber lacks it")
    (f,) = _check('attr.age > 5 and attr.age = "x"')
    assert (f.severity, f.path, f.condition) == ("error", "rule.children[1]", 'attr.age = "x"')
    assert f.message == ("'age' is a number attribute, but \"x\" is text (compare it with a "
                         "number like 42)")
    assert str(f) == f'attr.age = "x" (rule.children[1]): {f.message}'


def test_values_of_another_type() -> None:
    (f,) = _check("attr.vip = 1")
    assert f.message == "'vip' is a bool attribute, but 1 is a number (compare it with true or " \
                        "false)"
    (f,) = _check("attr.city != true")
    assert f.message == ("'city' is a text attribute, but true is true/false (compare it with "
                         '"Leeds")')
    (f,) = _check("attr.age >= 1 and not (attr.city exists or attr.tags = \"a\")")
    assert f.path == "rule.children[1].child.children[1]" and "list attribute" in f.message
    assert "it takes includes, includes_any, exists or missing" in f.message


def test_operators_of_another_type() -> None:
    cases = {
        "attr.bday > 5": "date",
        'attr.age contains "1"': "number",
        "attr.city between [1, 2]": "text",
        "attr.city within 2km of (1, 1)": "text",
        "attr.home after 2026-01-01": "geo",
        'attr.vip in ["yes"]': "bool",
    }
    for text, declared in cases.items():
        (f,) = _check(text)
        assert f.severity == "error" and f"is a {declared} attribute" in f.message, text


def test_a_typo_suggests_the_declared_key() -> None:
    found = _check("attr.birthday exists and attr.bdya before 2000-01-01")
    assert [(f.severity, f.key) for f in found] == [("warning", "birthday"), ("warning", "bdya")]
    assert found[1].message.endswith("did you mean 'bday'?")
    assert [x.key for x in warnings(_check("attr.birthday exists"))] == ["birthday"]


def test_rules_that_fit_the_schema_have_no_findings() -> None:
    ok = ('attr.bday within_last 30d and attr.age between [18, 30] and attr.city in ["Leeds"] '
          'and attr.vip = true and attr.tags includes_any ["a"] and attr.home within 1km of '
          '(1, 2) and attr.age != 3 and attr.bday missing and trait.spend > 5 and '
          'count(purchase where age = "x") > 1')
    assert _check(ok) == []


@settings(max_examples=150, deadline=None)
@given(rule=rules(max_leaves=6))
def test_declared_as_read_means_no_findings(rule: Rule) -> None:
    nodes = [n for n in walk(rule) if isinstance(n, Attr)]
    read = {(n.key, attr_type(n) or "text") for n in nodes}
    types = dict(read)
    if len(types) == len(read):  # no key read as two types in one rule
        assert check_rule(rule, types) == []
    # nothing declared: one warning per attribute condition, never an error
    found = check_rule(rule, {})
    assert errors(found) == [] and len(found) == len(nodes)


# -- the CLI ---------------------------------------------------------------------------------------


def _smsgate(db: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(db, *args, stdin=stdin)


def test_define_and_count_refuse_wrong_types_and_warn_on_unknown_keys(tmp_path: Path) -> None:
    db = tmp_path / "gate.db"
    with Store(db) as store:
        sid = upsert_subscriber(store, "+12125550101")
        define_attribute(store, "bday", "date")
        set_attributes(store, sid, {"age": 41}, define_missing=True)
    r = _smsgate(db, "segment", "define", "bad", 'attr.age > 5 and attr.age = "x"')
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "smsgate: the rule does not fit the attribute schema (nothing was defined):",
        "  error: attr.age = \"x\" (rule.children[1]): 'age' is a number attribute, but \"x\" "
        "is text (compare it with a number like 42)",
    ]
    r = _smsgate(db, "segment", "count", "attr.bday > 5", "--json")
    assert r.returncode == 2 and "'bday' is a date attribute: > does not apply" in r.stderr
    # an undeclared key: a warning on stderr, and the command does its work
    r = _smsgate(db, "segment", "define", "typo", "attr.ag >= 18", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["members"] == 0
    assert r.stderr.splitlines() == [
        "smsgate: warning: attr.ag >= 18 (rule): no attribute 'ag' is defined, so every "
        "subscriber lacks it; did you mean 'age'?"]
    r = _smsgate(db, "segment", "count", "attr.age >= 18 or attr.nosuch exists")
    assert r.returncode == 0 and r.stdout.startswith("1 subscribers")
    assert "warning: attr.nosuch exists (rule.children[1])" in r.stderr
