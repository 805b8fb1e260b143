"""The text syntax for segment rules: ``parse(text) -> Rule`` and ``format_rule(rule) -> text``.

It compiles 1:1 to the canonical tree (``segmentation.rules.ast``); ``format_rule`` prints the
tree back (``parse(format_rule(t)) == t``, property-tested). The grammar is in
``docs/segments.md``. Example::

    trait.spend >= 500
    and count(purchase, last 90d) = 0
    and not last(link_click) within_last 30d
    and geo.within(25km, 40.71, -74.0)

Errors are :class:`ParseError` with the line, the column and a caret excerpt.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Final, NoReturn

from segmentation.rules.ast import (
    DAY_MS,
    And,
    Attr,
    Circle,
    Consent,
    EventCount,
    EventSpec,
    EventSum,
    Geo,
    InSegment,
    LastEvent,
    Near,
    Not,
    Or,
    PropFilter,
    Random,
    Rule,
    RuleError,
    Scalar,
    Sequence,
    Trait,
    check_attr,
    check_prop_filter,
    check_random,
    check_sequence,
    check_trait,
    from_json,
    spec_to_json,
)


class ParseError(RuleError):
    """Text that is not a rule; ``line``/``column`` are 1-based, ``excerpt`` shows a caret."""

    def __init__(self, text: str, offset: int, message: str) -> None:
        line = text.count("\n", 0, offset) + 1
        start = text.rfind("\n", 0, offset) + 1
        end = text.find("\n", offset)
        src = text[start:] if end < 0 else text[start:end]
        column = offset - start + 1
        self.line, self.column = line, column
        self.excerpt = f"{src}\n{' ' * (column - 1)}^"
        super().__init__(f"line {line}, column {column}", message)

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}\n{self.excerpt}"


# -- lexer -----------------------------------------------------------------------------------------

_NUM: Final = r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"
_TOKEN_RE: Final = re.compile(
    rf"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<distance>{_NUM}km)(?![A-Za-z0-9_])
  | (?P<duration>\d+(?:ms|s|m|h|d|w))(?![A-Za-z0-9_])
  | (?P<date>\d{{4}}-\d{{2}}-\d{{2}}(?:T\d{{2}}:\d{{2}}(?::\d{{2}}(?:\.\d{{1,3}})?)?Z?)?)
  | (?P<number>-?{_NUM})(?![A-Za-z0-9_.])
  | (?P<bad>-?\d[A-Za-z0-9_.]*)
  | (?P<op><=|>=|!=|=|<|>)
  | (?P<punct>[()\[\],.])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)

UNITS_MS: Final = {"w": 7 * DAY_MS, "d": DAY_MS, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
CMP: Final = {"=": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
CMP_TEXT: Final = {v: k for k, v in CMP.items()}
IDENT_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise ParseError(text, pos, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind == "bad":
            raise ParseError(text, pos, f"{m.group()!r} is not a number, duration (30d, 4h, "
                                        "15m, 10s, 500ms, 2w) or distance (25km)")
        if kind != "ws":
            out.append(Token(kind, m.group(), pos))
        pos = m.end()
    out.append(Token("eof", "", len(text)))
    return out


# -- parser ----------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    # token helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def fail(self, message: str, tok: Token | None = None) -> NoReturn:
        t = tok or self.tok
        raise ParseError(self.text, t.pos, message)

    def _describe(self, t: Token) -> str:
        return "end of text" if t.kind == "eof" else repr(t.text)

    def at(self, kind: str, text: str | None = None) -> bool:
        t = self.tok
        return t.kind == kind and (text is None or t.text == text)

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        if self.at(kind, text):
            t = self.tok
            self.i += 1
            return t
        return None

    def expect(self, kind: str, text: str | None = None, what: str | None = None) -> Token:
        t = self.accept(kind, text)
        if t is None:
            want = what or (repr(text) if text else kind)
            self.fail(f"expected {want}, found {self._describe(self.tok)}")
        return t

    def word(self, *words: str) -> str:
        t = self.tok
        if t.kind == "ident" and t.text in words:
            self.i += 1
            return t.text
        self.fail(f"expected {' or '.join(repr(w) for w in words)}, found {self._describe(t)}")

    # grammar
    def parse(self) -> Rule:
        rule = self.or_expr()
        if not self.at("eof"):
            self.fail(f"expected 'and', 'or' or end of text, found {self._describe(self.tok)}")
        return rule

    def or_expr(self) -> Rule:
        items = [self.and_expr()]
        while self.accept("ident", "or"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Rule:
        items = [self.not_expr()]
        while self.accept("ident", "and"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Rule:
        if self.accept("ident", "not"):
            return Not(self.not_expr())
        if self.accept("punct", "("):
            inner = self.or_expr()
            self.expect("punct", ")")
            return inner
        return self.leaf()

    def leaf(self) -> Rule:
        start = self.tok
        if start.kind != "ident":
            self.fail(f"expected a condition, found {self._describe(start)}")
        handler = _LEAVES.get(start.text)
        if handler is None:
            self.fail(f"unknown condition {start.text!r} (expected one of {', '.join(_LEAVES)})")
        self.i += 1
        try:
            return handler(self)
        except ParseError:
            raise
        except RuleError as e:
            raise ParseError(self.text, start.pos, e.message) from None

    # literals
    def name(self, what: str) -> str:
        t = self.tok
        if t.kind == "ident":
            self.i += 1
            return t.text
        if t.kind == "string":
            return self.string()
        self.fail(f"expected {what} (a word or a quoted string), found {self._describe(t)}")

    def string(self) -> str:
        t = self.expect("string", what="a quoted string")
        try:
            s = json.loads(t.text)
        except ValueError:
            self.fail("bad escape in string", t)
        assert isinstance(s, str)
        return s

    def number(self) -> int | float:
        t = self.expect("number", what="a number")
        return _to_number(t.text)

    def integer(self, what: str) -> int:
        t = self.expect("number", what=what)
        v = _to_number(t.text)
        if not isinstance(v, int):
            self.fail(f"expected {what}", t)
        return v

    def scalar(self) -> Scalar:
        t = self.tok
        if t.kind == "string":
            return self.string()
        if t.kind == "number":
            return self.number()
        if t.kind == "ident" and t.text in ("true", "false"):
            self.i += 1
            return t.text == "true"
        self.fail(f"expected a value (string, number, true or false), found {self._describe(t)}")

    def list_of(self, item: str) -> list[Scalar]:
        self.expect("punct", "[")
        out: list[Scalar] = []
        if not self.at("punct", "]"):
            out.append(self.string() if item == "string" else self.scalar())
            while self.accept("punct", ","):
                out.append(self.string() if item == "string" else self.scalar())
        self.expect("punct", "]")
        return out

    def duration(self) -> int:
        t = self.expect("duration", what="a duration like 30d, 4h, 15m")
        m = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)", t.text)
        assert m is not None
        return int(m.group(1)) * UNITS_MS[m.group(2)]

    def distance(self) -> float:
        t = self.expect("distance", what="a distance like 25km")
        return float(t.text[:-2])

    def date(self) -> int:
        t = self.expect("date", what="a date like 2026-01-31 or 2026-01-31T09:30:00Z")
        try:
            return parse_date(t.text)
        except ValueError as e:
            self.fail(f"bad date: {e}", t)

    def cmp_op(self) -> str:
        t = self.expect("op", what="a comparison (=, !=, <, <=, >, >=)")
        return CMP[t.text]

    # leaves
    def event_spec(self) -> EventSpec:
        etype = self.name("an event type")
        filters: list[PropFilter] = []
        if self.accept("ident", "where"):
            filters.append(self.prop_filter(len(filters)))
            while self.accept("ident", "and"):
                filters.append(self.prop_filter(len(filters)))
        return EventSpec(etype, tuple(filters))

    def prop_filter(self, index: int) -> PropFilter:
        start = self.tok
        prop = self.expect("ident", what="a property name").text
        value: object
        if self.accept("ident", "in"):
            op, value = "in", self.list_of("scalar")
        else:
            op = self.cmp_op()
            value = self.scalar()
        try:
            return check_prop_filter(prop, op, value, f"where[{index}]")
        except RuleError as e:
            raise ParseError(self.text, start.pos, e.message) from None

    def window(self) -> int | None:
        if self.accept("punct", ","):
            self.word("last")
            return self.duration()
        return None

    def attr(self) -> Rule:
        self.expect("punct", ".")
        key = self.name("an attribute key")
        t = self.tok
        value: object = None
        if t.kind == "op":
            op = self.cmp_op()
            value = self.scalar()
        else:
            op = self.word(
                "in", "contains", "starts", "ends", "between", "before", "after",
                "within_last", "more_than_ago", "in_next", "includes", "includes_any", "within",
                "exists", "missing",
            )
            if op in ("in", "includes_any"):
                value = self.list_of("string")
            elif op in ("contains", "starts", "ends", "includes"):
                value = self.string()
            elif op == "between":
                self.expect("punct", "[")
                lo = self.number()
                self.expect("punct", ",")
                hi = self.number()
                self.expect("punct", "]")
                value = (lo, hi)
            elif op in ("before", "after"):
                value = self.date()
            elif op in ("within_last", "more_than_ago", "in_next"):
                value = self.duration()
            elif op == "within":
                km = self.distance()
                self.word("of")
                self.expect("punct", "(")
                lat = self.number()
                self.expect("punct", ",")
                lon = self.number()
                self.expect("punct", ")")
                op, value = "within_km", {"lat": lat, "lon": lon, "km": km}
        return check_attr(key, op, value, "attr")

    def trait(self) -> Rule:
        self.expect("punct", ".")
        name = self.expect("ident", what="a trait name").text
        value: object = None
        if self.at("op"):
            op = self.cmp_op()
            value = self.number()
        else:
            op = self.word("exists", "missing", "within_last", "more_than_ago")
            if op in ("within_last", "more_than_ago"):
                value = self.duration()
        return check_trait(name, op, value, "trait")

    def count(self) -> Rule:
        self.expect("punct", "(")
        spec = self.event_spec()
        window = self.window()
        self.expect("punct", ")")
        op = self.cmp_op()
        n = self.integer("a whole number")
        return from_json({"kind": "event_count", "event": _spec_json(spec), "op": op, "n": n,
                          "window_ms": window})

    def sum(self) -> Rule:
        self.expect("punct", "(")
        spec = self.event_spec()
        window = self.window()
        self.expect("punct", ")")
        op = self.cmp_op()
        value = self.number()
        return from_json({"kind": "event_sum", "event": _spec_json(spec), "op": op,
                          "value": value, "window_ms": window})

    def last(self) -> Rule:
        self.expect("punct", "(")
        spec = self.event_spec()
        self.expect("punct", ")")
        op = self.word("within_last", "more_than_ago")
        return from_json({"kind": "last_event", "event": _spec_json(spec), "op": op,
                          "ms": self.duration()})

    def sequence(self) -> Rule:
        self.expect("punct", "(")
        first = self.event_spec()
        self.expect("punct", ",")
        self.word("then_not")
        then_not = self.event_spec()
        self.expect("punct", ",")
        self.word("within")
        within = self.duration()
        min_age = 0
        if self.accept("punct", ","):
            self.word("min_age")
            min_age = self.duration()
        self.expect("punct", ")")
        return check_sequence(first, then_not, within, min_age, "sequence")

    def in_segment(self) -> Rule:
        self.expect("punct", "(")
        name = self.string()
        self.expect("punct", ")")
        return from_json({"kind": "in_segment", "segment": name})

    def consent(self) -> Rule:
        self.expect("punct", ".")
        program = self.expect("ident", what="a consent program (marketing, transactional)").text
        self.expect("op", "=")
        state = self.expect("ident", what="granted, revoked or none").text
        return from_json({"kind": "consent", "program": program, "state": state})

    def geo(self) -> Rule:
        self.expect("punct", ".")
        t = self.tok
        if self.accept("ident", "within"):
            self.expect("punct", "(")
            km = self.distance()
            self.expect("punct", ",")
            lat = self.number()
            self.expect("punct", ",")
            lon = self.number()
            self.expect("punct", ")")
            return from_json({"kind": "near", "lat": lat, "lon": lon, "km": km})
        field = self.expect("ident", what="country, region, area_code, postal_code or within").text
        self.word("in")
        values = self.list_of("string")
        try:
            return from_json({"kind": "geo", "field": field, "values": values})
        except RuleError as e:
            raise ParseError(self.text, t.pos, e.message) from None

    def bucket(self) -> Rule:
        self.expect("punct", "(")
        salt = self.string()
        self.expect("punct", ",")
        lo = self.integer("a bucket number 0-99")
        self.expect("punct", ",")
        hi = self.integer("a bucket number 1-100")
        self.expect("punct", ")")
        return check_random(salt, lo, hi, "bucket")


_LEAVES: Final = {
    "attr": _Parser.attr,
    "trait": _Parser.trait,
    "count": _Parser.count,
    "sum": _Parser.sum,
    "last": _Parser.last,
    "sequence": _Parser.sequence,
    "in_segment": _Parser.in_segment,
    "consent": _Parser.consent,
    "geo": _Parser.geo,
    "bucket": _Parser.bucket,
}


def _spec_json(spec: EventSpec) -> dict[str, object]:
    return spec_to_json(spec)


def _to_number(text: str) -> int | float:
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return float(text)


def parse(text: str) -> Rule:
    """Parse rule text into a validated tree; raises :class:`ParseError` with the position."""
    if not text.strip():
        raise ParseError(text, 0, "empty rule")
    return _Parser(text).parse()


# -- dates -----------------------------------------------------------------------------------------


def parse_date(text: str) -> int:
    """``2026-01-31`` or ``2026-01-31T09:30[:00[.000]][Z]`` (always UTC) -> epoch ms."""
    d = dt.datetime.fromisoformat(text.removesuffix("Z"))
    d = d.replace(tzinfo=dt.UTC)
    return int(d.timestamp() * 1000) if d.microsecond == 0 else (
        int(d.replace(microsecond=0).timestamp()) * 1000 + d.microsecond // 1000)


def format_date(ms: int) -> str:
    d = dt.datetime.fromtimestamp(ms // 1000, tz=dt.UTC)
    if ms % DAY_MS == 0:
        return d.strftime("%Y-%m-%d")
    frac = ms % 1000
    base = d.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:03d}Z" if frac else f"{base}Z"


# -- printer ---------------------------------------------------------------------------------------


def format_duration(ms: int) -> str:
    for unit in ("w", "d", "h", "m", "s"):
        if ms % UNITS_MS[unit] == 0:
            return f"{ms // UNITS_MS[unit]}{unit}"
    return f"{ms}ms"


def _name(s: str) -> str:
    return s if IDENT_RE.match(s) else _str(s)


def _str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _num(v: int | float) -> str:
    return repr(v)


def _scalar(v: Scalar) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return _str(v)
    return _num(v)


def _spec(spec: EventSpec) -> str:
    out = _name(spec.type)
    if spec.where:
        parts = []
        for f in spec.where:
            if f.op == "in":
                assert isinstance(f.value, tuple)
                parts.append(f"{f.prop} in [{', '.join(_scalar(x) for x in f.value)}]")
            else:
                assert not isinstance(f.value, tuple)
                parts.append(f"{f.prop} {CMP_TEXT[f.op]} {_scalar(f.value)}")
        out += " where " + " and ".join(parts)
    return out


def _window(window: int | None) -> str:
    return "" if window is None else f", last {format_duration(window)}"


def _attr(node: Attr) -> str:
    head = f"attr.{_name(node.key)}"
    op, v = node.op, node.value
    if op in CMP_TEXT and not isinstance(v, tuple | Circle) and v is not None:
        return f"{head} {CMP_TEXT[op]} {_scalar(v)}"
    if op in ("exists", "missing"):
        return f"{head} {op}"
    if op in ("in", "includes_any"):
        assert isinstance(v, tuple)
        return f"{head} {op} [{', '.join(_str(str(x)) for x in v)}]"
    if op in ("contains", "starts", "ends", "includes"):
        assert isinstance(v, str)
        return f"{head} {op} {_str(v)}"
    if op == "between":
        assert isinstance(v, tuple)
        lo, hi = v
        assert isinstance(lo, int | float) and isinstance(hi, int | float)
        return f"{head} between [{_num(lo)}, {_num(hi)}]"
    if op in ("before", "after"):
        assert isinstance(v, int)
        return f"{head} {op} {format_date(v)}"
    if op in ("within_last", "more_than_ago", "in_next"):
        assert isinstance(v, int)
        return f"{head} {op} {format_duration(v)}"
    assert isinstance(v, Circle)
    return f"{head} within {_num(v.km)}km of ({_num(v.lat)}, {_num(v.lon)})"


def format_leaf(rule: Rule) -> str:
    match rule:
        case Attr():
            return _attr(rule)
        case EventCount(spec, op, n, window):
            return f"count({_spec(spec)}{_window(window)}) {CMP_TEXT[op]} {n}"
        case EventSum(spec, op, value, window):
            return f"sum({_spec(spec)}{_window(window)}) {CMP_TEXT[op]} {_num(value)}"
        case LastEvent(spec, op, ms):
            return f"last({_spec(spec)}) {op} {format_duration(ms)}"
        case Sequence(first, then_not, within, min_age):
            tail = f", min_age {format_duration(min_age)}" if min_age else ""
            return (f"sequence({_spec(first)}, then_not {_spec(then_not)}, "
                    f"within {format_duration(within)}{tail})")
        case Trait(name, op, value):
            if op in ("exists", "missing"):
                return f"trait.{name} {op}"
            assert value is not None
            if op in ("within_last", "more_than_ago"):
                assert isinstance(value, int)
                return f"trait.{name} {op} {format_duration(value)}"
            return f"trait.{name} {CMP_TEXT[op]} {_num(value)}"
        case InSegment(name):
            return f"in_segment({_str(name)})"
        case Consent(program, state):
            return f"consent.{program} = {state}"
        case Geo(field, values):
            return f"geo.{field} in [{', '.join(_str(v) for v in values)}]"
        case Near(lat, lon, km):
            return f"geo.within({_num(km)}km, {_num(lat)}, {_num(lon)})"
        case Random(salt, lo, hi):
            return f"bucket({_str(salt)}, {lo}, {hi})"
    raise TypeError(f"not a leaf: {rule!r}")


def format_rule(rule: Rule) -> str:
    """Print a tree as rule text (one line). Single-child and/or groups print as their child."""
    match rule:
        case And(ch) | Or(ch):
            joiner = " and " if isinstance(rule, And) else " or "
            if len(ch) == 1:
                return format_rule(ch[0])
            return joiner.join(_grouped(c) for c in ch)
        case Not(child):
            return f"not {_grouped(child)}"
    return format_leaf(rule)


def _grouped(rule: Rule) -> str:
    if isinstance(rule, And | Or) and len(rule.children) > 1:
        return f"({format_rule(rule)})"
    return format_rule(rule)
