"""CSV import memory stays flat as the file grows (audit 6, finding 13): the peak of Python
allocations (tracemalloc) importing 4N rows is within a small bound of importing N rows, for
events and for subscribers. The same measurement with the whole file in one batch grows with
N, which shows the bound is tight enough to catch an importer that holds the file."""

from __future__ import annotations

import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from segmentation.csvio import import_events, import_subscribers
from segmentation.phones import normalise
from segmentation.store import Store
from segmentation.subscribers import define_attribute
from tests.segmentation.conftest import START_MS, ManualClock

Writer = Callable[[Path, int], None]


def _number(i: int) -> str:
    return f"+1312555{i:04d}"


def _events(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("phone,type,ts,value,prop.sku,id\n")
        for i in range(n):  # 500 subscribers, many events each
            f.write(f"{_number(i % 500)},purchase,{START_MS + i * 1000},{i % 50}.5,"
                    f"SKU-{i % 97},e{i}\n")


def _subscribers(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("phone,region,age,consent_program,consent_time\n")
        for i in range(n):  # every row a new subscriber
            f.write(f"{_number(i)},IL,{i % 90},marketing,2026-01-0{1 + i % 9}\n")


def _warm_number_cache(count: int) -> None:
    # segmentation.phones keeps an LRU of 8,192 normalised numbers (outside the importer,
    # bounded by its size). Normalising the files' numbers before tracing makes every look-up
    # a hit, so the measurement sees the importer only and the LRU never fills up in it.
    for i in range(count):
        normalise(_number(i), "US")


def _peak(write: Writer, n: int, batch_size: int) -> int:
    """Peak traced allocations during the import, above what was allocated before it."""
    importer = import_events if write is _events else import_subscribers
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f.csv"
        write(path, n)
        with Store(Path(d) / "s.db", clock=ManualClock(), default_region="US",
                   cache_kib=512) as store:
            define_attribute(store, "age", "number")
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            report = importer(store, path, batch_size=batch_size)
            _, peak = tracemalloc.get_traced_memory()
            assert (report.imported, report.skipped) == (n, 0)
            return peak - base


@pytest.mark.slow
@pytest.mark.parametrize(("write", "n", "batch"), [(_events, 2000, 500),
                                                   (_subscribers, 500, 100)])
def test_import_memory_is_flat_as_the_row_count_grows(write: Writer, n: int, batch: int) -> None:
    _warm_number_cache(4 * n)
    tracemalloc.start()
    try:
        small, large = _peak(write, n, batch), _peak(write, 4 * n, batch)
        # the same files in one batch: the peak grows with the rows, so the bound can fail
        whole_small, whole_large = _peak(write, n, 10**9), _peak(write, 4 * n, 10**9)
    finally:
        tracemalloc.stop()
    assert large < small * 1.25 + 64 * 1024, (small, large)
    assert whole_large > whole_small * 1.25 + 64 * 1024, (whole_small, whole_large)
