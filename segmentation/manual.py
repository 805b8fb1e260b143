"""Manual segments from CSV lists of numbers (segmentation-compliance.md §5.3 ``manual``).

A manual segment is a list set by hand (:meth:`Membership.define_manual`); this module reads a
CSV file of phone numbers and replaces, appends to or removes from that list
(:meth:`Membership.set_manual_members`, transitions with cause ``manual``; segments that read
the list with ``in_segment`` follow in the same transaction).

- **Column** chosen by header name (default ``phone``; exact, else case-insensitive).
- **Numbers** normalised as the subscriber import does (:func:`segmentation.phones.normalise`
  with the store's default region). A cell that is already a stored E.164 number is taken as
  is (stored numbers were normalised when stored, so normalising again gives the same text;
  this skips libphonenumber, ~100 us a number, for the common case).
- **Bad rows**: one report line each (``row N, column X: why``; the header is row 1, as in
  ``smsgate import``): empty cell, missing cell, not a valid number. They are skipped; every
  good row is kept.
- **Unknown numbers** (valid, but no subscriber has them) are *reported, not created*: a list
  must not become a back door for adding people without their consent record. With
  ``create=True`` they are created as subscribers (no consent; status from the ledger, as
  :func:`segmentation.subscribers.upsert_subscriber` decides) and listed.
- **Idempotent**: a number named twice counts once; re-applying the same file changes nothing
  (replace/append of the same list, remove of numbers already out: no transitions).
- **Streamed**: the file is read a batch of rows at a time and resolved ids go to a temporary
  table, so a million-row list needs bounded memory; only the first ``MAX_REPORTED_ERRORS``
  problems are kept in the report (every one still goes to ``on_error``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from segmentation.csvio import MAX_REPORTED_ERRORS
from segmentation.csvread import CsvImportError, RowError, bad_bytes, data_rows, read_header
from segmentation.membership import Diff, Membership
from segmentation.phones import PhoneError, normalise
from segmentation.subscribers import upsert_subscriber

_IDS = "temp.manual_list_ids"
UNKNOWN_WHY = "no subscriber has this number (not added; --create adds it)"


@dataclass(frozen=True)
class ListReport:
    segment: str
    mode: str
    rows: int  # data rows read
    listed: int  # distinct subscribers the file names (after skipping bad/unknown rows)
    duplicates: int  # good rows naming a subscriber already named earlier in the file
    created: int  # subscribers created (create=True)
    unknown: int  # valid numbers with no subscriber, not created
    skipped: int  # bad rows
    errors: tuple[RowError, ...]  # bad and unknown rows, the first MAX_REPORTED_ERRORS
    diff: Diff


@dataclass(frozen=True)
class _Cell:
    row: int
    raw: str


def _column(header: list[str], column: str) -> int:
    if column in header:
        return header.index(column)
    low = [h.lower() for h in header]
    if column.lower() in low:
        return low.index(column.lower())
    raise CsvImportError(f"column {column!r} is not in the header (columns: "
                         f"{', '.join(header) or '-'})")


def _cells(path: Path, index: int, column: str,
           problem: Callable[[RowError], None]) -> Iterator[_Cell]:
    for row, cells in data_rows(path, column):
        if isinstance(cells, RowError):  # not readable as CSV, a line too long
            problem(cells)
            continue
        if index >= len(cells):
            problem(RowError(row, column, f"missing (row has {len(cells)} cells)"))
            continue
        raw = cells[index].strip()
        if not raw:
            problem(RowError(row, column, "empty"))
            continue
        why = bad_bytes(raw)
        if why is not None:
            problem(RowError(row, column, why))
            continue
        yield _Cell(row, raw)


class _Resolver:
    """Numbers -> subscriber ids, a batch at a time (one indexed look-up query per batch)."""

    def __init__(self, m: Membership, column: str, create: bool,
                 problem: Callable[[RowError], None]) -> None:
        self.m = m
        self.column = column
        self.create = create
        self.problem = problem
        self.created = self.unknown = self.listed = self.duplicates = 0

    def _lookup(self, numbers: list[str]) -> dict[str, int]:
        rows = self.m.conn.execute(
            "SELECT s.phone_e164, s.id FROM json_each(?) j JOIN subscriber s "
            "ON s.phone_e164 = j.value", (json.dumps(numbers),))
        return {str(e164): int(sid) for e164, sid in rows}

    def add(self, batch: list[_Cell]) -> None:
        store = self.m.store
        found = self._lookup([c.raw for c in batch])
        pending: list[tuple[_Cell, str]] = []
        for c in batch:
            if c.raw in found:
                continue
            try:
                pending.append((c, normalise(c.raw, store.default_region)))
            except PhoneError as exc:
                self.problem(RowError(c.row, self.column, exc.why))
        found.update(self._lookup([e for _, e in pending]))
        ids: list[int] = []
        for c in batch:
            if c.raw in found:
                ids.append(found[c.raw])
        for c, e164 in pending:
            if e164 in found:
                ids.append(found[e164])
            elif self.create:
                found[e164] = upsert_subscriber(store, e164)
                ids.append(found[e164])
                self.created += 1
            else:
                self.problem(RowError(c.row, self.column, UNKNOWN_WHY))
                self.unknown += 1
        # Only the temporary table changes, so a plain deferred transaction (it never takes
        # the main database's write lock); without one every row commits on its own
        # (measured 40 us a row).
        conn = self.m.conn
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN")
        try:
            cur = conn.executemany(f"INSERT OR IGNORE INTO {_IDS}(id) VALUES (?)",
                                   ((i,) for i in ids))
        finally:
            if own:
                conn.execute("COMMIT")
        added = max(cur.rowcount, 0)
        self.listed += added
        self.duplicates += len(ids) - added


def set_members_from_csv(
    m: Membership,
    name: str,
    path: Path,
    mode: str,
    *,
    column: str = "phone",
    create: bool = False,
    batch_size: int = 1000,
    on_error: Callable[[RowError], None] | None = None,
) -> ListReport:
    """Apply the numbers in ``path`` to manual segment ``name`` (module docstring)."""
    m.get(name)  # an unknown segment fails before the file is read
    header = read_header(path)
    index = _column(header, column)
    kept: list[RowError] = []
    bad = 0

    def problem(err: RowError) -> None:
        nonlocal bad
        if err.why != UNKNOWN_WHY:
            bad += 1
        if len(kept) < MAX_REPORTED_ERRORS:
            kept.append(err)
        if on_error is not None:
            on_error(err)

    conn = m.conn
    conn.execute(f"CREATE TABLE IF NOT EXISTS {_IDS}(id INTEGER PRIMARY KEY)")
    conn.execute(f"DELETE FROM {_IDS}")
    resolver = _Resolver(m, header[index], create, problem)
    batch: list[_Cell] = []
    try:
        for cell in _cells(path, index, header[index], problem):
            batch.append(cell)
            if len(batch) >= batch_size:
                resolver.add(batch)
                batch = []
        if batch:
            resolver.add(batch)
        ids = (int(r[0]) for r in conn.execute(f"SELECT id FROM {_IDS} ORDER BY id"))
        diff = m.set_manual_members(name, ids, mode)
    except (OSError, UnicodeDecodeError) as exc:
        raise CsvImportError(f"{path}: cannot read ({exc})") from None
    finally:
        conn.execute(f"DELETE FROM {_IDS}")
    data_rows = resolver.listed + resolver.duplicates + resolver.unknown + bad
    return ListReport(
        segment=name, mode=mode, rows=data_rows, listed=resolver.listed,
        duplicates=resolver.duplicates, created=resolver.created, unknown=resolver.unknown,
        skipped=bad, errors=tuple(kept), diff=diff,
    )
