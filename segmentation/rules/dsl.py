"""The text syntax for segment rules: ``parse(text) -> Rule`` and ``format_rule(rule) -> text``.

It compiles 1:1 to the canonical tree (``segmentation.rules.ast``); ``format_rule`` prints the
tree back (``parse(format_rule(t)) == t``, property-tested). The grammar is in
``docs/segments.md``. Example::

    trait.spend >= 500
    and count(purchase, last 90d) = 0
    and not last(link_click) within_last 30d
    and geo.within(25km, 40.71, -74.0)

Errors are :class:`ParseError` with the line, the column and a caret excerpt, pointing at the
token that is wrong (a bad value, not the start of its condition) and naming operators as people
type them (``>=``, not ``ge``). :func:`load_rule` also takes the canonical JSON form.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Final, NoReturn

from segmentation.rules.ast import (
    CMP_OPS,
    CONSENT_PROGRAMS,
    CONSENT_STATES,
    DAY_MS,
    FORMAT_VERSION,
    GEO_FIELDS,
    PRESENCE_OPS,
    TRAIT_OPS,
    TRAITS,
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
    loads,
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


def op_text(op: str) -> str:
    """An operator as people type it in rule text: ``ge`` -> ``>=``, ``within_km`` -> ``within``."""
    return CMP_TEXT.get(op, "within" if op == "within_km" else op)


def ops_text(ops: tuple[str, ...] | list[str]) -> str:
    """Operators for a message: ``=, !=, <, <=, >, >=, exists or missing``."""
    names = list(dict.fromkeys(op_text(o) for o in ops))
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


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
            if text[pos] == '"':  # the string alternative failed: no closing quote on its line
                raise ParseError(text, pos, "unterminated string: this quote is not closed on "
                                            "its line")
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
        # tokens of the condition being parsed, by the field of its JSON node they became
        # ("n", "value[1]", "event.type"; "" for the node): a RuleError from validating the
        # node names such a path, and the message points at that token
        self.marks: dict[str, Token] = {}

    # token helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def fail(self, message: str, tok: Token | None = None) -> NoReturn:
        t = tok or self.tok
        raise ParseError(self.text, t.pos, message)

    def _describe(self, t: Token) -> str:
        if t.kind == "eof":
            return "end of text"
        if t.kind == "string":
            return f"the text {t.text}"
        return repr(t.text)

    def mark(self, field: str, tok: Token | None = None) -> Token:
        t = tok or self.tok
        self.marks[field] = t
        return t

    def _marked(self, path: str) -> Token | None:
        """The token recorded for ``path`` (``rule.value[1]``) or its nearest recorded parent."""
        _, _, rest = path.partition(".")
        while True:
            if rest in self.marks:
                return self.marks[rest]
            if not rest:
                return None
            cut = max(rest.rfind("."), rest.rfind("["))
            rest = rest[:max(cut, 0)]

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
        self.marks = {}
        try:
            return handler(self)
        except ParseError:
            raise
        except RuleError as e:
            at = self._marked(e.path) or start
            raise ParseError(self.text, at.pos, e.message) from None

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

    def list_of(self, item: str, field: str = "value") -> list[Scalar]:
        self.mark(field)
        self.expect("punct", "[")
        out: list[Scalar] = []
        if not self.at("punct", "]"):
            while True:
                self.mark(f"{field}[{len(out)}]")
                out.append(self.string() if item == "string" else self.scalar())
                if not self.accept("punct", ","):
                    break
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
    def event_spec(self, field: str | None = None) -> EventSpec:
        if field is not None:
            self.mark(f"{field}.type")
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
            self.mark("window_ms")
            return self.duration()
        return None

    def attr(self) -> Rule:
        self.expect("punct", ".")
        self.mark("key")
        key = self.name("an attribute key")
        t = self.tok
        value: object = None
        if t.kind == "op":
            op = self.cmp_op()
            v = self.mark("value")
            if op in ("lt", "le", "gt", "ge") and v.kind != "number":
                self.fail(f"attr.{_name(key)} {t.text} needs a number, found "
                          f"{self._describe(v)}", v)
            value = self.scalar()
        else:
            op = self.word(
                "in", "contains", "starts", "ends", "between", "before", "after",
                "within_last", "more_than_ago", "in_next", "includes", "includes_any", "within",
                "exists", "missing",
            )
            self.mark("value")
            if op in ("in", "includes_any"):
                value = self.list_of("string")
            elif op in ("contains", "starts", "ends", "includes"):
                value = self.string()
            elif op == "between":
                self.expect("punct", "[")
                lo = self.number()
                self.expect("punct", ",")
                hi_tok = self.mark("value[1]")
                hi = self.number()
                self.expect("punct", "]")
                self.mark("value", hi_tok)  # "between needs low <= high": the high end
                value = (lo, hi)
            elif op in ("before", "after"):
                value = self.date()
            elif op in ("within_last", "more_than_ago", "in_next"):
                value = self.duration()
            elif op == "within":
                self.mark("value.km")
                km = self.distance()
                self.word("of")
                self.expect("punct", "(")
                self.mark("value.lat")
                lat = self.number()
                self.expect("punct", ",")
                self.mark("value.lon")
                lon = self.number()
                self.expect("punct", ")")
                op, value = "within_km", {"lat": lat, "lon": lon, "km": km}
        return check_attr(key, op, value, "attr")

    def trait(self) -> Rule:
        self.expect("punct", ".")
        name_tok = self.mark("name")
        name = self.expect("ident", what="a trait name").text
        kind = TRAITS.get(name)
        if kind is None:
            self.fail(f"unknown trait {name!r} (known: {', '.join(TRAITS)})", name_tok)
        allowed = TRAIT_OPS if kind == "time" else CMP_OPS + PRESENCE_OPS
        op_tok = self.tok
        value: object = None
        if self.at("op"):
            op = self.cmp_op()
            self.mark("value")
            value = self.number()
        elif op_tok.kind == "ident" and op_tok.text in allowed:
            op = self.word(op_tok.text)
            if op in ("within_last", "more_than_ago"):
                self.mark("value")
                value = self.duration()
        else:
            why = (f"trait.{name} is a number, not a time: {op_tok.text} works only on the "
                   "time traits (the ones ending in _ms)"
                   if op_tok.kind == "ident" and op_tok.text in TRAIT_OPS
                   else f"found {self._describe(op_tok)}")
            self.fail(f"{why}; trait.{name} takes {ops_text(allowed)}", op_tok)
        return check_trait(name, op, value, "trait")

    def count(self) -> Rule:
        self.expect("punct", "(")
        spec = self.event_spec("event")
        window = self.window()
        self.expect("punct", ")")
        op = self.cmp_op()
        self.mark("n")
        n = self.integer("a whole number")
        return from_json({"kind": "event_count", "event": _spec_json(spec), "op": op, "n": n,
                          "window_ms": window})

    def sum(self) -> Rule:
        self.expect("punct", "(")
        spec = self.event_spec("event")
        window = self.window()
        self.expect("punct", ")")
        op = self.cmp_op()
        self.mark("value")
        value = self.number()
        return from_json({"kind": "event_sum", "event": _spec_json(spec), "op": op,
                          "value": value, "window_ms": window})

    def last(self) -> Rule:
        self.expect("punct", "(")
        spec = self.event_spec("event")
        self.expect("punct", ")")
        op = self.word("within_last", "more_than_ago")
        self.mark("ms")
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
        self.mark("within_ms")
        within = self.duration()
        min_age = 0
        if self.accept("punct", ","):
            self.word("min_age")
            self.mark("min_age_ms")
            self.mark("")  # "min_age must be shorter than within"
            min_age = self.duration()
        self.expect("punct", ")")
        return check_sequence(first, then_not, within, min_age, "sequence")

    def in_segment(self) -> Rule:
        self.expect("punct", "(")
        self.mark("segment")
        name = self.string()
        self.expect("punct", ")")
        return from_json({"kind": "in_segment", "segment": name})

    def consent(self) -> Rule:
        self.expect("punct", ".")
        programs = " or ".join(CONSENT_PROGRAMS)
        t = self.expect("ident", what=f"a consent program ({programs})")
        if t.text not in CONSENT_PROGRAMS:
            self.fail(f"unknown consent program {t.text!r} (expected {programs})", t)
        self.expect("op", "=")
        states = ops_text(list(CONSENT_STATES))
        s = self.tok
        if s.kind != "ident" or s.text not in CONSENT_STATES:
            what = repr(s.text) if s.kind == "ident" else self._describe(s)
            self.fail(f"consent.{t.text} = takes a consent state, {states}; found {what}", s)
        self.i += 1
        return from_json({"kind": "consent", "program": t.text, "state": s.text})

    def geo(self) -> Rule:
        self.expect("punct", ".")
        t = self.tok
        if self.accept("ident", "within"):
            self.expect("punct", "(")
            self.mark("km")
            km = self.distance()
            self.expect("punct", ",")
            self.mark("lat")
            lat = self.number()
            self.expect("punct", ",")
            self.mark("lon")
            lon = self.number()
            self.expect("punct", ")")
            return from_json({"kind": "near", "lat": lat, "lon": lon, "km": km})
        fields = ops_text([*GEO_FIELDS, "within"])
        field = self.expect("ident", what=fields).text
        if field not in GEO_FIELDS:
            self.fail(f"unknown location field {field!r} (expected {fields})", t)
        self.word("in")
        values = self.list_of("string", "values")
        return from_json({"kind": "geo", "field": field, "values": values})

    def bucket(self) -> Rule:
        self.expect("punct", "(")
        self.mark("salt")
        salt = self.string()
        self.expect("punct", ",")
        self.mark("lo")
        lo = self.integer("a bucket number 0-99")
        self.expect("punct", ",")
        self.mark("hi")
        self.mark("")  # "bucket range needs lo < hi": the high end
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


def is_json(text: str) -> bool:
    """Rule text that is the canonical JSON form: it starts with ``{`` (no rule text does)."""
    return text.lstrip().startswith("{")


def load_rule(text: str) -> Rule:
    """Rule text, or canonical JSON (text starting with ``{``): the versioned envelope
    ``{"version": 1, "rule": NODE}`` or a bare ``NODE``. JSON errors are :class:`RuleError`
    naming the path (``rule.children[1].op``); text errors are :class:`ParseError`."""
    if not is_json(text):
        return parse(text)
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise RuleError("$", f"not JSON: {e}") from None
    if isinstance(doc, dict) and "version" in doc:
        if doc.get("version") != FORMAT_VERSION:
            raise RuleError("$.version", f"unsupported rule format version "
                                         f"{doc['version']!r} (this smsgate reads version "
                                         f"{FORMAT_VERSION})")
        return loads(text)
    return from_json(doc)


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
