"""CSV import of subscribers and events: streamed, batched, idempotent, one error line per bad row.

Files are read as UTF-8 (a BOM is fine) with the csv module, a batch of rows at a time, so a file
of any length imports in bounded memory. Each batch is one transaction; inside it each row is a
savepoint, so a row that fails is reported (``row N, column X: why``, rows numbered as in a
spreadsheet: the header is row 1) and skipped while every good row is kept.

**Column mapping.** A header that names a field maps to it; ``mapping`` (``--map col=field``)
maps any other header. Subscriber fields: ``phone`` (required), ``region``, ``postal_code``,
``tz``, ``locale``, ``lat``, ``lon``, ``status``, ``attr.KEY`` (a defined attribute; a header equal
to a defined attribute key maps to it too; ``attr.KEY:TYPE`` defines it on the fly), and the
consent evidence columns ``consent_program``, ``consent_action`` (default grant),
``consent_method`` (default import), ``consent_time``, ``consent_disclosure``,
``consent_keyword``. Event fields: ``phone``, ``type``, ``ts`` (required), ``value``, ``id``,
``source``, ``props`` (a JSON object) and ``prop.KEY`` (text). Unmapped headers are ignored and
listed in the report. Empty cells mean "not given" and never overwrite stored values.

**Values.** Times: ISO 8601 (``2026-01-15``, ``2026-01-15T09:30:00+01:00``; no offset = UTC) or
integer epoch milliseconds. Numbers: plain decimal (``12.50``, ``-3``, ``1e3``; no thousands
separators). Booleans: true/false, yes/no, 1/0. Lists: a JSON array or ``a|b|c``. Geo: ``lat,lon``.

**Idempotence.** Re-importing a file (or another file with the same rows) adds nothing:
subscribers are upserts; consent rows carry a dedupe key from the row's content; events carry
``import:<id>`` from an ``id`` column, else a sha256 of (number, type, time, value, props) — so two
genuinely identical events in one file without an id count once (give an ``id`` column if that
matters). The file's sha256 is the consent evidence (``file_sha256``) and the events' source
(``csv:<sha256>``).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import SmsgateError
from segmentation.consent import ACTIONS, METHODS, PROGRAMS, record_consent
from segmentation.ingest import Event, EventError, check_event, ingest_events
from segmentation.phones import PhoneError, normalise
from segmentation.store import Store
from segmentation.subscribers import (
    ATTRIBUTE_TYPES,
    STATUSES,
    AttributeValueError,
    GeoPoint,
    SubscriberError,
    attribute_types,
    define_attribute,
    encode_value,
    set_attributes,
    to_epoch_ms,
    upsert_subscriber,
)

SUBSCRIBER_FIELDS: tuple[str, ...] = (
    "phone", "region", "postal_code", "tz", "locale", "lat", "lon", "status",
    "consent_program", "consent_action", "consent_method", "consent_time",
    "consent_disclosure", "consent_keyword",
)
EVENT_FIELDS: tuple[str, ...] = ("phone", "type", "ts", "value", "id", "source", "props")
MAX_REPORTED_ERRORS = 1000  # kept in the report; every error still goes to on_error


class CsvImportError(SmsgateError, ValueError):
    """The file as a whole cannot be imported (unreadable, bad mapping, missing column)."""


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    why: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column}: {self.why}"


@dataclass(frozen=True)
class ImportReport:
    file_sha256: str
    rows: int            # data rows read
    imported: int        # rows that changed or added something
    unchanged: int       # good rows already present (re-import)
    skipped: int         # bad rows
    errors: tuple[RowError, ...]  # the first MAX_REPORTED_ERRORS of them
    ignored_columns: tuple[str, ...]


class _RowProblem(Exception):
    def __init__(self, column: str, why: str) -> None:
        super().__init__(why)
        self.column = column
        self.why = why


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_mapping(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["Mobile=phone", "Age=attr.age:number"]`` -> ``{"Mobile": "phone", ...}``."""
    out: dict[str, str] = {}
    for item in items:
        col, sep, target = item.partition("=")
        if not sep or not col.strip() or not target.strip():
            raise CsvImportError(f"mapping {item!r}: expected COLUMN=FIELD")
        out[col.strip()] = target.strip()
    return out


# -- value parsing -------------------------------------------------------------------------------

_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_TRUE = frozenset({"true", "yes", "y", "1", "t"})
_FALSE = frozenset({"false", "no", "n", "0", "f"})


def parse_number(text: str) -> float:
    s = text.strip()
    if not _NUMBER_RE.match(s):
        raise ValueError(f"not a number: {text!r}")
    value = float(s)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def parse_time_ms(text: str) -> int:
    """ISO 8601 date/datetime (no offset = UTC) or integer epoch milliseconds."""
    s = text.strip()
    if s.isdigit():
        if len(s) < 11:  # 10 digits is epoch *seconds* (or 1970 in ms): refuse, don't guess
            raise ValueError(f"integer times are epoch milliseconds; {text!r} is too small")
        return int(s)
    try:
        if len(s) == 10:
            return to_epoch_ms(dt.date.fromisoformat(s))
        return to_epoch_ms(dt.datetime.fromisoformat(s.replace("Z", "+00:00")))
    except ValueError:
        raise ValueError(f"not a date/time (ISO 8601 or epoch ms): {text!r}") from None


def parse_attribute(type_: str, text: str) -> object:
    s = text.strip()
    if type_ == "text":
        return text
    if type_ == "number":
        value = parse_number(s)
        return int(value) if value.is_integer() and "." not in s and "e" not in s.lower() \
            else value
    if type_ == "bool":
        low = s.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"not true/false: {text!r}")
    if type_ == "date":
        return parse_time_ms(s)
    if type_ == "list":
        if s.startswith("["):
            items = json.loads(s)
            if not isinstance(items, list):
                raise ValueError("not a list")
            return [str(i) for i in items]
        return [p.strip() for p in s.split("|") if p.strip()]
    if type_ == "geo":
        parts = re.split(r"[,\s]+", s)
        if len(parts) != 2:
            raise ValueError(f"expected 'lat,lon': {text!r}")
        return GeoPoint(parse_number(parts[0]), parse_number(parts[1]))
    raise ValueError(f"unknown type {type_}")


# -- reading -------------------------------------------------------------------------------------


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(spreadsheet row number, cells) for each record after the header."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader, None)
        for index, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue  # blank lines are not rows
            yield index, cells


def _header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError) as exc:
        raise CsvImportError(f"{path}: cannot read ({exc})") from None
    if not header:
        raise CsvImportError(f"{path}: empty file (a header row is required)")
    return [h.strip() for h in header]


@dataclass(frozen=True)
class _Columns:
    by_field: dict[str, int]        # field -> cell index
    header: list[str]
    ignored: tuple[str, ...]

    def name(self, field: str) -> str:
        i = self.by_field.get(field)
        return self.header[i] if i is not None else field


def _resolve_columns(
    header: list[str], mapping: Mapping[str, str], known: tuple[str, ...],
    prefixes: tuple[str, ...], implicit: Callable[[str], str | None],
) -> _Columns:
    for col in mapping:
        if col not in header:
            raise CsvImportError(f"mapped column {col!r} is not in the header")
    by_field: dict[str, int] = {}
    ignored: list[str] = []
    for i, col in enumerate(header):
        target = mapping.get(col)
        if target is None:
            low = col.lower()
            target = low if low in known or low.startswith(prefixes) else implicit(col)
        if target is None:
            ignored.append(col)
            continue
        if target not in known and not target.startswith(prefixes):
            raise CsvImportError(f"column {col!r}: unknown field {target!r}")
        if target in by_field:
            raise CsvImportError(f"field {target!r} is mapped from two columns")
        by_field[target] = i
    return _Columns(by_field, header, tuple(ignored))


def _cells(cols: _Columns, cells: list[str]) -> dict[str, str]:
    if len(cells) < len(cols.header):
        missing = cols.header[len(cells)]
        raise _RowProblem(missing, f"missing (row has {len(cells)} of {len(cols.header)} cells)")
    if len(cells) > len(cols.header):
        raise _RowProblem(f"#{len(cols.header) + 1}",
                          f"extra cell (row has {len(cells)}, header {len(cols.header)})")
    return {f: cells[i].strip() for f, i in cols.by_field.items() if cells[i].strip()}


class _Reporter:
    def __init__(self, on_error: Callable[[RowError], None] | None) -> None:
        self.on_error = on_error
        self.kept: list[RowError] = []
        self.count = 0

    def __call__(self, err: RowError) -> None:
        self.count += 1
        if len(self.kept) < MAX_REPORTED_ERRORS:
            self.kept.append(err)
        if self.on_error is not None:
            self.on_error(err)


# -- subscribers ---------------------------------------------------------------------------------


def _content_key(*parts: object) -> str:
    blob = json.dumps(parts, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def import_subscribers(
    store: Store,
    path: Path,
    *,
    mapping: Mapping[str, str] | None = None,
    batch_size: int = 1000,
    on_error: Callable[[RowError], None] | None = None,
    actor: str = "import",
) -> ImportReport:
    """Import subscribers (profile, attributes, consent evidence); see the module docstring."""
    header = _header(path)
    mapping = dict(mapping or {})
    # attr.KEY:TYPE in a mapping defines KEY (the caller asked for it explicitly).
    for col, target in list(mapping.items()):
        if target.startswith("attr.") and ":" in target:
            key, _, type_ = target[len("attr."):].partition(":")
            if type_ not in ATTRIBUTE_TYPES:
                raise CsvImportError(f"mapping {col}={target}: unknown attribute type {type_!r}")
            try:
                define_attribute(store, key, type_)
            except AttributeValueError as exc:
                raise CsvImportError(f"mapping {col}={target}: {exc.why}") from None
            mapping[col] = f"attr.{key}"
    types = attribute_types(store)
    cols = _resolve_columns(header, mapping, SUBSCRIBER_FIELDS, ("attr.",),
                            lambda c: f"attr.{c}" if c in types else None)
    if "phone" not in cols.by_field:
        raise CsvImportError(f"{path}: no phone column (map one with --map COLUMN=phone)")
    for field in cols.by_field:
        if field.startswith("attr.") and field[5:] not in types:
            raise CsvImportError(
                f"column {cols.name(field)!r}: attribute {field[5:]!r} is not defined "
                f"(map it as {cols.name(field)}=attr.{field[5:]}:TYPE to define it)"
            )
    sha = file_sha256(path)
    report = _Reporter(on_error)
    rows = imported = unchanged = 0
    batch: list[tuple[int, list[str]]] = []

    def flush() -> None:
        nonlocal imported, unchanged
        with store.atomic():
            for row_no, cells in batch:
                before = store.conn.total_changes
                try:
                    with store.atomic():
                        _import_subscriber_row(store, cols, types, cells, row_no, sha,
                                               path.name, actor)
                except _RowProblem as p:
                    report(RowError(row_no, p.column, p.why))
                    continue
                except SmsgateError as exc:  # anything else a row can get wrong
                    report(RowError(row_no, "?", str(exc)))
                    continue
                if store.conn.total_changes != before:
                    imported += 1
                else:
                    unchanged += 1
        batch.clear()

    for row_no, cells in _rows(path):
        rows += 1
        batch.append((row_no, cells))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return ImportReport(sha, rows, imported, unchanged, report.count, tuple(report.kept),
                        cols.ignored)


def _import_subscriber_row(
    store: Store, cols: _Columns, types: dict[str, str], cells: list[str], row_no: int,
    sha: str, filename: str, actor: str,
) -> None:
    v = _cells(cols, cells)
    name = cols.name
    if "phone" not in v:
        raise _RowProblem(name("phone"), "empty phone number")
    try:
        e164 = normalise(v["phone"], store.default_region)
    except PhoneError as exc:
        raise _RowProblem(name("phone"), exc.why) from None
    lat = lon = None
    for field in ("lat", "lon"):
        if field in v:
            try:
                value = parse_number(v[field])
            except ValueError as exc:
                raise _RowProblem(name(field), str(exc)) from None
            lat, lon = (value, lon) if field == "lat" else (lat, value)
    if v.get("status") and v["status"] not in STATUSES:
        raise _RowProblem(name("status"), f"must be one of {', '.join(STATUSES)}")
    attrs: dict[str, object] = {}
    for field, text in v.items():
        if field.startswith("attr."):
            key = field[5:]
            try:
                attrs[key] = parse_attribute(types[key], text)
            except (ValueError, json.JSONDecodeError) as exc:
                raise _RowProblem(name(field), f"{types[key]} expected; {exc}") from None
    consent = _consent_fields(v, name)
    try:
        sid = upsert_subscriber(
            store, e164, region=v.get("region"), postal_code=v.get("postal_code"),
            tz=v.get("tz"), locale=v.get("locale"), lat=lat, lon=lon, status=v.get("status"),
        )
    except PhoneError as exc:  # a bad time zone hint
        raise _RowProblem(name("tz"), f"{exc.value!r}: {exc.why}") from None
    except SubscriberError as exc:
        raise _RowProblem(name(exc.field.split("/")[0]), exc.why) from None
    if attrs:
        _set_if_changed(store, sid, attrs, name)
    if consent is not None:
        program, action, method, ts_raw, disclosure, keyword = consent
        ts_ms = parse_time_ms(ts_raw) if ts_raw else None
        record_consent(
            store, e164, program, action, method, actor=actor, ts_ms=ts_ms,
            keyword_text=keyword, disclosure=disclosure,
            evidence={"file_sha256": sha, "file": filename, "row": row_no},
            dedupe_key="import:" + _content_key(e164, program, action, method, ts_raw,
                                                disclosure, keyword),
        )


def _set_if_changed(
    store: Store, sid: int, attrs: dict[str, object], name: Callable[[str], str]
) -> None:
    """Set attributes, skipping the write when the stored values are the same (idempotence)."""
    types = attribute_types(store)
    stored = {
        r[0]: (r[1], r[2], r[3]) for r in store.conn.execute(
            "SELECT key, value_text, value_num, value_num2 FROM subscriber_attr "
            "WHERE subscriber_id = ?", (sid,))
    }
    changed: dict[str, object] = {}
    for key, value in attrs.items():
        try:
            encoded = encode_value(key, types[key], value)
        except AttributeValueError as exc:
            raise _RowProblem(name(f"attr.{key}"), exc.why) from None
        if stored.get(key) != encoded:
            changed[key] = value
    if changed:
        set_attributes(store, sid, changed)


def _consent_fields(
    v: dict[str, str], name: Callable[[str], str]
) -> tuple[str, str, str, str | None, str | None, str | None] | None:
    program = v.get("consent_program")
    if program is None:
        if any(k.startswith("consent_") for k in v):
            raise _RowProblem(name("consent_program"), "consent columns need a program")
        return None
    program = program.lower()
    if program not in PROGRAMS:
        raise _RowProblem(name("consent_program"), f"must be one of {', '.join(PROGRAMS)}")
    action = v.get("consent_action", "grant").lower()
    if action not in ACTIONS:
        raise _RowProblem(name("consent_action"), "must be grant or revoke")
    method = v.get("consent_method", "import").lower()
    if method not in METHODS:
        raise _RowProblem(name("consent_method"), f"must be one of {', '.join(METHODS)}")
    if method == "keyword" and not v.get("consent_keyword"):
        raise _RowProblem(name("consent_keyword"), "a keyword consent needs the exact text")
    ts_raw = v.get("consent_time")
    if ts_raw is not None:
        try:
            parse_time_ms(ts_raw)
        except ValueError as exc:
            raise _RowProblem(name("consent_time"), str(exc)) from None
    return program, action, method, ts_raw, v.get("consent_disclosure"), v.get("consent_keyword")


# -- events --------------------------------------------------------------------------------------


def import_events(
    store: Store,
    path: Path,
    *,
    mapping: Mapping[str, str] | None = None,
    batch_size: int = 5000,
    on_error: Callable[[RowError], None] | None = None,
) -> ImportReport:
    """Import events (subscribers are created for new numbers); see the module docstring."""
    header = _header(path)
    cols = _resolve_columns(header, dict(mapping or {}), EVENT_FIELDS, ("prop.",),
                            lambda c: None)
    for required in ("phone", "type", "ts"):
        if required not in cols.by_field:
            raise CsvImportError(
                f"{path}: no {required} column (map one with --map COLUMN={required})")
    sha = file_sha256(path)
    source = f"csv:{sha}"
    report = _Reporter(on_error)
    rows = imported = unchanged = 0
    batch: list[Event] = []
    phones: dict[str, str] = {}

    def flush() -> None:
        nonlocal imported, unchanged
        result = ingest_events(store, batch)
        imported += result.inserted
        unchanged += result.duplicates
        batch.clear()

    for row_no, cells in _rows(path):
        rows += 1
        try:
            batch.append(_event_row(store, cols, cells, source, phones))
        except _RowProblem as p:
            report(RowError(row_no, p.column, p.why))
            continue
        if len(phones) > 100_000:
            phones.clear()  # bounded memory: the cache only saves re-parsing
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return ImportReport(sha, rows, imported, unchanged, report.count, tuple(report.kept),
                        cols.ignored)


_EVENT_ERROR_COLUMN = {"type": "type", "ts_ms": "ts", "value": "value", "number": "phone"}


def _event_row(
    store: Store, cols: _Columns, cells: list[str], source: str, phones: dict[str, str]
) -> Event:
    v = _cells(cols, cells)
    name = cols.name
    for required in ("phone", "type", "ts"):
        if required not in v:
            raise _RowProblem(name(required), "empty")
    raw = v["phone"]
    e164 = phones.get(raw)
    if e164 is None:
        try:
            e164 = phones[raw] = normalise(raw, store.default_region)
        except PhoneError as exc:
            raise _RowProblem(name("phone"), exc.why) from None
    try:
        ts_ms = parse_time_ms(v["ts"])
    except ValueError as exc:
        raise _RowProblem(name("ts"), str(exc)) from None
    value = None
    if "value" in v:
        try:
            value = parse_number(v["value"])
        except ValueError as exc:
            raise _RowProblem(name("value"), str(exc)) from None
    props: dict[str, Any] = {}
    if "props" in v:
        try:
            loaded = json.loads(v["props"])
        except json.JSONDecodeError as exc:
            raise _RowProblem(name("props"), f"not JSON ({exc.msg})") from None
        if not isinstance(loaded, dict):
            raise _RowProblem(name("props"), "expected a JSON object")
        props.update(loaded)
    for field, text in v.items():
        if field.startswith("prop."):
            props[field[5:]] = text
    type_ = v["type"]
    dedupe = (
        f"import:{v['id']}" if "id" in v
        else "import:" + _content_key(e164, type_, ts_ms, value, props)
    )
    event = Event(type_, ts_ms, number=e164, value=value, props=props or None,
                  source=v.get("source", source), dedupe_key=dedupe)
    try:
        check_event(event)
    except EventError as exc:
        field = _EVENT_ERROR_COLUMN.get(exc.field, "type")
        raise _RowProblem(name(field), f"{exc.value!r}: {exc.why}") from None
    return event
