"""A rule checked against the attribute schema (``attribute_def``): pure, no I/O.

A rule names attributes by key and reads them by the type its operator and value imply
(:func:`segmentation.rules.ast.attr_type`); the store declares each key's type once
(``segmentation.subscribers.define_attribute``) and keeps its value in the columns of that type
(``segmentation.schema``: text and list in ``value_text``, number, bool and date in
``value_num``, geo in ``value_num``/``value_num2``). A rule that reads a key another way
matches nobody (or, through ``!=``, everybody) without any error; this module says so.

:func:`check_rule` takes the declared types as a mapping (``attribute_types(store)``) and
returns :class:`Finding` s:

- ``error``: the operator does not apply to the declared type (``attr.bday > 5`` on a date,
  ``attr.age includes "x"`` on a number), or the value is of another type
  (``attr.age = "x"`` on a number, ``attr.vip = 1`` on a bool). The CLI refuses these rules.
- ``warning``: the key is not declared at all (a typo, or an attribute no import has set
  yet): every subscriber lacks it. The CLI prints it and goes on.

``exists`` / ``missing`` apply to every type.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from segmentation.rules.ast import (
    PRESENCE_OPS,
    And,
    Attr,
    Not,
    Or,
    Rule,
    attr_type,
)
from segmentation.rules.dsl import format_leaf, op_text, ops_text

# operators that read each declared type as it is stored (segmentation.rules.evaluate)
TYPE_OPS: Final[dict[str, tuple[str, ...]]] = {
    "text": ("eq", "ne", "in", "contains", "starts", "ends"),
    "number": ("eq", "ne", "lt", "le", "gt", "ge", "between"),
    "bool": ("eq", "ne"),
    "date": ("before", "after", "within_last", "more_than_ago", "in_next"),
    "list": ("includes", "includes_any"),
    "geo": ("within_km",),
}

_EXAMPLE: Final = {
    "text": '"Leeds"', "number": "a number like 42", "bool": "true or false",
}


@dataclass(frozen=True)
class Finding:
    """One problem: ``path`` in the tree (``rule.children[1]``), the condition as text, why."""

    severity: str  # "error" | "warning"
    path: str
    condition: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.condition} ({self.path}): {self.message}"


def _shown(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v, ensure_ascii=False)


def _value_kind(v: object) -> str:
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, str):
        return "text"
    return "a number"


def _check_attr(node: Attr, path: str, types: Mapping[str, str]) -> Finding | None:
    cond = format_leaf(node)
    declared = types.get(node.key)
    if declared is None:
        close = difflib.get_close_matches(node.key, list(types), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return Finding("warning", path, cond, node.key,
                       f"no attribute {node.key!r} is defined, so every subscriber lacks it"
                       f"{hint}")
    if node.op in PRESENCE_OPS:
        return None
    allowed = TYPE_OPS.get(declared, ())
    usable = ops_text([*allowed, *PRESENCE_OPS])
    if node.op not in allowed:
        return Finding("error", path, cond, node.key,
                       f"{node.key!r} is a {declared} attribute: {op_text(node.op)} does not "
                       f"apply to it (it takes {usable})")
    if attr_type(node) != declared:  # only = and != read the type of their value
        return Finding("error", path, cond, node.key,
                       f"{node.key!r} is a {declared} attribute, but {_shown(node.value)} is "
                       f"{_value_kind(node.value)} (compare it with {_EXAMPLE[declared]})")
    return None


def check_rule(rule: Rule, types: Mapping[str, str], path: str = "rule") -> list[Finding]:
    """Every attribute condition of ``rule`` that does not fit ``types`` (key -> declared
    type), in tree order; paths as in :func:`segmentation.rules.ast.from_json`'s errors."""
    out: list[Finding] = []
    match rule:
        case And(children) | Or(children):
            for i, c in enumerate(children):
                out.extend(check_rule(c, types, f"{path}.children[{i}]"))
        case Not(child):
            out.extend(check_rule(child, types, f"{path}.child"))
        case Attr():
            found = _check_attr(rule, path, types)
            if found is not None:
                out.append(found)
    return out


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def warnings(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "warning"]
