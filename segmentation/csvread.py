"""Reading CSV files for the importers: spreadsheet row numbers, and a reason for every
record that cannot be read, without stopping at it.

A record the csv module refuses (a field over its limit), a physical line over
:data:`MAX_LINE_CHARS`, or a byte that is not UTF-8 (decoded with "surrogateescape", found by
:func:`bad_bytes`) spoils its row only; the file is streamed, so memory stays bounded. Used by
:mod:`segmentation.csvio` (subscribers, events) and :mod:`segmentation.manual` (lists).
"""

from __future__ import annotations

import csv
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from gateway.errors import SmsgateError


class CsvImportError(SmsgateError, ValueError):
    """The file as a whole cannot be imported (unreadable, bad mapping, missing column)."""


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    why: str

    def __str__(self) -> str:
        if not self.column:  # the record as a whole (not readable as CSV)
            return f"row {self.row}: {self.why}"
        return f"row {self.row}, column {self.column}: {self.why}"


class RowProblem(Exception):
    def __init__(self, column: str, why: str) -> None:
        super().__init__(why)
        self.column = column
        self.why = why


# A physical line longer than this is cut and its record reported, so one huge line cannot take
# the memory that the csv module's per-field limit (csv.field_size_limit(), 131,072) protects.
MAX_LINE_CHARS = 1 << 20
# Bytes that are not UTF-8 are decoded with "surrogateescape" (byte 0xNN -> U+DCNN), so a bad
# byte spoils its row, not the rest of the file; a row holding one is reported and skipped.
_SURROGATE = re.compile("[\udc80-\udcff]")


class _Lines:
    """The physical lines of a text file, for csv.reader, each at most MAX_LINE_CHARS long;
    ``overlong`` holds the numbers of lines that were cut (the rest of each was skipped)."""

    def __init__(self, f: TextIO) -> None:
        self.f = f
        self.count = 0
        self.overlong: deque[int] = deque()

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.f.readline(MAX_LINE_CHARS + 1)
        if not line:
            raise StopIteration
        self.count += 1
        if len(line) > MAX_LINE_CHARS and not line.endswith(("\n", "\r")):
            tail = line
            while tail and not tail.endswith(("\n", "\r")):
                tail = self.f.readline(MAX_LINE_CHARS)
            self.overlong.append(self.count)
            line = line[:MAX_LINE_CHARS] + "\n"
        return line


def open_csv(path: Path) -> TextIO:
    return path.open(newline="", encoding="utf-8-sig", errors="surrogateescape")


Record = tuple[int, "list[str] | RowProblem"]


def records(f: TextIO) -> Iterator[Record]:
    """(spreadsheet row number, cells or the reason the record cannot be read) for every
    record, the header being row 1. A record the csv module refuses (a field over its limit)
    or that spans a cut line is reported by number and reading goes on with the next one."""
    lines = _Lines(f)
    reader = csv.reader(lines)
    row = 0
    while True:
        problem: RowProblem | None = None
        try:
            cells: list[str] = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            cells, problem = [], RowProblem("", f"not readable as CSV ({exc})")
        row += 1
        if lines.overlong and lines.overlong[0] <= reader.line_num:
            while lines.overlong and lines.overlong[0] <= reader.line_num:
                lines.overlong.popleft()
            problem = RowProblem("", f"a line longer than {MAX_LINE_CHARS:,} characters")
        yield row, cells if problem is None else problem


def data_records(path: Path) -> Iterator[Record]:
    """Each record after the header; blank lines are not rows."""
    with open_csv(path) as f:
        for row, cells in records(f):
            if row == 1 or (isinstance(cells, list) and not any(c.strip() for c in cells)):
                continue
            yield row, cells


def data_rows(path: Path, column: str) -> Iterator[tuple[int, list[str] | RowError]]:
    """Each data row's cells, for other importers (segmentation.manual reads numbers with it),
    or the :class:`RowError` that says why its record cannot be read (not CSV, a line too
    long): the same reasons these importers report. Check the cells it uses with
    :func:`bad_bytes`."""
    for row, cells in data_records(path):
        if isinstance(cells, list):
            yield row, cells
        else:
            yield row, RowError(row, cells.column or "", cells.why)


def bad_bytes(cell: str) -> str | None:
    """Why a cell read with "surrogateescape" cannot be used (None: it can)."""
    found = _SURROGATE.search(cell)
    if found is None:
        return None
    return f"not UTF-8 (byte 0x{ord(found.group()) - 0xDC00:02X}; save the file as UTF-8)"


def read_header(path: Path) -> list[str]:
    try:
        with open_csv(path) as f:
            first = next(records(f), None)
    except OSError as exc:
        raise CsvImportError(f"{path}: cannot read ({exc})") from None
    if first is None or first[1] == []:
        raise CsvImportError(f"{path}: empty file (a header row is required)")
    header = first[1]
    if isinstance(header, RowProblem):
        raise CsvImportError(f"{path}: header row: {header.why}")
    if any(_SURROGATE.search(h) for h in header):
        raise CsvImportError(f"{path}: header row: not UTF-8 (save the file as UTF-8)")
    return [h.strip() for h in header]
