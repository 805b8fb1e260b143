"""CSV import of subscribers and events: streamed, batched, idempotent, one error line per bad row.

Files are read as UTF-8 (a BOM is fine) with the csv module, a batch of rows at a time, so a file
of any length imports in bounded memory. Each batch is one transaction; inside it each row is a
savepoint, so a row that fails is reported (``row N, column X: why``, rows numbered as in a
spreadsheet: the header is row 1) and skipped while every good row, before and after it and in
its batch, is kept. That holds for whatever one row can hold: a byte that is not UTF-8 (the row
is refused, the rest of the file read on), a cell over the csv module's limit or a line over
:data:`MAX_LINE_CHARS` (``row N: not readable as CSV ...``), a line break inside a cell (an
unterminated quote that swallowed the rows after it; only a ``props`` cell may span lines), a
time out of range, props JSON that cannot be stored, a row the database refuses.

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
integer epoch milliseconds, from 1970-01-01 to 9999-12-31 (date attributes from year 1).
Numbers: plain decimal (``12.50``, ``-3``, ``1e3``; no thousands separators). Booleans:
true/false, yes/no, 1/0. Lists: a JSON array or ``a|b|c``. Geo: ``lat,lon``.

**Idempotence.** Re-importing a file (or another file with the same rows) adds nothing:
subscribers are upserts; consent rows carry a dedupe key from the row's content; events carry
``import:<type>/<number>/<id>`` from an ``id`` column (an id names an event of one type for one
subscriber: order 1 and click 1 are different events; an event stored by the older importer
under ``import:<id>`` with the same subscriber and type still counts as present), else a
sha256 of (number, type, time, value, props) — so two genuinely identical events in one file
without an id count once (give an ``id`` column if that matters). The file's sha256 is the
consent evidence (``file_sha256``) and the events' source (``csv:<sha256>``).

**Consent.** An import never outranks a STOP it cannot prove came later: see the rule above
:func:`_record_import_consent` (also in docs/segments.md, "CSV import").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import SmsgateError
from segmentation.consent import ACTIONS, METHODS, PROGRAMS, current_consent, record_consent

# the reading layer (segmentation.csvread); "X as X": callers import these from here too
from segmentation.csvread import CsvImportError as CsvImportError
from segmentation.csvread import Record, RowProblem, data_records, read_header
from segmentation.csvread import RowError as RowError
from segmentation.csvread import bad_bytes as bad_bytes
from segmentation.csvread import data_rows as data_rows
from segmentation.ingest import Event, EventError, check_event, ingest_events, props_json
from segmentation.phones import PhoneError, normalise
from segmentation.rules.ast import MAX_TIMESTAMP_MS
from segmentation.store import Store
from segmentation.subscribers import (
    ATTRIBUTE_TYPES,
    MIN_DATE_MS,
    STATUSES,
    AttributeValueError,
    GeoPoint,
    SubscriberError,
    attribute_types,
    define_attribute,
    encode_value,
    iso_from_epoch_ms,
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


@dataclass(frozen=True)
class ImportReport:
    file_sha256: str
    rows: int            # data rows read
    imported: int        # rows that changed or added something
    unchanged: int       # good rows already present (re-import)
    skipped: int         # bad rows
    errors: tuple[RowError, ...]  # the first MAX_REPORTED_ERRORS of them
    ignored_columns: tuple[str, ...]


# What one row's data can raise below the parsers: our errors, a value Python or SQLite cannot
# hold (OverflowError, a JSON nesting RecursionError), a constraint (IntegrityError). Each is
# reported against its row; anything else (a locked or full database) stops the import.
_ROW_ERRORS: tuple[type[BaseException], ...] = (
    SmsgateError, ValueError, TypeError, OverflowError, RecursionError,
    sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError,
)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
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


_MAX_MS_DIGITS = len(str(MAX_TIMESTAMP_MS))


def _instant_ms(text: str) -> int:
    """ISO 8601 date/datetime (no offset = UTC) or integer epoch milliseconds, unbounded but
    never a huge integer (a run of digits longer than any valid time is refused here)."""
    s = text.strip()
    if s.isascii() and s.isdigit():
        if len(s) < 11:  # 10 digits is epoch *seconds* (or 1970 in ms): refuse, don't guess
            raise ValueError(f"integer times are epoch milliseconds; {text!r} is too small")
        if len(s.lstrip("0")) > _MAX_MS_DIGITS:
            raise ValueError(f"out of range: {_short(text)} ms is after year 9999")
        return int(s)
    try:
        if len(s) == 10:
            return to_epoch_ms(dt.date.fromisoformat(s))
        return to_epoch_ms(dt.datetime.fromisoformat(s.replace("Z", "+00:00")))
    except ValueError:
        raise ValueError(f"not a date/time (ISO 8601 or epoch ms): {_short(text)}") from None


def _short(text: str, limit: int = 40) -> str:
    """``text`` quoted for a report line, cut to ``limit`` characters (a cell may be huge)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def parse_time_ms(text: str) -> int:
    """An event or consent time: :func:`_instant_ms` from 1970-01-01 to 9999-12-31 (0 to
    ``MAX_TIMESTAMP_MS``, what ``check_event`` and the rule language accept); anything else is a
    ValueError naming the range, so one bad row is reported instead of failing its batch."""
    ms = _instant_ms(text)
    if not 0 <= ms <= MAX_TIMESTAMP_MS:
        raise ValueError(f"out of range: {_short(text.strip())}; times run from 1970-01-01 "
                         "to 9999-12-31")
    return ms


def parse_date_ms(text: str) -> int:
    """A date attribute: like :func:`parse_time_ms` but from year 1 (a birth date before 1970
    is real data; :mod:`segmentation.subscribers` stores years 1 to 9999)."""
    ms = _instant_ms(text)
    if not MIN_DATE_MS <= ms <= MAX_TIMESTAMP_MS:
        raise ValueError(f"out of range: {_short(text.strip())}; dates run from year 1 to 9999")
    return ms


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
        return parse_date_ms(s)
    if type_ == "list":
        if s.startswith("["):
            try:
                items = json.loads(s)
            except RecursionError:
                raise ValueError("a JSON array nested too deeply") from None
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


def _cells(cols: _Columns, cells: list[str] | RowProblem) -> dict[str, str]:
    """The row's non-empty mapped cells by field, or raise RowProblem: a record that could not
    be read, a wrong cell count, a byte that is not UTF-8, or a line break in a cell."""
    if isinstance(cells, RowProblem):
        raise cells
    width = len(cols.header)
    props = cols.by_field.get("props")
    # Before the cell count: a swallowed line also gives a wrong count, and this says why.
    for i, cell in enumerate(cells):
        column = cols.header[i] if i < width else f"#{i + 1}"
        bad = bad_bytes(cell)
        if bad is not None:
            raise RowProblem(column, bad)
        # A line break in a cell almost always means an unterminated quote that swallowed the
        # rows after it; refusing it reports them instead of storing them as text. A props
        # cell may span lines: JSON decides it, and swallowed rows are not JSON.
        if i != props and ("\n" in cell or "\r" in cell):
            raise RowProblem(column, "line break inside a field: unterminated quote?")
    if len(cells) < width:
        raise RowProblem(cols.header[len(cells)],
                          f"missing (row has {len(cells)} of {width} cells)")
    if len(cells) > width:
        raise RowProblem(f"#{width + 1}", f"extra cell (row has {len(cells)}, header {width})")
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
    header = read_header(path)
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
    batch: list[Record] = []

    def flush() -> None:
        nonlocal imported, unchanged
        with store.atomic():
            for row_no, cells in batch:
                before = store.conn.total_changes
                try:
                    with store.atomic():
                        _import_subscriber_row(store, cols, types, cells, row_no, sha,
                                               path.name, actor)
                except RowProblem as p:
                    report(RowError(row_no, p.column, p.why))
                    continue
                except _ROW_ERRORS as exc:  # anything else a row can get wrong
                    report(RowError(row_no, "", str(exc) or type(exc).__name__))
                    continue
                if store.conn.total_changes != before:
                    imported += 1
                else:
                    unchanged += 1
        batch.clear()

    for row_no, cells in data_records(path):
        rows += 1
        batch.append((row_no, cells))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return ImportReport(sha, rows, imported, unchanged, report.count, tuple(report.kept),
                        cols.ignored)


def _import_subscriber_row(
    store: Store, cols: _Columns, types: dict[str, str], cells: list[str] | RowProblem,
    row_no: int, sha: str, filename: str, actor: str,
) -> None:
    v = _cells(cols, cells)
    name = cols.name
    if "phone" not in v:
        raise RowProblem(name("phone"), "empty phone number")
    try:
        e164 = normalise(v["phone"], store.default_region)
    except PhoneError as exc:
        raise RowProblem(name("phone"), exc.why) from None
    lat = lon = None
    for field in ("lat", "lon"):
        if field in v:
            try:
                value = parse_number(v[field])
            except ValueError as exc:
                raise RowProblem(name(field), str(exc)) from None
            lat, lon = (value, lon) if field == "lat" else (lat, value)
    if v.get("status") and v["status"] not in STATUSES:
        raise RowProblem(name("status"), f"must be one of {', '.join(STATUSES)}")
    attrs: dict[str, object] = {}
    for field, text in v.items():
        if field.startswith("attr."):
            key = field[5:]
            try:
                attrs[key] = parse_attribute(types[key], text)
            except (ValueError, json.JSONDecodeError) as exc:
                raise RowProblem(name(field), f"{types[key]} expected; {exc}") from None
    consent = _consent_fields(v, name, store.now_ms())
    if consent is not None:  # first: the status check below reads the ledger with it
        _record_import_consent(store, e164, consent, name, row_no, sha, filename, actor)
    if v.get("status") == "active":
        _check_activation(store, e164, consent, name)
    try:
        sid = upsert_subscriber(
            store, e164, region=v.get("region"), postal_code=v.get("postal_code"),
            tz=v.get("tz"), locale=v.get("locale"), lat=lat, lon=lon, status=v.get("status"),
        )
    except PhoneError as exc:  # a bad time zone hint
        raise RowProblem(name("tz"), f"{exc.value!r}: {exc.why}") from None
    except SubscriberError as exc:
        raise RowProblem(name(exc.field.split("/")[0]), exc.why) from None
    if attrs:
        _set_if_changed(store, sid, attrs, types, name)


# Consent from an import (segmentation-compliance.md §6.4: consent must be demonstrable, a STOP
# must hold). The rule, also in docs/segments.md ("CSV import"):
# - a row's consent_time is its evidence of when; without one the row is stamped with the
#   import time and its evidence says so ("undated": true);
# - an UNDATED GRANT is refused (row reported) when the number's latest row for that program
#   is a revoke: the file does not show that consent was given after the STOP, and stamping
#   it "now" would make it outrank the STOP. A DATED grant is recorded as given; it becomes
#   current only if it is newer than the revoke (latest wins), i.e. the file proves a re-opt-in;
# - a consent_time after the import is refused: a future grant would outrank every STOP until
#   then;
# - ``status=active`` does not reactivate on its own: it is refused when, after the row's
#   consent, the latest marketing row is a revoke, and a subscriber already ``stopped`` is made
#   active only by a row that carries a marketing grant that is now current.
# A re-import of a row already recorded (same dedupe key) is unchanged, never refused.
_Consent = tuple[str, str, str, str | None, int | None, str | None, str | None]


def _record_import_consent(
    store: Store, e164: str, consent: _Consent, name: Callable[[str], str], row_no: int,
    sha: str, filename: str, actor: str,
) -> None:
    program, action, method, ts_raw, ts_ms, disclosure, keyword = consent
    key = "import:" + _content_key(e164, program, action, method, ts_raw, disclosure, keyword)
    if store.scalar("SELECT 1 FROM consent WHERE dedupe_key = ?", (key,)) is not None:
        return  # recorded by an earlier import of this row
    if action == "grant" and ts_ms is None:
        latest = current_consent(store, e164, program)
        if latest is not None and latest.action == "revoke":
            raise RowProblem(
                name("consent_time"),
                f"a grant without a time cannot override the {program} revoke of "
                f"{iso_from_epoch_ms(latest.ts_ms)} ({latest.method}); give the time consent "
                "was given (consent_time), after that revoke")
    evidence: dict[str, object] = {"file_sha256": sha, "file": filename, "row": row_no}
    if ts_ms is None:
        evidence["undated"] = True  # the recorded time is the import's, not the consent's
    record_consent(store, e164, program, action, method, actor=actor, ts_ms=ts_ms,
                   keyword_text=keyword, disclosure=disclosure, evidence=evidence,
                   dedupe_key=key)


def _check_activation(
    store: Store, e164: str, consent: _Consent | None, name: Callable[[str], str]
) -> None:
    """Refuse ``status=active`` that the ledger does not back (rule above)."""
    latest = current_consent(store, e164, "marketing")
    if latest is not None and latest.action == "revoke":
        raise RowProblem(
            name("status"),
            f"active refused: the latest marketing consent is a revoke of "
            f"{iso_from_epoch_ms(latest.ts_ms)} ({latest.method}); import a dated grant "
            "after it in the same row")
    stored = store.scalar("SELECT status FROM subscriber WHERE phone_e164 = ?", (e164,))
    granted_here = (consent is not None and consent[:2] == ("marketing", "grant")
                    and latest is not None and latest.action == "grant")
    if stored == "stopped" and not granted_here:
        raise RowProblem(name("status"), "a stopped subscriber is made active only with a "
                                          "marketing grant (consent columns) in the same row")


def _set_if_changed(
    store: Store, sid: int, attrs: dict[str, object], types: dict[str, str],
    name: Callable[[str], str],
) -> None:
    """Set attributes, skipping the write when the stored values are the same (idempotence)."""
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
            raise RowProblem(name(f"attr.{key}"), exc.why) from None
        if stored.get(key) != encoded:
            changed[key] = value
    if changed:
        set_attributes(store, sid, changed)


def _consent_fields(
    v: dict[str, str], name: Callable[[str], str], now_ms: int
) -> _Consent | None:
    program = v.get("consent_program")
    if program is None:
        if any(k.startswith("consent_") for k in v):
            raise RowProblem(name("consent_program"), "consent columns need a program")
        return None
    program = program.lower()
    if program not in PROGRAMS:
        raise RowProblem(name("consent_program"), f"must be one of {', '.join(PROGRAMS)}")
    action = v.get("consent_action", "grant").lower()
    if action not in ACTIONS:
        raise RowProblem(name("consent_action"), "must be grant or revoke")
    method = v.get("consent_method", "import").lower()
    if method not in METHODS:
        raise RowProblem(name("consent_method"), f"must be one of {', '.join(METHODS)}")
    if method == "keyword" and not v.get("consent_keyword"):
        raise RowProblem(name("consent_keyword"), "a keyword consent needs the exact text")
    ts_raw = v.get("consent_time")
    ts_ms = None
    if ts_raw is not None:
        try:
            ts_ms = parse_time_ms(ts_raw)
        except ValueError as exc:
            raise RowProblem(name("consent_time"), str(exc)) from None
        if ts_ms > now_ms:
            raise RowProblem(name("consent_time"), f"{_short(ts_raw)} is in the future: it "
                              "would outrank every STOP until then")
    return (program, action, method, ts_raw, ts_ms, v.get("consent_disclosure"),
            v.get("consent_keyword"))


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
    header = read_header(path)
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
    batch: list[_EventRow] = []
    phones: dict[str, str] = {}

    def flush() -> None:
        nonlocal imported, unchanged
        old = _legacy_duplicates(store, batch)
        unchanged += len(old)
        events = [r for r in batch if r.row not in old]
        try:
            result = ingest_events(store, [r.event for r in events])
            imported += result.inserted
            unchanged += result.duplicates
        except _ROW_ERRORS:
            # A row the per-row checks let through spoiled the batch (nothing of it was
            # written): ingest one row at a time, so only that row is lost, and reported.
            for r in events:
                try:
                    one = ingest_events(store, [r.event])
                except _ROW_ERRORS as exc:
                    report(_event_error(r.row, exc, cols))
                    continue
                imported += one.inserted
                unchanged += one.duplicates
        batch.clear()

    for row_no, cells in data_records(path):
        rows += 1
        try:
            batch.append(_event_row(store, cols, cells, source, phones, row_no))
        except RowProblem as p:
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


_EVENT_ERROR_COLUMN = {"type": "type", "ts_ms": "ts", "value": "value", "number": "phone",
                      "props": "props"}


@dataclass(frozen=True)
class _EventRow:
    row: int
    event: Event
    legacy_key: str | None  # the key the importer gave an ``id`` before it was scoped


def _event_error(row_no: int, exc: BaseException, cols: _Columns) -> RowError:
    if isinstance(exc, EventError):
        field = _EVENT_ERROR_COLUMN.get(exc.field, "type")
        return RowError(row_no, cols.name(field), exc.why)
    return RowError(row_no, "", str(exc) or type(exc).__name__)


def id_dedupe_key(type_: str, e164: str, id_: str) -> str:
    """The dedupe key of an event row with an ``id``: scoped by event type and subscriber, so an
    order id 1 and a click id 1 (or two shops' order 1) are different events. Neither a type
    (``[a-z0-9_.:-]``) nor an E.164 number holds a ``/``, so the key is unambiguous."""
    return f"import:{type_}/{e164}/{id_}"


def _legacy_duplicates(store: Store, batch: list[_EventRow]) -> set[int]:
    """Rows of ``batch`` already stored by an importer that keyed ids as ``import:{id}`` (one
    namespace for every file): a legacy key taken by an event of the same subscriber and type
    is this event, so a file imported by the older code still adds nothing when re-imported.
    Returns the row numbers."""
    wanted: dict[str, list[_EventRow]] = {}
    for r in batch:
        if r.legacy_key is not None:
            wanted.setdefault(r.legacy_key, []).append(r)
    if not wanted:
        return set()
    keys = list(wanted)
    found: set[int] = set()
    for i in range(0, len(keys), 500):  # under SQLITE_MAX_VARIABLE_NUMBER on every build
        chunk = keys[i:i + 500]
        marks = ",".join("?" * len(chunk))
        for key, type_, e164 in store.conn.execute(
            "SELECT e.dedupe_key, e.type, s.phone_e164 FROM event e "
            f"JOIN subscriber s ON s.id = e.subscriber_id WHERE e.dedupe_key IN ({marks})",
            chunk,
        ):
            found.update(r.row for r in wanted[key]
                         if (r.event.type, r.event.number) == (type_, e164))
    return found


def _event_row(
    store: Store, cols: _Columns, cells: list[str] | RowProblem, source: str,
    phones: dict[str, str], row_no: int,
) -> _EventRow:
    v = _cells(cols, cells)
    name = cols.name
    for required in ("phone", "type", "ts"):
        if required not in v:
            raise RowProblem(name(required), "empty")
    raw = v["phone"]
    e164 = phones.get(raw)
    if e164 is None:
        try:
            e164 = phones[raw] = normalise(raw, store.default_region)
        except PhoneError as exc:
            raise RowProblem(name("phone"), exc.why) from None
    try:
        ts_ms = parse_time_ms(v["ts"])
    except ValueError as exc:
        raise RowProblem(name("ts"), str(exc)) from None
    value = None
    if "value" in v:
        try:
            value = parse_number(v["value"])
        except ValueError as exc:
            raise RowProblem(name("value"), str(exc)) from None
    props: dict[str, Any] = {}
    if "props" in v:
        try:
            loaded = json.loads(v["props"])
        except json.JSONDecodeError as exc:
            raise RowProblem(name("props"), f"not JSON ({exc.msg})") from None
        except (ValueError, RecursionError) as exc:  # an integer too long, nesting too deep
            raise RowProblem(name("props"), f"not storable JSON ({exc})") from None
        if not isinstance(loaded, dict):
            raise RowProblem(name("props"), "expected a JSON object")
        props.update(loaded)
    for field, text in v.items():
        if field.startswith("prop."):
            props[field[5:]] = text
    type_ = v["type"]
    dedupe = (
        id_dedupe_key(type_, e164, v["id"]) if "id" in v
        else "import:" + _content_key(e164, type_, ts_ms, value, props)
    )
    event = Event(type_, ts_ms, number=e164, value=value, props=props or None,
                  source=v.get("source", source), dedupe_key=dedupe)
    try:
        check_event(event)
        props_json(event.props)  # NaN, 1e999 (inf): this row, not its batch
    except EventError as exc:
        field = _EVENT_ERROR_COLUMN.get(exc.field, "type")
        shown = repr(exc.value)
        shown = shown if len(shown) <= 60 else shown[:60] + "..."  # a value may be huge
        raise RowProblem(name(field), f"{shown}: {exc.why}") from None
    return _EventRow(row_no, event, f"import:{v['id']}" if "id" in v else None)
