"""Two years of day slices: one shared file against one file per day (printed, not asserted).

Run: ``pytest -m benchmark -s metric_platform_tests/engine/store/test_slices_benchmark.py``
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from metric_platform.engine.store import EntryStore
from metric_platform_tests.engine.store._support import days, meta, slice_base, slice_frame

DAYS = 730
ROWS_PER_DAY = 20
T = TypeVar("T")


def _timed(what: str, action: Callable[[], T], results: dict[str, float]) -> T:
    started = time.perf_counter()
    value = action()
    results[what] = (time.perf_counter() - started) * 1000
    return value


@pytest.mark.benchmark
def test_one_file_per_range_against_one_file_per_day(
    store: EntryStore, ac_name: str, manifest_url: str
) -> None:
    two_years = days(0, DAYS)
    frame = slice_frame(two_years, rows=ROWS_PER_DAY)
    per_day = [frame.slice(i * ROWS_PER_DAY, ROWS_PER_DAY) for i in range(DAYS)]
    shared, single, batched = (slice_base(ac_name, (name,)) for name in ("shared", "single", "batched"))
    results: dict[str, float] = {}

    _timed(
        "publish_slices, 1 call, 1 file",
        lambda: store.publish_slices(shared, frame, slice_column="day", slices=two_years, meta=meta()),
        results,
    )
    listed = _timed("list_slices (730 rows)", lambda: store.list_slices(shared), results)
    read = _timed("scan_slices all + collect, 1 file", lambda: store.scan_slices(listed).collect(), results)
    month = _timed("list_slices (30 rows)", lambda: store.list_slices(shared, end=two_years[29]), results)
    _timed("scan_slices 30 days + collect, 1 file", lambda: store.scan_slices(month).collect(), results)
    _timed("record_access (730 slices)", lambda: store.record_access(listed), results)

    def publish_each() -> None:
        for day, part in zip(two_years, per_day, strict=True):
            store.publish(single.with_slice(day), part, meta())

    _timed("730 x publish(), 730 files", publish_each, results)
    items = [(batched.with_slice(day), part, meta()) for day, part in zip(two_years, per_day, strict=True)]
    _timed("publish_many(730), 730 files", lambda: store.publish_many(items), results)
    singles = store.list_slices(single)
    read_singles = _timed(
        "scan_slices all + collect, 730 files", lambda: store.scan_slices(singles).collect(), results
    )

    assert read.height == read_singles.height == DAYS * ROWS_PER_DAY
    dialect = manifest_url.split(":", 1)[0]
    print(f"\n{dialect}: {DAYS} day slices x {ROWS_PER_DAY} rows")
    for what, ms in results.items():
        print(f"  {what:<42} {ms:9.1f} ms")
