"""The canonical segment rule tree: frozen dataclasses, versioned JSON, validation.

The tree is what a segment *is* (``segment.definition`` holds :func:`dumps` of it); the text
syntax (``segmentation.rules.dsl``) is only a way for people to write it. Node kinds follow
``../shared/reference/segmentation-compliance.md`` §5.3.

Semantics every evaluator shares (documented in ``docs/segments.md``, proven equal for the SQL
compiler and the Python evaluator by property tests):

- Time is an injected ``now`` (epoch ms). Events with ``ts_ms > now`` have not happened yet and
  are ignored. A window "last D" is the half-open interval ``(now - D, now]``.
- Every positive comparison on a missing value is false; ``ne`` is defined as ``not eq`` and is
  therefore true for a missing value; ``exists`` / ``missing`` test presence explicitly.
- Durations and timestamps are integer milliseconds.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from gateway.errors import SmsgateError

FORMAT_VERSION: Final = 1
"""Version of the JSON envelope ``{"version": 1, "rule": ...}``."""

DAY_MS: Final = 86_400_000
MAX_DURATION_MS: Final = 100 * 366 * DAY_MS
MAX_TIMESTAMP_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MAX_EXACT_INT: Final = 2**53  # larger ints do not survive a round trip through a SQLite REAL
MAX_NAME_LEN: Final = 200

PROP_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class RuleError(SmsgateError, ValueError):
    """An invalid rule tree; ``path`` names the offending place (``rule.children[1].op``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# -- operator vocabulary -------------------------------------------------------------------------

CMP_OPS: Final = ("eq", "ne", "lt", "le", "gt", "ge")
TEXT_OPS: Final = ("eq", "ne", "in", "contains", "starts", "ends")
NUMBER_OPS: Final = ("eq", "ne", "lt", "le", "gt", "ge", "between")
BOOL_OPS: Final = ("eq", "ne")
DATE_ABS_OPS: Final = ("before", "after")
DATE_REL_OPS: Final = ("within_last", "more_than_ago", "in_next")
LIST_OPS: Final = ("includes", "includes_any")
GEO_OPS: Final = ("within_km",)
PRESENCE_OPS: Final = ("exists", "missing")
ATTR_OPS: Final = tuple(
    dict.fromkeys(
        TEXT_OPS + NUMBER_OPS + DATE_ABS_OPS + DATE_REL_OPS + LIST_OPS + GEO_OPS + PRESENCE_OPS
    )
)
PROP_OPS: Final = ("eq", "ne", "lt", "le", "gt", "ge", "in")
LAST_OPS: Final = ("within_last", "more_than_ago")

# trait name -> kind. "time" traits are epoch ms and also take within_last / more_than_ago.
# created_ms / last_seen_ms live on the subscriber row; the rest on the trait row (schema.py).
TRAITS: Final[dict[str, str]] = {
    "orders": "number",
    "spend": "number",
    "first_purchase_ms": "time",
    "last_purchase_ms": "time",
    "last_click_ms": "time",
    "last_view_ms": "time",
    "last_cart_ms": "time",
    "last_reply_ms": "time",
    "last_sent_ms": "time",
    "last_delivered_ms": "time",
    "last_interaction_ms": "time",
    "created_ms": "time",
    "last_seen_ms": "time",
}
PROFILE_TRAITS: Final = frozenset({"created_ms", "last_seen_ms"})
TRAIT_OPS: Final = CMP_OPS + PRESENCE_OPS + LAST_OPS

CONSENT_PROGRAMS: Final = ("marketing", "transactional")
CONSENT_STATES: Final = ("granted", "revoked", "none")
GEO_FIELDS: Final = ("country", "region", "area_code", "postal_code")


# -- nodes -----------------------------------------------------------------------------------------

Scalar: TypeAlias = str | int | float | bool


@dataclass(frozen=True)
class And:
    children: tuple[Rule, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Rule, ...]


@dataclass(frozen=True)
class Not:
    child: Rule


@dataclass(frozen=True)
class Circle:
    """A point and a radius: the value of ``within_km``."""

    lat: float
    lon: float
    km: float


AttrValue: TypeAlias = Scalar | tuple[str, ...] | tuple[float, float] | Circle | None


@dataclass(frozen=True)
class Attr:
    """A typed attribute comparison; the type follows from ``op`` and value (:func:`attr_type`)."""

    key: str
    op: str
    value: AttrValue = None


@dataclass(frozen=True)
class PropFilter:
    """A filter on one event property (``props`` JSON): ``sku = "A"``, ``qty >= 2``."""

    prop: str
    op: str
    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True)
class EventSpec:
    type: str
    where: tuple[PropFilter, ...] = ()


@dataclass(frozen=True)
class EventCount:
    """``count(type where ..., last window) op n``; ``window_ms`` None is all time."""

    event: EventSpec
    op: str
    n: int
    window_ms: int | None = None


@dataclass(frozen=True)
class EventSum:
    """``sum(type where ..., last window) op value``: the sum of ``event.value`` (NULL as 0)."""

    event: EventSpec
    op: str
    value: int | float
    window_ms: int | None = None


@dataclass(frozen=True)
class LastEvent:
    """The newest matching event is within the last ``ms`` / more than ``ms`` ago.

    ``more_than_ago`` needs at least one matching event (missing is never "more than ago").
    """

    event: EventSpec
    op: str
    ms: int


@dataclass(frozen=True)
class Sequence:
    """An event ``first`` at least ``min_age_ms`` old and younger than ``within_ms``, with no
    ``then_not`` event after it (same or later time, another row) up to now.

    True from ``first.ts + min_age`` until ``first.ts + within`` unless the follow-up happens:
    "cart_add and then no purchase within 4 h, at least 1 h ago".
    """

    first: EventSpec
    then_not: EventSpec
    within_ms: int
    min_age_ms: int = 0


@dataclass(frozen=True)
class Trait:
    name: str
    op: str
    value: int | float | None = None


@dataclass(frozen=True)
class InSegment:
    segment: str


@dataclass(frozen=True)
class Consent:
    program: str
    state: str


@dataclass(frozen=True)
class Geo:
    """The subscriber's ``field`` (country, region, area code, postal code) is one of ``values``."""

    field: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Near:
    """The subscriber's location (``subscriber.lat``/``lon``) is within ``km`` of a point."""

    lat: float
    lon: float
    km: float


@dataclass(frozen=True)
class Random:
    """Deterministic bucket ``0..99`` from subscriber id and ``salt``; true for ``lo <= b < hi``."""

    salt: str
    lo: int
    hi: int


Rule: TypeAlias = (
    And | Or | Not | Attr | EventCount | EventSum | LastEvent | Sequence | Trait | InSegment
    | Consent | Geo | Near | Random
)

LEAF_KINDS: Final = (
    "attr", "event_count", "event_sum", "last_event", "sequence", "trait", "in_segment",
    "consent", "geo", "near", "random",
)


def attr_type(node: Attr) -> str | None:
    """The attribute type a comparison reads: text, number, bool, date, list, geo (None: any)."""
    op, v = node.op, node.value
    if op in PRESENCE_OPS:
        return None
    if op in ("eq", "ne"):
        if isinstance(v, bool):
            return "bool"
        return "text" if isinstance(v, str) else "number"
    if op in ("in", "contains", "starts", "ends"):
        return "text"
    if op in ("lt", "le", "gt", "ge", "between"):
        return "number"
    if op in DATE_ABS_OPS + DATE_REL_OPS:
        return "date"
    if op in LIST_OPS:
        return "list"
    return "geo"


# -- validation ----------------------------------------------------------------------------------


def _fail(path: str, message: str) -> RuleError:
    return RuleError(path, message)


def _check_str(v: object, path: str, *, what: str = "a string", max_len: int = MAX_NAME_LEN) -> str:
    if not isinstance(v, str):
        raise _fail(path, f"expected {what}, got {type(v).__name__}")
    if "\x00" in v:
        raise _fail(path, "NUL characters are not allowed")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(path, "text must be valid Unicode (no lone surrogates)") from None
    if len(v) > max_len:
        raise _fail(path, f"longer than {max_len} characters")
    return v


def _check_name(v: object, path: str, what: str) -> str:
    s = _check_str(v, path, what=what)
    if not s:
        raise _fail(path, f"{what} must not be empty")
    return s


def _check_number(v: object, path: str) -> int | float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _fail(path, f"expected a number, got {type(v).__name__}")
    if isinstance(v, float) and not math.isfinite(v):
        raise _fail(path, "number must be finite")
    if abs(v) > MAX_EXACT_INT:
        raise _fail(path, f"number out of range (|x| <= {MAX_EXACT_INT})")
    return v


def _check_int(v: object, path: str, lo: int, hi: int, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(path, f"{what} must be an integer")
    if not lo <= v <= hi:
        raise _fail(path, f"{what} must be between {lo} and {hi}")
    return v


def _check_duration(v: object, path: str) -> int:
    return _check_int(v, path, 1, MAX_DURATION_MS, "duration (ms)")


def _check_scalar(v: object, path: str) -> Scalar:
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        return _check_str(v, path)
    return _check_number(v, path)


def _check_str_list(v: object, path: str) -> tuple[str, ...]:
    if not isinstance(v, list | tuple) or not v:
        raise _fail(path, "expected a non-empty list of strings")
    return tuple(_check_str(x, f"{path}[{i}]") for i, x in enumerate(v))


def _check_op(op: object, allowed: tuple[str, ...], path: str, what: str = "operator") -> str:
    if op not in allowed:
        raise _fail(path, f"unknown {what} {op!r} (expected one of {', '.join(allowed)})")
    assert isinstance(op, str)
    return op


def _check_circle(lat: object, lon: object, km: object, path: str) -> tuple[float, float, float]:
    la = float(_check_number(lat, f"{path}.lat"))
    lo = float(_check_number(lon, f"{path}.lon"))
    k = float(_check_number(km, f"{path}.km"))
    if not -90.0 <= la <= 90.0:
        raise _fail(f"{path}.lat", "latitude must be between -90 and 90")
    if not -180.0 <= lo <= 180.0:
        raise _fail(f"{path}.lon", "longitude must be between -180 and 180")
    if not 0.0 < k <= 20_016.0:
        raise _fail(f"{path}.km", "radius must be > 0 and <= 20016 km")
    return la, lo, k


def check_attr(key: object, op: object, value: object, path: str) -> Attr:
    """Validate the parts of an attribute comparison and build it (value normalised)."""
    k = _check_name(key, f"{path}.key", "attribute key")
    o = _check_op(op, ATTR_OPS, f"{path}.op")
    vp = f"{path}.value"
    v: AttrValue
    if o in PRESENCE_OPS:
        if value is not None:
            raise _fail(vp, f"{o} takes no value")
        v = None
    elif o in ("eq", "ne"):
        v = _check_scalar(value, vp)
    elif o == "in":
        v = _check_str_list(value, vp)
    elif o in ("contains", "starts", "ends"):
        v = _check_str(value, vp)
        if not v:
            raise _fail(vp, f"{o} needs a non-empty string")
    elif o in ("lt", "le", "gt", "ge"):
        v = _check_number(value, vp)
    elif o == "between":
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise _fail(vp, "between needs [low, high]")
        lo_, hi_ = _check_number(value[0], f"{vp}[0]"), _check_number(value[1], f"{vp}[1]")
        if lo_ > hi_:
            raise _fail(vp, "between needs low <= high")
        v = (lo_, hi_)
    elif o in DATE_ABS_OPS:
        v = _check_int(value, vp, 0, MAX_TIMESTAMP_MS, "date (epoch ms)")
    elif o in DATE_REL_OPS:
        v = _check_duration(value, vp)
    elif o == "includes":
        v = _check_str(value, vp)
    elif o == "includes_any":
        v = _check_str_list(value, vp)
    else:  # within_km
        if isinstance(value, Circle):
            la, lo2, km = _check_circle(value.lat, value.lon, value.km, vp)
        elif isinstance(value, dict):
            la, lo2, km = _check_circle(value.get("lat"), value.get("lon"), value.get("km"), vp)
        else:
            raise _fail(vp, "within_km needs {lat, lon, km}")
        v = Circle(la, lo2, km)
    return Attr(k, o, v)


def check_prop_filter(prop: object, op: object, value: object, path: str) -> PropFilter:
    p = _check_str(prop, f"{path}.prop", what="a property name")
    if not PROP_RE.match(p) or len(p) > 64:
        raise _fail(f"{path}.prop", "property names are letters, digits and _ (not first digit)")
    o = _check_op(op, PROP_OPS, f"{path}.op")
    vp = f"{path}.value"
    v: Scalar | tuple[Scalar, ...]
    if o == "in":
        if not isinstance(value, list | tuple) or not value:
            raise _fail(vp, "in needs a non-empty list")
        v = tuple(_check_scalar(x, f"{vp}[{i}]") for i, x in enumerate(value))
    else:
        v = _check_scalar(value, vp)
    return PropFilter(p, o, v)


def check_trait(name: object, op: object, value: object, path: str) -> Trait:
    n = _check_str(name, f"{path}.name")
    if n not in TRAITS:
        raise _fail(f"{path}.name", f"unknown trait {n!r} (known: {', '.join(TRAITS)})")
    allowed = TRAIT_OPS if TRAITS[n] == "time" else CMP_OPS + PRESENCE_OPS
    o = _check_op(op, allowed, f"{path}.op")
    vp = f"{path}.value"
    if o in PRESENCE_OPS:
        if value is not None:
            raise _fail(vp, f"{o} takes no value")
        return Trait(n, o, None)
    if o in LAST_OPS:
        return Trait(n, o, _check_duration(value, vp))
    return Trait(n, o, _check_number(value, vp))


def check_random(salt: object, lo: object, hi: object, path: str) -> Random:
    s = _check_str(salt, f"{path}.salt")
    lo_ = _check_int(lo, f"{path}.lo", 0, 99, "bucket low")
    hi_ = _check_int(hi, f"{path}.hi", 1, 100, "bucket high")
    if lo_ >= hi_:
        raise _fail(path, "bucket range needs lo < hi")
    return Random(s, lo_, hi_)


def check_sequence(
    first: EventSpec, then_not: EventSpec, within: object, min_age: object, path: str
) -> Sequence:
    w = _check_duration(within, f"{path}.within_ms")
    m = _check_int(min_age, f"{path}.min_age_ms", 0, MAX_DURATION_MS, "min_age (ms)")
    if m >= w:
        raise _fail(path, "min_age must be shorter than within")
    return Sequence(first, then_not, w, m)


# -- JSON ------------------------------------------------------------------------------------------


def spec_to_json(spec: EventSpec) -> dict[str, Any]:
    return {
        "type": spec.type,
        "where": [
            {"prop": f.prop, "op": f.op, "value": list(f.value) if isinstance(f.value, tuple)
             else f.value}
            for f in spec.where
        ],
    }


def _value_to_json(v: AttrValue) -> Any:
    if isinstance(v, Circle):
        return {"lat": v.lat, "lon": v.lon, "km": v.km}
    if isinstance(v, tuple):
        return list(v)
    return v


def to_json(rule: Rule) -> dict[str, Any]:
    """The JSON object for one node (without the version envelope)."""
    match rule:
        case And(children):
            return {"kind": "and", "children": [to_json(c) for c in children]}
        case Or(children):
            return {"kind": "or", "children": [to_json(c) for c in children]}
        case Not(child):
            return {"kind": "not", "child": to_json(child)}
        case Attr(key, op, value):
            return {"kind": "attr", "key": key, "op": op, "value": _value_to_json(value)}
        case EventCount(event, op, n, window_ms):
            return {"kind": "event_count", "event": spec_to_json(event), "op": op, "n": n,
                    "window_ms": window_ms}
        case EventSum(event, op, value, window_ms):
            return {"kind": "event_sum", "event": spec_to_json(event), "op": op, "value": value,
                    "window_ms": window_ms}
        case LastEvent(event, op, ms):
            return {"kind": "last_event", "event": spec_to_json(event), "op": op, "ms": ms}
        case Sequence(first, then_not, within_ms, min_age_ms):
            return {"kind": "sequence", "first": spec_to_json(first),
                    "then_not": spec_to_json(then_not), "within_ms": within_ms,
                    "min_age_ms": min_age_ms}
        case Trait(name, op, value):
            return {"kind": "trait", "name": name, "op": op, "value": value}
        case InSegment(segment):
            return {"kind": "in_segment", "segment": segment}
        case Consent(program, state):
            return {"kind": "consent", "program": program, "state": state}
        case Geo(field, values):
            return {"kind": "geo", "field": field, "values": list(values)}
        case Near(lat, lon, km):
            return {"kind": "near", "lat": lat, "lon": lon, "km": km}
        case Random(salt, lo, hi):
            return {"kind": "random", "salt": salt, "lo": lo, "hi": hi}
    raise TypeError(f"not a rule node: {rule!r}")  # pragma: no cover - exhaustive match


def _obj(v: object, path: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _fail(path, f"expected an object, got {type(v).__name__}")
    return v


def _keys(o: dict[str, Any], path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
          ) -> None:
    for k in required:
        if k not in o:
            raise _fail(path, f"missing field {k!r}")
    extra = set(o) - set(required) - set(optional) - {"kind"}
    if extra:
        raise _fail(path, f"unknown field(s) {', '.join(sorted(extra))}")


def _spec_from_json(v: object, path: str) -> EventSpec:
    o = _obj(v, path)
    _keys(o, path, ("type",), ("where",))
    t = _check_name(o["type"], f"{path}.type", "event type")
    where = o.get("where", [])
    if not isinstance(where, list):
        raise _fail(f"{path}.where", "expected a list of filters")
    filters = []
    for i, f in enumerate(where):
        fp = f"{path}.where[{i}]"
        fo = _obj(f, fp)
        _keys(fo, fp, ("prop", "op", "value"))
        filters.append(check_prop_filter(fo["prop"], fo["op"], fo["value"], fp))
    return EventSpec(t, tuple(filters))


def _window(v: object, path: str) -> int | None:
    return None if v is None else _check_duration(v, path)


def from_json(v: object, path: str = "rule") -> Rule:
    """Build and validate a node from its JSON object; errors name the path in the tree."""
    o = _obj(v, path)
    kind = o.get("kind")
    match kind:
        case "and" | "or":
            _keys(o, path, ("children",))
            ch = o["children"]
            if not isinstance(ch, list) or not ch:
                raise _fail(f"{path}.children", "expected a non-empty list")
            children = tuple(from_json(c, f"{path}.children[{i}]") for i, c in enumerate(ch))
            return And(children) if kind == "and" else Or(children)
        case "not":
            _keys(o, path, ("child",))
            return Not(from_json(o["child"], f"{path}.child"))
        case "attr":
            _keys(o, path, ("key", "op"), ("value",))
            return check_attr(o["key"], o["op"], o.get("value"), path)
        case "event_count":
            _keys(o, path, ("event", "op", "n"), ("window_ms",))
            spec = _spec_from_json(o["event"], f"{path}.event")
            op = _check_op(o["op"], CMP_OPS, f"{path}.op")
            n = _check_int(o["n"], f"{path}.n", 0, 1_000_000_000, "count")
            return EventCount(spec, op, n, _window(o.get("window_ms"), f"{path}.window_ms"))
        case "event_sum":
            _keys(o, path, ("event", "op", "value"), ("window_ms",))
            spec = _spec_from_json(o["event"], f"{path}.event")
            op = _check_op(o["op"], CMP_OPS, f"{path}.op")
            val = _check_number(o["value"], f"{path}.value")
            return EventSum(spec, op, val, _window(o.get("window_ms"), f"{path}.window_ms"))
        case "last_event":
            _keys(o, path, ("event", "op", "ms"))
            spec = _spec_from_json(o["event"], f"{path}.event")
            op = _check_op(o["op"], LAST_OPS, f"{path}.op")
            return LastEvent(spec, op, _check_duration(o["ms"], f"{path}.ms"))
        case "sequence":
            _keys(o, path, ("first", "then_not", "within_ms"), ("min_age_ms",))
            first = _spec_from_json(o["first"], f"{path}.first")
            then_not = _spec_from_json(o["then_not"], f"{path}.then_not")
            return check_sequence(first, then_not, o["within_ms"], o.get("min_age_ms", 0), path)
        case "trait":
            _keys(o, path, ("name", "op"), ("value",))
            return check_trait(o["name"], o["op"], o.get("value"), path)
        case "in_segment":
            _keys(o, path, ("segment",))
            return InSegment(_check_name(o["segment"], f"{path}.segment", "segment name"))
        case "consent":
            _keys(o, path, ("program", "state"))
            program = _check_op(o["program"], CONSENT_PROGRAMS, f"{path}.program",
                                "consent program")
            return Consent(program, _check_op(o["state"], CONSENT_STATES, f"{path}.state",
                                              "consent state"))
        case "geo":
            _keys(o, path, ("field", "values"))
            field = _check_op(o["field"], GEO_FIELDS, f"{path}.field", "location field")
            return Geo(field, _check_str_list(o["values"], f"{path}.values"))
        case "near":
            _keys(o, path, ("lat", "lon", "km"))
            return Near(*_check_circle(o["lat"], o["lon"], o["km"], path))
        case "random":
            _keys(o, path, ("salt", "lo", "hi"))
            return check_random(o["salt"], o["lo"], o["hi"], path)
    kinds = ", ".join(("and", "or", "not", *LEAF_KINDS))
    raise _fail(f"{path}.kind", f"unknown node kind {kind!r} (expected one of {kinds})")


def validate(rule: Rule) -> Rule:
    """Check a tree built in code; raises :class:`RuleError` naming the path. Returns it."""
    return from_json(to_json(rule))


def dumps(rule: Rule) -> str:
    """Canonical JSON text: versioned envelope, sorted keys, compact."""
    return json.dumps(
        {"version": FORMAT_VERSION, "rule": to_json(rule)},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
    )


def loads(text: str) -> Rule:
    """Parse canonical JSON text (the envelope) back into a validated tree."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise RuleError("$", f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    o = _obj(doc, "$")
    if o.get("version") != FORMAT_VERSION:
        raise RuleError("$.version", f"unsupported rule format version {o.get('version')!r}")
    if set(o) != {"version", "rule"}:
        raise RuleError("$", "expected exactly the fields 'version' and 'rule'")
    return from_json(o["rule"])


# -- walking -------------------------------------------------------------------------------------


def children(rule: Rule) -> tuple[Rule, ...]:
    match rule:
        case And(ch) | Or(ch):
            return ch
        case Not(child):
            return (child,)
    return ()


def walk(rule: Rule) -> list[Rule]:
    """Every node, pre-order."""
    out: list[Rule] = [rule]
    for c in children(rule):
        out.extend(walk(c))
    return out
